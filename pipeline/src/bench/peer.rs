//! What `benches/peer/` compares: the landmark + regulariser fit of a scene
//! (`scenes/landmark_fit.ron`) timed here, and, for the PyTorch peer to run the same fit on the
//! same numbers, the model's arrays, the frames' landmarks, the starting poses and coefficients,
//! the optimiser's settings and this run's timings and loss curve (`manifest.json` and raw
//! little-endian f32 files beside it); and one learn-mode training step of PGN's step 1 with its
//! batch (`train_<size>.json`, `train_<size>.f32`).

use crate::LoadedScene;
use anyhow::{bail, Context};
use faceforge_components::{Coeffs, Frame, Image, Landmarks2d};
use faceforge_systems::adam::AdamSettings;
use faceforge_systems::direct_pose::{params_of, DirectPoseSettings, PoseInit};
use std::path::Path;
use std::time::Instant;

/// The graph the peer implements; another graph would not be the same job.
const PEER_SYSTEMS: [&str; 7] = ["direct_pose", "reconstruct", "loss_landmark", "loss_regulariser", "reconstruct_backward", "direct_pose_backward", "adam"];

/// faceforge's side of the comparison.
#[derive(Debug)]
pub struct FitTiming {
    /// Milliseconds per iteration: min, median, max.
    pub ms: [f64; 3],
    /// The whole fit, first iteration (and its set-up) included.
    pub seconds: f64,
    /// The total loss at each iteration (before that iteration's step).
    pub losses: Vec<f32>,
    pub frames: usize,
    pub iterations: u32,
}

/// The settings string a scene gives system `name`.
fn settings_of<'a>(loaded: &'a LoadedScene, name: &str) -> Option<&'a str> {
    loaded.scene.systems.iter().find(|s| s.name == name).and_then(|s| s.settings.as_deref()).map(|raw| raw.get_ron())
}

/// The two ways to decode a landmark fit, as `reconstruct` settings: the variant's name and the
/// settings.
pub const VARIANTS: [(&str, &str); 2] = [("full mesh", "(albedo: false, vertices: All)"), ("landmark rows only", "(albedo: false, vertices: Landmarks)")];

/// Runs the scene's fit once per decode variant, iteration by iteration (timing each). Given
/// `export`, first writes the peer's inputs there, then each variant's timings and loss curve
/// into its manifest.
pub fn landmark_fit(loaded: &LoadedScene, export: Option<&Path>) -> anyhow::Result<Vec<(&'static str, FitTiming)>> {
    let scene = &loaded.scene;
    let names = crate::scene::graph::plan(loaded)?.names();
    if names != PEER_SYSTEMS {
        bail!("{}: the peer implements the graph {PEER_SYSTEMS:?}, this scene's is {names:?}", loaded.file);
    }
    let adam = match &scene.optimizer {
        Some(crate::scene::Optimizer::Adam(settings)) => settings.clone(),
        _ => AdamSettings::default(),
    };
    let pose: DirectPoseSettings = faceforge_systems::parse_settings(settings_of(loaded, "direct_pose")).map_err(|e| anyhow::anyhow!("{}: direct_pose: {e}", loaded.file))?;
    if pose.init != PoseInit::Landmarks {
        bail!("{}: the peer starts the pose from the landmarks (direct_pose's `init: Landmarks`)", loaded.file);
    }
    // One model for the export and both variants (generating the `bfm` one takes seconds).
    let model = std::sync::Arc::new(crate::run::load_model(&scene.model)?);
    if let Some(dir) = export {
        export_inputs(loaded, &model, &adam, dir)?;
    }
    let mut results = Vec::new();
    for (name, settings) in VARIANTS {
        let mut variant = loaded.clone();
        variant.scene.systems[1].settings = Some(ron::value::RawValue::from_boxed_ron(settings.into()).map_err(|e| anyhow::anyhow!("{e}"))?);
        results.push((name, time_fit(&variant, &model)?));
    }
    if let Some(dir) = export {
        let path = dir.join("manifest.json");
        let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        manifest["machine"] = crate::bench::machine().into();
        manifest["faceforge"] = results
            .iter()
            .map(|(name, t)| serde_json::json!({ "name": name, "ms_per_iteration": t.ms, "seconds": t.seconds, "losses": t.losses }))
            .collect();
        write_manifest(dir, &manifest)?;
    }
    Ok(results)
}

