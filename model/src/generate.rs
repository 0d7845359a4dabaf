//! The procedural morphable model: a face-shaped mean mesh sampled from `face.rs` on a
//! mirror-symmetric grid, and identity, expression and albedo bases made orthonormal by
//! Gram–Schmidt from candidate deformation fields (semantic ones first, then seeded local ones),
//! with σ decreasing with the component index.

use crate::face::{self, bump};
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Mesh size presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// About 1k vertices, for tests.
    Tiny,
    /// About 5k vertices.
    Default,
    /// About 35k vertices and 70k triangles, the size of the BFM front face, for benchmarks.
    Bfm,
}

impl Preset {
    pub fn target_vertices(self) -> usize {
        match self {
            Preset::Tiny => 1_000,
            Preset::Default => 5_000,
            Preset::Bfm => 35_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Default => "default",
            Preset::Bfm => "bfm",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Preset::Tiny, Preset::Default, Preset::Bfm].into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// What to generate. The same spec gives the same bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    pub preset: Preset,
    pub seed: u64,
    /// Identity components (BFM: 199, Deng et al.: 80).
    pub n_id: usize,
    /// Expression components (FaceWarehouse/3DDFA: 29, Deng et al.: 64).
    pub n_exp: usize,
    /// Albedo components (BFM: 199, Deng et al.: 80).
    pub n_tex: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self { preset: Preset::Default, seed: 0, n_id: 80, n_exp: 64, n_tex: 80 }
    }
}

/// The generated arrays, in the layout of the native file (see `file.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelArrays {
    pub preset: String,
    pub seed: u64,
    /// xyz per vertex, mm.
    pub mean_shape: Vec<f32>,
    /// Component-major: component k is `[k*3N .. (k+1)*3N]`, unit norm.
    pub id_basis: Vec<f32>,
    pub id_sigma: Vec<f32>,
    pub exp_basis: Vec<f32>,
    pub exp_sigma: Vec<f32>,
    /// rgb per vertex, linear, in [0, 1].
    pub mean_albedo: Vec<f32>,
    pub albedo_basis: Vec<f32>,
    pub albedo_sigma: Vec<f32>,
    /// Counter-clockwise seen from +z (the camera).
    pub triangles: Vec<u32>,
    /// uv per vertex in [0, 1]², v up (OBJ convention).
    pub uv: Vec<f32>,
    /// The 68 iBUG landmark vertices.
    pub landmarks: Vec<u32>,
    /// Vertex i's mirror image across the x = 0 plane.
    pub mirror: Vec<u32>,
    /// `face::REGION_*` per vertex.
    pub regions: Vec<u32>,
}

/// The sampled mesh before the bases.
struct Grid {
    /// (x, y, z) per vertex.
    positions: Vec<[f64; 3]>,
    triangles: Vec<u32>,
    mirror: Vec<u32>,
}

