//! Real inputs: photos and image folders, with landmarks from the built-in detector
//! (`faceforge-detect`: BlazeFace + FaceMesh, mapped to the 68 iBUG points) or from 68-point
//! iBUG `.pts` files (300-W's format) beside them.
//!
//! Layouts: a folder of images, each its own subject; or a folder of sub-folders, each one
//! subject — a clip of numbered frames or a multi-view set — whose frames share an identity.
//! Each face is cropped square around its landmarks (the papers crop by landmarks), resized to
//! the scene's size, and the crop transform is kept so outputs map back to the original image.
//! One bad input never stops the rest: an undecodable image, an image without a face, a `.pts`
//! that cannot be read, has a point that is not finite or lies outside the image, or has the
//! wrong count is skipped and listed with the file, the line and the reason (`strict: true`
//! makes each an error instead).

use crate::io::outputs::parse_pts_lines;
use crate::run::clock;
use crate::io::video::{self, FrameSelection};
use anyhow::Context;
use faceforge_components::Crop;
use faceforge_detect::DetectOptions;
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

/// Where a folder's landmarks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LandmarkSource {
    /// The image's `.pts` file when there is one, else the detector.
    #[default]
    Auto,
    /// `.pts` files only; an image without one is skipped (or used whole, see
    /// `require_landmarks`).
    Files,
    /// The detector, whatever files lie beside the images.
    Detect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolderSpec {
    /// A folder of images, or one image file (relative paths from the working directory).
    pub path: PathBuf,
    /// More images or folders, read after `path` (`faceforge reconstruct a.jpg b.jpg`).
    pub also: Vec<PathBuf>,
    /// Where the landmarks come from: `.pts` files, the built-in detector, or the file when
    /// there is one and the detector otherwise.
    pub landmarks: LandmarkSource,
    /// A folder holding the `.pts` files under the same relative names; by default each image's
    /// landmarks are next to it (`face.png` → `face.pts`).
    pub pts_dir: Option<PathBuf>,
    /// The detector's thresholds and how many faces per image: 1 (the best-scoring) by default;
    /// more makes every face above `min_score` a subject of its own.
    pub detect: DetectOptions,
    pub layout: FolderLayout,
    /// The square crop's side in pixels after resizing.
    pub size: usize,
    /// The crop's side as a multiple of the landmarks' bounding box's larger side.
    pub crop_scale: f32,
    /// Skip images without landmarks (a fit needs them). false: such an image is used whole,
    /// its centred square (`faceforge infer`, whose network finds the landmarks itself).
    pub require_landmarks: bool,
    /// Stop at the first bad input instead of skipping it.
    pub strict: bool,
    /// Which frames of a video input to read (every N-th, at most M).
    pub video: FrameSelection,
}

/// A video clip as the data (`data: Video(path: "clip.mp4", every: 2, max_frames: 300)`): one
/// subject, its frames in order, the face tracked from frame to frame (docs/io.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoSpec {
    pub path: PathBuf,
    pub every: u32,
    pub max_frames: u32,
    pub detect: DetectOptions,
    pub size: usize,
    pub crop_scale: f32,
    pub strict: bool,
}

impl Default for VideoSpec {
    fn default() -> Self {
        let folder = FolderSpec::default();
        Self { path: PathBuf::new(), every: 1, max_frames: 0, detect: folder.detect, size: folder.size, crop_scale: folder.crop_scale, strict: false }
    }
}

impl VideoSpec {
    /// The same input as a folder spec naming the clip.
    pub fn folder(&self) -> FolderSpec {
        FolderSpec {
            path: self.path.clone(),
            landmarks: LandmarkSource::Detect,
            detect: self.detect,
            size: self.size,
            crop_scale: self.crop_scale,
            strict: self.strict,
            video: FrameSelection { every: self.every, max_frames: self.max_frames },
            ..FolderSpec::default()
        }
    }
}

