//! 2DASL's self-supervision and coefficient losses (`002_…` §2) as functions on landmarks and
//! 62-parameter vectors; the systems that run the regressor twice (forward with the input
//! landmarks' FLM, backward with the predicted ones') build on them.
//!
//! - The 18 points of L_2d-con: the paper drops the contour and keeps 18 points, which its Fig. 4
//!   alone identifies; decided here as the 10 brow points (17–26), the lower nose line (31–35),
//!   the eye centres and the mouth centre as the public benchmark code builds them (midpoints of
//!   36/39, 42/45 and 62/66, 0-based). Weights 4 : 2 : 1: 4 on the eye and mouth centres and the
//!   nose tip (33), 2 on the other nose points, 1 on the brows.
//! - L_2d-con = Σ v_i ‖x_i − y_i‖ over those points; L_cyc is the same between the input
//!   landmarks and the backward pass's; L_3d-con = Σ ‖x_i − x̂_i‖ over the 68 3D landmarks.
//! - L_3d = (α* − α̂)ᵀ W (α* − α̂) with w_i ∝ ‖H(α̂_i) − H(α*)‖ (3DDFA's OWPDC): α̂_i is the truth
//!   with only entry i replaced by the prediction, H the 68 landmarks projected by the first two
//!   pose rows. W is held constant in the gradient, as 3DDFA does: ∂L/∂α̂ = 2 W (α̂ − α*).

use crate::params62::{Params62, LEN};
use faceforge_components::Coeffs;
use faceforge_kernels::project::{self, CameraModel};
use faceforge_model::MorphableModel;

/// The 18 points and their weights from 68 landmarks (any dimension).
pub fn eighteen<const D: usize>(landmarks: &[[f32; D]]) -> Vec<([f32; D], f32)> {
    let mid = |a: usize, b: usize| -> [f32; D] { std::array::from_fn(|c| 0.5 * (landmarks[a][c] + landmarks[b][c])) };
    let mut points: Vec<([f32; D], f32)> = (17..27).map(|i| (landmarks[i], 1.0)).collect();
    points.extend((31..36).map(|i| (landmarks[i], if i == 33 { 4.0 } else { 2.0 })));
    points.push((mid(36, 39), 4.0));
    points.push((mid(42, 45), 4.0));
    points.push((mid(62, 66), 4.0));
    points
}

/// Σ v_i ‖x_i − y_i‖ over the 18 points of two landmark sets, and its gradient with respect to
/// the first set's 68 points; `mask: false` weighs every point 1 (Table 2's "w/o").
pub fn consistency_2d(x: &[[f32; 2]], y: &[[f32; 2]], mask: bool) -> (f32, Vec<[f32; 2]>) {
    let (px, py) = (eighteen(x), eighteen(y));
    let mut grad = vec![[0.0f32; 2]; x.len()];
    // Which of the 68 each of the 18 reads, with what share.
    let sources: Vec<Vec<(usize, f32)>> = (17..27).chain(31..36).map(|i| vec![(i, 1.0)]).chain([vec![(36, 0.5), (39, 0.5)], vec![(42, 0.5), (45, 0.5)], vec![(62, 0.5), (66, 0.5)]]).collect();
    let mut value = 0.0;
    for ((a, w), ((b, _), from)) in px.iter().zip(py.iter().zip(&sources)) {
        let w = if mask { *w } else { 1.0 };
        let d = [a[0] - b[0], a[1] - b[1]];
        let norm = (d[0] * d[0] + d[1] * d[1]).sqrt();
        value += w * norm;
        if norm > 0.0 {
            for &(k, share) in from {
                (0..2).for_each(|c| grad[k][c] += w * share * d[c] / norm);
            }
        }
    }
    (value, grad)
}

/// Σ ‖x_i − x̂_i‖ over the 68 3D landmarks of the forward and the backward pass, and its
/// gradient with respect to the first.
pub fn consistency_3d(x: &[[f32; 3]], y: &[[f32; 3]]) -> (f32, Vec<[f32; 3]>) {
    let mut value = 0.0;
    let grad = x
        .iter()
        .zip(y)
        .map(|(a, b)| {
            let d: [f32; 3] = std::array::from_fn(|c| a[c] - b[c]);
            let norm = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            value += norm;
            if norm > 0.0 { d.map(|v| v / norm) } else { [0.0; 3] }
        })
        .collect();
    (value, grad)
}

