//! loss_photometric: the plain photometric difference of PGN's ablation (L_p−), mean L1 of the
//! rgb values of I_j and I_{i→j} over M²ᵈ ⊙ W; not robust to lighting, the baseline census
//! improves on.

use crate::swap_pairs::system;
use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use faceforge_components::{Grad, Image, LossTerms, RenderedSwaps};

/// The ablation uses L_p− in place of L_p, at λ_p.
pub const WEIGHT: f32 = 0.2;

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_photometric",
        stage: Stage::Loss,
        reads: data![RenderedSwaps, Image],
        writes: data![Grad<RenderedSwaps>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "masked L1 of I_j and I_{i→j} (PGN's L_p− ablation)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok(system("photometric", WEIGHT, |pair| {
                let total: f32 = pair.weights.iter().sum::<f32>() * 3.0;
                if total <= 0.0 {
                    return (0.0, vec![0.0; pair.rendered.len()]);
                }
                let mut value = 0.0;
                let grad = pair
                    .rendered
                    .iter()
                    .zip(pair.target)
                    .enumerate()
                    .map(|(i, (r, t))| {
                        let w = pair.weights[i / 3] / total;
                        value += w * (r - t).abs();
                        w * crate::sign(r - t)
                    })
                    .collect();
                (value, grad)
            }))
        },
    }
}
