//! 2DASL in learn mode: the self-critic tells true (image, parameters) pairs from shuffled ones
//! after a short training; the scene and its Table 2 sweep train at a small size.

use burn::tensor::{Tensor, TensorData};
use faceforge::run::train::Session;
use faceforge_components::{Frame, GroundTruth, Image};
use faceforge_e2e::{frames_by_name, scene_into};
use faceforge_learn::critic::{discriminator_loss, AlphaScale};
use faceforge_learn::Learner;

/// The batch's RGB images (B, 3, S, S) and the critic's α of each frame's ground truth, in
/// frame-name order.
fn batch(session: &mut Session, scale: &AlphaScale) -> (Tensor<4>, Vec<Vec<f32>>) {
    let entities = frames_by_name(&mut session.world);
    let device = session.world.resource::<Learner>().device.clone();
    let (mut pixels, mut alphas, mut size): (Vec<f32>, Vec<Vec<f32>>, usize) = (Vec::new(), Vec::new(), 0);
    for e in &entities {
        let entity = session.world.entity(*e);
        let (image, truth) = (entity.get::<Image>().unwrap(), entity.get::<GroundTruth>().unwrap());
        assert!(entity.get::<Frame>().is_some());
        size = image.width;
        (0..3).for_each(|c| pixels.extend(image.rgb.iter().skip(c).step_by(3)));
        alphas.push(scale.alpha(truth.pose.as_ref().unwrap(), &truth.coeffs).unwrap());
    }
    (Tensor::from_data(TensorData::new(pixels, [entities.len(), 3, size, size]), &device), alphas)
}

/// Each frame's α moved to the next frame: every pair false.
fn shuffled(alphas: &[Vec<f32>]) -> Vec<Vec<f32>> {
    (0..alphas.len()).map(|k| alphas[(k + 1) % alphas.len()].clone()).collect()
}

fn matrix(rows: &[Vec<f32>], device: &burn::tensor::Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(rows.concat(), [rows.len(), rows[0].len()]), device)
}

/// The critic alone, trained on 32-pixel frames with their true parameters against the same
/// frames with another frame's (600 steps of 32 pairs each way; it sits at chance for a few hundred
/// steps before it finds the image–pose relation), then scored on frames no step drew. It scored
/// 0.969 on the analytic face; on the canonical face (issue 20) 0.750 after the same 600 steps,
/// the same slowness to read the pose off small images as PGN's CI-sized training
/// (`tests/learn.rs`, docs/results.md). Ignored until that is understood:
/// `cargo test -p faceforge-e2e --test twodasl -- --ignored`.
#[test]
#[ignore = "issue 20: on the canonical face the critic reaches 0.75, not 0.9, in 600 steps (docs/results.md)"]
fn the_critic_separates_true_from_shuffled_pairs_after_a_short_training() {
    let out = tempfile::tempdir().unwrap();
    let small = ["data.Synthetic.subjects=32", "data.Synthetic.size=32", "learn.network.input=32", "learn.two_d_fraction=0.0"];
    let loaded = scene_into("2dasl.ron", &small.map(String::from), out.path());
    let mut session = Session::new(&loaded, None).unwrap();
    let scale = AlphaScale::new(&session.model, 32).unwrap();
    session.world.resource_mut::<Learner>().learning_rate = 2e-3;
    for step in 0..600 {
        session.feed(step).unwrap();
        let (images, alphas) = batch(&mut session, &scale);
        let learner = session.world.resource::<Learner>();
        let critic = learner.net.critic.as_ref().unwrap();
        let z = critic.latent(images);
        let loss = discriminator_loss(critic.score(z.clone(), matrix(&alphas, &learner.device)), critic.score(z, matrix(&shuffled(&alphas), &learner.device)));
        let mut learner = session.world.resource_mut::<Learner>();
        learner.backward(vec![loss]);
        learner.step();
    }
    // Held-out frames (a batch no step drew).
    session.feed(100_000).unwrap();
    let (images, alphas) = batch(&mut session, &scale);
    let learner = session.world.resource::<Learner>();
    let critic = learner.net.critic.as_ref().unwrap();
    let z = critic.latent(images);
    let logits = |rows: &[Vec<f32>]| -> Vec<f32> { critic.score(z.clone(), matrix(rows, &learner.device)).into_data().try_into_vec::<f32>().unwrap() };
    let (real, fake) = (logits(&alphas), logits(&shuffled(&alphas)));
    let right = real.iter().filter(|l| **l > 0.0).count() + fake.iter().filter(|l| **l < 0.0).count();
    let accuracy = right as f32 / (real.len() + fake.len()) as f32;
    eprintln!("critic accuracy on {} held-out pairs: {accuracy:.3}", real.len() + fake.len());
    assert!(accuracy >= 0.9, "accuracy {accuracy}");
}

