//! faceforge's ECS data: components (per frame and per subject) and resources (per run). Plain
//! data only: constructors and accessors, no pipeline logic.

use bevy_ecs::prelude::*;
use faceforge_model::MorphableModel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A subject (a person, or one clip or multi-view set of them); its frames point at it.
#[derive(Component, Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub id: u32,
    pub name: String,
}

/// One input frame of a subject.
#[derive(Component, Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub subject: Entity,
    pub subject_id: u32,
    /// Index within the subject's frames.
    pub index: u32,
    /// Name used for output files, e.g. `s000_f001`.
    pub name: String,
}

/// Morphable-model coefficients, in the model's units (α_k ~ N(0, σ_k²)).
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Coeffs {
    pub id: Vec<f32>,
    pub exp: Vec<f32>,
    pub tex: Vec<f32>,
}

impl Coeffs {
    pub fn zeros(n_id: usize, n_exp: usize, n_tex: usize) -> Self {
        Self { id: vec![0.0; n_id], exp: vec![0.0; n_exp], tex: vec![0.0; n_tex] }
    }
}

/// A camera pose.
#[derive(Component, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Pose {
    /// Weak perspective, the affine T = [f·R | t] (PGN Eq. 2): rows of a 2×4 matrix mapping
    /// [X; 1] to image pixels.
    WeakPerspective { t: [[f32; 4]; 2] },
    /// Pinhole: intrinsics K (row-major 3×3), rotation R (row-major 3×3), translation t.
    Pinhole { k: [f32; 9], r: [f32; 9], t: [f32; 3] },
}

impl Default for Pose {
    /// A zero weak-perspective pose: the empty gradient of a weak-perspective pose.
    fn default() -> Self {
        Pose::WeakPerspective { t: [[0.0; 4]; 2] }
    }
}

/// A weak-perspective pose as free parameters (the direct-pose variant, "without PGN"): yaw,
/// pitch and roll in radians, the log of the scale f (pixels per mm), and the image position of
/// the model's origin (pixels). `Pose::weak_from_angles` turns it into T.
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct PoseParams {
    pub angles: [f32; 3],
    pub log_scale: f32,
    pub translation: [f32; 2],
}

impl PoseParams {
    /// Adds a gradient into this one.
    pub fn accumulate(&mut self, d: &PoseParams) {
        (0..3).for_each(|k| self.angles[k] += d.angles[k]);
        self.log_scale += d.log_scale;
        (0..2).for_each(|k| self.translation[k] += d.translation[k]);
    }

    pub fn pose(&self) -> Pose {
        let [yaw, pitch, roll] = self.angles.map(f32::to_degrees);
        Pose::weak_from_angles(yaw, pitch, roll, self.log_scale.exp(), self.translation)
    }
}

/// A pinhole pose as free parameters (MGCNet's P = Euler angles + translation): yaw, pitch and
/// roll in radians of the head (as `PoseParams`), the translation in the camera (mm; x right,
/// y down, z forward), and the known intrinsics (f_x, f_y, c_x, c_y), which are not fitted.
/// `pose` turns it into R = diag(1, −1, −1) R_ypr (the model's y up and z towards the camera
/// become the camera's y down and z forward) and t.
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct PinholeParams {
    pub angles: [f32; 3],
    pub translation: [f32; 3],
    pub intrinsics: [f32; 4],
}

impl PinholeParams {
    /// The camera's rotation for the head angles.
    pub fn rotation(angles: [f32; 3]) -> [f32; 9] {
        let r = faceforge_kernels::project::rotation_ypr(angles[0], angles[1], angles[2]);
        std::array::from_fn(|k| if k < 3 { r[k] } else { -r[k] })
    }

    pub fn pose(&self) -> Pose {
        let [fx, fy, cx, cy] = self.intrinsics;
        Pose::Pinhole { k: [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], r: Self::rotation(self.angles), t: self.translation }
    }
}

/// One source view synthesised into this (target) frame's view by MGCNet's view synthesis:
/// per target pixel, the source pixel it lands on, the source colour there (Ĩ_t^s), the source
/// depth moved into this camera (D̃_t^s), and the covisible map C_s (0 where any of them is
/// undefined).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewPair {
    pub source: Entity,
    pub coords: Vec<f32>,
    pub rgb: Vec<f32>,
    pub depth: Vec<f32>,
    pub covisible: Vec<f32>,
}

/// Every other frame of the subject synthesised into this frame's view (pinhole poses only).
/// As a gradient (`Grad<SynthesisedViews>`), `rgb` and `depth` of each pair hold dL/dĨ and dL/dD̃.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct SynthesisedViews {
    pub width: usize,
    pub height: usize,
    pub pairs: Vec<ViewPair>,
}

/// Spherical-harmonics lighting: 27 (RGB) or 9 (mono) coefficients.
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Illumination {
    pub sh: Vec<f32>,
}

/// Marks a frame whose mesh holds only the landmark vertices of its current coefficients (a
/// landmark fit's `reconstruct` with `vertices: Landmarks`); the rest is decoded at the end.
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct LandmarksOnly;

