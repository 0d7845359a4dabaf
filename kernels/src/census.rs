//! PGN's census photometric loss (Eq. 9) with a soft, differentiable census and Hamming
//! distance, and its adjoint to the rendered image.
//!
//! Census transform over a 7 × 7 window: for each pixel p and neighbour q, the bit [I(q) > I(p)].
//! Its soft form here is c = d / √(d² + η² s² + τ) with d = I(q) − I(p) and s² the mean d² of the
//! window, so c → sign(d) where |d| ≫ η s. Because s scales with the window's contrast, c is
//! invariant to I ↦ a·I + b (a > 0) exactly, like the hard census, which a fixed softness (as in
//! UnFlow/DDFlow's d / √(0.81 + d²)) is not. The soft Hamming distance of two transforms is
//! Σ_q Δc² / (δ + Δc²) (UnFlow's), and the loss is Σ_p H(p) w(p) / Σ_p w(p), w = M²ᵈ ⊙ W.
//!
//! Two passes, on the device as natively: per pixel, the loss share and dL/d(difference) for its
//! 48 neighbours; then per pixel, the gather of every difference it takes part in.

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;

/// Window radius: 7 × 7.
pub const RADIUS: i64 = 3;
/// Softness of the census relative to the window's contrast.
const ETA: f32 = 0.1;
/// Keeps flat windows finite.
const TAU: f32 = 1e-10;
/// Softness of the Hamming distance.
const DELTA: f32 = 0.1;
const NEIGHBOURS: usize = ((2 * RADIUS + 1) * (2 * RADIUS + 1) - 1) as usize;

fn offsets() -> impl Iterator<Item = (i64, i64)> {
    (-RADIUS..=RADIUS).flat_map(|dy| (-RADIUS..=RADIUS).map(move |dx| (dx, dy))).filter(|&o| o != (0, 0))
}

/// The soft census of pixel (x, y): per neighbour (in `offsets` order) its difference d, its
/// census value c, and whether it lies inside the image; plus s².
struct Window {
    d: [f32; NEIGHBOURS],
    c: [f32; NEIGHBOURS],
    inside: [bool; NEIGHBOURS],
    s2: f32,
    /// D^{3/2} per neighbour, D = d² + η² s² + τ (c = d / √D), which the adjoint divides by.
    d_three_halves: [f32; NEIGHBOURS],
}

fn window(grey: &[f32], width: usize, height: usize, x: usize, y: usize) -> Window {
    let centre = grey[y * width + x];
    let mut d = [0.0; NEIGHBOURS];
    let mut inside = [false; NEIGHBOURS];
    let mut sum = 0.0;
    let mut count = 0.0;
    for (k, (dx, dy)) in offsets().enumerate() {
        let (qx, qy) = (x as i64 + dx, y as i64 + dy);
        if qx >= 0 && qy >= 0 && qx < width as i64 && qy < height as i64 {
            d[k] = grey[qy as usize * width + qx as usize] - centre;
            inside[k] = true;
            sum += d[k] * d[k];
            count += 1.0;
        }
    }
    let s2 = sum / count;
    let mut c = [0.0; NEIGHBOURS];
    let mut d_three_halves = [0.0; NEIGHBOURS];
    for k in 0..NEIGHBOURS {
        if inside[k] {
            let big_d = d[k] * d[k] + ETA * ETA * s2 + TAU;
            let root = big_d.sqrt();
            c[k] = d[k] / root;
            d_three_halves[k] = big_d * root;
        }
    }
    Window { d, c, inside, s2, d_three_halves }
}

/// The census loss between a target and a rendered grey image (weights w per pixel), and its
/// gradient with respect to the rendered image, on whichever backend.
pub fn loss(backend: &Backend, target: &[f32], rendered: &[f32], weights: &[f32], width: usize, height: usize) -> (f32, Vec<f32>) {
    match backend {
        Backend::Cpu => loss_cpu(target, rendered, weights, width, height),
        Backend::Gpu { .. } => loss_device(backend, target, rendered, weights, width, height),
    }
}

