//! Importers for the morphable models users own, into faceforge's native `.ffm`:
//! - **BFM 2009** (`01_MorphableModel.mat`): `shapeMU`, `shapePC`, `shapeEV`, `texMU`, `texPC`,
//!   `texEV`, `tl`; no expressions and no 68 landmarks in the file (give them with
//!   `--landmarks`, e.g. from the BFM's own landmark list);
//! - **Deep3DFaceRecon's front face** (`BFM_model_front.mat`): `meanshape`, `idBase`,
//!   `exBase`, `meantex`, `texBase`, `tri`, `keypoints` — bases already scaled by their
//!   standard deviations, expressions included.
//!
//! What the native file needs and these files lack is derived: units are found from the face's
//! width (any power of ten that makes it about 150 mm: BFM's micrometres become millimetres),
//! UVs are the frontal projection of the mean face onto [0, 1]², the mirror map pairs each
//! vertex with the one nearest its reflection across the face's midline, and the eye / nose /
//! mouth regions are the vertices near those landmarks. Triangles are turned counter-clockwise
//! as seen from the camera (+z).

use crate::eval::alignment::NearestGrid;
use crate::io::hdf5::Dataset;
use crate::io::mat::MatArray;
use anyhow::{bail, Context};
use faceforge_model::face::{REGION_EYE, REGION_MOUTH, REGION_NOSE, REGION_SKIN};
use faceforge_model::ModelArrays;
use std::collections::BTreeMap;

/// The layouts `faceforge model import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Bfm2009,
    Bfm2017,
    Deep3dFront,
}

impl Layout {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "bfm2009" | "bfm09" => Some(Self::Bfm2009),
            "bfm2017" | "bfm17" => Some(Self::Bfm2017),
            "deep3d" | "deep3dfront" | "bfmfront" | "deep3dfacerecon" => Some(Self::Deep3dFront),
            _ => None,
        }
    }
}

/// The typical width of a face, for finding a file's units.
const FACE_WIDTH_MM: f32 = 150.0;

fn array<'a>(file: &str, arrays: &'a BTreeMap<String, MatArray>, name: &str) -> anyhow::Result<&'a MatArray> {
    arrays.get(name).with_context(|| format!("{file} has no array `{name}` (it has: {})", arrays.keys().cloned().collect::<Vec<_>>().join(", ")))
}

/// The factor (a power of ten) that turns the file's units into millimetres.
fn unit_scale(mean: &[f32]) -> f32 {
    let (lo, hi) = mean.chunks(3).fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p[0]), hi.max(p[0])));
    let width = (hi - lo).max(f32::MIN_POSITIVE);
    10f32.powi((FACE_WIDTH_MM / width).log10().round() as i32)
}

/// A T × 3 (or 3 × T) 1-based index matrix as 0-based triangles, triangle-major.
fn triangles(file: &str, tl: &MatArray, n_vertices: usize) -> anyhow::Result<Vec<u32>> {
    let (rows, cols) = (tl.rows(), tl.cols());
    let count = if cols == 3 { rows } else if rows == 3 { cols } else { bail!("{file}: the triangle list is {rows} × {cols}, not T × 3") };
    let at = |t: usize, c: usize| if cols == 3 { tl.data[t + c * rows] } else { tl.data[c + 3 * t] };
    let mut out = Vec::with_capacity(3 * count);
    for t in 0..count {
        for c in 0..3 {
            let v = at(t, c);
            if v < 1.0 || v as usize > n_vertices || v.fract() != 0.0 {
                bail!("{file}: triangle {t} names vertex {v}, outside 1..={n_vertices}");
            }
            out.push(v as u32 - 1);
        }
    }
    Ok(out)
}

/// Splits bases premultiplied by their standard deviations into unit columns and σ.
fn split_scaled(basis: &[f32], len: usize) -> (Vec<f32>, Vec<f32>) {
    let mut unit = basis.to_vec();
    let sigma = unit
        .chunks_mut(len)
        .map(|column| {
            let norm = column.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() as f32;
            if norm > 0.0 {
                column.iter_mut().for_each(|v| *v /= norm);
            }
            norm
        })
        .collect();
    (unit, sigma)
}

