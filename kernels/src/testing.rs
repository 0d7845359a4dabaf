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

/// A test mesh in mm: a bumpy height field (z towards the camera, counter-clockwise triangles
/// seen from +z) over [−60, 60]², with `extra` seeded large triangles crossing it and each other.
pub fn test_mesh(n: usize, extra: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let h = 120.0 / n as f32;
    let mut p = Vec::new();
    for j in 0..=n {
        for i in 0..=n {
            let (x, y) = (i as f32 * h - 60.0, j as f32 * h - 60.0);
            p.extend([x, y, 30.0 * (-(x * x + y * y) / 2000.0).exp() + 5.0 * (0.1 * x).sin() * (0.13 * y).cos()]);
        }
    }
    let idx = |i: usize, j: usize| (j * (n + 1) + i) as u32;
    let mut t = Vec::new();
    for j in 0..n {
        for i in 0..n {
            t.extend([idx(i, j), idx(i + 1, j), idx(i + 1, j + 1), idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)]);
        }
    }
    let r = random(9 * extra, seed);
    for k in 0..extra {
        let base = (p.len() / 3) as u32;
        for c in 0..3 {
            p.extend([r[9 * k + 3 * c] * 90.0, r[9 * k + 3 * c + 1] * 90.0, r[9 * k + 3 * c + 2] * 40.0 + 10.0]);
        }
        t.extend([base, base + 1, base + 2]);
    }
    (p, t)
}

/// A row-major rotation by yaw, then pitch (radians), no roll.
pub fn rotation(yaw: f32, pitch: f32) -> [f32; 9] {
    crate::project::rotation_ypr(yaw, pitch, 0.0)
}

/// The worst relative error of `grad` against central differences of `f` at every `stride`-th
/// element of `x` (step `eps`), relative to max(|numeric|, |analytic|) + `floor`.
pub fn worst_against_central_differences(f: impl Fn(&[f32]) -> f32, x: &[f32], grad: &[f32], stride: usize, eps: f32, floor: f32) -> f32 {
    let mut worst = 0.0f32;
    for i in (0..x.len()).step_by(stride) {
        let (mut up, mut down) = (x.to_vec(), x.to_vec());
        up[i] += eps;
        down[i] -= eps;
        let numeric = (f(&up) - f(&down)) / (2.0 * eps);
        worst = worst.max((numeric - grad[i]).abs() / (numeric.abs().max(grad[i].abs()) + floor));
    }
    worst
}
