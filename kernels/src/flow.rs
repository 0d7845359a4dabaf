//! PGN's flow consistency loss (Eq. 10): the magnitude of the optical flow between the target
//! frame and the rendered swap, and its adjoint to the rendered image.
//!
//! PGN uses a pretrained DDFlow network, which cannot be had here. The substitute is a classical
//! estimator: both images divided by their local mean (so a change of lighting, a smooth gain,
//! is not read as motion), then coarse-to-fine (image pyramid) inverse-compositional
//! Lucas–Kanade with a pyramid-shaped window and a prior λ|w|² that holds undecided windows at
//! zero flow, a few iterations per level. It finds w with R(x + w(x)) ≈ I(x) for the target I and
//! rendered image R.
//!
//! Gradients pass through the last update at full resolution, w = w₀ + Δ,
//! Δ = −(A + λ)⁻¹ (window(∇I (R(x + w₀) − I)) + λ w₀), with w₀ (every earlier iteration and level)
//! held fixed; A and ∇I come from the target, so Δ is linear in the warped rendered image and its
//! adjoint is exact: dL/dR_w(q) = −∇I(q) · window((A + λ)⁻¹ dL/dw)(q), then back through the
//! bilinear warp and the lighting normalisation.
//!
//! Native only (separable box sums and per-pixel 2 × 2 solves).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSettings {
    /// Pyramid levels (each halves the size; stops before an image side drops under 16 px).
    pub levels: usize,
    /// Lucas–Kanade iterations per level.
    pub iterations: usize,
    /// Radius of the window's two box passes (2: a 9 × 9 pyramid-shaped window).
    pub radius: usize,
    /// Weight λ of the prior |w|² that holds the flow at zero where the window cannot decide, in
    /// the units of a window sum of squared gradients of the normalised image (the window weighs
    /// 625 in all): 0.05 yields to windows whose gradients exceed about 1 % per pixel.
    pub regularisation: f32,
}

impl Default for FlowSettings {
    fn default() -> Self {
        Self { levels: 3, iterations: 4, radius: 2, regularisation: 0.05 }
    }
}

/// Flow magnitude smoothing: |w| = √(w² + ε) keeps the loss differentiable at zero flow.
const EPS: f32 = 1e-4;

#[derive(Clone, Debug)]
struct Level {
    width: usize,
    height: usize,
    target: Vec<f32>,
    rendered: Vec<f32>,
}

fn downsample(image: &[f32], width: usize, height: usize) -> (Vec<f32>, usize, usize) {
    let (w, h) = (width / 2, height / 2);
    let at = |x: usize, y: usize| image[y.min(height - 1) * width + x.min(width - 1)];
    let out = (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| 0.25 * (at(2 * x, 2 * y) + at(2 * x + 1, 2 * y) + at(2 * x, 2 * y + 1) + at(2 * x + 1, 2 * y + 1))).collect();
    (out, w, h)
}