fn build_grid(target_vertices: usize) -> Grid {
    // Area of the outline, to choose the spacing that gives about the target count.
    let samples = 4000;
    let dy = (face::Y_TOP - face::Y_CHIN) / samples as f64;
    let area: f64 = (0..samples).map(|i| 2.0 * face::half_width(face::Y_CHIN + (i as f64 + 0.5) * dy) * dy).sum();
    let h = (area / target_vertices as f64).sqrt();

    // An odd number of columns so that the midline x = 0 is a column; x_i = -x_(nc-1-i) exactly.
    let half_cols = (face::HALF_WIDTH / h).ceil() as i64;
    let nc = (2 * half_cols + 1) as usize;
    let nr = ((face::Y_TOP - face::Y_CHIN) / h).floor() as usize + 1;
    let x_of = |i: usize| (i as i64 - half_cols) as f64 * h;
    let y_of = |j: usize| face::Y_CHIN + j as f64 * h;
    let inside = |i: usize, j: usize| x_of(i).abs() <= face::half_width(y_of(j));

    // Cells with four corners inside become two triangles; the diagonal mirrors across x = 0 so
    // that the triangulation is symmetric too.
    let grid_index = |i: usize, j: usize| j * nc + i;
    let mut grid_triangles = Vec::new();
    for j in 0..nr - 1 {
        for i in 0..nc - 1 {
            if !(inside(i, j) && inside(i + 1, j) && inside(i, j + 1) && inside(i + 1, j + 1)) {
                continue;
            }
            let (v00, v10, v01, v11) =
                (grid_index(i, j), grid_index(i + 1, j), grid_index(i, j + 1), grid_index(i + 1, j + 1));
            if (i as i64) < half_cols {
                grid_triangles.extend_from_slice(&[v00, v10, v11, v00, v11, v01]);
            } else {
                grid_triangles.extend_from_slice(&[v00, v10, v01, v10, v11, v01]);
            }
        }
    }

    // Keep the grid points some triangle uses, in row-major order.
    let mut used = vec![false; nc * nr];
    for &g in &grid_triangles {
        used[g] = true;
    }
    let mut new_index = vec![u32::MAX; nc * nr];
    let mut positions = Vec::new();
    for j in 0..nr {
        for i in 0..nc {
            if used[grid_index(i, j)] {
                new_index[grid_index(i, j)] = positions.len() as u32;
                let (x, y) = (x_of(i), y_of(j));
                positions.push([x, y, face::relief(x, y)]);
            }
        }
    }
    let triangles = grid_triangles.iter().map(|&g| new_index[g]).collect();
    let mut mirror = Vec::with_capacity(positions.len());
    for j in 0..nr {
        for i in 0..nc {
            if used[grid_index(i, j)] {
                mirror.push(new_index[grid_index(nc - 1 - i, j)]);
            }
        }
    }
    Grid { positions, triangles, mirror }
}

/// The landmark vertices: each anchor takes the nearest vertex not taken yet on its side (x < 0,
/// or the midline), and its partner on the other side is that vertex's mirror.
fn place_landmarks(grid: &Grid) -> Vec<u32> {
    let mut landmarks = vec![u32::MAX; face::N_LANDMARKS];
    let mut taken = vec![false; grid.positions.len()];
    let take = |x: f64, y: f64, midline: bool, taken: &mut Vec<bool>| -> u32 {
        let mut best = (f64::INFINITY, u32::MAX);
        for (v, p) in grid.positions.iter().enumerate() {
            let on_side = if midline { p[0] == 0.0 } else { p[0] < 0.0 };
            if !on_side || taken[v] {
                continue;
            }
            let d = (p[0] - x).powi(2) + (p[1] - y).powi(2);
            if d < best.0 {
                best = (d, v as u32);
            }
        }
        taken[best.1 as usize] = true;
        best.1
    };
    let jaw = face::jaw_anchors(3.0);
    for (k, &(x, y)) in jaw.iter().enumerate() {
        let midline = k == 8;
        let v = take(x, y, midline, &mut taken);
        landmarks[k] = v;
        if !midline {
            let m = grid.mirror[v as usize];
            taken[m as usize] = true;
            landmarks[16 - k] = m;
        }
    }
    for &(k, x, y, partner) in face::INNER_ANCHORS {
        let v = take(x, y, partner.is_none(), &mut taken);
        landmarks[k] = v;
        if let Some(p) = partner {
            let m = grid.mirror[v as usize];
            taken[m as usize] = true;
            landmarks[p] = m;
        }
    }
    debug_assert!(landmarks.iter().all(|&v| v != u32::MAX));
    landmarks
}

