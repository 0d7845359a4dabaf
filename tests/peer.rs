//! The landmark fit the PyTorch peer is measured against (`scenes/landmark_fit.ron`, `faceforge
//! bench peer`): decoding only the landmark rows gives the same fit as decoding the whole mesh,
//! the run still writes whole meshes, and the export holds what `benches/peer/peer.py` reads.

use faceforge::run::run;
use faceforge_e2e::scene_into;
use faceforge_model::{MorphableModel, ModelSpec, Preset};

/// The scene on the tiny model for `iterations`, writing into `out`.
fn landmark_fit(iterations: u32, out: &std::path::Path) -> faceforge::LoadedScene {
    scene_into("landmark_fit.ron", &["model.Procedural.preset=Tiny".into(), format!("iterations={iterations}")], out)
}

#[test]
fn landmark_rows_fit_as_the_whole_mesh_does_and_the_export_holds_the_peers_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    let results = faceforge::bench::peer::landmark_fit(&landmark_fit(60, &dir.path().join("out")), Some(&export)).unwrap();
    let [(full_name, full), (rows_name, rows)] = [&results[0], &results[1]];
    assert_eq!((*full_name, *rows_name), ("full mesh", "landmark rows only"));
    // The same fit either way: the loss curves agree to 1e-4 relative at every iteration.
    let worst = full.losses.iter().zip(&rows.losses).map(|(a, b)| ((a - b) / a).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "loss curves differ by {worst} relative");
    // And it fits: the loss more than halves from the landmarks' affine start.
    assert!(rows.losses[59] < 0.5 * rows.losses[0], "loss {} → {}", rows.losses[0], rows.losses[59]);

    // The export: the model's arrays at their sizes, four frames of 68 landmarks with a finite start.
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
    let len = 3 * model.n_vertices();
    let size = |name: &str| std::fs::metadata(export.join(name)).unwrap().len() as usize;
    assert_eq!([size("mean_shape.f32"), size("id_basis.f32"), size("exp_basis.f32")], [4 * len, 4 * model.n_id() * len, 4 * model.n_exp() * len]);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();
    let frames = manifest["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 4);
    for f in frames {
        assert_eq!(f["landmarks"].as_array().unwrap().len(), 68);
        assert!(f["angles"].as_array().unwrap().iter().all(|a| a.as_f64().unwrap().is_finite()));
    }
    // faceforge's own numbers for the peer's table: both variants, every iteration's loss.
    let ours = manifest["faceforge"].as_array().unwrap();
    assert_eq!(ours.len(), 2);
    assert!(ours.iter().all(|v| v["losses"].as_array().unwrap().len() == 60));
}

#[test]
fn a_landmark_rows_run_writes_the_whole_fitted_mesh() {
    let dir = tempfile::tempdir().unwrap();
    run(&landmark_fit(40, dir.path()), false).unwrap();
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
    let obj = std::fs::read_to_string(dir.path().join("s000_f000.obj")).unwrap();
    let vertices: Vec<[f32; 3]> = obj.lines().filter_map(|l| l.strip_prefix("v ")).map(|l| {
        let v: Vec<f32> = l.split_whitespace().take(3).map(|x| x.parse().unwrap()).collect();
        [v[0], v[1], v[2]]
    }).collect();
    assert_eq!(vertices.len(), model.n_vertices());
    // Away from the landmarks the mesh moved from the mean face too: the whole mesh was decoded
    // from the final coefficients (> 0.05 mm somewhere; the iterations left it at the mean).
    let landmarks: std::collections::HashSet<usize> = model.landmarks().iter().map(|&v| v as usize).collect();
    let moved = vertices.iter().enumerate().filter(|(v, _)| !landmarks.contains(v)).map(|(v, p)| (0..3).map(|c| (p[c] - model.mean_shape()[3 * v + c]).abs()).fold(0.0f32, f32::max)).fold(0.0f32, f32::max);
    assert!(moved > 0.05, "non-landmark vertices moved at most {moved} mm from the mean face");
}

#[test]
fn the_training_step_export_holds_the_batch_and_the_network_size() {
    let dir = tempfile::tempdir().unwrap();
    let train = faceforge::LoadedScene::load(&faceforge_e2e::scenes_dir().join("pgn_train_guidance.ron")).unwrap();
    let ms = faceforge::bench::peer::training_step(&train, 64, 1, dir.path()).unwrap();
    assert!(ms.iter().all(|t| *t > 0.0));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("train_64.json")).unwrap()).unwrap();
    let batch = manifest["batch"].as_u64().unwrap() as usize;
    assert_eq!(batch, 16);
    assert_eq!(std::fs::metadata(dir.path().join("train_64.f32")).unwrap().len() as usize, 4 * batch * 3 * 64 * 64);
    assert_eq!(manifest["targets"].as_array().unwrap().len(), batch);
    assert_eq!(manifest["landmark_uvs"].as_array().unwrap().len(), 68);
    // The step-1 network of width 16 at 64²: the peer must build exactly this many weights.
    assert!(manifest["parameters"].as_u64().unwrap() > 100_000);
}
