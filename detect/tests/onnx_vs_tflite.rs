//! The converted ONNX models, run by tract, against the original `.tflite` models run by
//! TensorFlow Lite's interpreter (outputs recorded by `detect/tools/convert.py`) on the same
//! pseudo-random input: within 1e-3 of the output's largest magnitude, element by element.

use faceforge_detect::FaceDetector;

/// SplitMix64 values in [-1, 1), the stream `convert.py` fed the tflite models (seed 7).
fn splitmix_uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn reference(name: &str) -> Vec<f32> {
    let path = format!("{}/tests/data/{name}.tflite_out.f32", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")).chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: output size");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("{name}: largest difference {worst:.3e} of largest magnitude {scale:.3e} ({:.2e} relative)", worst / scale);
    assert!(worst <= 1e-3 * scale, "{name}: tract differs from tflite by {worst} (largest magnitude {scale})");
}

#[test]
fn tract_runs_both_models_as_tflite_does() {
    let detector = FaceDetector::new().unwrap();
    let (regressors, logits) = detector.run_detector(splitmix_uniform(7, 128 * 128 * 3)).unwrap();
    assert_close("face detection", &[regressors, logits].concat(), &reference("face_detection_short_range"));
    let (points, presence) = detector.run_landmarker(splitmix_uniform(7, 192 * 192 * 3)).unwrap();
    assert_close("face landmark", &[points, vec![presence]].concat(), &reference("face_landmark"));
}
