//! Video in: clips written by the system's ffmpeg from real pictures, decoded back through the
//! pipe, the face tracked from frame to frame, and fitted with the temporal term and the pair
//! schedules.

use faceforge::io::synth::{generate, SynthPreset, SynthSpec};
use faceforge::io::video::{decode, probe, FrameSelection};
use faceforge::LoadedScene;
use faceforge_e2e::{examples_dir, scene};
use faceforge_kernels::Backend;
use faceforge_model::{ModelSpec, MorphableModel, Preset};
use std::path::Path;
use std::process::Command;

/// Encodes `dir/f%03d.png` at 25 fps into `out` (H.264, 4:2:0, as phones write them).
fn encode(dir: &Path, out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "25", "-i"])
        .arg(dir.join("f%03d.png"))
        .args(["-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p"])
        .arg(out)
        .status()
        .expect("ffmpeg runs (Debian's ffmpeg package, installed by .ci/run)");
    assert!(status.success());
}

fn write_png(path: &Path, rgb: &[f32], width: usize, height: usize) {
    std::fs::write(path, faceforge::io::outputs::png_bytes(rgb, width, height)).unwrap();
}

#[test]
fn an_mp4_decodes_to_its_frames_within_codec_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
    let frames = generate(&model, &Backend::Cpu, &SynthSpec { preset: SynthPreset::ClipLike, subjects: 1, frames: 10, size: 96, landmark_noise: 0.0, ..SynthSpec::default() });
    for (k, f) in frames.iter().enumerate() {
        write_png(&dir.path().join(format!("f{k:03}.png")), &f.image, 96, 96);
    }
    let clip = dir.path().join("clip.mp4");
    encode(dir.path(), &clip);

    let info = probe(&clip).unwrap();
    assert_eq!((info.width, info.height, info.fps, info.frames), (96, 96, 25.0, Some(10)));
    let (_, all) = decode(&clip, FrameSelection::default()).unwrap();
    let decoded: Vec<_> = all.iter().map(|f| f.unwrap()).collect();
    assert_eq!(decoded.len(), 10, "every frame");
    for (f, original) in decoded.iter().zip(&frames) {
        // H.264 at CRF 12 with 4:2:0 chroma: a mean error of a few levels.
        let error: f32 = f.image.as_raw().iter().zip(&original.image).map(|(a, b)| (*a as f32 / 255.0 - b).abs()).sum::<f32>() / original.image.len() as f32;
        assert!(error < 3.0 / 255.0, "frame {}: mean error {:.2}/255", f.index, 255.0 * error);
    }
    assert_eq!(decoded.iter().map(|f| (f.index, f.seconds)).collect::<Vec<_>>()[..2], [(0, 0.0), (1, 0.04)]);
    // Every third frame, at most three.
    let (_, some) = decode(&clip, FrameSelection { every: 3, max_frames: 3 }).unwrap();
    assert_eq!(some.iter().map(|f| f.unwrap().index).collect::<Vec<_>>(), [0, 3, 6]);
    // Not a video: the error names the file.
    std::fs::write(dir.path().join("bad.mp4"), b"not a video").unwrap();
    let err = format!("{:#}", probe(&dir.path().join("bad.mp4")).unwrap_err());
    assert!(err.contains("bad.mp4") && err.contains("ffprobe"), "{err}");
}

/// A slow clip cut from a real portrait: a 760-px window drifting 4 px right and 3 px down a
/// frame, shown at 320 px (the face about 60 px between the eyes, as in a video of a person), with
/// one grey frame in the middle.
fn slow_clip(dir: &Path, frames: usize, grey: usize) -> std::path::PathBuf {
    let photo = image::open(examples_dir().join("obama.jpg")).unwrap().to_rgb8();
    for k in 0..frames {
        let window = image::imageops::crop_imm(&photo, 100 + 4 * k as u32, 3 * k as u32, 760, 760).to_image();
        let window = image::imageops::resize(&window, 320, 320, image::imageops::FilterType::Triangle);
        let rgb: Vec<f32> = if k == grey { vec![0.5; 320 * 320 * 3] } else { window.as_raw().iter().map(|&b| b as f32 / 255.0).collect() };
        write_png(&dir.join(format!("f{k:03}.png")), &rgb, 320, 320);
    }
    let clip = dir.join("slow.mp4");
    encode(dir, &clip);
    clip
}

