//! Helpers for the ops' tests: seeded inputs, a relative comparison, the wgpu backend.

use crate::backend::Backend;

/// Deterministic values in [-1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// |a − b| ≤ tol · max(1, |b|) element-wise, with the first offender in the message.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * y.abs().max(1.0), "element {i}: {x} vs {y} (tolerance {tol} relative)");
    }
}

/// The wgpu runtime on this machine's adapter; the kernels' tests must run on it, so a machine
/// without one fails them (CI installs Mesa's CPU Vulkan driver).
pub fn wgpu_backend() -> Backend {
    Backend::wgpu().expect("kernel tests need a wgpu adapter (apt-get install mesa-vulkan-drivers)")
}
