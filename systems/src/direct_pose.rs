//! direct_pose: the pose as free parameters (yaw, pitch, roll, log scale, translation), the
//! "without PGN" variant of PGN's Table 2. `direct_pose_backward` turns dL/dT into gradients of
//! those parameters for the step. The parameters start from the landmarks (the affine fit's
//! nearest scaled rotation) or, for tests and upper-bound rows, from the true pose turned by a
//! given yaw.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Coeffs, Frame, Grad, GroundTruth, Landmarks2d, Model, Pose, PoseParams};
use faceforge_kernels::pgn;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub enum PoseInit {
    /// The affine fit to the 2D landmarks, projected to a scaled rotation.
    #[default]
    Landmarks,
    /// The synthetic data's true pose with its yaw turned by this many degrees.
    TruthOffset(f32),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectPoseSettings {
    pub init: PoseInit,
}

/// yaw, pitch, roll (radians) of R = R_z(roll) R_x(pitch) R_y(yaw) (see `rotation_ypr`).
pub fn angles_of(r: &[f32; 9]) -> [f32; 3] {
    [(-r[6]).atan2(r[8]), r[7].clamp(-1.0, 1.0).asin(), (-r[1]).atan2(r[4])]
}

/// The parameters of a weak-perspective pose (its nearest scaled rotation).
pub fn params_of(t: &[[f32; 4]; 2]) -> PoseParams {
    let (r, scale) = pgn::rotation_and_scale(t, true);
    PoseParams { angles: angles_of(&r), log_scale: scale.ln(), translation: [t[0][3], t[1][3]] }
}

/// ∂R/∂yaw, ∂R/∂pitch, ∂R/∂roll (row-major).
pub(crate) fn rotation_partials(angles: [f32; 3]) -> [[f32; 9]; 3] {
    let [yaw, pitch, roll] = angles;
    let (cy, sy, cp, sp, cr, sr) = (yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin());
    let ry = [cy, 0.0, sy, 0.0, 1.0, 0.0, -sy, 0.0, cy];
    let rx = [1.0, 0.0, 0.0, 0.0, cp, -sp, 0.0, sp, cp];
    let rz = [cr, -sr, 0.0, sr, cr, 0.0, 0.0, 0.0, 1.0];
    let d_ry = [-sy, 0.0, cy, 0.0, 0.0, 0.0, -cy, 0.0, -sy];
    let d_rx = [0.0, 0.0, 0.0, 0.0, -sp, -cp, 0.0, cp, -sp];
    let d_rz = [-sr, -cr, 0.0, cr, -sr, 0.0, 0.0, 0.0, 0.0];
    let mul = |a: [f32; 9], b: [f32; 9]| -> [f32; 9] { std::array::from_fn(|k| (0..3).map(|j| a[k / 3 * 3 + j] * b[j * 3 + k % 3]).sum()) };
    [mul(rz, mul(rx, d_ry)), mul(rz, mul(d_rx, ry)), mul(d_rz, mul(rx, ry))]
}

/// dL/dT (2 × 4) → dL/d parameters.
pub fn params_backward(p: &PoseParams, grad_t: &[[f32; 4]; 2]) -> PoseParams {
    let f = p.log_scale.exp();
    let r = faceforge_kernels::project::rotation_ypr(p.angles[0], p.angles[1], p.angles[2]);
    // T₀ = f R₀ + t₀, T₁ = −f R₁ + t₁.
    let through = |m: &[f32; 9]| f * (0..3).map(|j| grad_t[0][j] * m[j] - grad_t[1][j] * m[3 + j]).sum::<f32>();
    let partials = rotation_partials(p.angles);
    PoseParams { angles: partials.map(|d| through(&d)), log_scale: through(&r), translation: [grad_t[0][3], grad_t[1][3]] }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "direct_pose",
        stage: Stage::Pgn,
        reads: data![Coeffs, Landmarks2d],
        writes: data![Pose, PoseParams],
        reads_if_present: data![PoseParams],
        adjoint: Some("direct_pose_backward"),
        summary: "pose as free parameters (yaw, pitch, roll, scale, translation): PGN's \"without PGN\"",
        build: |settings| {
            let settings: DirectPoseSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>,
                      frames: Query<(Entity, &Frame, &Coeffs, &Landmarks2d, Option<&PoseParams>, Option<&GroundTruth>)>,
                      mut commands: Commands|
                  -> Result<(), StageError> {
                for (entity, frame, coeffs, targets, params, truth) in &frames {
                    let params = match (params, settings.init) {
                        (Some(p), _) => p.clone(),
                        (None, PoseInit::Landmarks) => {
                            let x = crate::pgn::landmark_positions(&model.0, coeffs);
                            let fit = pgn::solve(&x, &targets.points).map_err(|e| StageError { system: "direct_pose", message: format!("frame {}: {e}", frame.name) })?;
                            params_of(&fit.rows())
                        }
                        (None, PoseInit::TruthOffset(degrees)) => match truth.and_then(|t| t.pose.as_ref()) {
                            Some(Pose::WeakPerspective { t }) => {
                                let mut p = params_of(t);
                                p.angles[0] += degrees.to_radians();
                                p
                            }
                            _ => return Err(StageError { system: "direct_pose", message: format!("frame {} has no weak-perspective true pose to start from", frame.name) }),
                        },
                    };
                    commands.entity(entity).insert((params.pose(), params));
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Pgn))
        },
    }
}