#[test]
fn tracking_follows_a_slow_clip_as_detection_does_and_recovers_after_a_lost_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = slow_clip(dir.path(), 8, 4);
    let detector = faceforge_detect::shared().unwrap();
    let mut tracker = faceforge_detect::Tracker::new(faceforge_detect::DetectOptions::default());
    let (_, frames) = decode(&clip, FrameSelection::default()).unwrap();
    let mut what = Vec::new();
    for frame in frames {
        let frame = frame.unwrap();
        match tracker.next(detector, &frame.image).unwrap() {
            faceforge_detect::Tracked::Found { face, detected } => {
                // The same frame detected from scratch: the tracked crop gives the same points within
                // 1 px (measured 0.6–0.9 px RMS here). The two crops differ (the landmarks' box is
                // about 9 % larger than the detector's), and FaceMesh moves with its crop: about
                // 1.4 % of the interocular distance, 2.5 px on a face four times this size.
                let fresh = detector.faces(&frame.image, &faceforge_detect::DetectOptions::default()).unwrap().remove(0);
                let rms = (face.points.iter().zip(&fresh.points).map(|(a, b)| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sum::<f32>() / face.points.len() as f32).sqrt();
                assert!(rms < 1.0, "frame {}: tracked points {rms:.2} px RMS from detection's", frame.index);
                what.push(if detected { "detected" } else { "tracked" });
            }
            faceforge_detect::Tracked::Lost => what.push("lost"),
        }
    }
    assert_eq!(what, ["detected", "tracked", "tracked", "tracked", "lost", "detected", "tracked", "tracked"]);

    // As data: the lost frame is reported and skipped, never invented.
    let out = tempfile::tempdir().unwrap();
    let text = format!(
        r#"Scene(
            data: Video(path: {clip:?}, size: 96),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [(name: "share_identity"), (name: "pgn"), (name: "reconstruct", settings: (albedo: false))],
            losses: {{"landmark": 1.0, "regulariser": 1.0, "temporal": 10.0}},
            iterations: 3,
            outputs: (dir: {out:?}, coefficients: true),
        )"#,
        clip = clip.display().to_string(),
        out = out.path().display().to_string()
    );
    let summary = faceforge::run::run(&scene(&text, "video.ron"), false).unwrap();
    assert_eq!(summary.frames, 7);
    assert_eq!(summary.skipped.len(), 1, "{:?}", summary.skipped);
    assert!(summary.skipped[0].file.display().to_string().ends_with("slow.mp4#4") && summary.skipped[0].reason.contains("no face"), "{:?}", summary.skipped);
    assert!(out.path().join("slow_f00005.json").exists() && !out.path().join("slow_f00004.json").exists());
}

/// The still-clip fit: one synthetic face, twelve frames, only the landmark noise changing.
fn still_clip(temporal: f32, out: &Path) -> serde_json::Value {
    let text = format!(
        r#"Scene(
            seed: 3,
            data: Synthetic(preset: ClipLike, subjects: 1, frames: 12, size: 128, seed: 3, landmark_noise: 1.0, motion: 0.0),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [(name: "share_identity"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct", settings: (albedo: false))],
            losses: {{"landmark": 1.0, "regulariser": 1.0, "temporal": {temporal}}},
            iterations: 150,
            outputs: (dir: {out:?}),
        )"#,
        out = out.display().to_string()
    );
    faceforge::run::run(&scene(&text, "still.ron"), false).unwrap();
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    metrics["clips"][0].clone()
}

/// A still head with detector-like noise (σ = 1 px): the temporal term at the clip scene's weight
/// (10) lowers the fitted landmarks' jitter at least 2×, and the error to the truth grows by no
/// more than 5 % (it falls: the noise averages out).
#[test]
fn the_temporal_term_halves_the_jitter_of_a_still_clip() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (without, with) = (still_clip(0.0, a.path()), still_clip(10.0, b.path()));
    let get = |c: &serde_json::Value, key: &str| c[key].as_f64().unwrap();
    let (j0, j1) = (get(&without, "jitter_fit"), get(&with, "jitter_fit"));
    let (e0, e1) = (get(&without, "error_to_truth"), get(&with, "error_to_truth"));
    assert!(get(&without, "jitter_detector") > j0, "the fit is steadier than its landmarks");
    assert!(j1 <= j0 / 2.0, "jitter {j0:.3} % → {j1:.3} %");
    assert!(e1 <= 1.05 * e0, "error to the truth {e0:.3} % → {e1:.3} %");
    assert!(get(&with, "jitter_vertices_mm") < get(&without, "jitter_vertices_mm") / 2.0);
}

