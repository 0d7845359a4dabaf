//! Any bytes given as a native `.ffm` model file are a checked model or an error, never a panic.
//! Raw bytes rarely get past the magic number and the checksums, so the input also damages a
//! small valid model (XOR at chosen offsets) whose checksums are then repaired: the damage
//! reaches the size, offset and index checks behind them. A model that loads is read in full.
#![no_main]
use faceforge_model::{file, MorphableModel, ModelArrays};
use libfuzzer_sys::fuzz_target;

fn small_model(vertices: usize, components: usize) -> ModelArrays {
    let v3 = 3 * vertices;
    ModelArrays {
        preset: "fuzz".into(),
        seed: 0,
        mean_shape: (0..v3).map(|i| i as f32).collect(),
        id_basis: vec![0.5; v3 * components],
        id_sigma: vec![1.0; components],
        exp_basis: vec![0.25; v3 * components],
        exp_sigma: vec![1.0; components],
        mean_albedo: vec![0.5; v3],
        albedo_basis: vec![0.1; v3 * components],
        albedo_sigma: vec![1.0; components],
        triangles: vec![0, 1, 2],
        uv: vec![0.5; 2 * vertices],
        landmarks: (0..68).map(|i| (i % vertices) as u32).collect(),
        dense_landmarks: (0..vertices as u32).collect(),
        mirror: (0..vertices as u32).rev().collect(),
        regions: vec![0; vertices],
    }
}

fn read_all(model: &MorphableModel) {
    let n = model.n_vertices();
    assert_eq!(model.mean_shape().len(), 3 * n);
    assert_eq!(model.id_basis().len(), 3 * n * model.n_id());
    assert!(model.triangles().iter().chain(model.landmarks()).chain(model.mirror()).chain(model.dense_landmarks()).all(|&v| (v as usize) < n));
    let _ = model.region_weights();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = MorphableModel::from_bytes(data, "fuzz.ffm") {
        read_all(&model);
    }
    if data.len() < 2 {
        return;
    }
    let mut bytes = file::encode(&small_model(3 + data[0] as usize % 6, data[1] as usize % 3));
    for change in data[2..].chunks_exact(5) {
        let at = u32::from_le_bytes([change[0], change[1], change[2], change[3]]) as usize % bytes.len();
        bytes[at] ^= change[4];
    }
    file::fix_checksums(&mut bytes);
    if let Ok(model) = MorphableModel::from_bytes(&bytes, "fuzz.ffm") {
        read_all(&model);
    }
});
