//! `faceforge reconstruct` on the committed portrait, as a new user runs it: the built-in
//! detector finds the face, the built-in fit reconstructs it, and the outputs are all there.
//! The fitted model's 68 landmarks reproject onto the detected ones within 2.5 % of the outer
//! interocular distance (RMS over the interior points 17–67, in the photo's pixels), and so do
//! its 468 dense landmarks onto FaceMesh's (RMS over all of them). A photo
//! without a face and an undecodable file in the same batch are skipped and listed.

use faceforge::run::reconstruct::{reconstruct, ReconstructOptions};
use faceforge::run::RunOptions;
use std::path::PathBuf;

fn read_pts(path: &std::path::Path) -> Vec<[f32; 2]> {
    faceforge::io::outputs::parse_pts(&path.display().to_string(), &std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_portrait_comes_out_as_a_textured_face_on_its_landmarks_and_bad_inputs_are_skipped() {
    let portrait = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/obama.jpg");
    let scratch = tempfile::tempdir().unwrap();
    let grey = scratch.path().join("grey.png");
    image::RgbImage::from_pixel(320, 240, image::Rgb([120, 120, 120])).save(&grey).unwrap();
    let broken = scratch.path().join("broken.jpg");
    std::fs::write(&broken, b"\xff\xd8\xff not a JPEG after all").unwrap();
    let out = scratch.path().join("out");
    let options = ReconstructOptions {
        inputs: vec![portrait.clone(), grey.clone(), broken.clone()],
        out: Some(out.clone()),
        overrides: vec!["backend=Cpu".into()],
        run: RunOptions { overwrite: true, ..Default::default() },
        ..Default::default()
    };
    let summary = reconstruct(&options).unwrap();
    assert_eq!(summary.frames, 1);
    let skipped: Vec<(PathBuf, String)> = summary.skipped.iter().map(|s| (s.file.clone(), s.reason.clone())).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped.iter().any(|(f, r)| f == &grey && r.contains("no face found")), "{skipped:?}");
    assert!(skipped.iter().any(|(f, r)| f == &broken && r.contains("cannot decode")), "{skipped:?}");

    for file in ["obama.obj", "obama.mtl", "obama_texture.png", "obama.ply", "obama_overlay.png", "obama.pts", "obama.json", "report.html", "run.json"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let mtl = std::fs::read_to_string(out.join("obama.mtl")).unwrap();
    assert!(mtl.contains("map_Kd obama_texture.png"), "{mtl}");
    // The overlay is drawn at the photo's resolution around the face, not at the 192-px crop.
    let overlay = image::open(out.join("obama_overlay.png")).unwrap();
    assert!(overlay.width() >= faceforge::report::overlay::MIN_SIDE as u32 && overlay.width() == overlay.height(), "overlay {}×{}", overlay.width(), overlay.height());
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("grey.png") && report.contains("no face found"), "the report lists the skipped inputs");

    // The fit against the detector, in the photo's pixels.
    let photo = image::open(&portrait).unwrap().to_rgb8();
    let faces = faceforge_detect::shared().unwrap().faces(&photo, &Default::default()).unwrap();
    let detected = faces[0].ibug68();
    let fitted = read_pts(&out.join("obama.pts"));
    let interocular = (detected[36][0] - detected[45][0]).hypot(detected[36][1] - detected[45][1]);
    let interior = 17..68;
    let rms = (interior.clone().map(|i| (fitted[i][0] - detected[i][0]).powi(2) + (fitted[i][1] - detected[i][1]).powi(2)).sum::<f32>() / interior.len() as f32).sqrt();
    let jaw = (0..17).map(|i| (fitted[i][0] - detected[i][0]).hypot(fitted[i][1] - detected[i][1])).sum::<f32>() / 17.0;
    println!("interior landmarks: RMS {rms:.2} px = {:.2} % of the outer interocular distance {interocular:.1} px; jaw mean {jaw:.2} px", 100.0 * rms / interocular);
    assert!(rms <= 0.025 * interocular, "RMS {rms} px over an interocular distance of {interocular} px");
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("obama.json")).unwrap()).unwrap();
    assert_eq!(record["detected"]["points"].as_array().map(Vec::len), Some(468), "the 468 detected points in the record");

    // All 468: the model's dense landmarks against FaceMesh's points, RMS over all of them.
    let points = |key: &serde_json::Value| -> Vec<[f32; 2]> {
        key.as_array().unwrap().iter().map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32]).collect()
    };
    let (dense_detected, dense_fitted) = (points(&record["detected"]["points"]), points(&record["dense_landmarks_2d"]));
    assert_eq!(dense_fitted.len(), 468);
    let outer = (dense_detected[33][0] - dense_detected[263][0]).hypot(dense_detected[33][1] - dense_detected[263][1]);
    let rms = (dense_fitted.iter().zip(&dense_detected).map(|(f, d)| (f[0] - d[0]).powi(2) + (f[1] - d[1]).powi(2)).sum::<f32>() / 468.0).sqrt();
    println!("all 468 points: RMS {rms:.2} px = {:.2} % of the outer interocular distance {outer:.1} px", 100.0 * rms / outer);
    assert!(rms <= 0.025 * outer, "468-point RMS {rms} px over an outer interocular distance of {outer} px");
}

