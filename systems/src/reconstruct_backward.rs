//! reconstruct_backward: the adjoint of `reconstruct`. d mesh → d identity and expression
//! coefficients (Bᵀ g per basis), d albedo → d albedo coefficients.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Albedo, Coeffs, Compute, Grad, Mesh, Model};
use faceforge_kernels::decode::{self, DecodeShape};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "reconstruct_backward",
        stage: Stage::BackwardReconstruct,
        reads: &["Coeffs", "Grad<Mesh>"],
        writes: &["Grad<Coeffs>"],
        summary: "adjoint of reconstruct: d mesh, d albedo → d coefficients",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>,
                 compute: Res<Compute>,
                 mut frames: Query<(Entity, &Coeffs, &Grad<Mesh>, Option<&Grad<Albedo>>, Option<&mut Grad<Coeffs>>)>,
                 mut commands: Commands|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let len = 3 * m.n_vertices();
                for (entity, _, g_mesh, g_albedo, g_coeffs) in frames.iter_mut() {
                    if g_mesh.value.positions.len() != len {
                        return Err(StageError { system: "reconstruct_backward", message: "the mesh gradient does not match the model".into() });
                    }
                    let shape = |components| DecodeShape { batch: 1, components, len, base_per_item: false };
                    let id = decode::backward(backend, shape(m.n_id()), m.id_basis(), &g_mesh.value.positions);
                    let exp = decode::backward(backend, shape(m.n_exp()), m.exp_basis(), &g_mesh.value.positions);
                    let tex = match g_albedo {
                        Some(g) => decode::backward(backend, shape(m.n_albedo()), m.albedo_basis(), &g.value.rgb),
                        None => vec![0.0; m.n_albedo()],
                    };
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
