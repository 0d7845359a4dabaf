//! MVF-Net's supervised pre-training terms (Eq. 6), L2 to the ground truth of synthetic data
//! (300W-LP's fitted parameters in the paper):
//! - loss_coefficients, L_3DMM = Σ (α − α_gt)² + Σ (β − β_gt)² over identity and expression, in
//!   units of σ (λ_3 = 1);
//! - loss_pose, L_pose = Σ (angles − angles_gt)² + (log f − log f_gt)² + Σ ((t − t_gt)/S)² on a
//!   weak-perspective pose's parameters (radians; the translation in units of the image size S,
//!   so the terms are of one order) (λ_2 = 10).
//!
//! Averaged over the frames; gradients to `Grad<Coeffs>` and `Grad<PoseParams>`.

use crate::direct_pose::params_of;
use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Coeffs, Frame, Grad, GroundTruth, Image, LossTerms, LossWeights, Model, Pose, PoseParams};

/// λ_3 of MVF-Net.
pub const COEFFICIENTS_WEIGHT: f32 = 1.0;
/// λ_2 of MVF-Net.
pub const POSE_WEIGHT: f32 = 10.0;

/// Σ ((x − x_gt)/σ)² and its gradient.
fn squared(x: &[f32], truth: &[f32], sigma: &[f32], scale: f32) -> (f32, Vec<f32>) {
    let value = x.iter().zip(truth).zip(sigma).map(|((a, b), s)| ((a - b) / s).powi(2)).sum::<f32>();
    (value * scale, x.iter().zip(truth).zip(sigma).map(|((a, b), s)| 2.0 * (a - b) / (s * s) * scale).collect())
}

/// L_pose of one frame (before λ) and its gradient, for an image `size` pixels wide.
pub fn pose_l2(params: &PoseParams, truth: &PoseParams, size: f32) -> (f32, PoseParams) {
    let da: [f32; 3] = std::array::from_fn(|k| params.angles[k] - truth.angles[k]);
    let ds = params.log_scale - truth.log_scale;
    let dt: [f32; 2] = std::array::from_fn(|k| (params.translation[k] - truth.translation[k]) / size);
    let value = da.iter().map(|d| d * d).sum::<f32>() + ds * ds + dt.iter().map(|d| d * d).sum::<f32>();
    (value, PoseParams { angles: da.map(|d| 2.0 * d), log_scale: 2.0 * ds, translation: dt.map(|d| 2.0 * d / size) })
}

pub fn coefficients_entry() -> SystemEntry {
    SystemEntry {
        name: "loss_coefficients",
        stage: Stage::Loss,
        reads: data![Coeffs, GroundTruth],
        writes: data![Grad<Coeffs>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "L2 of identity and expression to the ground truth, in σ (MVF-Net's L_3DMM)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>, weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Coeffs, &GroundTruth, &mut Grad<Coeffs>), With<Frame>>| {
                let m = &model.0;
                let lambda = weights.get("coefficients", COEFFICIENTS_WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (coeffs, truth, mut grad) in frames.iter_mut() {
                    let (v_id, g_id) = squared(&coeffs.id, &truth.coeffs.id, m.id_sigma(), lambda / count);
                    let (v_exp, g_exp) = squared(&coeffs.exp, &truth.coeffs.exp, m.exp_sigma(), lambda / count);
                    total += v_id + v_exp;
                    accumulate(&mut grad.value.id, &g_id);
                    accumulate(&mut grad.value.exp, &g_exp);
                }
                terms.terms.insert("coefficients".into(), total);
            })
            .in_set(Stage::Loss))
        },
    }
}

pub fn pose_entry() -> SystemEntry {
    SystemEntry {
        name: "loss_pose",
        stage: Stage::Loss,
        reads: data![PoseParams, GroundTruth, Image],
        writes: data![Grad<PoseParams>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "L2 of the weak-perspective pose parameters to the ground truth (MVF-Net's L_pose)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&PoseParams, &GroundTruth, &Image, &mut Grad<PoseParams>)>| {
                let lambda = weights.get("pose", POSE_WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (params, truth, image, mut grad) in frames.iter_mut() {
                    let Some(Pose::WeakPerspective { t }) = &truth.pose else { continue };
                    let (value, d) = pose_l2(params, &params_of(t), image.width.max(1) as f32);
                    let scale = lambda / count;
                    total += scale * value;
                    grad.value.accumulate(&PoseParams { angles: d.angles.map(|v| scale * v), log_scale: scale * d.log_scale, translation: d.translation.map(|v| scale * v) });
                }
                terms.terms.insert("pose".into(), total);
            })
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_at_the_truth_and_gradients_by_central_differences() {
        let truth = PoseParams { angles: [0.3, -0.1, 0.05], log_scale: -0.2, translation: [60.0, 70.0] };
        assert_eq!(pose_l2(&truth, &truth, 128.0).0, 0.0);
        let p = PoseParams { angles: [0.5, 0.1, -0.05], log_scale: 0.1, translation: [70.0, 52.0] };
        let (_, d) = pose_l2(&p, &truth, 128.0);
        let f = |x: &[f32]| pose_l2(&PoseParams { angles: [x[0], x[1], x[2]], log_scale: x[3], translation: [x[4], x[5]] }, &truth, 128.0).0;
        let x = [p.angles[0], p.angles[1], p.angles[2], p.log_scale, p.translation[0], p.translation[1]];
        let g = [d.angles[0], d.angles[1], d.angles[2], d.log_scale, d.translation[0], d.translation[1]];
        assert!(faceforge_kernels::testing::worst_against_central_differences(f, &x, &g, 1, 1e-2, 1e-4) < 1e-2);
        let (value, grad) = squared(&[1.0, 2.0], &[0.0, 2.0], &[0.5, 1.0], 1.0);
        assert_eq!((value, grad), (4.0, vec![8.0, 0.0]));
    }
}