/// Bilinear taps at (x, y) with edges clamped: four (index, weight) pairs.
fn taps(width: usize, height: usize, x: f32, y: f32) -> [(usize, f32); 4] {
    let x = x.clamp(0.0, (width - 1) as f32);
    let y = y.clamp(0.0, (height - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    [
        (y0 * width + x0, (1.0 - fx) * (1.0 - fy)),
        (y0 * width + x1, fx * (1.0 - fy)),
        (y1 * width + x0, (1.0 - fx) * fy),
        (y1 * width + x1, fx * fy),
    ]
}

fn sample(image: &[f32], width: usize, height: usize, x: f32, y: f32) -> f32 {
    taps(width, height, x, y).iter().map(|&(i, w)| image[i] * w).sum()
}

/// The window sum of the structure tensor: two box passes, a pyramid-shaped window. One box would
/// do for a single solve, but its frequency response dips below zero, which makes the iterated
/// dense updates diverge on fast-varying flow; the double pass's response stays in [0, 1].
/// Symmetric, so it is its own adjoint.
fn window_sum(image: &[f32], width: usize, height: usize, r: usize) -> Vec<f32> {
    box_sum(&box_sum(image, width, height, r), width, height, r)
}

/// Sum over the (2r + 1)² box inside the image, for each pixel: separable running sums (f64, so
/// the order of the additions does not matter at f32 precision), O(1) per pixel whatever r. Both
/// passes run along rows (the vertical one keeps a prefix per column), plain loops the compiler
/// vectorises: written with a closure per element and a column-wise vertical pass it took 30 %
/// of a quickstart fit.
fn box_sum(image: &[f32], width: usize, height: usize, r: usize) -> Vec<f32> {
    // Along each row: prefix sums, then window = prefix[hi] − prefix[lo].
    let mut rows = vec![0.0f64; width * height];
    let mut prefix = vec![0.0f64; width + 1];
    for (row_in, row_out) in image.chunks_exact(width).zip(rows.chunks_exact_mut(width)) {
        for (x, v) in row_in.iter().enumerate() {
            prefix[x + 1] = prefix[x] + *v as f64;
        }
        for (x, o) in row_out.iter_mut().enumerate() {
            *o = prefix[(x + r + 1).min(width)] - prefix[x.saturating_sub(r)];
        }
    }
    // Down the columns, one row of per-column prefixes at a time.
    let mut columns = vec![0.0f64; (height + 1) * width];
    for y in 0..height {
        let (done, next) = columns.split_at_mut((y + 1) * width);
        let previous = &done[y * width..];
        for ((n, p), v) in next[..width].iter_mut().zip(previous).zip(&rows[y * width..(y + 1) * width]) {
            *n = p + v;
        }
    }
    let mut out = vec![0.0f32; width * height];
    for (y, row_out) in out.chunks_exact_mut(width).enumerate() {
        let (hi, lo) = ((y + r + 1).min(height) * width, y.saturating_sub(r) * width);
        for ((o, a), b) in row_out.iter_mut().zip(&columns[hi..hi + width]).zip(&columns[lo..lo + width]) {
            *o = (a - b) as f32;
        }
    }
    out
}

/// Central-difference gradient (one-sided at the edges).
fn gradient(image: &[f32], width: usize, height: usize) -> (Vec<f32>, Vec<f32>) {
    let at = |x: usize, y: usize| image[y * width + x];
    let mut gx = vec![0.0; width * height];
    let mut gy = vec![0.0; width * height];
    for y in 0..height {
        for x in 0..width {
            let (l, r) = (x.saturating_sub(1), (x + 1).min(width - 1));
            let (u, d) = (y.saturating_sub(1), (y + 1).min(height - 1));
            gx[y * width + x] = (at(r, y) - at(l, y)) / (r - l).max(1) as f32;
            gy[y * width + x] = (at(x, d) - at(x, u)) / (d - u).max(1) as f32;
        }
    }
    (gx, gy)
}

/// The target's structure at one level: ∇I and the inverse of A = box(∇I ∇Iᵀ) + λ I per pixel.
struct Structure {
    gx: Vec<f32>,
    gy: Vec<f32>,
    /// [a, b, c] of the symmetric (A + λ)⁻¹ = [[a, b], [b, c]], A = window(∇I ∇Iᵀ).
    inverse: Vec<[f32; 3]>,
}

impl Structure {
    fn new(level: &Level, s: &FlowSettings) -> Self {
        let (w, h) = (level.width, level.height);
        let (gx, gy) = gradient(&level.target, w, h);
        let xx = window_sum(&gx.iter().map(|g| g * g).collect::<Vec<_>>(), w, h, s.radius);
        let xy = window_sum(&gx.iter().zip(&gy).map(|(a, b)| a * b).collect::<Vec<_>>(), w, h, s.radius);
        let yy = window_sum(&gy.iter().map(|g| g * g).collect::<Vec<_>>(), w, h, s.radius);
        let inverse = (0..w * h)
            .map(|p| {
                let (a, b, c) = (xx[p] + s.regularisation, xy[p], yy[p] + s.regularisation);
                let det = a * c - b * b;
                [c / det, -b / det, a / det]
            })
            .collect();
        Self { gx, gy, inverse }
    }

    /// One Lucas–Kanade update at flow `w` (2 per pixel): Δ = −(A + λ)⁻¹ (window(∇I e) + λ w),
    /// e = R(x + w) − I. The prior λ|w|² is on the whole flow, not the step, so it holds the flow
    /// at zero where a window cannot decide (no texture, or the aperture problem).
    fn update(&self, level: &Level, flow: &[f32], s: &FlowSettings) -> Vec<f32> {
        let (w, h) = (level.width, level.height);
        let error: Vec<f32> = (0..w * h).map(|p| sample(&level.rendered, w, h, (p % w) as f32 + flow[2 * p], (p / w) as f32 + flow[2 * p + 1]) - level.target[p]).collect();
        let bx = window_sum(&self.gx.iter().zip(&error).map(|(g, e)| g * e).collect::<Vec<_>>(), w, h, s.radius);
        let by = window_sum(&self.gy.iter().zip(&error).map(|(g, e)| g * e).collect::<Vec<_>>(), w, h, s.radius);
        (0..w * h)
            .flat_map(|p| {
                let [a, b, c] = self.inverse[p];
                let (bx, by) = (bx[p] + s.regularisation * flow[2 * p], by[p] + s.regularisation * flow[2 * p + 1]);
                [-(a * bx + b * by), -(b * bx + c * by)]
            })
            .collect()
    }
}

/// window(1): how many pixels (weighted) each pixel's window holds inside the image — what
/// `normalise` and its adjoint divide by; computed once per loss, not once per use.
fn window_count(width: usize, height: usize, radius: usize) -> Vec<f32> {
    window_sum(&vec![1.0; width * height], width, height, radius)
}

/// Lighting removed, as far as it is a smooth gain: the image divided by its local mean
/// (a (4·radius+1)-pixel pyramid window, `ones` = `window_count`), and that mean.
fn normalise(image: &[f32], ones: &[f32], width: usize, height: usize, radius: usize) -> (Vec<f32>, Vec<f32>) {
    let mean: Vec<f32> = window_sum(image, width, height, radius).iter().zip(ones).map(|(s, n)| s / n + MEAN_FLOOR).collect();
    (image.iter().zip(&mean).map(|(v, m)| v / m).collect(), mean)
}

/// The adjoint of `normalise` for the image: n = I / B, B = window(I) / window(1) + floor, so
/// dI = g / B − window(g I / B² / window(1)).
fn normalise_backward(image: &[f32], ones: &[f32], mean: &[f32], grad: &[f32], width: usize, height: usize, radius: usize) -> Vec<f32> {
    let through_mean: Vec<f32> = (0..width * height).map(|p| grad[p] * image[p] / (mean[p] * mean[p]) / ones[p]).collect();
    let spread = window_sum(&through_mean, width, height, radius);
    (0..width * height).map(|p| grad[p] / mean[p] - spread[p]).collect()
}

/// Keeps the local mean away from zero in black regions.
const MEAN_FLOOR: f32 = 0.02;
/// Radius of the two box passes of the lighting normalisation's local mean.
const LIGHTING_RADIUS: usize = 4;

fn pyramid(target: &[f32], rendered: &[f32], width: usize, height: usize, levels: usize) -> Vec<Level> {
    let mut out = vec![Level { width, height, target: target.to_vec(), rendered: rendered.to_vec() }];
    while out.len() < levels.max(1) {
        let last = out.last().expect("one level");
        if last.width / 2 < 16 || last.height / 2 < 16 {
            break;
        }
        let (t, w, h) = downsample(&last.target, last.width, last.height);
        let (r, _, _) = downsample(&last.rendered, last.width, last.height);
        out.push(Level { width: w, height: h, target: t, rendered: r });
    }
    out
}

/// The flow at full resolution before the last update, and the last update's structure.
fn estimate_to_last(target: &[f32], rendered: &[f32], width: usize, height: usize, s: &FlowSettings) -> (Vec<f32>, Structure, Level) {
    let levels = pyramid(target, rendered, width, height, s.levels);
    let mut flow: Vec<f32> = Vec::new();
    let (mut fw, mut fh) = (0, 0);
    for (index, level) in levels.iter().enumerate().rev() {
        // Up-sample the coarser flow (twice the displacement at twice the size).
        flow = if flow.is_empty() {
            vec![0.0; 2 * level.width * level.height]
        } else {
            let (cx, cy): (Vec<f32>, Vec<f32>) = flow.chunks(2).map(|f| (f[0], f[1])).unzip();
            (0..level.width * level.height)
                .flat_map(|p| {
                    let (x, y) = (((p % level.width) as f32 + 0.5) / 2.0 - 0.5, ((p / level.width) as f32 + 0.5) / 2.0 - 0.5);
                    [2.0 * sample(&cx, fw, fh, x, y), 2.0 * sample(&cy, fw, fh, x, y)]
                })
                .collect()
        };
        (fw, fh) = (level.width, level.height);
        let structure = Structure::new(level, s);
        let last_level = index == 0;
        let steps = if last_level { s.iterations.max(1) - 1 } else { s.iterations };
        for _ in 0..steps {
            let delta = structure.update(level, &flow, s);
            // At most one pixel per update: where brightness constancy fails (the lighting
            // differs between frames), a weakly textured window would otherwise run away.
            for (f, d) in flow.chunks_mut(2).zip(delta.chunks(2)) {
                let step = (d[0] * d[0] + d[1] * d[1]).sqrt().max(1.0);
                f[0] += d[0] / step;
                f[1] += d[1] / step;
            }
        }
        if last_level {
            return (flow, structure, level.clone());
        }
    }
    unreachable!("the pyramid has a full-resolution level")
}

/// The flow w (2 per pixel) with R(x + w) ≈ I(x).
pub fn estimate(target: &[f32], rendered: &[f32], width: usize, height: usize, s: &FlowSettings) -> Vec<f32> {
    let ones = window_count(width, height, LIGHTING_RADIUS);
    let (target, _) = normalise(target, &ones, width, height, LIGHTING_RADIUS);
    let (rendered, _) = normalise(rendered, &ones, width, height, LIGHTING_RADIUS);
    let (mut flow, structure, level) = estimate_to_last(&target, &rendered, width, height, s);
    let delta = structure.update(&level, &flow, s);
    flow.iter_mut().zip(&delta).for_each(|(f, d)| *f += d);
    flow
}

/// Σ |w| ω / Σ ω over pixels with weights ω, and its gradient with respect to the rendered image
/// (through the last update).
pub fn magnitude_loss(target: &[f32], rendered: &[f32], weights: &[f32], width: usize, height: usize, s: &FlowSettings) -> (f32, Vec<f32>) {
    assert_eq!(target.len(), width * height, "flow: target size");
    assert_eq!(rendered.len(), width * height, "flow: rendered size");
    assert_eq!(weights.len(), width * height, "flow: weight size");
    let ones = window_count(width, height, LIGHTING_RADIUS);
    let (target_n, _) = normalise(target, &ones, width, height, LIGHTING_RADIUS);
    let (rendered_n, mean) = normalise(rendered, &ones, width, height, LIGHTING_RADIUS);
    let (flow0, structure, level) = estimate_to_last(&target_n, &rendered_n, width, height, s);
    let (value, grad) = last_step_loss(&structure, &level, &flow0, weights, s);
    (value, normalise_backward(rendered, &ones, &mean, &grad, width, height, LIGHTING_RADIUS))
}

fn last_step_loss(structure: &Structure, level: &Level, flow0: &[f32], weights: &[f32], s: &FlowSettings) -> (f32, Vec<f32>) {
    let (w, h) = (level.width, level.height);
    let total: f32 = weights.iter().sum();
    if total <= 0.0 {
        return (0.0, vec![0.0; w * h]);
    }
    let delta = structure.update(level, flow0, s);
    let mut value = 0.0f64;
    // u = (A + λ)⁻¹ dL/dw per pixel (symmetric).
    let mut ux = vec![0.0; w * h];
    let mut uy = vec![0.0; w * h];
    for p in 0..w * h {
        let (fx, fy) = (flow0[2 * p] + delta[2 * p], flow0[2 * p + 1] + delta[2 * p + 1]);
        let magnitude = (fx * fx + fy * fy + EPS).sqrt();
        value += (weights[p] * magnitude) as f64;
        let (gx, gy) = (weights[p] / total * fx / magnitude, weights[p] / total * fy / magnitude);
        let [a, b, c] = structure.inverse[p];
        ux[p] = a * gx + b * gy;
        uy[p] = b * gx + c * gy;
    }
    let (bx, by) = (window_sum(&ux, w, h, s.radius), window_sum(&uy, w, h, s.radius));
    let mut grad = vec![0.0; w * h];
    for q in 0..w * h {
        let g_warped = -(structure.gx[q] * bx[q] + structure.gy[q] * by[q]);
        for (i, t) in taps(w, h, (q % w) as f32 + flow0[2 * q], (q / w) as f32 + flow0[2 * q + 1]) {
            grad[i] += g_warped * t;
        }
    }
    ((value / total as f64) as f32, grad)
}

#[cfg(test)]
mod tests {
    #[test]
    fn box_sum_is_the_sum_over_the_clipped_window() {
        let (w, h, r) = (13, 7, 3);
        let image: Vec<f32> = (0..w * h).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
        let fast = super::box_sum(&image, w, h, r);
        for y in 0..h {
            for x in 0..w {
                let direct: f32 = (y.saturating_sub(r)..(y + r + 1).min(h)).flat_map(|q| (x.saturating_sub(r)..(x + r + 1).min(w)).map(move |p| (p, q))).map(|(p, q)| image[q * w + p]).sum();
                assert!((fast[y * w + x] - direct).abs() < 1e-5, "({x}, {y}): {} vs {direct}", fast[y * w + x]);
            }
        }
    }

    use super::*;

    /// A smooth analytic texture, so a shifted copy is exact.
    fn texture(x: f32, y: f32) -> f32 {
        // Broad shading plus finer detail (period 7–10 px), like skin albedo and features.
        0.5 + 0.2 * (0.21 * x + 0.13 * y).sin() + 0.15 * (0.17 * y - 0.09 * x + 1.0).cos() + 0.08 * (0.63 * x).sin() * (0.89 * y).cos() + 0.05 * (0.71 * x + 0.45 * y).sin()
    }

    fn image(width: usize, height: usize, shift: (f32, f32)) -> Vec<f32> {
        (0..width * height).map(|p| texture((p % width) as f32 - shift.0, (p / width) as f32 - shift.1)).collect()
    }

    #[test]
    fn recovers_a_subpixel_shift_and_zero_on_identical_images() {
        let (w, h) = (96, 80);
        let target = image(w, h, (0.0, 0.0));
        let shift = (1.5, -0.7);
        let flow = estimate(&target, &image(w, h, shift), w, h, &FlowSettings::default());
        let border = 8;
        let mut sum = 0.0;
        let mut count = 0.0;
        for y in border..h - border {
            for x in border..w - border {
                let p = y * w + x;
                sum += ((flow[2 * p] - shift.0).powi(2) + (flow[2 * p + 1] - shift.1).powi(2)).sqrt();
                count += 1.0;
            }
        }
        let epe = sum / count;
        assert!(epe < 0.1, "end-point error {epe} px");
        // The same shift under a change of lighting (gain and offset varying across the image).
        let relit: Vec<f32> = image(w, h, shift).iter().enumerate().map(|(p, v)| v * (0.8 + 0.002 * (p % w) as f32) + 0.05).collect();
        let flow = estimate(&target, &relit, w, h, &FlowSettings::default());
        let relit_epe = (border..h - border).flat_map(|y| (border..w - border).map(move |x| y * w + x)).map(|p| ((flow[2 * p] - shift.0).powi(2) + (flow[2 * p + 1] - shift.1).powi(2)).sqrt()).sum::<f32>() / count;
        assert!(relit_epe < 0.15, "end-point error under relighting {relit_epe} px");
        let zero = estimate(&target, &target, w, h, &FlowSettings::default());
        assert!(zero.iter().all(|f| f.abs() < 1e-5));
    }

    #[test]
    fn loss_grows_with_the_shift() {
        let (w, h) = (64, 64);
        let target = image(w, h, (0.0, 0.0));
        let weights = vec![1.0; w * h];
        let s = FlowSettings::default();
        let losses: Vec<f32> = [0.0, 0.5, 1.0, 2.0].iter().map(|&d| magnitude_loss(&target, &image(w, h, (d, 0.3 * d)), &weights, w, h, &s).0).collect();
        assert!(losses.windows(2).all(|p| p[1] > p[0]), "{losses:?}");
    }

    #[test]
    fn lighting_normalisation_adjoint_matches_central_differences() {
        let (w, h) = (20, 16);
        let img = image(w, h, (0.3, 0.1));
        let g: Vec<f32> = (0..w * h).map(|p| ((p * 7) % 11) as f32 / 11.0 - 0.5).collect();
        let ones = window_count(w, h, LIGHTING_RADIUS);
        let f = |im: &[f32]| -> f32 { normalise(im, &ones, w, h, LIGHTING_RADIUS).0.iter().zip(&g).map(|(a, b)| a * b).sum() };
        let (_, mean) = normalise(&img, &ones, w, h, LIGHTING_RADIUS);
        let analytic = normalise_backward(&img, &ones, &mean, &g, w, h, LIGHTING_RADIUS);
        for i in (0..w * h).step_by(13) {
            let eps = 1e-2;
            let (mut up, mut down) = (img.clone(), img.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (f(&up) - f(&down)) / (2.0 * eps);
            assert!((numeric - analytic[i]).abs() < 2e-2 * numeric.abs().max(0.1), "pixel {i}: {numeric} vs {}", analytic[i]);
        }
    }

    #[test]
    fn adjoint_of_the_last_update_matches_central_differences() {
        let (w, h) = (24, 20);
        let s = FlowSettings { levels: 1, ..FlowSettings::default() };
        let target = image(w, h, (0.0, 0.0));
        let rendered = image(w, h, (0.8, -0.4));
        let weights: Vec<f32> = (0..w * h).map(|p| 1.0 + (p % 5) as f32).collect();
        let level = |r: &[f32]| Level { width: w, height: h, target: target.clone(), rendered: r.to_vec() };
        let structure = Structure::new(&level(&rendered), &s);
        let flow0: Vec<f32> = (0..w * h).flat_map(|p| [0.3 + 0.01 * (p % 7) as f32, -0.2]).collect();
        let (_, grad) = last_step_loss(&structure, &level(&rendered), &flow0, &weights, &s);
        let f = |r: &[f32]| last_step_loss(&structure, &level(r), &flow0, &weights, &s).0;
        let worst = crate::testing::worst_against_central_differences(f, &rendered, &grad, 11, 1e-2, 1e-3);
        assert!(worst < 2e-2, "worst relative error {worst}");
    }
}
