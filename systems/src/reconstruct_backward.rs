//! reconstruct_backward: the adjoint of `reconstruct`. d mesh → d identity and expression
//! coefficients (Bᵀ g per basis), d albedo → d albedo coefficients.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry, NoSettings};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Albedo, Coeffs, Compute, Grad, Mesh, Model};
use crate::reconstruct::{decode_adjoint, DeviceModel};

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "reconstruct_backward",
        stage: Stage::BackwardReconstruct,
        reads: &["Coeffs", "Grad<Mesh>"],
        writes: &["Grad<Coeffs>"],
        summary: "adjoint of reconstruct: d mesh, d albedo → d coefficients",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            let mut device: Option<DeviceModel> = None;
            Ok((move |model: Res<Model>,
                 compute: Res<Compute>,
                 mut frames: Query<(Entity, &Coeffs, &Grad<Mesh>, Option<&Grad<Albedo>>, Option<&mut Grad<Coeffs>>)>,
                 mut commands: Commands|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let len = 3 * m.n_vertices();
                let device = DeviceModel::refresh(&mut device, backend, m);
                for (entity, _, g_mesh, g_albedo, g_coeffs) in frames.iter_mut() {
                    let no_albedo_grad = g_albedo.is_none_or(|g| g.value.rgb.is_empty());
                    if g_mesh.value.positions.is_empty() && no_albedo_grad {
                        continue; // no loss reached this frame
                    }
                    let zeros;
                    let d_mesh = if g_mesh.value.positions.is_empty() {
                        zeros = vec![0.0; len];
                        &zeros
                    } else {
                        &g_mesh.value.positions
                    };
                    if d_mesh.len() != len {
                        return Err(StageError { system: "reconstruct_backward", message: "the mesh gradient does not match the model".into() });
                    }
                    let (id, exp, tex) = decode_adjoint(backend, m, device, 1, d_mesh, g_albedo.map(|g| g.value.rgb.as_slice()).filter(|g| !g.is_empty()));
                    match g_coeffs {
                        Some(mut g) => {
                            accumulate(&mut g.value.id, &id);
                            accumulate(&mut g.value.exp, &exp);
                            accumulate(&mut g.value.tex, &tex);
                        }
                        None => {
                            commands.entity(entity).insert(Grad { value: Coeffs { id, exp, tex } });
                        }
                    }
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardReconstruct))
        },
    }
}
