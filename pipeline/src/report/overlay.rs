//! A frame cut from a larger photo, seen again at the photo's own resolution around the face
//! (`SourceView`): the overlay draws the fitted mesh as lit grey clay over the original pixels
//! with the fitted landmarks in green and the targets in red, and the OBJ's texture is unwrapped
//! from it. The crop the fit saw is small (160–224 px); at that size a face comes out tiny and
//! blurred, so both use between `MIN_SIDE` and `MAX_SIDE` pixels of the photo.

use crate::io::inputs::{decode_image, resample};
use faceforge_components::{Crop, Image, Pose};
use faceforge_kernels::normals::{self, Adjacency};
use faceforge_kernels::project::CameraModel;
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::Backend;
use faceforge_model::MorphableModel;
use faceforge_systems::render::{render_batch, RenderBatch};

/// The overlay's side in pixels: the crop's size in the original photo, kept within these.
pub const MIN_SIDE: usize = 384;
pub const MAX_SIDE: usize = 1024;

/// The square of the photo the crop covers, at the photo's resolution (within the bounds), and
/// its magnification over the crop: crop pixel p is view pixel k · p.
pub struct SourceView {
    pub image: Image,
    pub k: f32,
}

/// The photo behind `crop` again, around the face; None when it cannot be read.
pub fn source_view(crop: &Crop, crop_size: usize) -> Option<SourceView> {
    let photo = decode_image(std::path::Path::new(&crop.source)).ok()?;
    let (width, height) = (photo.width() as usize, photo.height() as usize);
    let photo_rgb: Vec<f32> = photo.into_raw().iter().map(|&b| b as f32 / 255.0).collect();
    let side_in_photo = crop_size as f32 / crop.scale;
    let side = (side_in_photo.round() as usize).clamp(MIN_SIDE, MAX_SIDE);
    let rgb = resample(&photo_rgb, width, height, crop.offset, side as f32 / side_in_photo, side);
    Some(SourceView { image: Image { width: side, height: side, rgb }, k: side as f32 / crop_size as f32 })
}

/// `pose` for the image magnified by `k` (crop pixels → view pixels).
pub fn magnified(pose: &Pose, k: f32) -> Pose {
    let (model, mut p) = pose.camera();
    let scaled = match model {
        CameraModel::WeakPerspective => 8,
        CameraModel::Pinhole => 4,
    };
    p[..scaled].iter_mut().for_each(|v| *v *= k);
    pose.from_camera(&p)
}

/// A light from the front, a little above and to the left of the camera, in model coordinates.
pub(crate) fn light(pose: &Pose) -> [f32; 3] {
    let (model, p) = pose.camera();
    let unit = |v: [f32; 3]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.map(|x| x / n)
    };
    let (right, up, towards) = match model {
        // Rows f·R₀ and −f·R₁ (v down): R₂ = R₀ × R₁ faces the camera.
        CameraModel::WeakPerspective => {
            let (r0, r1) = (unit([p[0], p[1], p[2]]), unit([-p[4], -p[5], -p[6]]));
            (r0, r1, [r0[1] * r1[2] - r0[2] * r1[1], r0[2] * r1[0] - r0[0] * r1[2], r0[0] * r1[1] - r0[1] * r1[0]])
        }
        // The camera looks along +z with y down.
        CameraModel::Pinhole => (unit([p[4], p[5], p[6]]), unit([-p[7], -p[8], -p[9]]), unit([-p[10], -p[11], -p[12]])),
    };
    unit(std::array::from_fn(|i| 0.85 * towards[i] + 0.35 * up[i] - 0.3 * right[i]))
}

fn dot(x: i64, y: i64, side: usize, radius: i64, colour: [f32; 3], rgb: &mut [f32]) {
    for dy in -radius..=radius {
        for dx in -radius..=radius {
            let (px, py) = (x + dx, y + dy);
            if dx * dx + dy * dy <= radius * radius && px >= 0 && py >= 0 && (px as usize) < side && (py as usize) < side {
                rgb[3 * (py as usize * side + px as usize)..][..3].copy_from_slice(&colour);
            }
        }
    }
}

/// The fitted mesh over the photo: `pose` and the landmarks are in the crop's pixels.
pub fn at_source(model: &MorphableModel, positions: &[f32], pose: &Pose, view: &SourceView, fitted: &[[f32; 2]], targets: &[[f32; 2]]) -> Image {
    let side = view.image.width;
    let mut rgb = view.image.rgb.clone();
    let n = model.n_vertices();
    let pose = magnified(pose, view.k);
    let towards = light(&pose);
    let (camera_model, camera) = pose.camera();
    let normals = normals::forward_cpu(positions, model.triangles(), &Adjacency::new(n, model.triangles()), n);
    let clay: Vec<f32> = normals
        .chunks(3)
        .flat_map(|nv| {
            let lit = 0.2 + 0.8 * (nv[0] * towards[0] + nv[1] * towards[1] + nv[2] * towards[2]).max(0.0);
            [0.85 * lit, 0.83 * lit, 0.80 * lit]
        })
        .collect();
    let shape = RasterShape { batch: 1, width: side, height: side };
    let drawn = render_batch(&Backend::Cpu, model.triangles(), n, shape, &RenderBatch { positions, colors: &clay, camera_model, cameras: &camera });
    for p in 0..side * side {
        if drawn.raster.tri[p] > 0 {
            for c in 0..3 {
                rgb[3 * p + c] = 0.3 * rgb[3 * p + c] + 0.7 * drawn.color[3 * p + c].clamp(0.0, 1.0);
            }
        }
    }
    let radius = (side as i64 / 250).max(2);
    for (points, colour, r) in [(targets, [0.95, 0.15, 0.1], radius), (fitted, [0.1, 1.0, 0.2], radius - 1)] {
        for q in points {
            dot((q[0] * view.k).floor() as i64, (q[1] * view.k).floor() as i64, side, r, colour, &mut rgb);
        }
    }
    Image { width: side, height: side, rgb }
}
