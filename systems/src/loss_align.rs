//! loss_align: MVF-Net's alignment loss (Eq. 8), L_align = |F(I_B, I_{A→B})| + |F(I_{A→B}, I_B)|,
//! the optical flow between a view and another view's texture drawn at its pose, in both
//! directions: the flow field's magnitudes summed over the face's pixels (the formula's |F| as
//! an L1 norm of the field, and the prose's "sum … at all pixels"; the prose's "squared" is the
//! ambiguity papers.md notes), in pixels of a 224-pixel image as the photometric sum, averaged
//! over the pairs; weight λ_7 = 0.1.
//!
//! F is PWC-Net in the paper (frozen); here the same classical estimator PGN's flow loss uses
//! (`kernels::flow`: lighting-normalised, coarse-to-fine Lucas–Kanade). Its adjoint runs through
//! the warped second image only, so the reverse direction's gradient with respect to the
//! render is taken as the forward direction's: the flow from I_{A→B} to I_B is the forward flow
//! negated and moved by itself, the same magnitudes where both are defined. Both values count.

use crate::loss_photo::PAPER_SIZE;
use crate::swap_pairs::{grey, system};
use crate::{parse_settings, Stage, SystemEntry};
use faceforge_kernels::flow::{self, FlowSettings};
use faceforge_kernels::luminance;
use faceforge_components::{Grad, Image, LossTerms, RenderedSwaps};

/// λ_7 of MVF-Net.
pub const WEIGHT: f32 = 0.1;

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_align",
        stage: Stage::Loss,
        reads: data![RenderedSwaps, Image],
        writes: data![Grad<RenderedSwaps>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "optical-flow magnitude between I_B and I_{A→B}, both directions (MVF-Net Eq. 8)",
        build: |settings| {
            let settings: FlowSettings = parse_settings(settings)?;
            Ok(system("align", WEIGHT, move |pair| {
                let (target, rendered) = grey(pair);
                // The estimator's loss is a mean over the mask: back to a sum over 224² pixels.
                let to_sum = pair.mask.iter().sum::<f32>() * PAPER_SIZE * PAPER_SIZE / (pair.width * pair.height) as f32;
                let (forward, grad) = flow::magnitude_loss(&target, &rendered, pair.mask, pair.width, pair.height, &settings);
                let (reverse, _) = flow::magnitude_loss(&rendered, &target, pair.mask, pair.width, pair.height, &settings);
                ((forward + reverse) * to_sum, luminance::backward(&grad).iter().map(|g| 2.0 * to_sum * g).collect())
            }))
        },
    }
}
