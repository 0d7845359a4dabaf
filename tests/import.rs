//! Model importers on fake files of the real layouts (the real BFM cannot be shipped): the
//! procedural tiny model written as BFM 2009's `01_MorphableModel.mat` (micrometres, 1-based
//! triangle list, no expressions, landmarks given apart) and as Deep3DFaceRecon's
//! `BFM_model_front.mat` (another unit, bases premultiplied by σ, triangles the other way round,
//! compressed). Each import must give back the arrays written — the same mean face, the same
//! faces for the same coefficients — and run in a scene.

use faceforge::import::{import, read_landmarks, ImportOptions, Layout};
use faceforge::mat::{parse, write, MatType};
use faceforge_components::{Coeffs, Frame};
use faceforge_kernels::Backend;
use faceforge_model::{MorphableModel, ModelSpec, Preset, SplitMix64};
use faceforge_systems::reconstruct::decode_batch;

fn tiny() -> MorphableModel {
    MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() })
}

fn scaled(values: &[f32], by: f32) -> Vec<f32> {
    values.iter().map(|v| v * by).collect()
}

/// Column-major T × 3, 1-based.
fn triangle_list(triangles: &[u32], reverse: bool) -> Vec<f32> {
    let t = triangles.len() / 3;
    (0..3).flat_map(|c| (0..t).map(move |i| (c, i))).map(|(c, i)| {
        let c = if reverse && c > 0 { 3 - c } else { c };
        triangles[3 * i + c] as f32 + 1.0
    }).collect()
}

