//! pinhole_pose: MGCNet's camera, a pinhole pose per frame as free parameters (Euler angles and
//! a translation, `PinholeParams`) with known intrinsics: the data's calibration when its true
//! pose is a pinhole one, else `focal` image widths with the principal point at the centre.
//! The parameters start from the landmarks — the weak-perspective fit's scaled rotation, its
//! scale s giving the distance t_z = f / s and its image centre the lateral offset — or, for
//! tests and upper-bound rows, from the true pose with its yaw turned by a given angle.
//! `pinhole_pose_backward` turns dL/d(R, t) into gradients of the parameters.
//!
//! In learn mode a network's pose head gives each frame `PoseParams` (angles, log scale, image
//! position of the origin): the pinhole parameters then follow from them every iteration the
//! same way (distance f / s), and the backward carries the gradient on to them.

use crate::direct_pose::{angles_of, params_of, rotation_partials, PoseInit};
use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Coeffs, Frame, Grad, GroundTruth, Image, Landmarks2d, Model, PinholeParams, Pose, PoseParams};
use faceforge_kernels::pgn;
use serde::Deserialize;

const NAME: &str = "pinhole_pose";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinholePoseSettings {
    pub init: PoseInit,
    /// Focal length in image widths for uncalibrated data (MGCNet's 1015 px at 224 px is 4.53).
    pub focal: f32,
}

impl Default for PinholePoseSettings {
    fn default() -> Self {
        Self { init: PoseInit::Landmarks, focal: 1015.0 / 224.0 }
    }
}

/// The parameters whose pose best matches a weak-perspective one (rows of [s·R | t]) seen
/// through `intrinsics`: same rotation, distance f / s, the model's origin at the same pixel.
pub fn from_weak(t: &[[f32; 4]; 2], intrinsics: [f32; 4]) -> PinholeParams {
    from_weak_params(&params_of(t), intrinsics)
}

/// `from_weak` from the weak pose's parameters.
pub fn from_weak_params(weak: &PoseParams, intrinsics: [f32; 4]) -> PinholeParams {
    let [fx, fy, cx, cy] = intrinsics;
    let distance = fx / weak.log_scale.exp();
    let translation = [(weak.translation[0] - cx) * distance / fx, (weak.translation[1] - cy) * distance / fy, distance];
    PinholeParams { angles: weak.angles, translation, intrinsics }
}

/// The adjoint of `from_weak_params`: with d = f_x e^(−log s), t = ((u₀ − c_x) d / f_x,
/// (v₀ − c_y) d / f_y, d), every component of t scales with d, so ∂t/∂log s = −t.
pub fn from_weak_params_backward(pinhole: &PinholeParams, grad: &PinholeParams) -> PoseParams {
    let [fx, fy, ..] = pinhole.intrinsics;
    let (t, g) = (pinhole.translation, grad.translation);
    PoseParams { angles: grad.angles, log_scale: -(0..3).map(|k| g[k] * t[k]).sum::<f32>(), translation: [g[0] * t[2] / fx, g[1] * t[2] / fy] }
}

/// The parameters of a pinhole pose (R = diag(1, −1, −1) R_ypr).
pub fn from_pinhole(k: &[f32; 9], r: &[f32; 9], t: [f32; 3]) -> PinholeParams {
    let r_ypr: [f32; 9] = std::array::from_fn(|i| if i < 3 { r[i] } else { -r[i] });
    PinholeParams { angles: angles_of(&r_ypr), translation: t, intrinsics: [k[0], k[4], k[2], k[5]] }
}

