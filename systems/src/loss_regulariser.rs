//! loss_regulariser: PGN's coefficient prior (Eq. 12), L_r = λ_r Σ|α_id/σ_id| + (λ_r/2) Σ|α_exp/σ_exp|,
//! L1 in units of each component's σ, summed over the components as in the paper and averaged
//! over the frames.

use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Coeffs, Frame, Grad, LossTerms, LossWeights, Model};

/// λ_r of PGN.
pub const WEIGHT: f32 = 1.0;

/// Σ|c/σ| · factor and its gradient, for one coefficient vector.
fn l1_prior(c: &[f32], sigma: &[f32], factor: f32) -> (f32, Vec<f32>) {
    let value = c.iter().zip(sigma).map(|(a, s)| (a / s).abs()).sum::<f32>() * factor;
    (value, c.iter().zip(sigma).map(|(a, s)| crate::sign(*a) / s * factor).collect())
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_regulariser",
        stage: Stage::Loss,
        reads: &["Coeffs"],
        writes: &["Grad<Coeffs>", "LossTerms"],
        summary: "L1 prior on identity and expression in units of σ (PGN Eq. 12)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>, weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Coeffs, &mut Grad<Coeffs>), With<Frame>>| {
                let m = &model.0;
                let lambda = weights.get("regulariser", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let scale = lambda / count;
                let mut total = 0.0;
                for (coeffs, mut grad) in frames.iter_mut() {
                    let (v_id, g_id) = l1_prior(&coeffs.id, m.id_sigma(), scale);
                    let (v_exp, g_exp) = l1_prior(&coeffs.exp, m.exp_sigma(), 0.5 * scale);
                    total += v_id + v_exp;
                    accumulate(&mut grad.value.id, &g_id);
                    accumulate(&mut grad.value.exp, &g_exp);
                }
                terms.terms.insert("regulariser".into(), total);
            })
            .in_set(Stage::Loss))
        },
    }
}