/// A per-vertex field of 3-vectors, flattened.
fn field(positions: &[[f64; 3]], f: impl Fn(f64, f64, f64) -> [f64; 3]) -> Vec<f64> {
    positions.iter().flat_map(|p| f(p[0], p[1], p[2])).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Orthonormalises candidates in order (modified Gram–Schmidt, twice, for f64 accuracy), skipping
/// those nearly in the span of the ones before, until `n` vectors are found.
fn orthonormalize(candidates: impl Iterator<Item = Vec<f64>>, n: usize) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(n);
    for mut v in candidates {
        if basis.len() == n {
            break;
        }
        let original = dot(&v, &v).sqrt();
        if original == 0.0 {
            continue;
        }
        for _ in 0..2 {
            for b in &basis {
                let c = dot(&v, b);
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
            }
        }
        let norm = dot(&v, &v).sqrt();
        if norm < 1e-3 * original {
            continue;
        }
        v.iter_mut().for_each(|x| *x /= norm);
        basis.push(v);
    }
    assert_eq!(basis.len(), n, "the candidate stream ended early");
    basis
}

fn sign(x: f64) -> f64 {
    if x < 0.0 { -1.0 } else if x > 0.0 { 1.0 } else { 0.0 }
}

/// Identity: global proportions and each feature's size and place, then seeded local bumps.
fn identity_candidates(p: &[[f64; 3]], rng: &mut SplitMix64) -> impl Iterator<Item = Vec<f64>> {
    let smooth = |t: f64| t.clamp(0.0, 1.0);
    let semantic: Vec<Vec<f64>> = vec![
        field(p, |x, _, _| [x, 0.0, 0.0]),
        field(p, |_, y, _| [0.0, y, 0.0]),
        field(p, |_, _, z| [0.0, 0.0, z - 40.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x, y - 10.0, 9.0, 18.0)]),
        field(p, |x, y, _| [x * bump(x, y + 3.0, 16.0, 10.0) / 10.0, 0.0, 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x, y - 28.0, 6.0, 10.0)]),
        field(p, |x, y, _| [sign(x) * bump(x.abs() - 33.0, y - 37.0, 14.0, 10.0), 0.0, 0.0]),
        field(p, |x, y, _| [0.0, bump(x.abs() - 33.0, y - 37.0, 14.0, 10.0), 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x.abs() - 33.0, y - 38.0, 13.0, 9.0)]),
        field(p, |x, y, _| [0.0, 0.0, bump(x.abs() - 33.0, y - 53.0, 18.0, 6.0)]),
        field(p, |x, y, _| [x * bump(x, y + 36.0, 25.0, 10.0) / 20.0, 0.0, 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x, y + 36.0, 18.0, 8.0)]),
        field(p, |x, y, _| [0.0, bump(x, y + 36.0, 25.0, 12.0), 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x, y + 72.0, 18.0, 14.0)]),
        field(p, |_, y, _| [0.0, -smooth((-45.0 - y) / 40.0), 0.0]),
        field(p, |x, y, _| [x / 70.0 * smooth((-10.0 - y) / 60.0), 0.0, 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x.abs() - 40.0, y + 10.0, 18.0, 20.0)]),
        field(p, |x, y, _| [sign(x) * bump(x.abs() - 50.0, y - 15.0, 12.0, 9.0), 0.0, bump(x.abs() - 50.0, y - 15.0, 12.0, 9.0)]),
        field(p, |_, y, _| [0.0, 0.0, smooth((y - 50.0) / 50.0) * (y - 50.0) / 50.0]),
        field(p, |x, y, _| [0.0, 0.0, x / 70.0 * bump(x, y, 60.0, 80.0)]),
    ];
    semantic.into_iter().chain(local_bumps(p, rng, BumpPlacement::Anywhere))
}

/// Where the seeded local deformations go.
#[derive(Clone, Copy)]
enum BumpPlacement {
    Anywhere,
    /// Mouth, eyes, brows and jaw: where expressions move the face.
    Expressive,
}