/// `pairs: Neighbours(1)` compares each frame with the frames beside it: 2(n − 1) swaps an
/// iteration where all ordered pairs are n(n − 1); on a 4-frame clip it fits within 10 % of the
/// per-vertex error of all pairs.
#[test]
fn neighbour_pairs_cost_linearly_and_fit_a_short_clip_as_all_pairs_do() {
    let out = tempfile::tempdir().unwrap();
    let clip = |frames: u32, pairs: &str, iterations: u32| -> LoadedScene {
        scene(
            &format!(
                r#"Scene(
                seed: 5,
                data: Synthetic(preset: ClipLike, subjects: 1, frames: {frames}, size: 96, seed: 5, landmark_noise: 1.0),
                model: Procedural(preset: Tiny),
                backend: Cpu,
                systems: [
                    (name: "share_identity"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct", settings: (albedo: true)),
                    (name: "vertex_normals"), (name: "sample_texture"), (name: "visibility", settings: (method: Normals)),
                    (name: "swap_visible_texture", settings: (pairs: {pairs})), (name: "render_swapped"),
                ],
                losses: {{"landmark": 1.0, "regulariser": 1.0, "census": 10.0}},
                iterations: {iterations},
                outputs: (dir: {out:?}),
            )"#,
                out = out.path().display().to_string()
            ),
            "pairs.ron",
        )
    };
    let swaps = |frames: u32, pairs: &str| -> usize {
        let mut p = faceforge::run::prepare(&clip(frames, pairs, 1)).unwrap();
        faceforge::run::iterate(&mut p, 1, false).unwrap();
        p.world.query::<&faceforge_components::RenderedSwaps>().iter(&p.world).map(|s| s.images.len()).sum()
    };
    let counts: Vec<(usize, usize)> = [4u32, 8, 16].iter().map(|&n| (swaps(n, "Neighbours(1)"), swaps(n, "All"))).collect();
    assert_eq!(counts, [(6, 12), (14, 56), (30, 240)]);
    let per_vertex = |pairs: &str| faceforge::run::run(&clip(4, pairs, 60), false).unwrap().metrics.unwrap().per_vertex_mm.mean;
    let (all, neighbours) = (per_vertex("All"), per_vertex("Neighbours(1)"));
    assert!((neighbours - all).abs() <= 0.1 * all, "per-vertex error: all pairs {all:.3} mm, neighbours {neighbours:.3} mm");
}

