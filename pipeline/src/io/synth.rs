//! Synthetic faces with exact ground truth, standing in for the papers' data sets: subjects ×
//! frames rendered from the model with random identity, expression and albedo, a pose, SH
//! lighting, a textured background, optional occluders, and detector-like landmark noise.
//!
//! Presets mirror the papers' evaluations:
//! - `AflwLike`: single images, |yaw| spread evenly over the bins 0–30°, 30–60°, 60–90°;
//! - `FlorenceLike`: neutral subjects, clips sweeping yaw from −80° to 80°, lighting changing;
//! - `FacewarehouseLike`: identities × 20 expressions, near frontal;
//! - `MvfLike`: left, front and right views (yaw −50°, 0°, 50°) of one expression;
//! - `ClipLike`: a video clip with known smooth motion: one person turning (yaw ±30°, pitch ±8°,
//!   roll ±4°, sinusoids), drifting a little and moving between two expressions, under one
//!   lighting before one background; `motion` scales it (0: a still head, only the landmark
//!   noise changes from frame to frame).

use faceforge_components::{Coeffs, Frame, PinholeParams, Pose};
use faceforge_kernels::normals::{self, Adjacency};
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::Backend;
use crate::io::outputs::{png_bytes, pts_text};
use faceforge_model::{atomic_write, MorphableModel, SplitMix64};
use faceforge_systems::reconstruct::decode_batch;
use faceforge_systems::render::{render_batch, shade_vertices, RenderBatch};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SynthPreset {
    AflwLike,
    FlorenceLike,
    FacewarehouseLike,
    MvfLike,
    ClipLike,
}

impl SynthPreset {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "aflw-like" | "aflwlike" => Some(Self::AflwLike),
            "florence-like" | "florencelike" => Some(Self::FlorenceLike),
            "facewarehouse-like" | "facewarehouselike" => Some(Self::FacewarehouseLike),
            "mvf-like" | "mvflike" => Some(Self::MvfLike),
            "clip-like" | "cliplike" => Some(Self::ClipLike),
            _ => None,
        }
    }

    /// Frames per subject when the spec leaves it at 0.
    fn default_frames(self) -> u32 {
        match self {
            Self::AflwLike => 1,
            Self::FlorenceLike => 9,
            Self::FacewarehouseLike => 20,
            Self::MvfLike => 3,
            Self::ClipLike => 30,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthSpec {
    pub preset: SynthPreset,
    pub subjects: u32,
    /// Frames per subject; 0 takes the preset's (1, 9, 20, 3).
    pub frames: u32,
    /// Square image size in pixels.
    pub size: usize,
    pub seed: u64,
    /// Standard deviation of the landmark noise, pixels.
    pub landmark_noise: f32,
    /// Probability that a frame gets an occluder over the face.
    pub occluders: f32,
    /// Yaw of frame k (degrees) is `yaws[k % len]` when given, instead of the preset's.
    pub yaws: Vec<f32>,
    /// 0: a weak-perspective camera (PGN, MVF-Net, 2DASL). Otherwise a calibrated pinhole camera
    /// (MGCNet) with this focal length in image widths (MGCNet's 1015 px at 224 px is 4.53),
    /// principal point at the centre, at the distance that gives the face the same size.
    pub focal: f32,
    /// Every frame its own lighting, even where the preset shares one per subject (MVF-Net's
    /// inconsistent-lighting case).
    pub changing_lighting: bool,
    /// Give each frame the model's 468 dense points too (`DenseLandmarks`, as the detector does
    /// for a photo), with the same noise as the 68, so a fit takes the dense landmark path.
    pub dense_landmarks: bool,
    /// `ClipLike`: the scale of the clip's motion (1: as described; 0: a still head).
    pub motion: f32,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self { preset: SynthPreset::AflwLike, subjects: 6, frames: 0, size: 224, seed: 0, landmark_noise: 1.5, occluders: 0.0, yaws: Vec::new(), focal: 0.0, changing_lighting: false, dense_landmarks: false, motion: 1.0 }
    }
}

/// A `ClipLike` subject's smooth motion, drawn from a generator of its own (the other presets'
/// data stay as they were).
struct ClipMotion {
    phases: [f64; 4],
    exp_from: Vec<f32>,
    exp_to: Vec<f32>,
    scale: f32,
    centre: [f32; 2],
    background_seed: u64,
}

impl ClipMotion {
    fn draw(model: &MorphableModel, seed: u64, subject: u32, size: usize) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x434c_4950_0000_0000 ^ subject as u64);
        Self {
            phases: std::array::from_fn(|_| rng.range(0.0, std::f64::consts::TAU)),
            exp_from: rng.scaled_normals(model.exp_sigma(), 0.5),
            exp_to: rng.scaled_normals(model.exp_sigma(), 0.5),
            scale: 0.6 * size as f32 / FACE_WIDTH_MM * rng.range(0.9, 1.1) as f32,
            centre: [size as f32 / 2.0, size as f32 / 2.0],
            background_seed: rng.next_u64(),
        }
    }

    /// Angles (degrees), expression, scale and centre at time `t` ∈ [0, 1] of the clip.
    fn at(&self, t: f64, motion: f32, size: usize) -> ([f32; 3], Vec<f32>, f32, [f32; 2]) {
        let wave = |cycles: f64, phase: f64| (std::f64::consts::TAU * cycles * t + phase).sin() as f32 * motion;
        let angles = [30.0 * wave(0.75, self.phases[0]), 8.0 * wave(0.5, self.phases[1]), 4.0 * wave(1.0, self.phases[2])];
        let w = 0.5 - 0.5 * wave(1.0, self.phases[3]);
        let exp = self.exp_from.iter().zip(&self.exp_to).map(|(a, b)| a + w * (b - a)).collect();
        let drift = 0.02 * size as f32 * wave(0.5, self.phases[3]);
        (angles, exp, self.scale, [self.centre[0] + drift, self.centre[1] + 0.5 * drift])
    }
}