/// An endless stream of seeded smooth local deformations, half of them mirror-symmetric.
fn local_bumps(p: &[[f64; 3]], rng: &mut SplitMix64, placement: BumpPlacement) -> impl Iterator<Item = Vec<f64>> {
    let p = p.to_vec();
    let mut rng = SplitMix64::new(rng.next_u64());
    std::iter::from_fn(move || {
        let (cx, cy, s) = match placement {
            BumpPlacement::Anywhere => {
                let cy = rng.range(face::Y_CHIN + 10.0, face::Y_TOP - 10.0);
                let w = face::half_width(cy) * 0.9;
                (rng.range(-w, w), cy, rng.range(8.0, 30.0))
            }
            BumpPlacement::Expressive => {
                let centres = [(0.0, face::MOUTH_Y, 14.0), (face::EYE_X, face::EYE_Y, 8.0), (face::EYE_X, 53.0, 10.0), (20.0, -65.0, 18.0)];
                let (x, y, spread) = centres[(rng.next_u64() % centres.len() as u64) as usize];
                let side = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                (side * x + rng.range(-spread, spread), y + rng.range(-spread, spread) * 0.6, rng.range(5.0, 14.0))
            }
        };
        let (sx, sy) = (s * rng.range(0.6, 1.4), s * rng.range(0.6, 1.4));
        let direction = [rng.normal() * 0.5, rng.normal() * 0.5, rng.normal() + 0.5];
        let symmetric = rng.uniform() < 0.5;
        Some(field(&p, |x, y, _| {
            let w = if symmetric {
                bump(x.abs() - cx.abs(), y - cy, sx, sy)
            } else {
                bump(x - cx, y - cy, sx, sy)
            };
            let dx = if symmetric { direction[0] * sign(x) } else { direction[0] };
            [w * dx, w * direction[1], w * direction[2]]
        }))
    })
}

/// Expression: action-unit-like local motions of the jaw, lips, eyes and brows, each side on its
/// own where faces move them so, then seeded local motions in the same regions.
fn expression_candidates(p: &[[f64; 3]], rng: &mut SplitMix64) -> impl Iterator<Item = Vec<f64>> {
    let below_mouth = |y: f64| ((face::MOUTH_Y - 2.0 - y) / 12.0).clamp(0.0, 1.0);
    let mouth = |x: f64, y: f64| bump(x, y - face::MOUTH_Y, 22.0, 12.0);
    let corner = |x: f64, y: f64, side: f64| bump(x - side * 25.0, y - face::MOUTH_Y, 10.0, 9.0);
    let eye = |x: f64, y: f64, side: f64, dy: f64| bump(x - side * face::EYE_X, y - face::EYE_Y - dy, 11.0, 4.0);
    let brow = |x: f64, y: f64, side: f64, cx: f64| bump(x - side * cx, y - 54.0, 14.0, 8.0);
    let mut semantic: Vec<Vec<f64>> = vec![
        // Jaw open: the lower face drops and swings back, fading towards the ears.
        field(p, |x, y, _| {
            let w = below_mouth(y) * bump(x, 0.0, 45.0, 1.0);
            [0.0, -w, -0.4 * w]
        }),
        field(p, |x, y, _| [-x / 22.0 * mouth(x, y), 0.0, mouth(x, y)]),
        field(p, |x, y, _| [0.0, bump(x, y - face::MOUTH_Y - 6.0, 15.0, 4.0), 0.3 * bump(x, y - face::MOUTH_Y - 6.0, 15.0, 4.0)]),
        field(p, |x, y, _| [0.0, -bump(x, y - face::MOUTH_Y + 8.0, 15.0, 5.0), 0.0]),
        field(p, |x, y, _| [0.0, 0.0, -bump(x, y - face::MOUTH_Y, 20.0, 6.0)]),
        field(p, |x, y, _| [mouth(x, y), 0.0, 0.0]),
        field(p, |x, y, _| [below_mouth(y) * bump(x, 0.0, 45.0, 1.0), 0.0, 0.0]),
        field(p, |x, y, _| [0.0, bump(x, y + 70.0, 16.0, 10.0), 0.3 * bump(x, y + 70.0, 16.0, 10.0)]),
        field(p, |x, y, _| [-x / 15.0 * bump(x, y - face::MOUTH_Y, 15.0, 8.0), 0.0, 0.6 * bump(x, y - face::MOUTH_Y, 15.0, 8.0)]),
        field(p, |x, y, _| {
            let w = bump(x.abs() - 15.0, y - 50.0, 10.0, 6.0);
            [-sign(x) * 0.5 * w, -w, 0.0]
        }),
        field(p, |x, y, _| [0.0, bump(x.abs() - 12.0, y - 15.0, 8.0, 8.0), 0.0]),
        field(p, |x, y, _| [sign(x) * bump(x.abs() - 12.0, y + 5.0, 5.0, 5.0), 0.0, 0.0]),
    ];
    for side in [-1.0, 1.0] {
        semantic.extend([
            // Smile: the corner goes up and out.
            field(p, |x, y, _| [side * 0.6 * corner(x, y, side), 0.8 * corner(x, y, side), -0.2 * corner(x, y, side)]),
            // Stretch, and the corner pulled down.
            field(p, |x, y, _| [side * corner(x, y, side), 0.0, 0.0]),
            field(p, |x, y, _| [0.0, -corner(x, y, side), 0.0]),
            // Dimple.
            field(p, |x, y, _| [0.0, 0.0, -bump(x - side * 29.0, y - face::MOUTH_Y, 4.0, 4.0)]),
            // Eye closed, squint (lower lid up), wide (upper lid up).
            field(p, |x, y, _| [0.0, -eye(x, y, side, 3.0), 0.2 * eye(x, y, side, 3.0)]),
            field(p, |x, y, _| [0.0, eye(x, y, side, -3.5), 0.0]),
            field(p, |x, y, _| [0.0, bump(x - side * face::EYE_X, y - face::EYE_Y - 6.0, 12.0, 5.0), 0.0]),
            // Brow raised (whole, inner).
            field(p, |x, y, _| [0.0, brow(x, y, side, 33.0), 0.0]),
            field(p, |x, y, _| [0.0, brow(x, y, side, 18.0), 0.0]),
            // Cheek puffed, cheek raised.
            field(p, |x, y, _| {
                let w = bump(x - side * 40.0, y + 20.0, 14.0, 14.0);
                [side * 0.3 * w, 0.0, w]
            }),
            field(p, |x, y, _| [0.0, bump(x - side * 40.0, y - 15.0, 14.0, 10.0), 0.0]),
        ]);
    }
    semantic.into_iter().chain(local_bumps(p, rng, BumpPlacement::Expressive))
}