impl Default for FolderSpec {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            also: Vec::new(),
            landmarks: LandmarkSource::Auto,
            pts_dir: None,
            detect: DetectOptions::default(),
            layout: FolderLayout::Auto,
            size: 224,
            crop_scale: 1.6,
            require_landmarks: true,
            strict: false,
            video: FrameSelection::default(),
        }
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
    /// The detector's 468 points in crop pixels, when the landmarks came from it.
    pub dense: Option<faceforge_components::DenseLandmarks>,
    pub crop: Crop,
    /// A video frame's time in its clip.
    pub seconds: Option<f64>,
    /// The truth `faceforge synth` wrote beside the image (`NAME.ron`), its pose moved into the
    /// crop: a folder of synthetic faces is measured like synthetic data.
    pub truth: Option<faceforge_components::GroundTruth>,
}

/// An input left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub file: PathBuf,
    pub reason: String,
}

fn is_image(path: &Path) -> bool {
    path.is_file() && path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// An image or a video clip (a subject of its own).
fn is_input(path: &Path) -> bool {
    is_image(path) || video::is_video(path)
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

/// One image to read: its subject, and whether it is a subject by itself (a loose image) or a
/// frame of a sub-folder's subject.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub subject: String,
    pub image: PathBuf,
    pub alone: bool,
}

/// The images of one input, in order: an image file is a subject; a folder is listed by its
/// layout.
fn list_one(path: &Path, layout: FolderLayout) -> anyhow::Result<Vec<Listed>> {
    let alone = |p: &Path| Listed { subject: safe_stem(p), image: p.to_path_buf(), alone: true };
    if path.is_file() {
        return Ok(vec![alone(path)]);
    }
    let entries = sorted_entries(path)?;
    let folders: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let layout = match layout {
        FolderLayout::Auto if folders.iter().any(|d| sorted_entries(d).is_ok_and(|e| e.iter().any(|p| is_image(p)))) => FolderLayout::Subjects,
        FolderLayout::Auto => FolderLayout::Images,
        other => other,
    };
    Ok(match layout {
        FolderLayout::Subjects => {
            // Images beside the sub-folders are subjects of their own.
            let mut out: Vec<Listed> = entries.iter().filter(|p| is_input(p)).map(|p| alone(p)).collect();
            for dir in folders {
                for image in sorted_entries(dir)?.into_iter().filter(|p| is_image(p)) {
                    out.push(Listed { subject: safe_stem(dir), image, alone: false });
                }
            }
            out
        }
        _ => entries.iter().filter(|p| is_input(p)).map(|p| alone(p)).collect(),
    })
}

/// The images of `path` and then of each of `also`. Two different people never share a subject
/// name (and so an identity): `a/photo.jpg` and `b/photo.jpg`, or `a.png` beside `a.jpg`, become
/// `photo` and `photo_2`.
pub(crate) fn list(spec: &FolderSpec) -> anyhow::Result<Vec<Listed>> {
    let mut images: Vec<Listed> = Vec::new();
    // Subject name → what it stands for: the image itself, or its sub-folder.
    let mut owners: Vec<(String, PathBuf)> = Vec::new();
    for path in std::iter::once(&spec.path).chain(&spec.also) {
        for mut listed in list_one(path, spec.layout)? {
            let owner = if listed.alone { listed.image.clone() } else { listed.image.parent().map(Path::to_path_buf).unwrap_or_default() };
            let base = listed.subject.clone();
            let mut n = 1;
            while let Some((_, other)) = owners.iter().find(|(name, _)| *name == listed.subject) {
                if *other == owner {
                    break;
                }
                n += 1;
                listed.subject = format!("{base}_{n}");
            }
            if !owners.iter().any(|(name, _)| *name == listed.subject) {
                owners.push((listed.subject.clone(), owner));
            }
            images.push(listed);
        }
    }
    if images.is_empty() {
        anyhow::bail!("{} holds no images ({}) or videos ({})", spec.path.display(), IMAGE_EXTENSIONS.join(", "), video::VIDEO_EXTENSIONS.join(", "));
    }
    Ok(images)
}

/// A frame's output name: a loose image's is its subject's; a sub-folder's frame's is the
/// subject's and its own stem.
pub(crate) fn frame_name(listed: &Listed) -> String {
    if listed.alone { listed.subject.clone() } else { format!("{}_{}", listed.subject, safe_stem(&listed.image)) }
}

/// An image's file stem, safe for output names.
pub(crate) fn safe_stem(path: &Path) -> String {
    file_safe(&path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

/// Where an image's landmarks are: beside it, or in `pts_dir` under its name relative to the
/// input it was listed from.
pub(crate) fn pts_path(spec: &FolderSpec, image: &Path) -> PathBuf {
    match &spec.pts_dir {
        Some(dir) => {
            let relative = std::iter::once(&spec.path).chain(&spec.also).find_map(|root| image.strip_prefix(root).ok().filter(|r| !r.as_os_str().is_empty()));
            dir.join(relative.or_else(|| image.file_name().map(Path::new)).unwrap_or(image)).with_extension("pts")
        }
        None => image.with_extension("pts"),
    }
}

/// Decodes an image file into 8-bit RGB, turned upright by its EXIF orientation (phone photos).
pub fn decode_image(path: &Path) -> anyhow::Result<image::RgbImage> {
    use image::ImageDecoder as _;
    let mut decoder = image::ImageReader::open(path)?.with_guessed_format()?.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut decoded = image::DynamicImage::from_decoder(decoder)?;
    decoded.apply_orientation(orientation);
    Ok(decoded.to_rgb8())
}

/// A `.pts` file's points, or why they cannot be used: unreadable, malformed, the wrong count,
/// or a point outside the `width × height` image (each naming the file, and the line where
/// there is one).
fn read_pts(pts: &Path, expected: usize, model: &str, width: u32, height: u32) -> Result<Vec<[f32; 2]>, String> {
    let text = std::fs::read_to_string(pts).map_err(|e| format!("{}: cannot read: {e}", pts.display()))?;
    let points = parse_pts_lines(&pts.display().to_string(), &text).map_err(|e| e.to_string())?;
    if points.len() != expected {
        return Err(format!("{}: {} landmarks, but the model {model} has {expected}", pts.display(), points.len()));
    }
    if let Some((p, line)) = points.iter().find(|(p, _)| !(0.0..=width as f32).contains(&p[0]) || !(0.0..=height as f32).contains(&p[1])) {
        return Err(format!("{}:{line}: the point ({}, {}) lies outside the {width} × {height} image", pts.display(), p[0], p[1]));
    }
    Ok(points.into_iter().map(|(p, _)| p).collect())
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

/// One face's landmarks in the original image: the 68 points, and the detector's 468 when they
/// came from it.
type FoundFace = (Vec<[f32; 2]>, Option<faceforge_components::DenseLandmarks>);

/// The faces of one decoded image, by the spec's landmark source; `Err(reason)` skips the
/// image (`file`, the reason).
fn faces_of(spec: &FolderSpec, model: &MorphableModel, image_path: &Path, decoded: &image::RgbImage) -> anyhow::Result<Result<Vec<FoundFace>, (PathBuf, String)>> {
    let pts = pts_path(spec, image_path);
    let from_file = match spec.landmarks {
        LandmarkSource::Files => true,
        LandmarkSource::Detect => false,
        LandmarkSource::Auto => pts.exists(),
    };
    if from_file {
        if !pts.exists() {
            return Ok(if spec.require_landmarks { Err((image_path.to_path_buf(), format!("no landmarks ({} not found)", pts.display()))) } else { Ok(vec![(Vec::new(), None)]) });
        }
        return Ok(read_pts(&pts, model.landmarks().len(), model.origin(), decoded.width(), decoded.height()).map(|points| vec![(points, None)]).map_err(|reason| (pts, reason)));
    }
    if model.landmarks().len() != faceforge_detect::ibug::FROM_FACEMESH.len() {
        anyhow::bail!("the detector gives the 68 iBUG landmarks, but the model {} has {}: give .pts files (`landmarks: Files`)", model.origin(), model.landmarks().len());
    }
    let found = faceforge_detect::shared()?.faces(decoded, &spec.detect).with_context(|| format!("detecting faces in {}", image_path.display()))?;
    if found.is_empty() {
        return Ok(Err((image_path.to_path_buf(), format!("no face found (detector score ≥ {}, presence ≥ {})", spec.detect.min_score, spec.detect.min_presence))));
    }
    Ok(Ok(found.iter().map(|f| (f.ibug68(), Some(faceforge_components::DenseLandmarks { points: f.points.clone(), score: f.detection.score, depth: true }))).collect()))
}

/// A decoded picture in [0, 1] and where it came from (a file, or a clip's frame).
/// A frame cut from an image already in memory, as `load` cuts a file's (the folder's crop
/// around `points`, at `spec.size`).
pub fn frame_from_image(spec: &FolderSpec, name: String, subject: String, source: &Path, image: image::RgbImage, points: &[[f32; 2]]) -> LoadedFrame {
    Decoded::new(image, source).crop(spec, name, subject, points, None)
}

struct Decoded {
    rgb: Vec<f32>,
    width: usize,
    height: usize,
    source: PathBuf,
}

impl Decoded {
    fn new(image: image::RgbImage, source: &Path) -> Self {
        let (width, height) = (image.width() as usize, image.height() as usize);
        Self { rgb: image.into_raw().iter().map(|&b| b as f32 / 255.0).collect(), width, height, source: source.to_path_buf() }
    }

    /// The frame cut around one face's landmarks (the centred square when there are none).
    fn crop(&self, spec: &FolderSpec, name: String, subject: String, points: &[[f32; 2]], dense: Option<faceforge_components::DenseLandmarks>) -> LoadedFrame {
        let (width, height) = (self.width, self.height);
        let (offset, scale) = if points.is_empty() {
            let side = width.min(height) as f32;
            ([(width as f32 - side) / 2.0, (height as f32 - side) / 2.0], spec.size as f32 / side)
        } else {
            crop_for(points, spec.size, spec.crop_scale)
        };
        let to_crop = |p: [f32; 2]| [(p[0] - offset[0]) * scale, (p[1] - offset[1]) * scale];
        LoadedFrame {
            name,
            subject,
            rgb: resample(&self.rgb, width, height, offset, scale, spec.size),
            size: spec.size,
            landmarks: points.iter().map(|&p| to_crop(p)).collect(),
            dense: dense.map(|d| faceforge_components::DenseLandmarks {
                points: d.points.iter().map(|p| { let [x, y] = to_crop([p[0], p[1]]); [x, y, p[2] * scale] }).collect(),
                score: d.score,
                depth: d.depth,
            }),
            crop: Crop { offset, scale, original_size: [width, height], source: self.source.display().to_string() },
            source: self.source.clone(),
            seconds: None,
            truth: None,
        }
    }
}

/// A clip's frames, handed to `emit` one by one as they are decoded: the face tracked from frame
/// to frame, each frame cut around it. A frame where the face is lost is skipped and listed,
/// never invented.
pub(crate) fn stream_video(
    spec: &FolderSpec,
    listed: &Listed,
    emit: &mut impl FnMut(LoadedFrame) -> anyhow::Result<()>,
    skip: &mut impl FnMut(PathBuf, String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let clip = &listed.image;
    let (info, decoded) = match video::decode(clip, spec.video) {
        Ok(started) => started,
        Err(e) => return skip(clip.clone(), format!("{e:#}")),
    };
    let detector = faceforge_detect::shared()?;
    let mut tracker = faceforge_detect::Tracker::new(spec.detect);
    let (mut found, mut redetected) = (0usize, 0usize);
    let mut waited = std::time::Instant::now();
    for frame in decoded {
        clock::add(clock::Stage::Decode, waited.elapsed());
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return skip(clip.clone(), format!("{e:#}")),
        };
        let name = format!("{}_f{:05}", listed.subject, frame.index);
        let source = PathBuf::from(format!("{}#{}", clip.display(), frame.index));
        match tracker.next(detector, &frame.image).with_context(|| format!("tracking the face in {}", source.display()))? {
            faceforge_detect::Tracked::Found { face, detected } => {
                redetected += usize::from(detected && found > 0);
                found += 1;
                let dense = faceforge_components::DenseLandmarks { points: face.points.clone(), score: face.detection.score, depth: true };
                let cut = clock::time(clock::Stage::Decode, || Decoded::new(frame.image, &source).crop(spec, name, listed.subject.clone(), &face.ibug68(), Some(dense)));
                emit(LoadedFrame { seconds: Some(frame.seconds), ..cut })?;
            }
            faceforge_detect::Tracked::Lost => skip(source, format!("frame {} ({:.2} s): no face (lost by the tracker, not found by the detector)", frame.index, frame.seconds))?,
        }
        waited = std::time::Instant::now();
    }
    clock::add(clock::Stage::Detect, tracker.spent.detect);
    clock::add(clock::Stage::Landmarks, tracker.spent.landmarks);
    tracing::info!("{}: {}×{} at {:.2} fps, {found} frames with a face, the detector run again {redetected} times", clip.display(), info.width, info.height, info.fps);
    Ok(())
}

/// Loads every image: the frames, and what was skipped with the reason. Errors only for what
/// stops everything (an unreadable folder, a model without the 68 landmarks), or for any bad
/// input when `strict`.
pub fn load(spec: &FolderSpec, model: &MorphableModel) -> anyhow::Result<(Vec<LoadedFrame>, Vec<Skipped>)> {
    load_listed(spec, &list(spec)?, model)
}

/// The inputs of a folder grouped by subject, sorted by the subject's name: the units a run
/// fits one at a time and a shard takes whole (a clip or a multi-view set is never split).
pub(crate) fn subjects(spec: &FolderSpec) -> anyhow::Result<Vec<(String, Vec<Listed>)>> {
    let mut subjects: std::collections::BTreeMap<String, Vec<Listed>> = std::collections::BTreeMap::new();
    for listed in list(spec)? {
        subjects.entry(listed.subject.clone()).or_default().push(listed);
    }
    Ok(subjects.into_iter().collect())
}

/// `load` of the listed images only (one subject's, when a run goes subject by subject).
pub(crate) fn load_listed(spec: &FolderSpec, listed: &[Listed], model: &MorphableModel) -> anyhow::Result<(Vec<LoadedFrame>, Vec<Skipped>)> {
    let mut frames = Vec::new();
    let skipped = stream_listed(spec, listed, model, &mut |f| {
        frames.push(f);
        Ok(())
    })?;
    Ok((frames, skipped))
}

/// `load_listed` frame by frame: each frame goes to `emit` as it is cut (a training's frame cache
/// writes them to disk, so a folder of any size passes through flat memory); returns what was
/// skipped.
pub(crate) fn stream_listed(spec: &FolderSpec, listed: &[Listed], model: &MorphableModel, emit: &mut impl FnMut(LoadedFrame) -> anyhow::Result<()>) -> anyhow::Result<Vec<Skipped>> {
    if spec.size == 0 || !(spec.crop_scale > 0.0 && spec.crop_scale.is_finite()) {
        anyhow::bail!("data.Folder: `size` must be at least 1 and `crop_scale` a positive number (got {} and {})", spec.size, spec.crop_scale);
    }
    let mut skipped = Vec::new();
    // The names given so far in this subject's images (a clip's `x.png` beside `x.jpg`).
    let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut skip = |file: PathBuf, reason: String| -> anyhow::Result<()> {
        if spec.strict {
            anyhow::bail!("{} (strict: every input must be usable)", if reason.contains(&file.display().to_string()) { reason } else { format!("{}: {reason}", file.display()) });
        }
        skipped.push(Skipped { file, reason });
        Ok(())
    };
    for listed in listed {
        if video::is_video(&listed.image) {
            stream_video(spec, listed, emit, &mut skip)?;
            continue;
        }
        let image_path = listed.image.clone();
        let decoded = match decode_image(&image_path) {
            Ok(im) => im,
            Err(e) => {
                skip(image_path, format!("cannot decode the image: {e}"))?;
                continue;
            }
        };
        let faces = match faces_of(spec, model, &image_path, &decoded)? {
            Ok(faces) => faces,
            Err((file, reason)) => {
                skip(file, reason)?;
                continue;
            }
        };
        let base_name = frame_name(listed);
        let several = spec.detect.max_faces > 1 && faces.iter().any(|(_, dense)| dense.is_some());
        let image = Decoded::new(decoded, &image_path);
        let truth = if faces.len() == 1 { truth_beside(&image_path, model) } else { None };
        for (k, (points, dense)) in faces.into_iter().enumerate() {
            // Several faces of one image: each its own subject.
            let subject = if several { format!("{}_face{k}", listed.subject) } else { listed.subject.clone() };
            let mut name = if several { format!("{base_name}_face{k}") } else { base_name.clone() };
            // A clip's `x.png` and `x.jpg` would write the same outputs: the second keeps its
            // extension.
            if names.contains(&name) {
                name = format!("{name}_{}", image_path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default());
            }
            names.insert(name.clone());
            let mut frame = image.crop(spec, name, subject, &points, dense);
            frame.truth = truth.as_ref().map(|t| faceforge_components::GroundTruth { pose: t.pose.as_ref().map(|p| pose_in_crop(p, &frame.crop)), ..t.clone() });
            emit(frame)?;
        }
    }
    Ok(skipped)
}

/// The ground truth `faceforge synth` wrote beside an image (`NAME.ron`), when there is one for
/// this model; another `.ron` there is left alone.
fn truth_beside(image: &Path, model: &MorphableModel) -> Option<faceforge_components::GroundTruth> {
    let path = image.with_extension("ron");
    let text = std::fs::read_to_string(&path).ok()?;
    let truth: crate::io::synth::SynthTruth = match ron::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!("{} is not the ground truth of a synthetic face ({e}); not measured", path.display());
            return None;
        }
    };
    let c = &truth.coeffs;
    if (c.id.len(), c.exp.len(), c.tex.len()) != (model.n_id(), model.n_exp(), model.n_albedo()) {
        tracing::warn!("{}: ground truth of another model ({} / {} / {} components, {} has {} / {} / {}); not measured", path.display(), c.id.len(), c.exp.len(), c.tex.len(), model.origin(), model.n_id(), model.n_exp(), model.n_albedo());
        return None;
    }
    Some(faceforge_components::GroundTruth { coeffs: truth.coeffs, pose: Some(truth.pose), sh: Some(truth.sh) })
}

/// A pose in an image's pixels, moved into a crop of it (`(p − offset) · scale`).
fn pose_in_crop(pose: &faceforge_components::Pose, crop: &Crop) -> faceforge_components::Pose {
    use faceforge_components::Pose;
    let (o, s) = (crop.offset, crop.scale);
    match pose {
        Pose::WeakPerspective { t } => Pose::WeakPerspective { t: [0, 1].map(|r| [t[r][0] * s, t[r][1] * s, t[r][2] * s, (t[r][3] - o[r]) * s]) },
        // K's rows: u and v move by the offset (times the third row, w) and scale.
        Pose::Pinhole { k, r, t } => {
            let mut k2 = *k;
            for row in 0..2 {
                for c in 0..3 {
                    k2[3 * row + c] = (k[3 * row + c] - o[row] * k[6 + c]) * s;
                }
            }
            Pose::Pinhole { k: k2, r: *r, t: *t }
        }
    }
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
    fn different_people_never_share_a_subject_name() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["a/photo.png", "b/photo.png", "c/x.png", "c/x.jpg"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"listed, not decoded").unwrap();
        }
        let spec = FolderSpec { path: dir.path().join("a/photo.png"), also: vec![dir.path().join("b/photo.png"), dir.path().join("c")], ..FolderSpec::default() };
        let listed = list(&spec).unwrap();
        let subjects: Vec<&str> = listed.iter().map(|l| l.subject.as_str()).collect();
        assert_eq!(subjects, ["photo", "photo_2", "x", "x_2"]);
        assert_eq!(listed.iter().map(frame_name).collect::<Vec<_>>(), ["photo", "photo_2", "x", "x_2"]);
        // A clip's frames share their folder's subject.
        let clip = FolderSpec { path: dir.path().to_path_buf(), layout: FolderLayout::Subjects, ..FolderSpec::default() };
        let frames: Vec<(String, String)> = list(&clip).unwrap().iter().map(|l| (l.subject.clone(), frame_name(l))).collect();
        assert_eq!(frames[..3], [("a".into(), "a_photo".into()), ("b".into(), "b_photo".into()), ("c".into(), "c_x".into())]);
        assert_eq!(frames[3].0, "c", "x.jpg and x.png of one clip: one subject (`load` names the second frame c_x_png)");
    }

    #[test]
    fn a_photo_is_turned_upright_by_its_exif_orientation() {
        // 48 × 32 stored, left half red, EXIF orientation 6 ("turn 90° clockwise to show"),
        // written by Pillow for this test: shown 32 × 48 with the red half on top.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exif_orientation_6.jpg");
        let image = decode_image(&path).unwrap();
        assert_eq!((image.width(), image.height()), (32, 48));
        let (top, bottom) = (image.get_pixel(16, 6), image.get_pixel(16, 41));
        assert!(top[0] > 200 && top[1] < 60, "top {top:?}");
        assert!(bottom[0] < 60, "bottom {bottom:?}");
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
