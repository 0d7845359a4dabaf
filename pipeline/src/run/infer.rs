//! `faceforge infer`: a trained network on a folder of images. It is a one-iteration run of an
//! inference scene — `encode`, the pose (PGN's closed form, or the pose head), `reconstruct`,
//! `render` — over the folder, so every output a fit writes is written here too: OBJ with its
//! texture, `.pts` landmarks in the original image's pixels, pose and coefficients, overlays and
//! the report. Sub-folders are clips or multi-view sets: their frames share one identity (the
//! network fuses their features).

use crate::io::inputs::{FolderSpec, Skipped};
use crate::run::shard::Shard;
use crate::run::subjects::{folder_of, run_folder, Lend};
use crate::run::RunOptions;
use crate::scene::ModelSource;
use crate::LoadedScene;
use anyhow::Context;
use faceforge_learn::{DeviceChoice, LearnDevice, Learner};
use std::path::Path;

/// What an inference did.
#[derive(Debug)]
pub struct InferResult {
    pub frames: usize,
    pub subjects: usize,
    pub seconds: f64,
    pub skipped: Vec<Skipped>,
}

/// The inference scene for a network, checked like any scene (its data and model are put in
/// after parsing).
fn scene_text(out: &Path, pose_head: bool, batch: usize) -> String {
    let (guide, pose) = if pose_head { ("false", "(name: \"direct_pose\")") } else { ("true", "(name: \"pgn\", settings: (camera: ScaledRotation))") };
    format!(
        r#"Scene(
    name: "inference",
    data: Sampled(),
    backend: Cpu,
    systems: [
        (name: "encode", settings: (guide: {guide}, batch: {batch})),
        {pose},
        (name: "reconstruct", settings: (albedo: true)),
        (name: "vertex_normals"),
        (name: "render"),
    ],
    iterations: 1,
    outputs: (dir: {out:?}, meshes: [Obj], coefficients: true, images: true, landmarks: true, checkpoint_every: 0),
    learn: (),
)"#
    )
}

/// Reconstructs every image of `images` with the network in `weights`, `batch` frames at a time
/// (whole subjects), into `out` (a shard's subjects into its folder inside `out`), the network
/// on `device`.
#[allow(clippy::too_many_arguments)]
pub fn infer(model: &ModelSource, weights: &Path, images: &Path, landmarks: Option<&Path>, out: &Path, force: bool, batch: usize, device: DeviceChoice, shard: Option<Shard>) -> anyhow::Result<InferResult> {
    let started = std::time::Instant::now();
    let model_arrays = crate::run::load_model(model)?;
    let device = LearnDevice::select(device)?;
    tracing::info!("network on {}", device.describe());
    let mut learner = Learner::load_on(weights, &model_arrays, device.device)?;
    learner.configure(learner.trained, false);
    let folder = FolderSpec {
        path: images.to_path_buf(),
        // The network finds the landmarks itself: `.pts` files, when given, only frame the crop.
        landmarks: crate::io::inputs::LandmarkSource::Files,
        pts_dir: landmarks.map(Path::to_path_buf),
        size: learner.info.network.input,
        require_landmarks: false,
        ..FolderSpec::default()
    };
    let mut loaded = LoadedScene::from_str(&scene_text(out, learner.info.pose_head, batch), "inference scene").context("the inference scene")?;
    loaded.scene.data = crate::scene::DataSpec::Folder(folder);
    loaded.scene.model = model.clone();
    let options = RunOptions { progress: false, overwrite: force, stop_after: None, no_checkpoints: true, shard };
    let dir = options.shard.unwrap_or(Shard::WHOLE).folder(out);
    let folder = folder_of(&loaded.scene.data).context("the inference scene reads a folder")?;
    let summary = run_folder(&loaded, &folder, &dir, &options, false, &mut Lent(Some(learner)))?;
    let subjects = crate::run::shard::read(&dir)?.mine().count();
    Ok(InferResult { frames: summary.frames, subjects, seconds: started.elapsed().as_secs_f64(), skipped: summary.skipped })
}

/// The network, lent to each subject's World.
struct Lent(Option<Learner>);

impl Lend for Lent {
    fn lend(&mut self, world: &mut bevy_ecs::world::World) {
        if let Some(learner) = self.0.take() {
            world.insert_resource(learner);
        }
    }

    fn take_back(&mut self, world: &mut bevy_ecs::world::World) {
        self.0 = world.remove_resource::<Learner>().or(self.0.take());
    }
}
