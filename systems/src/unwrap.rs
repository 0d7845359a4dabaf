//! A face's image unwrapped into the model's UV atlas: every texel of the atlas is a point on
//! the mesh; where that point is visible at the pose its colour comes from the image (bilinear,
//! the `sample` op). Elsewhere (`Unseen`): zero — CEST's illuminated texture T, which ignores
//! self-occluded triangles — or, for the textured OBJ, the colour of its mirror image across the
//! face's midline when that one is visible, else the model's albedo, and texels outside the
//! atlas's triangles take their neighbours' colours, so viewers that filter the texture show no
//! seams.

use faceforge_components::{Image, Pose};
use faceforge_kernels::project;
use faceforge_kernels::rasterize::{self, Raster, RasterShape};
use faceforge_kernels::sample::{self, SampleShape};
use faceforge_model::MorphableModel;

/// Where the texels' colours came from (fractions of the covered texels).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TextureSources {
    pub image: f32,
    pub mirrored: f32,
    pub model: f32,
}

/// The mesh drawn at the pose into the image's size: the z-buffer that decides visibility.
fn raster_at_pose(model: &MorphableModel, positions: &[f32], pose: &Pose, width: usize, height: usize) -> (Raster, Vec<f32>) {
    let n = model.n_vertices();
    let (camera_model, camera) = pose.camera();
    let projected = project::forward_cpu(camera_model, positions, &camera, n);
    (rasterize::forward_cpu(RasterShape { batch: 1, width, height }, &projected, model.triangles(), n), projected)
}

/// The model's UV atlas drawn flat (each vertex at its UV, `size` × `size`, row 0 at v = 1):
/// each texel's triangle and barycentrics.
fn atlas(model: &MorphableModel, size: usize) -> Raster {
    let flat: Vec<f32> = model.uv().chunks(2).flat_map(|uv| [uv[0] * size as f32, (1.0 - uv[1]) * size as f32, 0.0, 1.0]).collect();
    rasterize::forward_cpu(RasterShape { batch: 1, width: size, height: size }, &flat, model.triangles(), model.n_vertices())
}

/// A covered texel's triangle corners and barycentrics.
fn corners(atlas: &Raster, triangles: &[u32], i: usize) -> ([u32; 3], [f32; 3]) {
    let t = (atlas.tri[i] - 1) as usize;
    let (b0, b1) = (atlas.bary[2 * i], atlas.bary[2 * i + 1]);
    ([triangles[3 * t], triangles[3 * t + 1], triangles[3 * t + 2]], [b0, b1, 1.0 - b0 - b1])
}

/// Per-vertex values (3 each) interpolated at barycentrics `b` of a triangle.
fn point(vertices: [u32; 3], b: [f32; 3], values: &[f32]) -> [f32; 3] {
    std::array::from_fn(|c| (0..3).map(|k| b[k] * values[3 * vertices[k] as usize + c]).sum())
}

/// Per-vertex colours (rgb) drawn into the UV atlas (zero outside its triangles): CEST's
/// reflectance map A of a per-vertex reflectance.
pub fn atlas_colours(model: &MorphableModel, colours: &[f32], size: usize) -> Vec<f32> {
    let atlas = atlas(model, size);
    let mut out = vec![0.0f32; 3 * size * size];
    for i in (0..size * size).filter(|&i| atlas.covered(i)) {
        let (v, b) = corners(&atlas, model.triangles(), i);
        out[3 * i..3 * i + 3].copy_from_slice(&point(v, b, colours));
    }
    out
}

/// What the texels the image does not show hold.
#[derive(Clone, Copy, Debug)]
pub enum Unseen<'a> {
    /// Zero (CEST's T).
    Zero,
    /// The mirrored point's colour if visible, else this per-vertex albedo; then the atlas's
    /// empty texels filled from their neighbours (the textured OBJ).
    MirrorThenAlbedo(&'a [f32]),
}