/// x^3d: the model's landmarks under a weak pose's [f·R | t] — image u, v and depth along
/// (a × b)/f, the third row of the 62 parameters.
pub fn landmarks_3d(model: &MorphableModel, t: &[[f32; 4]; 2], coeffs: &Coeffs) -> Vec<[f32; 3]> {
    let x = faceforge_systems::pgn::landmark_positions(model, coeffs);
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let out = project::forward_cpu(CameraModel::WeakPerspective, &flat, &project::weak_params(*t), x.len());
    out.chunks(4).map(|p| [p[0], p[1], p[2]]).collect()
}

/// The adjoint of `landmarks_3d`: d landmarks → (dL/dT, dL/d identity, dL/d expression).
pub fn landmarks_3d_backward(model: &MorphableModel, t: &[[f32; 4]; 2], coeffs: &Coeffs, grad: &[[f32; 3]]) -> ([[f32; 4]; 2], Vec<f32>, Vec<f32>) {
    let x = faceforge_systems::pgn::landmark_positions(model, coeffs);
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let camera = project::weak_params(*t);
    let g_uv: Vec<f32> = grad.iter().flat_map(|g| [g[0], g[1], 0.0, 0.0]).collect();
    let g_depth: Vec<f32> = grad.iter().map(|g| g[2]).collect();
    let (mut gx, mut gc) = project::backward_cpu(CameraModel::WeakPerspective, &flat, &camera, &g_uv, x.len());
    let (gx_depth, gc_depth) = project::depth_backward_cpu(CameraModel::WeakPerspective, &flat, &camera, &g_depth, x.len());
    gx.iter_mut().zip(&gx_depth).for_each(|(a, b)| *a += b);
    gc.iter_mut().zip(&gc_depth).for_each(|(a, b)| *a += b);
    let per_point: Vec<[f32; 3]> = gx.chunks(3).map(|g| [g[0], g[1], g[2]]).collect();
    let (d_id, d_exp) = faceforge_systems::pgn::landmark_positions_backward(model, &per_point);
    ([std::array::from_fn(|k| gc[k]), std::array::from_fn(|k| gc[4 + k])], d_id, d_exp)
}

/// H: the model's 68 landmarks projected by a 62-parameter vector's first two pose rows.
pub fn project_62(model: &MorphableModel, params: &[f32]) -> Result<Vec<[f32; 2]>, String> {
    let (pose, coeffs) = Params62::from_slice(params)?.pose_and_coeffs();
    let faceforge_components::Pose::WeakPerspective { t } = pose else { unreachable!("62 parameters hold a weak pose") };
    Ok(landmarks_3d(model, &t, &coeffs).iter().map(|p| [p[0], p[1]]).collect())
}

