//! loss_flow: PGN's flow consistency loss (Eq. 10), L_f = λ_f Σ |w(I_j, I_{i→j})| ⊙ W / Σ W, the
//! magnitude of the optical flow from the target to the swapped render. The flow comes from a
//! classical coarse-to-fine Lucas–Kanade estimator in place of DDFlow (`kernels::flow` says how
//! its gradient passes).

use crate::swap_pairs::{grey, system};
use crate::{parse_settings, Stage, SystemEntry};
use faceforge_kernels::flow::{self, FlowSettings};
use faceforge_kernels::luminance;
use faceforge_components::{Grad, Image, LossTerms, RenderedSwaps};

/// λ_f of PGN.
pub const WEIGHT: f32 = 0.2;

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_flow",
        stage: Stage::Loss,
        reads: data![RenderedSwaps, Image],
        writes: data![Grad<RenderedSwaps>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "optical-flow magnitude between I_j and I_{i→j}, coarse-to-fine Lucas–Kanade (PGN Eq. 10)",
        build: |settings| {
            let settings: FlowSettings = parse_settings(settings)?;
            Ok(system("flow", WEIGHT, move |pair| {
                let (target, rendered) = grey(pair);
                let (value, grad) = flow::magnitude_loss(&target, &rendered, &pair.weights, pair.width, pair.height, &settings);
                (value, luminance::backward(&grad))
            }))
        },
    }
}
