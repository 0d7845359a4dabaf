//! Feeding the World: one entity per subject and one per frame, from the scene's data source.

use crate::scene::{DataSpec, SampledData};
use crate::io::inputs::{self, FolderSpec, LoadedFrame, Skipped};
use crate::io::synth::{self, SynthSpec};
use bevy_ecs::prelude::*;
use faceforge_components::{Coeffs, DenseLandmarks, Frame, GroundTruth, Image, Landmarks2d, Landmarks3d, SkinMask, Subject};
use faceforge_kernels::Backend;
use faceforge_model::{MorphableModel, SplitMix64};

/// Spawns the scene's subjects and frames; returns how many frames, and the inputs skipped
/// (unreadable images, images without a face or landmarks, bad `.pts` files).
pub fn populate(world: &mut World, data: &DataSpec, model: &MorphableModel, backend: &Backend, seed: u64) -> anyhow::Result<(usize, Vec<Skipped>)> {
    Ok(match data {
        DataSpec::Sampled(spec) => (populate_sampled(world, spec, model, seed), Vec::new()),
        DataSpec::Synthetic(spec) => (populate_synthetic(world, spec, model, backend), Vec::new()),
        DataSpec::Folder(spec) => populate_folder(world, spec, model)?,
        DataSpec::Video(spec) => populate_folder(world, &spec.folder(), model)?,
    })
}

/// Frames from an image folder: the crop, its landmarks and the crop transform; a subject per
/// image or per sub-folder; coefficients at the model's mean.
fn populate_folder(world: &mut World, spec: &FolderSpec, model: &MorphableModel) -> anyhow::Result<(usize, Vec<Skipped>)> {
    let (frames, skipped) = inputs::load(spec, model)?;
    for s in &skipped {
        tracing::warn!("skipped {}: {}", s.file.display(), s.reason);
    }
    if frames.is_empty() {
        anyhow::bail!("no usable image in {} ({} skipped: {})", spec.path.display(), skipped.len(), skipped.iter().map(|s| format!("{}: {}", s.file.display(), s.reason)).collect::<Vec<_>>().join("; "));
    }
    spawn_loaded(world, &frames, model);
    Ok((frames.len(), skipped))
}

/// Spawns loaded frames (and a subject per subject name) with coefficients at the model's mean;
/// returns the subjects' entities in order.
pub(crate) fn spawn_loaded<'a>(world: &mut World, frames: impl IntoIterator<Item = &'a LoadedFrame>, model: &MorphableModel) -> Vec<Entity> {
    spawn_loaded_after(world, frames, model, 0)
}

/// `spawn_loaded` into a World that already holds `first_id` subjects (a training's synthetic
/// faces beside its real frames): the subject ids go on from there.
pub(crate) fn spawn_loaded_after<'a>(world: &mut World, frames: impl IntoIterator<Item = &'a LoadedFrame>, model: &MorphableModel, first_id: u32) -> Vec<Entity> {
    let mut subjects: Vec<(String, Entity)> = Vec::new();
    let mut counts: Vec<u32> = Vec::new();
    for f in frames {
        let id = match subjects.iter().position(|(name, _)| name == &f.subject) {
            Some(i) => i,
            None => {
                let id = subjects.len();
                subjects.push((f.subject.clone(), world.spawn(Subject { id: first_id + id as u32, name: f.subject.clone() }).id()));
                counts.push(0);
                id
            }
        };
        let frame = Frame { subject: subjects[id].1, subject_id: first_id + id as u32, index: counts[id], name: f.name.clone() };
        counts[id] += 1;
        let mut entity = world.spawn((
            frame,
            Image { width: f.size, height: f.size, rgb: f.rgb.clone() },
            Landmarks2d { points: f.landmarks.clone() },
            f.crop.clone(),
            Coeffs::zeros(model.n_id(), model.n_exp(), model.n_albedo()),
        ));
        if let Some(dense) = &f.dense {
            entity.insert(dense.clone());
        }
        if let Some(seconds) = f.seconds {
            entity.insert(faceforge_components::Timestamp { seconds });
        }
        if let Some(truth) = &f.truth {
            entity.insert(truth.clone());
        }
    }
    subjects.into_iter().map(|(_, e)| e).collect()
}

/// Synthetic frames: the image, the noisy landmarks, the ground truth, and coefficients at the
/// model's mean (the free parameters a fit starts from).
fn populate_synthetic(world: &mut World, spec: &SynthSpec, model: &MorphableModel, backend: &Backend) -> usize {
    let frames = synth::generate(model, backend, spec);
    let mut subjects: Vec<Entity> = Vec::new();
    for f in &frames {
        while subjects.len() <= f.subject as usize {
            let id = subjects.len() as u32;
            subjects.push(world.spawn(Subject { id, name: format!("s{id:03}") }).id());
        }
        let frame = Frame { subject: subjects[f.subject as usize], subject_id: f.subject, index: f.index, name: f.name.clone() };
        let truth = GroundTruth { coeffs: f.truth.coeffs.clone(), pose: Some(f.truth.pose.clone()), sh: Some(f.truth.sh.clone()) };
        // 3D targets as PGN's UV map holds them: the image x, y (with the detector's noise) and
        // the true depth under the frame's pose.
        let (camera_model, camera) = f.truth.pose.camera();
        let points: Vec<f32> = f.truth.landmarks_3d.iter().flatten().copied().collect();
        let depths = faceforge_kernels::project::forward_cpu(camera_model, &points, &camera, f.truth.landmarks_3d.len());
        let landmarks_3d = f.landmarks.iter().zip(depths.chunks(4)).map(|(p, d)| [p[0], p[1], d[2]]).collect();
        let mut entity = world.spawn((
            frame,
            Image { width: f.size, height: f.size, rgb: f.image.clone() },
            Landmarks2d { points: f.landmarks.clone() },
            Landmarks3d { points: landmarks_3d },
            SkinMask { weights: f.face_mask.clone() },
            truth,
            Coeffs::zeros(model.n_id(), model.n_exp(), model.n_albedo()),
        ));
        if !f.dense.is_empty() {
            entity.insert(DenseLandmarks { points: f.dense.iter().map(|p| [p[0], p[1], 0.0]).collect(), score: 1.0, depth: false });
        }
    }
    frames.len()
}

fn populate_sampled(world: &mut World, spec: &SampledData, model: &MorphableModel, seed: u64) -> usize {
    let mut rng = SplitMix64::new(seed);
    let mut count = 0;
    for s in 0..spec.subjects {
        let subject = world.spawn(Subject { id: s, name: format!("s{s:03}") }).id();
        let id = rng.scaled_normals(model.id_sigma(), spec.identity_scale);
        let tex = rng.scaled_normals(model.albedo_sigma(), spec.albedo_scale);
        for f in 0..spec.frames {
            let coeffs = Coeffs { id: id.clone(), exp: rng.scaled_normals(model.exp_sigma(), spec.expression_scale), tex: tex.clone() };
            let frame = Frame { subject, subject_id: s, index: f, name: format!("s{s:03}_f{f:03}") };
            world.spawn((frame, GroundTruth { coeffs: coeffs.clone(), pose: None, sh: None }, coeffs));
            count += 1;
        }
    }
    count
}
