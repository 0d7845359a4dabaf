//! pgn: each frame's pose in closed form from landmarks (PGN Eq. 3–4), T = X_UV [X;1]ᵀ ([X;1][X;1]ᵀ)⁻¹,
//! with X the 68 landmark vertices of the frame's current shape and X_UV the frame's target
//! landmarks (in fit mode the given 2D landmarks: the x and y rows of T depend only on the
//! targets' x and y, see `kernels::pgn`). `pgn_backward` sends dL/dT back to the coefficients
//! through X, so the shape is fitted knowing that the pose follows it.
//!
//! X is decoded here from the coefficients (68 rows of the bases), since the pose stage runs
//! before `reconstruct`.
//!
//! `camera: Affine` is the paper's unconstrained T. `camera: ScaledRotation` replaces it by the
//! nearest scaled rotation (still in closed form, with its adjoint): in a fit, an affine T absorbs
//! every shape change that is an affine map of the landmarks, leaving those identity directions
//! to the prior alone (docs/fitting.md).

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use serde::Deserialize;
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Coeffs, Frame, Grad, Landmarks2d, Model, Pose};
use faceforge_kernels::pgn::{self, PoseFit};
use faceforge_model::MorphableModel;

/// Which T the frame's pose is; `pgn` puts it on each frame so that `pgn_backward` follows.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum PgnCamera {
    /// T as Eq. 4 gives it: an unconstrained 2 × 4 affine map.
    #[default]
    Affine,
    /// T projected to the nearest scaled rotation (a weak-perspective camera proper).
    ScaledRotation,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgnSettings {
    pub camera: PgnCamera,
}

/// The model's landmark vertices for these coefficients (mm).
pub fn landmark_positions(m: &MorphableModel, coeffs: &Coeffs) -> Vec<[f32; 3]> {
    let len = 3 * m.n_vertices();
    let (mean, id, exp) = (m.mean_shape(), m.id_basis(), m.exp_basis());
    m.landmarks()
        .iter()
        .map(|&v| {
            std::array::from_fn(|c| {
                let row = 3 * v as usize + c;
                let by_id: f32 = coeffs.id.iter().enumerate().map(|(k, a)| id[k * len + row] * a).sum();
                let by_exp: f32 = coeffs.exp.iter().enumerate().map(|(k, b)| exp[k * len + row] * b).sum();
                mean[row] + by_id + by_exp
            })
        })
        .collect()
}

/// The adjoint of `landmark_positions`: d landmarks → (d identity, d expression).
pub fn landmark_positions_backward(m: &MorphableModel, grad: &[[f32; 3]]) -> (Vec<f32>, Vec<f32>) {
    let len = 3 * m.n_vertices();
    let project = |basis: &[f32], k: usize| -> f32 {
        m.landmarks().iter().zip(grad).map(|(&v, g)| (0..3).map(|c| basis[k * len + 3 * v as usize + c] * g[c]).sum::<f32>()).sum()
    };
    ((0..m.n_id()).map(|k| project(m.id_basis(), k)).collect(), (0..m.n_exp()).map(|k| project(m.exp_basis(), k)).collect())
}

fn check(m: &MorphableModel, frame: &Frame, coeffs: &Coeffs, targets: &Landmarks2d, system: &'static str) -> Result<(), StageError> {
    let fail = |message: String| Err(StageError { system, message });
    if coeffs.id.len() != m.n_id() || coeffs.exp.len() != m.n_exp() {
        return fail(format!("frame {} has {} identity / {} expression coefficients, the model has {} / {}", frame.name, coeffs.id.len(), coeffs.exp.len(), m.n_id(), m.n_exp()));
    }
    if targets.points.len() != m.landmarks().len() {
        return fail(format!("frame {} has {} landmarks, the model has {}", frame.name, targets.points.len(), m.landmarks().len()));
    }
    Ok(())
}

fn solve(m: &MorphableModel, frame: &Frame, coeffs: &Coeffs, targets: &Landmarks2d, system: &'static str) -> Result<(Vec<[f32; 3]>, PoseFit), StageError> {
    check(m, frame, coeffs, targets, system)?;
    let x = landmark_positions(m, coeffs);
    let fit = pgn::solve(&x, &targets.points).map_err(|e| StageError { system, message: format!("frame {}: {e}", frame.name) })?;
    Ok((x, fit))
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "pgn",
        stage: Stage::Pgn,
        reads: data![Coeffs, Landmarks2d],
        writes: data![Pose],
        reads_if_present: data![],
        adjoint: Some("pgn_backward"),
        summary: "pose in closed form from the landmarks (PGN Eq. 3–4)",
        build: |settings| {
            let settings: PgnSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>, frames: Query<(Entity, &Frame, &Coeffs, &Landmarks2d)>, mut commands: Commands| -> Result<(), StageError> {
                for (entity, frame, coeffs, targets) in &frames {
                    let (_, fit) = solve(&model.0, frame, coeffs, targets, "pgn")?;
                    let t = match settings.camera {
                        PgnCamera::Affine => fit.rows(),
                        PgnCamera::ScaledRotation => fit.scaled_rotation().map(|r| r.map(|v| v as f32)),
                    };
                    commands.entity(entity).insert((Pose::WeakPerspective { t }, settings.camera));
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
        name: "pgn_backward",
        stage: Stage::BackwardPgn,
        reads: data![Grad<Pose>, Coeffs, Landmarks2d],
        writes: data![Grad<Coeffs>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of pgn: d pose → d landmark vertices → d identity and expression",
        build: |settings| {
            parse_settings::<crate::NoSettings>(settings)?;
            Ok((|model: Res<Model>, mut frames: Query<(&Frame, &Coeffs, &Landmarks2d, Option<&PgnCamera>, &Grad<Pose>, &mut Grad<Coeffs>)>| -> Result<(), StageError> {
                let m = &model.0;
                for (frame, coeffs, targets, camera, g_pose, mut g_coeffs) in frames.iter_mut() {
                    let Pose::WeakPerspective { t: grad_t } = g_pose.value else {
                        return Err(StageError { system: "pgn_backward", message: format!("frame {}: PGN's pose is weak perspective, the gradient is not", frame.name) });
                    };
                    if grad_t.iter().flatten().all(|g| *g == 0.0) {
                        continue;
                    }
                    let (x, fit) = solve(m, frame, coeffs, targets, "pgn_backward")?;
                    let grad_t = match camera.copied().unwrap_or_default() {
                        PgnCamera::Affine => grad_t,
                        PgnCamera::ScaledRotation => fit.scaled_rotation_backward(&grad_t),
                    };
                    let d_x = fit.backward(&x, &targets.points, &grad_t);
                    let (d_id, d_exp) = landmark_positions_backward(m, &d_x);
                    accumulate(&mut g_coeffs.value.id, &d_id);
                    accumulate(&mut g_coeffs.value.exp, &d_exp);
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardPgn))
        },
    }
}
