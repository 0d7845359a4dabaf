//! loss_identity: MGCNet's identity loss, 1 − cos(η(I), η(I_re)) between deep features of the
//! input and of the render composited over it (the face region replaced, as Deng et al. and the
//! public code feed their face-recognition network). faceforge ships no recognition network
//! (no weights can be downloaded or shipped), so η is the fixed oriented-gradient descriptor of
//! `kernels::features` over the face's box — it responds to where and how the edges of the eyes,
//! nose, mouth and outline run, not to brightness — the same substitute PGN's semantic term
//! uses in fit mode. Weight w_id = 0.2; averaged over the frames; the gradient goes to the render.

use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Grad, Image, LossTerms, LossWeights, Rendered};
use faceforge_kernels::{features, luminance};
use serde::Deserialize;

/// w_id of MGCNet.
pub const WEIGHT: f32 = 0.2;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    /// Pixels added around the face's box.
    pub margin: usize,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self { margin: 4 }
    }
}

/// The render over the image (face pixels from the render, the rest from the image), its
/// value and its gradient with respect to the render's colours.
pub fn identity_loss(image: &[f32], render: &[f32], mask: &[f32], width: usize, height: usize, margin: usize) -> (f32, Vec<f32>) {
    let Some(face) = features::mask_box(mask, width, height, margin) else {
        return (0.0, vec![0.0; render.len()]);
    };
    let composite: Vec<f32> = image.iter().zip(render).enumerate().map(|(k, (i, r))| if mask[k / 3] > 0.0 { *r } else { *i }).collect();
    let (value, grad) = features::cosine_loss(&luminance::forward(image), &luminance::forward(&composite), width, height, &face);
    let grad = luminance::backward(&grad).iter().enumerate().map(|(k, g)| g * mask[k / 3]).collect();
    (value, grad)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_identity",
        stage: Stage::Loss,
        reads: data![Rendered, Image],
        writes: data![Grad<Rendered>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "1 − cosine of fixed features of the image and the render over it (MGCNet's identity loss, substitute network)",
        build: |settings| {
            let settings: IdentitySettings = parse_settings(settings)?;
            Ok((move |weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Rendered, &Image, &mut Grad<Rendered>)>| {
                let lambda = weights.get("identity", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (rendered, image, mut grad) in frames.iter_mut() {
                    if image.rgb.len() != rendered.color.len() {
                        continue; // loss_render names the mismatch
                    }
                    let (value, d) = identity_loss(&image.rgb, &rendered.color, &rendered.mask, rendered.width, rendered.height, settings.margin);
                    total += value;
                    accumulate(&mut grad.value.color, &d.iter().map(|g| g * lambda / count).collect::<Vec<_>>());
                }
                terms.terms.insert("identity".into(), lambda * total / count);
            })
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::identity_loss;
    use faceforge_kernels::testing::worst_against_central_differences;

    #[test]
    fn zero_for_the_image_itself_and_the_gradient_matches_central_differences() {
        let (w, h) = (20usize, 18usize);
        let image: Vec<f32> = (0..3 * w * h).map(|k| 0.5 + 0.3 * ((k / 3 % w) as f32 * 0.7).sin() * ((k / 3 / w) as f32 * 0.5).cos()).collect();
        let mask: Vec<f32> = (0..w * h).map(|i| ((i % w) > 4 && (i % w) < 15 && (i / w) > 3 && (i / w) < 14) as u8 as f32).collect();
        let (same, _) = identity_loss(&image, &image, &mask, w, h, 2);
        assert!(same.abs() < 1e-5, "{same}");
        let render: Vec<f32> = image.iter().enumerate().map(|(k, v)| v + 0.2 * ((k as f32) * 1.3).sin()).collect();
        let (value, grad) = identity_loss(&image, &render, &mask, w, h, 2);
        assert!(value > 1e-3, "{value}");
        let worst = worst_against_central_differences(|x| identity_loss(&image, x, &mask, w, h, 2).0, &render, &grad, 7, 1e-3, 1e-3);
        assert!(worst < 5e-2, "{worst}");
    }
}
