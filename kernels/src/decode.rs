//! decode: out[b] = base[b] + Σ_k basis[k] · coeffs[b, k] for a batch — the morphable model's
//! S = S̄ + B_id α + B_exp β (one call per basis) and its albedo T = T̄ + B_tex γ. It is a GEMM
//! over the batch: every basis row is read once per batch, not once per frame.
//!
//! Adjoint: d coeffs[b, k] = basis[k] · d out[b]; d base = d out (the caller forwards it).
//!
//! Layout: `basis` is component-major (K × L), `coeffs` is B × K, `out` is B × L. `base` is
//! either one row broadcast over the batch (the mean) or B rows (a previous decode's output).

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;

/// Sizes of one decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeShape {
    pub batch: usize,
    /// Components K.
    pub components: usize,
    /// Row length L (3 × vertices).
    pub len: usize,
    /// Whether `base` has one row per batch item (else one row, broadcast).
    pub base_per_item: bool,
}

impl DecodeShape {
    fn check(&self, base: &[f32], basis: &[f32], coeffs: &[f32]) {
        let base_rows = if self.base_per_item { self.batch } else { 1 };
        assert_eq!(base.len(), base_rows * self.len, "decode: base length");
        assert_eq!(basis.len(), self.components * self.len, "decode: basis length");
        assert_eq!(coeffs.len(), self.batch * self.components, "decode: coeffs length");
    }
}

/// Row elements per tile of the native twins: a tile of every batch row (16 × 2 KiB at batch 16)
/// stays in L1 while the basis streams through once per batch, not once per item (512 measured
/// best of 256–4096 with `faceforge bench render`).
const TILE: usize = 512;

/// Native forward, a GEMM over the batch: for each tile of the row, start every item from its
/// base and add each component scaled by its coefficient (axpys the compiler vectorises). Tiles
/// run in parallel on the compute pool.
pub fn forward_cpu(shape: DecodeShape, base: &[f32], basis: &[f32], coeffs: &[f32]) -> Vec<f32> {
    shape.check(base, basis, coeffs);
    let (l, k_count, batch) = (shape.len, shape.components, shape.batch);
    let tiles: Vec<Vec<f32>> = crate::parallel::map(l.div_ceil(TILE), |t| {
        let (start, end) = (t * TILE, ((t + 1) * TILE).min(l));
        let w = end - start;
        let mut tile = vec![0.0f32; batch * w];
        for (b, row) in tile.chunks_mut(w).enumerate() {
            let base_row = if shape.base_per_item { &base[b * l..(b + 1) * l] } else { base };
            row.copy_from_slice(&base_row[start..end]);
        }
        for k in 0..k_count {
            let component = &basis[k * l + start..k * l + end];
            for (b, row) in tile.chunks_mut(w).enumerate() {
                let c = coeffs[b * k_count + k];
                if c != 0.0 {
                    row.iter_mut().zip(component).for_each(|(o, x)| *o += c * x);
                }
            }
        }
        tile
    });
    let mut out = vec![0.0; batch * l];
    for (t, tile) in tiles.iter().enumerate() {
        let (start, w) = (t * TILE, tile.len() / batch.max(1));
        for b in 0..batch {
            out[b * l + start..b * l + start + w].copy_from_slice(&tile[b * w..(b + 1) * w]);
        }
    }
    out
}

/// A dot product in eight independent lanes, so the compiler can keep it in SIMD registers (a
/// plain `sum()` is one serial chain of additions, which it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Native adjoint: d coeffs[b, k] = basis[k] · d out[b], summed tile by tile (in parallel) so
/// the basis streams through once per batch.
pub fn backward_cpu(shape: DecodeShape, basis: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let (l, k_count, batch) = (shape.len, shape.components, shape.batch);
    assert_eq!(grad_out.len(), batch * l, "decode backward: grad length");
    let partials: Vec<Vec<f32>> = crate::parallel::map(l.div_ceil(TILE), |t| {
        let (start, end) = (t * TILE, ((t + 1) * TILE).min(l));
        let mut grad = vec![0.0f32; batch * k_count];
        for k in 0..k_count {
            let component = &basis[k * l + start..k * l + end];
            for b in 0..batch {
                let g = &grad_out[b * l + start..b * l + end];
                grad[b * k_count + k] = dot(component, g);
            }
        }
        grad
    });
    let mut grad = vec![0.0; batch * k_count];
    for p in &partials {
        grad.iter_mut().zip(p).for_each(|(g, x)| *g += x);
    }
    grad
}

