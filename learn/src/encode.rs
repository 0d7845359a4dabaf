//! encode: the network on the frames' images (PGN's shared encoder, PGN decoder and heads),
//! writing what the fit mode's parameters were: `Coeffs` (identity fused over each subject's
//! frames, expression per frame), X_UV as the frame's `Landmarks2d` / `Landmarks3d` (the
//! annotations move to `LandmarkTargets` first), `PoseParams` when the network has a pose head,
//! and the albedo (`Coeffs::tex`) and `Illumination` when it has appearance heads.
//!
//! encode_backward: the graph's gradients with respect to those outputs go back into burn
//! through the surrogate loss Σ out ⊙ stopgrad(dL/d out), so one burn backward pass trains the
//! network through the render and loss systems (ARCHITECTURE §2). encoder_step: burn's Adam.

use crate::learner::{flat, Learner, Pending};
use crate::network::{fusion_matrix, Trained};
use bevy_ecs::prelude::*;
use burn::tensor::{Tensor, TensorData};
use faceforge_components::{Coeffs, Frame, Grad, Illumination, Image, LandmarkTargets, Landmarks2d, Landmarks3d, PoseParams};
use faceforge_systems::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use serde::Deserialize;
use faceforge_systems::data;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeSettings {
    /// Put the network's landmarks in place of the annotations (PGN). false: the graph keeps the
    /// annotations (the joint-regression baseline, whose pose comes from the pose head).
    pub guide: bool,
    /// Inference runs the network on at most this many frames at once (whole subjects: a
    /// subject's frames are fused, so a larger subject goes alone), so a folder of any size
    /// keeps memory flat. Training runs the step's batch as one.
    pub batch: usize,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self { guide: true, batch: 32 }
    }
}

fn rows(values: &[f32], width: usize) -> impl Iterator<Item = &[f32]> {
    values.chunks(width.max(1))
}

type FrameRow<'a> = (Entity, &'a Frame, &'a Image, Option<&'a Landmarks2d>, Option<&'a Landmarks3d>, Option<&'a LandmarkTargets>);

/// Where a frame goes in the network's batch: by subject (a subject's frames together, for the
/// fusion), then by name — fixed, so runs and resumes see the same layout.
pub(crate) fn batch_order(frame: &Frame) -> (u32, String) {
    (frame.subject_id, frame.name.clone())
}

/// The frames in a fixed order (by subject, then name), so runs and resumes see the same batch
/// layout and a subject's frames are together.
fn sorted<'a>(frames: impl Iterator<Item = FrameRow<'a>>) -> Vec<FrameRow<'a>> {
    let mut v: Vec<_> = frames.collect();
    v.sort_by_key(|r| batch_order(r.1));
    v
}

/// Consecutive runs of whole subjects (frames grouped by subject id) with at most `batch` frames
/// each; a larger subject goes alone.
fn chunks_by_subject(subjects: &[u32], batch: usize) -> Vec<std::ops::Range<usize>> {
    let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    while start < subjects.len() {
        let subject_end = |from: usize| (from..subjects.len()).find(|&j| subjects[j] != subjects[from]).unwrap_or(subjects.len());
        let mut end = subject_end(start);
        while end < subjects.len() && subject_end(end) - start <= batch.max(1) {
            end = subject_end(end);
        }
        chunks.push(start..end);
        start = end;
    }
    chunks
}

/// Appends an image stored pixel by pixel (`channels` values each) channel by channel.
pub(crate) fn push_chw(out: &mut Vec<f32>, hwc: &[f32], channels: usize) {
    (0..channels).for_each(|c| out.extend(hwc.iter().skip(c).step_by(channels)));
}

/// The network's input for frames (B, C, S, S): RGB, and when the network takes it the
/// landmark map of each frame's `points` (2DASL's fourth channel).
pub(crate) fn input_tensor(learner: &Learner, frames: &[(&Frame, &Image, &[[f32; 2]])], system: &'static str) -> Result<Tensor<4>, StageError> {
    let size = learner.info.network.input;
    let channels = learner.info.network.channels();
    let mut pixels: Vec<f32> = Vec::with_capacity(frames.len() * channels * size * size);
    for (frame, image, points) in frames {
        if image.width != size || image.height != size {
            return Err(StageError { system, message: format!("frame {} is {}×{} pixels, the network takes {size}×{size}", frame.name, image.width, image.height) });
        }
        push_chw(&mut pixels, &image.rgb, 3);
        if learner.info.network.landmark_map {
            pixels.extend(crate::landmark_map::landmark_map(points, size, size));
        }
    }
    Ok(Tensor::<4>::from_data(TensorData::new(pixels, [frames.len(), channels, size, size]), &learner.device))
}