fn face(model: &MorphableModel, coeffs: &Coeffs) -> Vec<f32> {
    let frame = Frame { subject: bevy_ecs::entity::Entity::PLACEHOLDER, subject_id: 0, index: 0, name: "f".into() };
    decode_batch(&Backend::Cpu, model, None, &[(&frame, coeffs)], true).unwrap().0
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn check_same_faces(original: &MorphableModel, imported: &MorphableModel, with_expressions: bool) {
    assert_eq!(imported.triangles(), original.triangles(), "triangles, counter-clockwise from +z");
    assert_eq!(imported.landmarks(), original.landmarks());
    assert!(worst(imported.mean_shape(), original.mean_shape()) < 1e-3, "mean face");
    assert!(worst(imported.mean_albedo(), original.mean_albedo()) < 1e-5, "mean albedo");
    assert!(worst(imported.id_sigma(), original.id_sigma()) < 1e-3 * original.id_sigma()[0]);
    // The same coefficients draw the same face.
    let mut rng = SplitMix64::new(9);
    let id = rng.scaled_normals(original.id_sigma(), 1.0);
    let exp = rng.scaled_normals(original.exp_sigma(), 1.0);
    let tex = rng.scaled_normals(original.albedo_sigma(), 1.0);
    let a = face(original, &Coeffs { id: id.clone(), exp: if with_expressions { exp.clone() } else { vec![0.0; original.n_exp()] }, tex: tex.clone() });
    let b = face(imported, &Coeffs { id, exp: if with_expressions { exp } else { Vec::new() }, tex });
    assert!(worst(&a, &b) < 1e-3, "faces differ by {} mm", worst(&a, &b));
    // The mirror map found from the geometry pairs the landmarks as the model's does.
    for (l, r) in [(36usize, 45usize), (48, 54), (0, 16)] {
        assert_eq!(imported.mirror()[imported.landmarks()[l] as usize], imported.landmarks()[r]);
    }
}

fn runs_in_a_scene(path: &std::path::Path) {
    let out = tempfile::tempdir().unwrap();
    let mut scene = faceforge_e2e::quickstart_into(out.path());
    scene.apply_overrides(&["iterations=3".to_string(), format!("model.File={:?}", path.display().to_string())]).unwrap();
    assert_eq!(scene.scene.model, faceforge::scene::ModelSource::File(path.to_path_buf()));
    let summary = faceforge::run::run(&scene, false).unwrap();
    assert_eq!(summary.frames, 2);
}

#[test]
fn bfm2009_layout_imports_to_the_arrays_written() {
    let m = tiny();
    let n3 = 3 * m.n_vertices();
    let bytes = write(
        &[
            ("shapeMU", vec![n3, 1], &scaled(m.mean_shape(), 1000.0), MatType::Single),
            ("shapePC", vec![n3, m.n_id()], m.id_basis(), MatType::Single),
            ("shapeEV", vec![m.n_id(), 1], &scaled(m.id_sigma(), 1000.0), MatType::Double),
            ("texMU", vec![n3, 1], &scaled(m.mean_albedo(), 255.0), MatType::Single),
            ("texPC", vec![n3, m.n_albedo()], m.albedo_basis(), MatType::Single),
            ("texEV", vec![m.n_albedo(), 1], &scaled(m.albedo_sigma(), 255.0), MatType::Double),
            ("tl", vec![m.n_triangles(), 3], &triangle_list(m.triangles(), false), MatType::Double),
        ],
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let arrays = parse("01_MorphableModel.mat", &bytes).unwrap();
    // Without landmarks: refused, saying what to pass.
    let err = import(Layout::Bfm2009, "01_MorphableModel.mat", &arrays, &ImportOptions::default()).unwrap_err().to_string();
    assert!(err.contains("--landmarks"), "{err}");
    let text: String = m.landmarks().iter().map(|v| format!("{}\n", v + 1)).collect();
    let landmarks = read_landmarks("bfm_68.txt", &text, true).unwrap();
    let imported = import(Layout::Bfm2009, "01_MorphableModel.mat", &arrays, &ImportOptions { landmarks: Some(landmarks), ..Default::default() }).unwrap();
    let path = dir.path().join("bfm2009.ffm");
    let bytes = faceforge_model::file::encode(&imported);
    MorphableModel::from_bytes(&bytes, "import").unwrap().save(&path).unwrap();
    let imported = MorphableModel::open(&path).unwrap();
    assert_eq!(imported.n_exp(), 0, "BFM 2009 has no expressions");
    check_same_faces(&m, &imported, false);
    runs_in_a_scene(&path);
}

#[test]
fn deep3d_front_layout_imports_to_the_arrays_written() {
    let m = tiny();
    let n3 = 3 * m.n_vertices();
    let premultiplied = |basis: &[f32], sigma: &[f32], unit: f32| -> Vec<f32> { basis.chunks(n3).zip(sigma).flat_map(|(c, s)| c.iter().map(move |v| v * s * unit)).collect() };
    let keypoints: Vec<f32> = m.landmarks().iter().map(|&v| v as f32 + 1.0).collect();
    let bytes = write(
        &[
            ("meanshape", vec![1, n3], &scaled(m.mean_shape(), 0.01), MatType::Single),
            ("idBase", vec![n3, m.n_id()], &premultiplied(m.id_basis(), m.id_sigma(), 0.01), MatType::Single),
            ("exBase", vec![n3, m.n_exp()], &premultiplied(m.exp_basis(), m.exp_sigma(), 0.01), MatType::Single),
            ("meantex", vec![1, n3], &scaled(m.mean_albedo(), 255.0), MatType::Single),
            ("texBase", vec![n3, m.n_albedo()], &premultiplied(m.albedo_basis(), m.albedo_sigma(), 255.0), MatType::Single),
            ("tri", vec![m.n_triangles(), 3], &triangle_list(m.triangles(), true), MatType::Int32),
            ("keypoints", vec![1, 68], &keypoints, MatType::Double),
        ],
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let arrays = parse("BFM_model_front.mat", &bytes).unwrap();
    let imported = import(Layout::Deep3dFront, "BFM_model_front.mat", &arrays, &ImportOptions::default()).unwrap();
    let path = dir.path().join("front.ffm");
    MorphableModel::from_bytes(&faceforge_model::file::encode(&imported), "import").unwrap().save(&path).unwrap();
    let imported = MorphableModel::open(&path).unwrap();
    assert_eq!(imported.n_exp(), m.n_exp());
    check_same_faces(&m, &imported, true);
    runs_in_a_scene(&path);
}