/// The model's mean face is this wide at the ears (the canonical mesh at 95 mm between the outer
/// eye corners: 165.5 mm); synthetic faces and benchmarks size their images by it.
pub const FACE_WIDTH_MM: f32 = 165.0;

/// What a synthetic frame knows exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthTruth {
    pub coeffs: Coeffs,
    pub pose: Pose,
    /// Yaw, pitch, roll in degrees.
    pub angles: [f32; 3],
    /// 27 RGB SH coefficients.
    pub sh: Vec<f32>,
    /// The landmark vertices of the posed-free mesh, model space (mm).
    pub landmarks_3d: Vec<[f32; 3]>,
    /// The landmark vertices projected, without noise (pixels).
    pub landmarks_2d_exact: Vec<[f32; 2]>,
    /// The model's dense landmark vertices (FaceMesh's 468) projected, without noise (pixels).
    #[serde(default)]
    pub dense_2d_exact: Vec<[f32; 2]>,
    pub occluded: bool,
}

/// One rendered frame.
#[derive(Clone, Debug)]
pub struct SynthFrame {
    pub name: String,
    pub subject: u32,
    pub index: u32,
    pub size: usize,
    /// rgb, row-major, [0, 1].
    pub image: Vec<f32>,
    /// 68 landmarks with detector-like noise (pixels).
    pub landmarks: Vec<[f32; 2]>,
    /// With `dense_landmarks`: the 468 dense points with the same noise (pixels), else empty.
    pub dense: Vec<[f32; 2]>,
    /// The rendered face mask (1 where the face is drawn and not occluded).
    pub face_mask: Vec<f32>,
    pub truth: SynthTruth,
}