/// Vertex positions of a frame's face, xyz per vertex (model units, mm).
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct Mesh {
    pub positions: Vec<f32>,
}

impl Mesh {
    pub fn vertex(&self, v: usize) -> [f32; 3] {
        [self.positions[3 * v], self.positions[3 * v + 1], self.positions[3 * v + 2]]
    }
}

/// rgb per vertex in [0, 1].
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct VertexColors {
    pub rgb: Vec<f32>,
}

/// 2D landmarks in pixels (68 iBUG points).
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Landmarks2d {
    pub points: Vec<[f32; 2]>,
}

/// 3D landmarks (68 iBUG points).
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Landmarks3d {
    pub points: Vec<[f32; 3]>,
}

/// The 468 FaceMesh points the built-in detector found on a frame (x, y in the frame's pixels,
/// z the landmarker's depth in the same scale, negative towards the camera). A frame carries it
/// when its `Landmarks2d` came from the detector rather than from a file; synthetic data carries
/// the model's 468 points on request, in 2D (`depth: false`).
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct DenseLandmarks {
    pub points: Vec<[f32; 3]>,
    /// The detector's score for the face.
    pub score: f32,
    /// Whether z holds a depth estimate.
    #[serde(default)]
    pub depth: bool,
}

/// The landmark annotations of a learn-mode frame: the data's `Landmarks2d` / `Landmarks3d`,
/// moved here by `encode` before it puts the network's own landmarks (PGN's X_UV) in their
/// place, so the graph downstream reads X_UV as the paper's pose and landmark loss do.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct LandmarkTargets {
    pub points_2d: Vec<[f32; 2]>,
    pub points_3d: Option<Vec<[f32; 3]>>,
}

/// Per-pixel skin confidence of a frame's image in [0, 1] (MGCNet's w_skin): synthetic data
/// knows it exactly (the face drawn and not occluded); without one, every pixel counts.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct SkinMask {
    pub weights: Vec<f32>,
}

/// What synthetic data knows exactly about a frame.
#[derive(Component, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub coeffs: Coeffs,
    pub pose: Option<Pose>,
    /// SH lighting (27 RGB coefficients) the frame was rendered with.
    #[serde(default)]
    pub sh: Option<Vec<f32>>,
}

/// The gradient of the total loss with respect to a differentiable component `T`, in `T`'s own
/// layout (only the differentiable fields are filled), accumulated by the loss and backward
/// systems and consumed by the step.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct Grad<T: Send + Sync + 'static> {
    pub value: T,
}

/// Adds `delta` into a float vector, sizing it on first use.
pub fn accumulate(into: &mut Vec<f32>, delta: &[f32]) {
    if into.is_empty() {
        into.resize(delta.len(), 0.0);
    }
    into.iter_mut().zip(delta).for_each(|(a, d)| *a += d);
}

/// The morphable model every stage reads.
#[derive(Resource, Clone, Debug)]
pub struct Model(pub Arc<MorphableModel>);

/// The compute backend the kernels run on.
#[derive(Resource, Clone, Debug)]
pub struct Compute(pub faceforge_kernels::Backend);

/// The value of each loss term at the last iteration (name → weighted value).
#[derive(Resource, Clone, Debug, Default, PartialEq)]
pub struct LossTerms {
    pub terms: BTreeMap<String, f32>,
}

impl LossTerms {
    pub fn total(&self) -> f32 {
        self.terms.values().sum()
    }
}

/// Each loss term's weight (λ), from the scene's `losses`.
#[derive(Resource, Clone, Debug, Default, PartialEq)]
pub struct LossWeights(pub BTreeMap<String, f32>);

impl LossWeights {
    /// The scene's weight for `name`, or the paper's default.
    pub fn get(&self, name: &str, default: f32) -> f32 {
        self.0.get(name).copied().unwrap_or(default)
    }
}

/// Where the run is.
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iteration(pub u32);

/// The model's albedo of a frame's face, rgb per vertex (linear, [0, 1]).
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct Albedo {
    pub rgb: Vec<f32>,
}

/// Unit normal per vertex, xyz.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct Normals {
    pub xyz: Vec<f32>,
}

/// An input image: rgb per pixel, row-major, values in [0, 1].
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<f32>,
}

/// Adam's first and second moments of one parameter vector, and its step count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub steps: i32,
}

/// The optimiser's memory across iterations: moments per (entity, parameter kind), and the
/// factor the learning rate was cut to by rejected steps. A resource, so checkpoints carry it.
#[derive(Resource, Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub moments: std::collections::HashMap<(Entity, &'static str), Moments>,
    pub rescue: f32,
}

impl Default for OptimizerState {
    fn default() -> Self {
        Self { moments: Default::default(), rescue: 1.0 }
    }
}

/// When a video frame was shown: seconds from the clip's start.
#[derive(Component, Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: f64,
}