/// loss_temporal's gradients, through direct_pose and reconstruct's adjoints, against central
/// differences of the loss, for a middle frame of a moving four-frame clip moved off its smooth
/// path: each part of the term alone (the landmark part's gradient reaches the expression through
/// the mesh and the pose angles through direct_pose; the expression part's, the expression), so
/// each is compared at its own scale (the loss is summed in f32).
#[test]
fn the_temporal_gradients_match_central_differences() {
    use bevy_ecs::prelude::*;
    use faceforge::run::{iterate, prepare, Prepared};
    use faceforge_components::{Coeffs, Frame, Grad, LossTerms, PoseParams};
    let check = |part: &str| -> (Vec<(f64, f64)>, Vec<(f64, f64)>) {
        let text = format!(
            r#"Scene(
            data: Synthetic(preset: ClipLike, subjects: 1, frames: 4, size: 96, seed: 8, landmark_noise: 1.0),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [(name: "direct_pose"), (name: "reconstruct", settings: (albedo: false)), (name: "loss_temporal", settings: ({part}))],
            losses: {{"temporal": 1.0}},
            optimizer: NoStep,
            outputs: (dir: "unused"),
        )"#
        );
        let mut p = prepare(&scene(&text, "temporal_gradient.ron")).unwrap();
        iterate(&mut p, 1, false).unwrap();
        let entity = p.world.query::<(Entity, &Frame)>().iter(&p.world).find(|(_, f)| f.index == 1).unwrap().0;
        let mut coeffs = p.world.get::<Coeffs>(entity).unwrap().clone();
        let sigma = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() }).exp_sigma().to_vec();
        coeffs.exp.iter_mut().enumerate().for_each(|(k, e)| *e += 0.5 * sigma[k] * (k as f32 * 0.7 + 0.3).sin());
        let mut pose = p.world.get::<PoseParams>(entity).unwrap().clone();
        pose.angles[0] += 0.05;
        let total = |p: &mut Prepared, c: &Coeffs, q: &PoseParams| -> f64 {
            p.world.entity_mut(entity).insert((c.clone(), q.clone()));
            iterate(p, 1, false).unwrap();
            p.world.resource::<LossTerms>().total() as f64
        };
        total(&mut p, &coeffs, &pose);
        let (g_exp, g_pose) = (p.world.get::<Grad<Coeffs>>(entity).unwrap().value.exp.clone(), p.world.get::<Grad<PoseParams>>(entity).unwrap().value.clone());
        let mut exp = Vec::new();
        for k in 0..4 {
            let h = 0.01 * sigma[k];
            let (mut up, mut down) = (coeffs.clone(), coeffs.clone());
            up.exp[k] += h;
            down.exp[k] -= h;
            exp.push(((total(&mut p, &up, &pose) - total(&mut p, &down, &pose)) / (2.0 * h as f64), g_exp[k] as f64));
        }
        let mut angles = Vec::new();
        for a in 0..3 {
            let h = 1e-3;
            let (mut up, mut down) = (pose.clone(), pose.clone());
            up.angles[a] += h;
            down.angles[a] -= h;
            angles.push(((total(&mut p, &coeffs, &up) - total(&mut p, &coeffs, &down)) / (2.0 * h as f64), g_pose.angles[a] as f64));
        }
        (exp, angles)
    };
    let close = |pairs: &[(f64, f64)], what: &str| {
        let scale = pairs.iter().fold(0.0f64, |m, p| m.max(p.1.abs()));
        assert!(scale > 0.0, "{what}: no gradient");
        let worst = pairs.iter().fold(0.0f64, |m, p| m.max((p.0 - p.1).abs())) / scale;
        assert!(worst < 1e-2, "{what}: ‖numeric − analytic‖∞ / ‖analytic‖∞ = {worst} ({pairs:?})");
    };
    let (exp, angles) = check("pose: 1.0, expression: 0.0");
    close(&exp, "landmark part, expression");
    close(&angles, "landmark part, pose angles");
    let (exp, angles) = check("pose: 0.0, expression: 1.0");
    close(&exp, "expression part");
    assert!(angles.iter().all(|p| p.0 == 0.0 && p.1 == 0.0), "the expression part does not depend on the pose: {angles:?}");
}