/// The model's arrays, the frames, their starts and the settings, for the peer.
fn export_inputs(loaded: &LoadedScene, model: &std::sync::Arc<faceforge_model::MorphableModel>, adam: &AdamSettings, dir: &Path) -> anyhow::Result<()> {
    let scene = &loaded.scene;
    let mut prepared = crate::run::prepare_with_model(loaded, model.clone())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut q = prepared.world.query::<(&Frame, &Image, &Landmarks2d, &Coeffs)>();
    let mut frames: Vec<_> = q.iter(&prepared.world).collect();
    frames.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut records = Vec::new();
    for (frame, image, targets, coeffs) in frames {
        // The start direct_pose takes: the affine fit of the coefficients' landmarks.
        let x = faceforge_systems::pgn::landmark_positions(model, coeffs);
        let fit = faceforge_kernels::pgn::solve(&x, &targets.points).map_err(|e| anyhow::anyhow!("frame {}: {e}", frame.name))?;
        let p = params_of(&fit.rows());
        records.push(serde_json::json!({
            "name": frame.name, "width": image.width, "height": image.height,
            "landmarks": targets.points, "id": coeffs.id, "exp": coeffs.exp,
            "angles": p.angles, "log_scale": p.log_scale, "translation": p.translation,
        }));
    }
    for (file, values) in [("mean_shape", model.mean_shape()), ("id_basis", model.id_basis()), ("exp_basis", model.exp_basis()), ("id_sigma", model.id_sigma()), ("exp_sigma", model.exp_sigma())] {
        let path = dir.join(format!("{file}.f32"));
        std::fs::write(&path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).with_context(|| format!("writing {}", path.display()))?;
    }
    let manifest = serde_json::json!({
        "scene": loaded.file,
        "vertices": model.n_vertices(), "n_id": model.n_id(), "n_exp": model.n_exp(),
        "landmark_vertices": model.landmarks(),
        "frames": records,
        "iterations": scene.iterations,
        "weights": { "landmark": scene.losses.get("landmark"), "regulariser": scene.losses.get("regulariser") },
        // loss_landmark's and loss_regulariser's defaults, which the scene keeps.
        "landmark_crop": faceforge_systems::loss_landmark::PAPER_CROP,
        "regulariser_factors": [1.0, 0.5],
        "adam": { "lr": adam.lr, "beta1": adam.beta1, "beta2": adam.beta2, "eps": adam.eps, "halve_every": adam.halve_every,
                  "units": { "angle": adam.units.angle, "log_scale": adam.units.log_scale, "translation": adam.units.translation } },
    });
    write_manifest(dir, &manifest)
}

/// The whole fit, each iteration timed.
fn time_fit(loaded: &LoadedScene, model: &std::sync::Arc<faceforge_model::MorphableModel>) -> anyhow::Result<FitTiming> {
    let mut prepared = crate::run::prepare_with_model(loaded, model.clone())?;
    let iterations = loaded.scene.iterations;
    let start = Instant::now();
    let (mut samples, mut last) = (Vec::new(), start);
    let (history, _) = crate::run::iterate_with(&mut prepared, 0..iterations, false, crate::report::LossHistory::default(), |_, _, _| {
        let now = Instant::now();
        samples.push((now - last).as_secs_f64() * 1e3);
        last = now;
        Ok(false)
    })?;
    let losses = history.0.iter().map(|terms| terms.values().sum::<f32>()).collect();
    Ok(FitTiming { ms: crate::bench::spread(samples), seconds: start.elapsed().as_secs_f64(), losses, frames: prepared.frames, iterations })
}