/// The network on one chunk of frames: writes their components, returns the outputs.
fn encode_chunk(learner: &Learner, frames: &[FrameRow], guide: bool, commands: &mut Commands) -> Result<crate::network::Outputs, StageError> {
    // The landmark map (if any) from the frame's 2D annotations (kept in `LandmarkTargets` once
    // PGN's guidance has replaced `Landmarks2d`); none: all −1.
    let inputs: Vec<(&Frame, &Image, &[[f32; 2]])> = frames
        .iter()
        .map(|(_, frame, image, given_2d, _, targets)| (*frame, *image, targets.map(|t| t.points_2d.as_slice()).or(given_2d.map(|l| l.points.as_slice())).unwrap_or(&[])))
        .collect();
    let images = input_tensor(learner, &inputs, "encode")?;
    let device = learner.device.clone();
    let subjects: Vec<u32> = frames.iter().map(|f| f.1.subject_id).collect();
    let outputs = learner.net.forward(images, fusion_matrix(&subjects, &device), &learner.readout, learner.trained);
    let (n_id, n_exp, n_landmarks) = (learner.info.n_id, learner.info.n_exp, learner.info.n_landmarks);
    let landmarks = flat(outputs.landmarks.clone());
    let identity = flat(outputs.identity.clone());
    let expression = flat(outputs.expression.clone());
    let pose = outputs.pose.clone().map(flat);
    let albedo = outputs.albedo.clone().map(flat);
    let lighting = outputs.lighting.clone().map(flat);
    let n_tex = learner.readout.n_albedo;
    for (k, ((entity, _, _, given_2d, given_3d, targets), (id, exp))) in frames.iter().zip(rows(&identity, n_id).zip(rows(&expression, n_exp))).enumerate() {
        let mut e = commands.entity(*entity);
        let tex = albedo.as_ref().map_or(vec![0.0; n_tex], |a| a[k * n_tex..(k + 1) * n_tex].to_vec());
        e.insert(Coeffs { id: id.to_vec(), exp: exp.to_vec(), tex });
        if let Some(l) = &lighting {
            e.insert(Illumination { sh: l[27 * k..27 * (k + 1)].to_vec() });
        }
        if guide {
            if targets.is_none() {
                e.insert(LandmarkTargets { points_2d: given_2d.map(|l| l.points.clone()).unwrap_or_default(), points_3d: given_3d.map(|l| l.points.clone()) });
            }
            let points: Vec<[f32; 3]> = landmarks[k * 3 * n_landmarks..(k + 1) * 3 * n_landmarks].chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
            e.insert((Landmarks2d { points: points.iter().map(|p| [p[0], p[1]]).collect() }, Landmarks3d { points }));
        }
        if let Some(p) = &pose {
            e.insert(pose_params(&p[6 * k..6 * k + 6]));
        }
    }
    Ok(outputs)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "encode",
        stage: Stage::Encode,
        reads: data![Image, Learner],
        writes: data![Coeffs, Landmarks2d, Landmarks3d, LandmarkTargets, PoseParams, Illumination],
        reads_if_present: data![],
        adjoint: Some("encode_backward"),
        summary: "the network on the images: identity (fused per subject), expression, X_UV; pose, albedo and lighting if it has those heads",
        build: |settings| {
            let settings: EncodeSettings = parse_settings(settings)?;
            Ok((move |mut learner: ResMut<Learner>, frames: Query<FrameRow>, mut commands: Commands| -> Result<(), StageError> {
                let frames = sorted(frames.iter());
                if frames.is_empty() {
                    return Ok(());
                }
                let pending = if learner.training {
                    let outputs = encode_chunk(&learner, &frames, settings.guide, &mut commands)?;
                    Some(Pending { entities: frames.iter().map(|f| f.0).collect(), outputs })
                } else {
                    let subjects: Vec<u32> = frames.iter().map(|f| f.1.subject_id).collect();
                    for range in chunks_by_subject(&subjects, settings.batch) {
                        encode_chunk(&learner, &frames[range], settings.guide, &mut commands)?;
                    }
                    None
                };
                *learner.pending.get_mut().expect("not poisoned") = pending;
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Encode))
        },
    }
}

/// A pose head's row (yaw, pitch, roll, log scale, translation) as `PoseParams`.
pub(crate) fn pose_params(p: &[f32]) -> PoseParams {
    PoseParams { angles: [p[0], p[1], p[2]], log_scale: p[3], translation: [p[4], p[5]] }
}

/// `PoseParams` (a gradient) as a pose head's row.
pub(crate) fn pose_row(p: &PoseParams) -> Vec<f32> {
    vec![p.angles[0], p.angles[1], p.angles[2], p.log_scale, p.translation[0], p.translation[1]]
}