/// One thread per output element: it reads its column of the basis (coalesced across threads).
#[cube(launch_unchecked)]
fn decode_forward_kernel(
    base: &[f32],
    basis: &[f32],
    coeffs: &[f32],
    out: &mut [f32],
    len: usize,
    components: usize,
    base_per_item: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos < out.len() {
        let b = pos / len;
        let i = pos % len;
        let mut acc = base[i];
        if base_per_item == 1 {
            acc = base[pos];
        }
        for k in 0..components {
            acc += basis[k * len + i] * coeffs[b * components + k];
        }
        out[pos] = acc;
    }
}

/// One thread per (item, component): a strided dot product over the row, no barriers (barriers
/// are very slow on CPU Vulkan drivers).
#[cube(launch_unchecked)]
fn decode_backward_kernel(basis: &[f32], grad_out: &[f32], grad_coeffs: &mut [f32], len: usize, components: usize) {
    let pos = ABSOLUTE_POS;
    if pos < grad_coeffs.len() {
        let b = pos / components;
        let k = pos % components;
        let mut acc = 0.0f32;
        for i in 0..len {
            acc += basis[k * len + i] * grad_out[b * len + i];
        }
        grad_coeffs[pos] = acc;
    }
}

/// Device forward on handles already on the device.
pub fn forward_device(
    client: &cubecl::client::Client,
    shape: DecodeShape,
    base: &cubecl::server::Handle,
    basis: &cubecl::server::Handle,
    coeffs: &cubecl::server::Handle,
) -> cubecl::server::Handle {
    let n = shape.batch * shape.len;
    let base_len = if shape.base_per_item { n } else { shape.len };
    let out = client.empty(n * size_of::<f32>());
    let (count, dim) = grid_1d(n);
    // SAFETY of the unchecked launch: every access is bounded by the lengths checked above or by
    // `pos < out.len()`.
    #[allow(unsafe_code)]
    unsafe {
        decode_forward_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(base.clone(), base_len),
            BufferArg::from_raw_parts(basis.clone(), shape.components * shape.len),
            BufferArg::from_raw_parts(coeffs.clone(), shape.batch * shape.components),
            BufferArg::from_raw_parts(out.clone(), n),
            shape.len,
            shape.components,
            shape.base_per_item as u32,
        );
    }
    out
}

/// Device adjoint on handles already on the device.
pub fn backward_device(
    client: &cubecl::client::Client,
    shape: DecodeShape,
    basis: &cubecl::server::Handle,
    grad_out: &cubecl::server::Handle,
) -> cubecl::server::Handle {
    let n = shape.batch * shape.components;
    let grad = client.empty(n * size_of::<f32>());
    let (count, dim) = grid_1d(n);
    #[allow(unsafe_code)]
    unsafe {
        decode_backward_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(basis.clone(), shape.components * shape.len),
            BufferArg::from_raw_parts(grad_out.clone(), shape.batch * shape.len),
            BufferArg::from_raw_parts(grad.clone(), n),
            shape.len,
            shape.components,
        );
    }
    grad
}

/// Forward on whichever backend, from host slices to a host vector.
pub fn forward(backend: &Backend, shape: DecodeShape, base: &[f32], basis: &[f32], coeffs: &[f32]) -> Vec<f32> {
    match backend {
        Backend::Cpu => forward_cpu(shape, base, basis, coeffs),
        Backend::Gpu { client, .. } => {
            shape.check(base, basis, coeffs);
            let (base, basis, coeffs) = (upload(client, base), upload(client, basis), upload(client, coeffs));
            download(client, forward_device(client, shape, &base, &basis, &coeffs))
        }
    }
}

