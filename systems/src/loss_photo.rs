//! loss_photo: MVF-Net's photometric loss (Eq. 7), L_photo = Σ_u ‖I_B[u] − I_{A→B}[u]‖², the
//! squared RGB difference between a view and another view's texture drawn at its pose, summed
//! over the face's pixels (in pixels of a 224-pixel image, MVF-Net's input, whatever the image
//! size) and averaged over the pairs; weight λ_6 = 10.
//!
//! The paper sums over the union of the observed face mask and the render's, so a render that
//! misses part of the face pays for it. Here the sum runs over the render's mask M²ᵈ: the extra
//! pixels of the union would add the observed face's own energy there, whose gradient is zero
//! with a rasterizer that is not differentiated at the silhouette (neither is Genova et al.'s,
//! the one MVF-Net uses), so the fit would be the same.

use crate::swap_pairs::system;
use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use faceforge_components::{Grad, Image, LossTerms, RenderedSwaps};

/// λ_6 of MVF-Net.
pub const WEIGHT: f32 = 10.0;

/// MVF-Net's input size: sums are taken as if the image were this size.
pub const PAPER_SIZE: f32 = 224.0;

/// Σ over masked pixels of the squared RGB difference, scaled to a 224 × 224 image, and its
/// gradient with respect to the render.
pub fn squared_difference(rendered: &[f32], target: &[f32], mask: &[f32], width: usize, height: usize) -> (f32, Vec<f32>) {
    let to_paper = PAPER_SIZE * PAPER_SIZE / (width * height) as f32;
    let mut value = 0.0f64;
    let grad = rendered
        .iter()
        .zip(target)
        .enumerate()
        .map(|(i, (r, t))| {
            let m = mask[i / 3] * to_paper;
            value += (m * (r - t) * (r - t)) as f64;
            2.0 * m * (r - t)
        })
        .collect();
    (value as f32, grad)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_photo",
        stage: Stage::Loss,
        reads: data![RenderedSwaps, Image],
        writes: data![Grad<RenderedSwaps>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "summed squared RGB difference of I_B and I_{A→B} over the face (MVF-Net Eq. 7)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok(system("photo", WEIGHT, |pair| squared_difference(&pair.rendered, pair.target, pair.mask, pair.width, pair.height)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::squared_difference;

    #[test]
    fn by_hand_and_scaled_to_the_papers_image_size() {
        // A 112 × 112 image counts each pixel 4 times (224² / 112²); one face pixel off by
        // (0.1, 0.2, 0) and one pixel outside the face off by 1.
        let (w, h) = (112, 112);
        let target = vec![0.5; 3 * w * h];
        let mut rendered = target.clone();
        rendered[0] = 0.6;
        rendered[1] = 0.7;
        rendered[3] = 1.5;
        let mut mask = vec![0.0; w * h];
        mask[0] = 1.0;
        let (value, grad) = squared_difference(&rendered, &target, &mask, w, h);
        assert!((value - 4.0 * 0.05).abs() < 1e-5, "{value}");
        assert!((grad[0] - 0.8).abs() < 1e-5 && (grad[1] - 1.6).abs() < 1e-5 && grad[3] == 0.0);
    }
}
