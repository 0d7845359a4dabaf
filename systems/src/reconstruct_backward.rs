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
                 mut frames: Query<(&Grad<Mesh>, &Grad<Albedo>, &mut Grad<Coeffs>), With<Coeffs>>|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let len = 3 * m.n_vertices();
                let device = DeviceModel::refresh(&mut device, backend, m);
                for (g_mesh, g_albedo, mut g_coeffs) in frames.iter_mut() {
                    let albedo = (!g_albedo.value.rgb.is_empty()).then_some(g_albedo.value.rgb.as_slice());
                    if g_mesh.value.positions.is_empty() && albedo.is_none() {
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
                    let (id, exp, tex) = decode_adjoint(backend, m, device, 1, d_mesh, albedo);
                    accumulate(&mut g_coeffs.value.id, &id);
                    accumulate(&mut g_coeffs.value.exp, &exp);
                    accumulate(&mut g_coeffs.value.tex, &tex);
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardReconstruct))
        },
    }
}