/// Albedo (rgb per vertex): skin tone, its gradients, lips, brows, redness, dark circles, then
/// seeded blotches from a few millimetres to a few centimetres, mostly along melanin's colour.
fn albedo_candidates(p: &[[f64; 3]], rng: &mut SplitMix64) -> impl Iterator<Item = Vec<f64>> {
    let semantic: Vec<Vec<f64>> = vec![
        field(p, |_, _, _| [1.0, 0.8, 0.65]),
        field(p, |_, _, _| [1.0, 0.0, 0.0]),
        field(p, |_, _, _| [0.0, 1.0, 0.0]),
        field(p, |_, _, _| [0.0, 0.0, 1.0]),
        field(p, |_, y, _| [y / 100.0, y / 100.0, y / 100.0]),
        field(p, |x, y, _| {
            let w = bump(x, y - face::MOUTH_Y, 22.0, 7.0);
            [w, -0.5 * w, -0.5 * w]
        }),
        field(p, |x, y, _| {
            let w = bump(x.abs() - 33.0, y - 54.0, 14.0, 3.0);
            [w, w, w]
        }),
        field(p, |x, y, _| {
            let w = bump(x.abs() - 40.0, y + 8.0, 12.0, 10.0);
            [w, -0.3 * w, -0.3 * w]
        }),
        field(p, |x, y, _| {
            let w = bump(x.abs() - face::EYE_X, y - face::EYE_Y + 9.0, 12.0, 4.0);
            [w, w * 0.9, w * 1.1]
        }),
        field(p, |x, _, _| [x / 70.0, x / 70.0, x / 70.0]),
    ];
    let p = p.to_vec();
    let mut rng = SplitMix64::new(rng.next_u64());
    let blotches = std::iter::from_fn(move || {
        let cy = rng.range(face::Y_CHIN, face::Y_TOP);
        let w = face::half_width(cy);
        let (cx, r) = (rng.range(-w, w), rng.range(2.0, 25.0));
        let colour = [1.0 + 0.2 * rng.normal(), 0.8 + 0.2 * rng.normal(), 0.6 + 0.2 * rng.normal()];
        Some(field(&p, |x, y, _| {
            let b = bump(x - cx, y - cy, r, r);
            [b * colour[0], b * colour[1], b * colour[2]]
        }))
    });
    semantic.into_iter().chain(blotches)
}