/// A fitted clip comes out as one `.glb`: it reads back, its structure holds (indices, views,
/// accessors, targets, samplers), it has a keyframe per frame at 25 fps, and its identity mesh
/// plus the morph targets at each keyframe's weights is the shape of that frame's fitted
/// coefficients (all 64 expression components are targets).
#[test]
fn a_clip_comes_out_as_an_animated_gltf_that_reproduces_the_fitted_meshes() {
    use faceforge::io::gltf::{read_glb, validate};
    let out = tempfile::tempdir().unwrap();
    let text = format!(
        r#"Scene(
            data: Synthetic(preset: ClipLike, subjects: 1, frames: 6, size: 96, seed: 2, landmark_noise: 1.0),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [(name: "share_identity"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct", settings: (albedo: true))],
            losses: {{"landmark": 1.0, "regulariser": 1.0, "temporal": 10.0}},
            iterations: 20,
            outputs: (dir: {out:?}, meshes: [Obj], texture: 64, coefficients: true, animation: true),
        )"#,
        out = out.path().display().to_string()
    );
    faceforge::run::run(&scene(&text, "animation.ron"), false).unwrap();
    let (json, bin) = read_glb(&std::fs::read(out.path().join("s000.glb")).unwrap()).unwrap();
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
    let (vertices, targets, keyframes) = validate(&json, &bin).unwrap();
    assert_eq!((vertices, targets, keyframes), (model.n_vertices(), model.n_exp(), 6));
    assert!(json["images"][0]["mimeType"] == "image/png" && json["meshes"][0]["primitives"][0]["material"] == 0, "textured");
    let floats = |accessor: &serde_json::Value| -> Vec<f32> {
        let view = &json["bufferViews"][accessor["bufferView"].as_u64().unwrap() as usize];
        let start = view["byteOffset"].as_u64().unwrap() as usize;
        bin[start..start + view["byteLength"].as_u64().unwrap() as usize].chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    let accessor = |i: &serde_json::Value| json["accessors"][i.as_u64().unwrap() as usize].clone();
    let primitive = &json["meshes"][0]["primitives"][0];
    let base = floats(&accessor(&primitive["attributes"]["POSITION"]));
    let target_positions: Vec<Vec<f32>> = primitive["targets"].as_array().unwrap().iter().map(|t| floats(&accessor(&t["POSITION"]))).collect();
    let sampler = &json["animations"][0]["samplers"][0];
    assert_eq!(floats(&accessor(&sampler["input"])), [0.0, 0.04, 0.08, 0.12, 0.16, 0.2]);
    let weights = floats(&accessor(&sampler["output"]));
    let n = model.n_vertices();
    for k in 0..6 {
        // The fitted shape of the final coefficients (the frame's JSON), decoded by hand.
        let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("s000_f{k:03}.json"))).unwrap()).unwrap();
        let coefficients = |field: &str| -> Vec<f32> { record["coefficients"][field].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
        let mut fitted = model.mean_shape().to_vec();
        for (basis, alphas) in [(model.id_basis(), coefficients("id")), (model.exp_basis(), coefficients("exp"))] {
            for (c, alpha) in alphas.iter().enumerate() {
                fitted.iter_mut().zip(&basis[c * 3 * n..(c + 1) * 3 * n]).for_each(|(x, b)| *x += alpha * b);
            }
        }
        let worst = (0..base.len())
            .map(|i| (base[i] + (0..targets).map(|t| weights[k * targets + t] * target_positions[t][i]).sum::<f32>()) * 1000.0 - fitted[i])
            .fold(0f32, |m, d| m.max(d.abs()));
        assert!(worst < 0.01, "frame {k}: the glTF's mesh is {worst} mm from the fitted shape");
    }
    let csv = std::fs::read_to_string(out.path().join("s000_animation.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "a header and a line per frame");

    // The offline viewer page, in headless Chromium (Debian's `chromium`, installed by .ci/run):
    // three.js's GLTFLoader reads the same file and finds the mesh, the targets and the keyframes.
    let profile = tempfile::tempdir().unwrap();
    let page = format!("file://{}", out.path().join("s000_viewer.html").display());
    let dom = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&page)
        .output()
        .expect("chromium runs (Debian's chromium package, installed by .ci/run)");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let expected = format!("s000: loaded {} vertices, {} morph targets, 6 keyframes, 0.20 s", model.n_vertices(), model.n_exp());
    assert!(dom.contains(&expected), "the viewer says: {}", dom.lines().find(|l| l.contains("status")).unwrap_or(&dom));
}

/// `pairs: Random(k)` draws its pairs from the iteration and the frame, so a clip fit stopped
/// halfway and resumed from its checkpoint compares the same pairs and ends where an
/// uninterrupted one ends.
#[test]
fn random_pairs_resume_as_an_uninterrupted_run() {
    use faceforge::run::{resume, run_with, RunOptions};
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clip = |out: &Path| {
        scene(
            &format!(
                r#"Scene(
                seed: 4,
                data: Synthetic(preset: ClipLike, subjects: 1, frames: 5, size: 80, seed: 4, landmark_noise: 1.0),
                model: Procedural(preset: Tiny),
                backend: Cpu,
                systems: [
                    (name: "share_identity"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct", settings: (albedo: true)),
                    (name: "vertex_normals"), (name: "sample_texture"), (name: "visibility", settings: (method: Normals)),
                    (name: "swap_visible_texture", settings: (pairs: Random(1))), (name: "render_swapped"),
                ],
                losses: {{"landmark": 1.0, "regulariser": 1.0, "census": 10.0, "temporal": 10.0}},
                iterations: 16,
                outputs: (dir: {out:?}, coefficients: true, checkpoint_every: 3),
            )"#,
                out = out.display().to_string()
            ),
            "random_pairs.ron",
        )
    };
    let options = RunOptions::default();
    let whole = run_with(&clip(straight.path()), &options).unwrap();
    run_with(&clip(split.path()), &RunOptions { stop_after: Some(7), ..options.clone() }).unwrap_err();
    let resumed = resume(split.path(), &[], &options).unwrap();
    for (a, b) in whole.loss_history.0.iter().zip(&resumed.loss_history.0) {
        assert!((a["census"] - b["census"]).abs() <= 1e-5 * a["census"].abs().max(1.0), "census {} vs {}", a["census"], b["census"]);
    }
    let exp = |dir: &Path| -> Vec<f64> {
        let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("s000_f002.json")).unwrap()).unwrap();
        record["coefficients"]["exp"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    };
    let worst = exp(straight.path()).iter().zip(exp(split.path())).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "expression differs by {worst}");
}