/// Two portraits side by side in one picture: `detect` with `max_faces` writes a `.pts` and a
/// JSON per face, and `reconstruct` with `detect.max_faces` makes each face its own subject.
#[test]
fn every_face_of_a_group_picture_is_found_and_reconstructed_on_request() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../detect/tests/data");
    let (a, b) = (image::open(data.join("obama_half.png")).unwrap().to_rgb8(), image::open(data.join("biden_face.png")).unwrap().to_rgb8());
    let mut group = image::RgbImage::from_pixel(a.width() + b.width(), a.height().max(b.height()), image::Rgb([40, 40, 40]));
    image::imageops::overlay(&mut group, &a, 0, 0);
    image::imageops::overlay(&mut group, &b, a.width() as i64, 0);
    let scratch = tempfile::tempdir().unwrap();
    let picture = scratch.path().join("group.png");
    group.save(&picture).unwrap();

    let out = scratch.path().join("detected");
    let options = faceforge_detect::DetectOptions { max_faces: 5, ..Default::default() };
    let summary = faceforge::run::detect::detect(std::slice::from_ref(&picture), &out, &options, false).unwrap();
    assert_eq!((summary.images, summary.faces), (1, 2));
    for k in 0..2 {
        assert_eq!(read_pts(&out.join(format!("group_face{k}.pts"))).len(), 68);
        let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("group_face{k}.json"))).unwrap()).unwrap();
        assert_eq!(record["points"].as_array().map(Vec::len), Some(468));
        assert!(record["detection"]["score"].as_f64().unwrap() > 0.5);
    }
    // The best-scoring face first: each box lies on one of the two portraits.
    let centre_x = |k: usize| -> f64 {
        let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("group_face{k}.json"))).unwrap()).unwrap();
        record["detection"]["bbox"][0].as_f64().unwrap() + record["detection"]["bbox"][2].as_f64().unwrap() / 2.0
    };
    let sides: Vec<bool> = (0..2).map(|k| centre_x(k) > a.width() as f64).collect();
    assert_ne!(sides[0], sides[1], "one face on each portrait");

    let options = ReconstructOptions {
        inputs: vec![picture],
        out: Some(scratch.path().join("fitted")),
        overrides: vec!["backend=Cpu".into(), "data.Folder.detect.max_faces=5".into(), "iterations=20".into()],
        run: RunOptions { overwrite: true, ..Default::default() },
        ..Default::default()
    };
    let summary = reconstruct(&options).unwrap();
    assert_eq!(summary.frames, 2);
    let a: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(scratch.path().join("fitted/group_face0.json")).unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(scratch.path().join("fitted/group_face1.json")).unwrap()).unwrap();
    assert_ne!(a["subject"], b["subject"], "each face its own subject");
}
