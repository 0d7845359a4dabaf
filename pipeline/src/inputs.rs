//! Real inputs: image folders with 68-point iBUG `.pts` landmarks (300-W's format).
//!
//! Layouts: a folder of images, each its own subject; or a folder of sub-folders, each one
//! subject — a clip of numbered frames or a multi-view set — whose frames share an identity.
//! Each face is cropped square around its landmarks (the papers crop by landmarks), resized to
//! the scene's size, and the crop transform is kept so outputs map back to the original image.
//! A missing or undecodable image, or an image without landmarks, is skipped and listed; a
//! `.pts` file that is there but wrong is an error naming its file and line.

use crate::outputs::parse_pts;
use anyhow::Context;
use faceforge_components::Crop;
use faceforge_kernels::sample::{self, SampleShape};
use faceforge_model::MorphableModel;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Image files taken from a folder (by extension, case-insensitive).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FolderLayout {
    /// `Subjects` when the folder holds sub-folders with images, else `Images`.
    #[default]
    Auto,
    /// Every image is its own subject.
    Images,
    /// Every sub-folder is one subject (a clip or a multi-view set), its images the frames in
    /// name order; images beside the sub-folders are subjects of their own.
    Subjects,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolderSpec {
    /// The folder of images (relative paths from the working directory).
    pub path: PathBuf,
    /// A folder holding the `.pts` files under the same relative names; by default each image's
    /// landmarks are next to it (`face.png` → `face.pts`).
    pub landmarks: Option<PathBuf>,
    pub layout: FolderLayout,
    /// The square crop's side in pixels after resizing.
    pub size: usize,
    /// The crop's side as a multiple of the landmarks' bounding box's larger side.
    pub crop_scale: f32,
    /// Skip images without landmarks (a fit needs them). false: such an image is used whole,
    /// its centred square (`faceforge infer`, whose network finds the landmarks itself).
    pub require_landmarks: bool,
}

impl Default for FolderSpec {
    fn default() -> Self {
        Self { path: PathBuf::new(), landmarks: None, layout: FolderLayout::Auto, size: 224, crop_scale: 1.6, require_landmarks: true }
    }
}

/// One input image, cropped and ready to become a frame.
#[derive(Clone, Debug)]
pub struct LoadedFrame {
    pub name: String,
    pub subject: String,
    pub source: PathBuf,
    /// rgb, row-major, [0, 1], size × size.
    pub rgb: Vec<f32>,
    pub size: usize,
    /// In crop pixels (empty when the image had none and was used whole).
    pub landmarks: Vec<[f32; 2]>,
    pub crop: Crop,
}

/// An input left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    pub file: PathBuf,
    pub reason: String,
}

fn is_image(path: &Path) -> bool {
    path.is_file() && path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).with_context(|| format!("reading the image folder {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    Ok(entries)
}

/// A name safe for output files: letters, digits, `-`, `_`, `.`; anything else becomes `_`.
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// The (subject, image) pairs of a folder, in order.
fn list(spec: &FolderSpec) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = sorted_entries(&spec.path)?;
    let folders: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let layout = match spec.layout {
        FolderLayout::Auto if folders.iter().any(|d| sorted_entries(d).is_ok_and(|e| e.iter().any(|p| is_image(p)))) => FolderLayout::Subjects,
        FolderLayout::Auto => FolderLayout::Images,
        other => other,
    };
    let stem = |p: &Path| file_safe(&p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    let images: Vec<(String, PathBuf)> = match layout {
        FolderLayout::Subjects => {
            // Images beside the sub-folders are subjects of their own.
            let mut out: Vec<(String, PathBuf)> = entries.iter().filter(|p| is_image(p)).map(|p| (stem(p), p.clone())).collect();
            for dir in folders {
                for image in sorted_entries(dir)?.into_iter().filter(|p| is_image(p)) {
                    out.push((stem(dir), image));
                }
            }
            out
        }
        _ => entries.into_iter().filter(|p| is_image(p)).map(|p| (stem(&p), p)).collect(),
    };
    if images.is_empty() {
        anyhow::bail!("{} holds no images ({})", spec.path.display(), IMAGE_EXTENSIONS.join(", "));
    }
    Ok(images)
}

/// Where an image's landmarks are.
fn pts_path(spec: &FolderSpec, image: &Path) -> PathBuf {
    match &spec.landmarks {
        Some(dir) => dir.join(image.strip_prefix(&spec.path).unwrap_or(image)).with_extension("pts"),
        None => image.with_extension("pts"),
    }
}

/// The square crop around the landmarks: side = `crop_scale` × the box's larger side, centred
/// on the box, mapped to `size` pixels.
pub fn crop_for(landmarks: &[[f32; 2]], size: usize, crop_scale: f32) -> ([f32; 2], f32) {
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for p in landmarks {
        for c in 0..2 {
            lo[c] = lo[c].min(p[c]);
            hi[c] = hi[c].max(p[c]);
        }
    }
    let side = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1.0) * crop_scale;
    let centre = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    ([centre[0] - side / 2.0, centre[1] - side / 2.0], size as f32 / side)
}

