//! loss_regulariser: PGN's coefficient prior (Eq. 12), L_r = λ_r Σ|α_id/σ_id| + (λ_r/2) Σ|α_exp/σ_exp|,
//! L1 in units of each component's σ, summed over the components as in the paper and averaged
//! over the frames.
//!
//! MGCNet's is squared with its own weights, L_reg = w_id Σα² + w_exp Σβ² + w_tex Σγ² with
//! (1.0, 0.8, 3e-3) (the coefficients in units of σ, as in Deng et al.'s scaled bases):
//! `norm: SquaredL2, weights: (1.0, 0.8, 0.003)`.

use crate::loss_landmark::Norm;
use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Coeffs, Frame, Grad, LossTerms, LossWeights, Model};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegulariserSettings {
    pub norm: Norm,
    /// Factors of the identity, expression and albedo sums.
    pub weights: (f32, f32, f32),
}

impl Default for RegulariserSettings {
    fn default() -> Self {
        Self { norm: Norm::L1, weights: (1.0, 0.5, 0.0) }
    }
}

/// λ_r of PGN.
pub const WEIGHT: f32 = 1.0;

/// Σ|c/σ| or Σ(c/σ)², times factor, and its gradient, for one coefficient vector.
fn prior(norm: Norm, c: &[f32], sigma: &[f32], factor: f32) -> (f32, Vec<f32>) {
    match norm {
        Norm::L1 => (c.iter().zip(sigma).map(|(a, s)| (a / s).abs()).sum::<f32>() * factor, c.iter().zip(sigma).map(|(a, s)| crate::sign(*a) / s * factor).collect()),
        Norm::SquaredL2 => (c.iter().zip(sigma).map(|(a, s)| (a / s).powi(2)).sum::<f32>() * factor, c.iter().zip(sigma).map(|(a, s)| 2.0 * a / (s * s) * factor).collect()),
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_regulariser",
        stage: Stage::Loss,
        reads: data![Coeffs],
        writes: data![Grad<Coeffs>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "prior on the coefficients in units of σ: L1 (PGN Eq. 12) or squared (MGCNet)",
        build: |settings| {
            let settings: RegulariserSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>, weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Coeffs, &mut Grad<Coeffs>), With<Frame>>| {
                let m = &model.0;
                let lambda = weights.get("regulariser", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let scale = lambda / count;
                let mut total = 0.0;
                for (coeffs, mut grad) in frames.iter_mut() {
                    let (w_id, w_exp, w_tex) = settings.weights;
                    let (v_id, g_id) = prior(settings.norm, &coeffs.id, m.id_sigma(), w_id * scale);
                    let (v_exp, g_exp) = prior(settings.norm, &coeffs.exp, m.exp_sigma(), w_exp * scale);
                    total += v_id + v_exp;
                    accumulate(&mut grad.value.id, &g_id);
                    accumulate(&mut grad.value.exp, &g_exp);
                    if w_tex != 0.0 && !coeffs.tex.is_empty() {
                        let (v_tex, g_tex) = prior(settings.norm, &coeffs.tex, m.albedo_sigma(), w_tex * scale);
                        total += v_tex;
                        accumulate(&mut grad.value.tex, &g_tex);
                    }
                }
                terms.terms.insert("regulariser".into(), total);
            })
            .in_set(Stage::Loss))
        },
    }
}