/// Overrides that make 2DASL's scenes tiny: 32-pixel frames of the tiny model, a 2-channel
/// network, 3 steps of 3 frames.
fn tiny() -> Vec<String> {
    [
        "data.Synthetic.subjects=3",
        "data.Synthetic.size=32",
        "learn.network.input=32",
        "learn.network.width=2",
        "learn.network.hidden=8",
        "model.Procedural.preset=Tiny",
        "iterations=3",
        "learn.held_out=3",
        "outputs.checkpoint_every=0",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn the_2dasl_scenes_and_the_table_2_sweep_train_at_a_small_size() {
    let out = tempfile::tempdir().unwrap();
    let options = faceforge::run::RunOptions::default();
    let stage1 = faceforge::run::train::train(&scene_into("2dasl.ron", &tiny(), &out.path().join("stage1")), &options, false).unwrap();
    let names: Vec<&str> = stage1.losses.keys().map(String::as_str).collect();
    assert_eq!(names, ["consistency_2d", "consistency_3d", "cycle", "self_critic", "weighted_coefficients"]);
    assert!(stage1.losses.values().all(|v| v.is_finite()));
    assert!(stage1.held_out.nme_reconstruction.is_some_and(f32::is_finite));

    let mut overrides = tiny();
    overrides.push(format!("learn.init={:?}", stage1.weights.display().to_string()));
    let stage2 = faceforge::run::train::train(&scene_into("2dasl_stage2.ron", &overrides, &out.path().join("stage2")), &options, false).unwrap();
    assert!(stage2.losses.get("vertex_distance").is_some_and(|v| v.is_finite() && *v > 0.0), "{:?}", stage2.losses);
    assert!(!stage2.losses.contains_key("weighted_coefficients"));

    let table = faceforge_e2e::sweep_into("2dasl_ablation.ron", &tiny(), &out.path().join("sweep"));
    let rows: Vec<(&str, Vec<&str>)> = table.trainings.iter().map(|r| (r.variant.as_str(), r.losses.keys().map(String::as_str).collect())).collect();
    let all = vec!["consistency_2d", "consistency_3d", "cycle", "self_critic", "weighted_coefficients"];
    let cyc = vec!["consistency_2d", "consistency_3d", "cycle", "weighted_coefficients"];
    assert_eq!(
        rows,
        [
            ("base", vec!["weighted_coefficients"]),
            ("cyc", cyc.clone()),
            ("cyc, no mask", cyc.clone()),
            ("sc", vec!["self_critic", "weighted_coefficients"]),
            ("cyc, λ / 100", cyc),
            ("cyc + sc", all.clone()),
            ("cyc + sc, no mask", all.clone()),
            ("cyc + sc, λ / 100", all),
        ]
    );
    assert!(table.trainings.iter().all(|r| r.held_out.nme_reconstruction.is_some_and(f32::is_finite)));
    let markdown = std::fs::read_to_string(out.path().join("sweep/table.md")).unwrap();
    assert!(markdown.contains("| cyc + sc, no mask |") && markdown.contains("| mean face |"), "{markdown}");
    // The variants without the self-supervision run the network on RGB alone.
    let info = |variant: &str| std::fs::read_to_string(out.path().join("sweep").join(variant).join("weights.json")).unwrap();
    assert!(info("base").contains("\"landmark_map\": false") && info("cyc").contains("\"landmark_map\": true"));
    assert!(info("sc").contains("\"critic\": true") && info("cyc").contains("\"critic\": false"));
}