/// Native twin of `loss`: rows in parallel.
pub fn loss_cpu(target: &[f32], rendered: &[f32], weights: &[f32], width: usize, height: usize) -> (f32, Vec<f32>) {
    assert_eq!(target.len(), width * height, "census: target size");
    assert_eq!(rendered.len(), width * height, "census: rendered size");
    assert_eq!(weights.len(), width * height, "census: weight size");
    let total: f32 = weights.iter().sum();
    if total <= 0.0 {
        return (0.0, vec![0.0; width * height]);
    }
    // Per row: the loss share and dL/dd for every (pixel, neighbour).
    let rows = crate::parallel::map(height, |y| {
        let mut value = 0.0f64;
        let mut grad_d = vec![0.0f32; width * NEIGHBOURS];
        for x in 0..width {
            let w = weights[y * width + x];
            if w == 0.0 {
                continue;
            }
            let ct = window(target, width, height, x, y).c;
            let Window { d, c: cr, inside, s2, d_three_halves } = window(rendered, width, height, x, y);
            let n = inside.iter().filter(|&&i| i).count() as f32;
            let mut g_c = [0.0f32; NEIGHBOURS];
            let mut h = 0.0;
            for k in 0..NEIGHBOURS {
                let delta = cr[k] - ct[k];
                h += delta * delta / (DELTA + delta * delta);
                g_c[k] = w / total * 2.0 * DELTA * delta / (DELTA + delta * delta).powi(2);
            }
            value += (w * h) as f64;
            // c_k = d_k D_k^{-1/2}, D_k = d_k² + η² s² + τ, s² = Σ d² / n (D^{3/2} from the
            // forward pass, not recomputed).
            let mut through_s2 = 0.0;
            for k in 0..NEIGHBOURS {
                if inside[k] {
                    through_s2 += g_c[k] * (-0.5 * d[k] * ETA * ETA) / d_three_halves[k];
                }
            }
            for k in 0..NEIGHBOURS {
                if inside[k] {
                    grad_d[x * NEIGHBOURS + k] = g_c[k] * (ETA * ETA * s2 + TAU) / d_three_halves[k] + through_s2 * 2.0 * d[k] / n;
                }
            }
        }
        (value, grad_d)
    });
    let value = rows.iter().map(|r| r.0).sum::<f64>() / total as f64;
    // d_k = I(p + o_k) − I(p): gather both ends per pixel q.
    let grad_rows = crate::parallel::map(height, |y| {
        let mut g = vec![0.0f32; width];
        for (x, gx) in g.iter_mut().enumerate() {
            let own: f32 = rows[y].1[x * NEIGHBOURS..(x + 1) * NEIGHBOURS].iter().sum();
            *gx -= own;
            for (k, (dx, dy)) in offsets().enumerate() {
                let (px, py) = (x as i64 - dx, y as i64 - dy);
                if px >= 0 && py >= 0 && px < width as i64 && py < height as i64 {
                    *gx += rows[py as usize].1[px as usize * NEIGHBOURS + k];
                }
            }
        }
        g
    });
    (value as f32, grad_rows.concat())
}

/// Whether neighbour k (0..49 over the 7 × 7 window, 24 the centre) of pixel (x, y) is inside.
#[cube]
fn neighbour_inside(x: i32, y: i32, k: u32, width: usize, height: usize) -> bool {
    let qx = x + (k % 7u32) as i32 - 3i32;
    let qy = y + (k / 7u32) as i32 - 3i32;
    qx >= 0i32 && qy >= 0i32 && qx < width as i32 && qy < height as i32
}

/// I(neighbour k) − I(x, y), for a neighbour inside the image.
#[cube]
fn neighbour_difference(grey: &[f32], x: i32, y: i32, k: u32, width: usize) -> f32 {
    let qx = x + (k % 7u32) as i32 - 3i32;
    let qy = y + (k / 7u32) as i32 - 3i32;
    grey[qy as usize * width + qx as usize] - grey[y as usize * width + x as usize]
}

/// s² of the window: the mean squared difference over the neighbours inside.
#[cube]
fn window_s2(grey: &[f32], x: i32, y: i32, width: usize, height: usize) -> f32 {
    let mut sum = 0.0f32;
    let mut count = 0.0f32;
    for k in 0..49u32 {
        if k != 24u32 && neighbour_inside(x, y, k, width, height) {
            let d = neighbour_difference(grey, x, y, k, width);
            sum += d * d;
            count += 1.0f32;
        }
    }
    sum / count
}

/// Δc of neighbour k: the rendered image's soft census value (from its difference dr and
/// D = dr² + η² s² + τ) minus the target's.
#[cube]
fn census_delta(target: &[f32], x: i32, y: i32, k: u32, width: usize, s2t: f32, dr: f32, big: f32) -> f32 {
    let dt = neighbour_difference(target, x, y, k, width);
    dr / f32::sqrt(big) - dt / f32::sqrt(dt * dt + 0.01f32 * s2t + 1e-10f32)
}

