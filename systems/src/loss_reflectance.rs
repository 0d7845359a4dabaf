//! loss_reflectance: CEST's photometric loss (Eq. 6–8), the masked L1 between each frame and its
//! re-renders with other reflectances (`render_reflectance`):
//! L_ph = (1/N) Σ_i [𝓔(I_i, …, R_j) + 𝓔(I_i, …, R_i^⋈)], plus 𝓔 with the frame's own reflectance
//! when that re-render is drawn. 𝓔 = ‖M ⊗ I − M ⊗ 𝓡‖₁ is taken per pixel over the face and
//! averaged over the face's pixels (so the weight means the same at any image size). M is
//! CEST's face mask (a segmentation network there; synthetic data's exact `SkinMask` here — the
//! face drawn and not occluded) within the render's face region. Weight 1 (Eq. 9:
//! L = L_ph + λ_1 L_kp + λ_2 L_rg).

use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Grad, Image, LossTerms, LossWeights, ReflectanceRenders, Rendered, SkinMask};

/// The weight of L_ph in CEST's Eq. 9.
pub const WEIGHT: f32 = 1.0;

/// Σ_p M_p Σ_c |I − R| / Σ_p M_p and its gradient with respect to R.
pub fn masked_l1(image: &[f32], render: &[f32], mask: &[f32]) -> (f32, Vec<f32>) {
    let count = mask.iter().sum::<f32>().max(1.0);
    let mut value = 0.0f64;
    let grad = render
        .iter()
        .zip(image)
        .enumerate()
        .map(|(k, (r, i))| {
            let w = mask[k / 3] / count;
            value += (w * (r - i).abs()) as f64;
            w * crate::sign(r - i)
        })
        .collect();
    (value as f32, grad)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_reflectance",
        stage: Stage::Loss,
        reads: data![ReflectanceRenders, Rendered, Image],
        writes: data![Grad<ReflectanceRenders>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "masked L1 of each frame against its re-renders with a partner's and its mirrored reflectance (CEST Eq. 8)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&ReflectanceRenders, &Rendered, &Image, Option<&SkinMask>, &mut Grad<ReflectanceRenders>)>| {
                let lambda = weights.get("reflectance", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (renders, rendered, image, skin, mut grad) in frames.iter_mut() {
                    let mask: Vec<f32> = rendered.mask.iter().enumerate().map(|(p, m)| m * skin.map_or(1.0, |s| s.weights[p])).collect();
                    let g = &mut grad.value;
                    for (drawn, into) in [(&renders.swapped, &mut g.swapped), (&renders.flipped, &mut g.flipped), (&renders.own, &mut g.own)] {
                        if drawn.len() != image.rgb.len() {
                            continue; // not drawn
                        }
                        let (value, d) = masked_l1(&image.rgb, drawn, &mask);
                        total += value;
                        accumulate(into, &d.iter().map(|x| x * lambda / count).collect::<Vec<_>>());
                    }
                }
                terms.terms.insert("reflectance".into(), lambda * total / count);
            })
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::masked_l1;

    #[test]
    fn by_hand() {
        // Two face pixels (one off by (0.1, −0.2, 0)), one pixel outside.
        let image = [0.5; 9];
        let render = [0.6, 0.3, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0];
        let (value, grad) = masked_l1(&image, &render, &[1.0, 1.0, 0.0]);
        assert!((value - 0.15).abs() < 1e-6, "{value}");
        assert_eq!(grad, vec![0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
