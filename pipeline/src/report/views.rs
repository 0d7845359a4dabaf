//! The fitted face turned: drawn from the front, at 45° and at 90° (the subject's right side), as
//! lit grey clay and, when a texture is given, wearing it. A fit can match the photo from the
//! front and still be a mask from the side; this picture shows which.

use crate::io::outputs::png_bytes;
use faceforge_components::Pose;
use faceforge_kernels::normals::{self, Adjacency};
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::Backend;
use faceforge_model::MorphableModel;
use faceforge_systems::render::{render_batch, RenderBatch};

/// The yaws drawn, in degrees.
pub const YAWS: [f32; 3] = [0.0, 45.0, 90.0];

/// Per-vertex colours sampled from a texture image (rgb, `size` × `size`, v up as the UVs are).
pub fn colours_from_texture(model: &MorphableModel, texture: &[f32], size: usize) -> Vec<f32> {
    model
        .uv()
        .chunks(2)
        .flat_map(|uv| {
            let x = ((uv[0] * size as f32) as usize).min(size - 1);
            let y = (((1.0 - uv[1]) * size as f32) as usize).min(size - 1);
            let p = 3 * (y * size + x);
            [texture[p], texture[p + 1], texture[p + 2]]
        })
        .collect()
}

/// A PNG of `positions` (model space, mm) from each of `YAWS`, `side` pixels per view: a row of
/// clay, and under it a row in `colours` (rgb per vertex) if given.
pub fn turned_png(model: &MorphableModel, positions: &[f32], colours: Option<&[f32]>, side: usize) -> Vec<u8> {
    let n = model.n_vertices();
    let normals = normals::forward_cpu(positions, model.triangles(), &Adjacency::new(n, model.triangles()), n);
    let (lo, hi) = positions.chunks(3).fold(([f32::MAX; 3], [f32::MIN; 3]), |(lo, hi), p| {
        (std::array::from_fn(|c| lo[c].min(p[c])), std::array::from_fn(|c| hi[c].max(p[c])))
    });
    let middle: [f32; 3] = std::array::from_fn(|c| (lo[c] + hi[c]) / 2.0);
    let f = 0.85 * side as f32 / (hi[1] - lo[1]).max(hi[0] - lo[0]).max(1e-3);
    let rows = if colours.is_some() { 2 } else { 1 };
    let width = side * YAWS.len();
    let mut rgb = vec![1.0f32; 3 * width * side * rows];
    for (column, &yaw) in YAWS.iter().enumerate() {
        // The model's middle at the view's centre.
        let pose = Pose::weak_from_angles(yaw, 0.0, 0.0, f, [0.0, 0.0]);
        let (camera_model, mut camera) = pose.camera();
        camera[3] = side as f32 / 2.0 - (camera[0] * middle[0] + camera[1] * middle[1] + camera[2] * middle[2]);
        camera[7] = side as f32 / 2.0 - (camera[4] * middle[0] + camera[5] * middle[1] + camera[6] * middle[2]);
        // The overlay's light, turning with the camera.
        let light = crate::report::overlay::light(&pose);
        let shade: Vec<f32> = normals.chunks(3).map(|nv| 0.25 + 0.75 * (0..3).map(|c| nv[c] * light[c]).sum::<f32>().max(0.0)).collect();
        let clay: Vec<f32> = shade.iter().flat_map(|s| [0.86, 0.84, 0.80].map(|c| c * s)).collect();
        let painted: Option<Vec<f32>> = colours.map(|col| col.chunks(3).zip(&shade).flat_map(|(rgb, s)| rgb.iter().map(move |c| c * (0.55 + 0.45 * s))).collect());
        for (row, colour) in std::iter::once(&clay).chain(painted.as_ref()).enumerate() {
            let shape = RasterShape { batch: 1, width: side, height: side };
            let drawn = render_batch(&Backend::Cpu, model.triangles(), n, shape, &RenderBatch { positions, colors: colour, camera_model, cameras: &camera });
            for y in 0..side {
                for x in 0..side {
                    let p = y * side + x;
                    if drawn.raster.tri[p] > 0 {
                        let q = (row * side + y) * width + column * side + x;
                        for c in 0..3 {
                            rgb[3 * q + c] = drawn.color[3 * p + c].clamp(0.0, 1.0);
                        }
                    }
                }
            }
        }
    }
    png_bytes(&rgb, width, side * rows)
}