/// Pose angles (degrees) of frame `index` of `frames` for subject `subject`.
fn angles(preset: SynthPreset, subject: u32, index: u32, frames: u32, rng: &mut SplitMix64) -> [f32; 3] {
    let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
    let (yaw, pitch, roll) = match preset {
        SynthPreset::AflwLike => {
            let bin = ((subject * frames + index) % 3) as f64;
            (sign * rng.range(30.0 * bin, 30.0 * (bin + 1.0)), rng.range(-30.0, 30.0), rng.range(-20.0, 20.0))
        }
        SynthPreset::FlorenceLike => {
            let t = if frames > 1 { index as f64 / (frames - 1) as f64 } else { 0.5 };
            (-80.0 + 160.0 * t, rng.range(-10.0, 10.0), rng.range(-5.0, 5.0))
        }
        SynthPreset::FacewarehouseLike => (rng.range(-15.0, 15.0), rng.range(-10.0, 10.0), rng.range(-5.0, 5.0)),
        // Its own smooth motion replaces these (`ClipMotion`).
        SynthPreset::ClipLike => (0.0, 0.0, 0.0),
        SynthPreset::MvfLike => ([-50.0, 0.0, 50.0][(index % 3) as usize] + rng.range(-5.0, 5.0), rng.range(-5.0, 5.0), rng.range(-3.0, 3.0)),
    };
    [yaw as f32, pitch as f32, roll as f32]
}

/// SH lighting: a slightly coloured ambient term and random directional and quadratic parts.
fn lighting(rng: &mut SplitMix64) -> Vec<f32> {
    let ambient = rng.range(0.75, 1.0);
    let direction: Vec<f64> = (0..8).map(|_| rng.normal()).collect();
    (0..3)
        .flat_map(|_| {
            let tint = rng.range(0.92, 1.05);
            let mut l = vec![(ambient * tint) as f32];
            l.extend(direction[..3].iter().map(|d| (0.25 * d * tint) as f32));
            l.extend(direction[3..].iter().map(|d| (0.06 * d * tint) as f32));
            l
        })
        .collect()
}

/// A textured background: a few coloured sinusoids at random frequencies and phases.
fn background(size: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let waves: Vec<[f64; 6]> = (0..4)
        .map(|_| [rng.range(0.02, 0.25), rng.range(0.02, 0.25), rng.range(0.0, 6.3), rng.uniform(), rng.uniform(), rng.uniform()])
        .collect();
    let base = [rng.range(0.2, 0.7), rng.range(0.2, 0.7), rng.range(0.2, 0.7)];
    let mut out = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            for c in 0..3 {
                let v: f64 = waves.iter().map(|w| 0.08 * (w[0] * x as f64 + w[1] * y as f64 + w[2]).sin() * (w[3 + c] - 0.3)).sum();
                out.push((base[c] + v).clamp(0.0, 1.0) as f32);
            }
        }
    }
    out
}