/// The crop of an rgb image (bilinear, black outside; the `sample` op): crop pixel (x, y) shows
/// the original at (x + ½) / scale + offset, pixel centres at i + ½ in both.
pub fn resample(rgb: &[f32], width: usize, height: usize, offset: [f32; 2], scale: f32, size: usize) -> Vec<f32> {
    let positions: Vec<f32> = (0..size * size).flat_map(|i| [((i % size) as f32 + 0.5) / scale + offset[0], ((i / size) as f32 + 0.5) / scale + offset[1]]).collect();
    sample::forward_cpu(SampleShape { batch: 1, width, height, channels: 3, points: size * size }, rgb, &positions)
}

/// Loads every image of the folder: the frames, and what was skipped. Errors only for what the
/// user must fix: an unreadable folder, a `.pts` file that is present but wrong.
pub fn load(spec: &FolderSpec, model: &MorphableModel) -> anyhow::Result<(Vec<LoadedFrame>, Vec<Skipped>)> {
    if spec.size == 0 || !(spec.crop_scale > 0.0 && spec.crop_scale.is_finite()) {
        anyhow::bail!("data.Folder: `size` must be at least 1 and `crop_scale` a positive number (got {} and {})", spec.size, spec.crop_scale);
    }
    let (mut frames, mut skipped) = (Vec::new(), Vec::new());
    for (subject, image_path) in list(spec)? {
        let pts = pts_path(spec, &image_path);
        let points = if pts.exists() {
            let text = std::fs::read_to_string(&pts).with_context(|| format!("reading {}", pts.display()))?;
            let points = parse_pts(&pts.display().to_string(), &text)?;
            if points.len() != model.landmarks().len() {
                anyhow::bail!("{}: {} landmarks, but the model {} has {}", pts.display(), points.len(), model.origin(), model.landmarks().len());
            }
            points
        } else if spec.require_landmarks {
            skipped.push(Skipped { file: image_path, reason: format!("no landmarks ({} not found)", pts.display()) });
            continue;
        } else {
            Vec::new()
        };
        let decoded = match image::open(&image_path) {
            Ok(im) => im.to_rgb8(),
            Err(e) => {
                skipped.push(Skipped { file: image_path, reason: format!("cannot decode the image: {e}") });
                continue;
            }
        };
        let (width, height) = (decoded.width() as usize, decoded.height() as usize);
        let rgb: Vec<f32> = decoded.into_raw().iter().map(|&b| b as f32 / 255.0).collect();
        let (offset, scale) = if points.is_empty() {
            let side = width.min(height) as f32;
            ([(width as f32 - side) / 2.0, (height as f32 - side) / 2.0], spec.size as f32 / side)
        } else {
            crop_for(&points, spec.size, spec.crop_scale)
        };
        let stem = file_safe(&image_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        let mut name = if subject == stem { stem } else { format!("{subject}_{stem}") };
        // `a.png` and `a.jpg` would write the same outputs: the second keeps its extension.
        if frames.iter().any(|f: &LoadedFrame| f.name == name) {
            name = format!("{name}_{}", image_path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default());
        }
        frames.push(LoadedFrame {
            name,
            subject,
            rgb: resample(&rgb, width, height, offset, scale, spec.size),
            size: spec.size,
            landmarks: points.iter().map(|p| [(p[0] - offset[0]) * scale, (p[1] - offset[1]) * scale]).collect(),
            crop: Crop { offset, scale, original_size: [width, height], source: image_path.display().to_string() },
            source: image_path,
        });
    }
    Ok((frames, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_is_square_around_the_landmarks_and_maps_back() {
        // A box 40 × 20 at (100, 50): side 1.5 × 40 = 60 around the centre (120, 60), to 120 px.
        let (offset, scale) = crop_for(&[[100.0, 50.0], [140.0, 70.0]], 120, 1.5);
        assert_eq!((offset, scale), ([90.0, 30.0], 2.0));
        let crop = Crop { offset, scale, original_size: [300, 200], source: String::new() };
        let p = [131.5, 57.25];
        let back = crop.to_original([(p[0] - offset[0]) * scale, (p[1] - offset[1]) * scale]);
        assert!((back[0] - p[0]).abs() < 1e-4 && (back[1] - p[1]).abs() < 1e-4);
    }

    #[test]
    fn resampling_at_scale_one_is_a_shift() {
        let (w, h) = (6, 5);
        let rgb: Vec<f32> = (0..3 * w * h).map(|i| (i % 17) as f32 / 16.0).collect();
        let out = resample(&rgb, w, h, [2.0, 1.0], 1.0, 3);
        for y in 0..3 {
            for x in 0..3 {
                for c in 0..3 {
                    assert!((out[3 * (y * 3 + x) + c] - rgb[3 * ((y + 1) * w + x + 2) + c]).abs() < 1e-6);
                }
            }
        }
        // Outside the image: black.
        assert!(resample(&rgb, w, h, [100.0, 100.0], 1.0, 2).iter().all(|v| *v == 0.0));
    }
}