/// Adjoint on whichever backend, from host slices to a host vector.
pub fn backward(backend: &Backend, shape: DecodeShape, basis: &[f32], grad_out: &[f32]) -> Vec<f32> {
    match backend {
        Backend::Cpu => backward_cpu(shape, basis, grad_out),
        Backend::Gpu { client, .. } => {
            let (basis, grad_out) = (upload(client, basis), upload(client, grad_out));
            download(client, backward_device(client, shape, &basis, &grad_out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random, wgpu_backend};

    /// The plain definition, in f64.
    fn oracle(shape: DecodeShape, base: &[f32], basis: &[f32], coeffs: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        for b in 0..shape.batch {
            for i in 0..shape.len {
                let mut acc = if shape.base_per_item { base[b * shape.len + i] } else { base[i] } as f64;
                for k in 0..shape.components {
                    acc += basis[k * shape.len + i] as f64 * coeffs[b * shape.components + k] as f64;
                }
                out.push(acc as f32);
            }
        }
        out
    }

    fn case(base_per_item: bool) -> (DecodeShape, Vec<f32>, Vec<f32>, Vec<f32>) {
        let shape = DecodeShape { batch: 3, components: 7, len: 300, base_per_item };
        let base_rows = if base_per_item { 3 } else { 1 };
        (shape, random(base_rows * 300, 1), random(7 * 300, 2), random(3 * 7, 3))
    }

    #[test]
    fn native_forward_matches_the_definition() {
        for per_item in [false, true] {
            let (shape, base, basis, coeffs) = case(per_item);
            assert_close(&forward_cpu(shape, &base, &basis, &coeffs), &oracle(shape, &base, &basis, &coeffs), 1e-5);
        }
    }

    #[test]
    fn native_tiles_cover_long_rows_in_order() {
        // Rows longer than one tile, batch 4: every tile lands where it belongs.
        let shape = DecodeShape { batch: 4, components: 5, len: 3 * TILE + 123, base_per_item: true };
        let (base, basis, coeffs) = (random(4 * shape.len, 6), random(5 * shape.len, 7), random(20, 8));
        assert_close(&forward_cpu(shape, &base, &basis, &coeffs), &oracle(shape, &base, &basis, &coeffs), 1e-5);
        let g = random(4 * shape.len, 9);
        let expected: Vec<f32> = (0..4)
            .flat_map(|b| (0..5).map(move |k| (b, k)))
            .map(|(b, k)| (0..shape.len).map(|i| basis[k * shape.len + i] as f64 * g[b * shape.len + i] as f64).sum::<f64>() as f32)
            .collect();
        assert_close(&backward_cpu(shape, &basis, &g), &expected, 1e-4);
    }

    #[test]
    fn native_adjoint_matches_central_differences() {
        let (shape, base, basis, coeffs) = case(false);
        let weights = random(shape.batch * shape.len, 4);
        let loss = |c: &[f32]| -> f64 {
            forward_cpu(shape, &base, &basis, c).iter().zip(&weights).map(|(o, w)| *o as f64 * *w as f64).sum()
        };
        let analytic = backward_cpu(shape, &basis, &weights);
        let h = 1e-2;
        for j in 0..coeffs.len() {
            let (mut plus, mut minus) = (coeffs.clone(), coeffs.clone());
            plus[j] += h;
            minus[j] -= h;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
            let rel = (analytic[j] as f64 - numeric).abs() / numeric.abs().max(1e-3);
            assert!(rel < 1e-2, "coefficient {j}: analytic {} vs numeric {numeric}", analytic[j]);
        }
    }

    #[test]
    fn wgpu_kernels_match_their_native_twins() {
        let backend = wgpu_backend();
        for per_item in [false, true] {
            let (shape, base, basis, coeffs) = case(per_item);
            let native = forward_cpu(shape, &base, &basis, &coeffs);
            assert_close(&forward(&backend, shape, &base, &basis, &coeffs), &native, 1e-5);
            let grad_out = random(shape.batch * shape.len, 5);
            assert_close(&backward(&backend, shape, &basis, &grad_out), &backward_cpu(shape, &basis, &grad_out), 1e-5);
        }
    }
}