/// σ_k = rms_k · √N, so that one σ of component k moves (or recolours) vertices by `rms_k` on
/// root-mean-square over the N vertices; rms_k falls as first / (1 + k/3), so that a face drawn
/// from the prior differs from the mean by about 1.9 × first on RMS (local components move
/// their region by several times that).
fn sigmas(n: usize, first_rms: f64, n_vertices: usize) -> Vec<f32> {
    (0..n).map(|k| (first_rms / (1.0 + k as f64 / 3.0) * (n_vertices as f64).sqrt()) as f32).collect()
}

fn flatten(basis: Vec<Vec<f64>>) -> Vec<f32> {
    basis.into_iter().flatten().map(|x| x as f32).collect()
}

/// Generates the model a spec describes.
pub fn generate(spec: &ModelSpec) -> ModelArrays {
    let grid = build_grid(spec.preset.target_vertices());
    let n = grid.positions.len();
    let p = &grid.positions;
    let mut rng = SplitMix64::new(spec.seed ^ 0xFACE_F0E6_E000_0001);

    let (x_min, x_max) = (-face::HALF_WIDTH, face::HALF_WIDTH);
    let uv = p
        .iter()
        .flat_map(|q| [((q[0] - x_min) / (x_max - x_min)) as f32, ((q[1] - face::Y_CHIN) / (face::Y_TOP - face::Y_CHIN)) as f32])
        .collect();

    // The mean albedo carries fine mottling so that photometric and census losses have texture.
    let mut mottling = SplitMix64::new(rng.next_u64());
    let spots: Vec<(f64, f64, f64, f64)> = (0..400)
        .map(|_| {
            let cy = mottling.range(face::Y_CHIN, face::Y_TOP);
            let w = face::half_width(cy);
            (mottling.range(-w, w), cy, mottling.range(1.5, 6.0), mottling.range(-0.05, 0.05))
        })
        .collect();
    let mean_albedo = p
        .iter()
        .flat_map(|q| {
            let base = face::base_albedo(q[0], q[1]);
            let d: f64 = spots.iter().map(|&(cx, cy, r, a)| a * bump(q[0] - cx, q[1] - cy, r, r)).sum();
            [(base[0] + d).clamp(0.0, 1.0) as f32, (base[1] + 0.8 * d).clamp(0.0, 1.0) as f32, (base[2] + 0.65 * d).clamp(0.0, 1.0) as f32]
        })
        .collect();

    let id_basis = orthonormalize(identity_candidates(p, &mut rng), spec.n_id);
    let exp_basis = orthonormalize(expression_candidates(p, &mut rng), spec.n_exp);
    let albedo_basis = orthonormalize(albedo_candidates(p, &mut rng), spec.n_tex);

    ModelArrays {
        preset: spec.preset.name().to_string(),
        seed: spec.seed,
        mean_shape: p.iter().flat_map(|q| q.map(|c| c as f32)).collect(),
        id_basis: flatten(id_basis),
        id_sigma: sigmas(spec.n_id, 2.5, n),
        exp_basis: flatten(exp_basis),
        exp_sigma: sigmas(spec.n_exp, 1.5, n),
        mean_albedo,
        albedo_basis: flatten(albedo_basis),
        albedo_sigma: sigmas(spec.n_tex, 0.04, n),
        landmarks: place_landmarks(&grid),
        regions: p.iter().map(|q| face::region(q[0], q[1])).collect(),
        uv,
        triangles: grid.triangles,
        mirror: grid.mirror,
    }
}
