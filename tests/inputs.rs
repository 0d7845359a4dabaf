//! Real inputs: an image folder with `.pts` landmarks (PNG files written by `faceforge synth`),
//! fitted through PGN's closed form. A corrupt image is skipped and reported while the others
//! are reconstructed; landmarks come back in the original image's pixels; a clip folder shares
//! one identity; a broken `.pts` stops the run naming its file and line.

use faceforge::run::run;
use faceforge::synth::{generate, write, SynthPreset, SynthSpec};
use faceforge_e2e::scene;
use faceforge_kernels::Backend;
use faceforge_model::{MorphableModel, ModelSpec, Preset};
use std::path::Path;

fn folder_scene(images: &Path, out: &Path, shared: bool) -> faceforge::LoadedScene {
    let share = if shared { r#"(name: "share_identity"), (name: "share_identity_backward"),"# } else { "" };
    scene(
        &format!(
            r#"Scene(
            data: Folder(path: {images:?}, size: 96),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [{share} (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct", settings: (albedo: true)), (name: "vertex_normals"), (name: "render"),
                      (name: "reconstruct_backward"), (name: "pgn_backward"), (name: "adam")],
            losses: {{"landmark": 1.0, "regulariser": 1.0}},
            iterations: 40,
            outputs: (dir: {out:?}, meshes: [Obj], coefficients: true, images: true, landmarks: true),
        )"#,
            images = images.display().to_string(),
            out = out.display().to_string()
        ),
        "folder.ron",
    )
}

fn synthetic_folder(dir: &Path, subjects: u32, frames: u32, size: usize) -> Vec<faceforge::synth::SynthFrame> {
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
    let spec = SynthSpec { preset: SynthPreset::AflwLike, subjects, frames, size, seed: 3, landmark_noise: 0.5, ..SynthSpec::default() };
    let frames = generate(&model, &Backend::Cpu, &spec);
    write(dir, &frames).unwrap();
    frames
}

fn read_pts(path: &Path) -> Vec<[f32; 2]> {
    faceforge::outputs::parse_pts(&path.display().to_string(), &std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_folder_with_one_corrupt_image_reconstructs_the_others_and_reports_it() {
    let images = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Five faces at 160 px (the run crops them to 96 px), one PNG then overwritten by garbage.
    let frames = synthetic_folder(images.path(), 5, 1, 160);
    std::fs::write(images.path().join("s002_f000.png"), b"\x89PNG\r\n\x1a\n this is not a PNG any more").unwrap();
    let summary = run(&folder_scene(images.path(), out.path(), false), false).unwrap();
    assert_eq!(summary.frames, 4);
    assert_eq!(summary.skipped.len(), 1);
    assert!(summary.skipped[0].file.ends_with("s002_f000.png") && summary.skipped[0].reason.contains("cannot decode"), "{:?}", summary.skipped);
    for name in ["s000_f000", "s001_f000", "s003_f000", "s004_f000"] {
        assert!(out.path().join(format!("{name}.obj")).exists(), "{name} reconstructed");
    }
    assert!(!out.path().join("s002_f000.obj").exists());
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("skipped inputs") && report.contains("s002_f000.png"), "{report}");
    // The fitted landmarks, written in the original 160-px image's pixels, lie on the exact
    // ones: the crop transform maps back.
    for f in frames.iter().filter(|f| f.name != "s002_f000") {
        let fitted = read_pts(&out.path().join(format!("{}.pts", f.name)));
        let mean = fitted.iter().zip(&f.truth.landmarks_2d_exact).map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()).sum::<f32>() / 68.0;
        eprintln!("{}: {mean:.3} px", f.name);
        assert!(mean < 1.5, "{}: mean landmark distance {mean} px in the original image", f.name);
    }
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("s000_f000.json")).unwrap()).unwrap();
    assert_eq!(record["crop"]["original_size"], serde_json::json!([160, 160]));
}

#[test]
fn a_clip_folder_is_one_subject_with_a_shared_identity() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let clip = root.path().join("clip_a");
    std::fs::create_dir(&clip).unwrap();
    synthetic_folder(&clip, 1, 3, 128);
    // An image without landmarks in the clip: skipped, listed.
    std::fs::copy(clip.join("s000_f000.png"), clip.join("zz_no_landmarks.png")).unwrap();
    let summary = run(&folder_scene(root.path(), out.path(), true), false).unwrap();
    assert_eq!((summary.frames, summary.skipped.len()), (3, 1));
    assert!(summary.skipped[0].reason.contains("no landmarks"), "{:?}", summary.skipped);
    let read = |name: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("{name}.json"))).unwrap()).unwrap() };
    let (a, c) = (read("clip_a_s000_f000"), read("clip_a_s000_f002"));
    assert_eq!(a["subject"], c["subject"]);
    assert_eq!(a["coefficients"]["id"], c["coefficients"]["id"]);
}

#[test]
fn a_broken_pts_file_stops_the_run_naming_its_line() {
    let images = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    synthetic_folder(images.path(), 2, 1, 96);
    let pts = images.path().join("s001_f000.pts");
    let text = std::fs::read_to_string(&pts).unwrap().replacen("\n", "\nn_points: many\n", 1);
    std::fs::write(&pts, text).unwrap();
    let err = format!("{:#}", run(&folder_scene(images.path(), out.path(), false), false).unwrap_err());
    assert!(err.contains("s001_f000.pts:2: `n_points: many`"), "{err}");
    // Five points where the model has 68: refused, naming the file and the model.
    let five = "version: 1\nn_points: 5\n{\n1 1\n2 2\n3 3\n4 4\n5 5\n}\n";
    std::fs::write(&pts, five).unwrap();
    let err = format!("{:#}", run(&folder_scene(images.path(), out.path(), false), false).unwrap_err());
    assert!(err.contains("s001_f000.pts: 5 landmarks, but the model <generated> has 68"), "{err}");
}
