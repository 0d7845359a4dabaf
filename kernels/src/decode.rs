//! decode: out[b] = base[b] + Σ_k basis[k] · coeffs[b, k] for a batch — the morphable model's
//! S = S̄ + B_id α + B_exp β (one call per basis) and its albedo T = T̄ + B_tex γ. It is a GEMM
//! over the batch: every basis row is read once per batch, not once per frame.
//!
//! Adjoint: d coeffs[b, k] = basis[k] · d out[b]; d base = d out (the caller forwards it).
//!
//! Layout: `basis` is component-major (K × L), `coeffs` is B × K, `out` is B × L. `base` is
//! either one row broadcast over the batch (the mean) or B rows (a previous decode's output).

use crate::backend::Backend;
use crate::dense;
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

/// Row elements per tile of the small-batch native path: a tile of every batch row stays in L1
/// while the basis streams through once per batch, not once per item (512 measured best of
/// 512–32768 at batch 1 and 16).
const TILE: usize = 512;

/// From this batch size on, and for rows of at least `GEMM_COLUMNS`, the native twins use a
/// packed GEMM (`dense::gemm`: register blocks over the batch rows) instead of axpys and dot
/// products per item: at the `bfm` size on one core it took a frame's decode from 0.88 to 0.43
/// ms at batch 16, but lost at batch 4 (1.62 against 1.06 ms: packing the basis costs more
/// than it saves when each element is used four times) and on short rows (its buffers).
const GEMM_BATCH: usize = 8;

/// Row elements per parallel job on the GEMM path.
const GEMM_COLUMNS: usize = 8192;

/// Whether this shape takes the GEMM path.
fn gemm_path(shape: DecodeShape) -> bool {
    shape.batch >= GEMM_BATCH && shape.len >= GEMM_COLUMNS
}

/// The row elements each parallel job takes.
fn job_width(shape: DecodeShape) -> usize {
    if gemm_path(shape) { GEMM_COLUMNS } else { TILE }
}

/// Native forward, a GEMM over the batch: for each stretch of the row, start every item from its
/// base and add each component scaled by its coefficient. Stretches run in parallel on the
/// compute pool.
pub fn forward_cpu(shape: DecodeShape, base: &[f32], basis: &[f32], coeffs: &[f32]) -> Vec<f32> {
    shape.check(base, basis, coeffs);
    let (l, k_count, batch) = (shape.len, shape.components, shape.batch);
    let width = job_width(shape);
    let tiles: Vec<Vec<f32>> = crate::parallel::map(l.div_ceil(width), |t| {
        let (start, end) = (t * width, ((t + 1) * width).min(l));
        let w = end - start;
        let mut tile = vec![0.0f32; batch * w];
        for (b, row) in tile.chunks_mut(w).enumerate() {
            let base_row = if shape.base_per_item { &base[b * l..(b + 1) * l] } else { base };
            row.copy_from_slice(&base_row[start..end]);
        }
        if gemm_path(shape) {
            // tile (B × w) += coeffs (B × K) · basis[:, start..end] (K × w, row stride L).
            dense::gemm(batch, k_count, w, coeffs, (k_count, 1), &basis[start..], (l, 1), 1.0, &mut tile);
        } else {
            let component = |k: usize| &basis[k * l + start..k * l + end];
            let quads = k_count / 4 * 4;
            for k in (0..quads).step_by(4) {
                let x = [component(k), component(k + 1), component(k + 2), component(k + 3)];
                for (b, row) in tile.chunks_mut(w).enumerate() {
                    let c = &coeffs[b * k_count + k..b * k_count + k + 4];
                    dense::axpy4([c[0], c[1], c[2], c[3]], x, row);
                }
            }
            for k in quads..k_count {
                for (b, row) in tile.chunks_mut(w).enumerate() {
                    dense::axpy(coeffs[b * k_count + k], component(k), row);
                }
            }
        }
        tile
    });
    let mut out = vec![0.0; batch * l];
    for (t, tile) in tiles.iter().enumerate() {
        let (start, w) = (t * width, tile.len() / batch.max(1));
        for b in 0..batch {
            out[b * l + start..b * l + start + w].copy_from_slice(&tile[b * w..(b + 1) * w]);
        }
    }
    out
}