pub fn backward_entry() -> SystemEntry {
    SystemEntry {
        name: "direct_pose_backward",
        stage: Stage::BackwardPgn,
        reads: data![Grad<Pose>, PoseParams],
        writes: data![Grad<PoseParams>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of direct_pose: d pose → d yaw, pitch, roll, log scale, translation",
        build: |settings| {
            crate::parse_settings::<crate::NoSettings>(settings)?;
            Ok((|mut frames: Query<(&PoseParams, &Grad<Pose>, &mut Grad<PoseParams>)>| {
                for (params, g_pose, mut g_params) in frames.iter_mut() {
                    if let Pose::WeakPerspective { t } = &g_pose.value {
                        g_params.value.accumulate(&params_backward(params, t));
                    }
                }
            })
            .in_set(Stage::BackwardPgn))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_round_trip_through_the_rotation() {
        let angles = [0.7, -0.3, 0.2];
        let r = faceforge_kernels::project::rotation_ypr(angles[0], angles[1], angles[2]);
        let back = angles_of(&r);
        assert!((0..3).all(|k| (back[k] - angles[k]).abs() < 1e-5), "{back:?}");
        let p = PoseParams { angles, log_scale: 0.9f32.ln(), translation: [100.0, 90.0] };
        let Pose::WeakPerspective { t } = p.pose() else { unreachable!() };
        let q = params_of(&t);
        assert!((0..3).all(|k| (q.angles[k] - angles[k]).abs() < 1e-4) && (q.log_scale - p.log_scale).abs() < 1e-5, "{q:?}");
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let p = PoseParams { angles: [0.4, 0.1, -0.2], log_scale: 0.1, translation: [100.0, 90.0] };
        let grad_t = [[0.3, -0.5, 0.8, 0.2], [-0.1, 0.6, 0.4, -0.7]];
        let loss = |p: &PoseParams| -> f32 {
            let Pose::WeakPerspective { t } = p.pose() else { unreachable!() };
            (0..2).flat_map(|i| (0..4).map(move |j| (i, j))).map(|(i, j)| t[i][j] * grad_t[i][j]).sum()
        };
        let d = params_backward(&p, &grad_t);
        let h = 1e-3;
        for k in 0..3 {
            let (mut up, mut down) = (p.clone(), p.clone());
            up.angles[k] += h;
            down.angles[k] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!((numeric - d.angles[k]).abs() < 1e-2 * numeric.abs().max(0.1), "angle {k}: {numeric} vs {}", d.angles[k]);
        }
        let (mut up, mut down) = (p.clone(), p.clone());
        up.log_scale += h;
        down.log_scale -= h;
        let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
        assert!((numeric - d.log_scale).abs() < 1e-2 * numeric.abs().max(0.1));
    }
}