/// The first `keep` columns of a column-major 3N × K basis (all when `keep` is None).
fn columns(a: &MatArray, len: usize, keep: Option<usize>, file: &str, name: &str) -> anyhow::Result<Vec<f32>> {
    if a.rows() != len {
        bail!("{file}: `{name}` has {} rows, the mean shape {len} values", a.rows());
    }
    let k = keep.map_or(a.cols(), |k| k.min(a.cols()));
    Ok(a.data[..k * len].to_vec())
}

/// The first `k` values of a vector of standard deviations, one per component kept.
fn first(file: &str, a: &MatArray, name: &str, k: usize) -> anyhow::Result<Vec<f32>> {
    match a.data.get(..k) {
        Some(values) => Ok(values.to_vec()),
        None => bail!("{file}: `{name}` has {} values for {k} components", a.data.len()),
    }
}

/// What an import is given besides the file.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// 68 landmark vertices, 0-based (required for BFM 2009, overrides the file's otherwise).
    pub landmarks: Option<Vec<u32>>,
    /// Keep at most this many identity / expression / albedo components.
    pub n_id: Option<usize>,
    pub n_exp: Option<usize>,
    pub n_tex: Option<usize>,
}

/// Reads a landmark list: 68 vertex indices, whitespace- or comma-separated; `one_based`
/// subtracts 1.
pub fn read_landmarks(file: &str, text: &str, one_based: bool) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        for token in line.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
            let v: u32 = token.parse().with_context(|| format!("{file}:{}: `{token}` is not a vertex index", line_no + 1))?;
            if one_based && v == 0 {
                bail!("{file}:{}: index 0 in a 1-based list", line_no + 1);
            }
            out.push(if one_based { v - 1 } else { v });
        }
    }
    if out.len() != 68 {
        bail!("{file}: {} landmark indices, need 68", out.len());
    }
    Ok(out)
}

/// A model's arrays as read from its file, before conversion: bases component-major with their
/// standard deviations, triangles 0-based.
struct Parts {
    mean: Vec<f32>,
    id: Vec<f32>,
    id_sigma: Vec<f32>,
    exp: Vec<f32>,
    exp_sigma: Vec<f32>,
    tex_mean: Vec<f32>,
    tex: Vec<f32>,
    tex_sigma: Vec<f32>,
    triangles: Vec<u32>,
    landmarks: Option<Vec<u32>>,
}

/// Converts a MAT file's arrays of the given layout into native model arrays.
pub fn import(layout: Layout, file: &str, arrays: &BTreeMap<String, MatArray>, options: &ImportOptions) -> anyhow::Result<ModelArrays> {
    let get = |name: &str| array(file, arrays, name);
    let parts = match layout {
        Layout::Bfm2009 => {
            let mean = get("shapeMU")?.data.clone();
            let len = mean.len();
            let id = columns(get("shapePC")?, len, options.n_id, file, "shapePC")?;
            let id_sigma = first(file, get("shapeEV")?, "shapeEV", id.len() / len)?;
            let tex = columns(get("texPC")?, len, options.n_tex, file, "texPC")?;
            let tex_sigma = first(file, get("texEV")?, "texEV", tex.len() / len)?;
            let triangles = triangles(file, get("tl")?, len / 3)?;
            Parts { mean, id, id_sigma, exp: Vec::new(), exp_sigma: Vec::new(), tex_mean: get("texMU")?.data.clone(), tex, tex_sigma, triangles, landmarks: None }
        }
        Layout::Deep3dFront => {
            let mean = get("meanshape")?.data.clone();
            let len = mean.len();
            let (id, id_sigma) = split_scaled(&columns(get("idBase")?, len, options.n_id, file, "idBase")?, len);
            let (exp, exp_sigma) = split_scaled(&columns(get("exBase")?, len, options.n_exp, file, "exBase")?, len);
            let (tex, tex_sigma) = split_scaled(&columns(get("texBase")?, len, options.n_tex, file, "texBase")?, len);
            let keypoints = get("keypoints")?.data.iter().map(|&v| if v >= 1.0 && v.fract() == 0.0 { Ok(v as u32 - 1) } else { Err(anyhow::anyhow!("{file}: keypoint {v} is not a 1-based vertex index")) }).collect::<anyhow::Result<Vec<u32>>>()?;
            let triangles = triangles(file, get("tri")?, len / 3)?;
            Parts { mean, id, id_sigma, exp, exp_sigma, tex_mean: get("meantex")?.data.clone(), tex, tex_sigma, triangles, landmarks: Some(keypoints) }
        }
        Layout::Bfm2017 => bail!("{file}: BFM 2017 is an HDF5 file; use import_hdf5"),
    };
    assemble(layout, file, parts, options)
}