/// Native adjoint: d coeffs[b, k] = basis[k] · d out[b], summed stretch by stretch (in
/// parallel) so the basis streams through once per batch.
pub fn backward_cpu(shape: DecodeShape, basis: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let (l, k_count, batch) = (shape.len, shape.components, shape.batch);
    assert_eq!(grad_out.len(), batch * l, "decode backward: grad length");
    let width = job_width(shape);
    let partials: Vec<Vec<f32>> = crate::parallel::map(l.div_ceil(width), |t| {
        let (start, end) = (t * width, ((t + 1) * width).min(l));
        let mut grad = vec![0.0f32; batch * k_count];
        if gemm_path(shape) {
            // grad (B × K) = d out[:, start..end] (B × w, row stride L) · basis[:, start..end]ᵀ
            // (w × K: element (i, k) at k·L + i).
            dense::gemm(batch, end - start, k_count, &grad_out[start..], (l, 1), &basis[start..], (1, l), 0.0, &mut grad);
        } else {
            for k in 0..k_count {
                let component = &basis[k * l + start..k * l + end];
                for b in 0..batch {
                    grad[b * k_count + k] = dense::dot(component, &grad_out[b * l + start..b * l + end]);
                }
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

/// The three decodes of a morphable model over a batch of `len`-long rows: identity onto the
/// mean shape, expression onto each item's identity shape, albedo onto the mean albedo.
pub fn model_shapes(batch: usize, len: usize, (n_id, n_exp, n_albedo): (usize, usize, usize)) -> [DecodeShape; 3] {
    let shape = |components, base_per_item| DecodeShape { batch, components, len, base_per_item };
    [shape(n_id, false), shape(n_exp, true), shape(n_albedo, false)]
}

/// A morphable model's means and bases kept on a device, uploaded once: only coefficients and
/// their gradients move per call.
#[derive(Debug)]
pub struct DeviceBases {
    mean_shape: cubecl::server::Handle,
    id: cubecl::server::Handle,
    exp: cubecl::server::Handle,
    mean_albedo: cubecl::server::Handle,
    albedo: cubecl::server::Handle,
}

impl DeviceBases {
    pub fn upload(client: &cubecl::client::Client, mean_shape: &[f32], id_basis: &[f32], exp_basis: &[f32], mean_albedo: &[f32], albedo_basis: &[f32]) -> Self {
        Self {
            mean_shape: upload(client, mean_shape),
            id: upload(client, id_basis),
            exp: upload(client, exp_basis),
            mean_albedo: upload(client, mean_albedo),
            albedo: upload(client, albedo_basis),
        }
    }

    /// Shapes (B × 3N) and, given albedo coefficients, albedos, on the device (`shapes` from
    /// `model_shapes`).
    pub fn forward(&self, client: &cubecl::client::Client, shapes: [DecodeShape; 3], id: &cubecl::server::Handle, exp: &cubecl::server::Handle, tex: Option<&cubecl::server::Handle>) -> (cubecl::server::Handle, Option<cubecl::server::Handle>) {
        let [shape_id, shape_exp, shape_tex] = shapes;
        let with_id = forward_device(client, shape_id, &self.mean_shape, &self.id, id);
        let positions = forward_device(client, shape_exp, &with_id, &self.exp, exp);
        (positions, tex.map(|t| forward_device(client, shape_tex, &self.mean_albedo, &self.albedo, t)))
    }

    /// The adjoint of `forward`: (d identity, d expression, d albedo when given d albedos).
    pub fn backward(&self, client: &cubecl::client::Client, shapes: [DecodeShape; 3], grad_positions: &cubecl::server::Handle, grad_albedo: Option<&cubecl::server::Handle>) -> (cubecl::server::Handle, cubecl::server::Handle, Option<cubecl::server::Handle>) {
        let [shape_id, shape_exp, shape_tex] = shapes;
        (
            backward_device(client, shape_id, &self.id, grad_positions),
            backward_device(client, shape_exp, &self.exp, grad_positions),
            grad_albedo.map(|g| backward_device(client, shape_tex, &self.albedo, g)),
        )
    }
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

    /// Short rows: the small-batch path at any batch (the GEMM path's test has long rows).
    fn case(base_per_item: bool, batch: usize) -> (DecodeShape, Vec<f32>, Vec<f32>, Vec<f32>) {
        let shape = DecodeShape { batch, components: 7, len: 300, base_per_item };
        let base_rows = if base_per_item { batch } else { 1 };
        (shape, random(base_rows * 300, 1), random(7 * 300, 2), random(batch * 7, 3))
    }

    #[test]
    fn native_forward_matches_the_definition() {
        for (per_item, batch) in [(false, 3), (true, 3), (false, 6), (true, 6)] {
            let (shape, base, basis, coeffs) = case(per_item, batch);
            assert_close(&forward_cpu(shape, &base, &basis, &coeffs), &oracle(shape, &base, &basis, &coeffs), 1e-5);
        }
    }

    #[test]
    fn native_paths_cover_long_rows_in_order() {
        // Rows longer than several jobs, on the small-batch path (2) and the GEMM path (5):
        // every stretch lands where it belongs, forward and adjoint.
        for batch in [2, GEMM_BATCH + 1] {
            let shape = DecodeShape { batch, components: 5, len: 2 * GEMM_COLUMNS + 123, base_per_item: true };
            let (base, basis, coeffs) = (random(batch * shape.len, 6), random(5 * shape.len, 7), random(batch * 5, 8));
            assert_close(&forward_cpu(shape, &base, &basis, &coeffs), &oracle(shape, &base, &basis, &coeffs), 1e-5);
            let g = random(batch * shape.len, 9);
            let expected: Vec<f32> = (0..batch)
                .flat_map(|b| (0..5).map(move |k| (b, k)))
                .map(|(b, k)| (0..shape.len).map(|i| basis[k * shape.len + i] as f64 * g[b * shape.len + i] as f64).sum::<f64>() as f32)
                .collect();
            assert_close(&backward_cpu(shape, &basis, &g), &expected, 1e-4);
        }
    }

    #[test]
    fn native_adjoint_matches_central_differences() {
        for batch in [3, 6] {
            let (shape, base, basis, coeffs) = case(false, batch);
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
                assert!(rel < 1e-2, "batch {batch}, coefficient {j}: analytic {} vs numeric {numeric}", analytic[j]);
            }
        }
    }

    #[test]
    fn wgpu_kernels_match_their_native_twins() {
        let backend = wgpu_backend();
        for (per_item, batch) in [(false, 3), (true, 6)] {
            let (shape, base, basis, coeffs) = case(per_item, batch);
            let native = forward_cpu(shape, &base, &basis, &coeffs);
            assert_close(&forward(&backend, shape, &base, &basis, &coeffs), &native, 1e-5);
            let grad_out = random(shape.batch * shape.len, 5);
            assert_close(&backward(&backend, shape, &basis, &grad_out), &backward_cpu(shape, &basis, &grad_out), 1e-5);
        }
    }
}