/// The texture (rgb, `size` × `size`, row 0 at the top, i.e. v = 1) and where its colours came
/// from.
pub fn unwrap(model: &MorphableModel, positions: &[f32], pose: &Pose, image: &Image, size: usize, unseen: Unseen) -> (Vec<f32>, TextureSources) {
    let triangles = model.triangles();
    let mirror = model.mirror();
    // The atlas drawn flat: each vertex at its UV, so each texel finds its triangle and
    // barycentrics.
    let atlas = atlas(model, size);
    let (zbuffer, _) = raster_at_pose(model, positions, pose, image.width, image.height);
    let (camera_model, camera) = pose.camera();

    // Each covered texel's point on the mesh and on the mirrored mesh, projected in one batch.
    let covered: Vec<usize> = (0..size * size).filter(|&i| atlas.covered(i)).collect();
    let corners = |i: usize| corners(&atlas, triangles, i);
    let mut points = Vec::with_capacity(6 * covered.len());
    for &i in &covered {
        let (v, b) = corners(i);
        points.extend(point(v, b, positions));
        points.extend(point(v.map(|k| mirror[k as usize]), b, positions));
    }
    let projected = project::forward_cpu(camera_model, &points, &camera, points.len() / 3);
    // A point is visible when the pixel it lands on shows its own triangle or one sharing a
    // vertex with it (the z-buffer within a pixel).
    let visible = |vertices: [u32; 3], p: &[f32]| -> bool {
        let (x, y) = (p[0].floor(), p[1].floor());
        if x < 0.0 || y < 0.0 || x as usize >= image.width || y as usize >= image.height {
            return false;
        }
        let shown = zbuffer.tri[y as usize * image.width + x as usize];
        shown != 0 && triangles[3 * (shown as usize - 1)..3 * shown as usize].iter().any(|v| vertices.contains(v))
    };

    // The image's colour at every projected point (bilinear, the `sample` op), used where visible.
    let positions: Vec<f32> = projected.chunks(4).flat_map(|p| [p[0], p[1]]).collect();
    let colours = sample::forward_cpu(SampleShape { batch: 1, width: image.width, height: image.height, channels: 3, points: positions.len() / 2 }, &image.rgb, &positions);
    let mut texture = vec![0.0f32; 3 * size * size];
    let mut filled = vec![false; size * size];
    let mut counts = [0usize; 3];
    for (k, &i) in covered.iter().enumerate() {
        let (v, b) = corners(i);
        let own = &projected[8 * k..8 * k + 4];
        let mirrored = &projected[8 * k + 4..8 * k + 8];
        let colour = match unseen {
            _ if visible(v, own) => {
                counts[0] += 1;
                [colours[6 * k], colours[6 * k + 1], colours[6 * k + 2]]
            }
            Unseen::Zero => [0.0; 3],
            Unseen::MirrorThenAlbedo(_) if visible(v.map(|k| mirror[k as usize]), mirrored) => {
                counts[1] += 1;
                [colours[6 * k + 3], colours[6 * k + 4], colours[6 * k + 5]]
            }
            Unseen::MirrorThenAlbedo(albedo) => {
                counts[2] += 1;
                point(v, b, albedo).map(|c| c.clamp(0.0, 1.0))
            }
        };
        texture[3 * i..3 * i + 3].copy_from_slice(&colour);
        filled[i] = true;
    }
    if let Unseen::MirrorThenAlbedo(_) = unseen {
        dilate(&mut texture, &mut filled, size, 4);
    }
    let total = covered.len().max(1) as f32;
    (texture, TextureSources { image: counts[0] as f32 / total, mirrored: counts[1] as f32 / total, model: counts[2] as f32 / total })
}

/// Grows the filled region by `passes` texels: an empty texel takes the mean of its filled
/// 4-neighbours.
fn dilate(texture: &mut [f32], filled: &mut [bool], size: usize, passes: usize) {
    for _ in 0..passes {
        let before = filled.to_vec();
        for y in 0..size {
            for x in 0..size {
                let i = y * size + x;
                if before[i] {
                    continue;
                }
                let neighbours: Vec<usize> = [(x.wrapping_sub(1), y), (x + 1, y), (x, y.wrapping_sub(1)), (x, y + 1)].into_iter().filter(|&(nx, ny)| nx < size && ny < size && before[ny * size + nx]).map(|(nx, ny)| ny * size + nx).collect();
                if neighbours.is_empty() {
                    continue;
                }
                for c in 0..3 {
                    texture[3 * i + c] = neighbours.iter().map(|&j| texture[3 * j + c]).sum::<f32>() / neighbours.len() as f32;
                }
                filled[i] = true;
            }
        }
    }
}