/// Where a frame's image came from: crop pixel p shows the original image at p / scale + offset
/// (continuous coordinates, pixel centres at i + ½), so outputs map back to the original.
#[derive(Component, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Crop {
    pub offset: [f32; 2],
    pub scale: f32,
    /// The original image's width and height.
    pub original_size: [usize; 2],
    /// The original image's path.
    pub source: String,
}

impl Crop {
    /// A point in crop pixels, in the original image's pixels.
    pub fn to_original(&self, p: [f32; 2]) -> [f32; 2] {
        [p[0] / self.scale + self.offset[0], p[1] / self.scale + self.offset[1]]
    }
}

/// What the render stage drew for a frame.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct Rendered {
    pub width: usize,
    pub height: usize,
    /// rgb per pixel (0 where nothing is drawn).
    pub color: Vec<f32>,
    /// Depth of the visible surface per pixel (`f32::MAX` where empty).
    pub depth: Vec<f32>,
    /// Triangle id + 1 per pixel, 0 where empty.
    pub tri: Vec<u32>,
    /// Perspective-correct barycentrics (b₀, b₁) per pixel.
    pub bary: Vec<f32>,
    /// 1 where the face covers the pixel (M²ᵈ), else 0.
    pub mask: Vec<f32>,
    /// The projected vertices [u, v, depth, inv_w] the raster was drawn from.
    pub projected: Vec<f32>,
}

/// Per-vertex visibility, 1 or 0.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct Visibility {
    pub visible: Vec<f32>,
}

impl Pose {
    /// The camera model and its 16 parameters, as the `project` op takes them.
    pub fn camera(&self) -> (faceforge_kernels::project::CameraModel, [f32; faceforge_kernels::project::CAMERA_PARAMS]) {
        use faceforge_kernels::project::{pinhole_params, weak_params, CameraModel};
        match self {
            Pose::WeakPerspective { t } => (CameraModel::WeakPerspective, weak_params(*t)),
            Pose::Pinhole { k, r, t } => (CameraModel::Pinhole, pinhole_params([k[0], k[4], k[2], k[5]], *r, *t)),
        }
    }

    /// A pose of the same kind from the 16 camera parameters of `project` (for gradients).
    pub fn from_camera(&self, p: &[f32]) -> Pose {
        match self {
            Pose::WeakPerspective { .. } => Pose::WeakPerspective { t: [[p[0], p[1], p[2], p[3]], [p[4], p[5], p[6], p[7]]] },
            Pose::Pinhole { .. } => Pose::Pinhole {
                k: [p[0], 0.0, p[2], 0.0, p[1], p[3], 0.0, 0.0, 0.0],
                r: p[4..13].try_into().expect("9 rotation entries"),
                t: [p[13], p[14], p[15]],
            },
        }
    }

    /// Weak perspective looking at the model's +z side: yaw about y, pitch about x, roll about
    /// the view axis (degrees), scale f (pixels per mm) and the image position of the origin.
    pub fn weak_from_angles(yaw: f32, pitch: f32, roll: f32, f: f32, centre: [f32; 2]) -> Pose {
        let r = faceforge_kernels::project::rotation_ypr(yaw.to_radians(), pitch.to_radians(), roll.to_radians());
        // Rows of f·R for the image's u right and v down (v flips the model's y up).
        Pose::WeakPerspective { t: [[f * r[0], f * r[1], f * r[2], centre[0]], [-f * r[3], -f * r[4], -f * r[5], centre[1]]] }
    }
}

/// PGN Eq. 5–6 for one target frame j: for each other frame i of the subject, the swapped
/// texture C_{i→j} = C_i ⊙ M_ij + C_j ⊙ (1 − M_ij), with M_ij = M_i ⊙ M_j.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct SwappedTextures {
    /// (source frame i, its index in the subject, rgb per vertex).
    pub from: Vec<(Entity, u32, Vec<f32>)>,
}

/// CEST's re-renders of a frame — its own shape, pose and lighting — with other reflectances
/// (the model's albedo per vertex stands for CEST's reflectance): a partner frame's
/// (consistency), its own mirrored left to right (symmetry) and its own (self-reconstruction),
/// rgb per pixel over the frame's raster, each empty when not drawn. As a gradient
/// (`Grad<ReflectanceRenders>`), dL/d each image.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct ReflectanceRenders {
    /// The partner frame whose reflectance `swapped` wears.
    pub partner: Option<Entity>,
    pub swapped: Vec<f32>,
    pub flipped: Vec<f32>,
    pub own: Vec<f32>,
}

/// Renders of the swapped textures at this frame's pose (I_{i→j}), in `SwappedTextures` order.
#[derive(Component, Clone, Debug, PartialEq, Default)]
pub struct RenderedSwaps {
    pub width: usize,
    pub height: usize,
    /// (source frame i, rgb per pixel).
    pub images: Vec<(Entity, Vec<f32>)>,
    /// The face mask at this pose (M²ᵈ of the target).
    pub mask: Vec<f32>,
    /// Triangle id + 1 per pixel and the projected vertices the swaps were drawn with.
    pub tri: Vec<u32>,
    pub projected: Vec<f32>,
}
