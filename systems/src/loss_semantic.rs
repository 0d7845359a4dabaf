//! loss_semantic: PGN's semantic consistency loss (Eq. 11), L_s = λ_s − λ_s ⟨F(I_j)/‖F(I_j)‖, F(I_{i→j})/‖F(I_{i→j})‖⟩.
//! PGN's F is its own encoder; in fit mode F is the fixed oriented-gradient descriptor of
//! `kernels::features`, pooled on a grid over the face's box (M²ᵈ's bounding box plus a margin).

use crate::swap_pairs::{grey, system};
use crate::{parse_settings, Stage, SystemEntry};
use faceforge_kernels::{features, luminance};
use serde::Deserialize;
use faceforge_components::{Grad, Image, LossTerms, RenderedSwaps};

/// λ_s of PGN.
pub const WEIGHT: f32 = 10.0;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticSettings {
    /// Pixels added around the face's box.
    pub margin: usize,
}

impl Default for SemanticSettings {
    fn default() -> Self {
        Self { margin: 4 }
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_semantic",
        stage: Stage::Loss,
        reads: data![RenderedSwaps, Image],
        writes: data![Grad<RenderedSwaps>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "1 − cosine of fixed oriented-gradient features of I_j and I_{i→j} (PGN Eq. 11)",
        build: |settings| {
            let settings: SemanticSettings = parse_settings(settings)?;
            Ok(system("semantic", WEIGHT, move |pair| {
                let Some(face) = features::mask_box(pair.mask, pair.width, pair.height, settings.margin) else {
                    return (0.0, vec![0.0; pair.rendered.len()]);
                };
                let (target, rendered) = grey(pair);
                let (value, grad) = features::cosine_loss(&target, &rendered, pair.width, pair.height, &face);
                (value, luminance::backward(&grad))
            }))
        },
    }
}
