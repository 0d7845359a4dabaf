//! Real inputs: an image folder with `.pts` landmarks (PNG files written by `faceforge synth`),
//! fitted through PGN's closed form. A corrupt image is skipped and reported while the others
//! are reconstructed; landmarks come back in the original image's pixels; a clip folder shares
//! one identity; an image without landmarks goes to the built-in detector, and one without a
//! face is skipped; a broken `.pts` (malformed, a non-finite point, a point outside the image,
//! the wrong count) is skipped naming its file and line, and stops the run with `strict`.

use faceforge::run::run;
use faceforge::io::synth::{generate, write, SynthPreset, SynthSpec};
use faceforge_e2e::scene;
use faceforge_kernels::Backend;
use faceforge_model::{MorphableModel, ModelSpec, Preset};
use std::path::Path;

fn folder_scene(images: &Path, out: &Path, shared: bool) -> faceforge::LoadedScene {
    let share = if shared { r#"(name: "share_identity"),"# } else { "" };
    scene(
        &format!(
            r#"Scene(
            data: Folder(path: {images:?}, size: 96),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [{share} (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct", settings: (albedo: true)), (name: "vertex_normals"), (name: "render")],
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

fn synthetic_folder(dir: &Path, subjects: u32, frames: u32, size: usize) -> Vec<faceforge::io::synth::SynthFrame> {
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
    let spec = SynthSpec { preset: SynthPreset::AflwLike, subjects, frames, size, seed: 3, landmark_noise: 0.5, ..SynthSpec::default() };
    let frames = generate(&model, &Backend::Cpu, &spec);
    write(dir, &frames).unwrap();
    frames
}

fn read_pts(path: &Path) -> Vec<[f32; 2]> {
    faceforge::io::outputs::parse_pts(&path.display().to_string(), &std::fs::read_to_string(path).unwrap()).unwrap()
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
    // An image without landmarks and without a face in the clip: the detector finds nothing,
    // so it is skipped and listed.
    image::RgbImage::from_pixel(128, 128, image::Rgb([128, 128, 128])).save(clip.join("zz_no_face.png")).unwrap();
    let summary = run(&folder_scene(root.path(), out.path(), true), false).unwrap();
    assert_eq!((summary.frames, summary.skipped.len()), (3, 1));
    assert!(summary.skipped[0].file.ends_with("zz_no_face.png") && summary.skipped[0].reason.contains("no face found"), "{:?}", summary.skipped);
    let read = |name: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("{name}.json"))).unwrap()).unwrap() };
    let (a, c) = (read("clip_a_s000_f000"), read("clip_a_s000_f002"));
    assert_eq!(a["subject"], c["subject"]);
    assert_eq!(a["coefficients"]["id"], c["coefficients"]["id"]);
}

#[test]
fn broken_pts_files_are_skipped_naming_file_and_line_and_strict_stops_at_the_first() {
    let images = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    synthetic_folder(images.path(), 5, 1, 96);
    let edit = |name: &str, f: &dyn Fn(String) -> String| {
        let pts = images.path().join(format!("{name}.pts"));
        std::fs::write(&pts, f(std::fs::read_to_string(&pts).unwrap())).unwrap();
    };
    // Malformed header; a `nan` point (line 5: the 2nd point); a point far outside the 96-px
    // image (line 4); five points where the model has 68.
    edit("s001_f000", &|t| t.replacen("\n", "\nn_points: many\n", 1));
    edit("s002_f000", &|t| {
        let mut lines: Vec<String> = t.lines().map(str::to_string).collect();
        lines[4] = "nan 12.0".into();
        lines.join("\n")
    });
    edit("s003_f000", &|t| {
        let mut lines: Vec<String> = t.lines().map(str::to_string).collect();
        lines[3] = "5000 20".into();
        lines.join("\n")
    });
    edit("s004_f000", &|_| "version: 1\nn_points: 5\n{\n1 1\n2 2\n3 3\n4 4\n5 5\n}\n".into());
    let summary = run(&folder_scene(images.path(), out.path(), false), false).unwrap();
    assert_eq!(summary.frames, 1, "s000 reconstructed, the four others skipped");
    assert!(out.path().join("s000_f000.obj").exists());
    let reasons: Vec<String> = summary.skipped.iter().map(|s| format!("{}: {}", s.file.display(), s.reason)).collect();
    let expect = ["s001_f000.pts:2: `n_points: many`", "s002_f000.pts:5: `nan 12.0`: expected two finite numbers", "s003_f000.pts:4: the point (5000, 20) lies outside the 96 × 96 image", "s004_f000.pts: 5 landmarks, but the model <generated> has 68"];
    for (want, got) in expect.iter().zip(&reasons) {
        assert!(got.contains(want), "{got} should say {want}");
    }
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    let run_json = std::fs::read_to_string(out.path().join("run.json")).unwrap();
    assert!(run_json.contains("s003_f000.pts:4"), "run.json lists the skipped inputs");
    // strict: the first bad input stops the run, naming it.
    let mut strict = folder_scene(images.path(), out.path(), false);
    strict.apply_overrides(&["data.Folder.strict=true".to_string()]).unwrap();
    let err = format!("{:#}", run(&strict, false).unwrap_err());
    assert!(err.contains("s001_f000.pts:2: `n_points: many`") && err.contains("strict"), "{err}");
}