/// A statismo model's part (`shape`, `expression`, `color`): its mean and its basis, component-
/// major, with standard deviations. The stored basis may be orthonormal (σ = √pcaVariance) or
/// already scaled by σ; the column norms tell which.
fn statismo_part(file: &str, sets: &BTreeMap<String, Dataset>, part: &str, keep: Option<usize>) -> anyhow::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let get = |name: &str| sets.get(&format!("/{part}/model/{name}")).with_context(|| format!("{file} has no dataset /{part}/model/{name}"));
    let mean = get("mean")?.data.clone();
    let basis = get("pcaBasis")?;
    let variance = &get("pcaVariance")?.data;
    let (rows, k) = match basis.shape[..] {
        [r, k] if r == mean.len() && k == variance.len() => (r, k.min(keep.unwrap_or(usize::MAX))),
        _ => bail!("{file}: /{part}/model/pcaBasis is {:?}, expected [{}, {}]", basis.shape, mean.len(), variance.len()),
    };
    let all = variance.len();
    // Row-major rows × all → component-major.
    let columns: Vec<f32> = (0..k).flat_map(|c| (0..rows).map(move |r| basis.data[r * all + c])).collect();
    let (unit, norms) = split_scaled(&columns, rows);
    let orthonormal = norms.iter().all(|n| (n - 1.0).abs() < 1e-3);
    let sigma = if orthonormal { variance[..k].iter().map(|v| v.max(0.0).sqrt()).collect() } else { norms };
    Ok((mean, unit, sigma))
}

/// Converts a BFM 2017 (statismo HDF5) file's datasets into native model arrays.
pub fn import_hdf5(file: &str, sets: &BTreeMap<String, Dataset>, options: &ImportOptions) -> anyhow::Result<ModelArrays> {
    let (mean, id, id_sigma) = statismo_part(file, sets, "shape", options.n_id)?;
    let (exp_mean, exp, exp_sigma) = match sets.contains_key("/expression/model/mean") {
        true => statismo_part(file, sets, "expression", options.n_exp)?,
        false => (Vec::new(), Vec::new(), Vec::new()),
    };
    // The expression model's mean (zero in the BFM) belongs to the neutral face.
    let mean: Vec<f32> = if exp_mean.len() == mean.len() { mean.iter().zip(&exp_mean).map(|(a, b)| a + b).collect() } else { mean };
    let (tex_mean, tex, tex_sigma) = statismo_part(file, sets, "color", options.n_tex)?;
    let cells = sets.get("/shape/representer/cells").with_context(|| format!("{file} has no dataset /shape/representer/cells"))?;
    let n = mean.len() / 3;
    let triangles: Vec<u32> = match cells.shape[..] {
        [3, t] => (0..t).flat_map(|i| (0..3).map(move |c| cells.data[c * t + i])).map(|v| v as u32).collect(),
        [t, 3] => cells.data.iter().take(3 * t).map(|&v| v as u32).collect(),
        _ => bail!("{file}: /shape/representer/cells is {:?}, not 3 × T", cells.shape),
    };
    if let Some(bad) = triangles.iter().find(|&&v| v as usize >= n) {
        bail!("{file}: a triangle names vertex {bad} of {n}");
    }
    let parts = Parts { mean, id, id_sigma, exp, exp_sigma, tex_mean, tex, tex_sigma, triangles, landmarks: None };
    assemble(Layout::Bfm2017, file, parts, options)
}

