//! loss_self_critic: 2DASL's L_sc (`002_…` §2, §3 step 4). The critic (`critic::Critic`, part of the
//! network when `learn.critic` is set) scores image–parameter pairs: true pairs (z of a
//! 3D-annotated frame, its ground truth α*) against predicted ones (z of each frame, the
//! regressor's α̂).
//!
//! - The critic's side, −log D(z*, α*) − log(1 − D(z̄, α̂)), trains the critic alone (α̂
//!   detached); it goes into this step's burn backward pass as a surrogate.
//! - The regressor's side is the non-saturating form λ_4 · −log D(z̄, α̂) (the paper writes the
//!   minimax form; its log(1 − D) gives the regressor no gradient while the critic wins): its
//!   gradient with respect to α̂ goes to `Grad<Pose>` / `Grad<Coeffs>` like any loss's. z̄ is
//!   held constant there: only the critic's own loss trains its encoder.
//!
//! λ_4 = 0.005 (`self_critic`), the terms averaged over their pairs.

use crate::critic::{discriminator_loss, AlphaScale};
use crate::encode::{batch_order, input_tensor, rows_tensor};
use crate::learner::{flat, Learner};
use bevy_ecs::prelude::*;
use burn::tensor::activation::softplus;
use burn::tensor::{Tensor, TensorData};
use faceforge_components::{accumulate, Coeffs, Frame, Grad, GroundTruth, Image, Landmarks3d, LossTerms, LossWeights, Model, Pose};
use faceforge_systems::{add_pose_grad, collect_errors, parse_settings, NoSettings, Stage, StageError, SystemEntry};
use faceforge_systems::data;

const NAME: &str = "loss_self_critic";
pub const WEIGHT: f32 = 0.005;

type Row<'a> = (&'a Frame, &'a Image, &'a Pose, &'a Coeffs, Option<&'a GroundTruth>, Has<Landmarks3d>, &'a mut Grad<Pose>, &'a mut Grad<Coeffs>);

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Loss,
        reads: data![Image, Pose, Coeffs, GroundTruth, Learner],
        writes: data![Grad<Pose>, Grad<Coeffs>, LossTerms, Learner],
        reads_if_present: data![],
        adjoint: None,
        summary: "2DASL's self-critic: a discriminator of (image, parameters) pairs trained against the regressor",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>, learner: Res<Learner>, weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<Row>| -> Result<(), StageError> {
                let Some(critic) = learner.net.critic.as_ref() else {
                    return Err(StageError { system: NAME, message: "the network has no critic: learn.critic: true".into() });
                };
                let lambda = weights.get("self_critic", WEIGHT);
                let mut rows: Vec<_> = frames.iter_mut().collect();
                if rows.is_empty() {
                    return Ok(());
                }
                rows.sort_by_key(|r| batch_order(r.0));
                let size = learner.info.network.input;
                let scale = AlphaScale::new(&model.0, size).map_err(|message| StageError { system: NAME, message })?;
                let fail = |frame: &Frame, e: String| StageError { system: NAME, message: format!("frame {}: {e}", frame.name) };
                let mut predicted = Vec::with_capacity(rows.len());
                let mut real = Vec::new();
                for (k, (frame, _, pose, coeffs, truth, annotated, _, _)) in rows.iter().enumerate() {
                    predicted.push(scale.alpha(pose, coeffs).map_err(|e| fail(frame, e))?);
                    if let (true, Some(GroundTruth { coeffs, pose: Some(pose), .. })) = (*annotated, truth) {
                        real.push((k, scale.alpha(pose, coeffs).map_err(|e| fail(frame, e))?));
                    }
                }
                let inputs: Vec<(&Frame, &Image, &[[f32; 2]])> = rows.iter().map(|r| (r.0, r.1, &[][..])).collect();
                let images = input_tensor(&learner, &inputs, NAME)?;
                let [b, _, _, _] = images.dims();
                let z = critic.latent(images.narrow(1, 0, 3));
                let device = &learner.device;
                let width = scale.len();
                // The critic's side.
                if !real.is_empty() {
                    let index: Vec<i64> = real.iter().map(|(k, _)| *k as i64).collect();
                    let index = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(index, [real.len()]), device);
                    let true_alpha: Vec<Vec<f32>> = real.iter().map(|(_, a)| a.clone()).collect();
                    let real_logits = critic.score(z.clone().select(0, index), rows_tensor(true_alpha, width, device));
                    let fake_logits = critic.score(z.clone(), rows_tensor(predicted.clone(), width, device));
                    learner.add_surrogate(discriminator_loss(real_logits, fake_logits));
                }
                // The regressor's side: the gradient with respect to α̂.
                let alpha = rows_tensor(predicted, width, device).require_grad();
                let generator = softplus(critic.score(z.detach(), alpha.clone()).neg(), 1.0).mean();
                let value = flat(generator.clone())[0];
                let grads = generator.backward();
                let d_alpha = alpha.grad(&grads).map(flat).unwrap_or_else(|| vec![0.0; b * width]);
                for ((_, _, _, _, _, _, g_pose, g_coeffs), d) in rows.iter_mut().zip(d_alpha.chunks(width)) {
                    let d: Vec<f32> = d.iter().map(|g| g * lambda).collect();
                    let (d_t, d_id, d_exp) = scale.backward(&d);
                    add_pose_grad(&mut g_pose.value, &Pose::WeakPerspective { t: d_t });
                    accumulate(&mut g_coeffs.value.id, &d_id);
                    accumulate(&mut g_coeffs.value.exp, &d_exp);
                }
                terms.terms.insert("self_critic".into(), lambda * value);
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Loss))
        },
    }
}