/// Generates the frames a spec asks for, rendered on `backend`.
pub fn generate(model: &MorphableModel, backend: &Backend, spec: &SynthSpec) -> Vec<SynthFrame> {
    let mut rng = SplitMix64::new(spec.seed ^ 0x5157_4e54_4845_5349);
    let frames_per_subject = if spec.frames == 0 { spec.preset.default_frames() } else { spec.frames };
    let n = model.n_vertices();
    let size = spec.size;
    let adjacency = Adjacency::new(n, model.triangles());
    let mut out = Vec::new();
    for s in 0..spec.subjects {
        let id = rng.scaled_normals(model.id_sigma(), 1.0);
        let tex = rng.scaled_normals(model.albedo_sigma(), 1.0);
        let subject_exp = rng.scaled_normals(model.exp_sigma(), 1.0);
        let subject_light = lighting(&mut rng);
        let clip = (spec.preset == SynthPreset::ClipLike).then(|| ClipMotion::draw(model, spec.seed, s, size));
        for f in 0..frames_per_subject {
            let t = f as f64 / (frames_per_subject.max(2) - 1) as f64;
            let clip_now = clip.as_ref().map(|c| c.at(t, spec.motion, size));
            let exp = match (spec.preset, &clip_now) {
                (_, Some((_, exp, _, _))) => exp.clone(),
                (SynthPreset::FlorenceLike, _) => vec![0.0; model.n_exp()],
                (SynthPreset::MvfLike, _) => subject_exp.clone(),
                _ => rng.scaled_normals(model.exp_sigma(), 1.0),
            };
            let sh = match spec.preset {
                // Drawn apart from the main sequence, so the faces, poses and backgrounds are
                // the same with and without the change of lighting.
                SynthPreset::FacewarehouseLike | SynthPreset::MvfLike if spec.changing_lighting => {
                    lighting(&mut SplitMix64::new(spec.seed ^ 0x4c49_4748_5400_0000 ^ ((s as u64) << 16 | f as u64)))
                }
                SynthPreset::FacewarehouseLike | SynthPreset::MvfLike | SynthPreset::ClipLike => subject_light.clone(),
                _ => lighting(&mut rng),
            };
            let coeffs = Coeffs { id: id.clone(), exp, tex: tex.clone() };
            let mut angle = angles(spec.preset, s, f, frames_per_subject, &mut rng);
            if !spec.yaws.is_empty() {
                angle[0] = spec.yaws[f as usize % spec.yaws.len()];
            }
            // The face's width spans about 60 % of the image, near the centre.
            let mut scale = 0.6 * size as f32 / FACE_WIDTH_MM * rng.range(0.9, 1.1) as f32;
            let mut centre = [size as f32 / 2.0 + rng.range(-0.04, 0.04) as f32 * size as f32, size as f32 / 2.0 + rng.range(-0.04, 0.04) as f32 * size as f32];
            if let Some((clip_angles, _, clip_scale, clip_centre)) = &clip_now {
                (angle, scale, centre) = (*clip_angles, *clip_scale, *clip_centre);
            }
            let pose = if spec.focal > 0.0 {
                let (f, c) = (spec.focal * size as f32, size as f32 / 2.0);
                let distance = f / scale;
                let t = [(centre[0] - c) * distance / f, (centre[1] - c) * distance / f, distance];
                Pose::Pinhole { k: [f, 0.0, c, 0.0, f, c, 0.0, 0.0, 1.0], r: PinholeParams::rotation(angle.map(f32::to_radians)), t }
            } else {
                Pose::weak_from_angles(angle[0], angle[1], angle[2], scale, centre)
            };

            let frame = Frame { subject: bevy_ecs::entity::Entity::PLACEHOLDER, subject_id: s, index: f, name: format!("s{s:03}_f{f:03}") };
            let (shape, albedo) = decode_batch(backend, model, None, &[(&frame, &coeffs)], true).expect("coefficients sized by the model");
            let albedo = albedo.expect("albedo asked for");
            let vertex_normals = normals::forward(backend, &shape, model.triangles(), &adjacency, n);
            let colors = shade_vertices(backend, &vertex_normals, &albedo, &sh, n);
            let (camera_model, camera) = pose.camera();
            let raster_shape = RasterShape { batch: 1, width: size, height: size };
            let drawn = render_batch(backend, model.triangles(), n, raster_shape, &RenderBatch { positions: &shape, colors: &colors, camera_model, cameras: &camera });

            let mut image = background(size, &mut rng);
            if let Some(c) = &clip {
                image = background(size, &mut SplitMix64::new(c.background_seed));
            }
            let mut face_mask = drawn.raster.mask();
            for p in 0..size * size {
                if face_mask[p] > 0.0 {
                    image[3 * p..3 * p + 3].copy_from_slice(&drawn.color[3 * p..3 * p + 3].iter().map(|c| c.clamp(0.0, 1.0)).collect::<Vec<_>>());
                }
            }
            let occluded = rng.uniform() < spec.occluders as f64;
            if occluded {
                // A striped ellipse over part of the face (a hand, a cup, a microphone).
                let (cx, cy) = (centre[0] as f64 + rng.range(-0.15, 0.15) * size as f64, centre[1] as f64 + rng.range(-0.1, 0.25) * size as f64);
                let (rx, ry) = (rng.range(0.08, 0.16) * size as f64, rng.range(0.06, 0.14) * size as f64);
                let colour = [rng.uniform(), rng.uniform(), rng.uniform()];
                for y in 0..size {
                    for x in 0..size {
                        if ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2) <= 1.0 {
                            let stripe = if (x + y) / 6 % 2 == 0 { 1.0 } else { 0.7 };
                            let p = y * size + x;
                            image[3 * p..3 * p + 3].copy_from_slice(&colour.map(|c| (c * stripe) as f32));
                            face_mask[p] = 0.0;
                        }
                    }
                }
            }
            let landmarks_2d_exact: Vec<[f32; 2]> = model.landmarks().iter().map(|&v| [drawn.projected[4 * v as usize], drawn.projected[4 * v as usize + 1]]).collect();
            let landmarks = landmarks_2d_exact
                .iter()
                .map(|p| [p[0] + spec.landmark_noise * rng.normal() as f32, p[1] + spec.landmark_noise * rng.normal() as f32])
                .collect();
            let dense_2d_exact: Vec<[f32; 2]> = model.dense_landmarks().iter().map(|&v| [drawn.projected[4 * v as usize], drawn.projected[4 * v as usize + 1]]).collect();
            // Their noise from a generator of their own, so the rest of the data is the same
            // with and without them.
            let mut dense_rng = SplitMix64::new(spec.seed ^ 0x4445_4e53_4500_0000 ^ ((s as u64) << 16 | f as u64));
            let dense = if spec.dense_landmarks {
                dense_2d_exact.iter().map(|p| [p[0] + spec.landmark_noise * dense_rng.normal() as f32, p[1] + spec.landmark_noise * dense_rng.normal() as f32]).collect()
            } else {
                Vec::new()
            };
            let landmarks_3d = model.landmarks().iter().map(|&v| [shape[3 * v as usize], shape[3 * v as usize + 1], shape[3 * v as usize + 2]]).collect();
            out.push(SynthFrame {
                name: frame.name,
                subject: s,
                index: f,
                size,
                image,
                landmarks,
                dense,
                face_mask,
                truth: SynthTruth { coeffs, pose, angles: angle, sh, landmarks_3d, landmarks_2d_exact, dense_2d_exact, occluded },
            });
        }
    }
    out
}

