//! loss_depth: MGCNet's scale-corrected dense depth consistency (Eq. 4) between each view's
//! rendered depth D_t and every other view's depth synthesised into it, D̃_t^s, on the
//! covisible map: S = Σ D C / Σ D̃ C, L = Σ C |S D̃ − D| / Σ C (mm), averaged over the pairs.
//! Weight w_depth = 1e-4 (× w_mul = 1). Gradients go to the target's depth map directly and to
//! D̃ through `view_synthesis_backward`.

use crate::loss_pixel::pairs_like;
use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Grad, LossTerms, LossWeights, Rendered, SynthesisedViews};
use faceforge_kernels::depth_consistency;

/// w_depth of MGCNet.
pub const WEIGHT: f32 = 1e-4;

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_depth",
        stage: Stage::Loss,
        reads: data![SynthesisedViews, Rendered],
        writes: data![Grad<SynthesisedViews>, Grad<Rendered>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "scale-corrected depth agreement of each view with the others synthesised into it (MGCNet Eq. 4)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&SynthesisedViews, &Rendered, &mut Grad<SynthesisedViews>, &mut Grad<Rendered>)>| {
                let lambda = weights.get("depth", WEIGHT);
                let count = frames.iter().map(|f| f.0.pairs.len()).sum::<usize>().max(1) as f32;
                let scale = |d: Vec<f32>| d.iter().map(|x| x * lambda / count).collect::<Vec<_>>();
                let mut total = 0.0;
                for (views, rendered, mut grad, mut g_rendered) in frames.iter_mut() {
                    pairs_like(&mut grad.value, views);
                    for (view, g) in views.pairs.iter().zip(grad.value.pairs.iter_mut()) {
                        let (value, d_synth, d_depth) = depth_consistency::backward(&rendered.depth, &view.depth, &view.covisible);
                        total += value;
                        accumulate(&mut g.depth, &scale(d_synth));
                        accumulate(&mut g_rendered.value.depth, &scale(d_depth));
                    }
                }
                terms.terms.insert("depth".into(), lambda * total / count);
            })
            .in_set(Stage::Loss))
        },
    }
}
