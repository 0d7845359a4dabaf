//! The GPU on this machine's lavapipe (Mesa's CPU Vulkan driver): burn's networks on the wgpu
//! device the kernels use train as they do on flex.

use faceforge::run::train::Session;
use faceforge::LoadedScene;
use faceforge_e2e::tiny_scene;
use faceforge_learn::Learner;
use std::path::Path;

/// A tiny network trained through the whole PGN graph (encode → pgn → reconstruct → landmark
/// loss and their adjoints) on 32-pixel faces, every part trained; `step: false` leaves Adam to
/// the caller.
fn tiny_training(device: &str, step: bool, out: &Path) -> LoadedScene {
    tiny_scene(
        r#"(name: "encode"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct"), (name: "loss_landmark", settings: (dims: 3))"#,
        r#""guidance": 1.0, "landmark": 1.0, "regulariser": 1.0"#,
        &format!("trained: All, learning_rate: 0.001, device: {device}"),
        step,
        out,
    )
}

/// ‖a − b‖ / ‖b‖ over one flattened tensor.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

/// Per step: the losses, the gradients (the graph's optimiser steps nothing: Adam is applied
/// here, after they are read) and the weights after.
type Trace = Vec<(Vec<f32>, Vec<Option<Vec<f32>>>, Vec<Vec<f32>>)>;

fn trace(device: &str) -> Trace {
    let out = tempfile::tempdir().unwrap();
    let mut session = Session::new(&tiny_training(device, false, out.path()), None).unwrap();
    let on = session.world.resource::<Learner>().device.clone();
    eprintln!("learn.device {device}: {on:?}");
    if device == "Gpu" {
        // The network runs on the kernels' own wgpu device (one client, one memory pool).
        let kernels = faceforge_kernels::backend::wgpu_device().unwrap().0;
        assert_eq!(on, burn::tensor::Device::new(kernels).autodiff(), "the network is not on the kernels' wgpu device");
    }
    (0..3)
        .map(|step| {
            session.feed(step).unwrap();
            let losses: Vec<f32> = session.run(step).unwrap().into_values().collect();
            let grads = session.world.resource::<Learner>().pending_gradients();
            session.world.resource_mut::<Learner>().step();
            (losses, grads, session.world.resource::<Learner>().parameters())
        })
        .collect()
}

/// One step from the same weights: the losses, every parameter's gradient and every parameter
/// after Adam agree within 1e-3 (relative, in norm). Over the next two steps the losses and the
/// gradients still agree per parameter, and the weights over the whole network: parameter by
/// parameter they need not, because Adam divides each gradient by its own running size, so an
/// element whose gradient is zero in exact arithmetic (the UV map's z-offset bias: PGN's pose
/// removes the landmarks' mean depth) steps by ±lr on the sign of its rounding residue — here
/// 4·10⁻⁴ on wgpu against 1·10⁻⁴ on flex beside gradients of 1.6·10⁴, a 1.2·10⁻³ change of that
/// 3-number bias.
#[test]
fn a_training_step_on_wgpu_equals_one_on_flex() {
    let (flex, wgpu) = (trace("Cpu"), trace("Gpu"));
    let mut worst = [0.0f64; 3];
    for (step, ((lf, gf, pf), (lw, gw, pw))) in flex.iter().zip(&wgpu).enumerate() {
        worst[0] = worst[0].max(relative(lw, lf));
        assert!(relative(lw, lf) <= 1e-3, "step {step}: losses {lw:?} on wgpu, {lf:?} on flex");
        let with_grad = gf.iter().filter(|g| g.is_some()).count();
        assert!(with_grad > 20, "step {step}: only {with_grad} parameters have gradients");
        for (i, (a, b)) in gw.iter().zip(gf).enumerate() {
            let (Some(a), Some(b)) = (a, b) else {
                assert_eq!(a.is_some(), b.is_some(), "step {step}: parameter {i} has a gradient on one device only");
                continue;
            };
            worst[1] = worst[1].max(relative(a, b));
            assert!(relative(a, b) <= 1e-3, "step {step}: parameter {i}'s gradient differs by {:.2e} (relative)", relative(a, b));
        }
        if step == 0 {
            for (i, (a, b)) in pw.iter().zip(pf).enumerate() {
                assert!(relative(a, b) <= 1e-3, "step 0: parameter {i} after Adam differs by {:.2e} (relative)", relative(a, b));
            }
        }
        let (all_w, all_f): (Vec<f32>, Vec<f32>) = (pw.concat(), pf.concat());
        worst[2] = worst[2].max(relative(&all_w, &all_f));
        assert!(relative(&all_w, &all_f) <= 1e-3, "step {step}: the weights differ by {:.2e} (relative)", relative(&all_w, &all_f));
    }
    eprintln!("largest relative difference over 3 steps: losses {:.1e}, gradients {:.1e}, weights {:.1e}", worst[0], worst[1], worst[2]);
}

/// `faceforge infer --device gpu` reconstructs a folder as `--device cpu` does: the identity,
/// expression and pose coefficients agree within 1e-3 (relative, per frame and vector).
#[test]
fn inference_on_wgpu_equals_inference_on_flex() {
    use faceforge::io::synth::{generate, write, SynthPreset, SynthSpec};
    use faceforge_learn::DeviceChoice;
    let dir = tempfile::tempdir().unwrap();
    let trained = dir.path().join("trained");
    let training = tiny_training("Cpu", true, &trained);
    faceforge::run::train::train(&training, &faceforge::run::RunOptions::default(), false).unwrap();
    let images = dir.path().join("images");
    let model = faceforge_model::MorphableModel::generate(&faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, ..Default::default() });
    let spec = SynthSpec { preset: SynthPreset::AflwLike, subjects: 4, frames: 1, size: 48, seed: 9, ..Default::default() };
    write(&images, &generate(&model, &faceforge_kernels::Backend::Cpu, &spec)).unwrap();
    let tiny = faceforge::scene::ModelSource::Procedural(faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, ..Default::default() });
    let run = |device: DeviceChoice, name: &str| {
        let out = dir.path().join(name);
        let result = faceforge::run::infer::infer(&tiny, &trained.join("weights.bpk"), &images, None, &out, false, 32, device, None).unwrap();
        assert_eq!(result.frames, 4);
        out
    };
    let (flex, wgpu) = (run(DeviceChoice::Cpu, "flex"), run(DeviceChoice::Gpu, "wgpu"));
    let numbers = |out: &Path, frame: &str, key: &str| -> Vec<f32> {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("{frame}.json"))).unwrap()).unwrap();
        serde_json::from_value(json["coefficients"][key].clone()).unwrap()
    };
    let mut worst = 0.0f64;
    for frame in ["s000_f000", "s001_f000", "s002_f000", "s003_f000"] {
        for key in ["id", "exp"] {
            let (a, b) = (numbers(&wgpu, frame, key), numbers(&flex, frame, key));
            assert!(b.iter().any(|v| *v != 0.0), "{frame} {key}: all zero");
            worst = worst.max(relative(&a, &b));
            assert!(relative(&a, &b) <= 1e-3, "{frame} {key}: {:.2e} apart", relative(&a, &b));
        }
    }
    eprintln!("inference, largest relative difference of the coefficients: {worst:.1e}");
    // Bit-identical coefficients everywhere would mean both ran on one device.
    assert!(worst > 0.0, "--device gpu gave flex's bits exactly: was the network on wgpu?");
}