fn write_manifest(dir: &Path, manifest: &serde_json::Value) -> anyhow::Result<()> {
    let path = dir.join("manifest.json");
    faceforge_model::atomic_write(&path, serde_json::to_string_pretty(manifest)?.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// One training step of a learn scene (`scenes/pgn_train_guidance.ron`: PGN's step 1, the
/// encoder and UV decoder trained from the landmark guidance loss, the heads run detached) at
/// `size`², for the peer: writes the batch (images, landmark targets), the network's shape, the
/// landmarks' UVs and the optimiser, and faceforge's step timings (`train_<size>.json`, images in
/// `train_<size>.f32`, B × 3 × S × S in [0, 1]).
pub fn training_step(loaded: &LoadedScene, size: usize, repeats: usize, dir: &Path) -> anyhow::Result<[f64; 3]> {
    let mut s = loaded.clone();
    s.apply_overrides(&[format!("data.Synthetic.size={size}"), format!("learn.network.input={size}")])?;
    let names = crate::scene::graph::plan(&s)?.names();
    if names != ["encode", "loss_guidance", "encode_backward", "encoder_step"] {
        bail!("{}: the peer implements PGN's step 1 (encode, loss_guidance, encode_backward, encoder_step), not {names:?}", loaded.file);
    }
    let mut session = crate::run::train::Session::new(&s, None)?;
    let learn = session.learn.clone();
    let net = &learn.network;
    if learn.trained != faceforge_learn::Trained::Guidance || net.landmarks != faceforge_learn::LandmarkHead::UvMap || net.landmark_map || learn.pose_head || learn.appearance || learn.critic || learn.conditional {
        bail!("{}: the peer implements the step-1 network (UV-map landmarks, identity and expression heads, RGB input)", loaded.file);
    }
    session.feed(0)?;
    // Timed as `faceforge bench train` times it: one warm-up (which also turns the frames'
    // annotations into `LandmarkTargets`), then `repeats` steps.
    session.run(0)?;
    let ms = crate::bench::timed(repeats, || session.run(0).map(|_| ()))?;
    let mut q = session.world.query::<(&Frame, &Image, &faceforge_components::LandmarkTargets)>();
    let mut frames: Vec<_> = q.iter(&session.world).collect();
    frames.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut chw = Vec::new();
    let mut targets = Vec::new();
    for (frame, image, t) in &frames {
        if image.width != size || image.height != size {
            bail!("frame {}: {}×{} pixels, the network takes {size}²", frame.name, image.width, image.height);
        }
        for c in 0..3 {
            chw.extend(image.rgb.chunks(3).map(|p| p[c]));
        }
        targets.push(serde_json::json!({ "points_2d": t.points_2d, "points_3d": t.points_3d }));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let images = dir.join(format!("train_{size}.f32"));
    std::fs::write(&images, chw.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).with_context(|| format!("writing {}", images.display()))?;
    let model = session.model.clone();
    let uvs: Vec<[f32; 2]> = model.landmarks().iter().map(|&v| [model.uv()[2 * v as usize], model.uv()[2 * v as usize + 1]]).collect();
    let batch = frames.len();
    // The peer builds the same layers: it checks its parameter count against this one.
    let parameters = session.world.resource::<faceforge_learn::Learner>().parameter_count();
    let manifest = serde_json::json!({
        "scene": loaded.file, "size": size, "batch": batch,
        "width": net.width, "hidden": net.hidden, "parameters": parameters, "n_id": model.n_id(), "n_exp": model.n_exp(),
        "landmark_uvs": uvs, "targets": targets,
        // loss_guidance's crop and burn's AdamConfig defaults.
        "landmark_crop": faceforge_systems::loss_landmark::PAPER_CROP,
        "adam": { "lr": learn.learning_rate, "beta1": 0.9, "beta2": 0.999, "eps": 1e-5 },
        "faceforge": { "ms_per_step": ms, "repeats": repeats },
    });
    let path = dir.join(format!("train_{size}.json"));
    faceforge_model::atomic_write(&path, serde_json::to_string_pretty(&manifest)?.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(ms)
}
