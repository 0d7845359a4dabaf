//! `faceforge eval` on real files: a fit's outputs measured against the truth `faceforge synth`
//! writes for the same data reproduce the fit's own metrics; a frame without a result is listed;
//! a broken landmark file is refused with its file and line.

use faceforge::run::{load_model, run};
use faceforge::io::synth::{generate, write};
use faceforge_e2e::{quickstart_into, scene_into};
use faceforge_kernels::Backend;

#[test]
fn eval_of_a_runs_files_reproduces_the_runs_metrics() {
    let results = tempfile::tempdir().unwrap();
    let truth = tempfile::tempdir().unwrap();
    let mut scene = quickstart_into(results.path());
    scene.apply_overrides(&["iterations=30".to_string(), "data.Synthetic.subjects=2".to_string()]).unwrap();
    let summary = run(&scene, false).unwrap();
    let from_run = summary.metrics.unwrap();

    // The same data written the way `faceforge synth` writes it.
    let faceforge::scene::DataSpec::Synthetic(spec) = &scene.scene.data else { panic!("synthetic data") };
    let model = load_model(&scene.scene.model).unwrap();
    write(truth.path(), &generate(&model, &Backend::Cpu, spec)).unwrap();

    let report = tempfile::tempdir().unwrap();
    let evaluation = faceforge::eval::evaluate(&model, results.path(), truth.path(), report.path()).unwrap();
    let from_files = &evaluation.metrics;
    assert_eq!(from_files.frames.len(), 4);
    assert!(evaluation.missing.is_empty());
    for (a, b) in from_run.frames.iter().zip(&from_files.frames) {
        assert_eq!(a.frame, b.frame);
        // Meshes round-trip exactly through the OBJ; landmarks through `.pts` at 1e-3 px.
        assert!((a.nme_3d - b.nme_3d).abs() < 1e-4 && (a.scan.rmse_mm - b.scan.rmse_mm).abs() < 1e-4, "{a:?}\n{b:?}");
        assert!((a.nme_2d.unwrap() - b.nme_2d.unwrap()).abs() < 1e-3, "{a:?}\n{b:?}");
        assert!((a.pose_deg.unwrap() - b.pose_deg.unwrap()).abs() < 1e-3, "{a:?}\n{b:?}");
    }
    assert!((from_run.nme_2d_mean_of_bins.unwrap() - from_files.nme_2d_mean_of_bins.unwrap()).abs() < 1e-3);
    for f in ["metrics.json", "report.md", "report.html"] {
        assert!(report.path().join(f).exists(), "{f}");
    }
    let html = std::fs::read_to_string(report.path().join("report.html")).unwrap();
    assert!(html.contains("<title>CED, 2D landmarks</title>") && !html.contains("http"));

    // One result gone: three frames measured and the fourth listed, in the report too.
    std::fs::remove_file(results.path().join("s001_f001.obj")).unwrap();
    let evaluation = faceforge::eval::evaluate(&model, results.path(), truth.path(), report.path()).unwrap();
    assert_eq!((evaluation.metrics.frames.len(), evaluation.missing.clone()), (3, vec!["s001_f001".to_string()]));
    assert!(std::fs::read_to_string(report.path().join("report.md")).unwrap().contains("missing results: 1: s001_f001"));

    // A landmark file with garbage on its fifth line: refused, naming the file and the line.
    let pts = results.path().join("s000_f001.pts");
    let text = std::fs::read_to_string(&pts).unwrap();
    let broken: Vec<&str> = text.lines().enumerate().map(|(i, l)| if i == 4 { "12.5 oops" } else { l }).collect();
    std::fs::write(&pts, broken.join("\n")).unwrap();
    let err = faceforge::eval::evaluate(&model, results.path(), truth.path(), report.path()).unwrap_err().to_string();
    assert!(err.contains("s000_f001.pts:5: `12.5 oops` is not two numbers"), "{err}");
}

/// The AFLW2000-3D-like scene at a small size: frames balanced over the three yaw bins, the
/// reported mean is the mean of the bin means, and the landmark fit beats the mean face on the
/// dense 3D NME and on the point-to-plane RMSE. At 96 px (64 until issue 20): at 64 px the
/// landmarks' 1.5-px noise is 2.3 % of the face and the canonical model's 68-point fit follows
/// it (scan RMSE 0.96 of the mean face's, 0.90 at 96 px, 0.91 at the scene's full size).
/// The AFLW2000-3D-like scene on the tiny model and the CPU backend, with `overrides`, run into
/// a temporary folder: its metrics.
fn small_aflw(overrides: &[&str]) -> faceforge::eval::metrics::RunMetrics {
    let out = tempfile::tempdir().unwrap();
    let overrides: Vec<String> = ["model.Procedural.preset=Tiny", "backend=Cpu"].iter().chain(overrides).map(|s| s.to_string()).collect();
    run(&scene_into("aflw_eval.ron", &overrides, out.path()), false).unwrap().metrics.unwrap()
}

#[test]
fn the_aflw_like_evaluation_reports_by_yaw_bin() {
    let m = small_aflw(&["data.Synthetic.subjects=9", "data.Synthetic.size=96", "iterations=100"]);
    assert_eq!(m.by_yaw.iter().map(|b| b.frames).collect::<Vec<_>>(), vec![3, 3, 3]);
    let bin_means: Vec<f32> = m.by_yaw.iter().map(|b| b.nme_2d.unwrap()).collect();
    assert!((m.nme_2d_mean_of_bins.unwrap() - bin_means.iter().sum::<f32>() / 3.0).abs() < 1e-5);
    assert!(m.nme_3d.mean < 0.95 * m.mean_face_nme_3d.mean, "3D NME {} vs mean face {}", m.nme_3d.mean, m.mean_face_nme_3d.mean);
    assert!(m.scan_rmse_mm.mean < 0.95 * m.mean_face_scan_rmse_mm.mean, "scan RMSE {} vs mean face {}", m.scan_rmse_mm.mean, m.mean_face_scan_rmse_mm.mean);
    assert!(m.nme_2d.mean < 5.0, "2D NME {}%", m.nme_2d.mean);
}

/// Dense beats sparse: the AFLW2000-3D-like scene fitted at the 468 FaceMesh points gives a
/// lower per-vertex error than fitted at the 68 iBUG landmarks, in every yaw bin, with the same
/// detector-like noise (1.5 px) on every point. (The full-size numbers are in docs/results.md:
/// `faceforge sweep scenes/dense_landmarks.ron`.)
#[test]
fn dense_landmarks_beat_the_68_at_every_yaw() {
    let fit = |dense: &str| {
        let m = small_aflw(&["data.Synthetic.subjects=12", "data.Synthetic.size=96", dense, "outputs.images=false", "outputs.meshes=[]"]);
        m.by_yaw.iter().map(|b| b.per_vertex_mm.unwrap()).collect::<Vec<f32>>()
    };
    let (sparse, dense) = (fit("data.Synthetic.dense_landmarks=false"), fit("data.Synthetic.dense_landmarks=true"));
    println!("per-vertex error by yaw bin (mm): 68 landmarks {sparse:?}, 468 dense {dense:?}");
    for (bin, (s, d)) in sparse.iter().zip(&dense).enumerate() {
        assert!(d < s, "yaw bin {bin}: dense {d} mm, sparse {s} mm");
    }
}