/// d(w Δc² / (δ + Δc²)) / dΔc with the weight already divided by Σ w.
#[cube]
fn hamming_gradient(weight: f32, delta: f32) -> f32 {
    let den = 0.1f32 + delta * delta;
    weight * 0.2f32 * delta / (den * den)
}

/// Pass 1, one thread per pixel: w·H and dL/dd for the 48 neighbours (η² = 0.01, τ = 1e-10,
/// δ = 0.1 as in the native twin).
#[cube(launch_unchecked)]
fn census_window_kernel(target: &[f32], rendered: &[f32], weights: &[f32], value: &mut [f32], grad_d: &mut [f32], width: usize, height: usize, total: f32) {
    let p = ABSOLUTE_POS;
    if p < value.len() {
        let w = weights[p];
        let x = (p % width) as i32;
        let y = (p / width) as i32;
        let s2t = window_s2(target, x, y, width, height);
        let s2r = window_s2(rendered, x, y, width, height);
        let mut count = 0.0f32;
        let mut h = 0.0f32;
        let mut through = 0.0f32;
        for k in 0..49u32 {
            if k != 24u32 && neighbour_inside(x, y, k, width, height) {
                let dr = neighbour_difference(rendered, x, y, k, width);
                let big = dr * dr + 0.01f32 * s2r + 1e-10f32;
                let delta = census_delta(target, x, y, k, width, s2t, dr, big);
                h += delta * delta / (0.1f32 + delta * delta);
                let gc = hamming_gradient(w / total, delta);
                through += gc * (-0.005f32 * dr) / (big * f32::sqrt(big));
                count += 1.0f32;
            }
        }
        value[p] = w * h;
        for k in 0..49u32 {
            if k != 24u32 {
                let slot = p * 48 + (k - k / 25u32) as usize;
                let mut g = 0.0f32;
                if neighbour_inside(x, y, k, width, height) {
                    let dr = neighbour_difference(rendered, x, y, k, width);
                    let big = dr * dr + 0.01f32 * s2r + 1e-10f32;
                    let gc = hamming_gradient(w / total, census_delta(target, x, y, k, width, s2t, dr, big));
                    g = gc * (0.01f32 * s2r + 1e-10f32) / (big * f32::sqrt(big)) + through * 2.0f32 * dr / count;
                }
                grad_d[slot] = g;
            }
        }
    }
}

/// Pass 2, one thread per pixel q: −Σ_k dL/dd(q, k) + Σ_k dL/dd(q − o_k, k).
#[cube(launch_unchecked)]
fn census_gather_kernel(grad_d: &[f32], out: &mut [f32], width: usize, height: usize) {
    let q = ABSOLUTE_POS;
    if q < out.len() {
        let x = (q % width) as i32;
        let y = (q / width) as i32;
        let mut g = 0.0f32;
        for k in 0..48u32 {
            g -= grad_d[q * 48 + k as usize];
        }
        for k in 0..49u32 {
            if k != 24u32 {
                let px = x - ((k % 7u32) as i32 - 3i32);
                let py = y - ((k / 7u32) as i32 - 3i32);
                if px >= 0i32 && py >= 0i32 && px < width as i32 && py < height as i32 {
                    g += grad_d[(py as usize * width + px as usize) * 48 + (k - k / 25u32) as usize];
                }
            }
        }
        out[q] = g;
    }
}

