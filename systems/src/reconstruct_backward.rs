//! reconstruct_backward: the adjoint of `reconstruct`. d mesh → d identity and expression
//! coefficients (Bᵀ g per basis), d albedo → d albedo coefficients, for all frames in one batched
//! product per basis.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry, NoSettings};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Albedo, Coeffs, Compute, Grad, Mesh, Model};
use crate::reconstruct::{decode_adjoint, DeviceModel, LandmarkBases};

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "reconstruct_backward",
        stage: Stage::BackwardReconstruct,
        reads: data![Coeffs, Grad<Mesh>],
        writes: data![Grad<Coeffs>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of reconstruct: d mesh, d albedo → d coefficients",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            let (mut device, mut landmark_bases): (Option<DeviceModel>, Option<LandmarkBases>) = (None, None);
            Ok((move |model: Res<Model>,
                 compute: Res<Compute>,
                 mut frames: Query<(&Grad<Mesh>, &Grad<Albedo>, &mut Grad<Coeffs>), With<Coeffs>>|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let len = 3 * m.n_vertices();
                let device = DeviceModel::refresh(&mut device, backend, m);
                // The frames a loss reached, their gradients stacked so the adjoint is one
                // product over the batch (each basis read once, not once per frame).
                let mut reached = Vec::new();
                for (g_mesh, g_albedo, g_coeffs) in frames.iter_mut() {
                    let (mesh, albedo) = (&g_mesh.value.positions, &g_albedo.value.rgb);
                    if mesh.is_empty() && albedo.is_empty() {
                        continue; // no loss reached this frame
                    }
                    if [mesh, albedo].iter().any(|g| !g.is_empty() && g.len() != len) {
                        return Err(StageError { system: "reconstruct_backward", message: "the mesh gradient does not match the model".into() });
                    }
                    reached.push((mesh, albedo, g_coeffs));
                }
                if reached.is_empty() {
                    return Ok(());
                }
                let batch = reached.len();
                let (n_id, n_exp, n_tex) = (m.n_id(), m.n_exp(), m.n_albedo());
                let bases = LandmarkBases::refresh(&mut landmark_bases, m);
                let no_albedo = reached.iter().all(|(_, albedo, _)| albedo.iter().all(|g| *g == 0.0));
                let (id, exp, tex) = if no_albedo && reached.iter().all(|(mesh, _, _)| bases.only_at_landmarks(mesh)) {
                    // Only landmark losses reached the meshes: the adjoint over those rows is
                    // exact and reads a few kilobytes of the bases instead of all of them.
                    let gathered = stack(reached.iter().map(|r| r.0), 3 * bases.vertices.len(), |g| bases.gather(g));
                    let (id, exp) = bases.adjoint(batch, &gathered);
                    (id, exp, vec![0.0; batch * n_tex])
                } else {
                    let d_mesh = stack(reached.iter().map(|r| r.0), len, <[f32]>::to_vec);
                    let d_albedo = (!no_albedo).then(|| stack(reached.iter().map(|r| r.1), len, <[f32]>::to_vec));
                    decode_adjoint(backend, m, device, batch, &d_mesh, d_albedo.as_deref())
                };
                for (b, (_, _, g_coeffs)) in reached.iter_mut().enumerate() {
                    accumulate(&mut g_coeffs.value.id, &id[b * n_id..(b + 1) * n_id]);
                    accumulate(&mut g_coeffs.value.exp, &exp[b * n_exp..(b + 1) * n_exp]);
                    accumulate(&mut g_coeffs.value.tex, &tex[b * n_tex..(b + 1) * n_tex]);
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardReconstruct))
        },
    }
}

/// The rows one after another, each as `each` makes it, zeros (`width` of them) for a frame no
/// gradient reached.
fn stack<'a>(rows: impl Iterator<Item = &'a Vec<f32>>, width: usize, each: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    rows.flat_map(|g| if g.is_empty() { vec![0.0; width] } else { each(g) }).collect()
}