/// `faceforge reconstruct CLIP.mp4` takes the built-in clip fit (scenes/reconstruct_clip.ron):
/// per frame with a face the fitted landmarks in the video's pixels, per clip the animated glTF,
/// its viewer and CSV, and the clip's stability in metrics.json; the grey frame is skipped.
#[test]
fn reconstruct_takes_a_video_through_the_built_in_clip_fit() {
    let dir = tempfile::tempdir().unwrap();
    let clip = slow_clip(dir.path(), 6, 3);
    let out = dir.path().join("out");
    let options = faceforge::run::reconstruct::ReconstructOptions {
        inputs: vec![clip],
        out: Some(out.clone()),
        overrides: vec!["iterations=3".into(), "model.Procedural.preset=Tiny".into(), "backend=Cpu".into()],
        ..Default::default()
    };
    let summary = faceforge::run::reconstruct::reconstruct(&options).unwrap();
    assert_eq!((summary.frames, summary.skipped.len()), (5, 1), "{:?}", summary.skipped);
    for file in ["slow_f00000.pts", "slow_f00005.pts", "slow.glb", "slow_viewer.html", "slow_animation.csv", "metrics.json"] {
        assert!(out.join(file).exists(), "{file} written");
    }
    // The landmarks are in the video's pixels (320²), not the 192-px crop's.
    let pts = faceforge::io::outputs::parse_pts("slow_f00000.pts", &std::fs::read_to_string(out.join("slow_f00000.pts")).unwrap()).unwrap();
    assert!(pts.iter().any(|p| p[0] > 192.0 || p[1] > 192.0) && pts.iter().all(|p| p[0] < 320.0 && p[1] < 320.0), "{pts:?}");
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["clips"][0]["frames"], 5);
}

