//! loss_render: MGCNet's render loss (`001_…` §2), L_render = (1/M) Σ_i w_skin^i ‖I^i − I_re^i‖₂
//! over the M pixels of the projected face region, the per-pixel RGB norm taken as
//! √(Σ_c d² + 10⁻⁶) as the public code does. w_skin is the frame's `SkinMask` (the paper uses
//! Deng et al.'s skin-colour classifier; synthetic data knows the skin exactly: the face drawn
//! and not occluded), 1 everywhere without one. Weight w_render = 1.9. Averaged over the frames;
//! the gradient goes to the render (`Grad<Rendered>`), and through `render_backward` to the
//! shape, the albedo, the lighting and the pose.

use crate::{parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Frame, Grad, Image, LossTerms, LossWeights, Rendered, SkinMask};

/// w_render of MGCNet.
pub const WEIGHT: f32 = 1.9;

/// One frame's loss and its gradient with respect to the render's colours.
pub fn render_l2(render: &[f32], image: &[f32], mask: &[f32], skin: Option<&[f32]>) -> (f32, Vec<f32>) {
    let m = mask.iter().sum::<f32>().max(1.0);
    let mut grad = vec![0.0; render.len()];
    let mut value = 0.0f64;
    for (i, &inside) in mask.iter().enumerate() {
        let w = inside * skin.map_or(1.0, |s| s[i]);
        if w == 0.0 {
            continue;
        }
        let d: [f32; 3] = std::array::from_fn(|c| render[3 * i + c] - image[3 * i + c]);
        let norm = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 1e-6).sqrt();
        value += (w * norm) as f64;
        for c in 0..3 {
            grad[3 * i + c] = w * d[c] / norm / m;
        }
    }
    (value as f32 / m, grad)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_render",
        stage: Stage::Loss,
        reads: data![Rendered, Image],
        writes: data![Grad<Rendered>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "skin-weighted L2 between the image and the render (MGCNet's render loss)",
        build: |settings| {
            parse_settings::<crate::NoSettings>(settings)?;
            Ok((|weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Frame, &Rendered, &Image, Option<&SkinMask>, &mut Grad<Rendered>)>| -> Result<(), StageError> {
                let lambda = weights.get("render", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (frame, rendered, image, skin, mut grad) in frames.iter_mut() {
                    let pixels = rendered.width * rendered.height;
                    if image.rgb.len() != 3 * pixels || skin.is_some_and(|s| s.weights.len() != pixels) {
                        return Err(StageError { system: "loss_render", message: format!("frame {}: the render is {}×{}, the image {}×{}{}", frame.name, rendered.width, rendered.height, image.width, image.height, skin.map_or(String::new(), |s| format!(", the skin mask {} pixels", s.weights.len()))) });
                    }
                    let (value, d) = render_l2(&rendered.color, &image.rgb, &rendered.mask, skin.map(|s| s.weights.as_slice()));
                    total += value;
                    let d: Vec<f32> = d.iter().map(|g| g * lambda / count).collect();
                    accumulate(&mut grad.value.color, &d);
                }
                terms.terms.insert("render".into(), lambda * total / count);
                Ok(())
            })
            .pipe(crate::collect_errors)
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::render_l2;

    #[test]
    fn value_by_hand_and_gradient_by_central_differences() {
        // 3 pixels: inside and skin, inside but occluded (skin 0), outside the face.
        let render = [0.5, 0.5, 0.5, 0.9, 0.1, 0.2, 0.3, 0.3, 0.3];
        let image = [0.2, 0.1, 0.5, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mask = [1.0, 1.0, 0.0];
        let skin = [1.0, 0.0, 1.0];
        // Only pixel 0 counts: ‖(0.3, 0.4, 0)‖ = 0.5, over M = 2 face pixels.
        let (value, grad) = render_l2(&render, &image, &mask, Some(&skin));
        assert!((value - 0.25).abs() < 1e-5, "{value}");
        assert!(grad[3..].iter().all(|g| *g == 0.0));
        for k in 0..3 {
            let h = 1e-3;
            let (mut up, mut down) = (render, render);
            up[k] += h;
            down[k] -= h;
            let numeric = (render_l2(&up, &image, &mask, Some(&skin)).0 - render_l2(&down, &image, &mask, Some(&skin)).0) / (2.0 * h);
            assert!((numeric - grad[k]).abs() < 1e-3, "{k}: {numeric} vs {}", grad[k]);
        }
        // Without a skin mask, the occluded pixel counts too.
        let (all, _) = render_l2(&render, &image, &mask, None);
        let second = (0.9f32 * 0.9 + 0.01 + 0.04 + 1e-6).sqrt();
        assert!((all - (0.5 + second) / 2.0).abs() < 1e-5, "{all}");
    }
}
