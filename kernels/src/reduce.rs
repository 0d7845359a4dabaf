//! reduce: the weighted mean the losses normalise with — per item b,
//! m_b = Σ_p w_{b,p} Σ_c x_{b,p,c} / Σ_p w_{b,p} (e.g. PGN Eq. 9: Σ H ⊙ M ⊙ W / Σ M ⊙ W), 0 where
//! the weights sum to 0. Adjoint: d x_{b,p,c} = g_b w_{b,p} / Σ_p w_{b,p}.
//!
//! The device sums chunks of `CHUNK` elements per thread without barriers (barriers are very slow
//! on CPU Vulkan drivers) and the host adds the partial sums.

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;

/// Elements per device thread.
pub const CHUNK: usize = 1024;

/// Sizes: `batch` items of `elements` weighted entries with `channels` values each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReduceShape {
    pub batch: usize,
    pub elements: usize,
    pub channels: usize,
}

impl ReduceShape {
    fn check(&self, x: &[f32], w: &[f32]) {
        assert_eq!(x.len(), self.batch * self.elements * self.channels, "reduce: values length");
        assert_eq!(w.len(), self.batch * self.elements, "reduce: weights length");
    }
}

/// Native twin: (weighted sums, weight sums) per item, in f64 for the accumulation.
fn sums_cpu(s: ReduceShape, x: &[f32], w: &[f32]) -> Vec<(f64, f64)> {
    (0..s.batch)
        .map(|b| {
            let mut num = 0.0f64;
            let mut den = 0.0f64;
            for p in 0..s.elements {
                let i = b * s.elements + p;
                let row: f32 = x[i * s.channels..(i + 1) * s.channels].iter().sum();
                num += (w[i] * row) as f64;
                den += w[i] as f64;
            }
            (num, den)
        })
        .collect()
}

fn means(sums: &[(f64, f64)]) -> Vec<f32> {
    sums.iter().map(|&(num, den)| if den > 0.0 { (num / den) as f32 } else { 0.0 }).collect()
}

/// Native forward: one mean per item.
pub fn forward_cpu(s: ReduceShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    s.check(x, w);
    means(&sums_cpu(s, x, w))
}

/// Adjoint (either backend: an element-wise scale by g_b / Σw): d x.
pub fn backward(s: ReduceShape, w: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(grad.len(), s.batch, "reduce backward: one gradient per item");
    let mut out = vec![0.0; s.batch * s.elements * s.channels];
    for b in 0..s.batch {
        let den: f64 = w[b * s.elements..(b + 1) * s.elements].iter().map(|&x| x as f64).sum();
        if den <= 0.0 {
            continue;
        }
        let scale = (grad[b] as f64 / den) as f32;
        for p in 0..s.elements {
            let i = b * s.elements + p;
            out[i * s.channels..(i + 1) * s.channels].iter_mut().for_each(|o| *o = scale * w[i]);
        }
    }
    out
}

/// One thread per (item, chunk): the chunk's weighted sum and weight sum.
#[cube(launch_unchecked)]
fn partial_sums_kernel(x: &[f32], w: &[f32], partial: &mut [f32], elements: usize, channels: usize, chunks: usize) {
    let pos = ABSOLUTE_POS;
    if pos < partial.len() / 2 {
        let b = pos / chunks;
        let start = (pos % chunks) * 1024;
        let mut end = start + 1024;
        if end > elements {
            end = elements;
        }
        let mut num = 0.0f32;
        let mut den = 0.0f32;
        for p in start..end {
            let i = b * elements + p;
            let mut row = 0.0f32;
            for c in 0..channels {
                row += x[i * channels + c];
            }
            num += w[i] * row;
            den += w[i];
        }
        partial[2 * pos] = num;
        partial[2 * pos + 1] = den;
    }
}

/// Forward on whichever backend.
pub fn forward(backend: &Backend, s: ReduceShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    s.check(x, w);
    let Backend::Gpu { client, .. } = backend else { return forward_cpu(s, x, w) };
    let chunks = s.elements.div_ceil(CHUNK).max(1);
    let partial = client.empty(2 * s.batch * chunks * 4);
    let (count, dim) = grid_1d(s.batch * chunks);
    #[allow(unsafe_code)]
    // SAFETY: indices are bounded by the checked lengths.
    unsafe {
        partial_sums_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(upload(client, x), x.len()),
            BufferArg::from_raw_parts(upload(client, w), w.len()),
            BufferArg::from_raw_parts(partial.clone(), 2 * s.batch * chunks),
            s.elements,
            s.channels,
            chunks,
        );
    }
    let partial = download(client, partial);
    let sums: Vec<(f64, f64)> = (0..s.batch)
        .map(|b| {
            partial[2 * b * chunks..2 * (b + 1) * chunks]
                .chunks(2)
                .fold((0.0, 0.0), |(n, d), p| (n + p[0] as f64, d + p[1] as f64))
        })
        .collect();
    means(&sums)
}

// The kernel hard-codes the chunk size.
const _: () = assert!(CHUNK == 1024);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random, wgpu_backend};

    #[test]
    fn hand_computed_mean_and_an_empty_mask() {
        // Item 0: values (1+2), (3+4), (5+6) with weights 1, 0, 3 → (3 + 33) / 4 = 9.
        // Item 1: all weights 0 → 0.
        let s = ReduceShape { batch: 2, elements: 3, channels: 2 };
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0];
        let w = [1.0, 0.0, 3.0, 0.0, 0.0, 0.0];
        assert_eq!(forward_cpu(s, &x, &w), vec![9.0, 0.0]);
        assert_eq!(backward(s, &w, &[2.0, 1.0]), vec![0.5, 0.5, 0.0, 0.0, 1.5, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let s = ReduceShape { batch: 2, elements: 50, channels: 3 };
        let x = random(300, 41);
        let w: Vec<f32> = random(100, 42).iter().map(|v| v.abs()).collect();
        let g = [0.7, -1.3];
        let analytic = backward(s, &w, &g);
        let loss = |x: &[f32]| -> f64 { forward_cpu(s, x, &w).iter().zip(g).map(|(m, g)| *m as f64 * g as f64).sum() };
        for j in 0..x.len() {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[j] += 1e-2;
            minus[j] -= 1e-2;
            let numeric = (loss(&plus) - loss(&minus)) / (plus[j] as f64 - minus[j] as f64);
            assert!((analytic[j] as f64 - numeric).abs() <= 1e-2 * numeric.abs().max(1e-3), "element {j}: {} vs {numeric}", analytic[j]);
        }
    }

    #[test]
    fn wgpu_kernel_matches_its_native_twin() {
        // Three chunks per item, the last one partial.
        let s = ReduceShape { batch: 3, elements: 2 * CHUNK + 77, channels: 3 };
        let x = random(s.batch * s.elements * 3, 43);
        let w: Vec<f32> = random(s.batch * s.elements, 44).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
        assert_close(&forward(&wgpu_backend(), s, &x, &w), &forward_cpu(s, &x, &w), 1e-5);
    }
}