/// A clip longer than its scene's `window` is fitted window by window (frames streamed from the
/// decoder, each window's World dropped before the next): every frame is written once, the
/// clip keeps one identity, no window holds more than `window.frames` frames, and the motion is as
/// steady as the fit of all frames at once, the seams included. A windowed run stopped mid-clip
/// resumes to the same files.
#[test]
fn a_long_clip_is_fitted_in_windows_as_steadily_as_all_at_once_and_resumes_mid_clip() {
    let dir = tempfile::tempdir().unwrap();
    let clip = slow_clip(dir.path(), 16, usize::MAX);
    let text = |window: &str, out: &Path| {
        let text = format!(
            r#"Scene(
                data: Video(path: {clip:?}, size: 128),
                model: Procedural(preset: Tiny),
                backend: Cpu,
                systems: [(name: "share_identity"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct"), (name: "vertex_normals"), (name: "render")],
                losses: {{"landmark": 1.0, "regulariser": 1.0, "temporal": 10.0}},
                iterations: 200,
                {window}
                outputs: (dir: {out:?}, coefficients: true, landmarks: true, animation: true),
            )"#,
            clip = clip.display().to_string(),
            out = out.display().to_string()
        );
        scene(&text, "windows.ron")
    };
    let fit = |window: &str, out: &Path| faceforge::run::run(&text(window, out), false).unwrap();
    let (whole_dir, windows_dir) = (dir.path().join("whole"), dir.path().join("windows"));
    let whole = fit("", &whole_dir);
    let windowed = fit("window: (frames: 6, overlap: 2, iterations: 100),", &windows_dir);
    assert!(whole.windows.is_none(), "16 frames at once");
    // 6 new frames, then 4 new beside 2 of context, three times: 4 windows.
    let done = windowed.windows.clone().expect("fitted in windows");
    assert_eq!((done.windows, done.most_held, windowed.frames), (4, 6, 16));
    let mut outputs: Vec<_> = windowed.files.iter().filter(|f| f.extension().is_some_and(|e| e == "pts")).collect();
    let count = outputs.len();
    outputs.dedup();
    assert_eq!((count, outputs.len()), (16, 16), "each frame's landmarks written once");

    let record = |dir: &Path, k: usize| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.join(format!("slow_f{k:05}.json"))).unwrap()).unwrap() };
    assert!((1..16).all(|k| record(&windows_dir, k)["coefficients"]["id"] == record(&windows_dir, 0)["coefficients"]["id"]), "one identity for the clip");
    let (json, bin) = faceforge::io::gltf::read_glb(&std::fs::read(windows_dir.join("slow.glb")).unwrap()).unwrap();
    assert_eq!(faceforge::io::gltf::validate(&json, &bin).unwrap().2, 16, "a keyframe per frame");

    let clip_metrics = |dir: &Path| -> serde_json::Value { serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()["clips"][0].clone() };
    let jitter = |dir: &Path, key: &str| clip_metrics(dir)[key].as_f64().unwrap();
    let (j0, j1) = (jitter(&whole_dir, "jitter_fit"), jitter(&windows_dir, "jitter_fit"));
    let (v0, v1) = (jitter(&whole_dir, "jitter_vertices_mm"), jitter(&windows_dir, "jitter_vertices_mm"));
    eprintln!("jitter of the fit {j0:.3} % → {j1:.3} %, of the vertices {v0:.4} → {v1:.4} mm");
    assert!(j1 <= 1.05 * j0, "landmark jitter {j0:.3} % all at once, {j1:.3} % in windows");
    // The identity is the first window's, from 6 frames where the whole fit has 16: the later
    // frames' expressions make up the difference, and their vertices move a little more (0.10
    // → 0.12 mm when measured).
    assert!(v1 <= 1.3 * v0, "vertex jitter {v0:.4} mm all at once, {v1:.4} mm in windows");
    // The fitted landmarks of both fits, frame by frame (video pixels; eyes about 60 px apart).
    let points = |dir: &Path, k: usize| faceforge::io::outputs::parse_pts("f.pts", &std::fs::read_to_string(dir.join(format!("slow_f{k:05}.pts"))).unwrap()).unwrap();
    let worst = (0..16)
        .map(|k| {
            let (a, b) = (points(&whole_dir, k), points(&windows_dir, k));
            (a.iter().zip(&b).map(|(p, q)| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sum::<f32>() / a.len() as f32).sqrt()
        })
        .fold(0f32, f32::max);
    eprintln!("fitted landmarks: windows vs all at once, worst frame {worst:.2} px RMS");
    assert!(worst < 0.5, "the windows' landmarks are {worst:.2} px RMS from the whole fit's");

    // Stopped in its second window and resumed from `windows.json`: the same files as the run
    // never stopped, bit for bit (the clip is tracked again; the windows before are not refitted).
    let stopped_dir = dir.path().join("stopped");
    let options = faceforge::run::RunOptions { stop_after: Some(250), ..Default::default() };
    let err = faceforge::run::run_with(&text("window: (frames: 6, overlap: 2, iterations: 100),", &stopped_dir), &options).unwrap_err();
    let stopped = err.downcast_ref::<faceforge::run::Interrupted>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!((stopped.window, stopped.iteration), (Some(2), 50), "{err}");
    let resumed = faceforge::run::resume(&stopped_dir, &[], &faceforge::run::RunOptions::default()).unwrap();
    assert_eq!(resumed.frames, 16);
    for k in 0..16 {
        assert_eq!(record(&stopped_dir, k), record(&windows_dir, k), "frame {k}'s record after the resume");
    }
    for file in ["slow.glb", "slow_animation.csv"] {
        assert!(std::fs::read(stopped_dir.join(file)).unwrap() == std::fs::read(windows_dir.join(file)).unwrap(), "{file} after the resume");
    }
    assert_eq!(clip_metrics(&stopped_dir), clip_metrics(&windows_dir), "the clip's stability after the resume");
}

