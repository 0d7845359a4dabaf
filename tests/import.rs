//! Model importers on fake files of the real layouts (the real BFM cannot be shipped): the
//! procedural tiny model written as BFM 2009's `01_MorphableModel.mat` (micrometres, 1-based
//! triangle list, no expressions, landmarks given apart) and as Deep3DFaceRecon's
//! `BFM_model_front.mat` (another unit, bases premultiplied by σ, triangles the other way round,
//! compressed). Each import must give back the arrays written — the same mean face, the same
//! faces for the same coefficients — and run in a scene.

use faceforge::io::import::{import, read_landmarks, ImportOptions, Layout};
use faceforge::io::mat::{parse, write, MatType};
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

/// The BFM 2017 layout, in an HDF5 file the reference library wrote (h5py, `tests/data/
/// make_bfm2017_fake.py`): plain datasets, and one chunked, shuffled and deflated. The values
/// are the script's formulas.
#[test]
fn bfm2017_layout_reads_through_hdf5_and_imports() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bfm2017_fake.h5");
    let bytes = std::fs::read(&path).unwrap();
    let sets = faceforge::io::hdf5::parse("bfm2017_fake.h5", &bytes).unwrap();
    let n = 30;
    let mean = &sets["/shape/model/mean"];
    assert_eq!(mean.shape, vec![3 * n]);
    for i in 0..n {
        let expected = [((i % 6) as f32 - 2.5) * 30.0, ((i / 6) as f32 - 2.0) * 30.0, 10.0 * (i as f32 * 0.3).cos()];
        for c in 0..3 {
            assert!((mean.data[3 * i + c] - expected[c]).abs() < 1e-4, "vertex {i}");
        }
    }
    assert_eq!(sets["/shape/representer/cells"].shape, vec![3, 40]);
    assert_eq!(sets["/color/model/pcaBasis"].shape, vec![3 * n, 4]);
    // The chunked colour basis is σ times orthonormal columns: column norms are σ.
    let colour = &sets["/color/model/pcaBasis"];
    for (k, sd) in [0.2f32, 0.1, 0.05, 0.02].iter().enumerate() {
        let norm = (0..3 * n).map(|r| colour.data[r * 4 + k].powi(2)).sum::<f32>().sqrt();
        assert!((norm - sd).abs() < 1e-5, "colour component {k}: {norm}");
    }
    let landmarks: Vec<u32> = (0..68).map(|i| i % 30).collect();
    let imported = faceforge::io::import::import_hdf5("bfm2017_fake.h5", &sets, &ImportOptions { landmarks: Some(landmarks), ..Default::default() }).unwrap();
    let model = MorphableModel::from_bytes(&faceforge_model::file::encode(&imported), "bfm2017").unwrap();
    assert_eq!((model.n_vertices(), model.n_triangles(), model.n_id(), model.n_exp(), model.n_albedo()), (30, 40, 4, 3, 4));
    assert!(worst(model.mean_shape(), &mean.data) < 1e-4, "the mean face as written");
    assert!(worst(model.id_sigma(), &[4.0, 3.0, 2.0, 1.0]) < 1e-4 && worst(model.albedo_sigma(), &[0.2, 0.1, 0.05, 0.02]) < 1e-5);
    // A face drawn with coefficients equals mean + Σ c_k · column_k of the file's basis.
    let basis = &sets["/shape/model/pcaBasis"].data;
    let c = [1.5f32, -2.0, 0.5, 3.0];
    let drawn = face(&model, &Coeffs { id: c.to_vec(), exp: vec![0.0; 3], tex: vec![0.0; 4] });
    let by_hand: Vec<f32> = (0..3 * n).map(|r| mean.data[r] + (0..4).map(|k| c[k] * basis[r * 4 + k]).sum::<f32>()).collect();
    assert!(worst(&drawn, &by_hand) < 1e-4);
    // Without landmarks: refused, saying what to pass.
    let err = faceforge::io::import::import_hdf5("bfm2017_fake.h5", &sets, &ImportOptions::default()).unwrap_err().to_string();
    assert!(err.contains("--landmarks"), "{err}");
}

/// Found by fuzzing: a damaged dataspace that declares a huge dataset made the reader allocate
/// gigabytes before finding the data missing. Every dimension of 90 (the mean's 3N) in the file
/// set to 2⁴⁰: an error naming the limit, at once and without the allocation.
#[test]
fn a_dataset_declaring_more_than_the_file_holds_is_an_error() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bfm2017_fake.h5");
    let mut bytes = std::fs::read(path).unwrap();
    let mut changed = 0;
    for at in 0..bytes.len().saturating_sub(8) {
        if bytes[at..at + 8] == 90u64.to_le_bytes() {
            bytes[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            changed += 1;
        }
    }
    assert!(changed > 0);
    let err = faceforge::io::hdf5::parse("damaged.h5", &bytes).unwrap_err().to_string();
    assert!(err.contains("declares more than 1 GiB") || err.contains("more data than the file could hold"), "{err}");
}
