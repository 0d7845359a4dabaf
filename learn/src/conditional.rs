//! encode_conditional: CEST's conditional estimation (`004_…` Eq. 2–4), one estimator after
//! another, each reading what the ones before it found:
//!
//! 1. f_v: the viewpoint v from the image (the network's first encoder and its pose head);
//! 2. f_s: identity and expression from the canonically aligned crop I∘v (`canonical`);
//! 3. the mesh under v, the image unwrapped into the UV atlas over the visible triangles (T,
//!    `unwrap`), and f_r: the reflectance from T — as the model's albedo coefficients, the
//!    per-vertex reflectance the renderer takes, where CEST predicts a free UV map;
//! 4. f_ℓ: 9 mono SH coefficients from the image, T and the reflectance drawn in UV (A).
//!
//! The warps between the stages (alignment, unwrapping) are data to the next estimator: each
//! estimator learns from the gradients of its own outputs, which `encode_backward` sends back
//! as for `encode`. It writes what `encode` writes for a network with pose and appearance
//! heads: `PoseParams`, `Coeffs` (with the albedo) and `Illumination`.

use crate::canonical::canonical_crop;
use crate::encode::{batch_order, input_tensor, push_chw};
use crate::learner::{flat, Learner, Pending};
use crate::network::{fusion_matrix, reference_scale, Outputs};
use bevy_ecs::prelude::*;
use burn::tensor::{Tensor, TensorData};
use faceforge_components::{Coeffs, Frame, Illumination, Image, Model, PoseParams};
use faceforge_kernels::Backend;
use faceforge_systems::reconstruct::{decode_albedo_cpu, decode_stacked};
use faceforge_systems::unwrap::{atlas_colours, unwrap, Unseen};
use faceforge_systems::{collect_errors, parse_settings, NoSettings, Stage, StageError, SystemEntry};
use faceforge_systems::data;

const NAME: &str = "encode_conditional";

/// HWC images (each `size` × `size`, `channels` per pixel) as a (B, channels, size, size)
/// tensor.
fn chw(images: &[Vec<f32>], channels: usize, size: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let mut data: Vec<f32> = Vec::with_capacity(images.len() * channels * size * size);
    images.iter().for_each(|image| push_chw(&mut data, image, channels));
    Tensor::from_data(TensorData::new(data, [images.len(), channels, size, size]), device)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Encode,
        reads: data![Image, Learner],
        writes: data![Coeffs, PoseParams, Illumination],
        reads_if_present: data![],
        adjoint: Some("encode_backward"),
        summary: "CEST's conditional chain: viewpoint from the image, shape from the aligned crop, reflectance from the unwrapped texture, light from all three",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>, mut learner: ResMut<Learner>, frames: Query<(Entity, &Frame, &Image)>, mut commands: Commands| -> Result<(), StageError> {
                let mut rows: Vec<_> = frames.iter().collect();
                if rows.is_empty() {
                    return Ok(());
                }
                if !learner.info.conditional {
                    return Err(StageError { system: NAME, message: "the network has no conditional chain: learn.conditional: true (with pose_head and appearance)".into() });
                }
                rows.sort_by_key(|r| batch_order(r.1));
                let m = &model.0;
                let (size, device) = (learner.info.network.input, learner.device.clone());
                let (net, readout) = (&learner.net, &learner.readout);
                // 1. The viewpoint.
                let inputs: Vec<(&Frame, &Image, &[[f32; 2]])> = rows.iter().map(|r| (r.1, r.2, &[][..])).collect();
                let images = input_tensor(&learner, &inputs, NAME)?;
                let pose = net.forward_viewpoint(images.clone(), readout);
                let params: Vec<_> = flat(pose.clone()).chunks(6).map(crate::encode::pose_params).collect();
                // 2. The shape from the aligned crops.
                let scale = reference_scale(m, size);
                let aligned: Vec<Vec<f32>> = rows.iter().zip(&params).map(|(r, p)| canonical_crop(r.2, p, scale, size)).collect();
                let subjects: Vec<u32> = rows.iter().map(|r| r.1.subject_id).collect();
                let (identity, expression) = net.forward_shape(chw(&aligned, 3, size, &device), fusion_matrix(&subjects, &device), readout);
                let (ids, exps) = (flat(identity.clone()), flat(expression.clone()));
                // 3. The texture T over the visible triangles, and the reflectance from it.
                let b = rows.len();
                let (shapes, _) = decode_stacked(&Backend::Cpu, m, None, b, &ids, &exps, None);
                let len = 3 * m.n_vertices();
                let textures: Vec<Vec<f32>> = rows.iter().zip(&params).zip(shapes.chunks(len)).map(|((r, p), shape)| unwrap(m, shape, &p.pose(), r.2, size, Unseen::Zero).0).collect();
                let albedo = net.forward_reflectance(chw(&textures, 3, size, &device), readout);
                let tex = flat(albedo.clone());
                // 4. The light from the image, T and A.
                let colours = decode_albedo_cpu(m, b, &tex);
                let reflectance: Vec<Vec<f32>> = colours.chunks(len).map(|c| atlas_colours(m, c, size)).collect();
                let stacked = Tensor::cat(vec![images, chw(&textures, 3, size, &device), chw(&reflectance, 3, size, &device)], 1);
                let lighting = net.forward_lighting(stacked, readout);
                let sh = flat(lighting.clone());
                let (n_id, n_exp, n_tex) = (learner.info.n_id, learner.info.n_exp, readout.n_albedo);
                for (k, ((entity, _, _), p)) in rows.iter().zip(&params).enumerate() {
                    let coeffs = Coeffs { id: ids[k * n_id..(k + 1) * n_id].to_vec(), exp: exps[k * n_exp..(k + 1) * n_exp].to_vec(), tex: tex[k * n_tex..(k + 1) * n_tex].to_vec() };
                    commands.entity(*entity).insert((coeffs, p.clone(), Illumination { sh: sh[27 * k..27 * (k + 1)].to_vec() }));
                }
                let landmarks = Tensor::zeros([b, learner.info.n_landmarks, 3], &device);
                let outputs = Outputs { landmarks, identity, expression, pose: Some(pose), albedo: Some(albedo), lighting: Some(lighting) };
                let pending = learner.training.then(|| Pending { entities: rows.iter().map(|r| r.0).collect(), outputs });
                *learner.pending.get_mut().expect("not poisoned") = pending;
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Encode))
        },
    }
}
