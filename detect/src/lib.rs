//! faceforge's front end: finds faces and their 468 FaceMesh points in a photo, the way
//! MediaPipe's face detection and face landmark graphs do, with Google's BlazeFace (short range)
//! and FaceMesh models (Apache-2.0; converted once to ONNX, `models/PROVENANCE.md`) run by
//! tract, in pure Rust. The models are compiled into the binary: nothing is read or downloaded
//! at run time.

pub mod blazeface;
pub mod facemesh;
pub mod ibug;
pub mod warp;

pub use blazeface::Detection;
pub use warp::RotatedRect;

use anyhow::Context;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tract_onnx::prelude::*;

const DETECTOR_ONNX: &[u8] = include_bytes!("../models/face_detection_short_range.onnx");
const LANDMARKER_ONNX: &[u8] = include_bytes!("../models/face_landmark.onnx");

/// A face: the detection, the crop the landmarker saw, its 468 points and its presence score.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Face {
    pub detection: Detection,
    /// The landmark crop in image pixels.
    pub roi: RotatedRect,
    /// FaceMesh's 468 points: x, y in image pixels, z (depth, towards the camera negative) in
    /// the same scale.
    pub points: Vec<[f32; 3]>,
    /// The landmarker's face-presence probability.
    pub presence: f32,
}

impl Face {
    /// The 68 iBUG points (image pixels).
    pub fn ibug68(&self) -> Vec<[f32; 2]> {
        ibug::from_facemesh(&self.points)
    }
}

/// Which faces [`FaceDetector::faces`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectOptions {
    /// Detections scoring below this are dropped (MediaPipe's 0.5).
    pub min_score: f32,
    /// Faces whose landmarker presence falls below this are dropped (MediaPipe's 0.5).
    pub min_presence: f32,
    /// At most this many faces, best-scoring first.
    pub max_faces: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self { min_score: 0.5, min_presence: 0.5, max_faces: 1 }
    }
}

type Plan = Arc<TypedRunnableModel>;

/// The two models, loaded and optimised once; `Sync`, so threads may share one.
pub struct FaceDetector {
    detector: Plan,
    landmarker: Plan,
    anchors: Vec<[f32; 2]>,
}

impl std::fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaceDetector(BlazeFace short range + FaceMesh)")
    }
}

fn load(name: &str, bytes: &[u8], side: usize) -> anyhow::Result<Plan> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .and_then(|m| m.with_input_fact(0, f32::fact([1, side, side, 3]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .with_context(|| format!("loading the built-in {name} model"))?;
    Ok(model)
}

fn run(plan: &Plan, side: usize, input: Vec<f32>) -> anyhow::Result<Vec<Vec<f32>>> {
    let tensor = Tensor::from_shape(&[1, side, side, 3], &input)?;
    let outputs = plan.run(tvec!(tensor.into()))?;
    outputs.iter().map(|o| Ok(o.to_plain_array_view::<f32>()?.iter().copied().collect())).collect()
}

impl FaceDetector {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            detector: load("face detection (BlazeFace short range)", DETECTOR_ONNX, blazeface::INPUT)?,
            landmarker: load("face landmark (FaceMesh)", LANDMARKER_ONNX, facemesh::INPUT)?,
            anchors: blazeface::anchors(),
        })
    }

    /// The detector on an input tensor (1 × 128 × 128 × 3, [-1, 1]): regressors (896 × 16) and
    /// score logits (896).
    pub fn run_detector(&self, input: Vec<f32>) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        let mut out = run(&self.detector, blazeface::INPUT, input)?.into_iter();
        Ok((out.next().context("detector: no regressors")?, out.next().context("detector: no scores")?))
    }

    /// The landmarker on an input tensor (1 × 192 × 192 × 3, [0, 1]): 468 × 3 crop-pixel
    /// coordinates and the presence logit.
    pub fn run_landmarker(&self, input: Vec<f32>) -> anyhow::Result<(Vec<f32>, f32)> {
        let mut out = run(&self.landmarker, facemesh::INPUT, input)?.into_iter();
        let points = out.next().context("landmarker: no points")?;
        let presence = out.next().and_then(|p| p.first().copied()).context("landmarker: no presence")?;
        Ok((points, presence))
    }

    /// Faces found by the detector scoring at least `min_score`, best first.
    pub fn detect(&self, image: &RgbImage, min_score: f32) -> anyhow::Result<Vec<Detection>> {
        let (regressors, logits) = self.run_detector(blazeface::input(image))?;
        let frame = blazeface::letterbox(image.width(), image.height());
        Ok(blazeface::suppress(blazeface::decode(&regressors, &logits, &self.anchors, &frame, min_score)))
    }

    /// The 468 points in a crop, in image pixels, and the presence probability.
    pub fn landmarks(&self, image: &RgbImage, roi: &RotatedRect) -> anyhow::Result<(Vec<[f32; 3]>, f32)> {
        let (raw, logit) = self.run_landmarker(facemesh::input(image, roi))?;
        Ok((facemesh::project(&raw, roi), 1.0 / (1.0 + (-logit).exp())))
    }

    /// The face whose landmarks the crop `roi` holds, when the landmarker finds it present.
    pub fn face_in(&self, image: &RgbImage, detection: Detection, roi: RotatedRect, min_presence: f32) -> anyhow::Result<Option<Face>> {
        let (points, presence) = self.landmarks(image, &roi)?;
        Ok((presence >= min_presence).then_some(Face { detection, roi, points, presence }))
    }

    /// Detection and landmarks: the faces the options ask for, best-scoring first.
    pub fn faces(&self, image: &RgbImage, options: &DetectOptions) -> anyhow::Result<Vec<Face>> {
        let mut faces = Vec::new();
        for detection in self.detect(image, options.min_score)?.into_iter().take(options.max_faces) {
            let roi = facemesh::roi_from_detection(&detection);
            faces.extend(self.face_in(image, detection, roi, options.min_presence)?);
        }
        Ok(faces)
    }
}