fn loss_device(backend: &Backend, target: &[f32], rendered: &[f32], weights: &[f32], width: usize, height: usize) -> (f32, Vec<f32>) {
    let Backend::Gpu { client, .. } = backend else { unreachable!("device launch on the CPU backend") };
    let pixels = width * height;
    assert_eq!(target.len(), pixels, "census: target size");
    assert_eq!(rendered.len(), pixels, "census: rendered size");
    assert_eq!(weights.len(), pixels, "census: weight size");
    let total: f32 = weights.iter().sum();
    if total <= 0.0 {
        return (0.0, vec![0.0; pixels]);
    }
    let value = client.empty(pixels * 4);
    let grad_d = client.empty(pixels * NEIGHBOURS * 4);
    let out = client.empty(pixels * 4);
    let (count, dim) = grid_1d(pixels);
    #[allow(unsafe_code)]
    // SAFETY: every neighbour index is checked against the image before it is read; the slots
    // of `grad_d` are 48 per pixel, as allocated.
    unsafe {
        census_window_kernel::launch_unchecked(
            client,
            count.clone(),
            dim,
            BufferArg::from_raw_parts(upload(client, target), pixels),
            BufferArg::from_raw_parts(upload(client, rendered), pixels),
            BufferArg::from_raw_parts(upload(client, weights), pixels),
            BufferArg::from_raw_parts(value.clone(), pixels),
            BufferArg::from_raw_parts(grad_d.clone(), pixels * NEIGHBOURS),
            width,
            height,
            total,
        );
        census_gather_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(grad_d, pixels * NEIGHBOURS),
            BufferArg::from_raw_parts(out.clone(), pixels),
            width,
            height,
        );
    }
    let values = download(client, value);
    let sum: f64 = values.iter().map(|v| *v as f64).sum();
    ((sum / total as f64) as f32, download(client, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{random, worst_against_central_differences};

    /// A smooth textured test image in [0.1, 0.9].
    pub(crate) fn texture(width: usize, height: usize, seed: u64) -> Vec<f32> {
        let r = random(12, seed);
        (0..height)
            .flat_map(|y| (0..width).map(move |x| (x as f32, y as f32)))
            .map(|(x, y)| 0.5 + 0.2 * (0.31 * x * (1.0 + 0.3 * r[0]) + 0.17 * y + r[1]).sin() + 0.15 * (0.23 * y * (1.0 + 0.3 * r[2]) - 0.11 * x + r[3]).cos() + 0.05 * (0.9 * x + 0.7 * y).sin())
            .collect()
    }

    #[test]
    fn census_ignores_gain_and_offset_but_l1_does_not() {
        let (w, h) = (40, 32);
        let a = texture(w, h, 1);
        let b: Vec<f32> = a.iter().map(|v| 0.6 * v + 0.25).collect();
        let weights = vec![1.0; w * h];
        let (census, _) = loss_cpu(&a, &b, &weights, w, h);
        let l1: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / (w * h) as f32;
        assert!(census < 1e-9, "census loss under a·I + b: {census}");
        assert!(l1 > 1e-2, "L1 under a·I + b: {l1}");
        // A shifted image is not the same picture: the census sees it.
        let shifted: Vec<f32> = (0..w * h).map(|i| a[(i + 1) % (w * h)]).collect();
        assert!(loss_cpu(&a, &shifted, &weights, w, h).0 > 1.0);
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let (w, h) = (12, 10);
        let target = texture(w, h, 2);
        let rendered: Vec<f32> = texture(w, h, 3).iter().zip(&target).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
        let weights: Vec<f32> = random(w * h, 4).iter().map(|r| 1.0 + r.abs() * 4.0).collect();
        let (_, grad) = loss_cpu(&target, &rendered, &weights, w, h);
        // Small steps: the soft census bends within η·s ≈ 0.01 of a difference.
        let worst = worst_against_central_differences(|r| loss_cpu(&target, r, &weights, w, h).0, &rendered, &grad, 7, 2e-4, 1e-2);
        assert!(worst < 2e-2, "worst relative error {worst}");
    }

    #[test]
    fn kernel_matches_its_native_twin() {
        let backend = crate::testing::wgpu_backend();
        let (w, h) = (37, 29);
        let target = texture(w, h, 5);
        let rendered: Vec<f32> = texture(w, h, 6).iter().zip(&target).map(|(a, b)| 0.4 * a + 0.6 * b).collect();
        let weights: Vec<f32> = random(w * h, 7).iter().map(|r| if *r > -0.3 { 1.0 + 4.0 * r.abs() } else { 0.0 }).collect();
        let (v_cpu, g_cpu) = loss_cpu(&target, &rendered, &weights, w, h);
        let (v_gpu, g_gpu) = loss(&backend, &target, &rendered, &weights, w, h);
        assert!((v_cpu - v_gpu).abs() < 1e-4 * v_cpu.abs().max(1.0), "{v_cpu} vs {v_gpu}");
        let scale = g_cpu.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        crate::testing::assert_close(&g_gpu.iter().map(|g| g / scale).collect::<Vec<_>>(), &g_cpu.iter().map(|g| g / scale).collect::<Vec<_>>(), 1e-4);
    }
}