/// dL/d(R, t) → dL/d parameters (the intrinsics get none).
pub fn params_backward(p: &PinholeParams, grad_r: &[f32; 9], grad_t: [f32; 3]) -> PinholeParams {
    let partials = rotation_partials(p.angles);
    let angles = partials.map(|d| (0..9).map(|k| grad_r[k] * if k < 3 { d[k] } else { -d[k] }).sum());
    PinholeParams { angles, translation: grad_t, intrinsics: [0.0; 4] }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Pgn,
        reads: data![Coeffs, Landmarks2d, Image],
        writes: data![Pose, PinholeParams],
        reads_if_present: data![PoseParams, PinholeParams],
        adjoint: Some("pinhole_pose_backward"),
        summary: "pinhole pose as free parameters (Euler angles, translation; known intrinsics): MGCNet's camera",
        build: |settings| {
            let settings: PinholePoseSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>,
                      frames: Query<(Entity, &Frame, &Coeffs, &Landmarks2d, &Image, Option<&PinholeParams>, Option<&GroundTruth>, Option<&PoseParams>)>,
                      mut commands: Commands|
                  -> Result<(), StageError> {
                for (entity, frame, coeffs, targets, image, params, truth, network) in &frames {
                    let params = match (params, network) {
                        (Some(p), Some(weak)) => from_weak_params(weak, p.intrinsics),
                        (Some(p), None) => p.clone(),
                        (None, _) => {
                            let calibrated = match truth.and_then(|t| t.pose.as_ref()) {
                                Some(Pose::Pinhole { k, r, t }) => Some(from_pinhole(k, r, *t)),
                                _ => None,
                            };
                            let (w, h) = (image.width as f32, image.height as f32);
                            let intrinsics = calibrated.as_ref().map_or([settings.focal * w, settings.focal * w, w / 2.0, h / 2.0], |c| c.intrinsics);
                            match (network, settings.init) {
                                (Some(weak), _) => from_weak_params(weak, intrinsics),
                                (None, PoseInit::Landmarks) => {
                                    let x = crate::pgn::landmark_positions(&model.0, coeffs);
                                    let fit = pgn::solve(&x, &targets.points).map_err(|e| StageError { system: NAME, message: format!("frame {}: {e}", frame.name) })?;
                                    from_weak(&fit.rows(), intrinsics)
                                }
                                (None, PoseInit::TruthOffset(degrees)) => {
                                    let Some(mut p) = calibrated else {
                                        return Err(StageError { system: NAME, message: format!("frame {} has no pinhole true pose to start from", frame.name) });
                                    };
                                    p.angles[0] += degrees.to_radians();
                                    p
                                }
                            }
                        }
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
        name: "pinhole_pose_backward",
        stage: Stage::BackwardPgn,
        reads: data![Grad<Pose>, PinholeParams],
        writes: data![Grad<PinholeParams>, Grad<PoseParams>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of pinhole_pose: d rotation, translation → d Euler angles, translation (→ a pose head's parameters)",
        build: |settings| {
            crate::parse_settings::<crate::NoSettings>(settings)?;
            Ok((|mut frames: Query<(&PinholeParams, &Grad<Pose>, &mut Grad<PinholeParams>, Option<&PoseParams>, &mut Grad<PoseParams>)>| {
                for (params, g_pose, mut g_params, network, mut g_network) in frames.iter_mut() {
                    if let Pose::Pinhole { r, t, .. } = &g_pose.value {
                        let d = params_backward(params, r, *t);
                        let g = &mut g_params.value;
                        (0..3).for_each(|k| g.angles[k] += d.angles[k]);
                        (0..3).for_each(|k| g.translation[k] += d.translation[k]);
                        if network.is_some() {
                            g_network.value.accumulate(&from_weak_params_backward(params, &d));
                        }
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
    use faceforge_kernels::project::{forward_cpu, CameraModel};

    #[test]
    fn far_away_it_projects_like_the_weak_pose_it_started_from_and_round_trips() {
        let weak = Pose::weak_from_angles(25.0, -10.0, 5.0, 0.9, [118.0, 104.0]);
        let Pose::WeakPerspective { t } = &weak else { unreachable!() };
        // A long lens: the pinhole's perspective is slight and the two agree to a pixel.
        let p = from_weak(t, [9000.0, 9000.0, 112.0, 112.0]);
        let points: Vec<f32> = (0..30).flat_map(|i| [(i as f32 * 1.7).sin() * 60.0, (i as f32 * 0.9).cos() * 70.0, (i as f32 * 2.3).sin() * 40.0]).collect();
        let (wm, wc) = weak.camera();
        let (pm, pc) = p.pose().camera();
        assert_eq!(pm, CameraModel::Pinhole);
        let (a, b) = (forward_cpu(wm, &points, &wc, 30), forward_cpu(pm, &points, &pc, 30));
        let worst = (0..30).map(|v| (a[4 * v] - b[4 * v]).hypot(a[4 * v + 1] - b[4 * v + 1])).fold(0.0f32, f32::max);
        assert!(worst < 1.0, "{worst} px apart");
        let Pose::Pinhole { k, r, t } = p.pose() else { unreachable!() };
        let back = from_pinhole(&k, &r, t);
        assert!((0..3).all(|i| (back.angles[i] - p.angles[i]).abs() < 1e-5 && (back.translation[i] - p.translation[i]).abs() < 1e-3), "{back:?} vs {p:?}");
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let p = PinholeParams { angles: [0.4, 0.1, -0.2], translation: [3.0, -4.0, 9.0], intrinsics: [1000.0, 1000.0, 112.0, 112.0] };
        let (w_r, w_t): ([f32; 9], [f32; 3]) = (std::array::from_fn(|k| 0.2 * k as f32 - 0.7), [0.3, -0.4, 0.5]);
        let loss = |q: &PinholeParams| {
            let Pose::Pinhole { r, t, .. } = q.pose() else { unreachable!() };
            (0..9).map(|k| w_r[k] * r[k]).sum::<f32>() + (0..3).map(|k| w_t[k] * t[k]).sum::<f32>()
        };
        let d = params_backward(&p, &w_r, w_t);
        for k in 0..3 {
            let h = 1e-3;
            let (mut up, mut down) = (p.clone(), p.clone());
            up.angles[k] += h;
            down.angles[k] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!((numeric - d.angles[k]).abs() < 1e-2 * numeric.abs().max(0.1), "angle {k}: {numeric} vs {}", d.angles[k]);
            assert_eq!(d.translation[k], w_t[k]);
        }
    }

    #[test]
    fn the_weak_parameters_adjoint_matches_central_differences() {
        let weak = PoseParams { angles: [0.3, -0.1, 0.05], log_scale: 0.2f32.ln(), translation: [40.0, 28.0] };
        let k = [290.0, 290.0, 32.0, 32.0];
        let g = PinholeParams { angles: [0.1, 0.2, 0.3], translation: [0.7, -0.4, 0.25], intrinsics: [0.0; 4] };
        let loss = |w: &PoseParams| {
            let p = from_weak_params(w, k);
            (0..3).map(|i| g.angles[i] * p.angles[i] + g.translation[i] * p.translation[i]).sum::<f32>()
        };
        let d = from_weak_params_backward(&from_weak_params(&weak, k), &g);
        let h = 1e-3;
        let (mut up, mut down) = (weak.clone(), weak.clone());
        up.log_scale += h;
        down.log_scale -= h;
        let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
        assert!((numeric - d.log_scale).abs() < 1e-2 * numeric.abs().max(1.0), "log scale: {numeric} vs {}", d.log_scale);
        for i in 0..2 {
            let (mut up, mut down) = (weak.clone(), weak.clone());
            up.translation[i] += 0.1;
            down.translation[i] -= 0.1;
            let numeric = (loss(&up) - loss(&down)) / 0.2;
            assert!((numeric - d.translation[i]).abs() < 1e-2 * numeric.abs().max(0.1), "translation {i}: {numeric} vs {}", d.translation[i]);
        }
        assert_eq!(d.angles, g.angles);
    }
}