/// Rows as a (B, width) tensor; a row of another length (a frame no gradient reached) is zeros.
pub(crate) fn rows_tensor(rows: Vec<Vec<f32>>, width: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let b = rows.len();
    let data: Vec<f32> = rows.into_iter().flat_map(|r| if r.len() == width { r } else { vec![0.0; width] }).collect();
    Tensor::from_data(TensorData::new(data, [b, width]), device)
}

pub fn backward_entry() -> SystemEntry {
    SystemEntry {
        name: "encode_backward",
        stage: Stage::BackwardEncode,
        // The gradients it reads are optional (zero when no loss reaches an output).
        reads: data![Learner],
        writes: data![Learner],
        reads_if_present: data![Grad<Coeffs>, Grad<PoseParams>, Grad<Illumination>, Grad<Landmarks3d>],
        adjoint: None,
        summary: "the graph's gradients of the network's outputs back into burn (surrogate Σ out ⊙ stopgrad(grad))",
        build: |settings| {
            parse_settings::<faceforge_systems::NoSettings>(settings)?;
            Ok((|mut learner: ResMut<Learner>, frames: Query<(Option<&Grad<Coeffs>>, Option<&Grad<Landmarks3d>>, Option<&Grad<PoseParams>>, Option<&Grad<Illumination>>)>| {
                let Some(Pending { entities, outputs }) = learner.pending.get_mut().expect("not poisoned").take() else { return };
                let device = learner.device.clone();
                let (n_id, n_exp, n_landmarks, n_tex) = (learner.info.n_id, learner.info.n_exp, learner.info.n_landmarks, learner.readout.n_albedo);
                let grads: Vec<_> = entities.iter().map(|e| frames.get(*e).unwrap_or((None, None, None, None))).collect();
                let g_id = rows_tensor(grads.iter().map(|g| g.0.map(|g| g.value.id.clone()).unwrap_or_default()).collect(), n_id, &device);
                let g_exp = rows_tensor(grads.iter().map(|g| g.0.map(|g| g.value.exp.clone()).unwrap_or_default()).collect(), n_exp, &device);
                let g_landmarks = rows_tensor(grads.iter().map(|g| g.1.map(|g| g.value.points.iter().flatten().copied().collect()).unwrap_or_default()).collect(), 3 * n_landmarks, &device);
                let b = entities.len();
                let mut parts: Vec<Tensor<1>> = Vec::new();
                let trained = learner.trained;
                if trained != Trained::Heads {
                    parts.push(outputs.landmarks.reshape([b, 3 * n_landmarks]).mul(g_landmarks).sum());
                }
                if trained != Trained::Guidance {
                    parts.push(outputs.identity.mul(g_id).sum());
                    parts.push(outputs.expression.mul(g_exp).sum());
                    if let Some(pose) = outputs.pose {
                        let g_pose = rows_tensor(
                            grads.iter().map(|g| g.2.map(|g| pose_row(&g.value)).unwrap_or_default()).collect(),
                            6,
                            &device,
                        );
                        parts.push(pose.mul(g_pose).sum());
                    }
                    if let Some(albedo) = outputs.albedo {
                        let g_tex = rows_tensor(grads.iter().map(|g| g.0.map(|g| g.value.tex.clone()).unwrap_or_default()).collect(), n_tex, &device);
                        parts.push(albedo.mul(g_tex).sum());
                    }
                    if let Some(lighting) = outputs.lighting {
                        let g_sh = rows_tensor(grads.iter().map(|g| g.3.map(|g| g.value.sh.clone()).unwrap_or_default()).collect(), 27, &device);
                        parts.push(lighting.mul(g_sh).sum());
                    }
                }
                learner.backward(parts);
            })
            .in_set(Stage::BackwardEncode))
        },
    }
}

pub fn step_entry() -> SystemEntry {
    SystemEntry {
        name: "encoder_step",
        stage: Stage::Step,
        reads: data![Learner],
        writes: data![Learner],
        reads_if_present: data![],
        adjoint: None,
        summary: "burn's Adam on the network's gradients",
        build: |settings| {
            parse_settings::<faceforge_systems::NoSettings>(settings)?;
            Ok((|mut learner: ResMut<Learner>| learner.step()).in_set(Stage::Step))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::chunks_by_subject;

    #[test]
    fn chunks_hold_whole_subjects_up_to_the_batch() {
        // Subjects of 1, 3, 1, 1, 5 frames.
        let subjects = [0, 1, 1, 1, 2, 3, 4, 4, 4, 4, 4];
        assert_eq!(chunks_by_subject(&subjects, 4), vec![0..4, 4..6, 6..11]);
        assert_eq!(chunks_by_subject(&subjects, 1), vec![0..1, 1..4, 4..5, 5..6, 6..11]);
        assert_eq!(chunks_by_subject(&subjects, 100), vec![0..11]);
        assert!(chunks_by_subject(&[], 4).is_empty());
    }
}
