//! loss_pixel: MGCNet's pixel consistency (Eq. 3), the synthesised target Ĩ_t^s against the
//! target image I_t on the covisible map, L = Σ C ‖Ĩ − I‖ / Σ C (per-pixel RGB norm, as the
//! public code), averaged over every synthesised pair. Weight w_pixel = 0.15 (× w_mul = 1).
//! The gradient goes to `Grad<SynthesisedViews>` and through `view_synthesis_backward` to the
//! target's depth and both poses.

use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Grad, Image, LossTerms, LossWeights, SynthesisedViews, ViewPair};
use faceforge_kernels::pixel_consistency;

/// w_pixel of MGCNet.
pub const WEIGHT: f32 = 0.15;

/// Sizes a gradient's pairs like the views' (empty vectors), so losses can add into them.
pub fn pairs_like(grad: &mut SynthesisedViews, views: &SynthesisedViews) {
    if grad.pairs.len() != views.pairs.len() {
        grad.pairs = views.pairs.iter().map(|p| ViewPair { source: p.source, coords: Vec::new(), rgb: Vec::new(), depth: Vec::new(), covisible: Vec::new() }).collect();
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_pixel",
        stage: Stage::Loss,
        reads: data![SynthesisedViews, Image],
        writes: data![Grad<SynthesisedViews>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "covisible-masked RGB distance between each view and the others synthesised into it (MGCNet Eq. 3)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&SynthesisedViews, &Image, &mut Grad<SynthesisedViews>)>| {
                let lambda = weights.get("pixel", WEIGHT);
                let count = frames.iter().map(|f| f.0.pairs.len()).sum::<usize>().max(1) as f32;
                let mut total = 0.0;
                for (views, image, mut grad) in frames.iter_mut() {
                    pairs_like(&mut grad.value, views);
                    for (view, g) in views.pairs.iter().zip(grad.value.pairs.iter_mut()) {
                        let (value, d) = pixel_consistency::backward(&view.rgb, &image.rgb, &view.covisible);
                        total += value;
                        accumulate(&mut g.rgb, &d.iter().map(|x| x * lambda / count).collect::<Vec<_>>());
                    }
                }
                terms.terms.insert("pixel".into(), lambda * total / count);
            })
            .in_set(Stage::Loss))
        },
    }
}
