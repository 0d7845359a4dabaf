//! loss_weighted_coefficients: 2DASL's L_3d = (α* − α̂)ᵀ W (α* − α̂) over the 62 parameters in
//! standard units (`params62::standard_units`: 3DDFA whitens them), W 3DDFA's OWPDC weights (`consistency::weighted_coefficient_loss`), for the frames with 3D
//! annotations (`Landmarks3d`: 300W-LP's role; a training's `two_d_fraction` drops them from the
//! in-the-wild share). The third pose row and t_z do not move the projected landmarks, so their
//! weights are 0 and the gradient reaches the two weak-perspective rows, identity and expression.

use crate::consistency::weighted_coefficient_loss;
use crate::params62::{standard_units, Params62, POSE, SHAPE};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Coeffs, Frame, Grad, GroundTruth, Image, Landmarks3d, LossTerms, LossWeights, Model, Pose};
use faceforge_systems::{add_pose_grad, collect_errors, parse_settings, NoSettings, Stage, StageError, SystemEntry};
use faceforge_systems::data;

const NAME: &str = "loss_weighted_coefficients";
pub const WEIGHT: f32 = 1.0;

fn params(frame: &Frame, pose: &Pose, coeffs: &Coeffs, what: &str) -> Result<Params62, StageError> {
    Params62::from_pose_and_coeffs(pose, coeffs).map_err(|e| StageError { system: NAME, message: format!("frame {} ({what}): {e}", frame.name) })
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Loss,
        reads: data![Pose, Coeffs, GroundTruth],
        writes: data![Grad<Pose>, Grad<Coeffs>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "2DASL's weighted coefficient loss over the 62 parameters (3DDFA's OWPDC weights), on 3D-annotated frames",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>, images: Query<&Image>, weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Frame, &Pose, &Coeffs, &GroundTruth, &mut Grad<Pose>, &mut Grad<Coeffs>), With<Landmarks3d>>| -> Result<(), StageError> {
                let lambda = weights.get("weighted_coefficients", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                // The crop size the units refer to (every frame of a batch has the network's).
                let size = images.iter().next().map_or(0, |i| i.width);
                let (factor, _) = standard_units(&model.0, size).map_err(|message| StageError { system: NAME, message })?;
                let mut total = 0.0;
                for (frame, pose, coeffs, truth, mut g_pose, mut g_coeffs) in frames.iter_mut() {
                    let Some(truth_pose) = &truth.pose else {
                        return Err(StageError { system: NAME, message: format!("frame {} has no true pose", frame.name) });
                    };
                    let predicted = params(frame, pose, coeffs, "prediction")?.to_vec();
                    let target = params(frame, truth_pose, &truth.coeffs, "ground truth")?.to_vec();
                    let (value, grad) = weighted_coefficient_loss(&model.0, &predicted, &target, &factor).map_err(|message| StageError { system: NAME, message })?;
                    total += value;
                    let g: Vec<f32> = grad.iter().map(|g| g * lambda / count).collect();
                    let rows = [std::array::from_fn(|k| g[k]), std::array::from_fn(|k| g[4 + k])];
                    add_pose_grad(&mut g_pose.value, &Pose::WeakPerspective { t: rows });
                    accumulate(&mut g_coeffs.value.id, &g[POSE..POSE + SHAPE]);
                    accumulate(&mut g_coeffs.value.exp, &g[POSE + SHAPE..]);
                }
                terms.terms.insert("weighted_coefficients".into(), lambda * total / count);
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Loss))
        },
    }
}