/// The OWPDC weights w_i ∝ ‖H(α̂_i) − H(α*)‖, summing to 1 (all zero at the truth).
pub fn owpdc_weights(model: &MorphableModel, predicted: &[f32], truth: &[f32]) -> Result<Vec<f32>, String> {
    let base = project_62(model, truth)?;
    let mut w = Vec::with_capacity(LEN);
    for i in 0..LEN {
        let mut one = truth.to_vec();
        one[i] = predicted[i];
        let moved = project_62(model, &one)?;
        w.push(moved.iter().zip(&base).map(|(a, b)| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sum::<f32>().sqrt());
    }
    let total: f32 = w.iter().sum();
    Ok(if total > 0.0 { w.iter().map(|v| v / total).collect() } else { w })
}

/// L_3d over the parameters in standard units (`factor`, `params62::standard_units`: 3DDFA
/// compares whitened parameters) and its gradient with respect to the raw prediction (the
/// weights held constant).
pub fn weighted_coefficient_loss(model: &MorphableModel, predicted: &[f32], truth: &[f32], factor: &[f32]) -> Result<(f32, Vec<f32>), String> {
    let w = owpdc_weights(model, predicted, truth)?;
    let d: Vec<f32> = predicted.iter().zip(truth).zip(factor).map(|((p, t), f)| (p - t) * f).collect();
    Ok((d.iter().zip(&w).map(|(d, w)| w * d * d).sum(), d.iter().zip(&w).zip(factor).map(|((d, w), f)| 2.0 * w * d * f).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faceforge_components::{Coeffs, Pose};
    use faceforge_model::{ModelSpec, Preset};

    fn landmarks68(seed: f32) -> Vec<[f32; 2]> {
        (0..68).map(|i| [50.0 + 30.0 * (i as f32 * 0.37 + seed).sin(), 60.0 + 25.0 * (i as f32 * 0.91 + seed).cos()]).collect()
    }

    #[test]
    fn eighteen_weighted_points_zero_on_agreement_and_the_gradient_by_central_differences() {
        let x = landmarks68(0.0);
        let points = eighteen(&x);
        assert_eq!(points.len(), 18);
        let weights: Vec<f32> = points.iter().map(|p| p.1).collect();
        assert_eq!((weights.iter().filter(|w| **w == 4.0).count(), weights.iter().filter(|w| **w == 2.0).count(), weights.iter().filter(|w| **w == 1.0).count()), (4, 4, 10));
        assert_eq!(points[15].0, [0.5 * (x[36][0] + x[39][0]), 0.5 * (x[36][1] + x[39][1])]);
        assert_eq!(consistency_2d(&x, &x, true).0, 0.0);
        // The contour (0–16) and the eyes' other points do not count.
        let mut contour = x.clone();
        contour[3][0] += 10.0;
        contour[37][1] += 10.0;
        assert_eq!(consistency_2d(&contour, &x, true).0, 0.0);
        let y = landmarks68(0.4);
        let (_, grad) = consistency_2d(&x, &y, true);
        let flat: Vec<f32> = x.iter().flatten().copied().collect();
        let g: Vec<f32> = grad.iter().flatten().copied().collect();
        let f = |v: &[f32]| consistency_2d(&v.chunks(2).map(|p| [p[0], p[1]]).collect::<Vec<_>>(), &y, true).0;
        assert!(faceforge_kernels::testing::worst_against_central_differences(f, &flat, &g, 1, 1e-2, 0.1) < 1e-2);
        let x3: Vec<[f32; 3]> = x.iter().map(|p| [p[0], p[1], 0.5 * p[0]]).collect();
        assert_eq!(consistency_3d(&x3, &x3).0, 0.0);
    }

    #[test]
    fn the_weighted_coefficient_loss_vanishes_at_the_truth_and_weighs_what_moves_the_landmarks() {
        let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, n_id: 40, n_exp: 10, ..ModelSpec::default() });
        let pose = Pose::weak_from_angles(20.0, 5.0, 0.0, 0.8, [60.0, 60.0]);
        let coeffs = Coeffs { id: model.id_sigma()[..40].iter().map(|s| 0.5 * s).collect(), exp: model.exp_sigma()[..10].iter().map(|s| -0.3 * s).collect(), tex: Vec::new() };
        let truth = Params62::from_pose_and_coeffs(&pose, &coeffs).unwrap().to_vec();
        let (factor, _) = crate::params62::standard_units(&model, 120).unwrap();
        assert_eq!(weighted_coefficient_loss(&model, &truth, &truth, &factor).unwrap().0, 0.0);
        // Every entry off by the same relative amount: the pose's translation and the first
        // identity component move the landmarks far more than the last expression component.
        let predicted: Vec<f32> = truth.iter().map(|v| v * 1.05 + 0.01).collect();
        let w = owpdc_weights(&model, &predicted, &truth).unwrap();
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(w[3] > 10.0 * w[61] && w[12] > w[51], "t_x {}, id 0 {}, id 39 {}, exp 9 {}", w[3], w[12], w[51], w[61]);
        let (value, grad) = weighted_coefficient_loss(&model, &predicted, &truth, &factor).unwrap();
        assert!(value > 0.0);
        for i in [3, 12, 61] {
            let expected = 2.0 * w[i] * (predicted[i] - truth[i]) * factor[i] * factor[i];
            assert!((grad[i] - expected).abs() <= 1e-5 * expected.abs().max(1e-6), "{i}: {} vs {expected}", grad[i]);
        }
    }
}