/// Writes `NAME.png`, `NAME.pts` and `NAME.ron` (the ground truth) per frame.
pub fn write(dir: &Path, frames: &[SynthFrame]) -> std::io::Result<usize> {
    frames.iter().map(|f| write_frame(dir, &f.name, f)).sum()
}

/// Writes each subject's frames into a sub-folder of its own (`s000/f000.png`, …): the layout
/// of a folder of clips or multi-view sets (`layout: Subjects`), one person per sub-folder.
pub fn write_per_subject(dir: &Path, frames: &[SynthFrame]) -> std::io::Result<usize> {
    frames
        .iter()
        .map(|f| {
            let folder = dir.join(format!("s{:03}", f.subject));
            std::fs::create_dir_all(&folder)?;
            write_frame(&folder, &format!("f{:03}", f.index), f)
        })
        .sum()
}

fn write_frame(dir: &Path, name: &str, f: &SynthFrame) -> std::io::Result<usize> {
    atomic_write(&dir.join(format!("{name}.png")), &png_bytes(&f.image, f.size, f.size))?;
    atomic_write(&dir.join(format!("{name}.pts")), pts_text(&f.landmarks).as_bytes())?;
    let truth = ron::ser::to_string_pretty(&f.truth, ron::ser::PrettyConfig::default()).map_err(std::io::Error::other)?;
    atomic_write(&dir.join(format!("{name}.ron")), truth.as_bytes())?;
    Ok(3)
}