#[test]
fn a_folder_of_clips_in_windows_shards_whole_clips_and_merges_as_one_process() {
    // Two 10-frame clips, windows of 6 with 2 of context: each clip one subject, never split.
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    for (name, frames) in [("a", 10), ("b", 9)] {
        let frames_dir = dir.path().join(name);
        std::fs::create_dir_all(&frames_dir).unwrap();
        std::fs::rename(slow_clip(&frames_dir, frames, usize::MAX), clips.join(format!("{name}.mp4"))).unwrap();
    }
    let text = |out: &Path| {
        scene(
            &format!(
                r#"Scene(
                data: Folder(path: {clips:?}, size: 128),
                model: Procedural(preset: Tiny),
                backend: Cpu,
                systems: [(name: "share_identity"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct"), (name: "vertex_normals"), (name: "render")],
                losses: {{"landmark": 1.0, "regulariser": 1.0, "temporal": 10.0}},
                iterations: 100,
                window: (frames: 6, overlap: 2, iterations: 50),
                outputs: (dir: {out:?}, coefficients: true, landmarks: true, animation: true),
            )"#,
                clips = clips.display().to_string(),
                out = out.display().to_string()
            ),
            "clips.ron",
        )
    };
    let one = dir.path().join("one");
    let single = faceforge::run::run_with(&text(&one), &faceforge::run::RunOptions::default()).unwrap();
    let done = single.windows.clone().expect("fitted in windows");
    assert_eq!((single.frames, done.windows, done.most_held), (19, 4, 6), "a: 6 + 4 new frames, b: 6 + 3");

    let run = dir.path().join("sharded");
    let shard = |i| faceforge::run::RunOptions { shard: Some(faceforge::run::shard::Shard::new(i, 2).unwrap()), ..Default::default() };
    faceforge::run::run_with(&text(&run), &shard(0)).unwrap();
    // Shard 1 (clip b) stopped in its second window, then started again.
    let stop = faceforge::run::RunOptions { stop_after: Some(120), ..shard(1) };
    let err = faceforge::run::run_with(&text(&run), &stop).unwrap_err();
    let stopped = err.downcast_ref::<faceforge::run::Interrupted>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!((stopped.window, stopped.iteration, stopped.subject.as_deref()), (Some(2), 20, Some("b")), "{err}");
    faceforge::run::run_with(&text(&run), &shard(1)).unwrap();
    assert!(run.join("shard-0-of-2/a.glb").exists() && run.join("shard-1-of-2/b.glb").exists(), "each clip whole in its shard");

    let merged = faceforge::run::merge::merge(std::slice::from_ref(&run), None).unwrap();
    assert!(merged.merged.as_ref().unwrap().complete());
    assert_eq!(merged.frames, 19);
    for name in ["a.glb", "b.glb", "a_animation.csv", "b_animation.csv", "a_f00000.json", "a_f00009.pts", "b_f00005.json", "b_f00008.pts"] {
        assert!(std::fs::read(one.join(name)).unwrap() == std::fs::read(run.join(name)).unwrap(), "{name}: merged shards against one process");
    }
    let clips_of = |dir: &Path| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()["clips"].clone();
    assert_eq!(clips_of(&one), clips_of(&run), "each clip's stability");
    assert_eq!(clips_of(&run).as_array().unwrap().len(), 2);
}
