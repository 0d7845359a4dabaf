//! The fixed feature extractor of PGN's semantic consistency loss (Eq. 11) in fit mode, and the
//! loss's adjoint.
//!
//! PGN's F is its own trained encoder; a fit has no trained network, so F here is a fixed,
//! HOG-like descriptor: per pixel the oriented gradient energies e_k = (n_k · ∇I)² for four
//! orientations (0°, 45°, 90°, 135°), averaged over a grid of cells laid over a box (the face's).
//! It sees where the edges of eyes, nose, mouth and outline lie and how they run, which is what
//! identity, expression and pose change, and not the overall brightness. Being quadratic in the
//! image, it is smooth, and its adjoint is exact. L_s = 1 − ⟨F(I)/‖F(I)‖, F(R)/‖F(R)‖⟩.

/// Cells per side of the grid.
pub const CELLS: usize = 8;
const ORIENTATIONS: [[f32; 2]; 4] = [[1.0, 0.0], [std::f32::consts::FRAC_1_SQRT_2, std::f32::consts::FRAC_1_SQRT_2], [0.0, 1.0], [-std::f32::consts::FRAC_1_SQRT_2, std::f32::consts::FRAC_1_SQRT_2]];

/// A pixel box: [x0, y0, x1, y1), the region the cells tile.
pub type PixelBox = [usize; 4];

/// The cell of pixel (x, y) inside `b`, if any.
fn cell(b: &PixelBox, x: usize, y: usize) -> Option<usize> {
    if x < b[0] || y < b[1] || x >= b[2] || y >= b[3] {
        return None;
    }
    let cx = (x - b[0]) * CELLS / (b[2] - b[0]);
    let cy = (y - b[1]) * CELLS / (b[3] - b[1]);
    Some(cy * CELLS + cx)
}

/// Central differences inside the image (zero on the border rows and columns).
fn gradient(grey: &[f32], width: usize, height: usize, x: usize, y: usize) -> [f32; 2] {
    if x == 0 || y == 0 || x + 1 >= width || y + 1 >= height {
        return [0.0, 0.0];
    }
    let at = |x: usize, y: usize| grey[y * width + x];
    [0.5 * (at(x + 1, y) - at(x - 1, y)), 0.5 * (at(x, y + 1) - at(x, y - 1))]
}

/// F(I): 4 × CELLS² energies (cell-major).
pub fn describe(grey: &[f32], width: usize, height: usize, b: &PixelBox) -> Vec<f32> {
    let mut f = vec![0.0; 4 * CELLS * CELLS];
    let area = ((b[2] - b[0]) * (b[3] - b[1])) as f32 / (CELLS * CELLS) as f32;
    for y in b[1]..b[3] {
        for x in b[0]..b[2] {
            let Some(c) = cell(b, x, y) else { continue };
            let g = gradient(grey, width, height, x, y);
            for (k, n) in ORIENTATIONS.iter().enumerate() {
                let e = n[0] * g[0] + n[1] * g[1];
                f[4 * c + k] += e * e / area;
            }
        }
    }
    f
}

/// 1 − cos(F(target), F(rendered)) and its gradient with respect to the rendered image.
pub fn cosine_loss(target: &[f32], rendered: &[f32], width: usize, height: usize, b: &PixelBox) -> (f32, Vec<f32>) {
    assert_eq!(target.len(), width * height, "features: target size");
    assert_eq!(rendered.len(), width * height, "features: rendered size");
    let (ft, fr) = (describe(target, width, height, b), describe(rendered, width, height, b));
    let norm = |f: &[f32]| f.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(1e-20);
    let (nt, nr) = (norm(&ft), norm(&fr));
    let cos: f64 = ft.iter().zip(&fr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (nt * nr);
    // d(1 − cos)/dF_r = −(F_t/‖F_t‖ − cos F_r/‖F_r‖) / ‖F_r‖.
    let g_f: Vec<f32> = ft.iter().zip(&fr).map(|(t, r)| (-(*t as f64 / nt - cos * *r as f64 / nr) / nr) as f32).collect();
    let area = ((b[2] - b[0]) * (b[3] - b[1])) as f32 / (CELLS * CELLS) as f32;
    let mut grad = vec![0.0; width * height];
    for y in b[1]..b[3] {
        for x in b[0]..b[2] {
            let Some(c) = cell(b, x, y) else { continue };
            let g = gradient(rendered, width, height, x, y);
            if x == 0 || y == 0 || x + 1 >= width || y + 1 >= height {
                continue;
            }
            // dE/dg for the pixel, then through the central differences.
            let mut d = [0.0f32; 2];
            for (k, n) in ORIENTATIONS.iter().enumerate() {
                let e = n[0] * g[0] + n[1] * g[1];
                let s = g_f[4 * c + k] * 2.0 * e / area;
                d[0] += s * n[0];
                d[1] += s * n[1];
            }
            grad[y * width + x + 1] += 0.5 * d[0];
            grad[y * width + x - 1] -= 0.5 * d[0];
            grad[(y + 1) * width + x] += 0.5 * d[1];
            grad[(y - 1) * width + x] -= 0.5 * d[1];
        }
    }
    ((1.0 - cos) as f32, grad)
}

/// The bounding box of a mask's non-zero pixels, grown by `margin` and kept inside the image;
/// None when the mask is empty or the box is smaller than the grid.
pub fn mask_box(mask: &[f32], width: usize, height: usize, margin: usize) -> Option<PixelBox> {
    let mut b = [usize::MAX, usize::MAX, 0, 0];
    for (p, m) in mask.iter().enumerate() {
        if *m > 0.0 {
            let (x, y) = (p % width, p / width);
            b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
        }
    }
    if b[0] == usize::MAX {
        return None;
    }
    let b = [b[0].saturating_sub(margin), b[1].saturating_sub(margin), (b[2] + margin).min(width), (b[3] + margin).min(height)];
    (b[2] - b[0] >= CELLS && b[3] - b[1] >= CELLS).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{random, worst_against_central_differences};

    fn image(width: usize, height: usize, seed: u64) -> Vec<f32> {
        let r = random(4, seed);
        (0..width * height).map(|p| ((p % width) as f32, (p / width) as f32)).map(|(x, y)| 0.5 + 0.3 * (0.4 * x * (1.0 + 0.2 * r[0]) + r[1]).sin() * (0.25 * y + r[2]).cos()).collect()
    }

    #[test]
    fn identical_and_brightened_images_score_zero_and_others_do_not() {
        let (w, h) = (48, 40);
        let a = image(w, h, 1);
        let b = [2, 3, 44, 38];
        assert!(cosine_loss(&a, &a, w, h, &b).0.abs() < 1e-6);
        let brighter: Vec<f32> = a.iter().map(|v| 1.5 * v + 0.1).collect();
        assert!(cosine_loss(&a, &brighter, w, h, &b).0.abs() < 1e-6, "a gain and offset keep the direction of F");
        assert!(cosine_loss(&a, &image(w, h, 2), w, h, &b).0 > 1e-2);
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let (w, h) = (20, 18);
        let (t, r) = (image(w, h, 3), image(w, h, 4));
        let b = [1, 2, 19, 17];
        let (_, grad) = cosine_loss(&t, &r, w, h, &b);
        let worst = worst_against_central_differences(|x| cosine_loss(&t, x, w, h, &b).0, &r, &grad, 5, 1e-3, 1e-3);
        assert!(worst < 2e-2, "worst relative error {worst}");
    }
}