/// Units, colours, landmarks, orientation, UVs, mirror map and regions: the native model.
fn assemble(layout: Layout, file: &str, parts: Parts, options: &ImportOptions) -> anyhow::Result<ModelArrays> {
    let Parts { mean: mean_raw, id, id_sigma, exp, exp_sigma, tex_mean, tex, tex_sigma, triangles, landmarks: file_landmarks } = parts;
    if mean_raw.len() % 3 != 0 || tex_mean.len() != mean_raw.len() {
        bail!("{file}: the mean shape has {} values and the mean texture {}; both must be 3 × the vertex count", mean_raw.len(), tex_mean.len());
    }
    let n = mean_raw.len() / 3;
    let scale = unit_scale(&mean_raw);
    let mean_shape: Vec<f32> = mean_raw.iter().map(|v| v * scale).collect();
    // Colours: 0–255 in these files, [0, 1] here.
    let colour = if tex_mean.iter().any(|v| *v > 1.5) { 1.0 / 255.0 } else { 1.0 };
    let landmarks = options.landmarks.clone().or(file_landmarks).with_context(|| format!("{file} has no 68 landmarks: pass --landmarks FILE (68 vertex indices)"))?;
    if landmarks.len() != 68 || landmarks.iter().any(|&v| v as usize >= n) {
        bail!("{file}: the landmarks must be 68 vertices of the {n}");
    }
    let mut triangles = triangles;
    face_the_camera(&mean_shape, &mut triangles);
    Ok(ModelArrays {
        preset: match layout {
            Layout::Bfm2009 => "bfm2009",
            Layout::Bfm2017 => "bfm2017",
            Layout::Deep3dFront => "deep3d-front",
        }
        .to_string(),
        seed: 0,
        uv: frontal_uv(&mean_shape),
        mirror: mirror_map(&mean_shape),
        regions: regions(&mean_shape, &landmarks),
        dense_landmarks: Vec::new(),
        id_sigma: id_sigma.iter().map(|s| s * scale).collect(),
        exp_sigma: exp_sigma.iter().map(|s| s * scale).collect(),
        albedo_sigma: tex_sigma.iter().map(|s| s * colour).collect(),
        mean_albedo: tex_mean.iter().map(|v| v * colour).collect(),
        mean_shape,
        id_basis: id,
        exp_basis: exp,
        albedo_basis: tex,
        triangles,
        landmarks,
    })
}

/// Flips every triangle when most of the area faces away from +z.
fn face_the_camera(positions: &[f32], triangles: &mut [u32]) {
    let p = |v: u32| &positions[3 * v as usize..3 * v as usize + 3];
    let facing: f64 = triangles
        .chunks(3)
        .map(|t| {
            let (a, b, c) = (p(t[0]), p(t[1]), p(t[2]));
            ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])) as f64
        })
        .sum();
    if facing < 0.0 {
        triangles.chunks_mut(3).for_each(|t| t.swap(1, 2));
    }
}

/// The mean face projected onto the xy plane, scaled into [0, 1]² (v up).
fn frontal_uv(positions: &[f32]) -> Vec<f32> {
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for p in positions.chunks(3) {
        for c in 0..2 {
            lo[c] = lo[c].min(p[c]);
            hi[c] = hi[c].max(p[c]);
        }
    }
    let side = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(f32::MIN_POSITIVE);
    positions.chunks(3).flat_map(|p| [((p[0] - lo[0]) / side).clamp(0.0, 1.0), ((p[1] - lo[1]) / side).clamp(0.0, 1.0)]).collect()
}

/// Each vertex's partner: the vertex nearest its reflection across the plane x = mean x.
fn mirror_map(positions: &[f32]) -> Vec<u32> {
    let n = positions.len() / 3;
    let mid = positions.chunks(3).map(|p| p[0] as f64).sum::<f64>() / n.max(1) as f64;
    let grid = NearestGrid::new(positions, 2.0);
    positions.chunks(3).map(|p| grid.nearest([2.0 * mid - p[0] as f64, p[1] as f64, p[2] as f64]).map_or(0, |(j, _)| j as u32)).collect()
}

/// Eyes, nose and mouth: the vertices within a fifth of the outer eye distance of those
/// landmarks (iBUG 36–47, 27–35, 48–67); skin elsewhere.
fn regions(positions: &[f32], landmarks: &[u32]) -> Vec<u32> {
    let at = |v: u32| [positions[3 * v as usize], positions[3 * v as usize + 1], positions[3 * v as usize + 2]];
    let d2 = |a: [f32; 3], b: &[f32]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2);
    let eyes = d2(at(landmarks[36]), &at(landmarks[45])).sqrt();
    let reach = (0.2 * eyes).powi(2);
    let groups = [(36..48, REGION_EYE), (27..36, REGION_NOSE), (48..68, REGION_MOUTH)];
    positions
        .chunks(3)
        .map(|p| groups.iter().find(|(range, _)| range.clone().any(|l| d2(at(landmarks[l]), p) <= reach)).map_or(REGION_SKIN, |(_, r)| *r))
        .collect()
}
