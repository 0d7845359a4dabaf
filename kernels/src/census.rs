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
//! Native only: a per-pixel 48-neighbour stencil on one image per frame pair.

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
fn window(grey: &[f32], width: usize, height: usize, x: usize, y: usize) -> ([f32; NEIGHBOURS], [f32; NEIGHBOURS], [bool; NEIGHBOURS], f32) {
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
    for k in 0..NEIGHBOURS {
        if inside[k] {
            c[k] = d[k] / (d[k] * d[k] + ETA * ETA * s2 + TAU).sqrt();
        }
    }
    (d, c, inside, s2)
}

/// The census loss between a target and a rendered grey image (weights w per pixel), and its
/// gradient with respect to the rendered image.
pub fn loss(target: &[f32], rendered: &[f32], weights: &[f32], width: usize, height: usize) -> (f32, Vec<f32>) {
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
            let (_, ct, _, _) = window(target, width, height, x, y);
            let (d, cr, inside, s2) = window(rendered, width, height, x, y);
            let n = inside.iter().filter(|&&i| i).count() as f32;
            let mut g_c = [0.0f32; NEIGHBOURS];
            let mut h = 0.0;
            for k in 0..NEIGHBOURS {
                let delta = cr[k] - ct[k];
                h += delta * delta / (DELTA + delta * delta);
                g_c[k] = w / total * 2.0 * DELTA * delta / (DELTA + delta * delta).powi(2);
            }
            value += (w * h) as f64;
            // c_k = d_k D_k^{-1/2}, D_k = d_k² + η² s² + τ, s² = Σ d² / n.
            let mut through_s2 = 0.0;
            for k in 0..NEIGHBOURS {
                if inside[k] {
                    let big_d = d[k] * d[k] + ETA * ETA * s2 + TAU;
                    through_s2 += g_c[k] * (-0.5 * d[k] * ETA * ETA) / (big_d * big_d.sqrt());
                }
            }
            for k in 0..NEIGHBOURS {
                if inside[k] {
                    let big_d = d[k] * d[k] + ETA * ETA * s2 + TAU;
                    grad_d[x * NEIGHBOURS + k] = g_c[k] * (ETA * ETA * s2 + TAU) / (big_d * big_d.sqrt()) + through_s2 * 2.0 * d[k] / n;
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
        let (census, _) = loss(&a, &b, &weights, w, h);
        let l1: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / (w * h) as f32;
        assert!(census < 1e-9, "census loss under a·I + b: {census}");
        assert!(l1 > 1e-2, "L1 under a·I + b: {l1}");
        // A shifted image is not the same picture: the census sees it.
        let shifted: Vec<f32> = (0..w * h).map(|i| a[(i + 1) % (w * h)]).collect();
        assert!(loss(&a, &shifted, &weights, w, h).0 > 1.0);
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let (w, h) = (12, 10);
        let target = texture(w, h, 2);
        let rendered: Vec<f32> = texture(w, h, 3).iter().zip(&target).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
        let weights: Vec<f32> = random(w * h, 4).iter().map(|r| 1.0 + r.abs() * 4.0).collect();
        let (_, grad) = loss(&target, &rendered, &weights, w, h);
        // Small steps: the soft census bends within η·s ≈ 0.01 of a difference.
        let worst = worst_against_central_differences(|r| loss(&target, r, &weights, w, h).0, &rendered, &grad, 7, 2e-4, 1e-2);
        assert!(worst < 2e-2, "worst relative error {worst}");
    }
}
