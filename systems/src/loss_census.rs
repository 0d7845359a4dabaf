//! loss_census: PGN's photometric loss (Eq. 9), the soft census transform's Hamming distance
//! between I_j and I_{i→j} over M²ᵈ ⊙ W (`kernels::census`), robust to the lighting changing
//! between frames.

use crate::swap_pairs::{grey, system};
use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use faceforge_kernels::{census, luminance};
use faceforge_components::{Grad, Image, LossTerms, RenderedSwaps};

/// λ_p of PGN.
pub const WEIGHT: f32 = 0.2;

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_census",
        stage: Stage::Loss,
        reads: data![RenderedSwaps, Image],
        writes: data![Grad<RenderedSwaps>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "7×7 soft census Hamming distance of I_j and I_{i→j} on M²ᵈ ⊙ W (PGN Eq. 9)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok(system("census", WEIGHT, |pair| {
                let (target, rendered) = grey(pair);
                let (value, grad) = census::loss(pair.backend, &target, &rendered, &pair.weights, pair.width, pair.height);
                (value, luminance::backward(&grad))
            }))
        },
    }
}