/// What the tracker made of a frame.
#[derive(Clone, Debug)]
pub enum Tracked {
    /// The face, and whether the detector had to find it (the first frame, or the landmarker lost
    /// it from the previous frame's crop).
    Found { face: Face, detected: bool },
    /// No face: neither the previous frame's crop nor the detector found one.
    Lost,
}

/// MediaPipe's tracking mode for a clip: the detector finds the face on the first frame; each
/// later frame's landmark crop comes from the previous frame's landmarks; when the landmarker's
/// presence score falls below `min_presence` the detector runs again. One face per clip (the
/// best-scoring).
#[derive(Debug, Default)]
pub struct Tracker {
    pub options: DetectOptions,
    previous: Option<Face>,
    /// Time spent so far in the detector and in the landmarker (for `faceforge bench video`).
    pub spent: TrackTimes,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TrackTimes {
    pub detect: std::time::Duration,
    pub landmarks: std::time::Duration,
}

impl Tracker {
    pub fn new(options: DetectOptions) -> Self {
        Self { options, previous: None, spent: TrackTimes::default() }
    }

    pub fn next(&mut self, detector: &FaceDetector, image: &RgbImage) -> anyhow::Result<Tracked> {
        if let Some(previous) = self.previous.take() {
            let roi = facemesh::roi_from_landmarks(&previous.points);
            if let Some(face) = self.face_in(detector, image, previous.detection, roi)? {
                self.previous = Some(face.clone());
                return Ok(Tracked::Found { face, detected: false });
            }
        }
        // `faces` with one face, timed in its two parts.
        let started = std::time::Instant::now();
        let best = detector.detect(image, self.options.min_score)?.into_iter().next();
        self.spent.detect += started.elapsed();
        let Some(detection) = best else { return Ok(Tracked::Lost) };
        let roi = facemesh::roi_from_detection(&detection);
        Ok(match self.face_in(detector, image, detection, roi)? {
            Some(face) => {
                self.previous = Some(face.clone());
                Tracked::Found { face, detected: true }
            }
            None => Tracked::Lost,
        })
    }

    /// `FaceDetector::face_in`, timed.
    fn face_in(&mut self, detector: &FaceDetector, image: &RgbImage, detection: Detection, roi: RotatedRect) -> anyhow::Result<Option<Face>> {
        let started = std::time::Instant::now();
        let found = detector.face_in(image, detection, roi, self.options.min_presence);
        self.spent.landmarks += started.elapsed();
        found
    }
}

static SHARED: std::sync::OnceLock<FaceDetector> = std::sync::OnceLock::new();

/// One detector for the whole process, loaded on first use (loading and optimising the two
/// models takes a fraction of a second; every later call reuses them).
pub fn shared() -> anyhow::Result<&'static FaceDetector> {
    if let Some(detector) = SHARED.get() {
        return Ok(detector);
    }
    let detector = FaceDetector::new()?;
    Ok(SHARED.get_or_init(|| detector))
}
