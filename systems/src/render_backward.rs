//! render_backward: the adjoint of `render`. From dL/d(rendered colour) it goes back through
//! interpolation (visibility held fixed) to the vertex colours and the projected vertices,
//! through projection to the mesh and the pose, and through SH shading to the albedo, the
//! lighting and the normals, and through the normals to the mesh again.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Albedo, Compute, Grad, Illumination, Mesh, Model, Normals, Pose, Rendered};
use faceforge_kernels::normals::{self, Adjacency};
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::shade::{self, Lighting, ShadeShape};
use faceforge_kernels::{interpolate, project};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

/// The frame's 27 RGB coefficients (9 mono ones repeated; white ambient light without any).
fn rgb_lighting(illumination: Option<&Illumination>) -> Vec<f32> {
    match illumination {
        Some(l) if l.sh.len() == 27 => l.sh.clone(),
        Some(l) if l.sh.len() == 9 => (0..3).flat_map(|_| l.sh.iter().copied()).collect(),
        _ => (0..27).map(|j| if j % 9 == 0 { 1.0 } else { 0.0 }).collect(),
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "render_backward",
        stage: Stage::BackwardRender,
        reads: &["Rendered", "Grad<Rendered>", "Mesh", "Normals", "Albedo", "Pose"],
        writes: &["Grad<Mesh>", "Grad<Albedo>", "Grad<Illumination>", "Grad<Pose>"],
        summary: "adjoint of render: d colour image → d mesh, albedo, lighting, pose",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            let mut adjacency: Option<Adjacency> = None;
            Ok((move |model: Res<Model>,
                      compute: Res<Compute>,
                      mut frames: Query<(
                Entity,
                &Rendered,
                &Grad<Rendered>,
                &Mesh,
                &Normals,
                &Albedo,
                &Pose,
                Option<&Illumination>,
                Option<&mut Grad<Mesh>>,
                Option<&mut Grad<Albedo>>,
                Option<&mut Grad<Illumination>>,
                Option<&mut Grad<Pose>>,
            )>,
                      mut commands: Commands|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let n = m.n_vertices();
                let adjacency = adjacency.get_or_insert_with(|| Adjacency::new(n, m.triangles()));
                for (entity, rendered, grad, mesh, normals, albedo, pose, light, g_mesh, g_albedo, g_light, g_pose) in frames.iter_mut() {
                    if grad.value.color.len() != rendered.color.len() {
                        return Err(StageError { system: "render_backward", message: "the colour gradient does not match the rendered image".into() });
                    }
                    let sh = rgb_lighting(light);
                    let shade_shape = ShadeShape { batch: 1, vertices: n, lighting: Lighting::Rgb };
                    let colours = shade::forward(backend, shade_shape, &normals.xyz, &albedo.rgb, &sh);
                    let shape = RasterShape { batch: 1, width: rendered.width, height: rendered.height };
                    let (d_colours, d_projected) =
                        interpolate::backward(backend, shape, &rendered.projected, m.triangles(), n, &rendered.tri, &colours, 3, &grad.value.color);
                    let (camera_model, camera) = pose.camera();
                    let (mut d_positions, d_camera) = project::backward(backend, camera_model, &mesh.positions, &camera, &d_projected, n);
                    let (d_normals, d_albedo, d_sh) = shade::backward(backend, shade_shape, &normals.xyz, &albedo.rgb, &sh, &d_colours);
                    accumulate(&mut d_positions, &normals::backward(backend, &mesh.positions, m.triangles(), adjacency, &d_normals, n));

                    match g_mesh {
                        Some(mut g) => accumulate(&mut g.value.positions, &d_positions),
                        None => {
                            commands.entity(entity).insert(Grad { value: Mesh { positions: d_positions } });
                        }
                    }
                    match g_albedo {
                        Some(mut g) => accumulate(&mut g.value.rgb, &d_albedo),
                        None => {
                            commands.entity(entity).insert(Grad { value: Albedo { rgb: d_albedo } });
                        }
                    }
                    if let Some(l) = light {
                        // Mono lighting shares its 9 coefficients across the channels.
                        let d = if l.sh.len() == 9 { (0..9).map(|k| d_sh[k] + d_sh[9 + k] + d_sh[18 + k]).collect() } else { d_sh };
                        match g_light {
                            Some(mut g) => accumulate(&mut g.value.sh, &d),
                            None => {
                                commands.entity(entity).insert(Grad { value: Illumination { sh: d } });
                            }
                        }
                    }
                    let d_pose = pose.from_camera(&d_camera);
                    match g_pose {
                        Some(mut g) => g.value = add_poses(&g.value, &d_pose),
                        None => {
                            commands.entity(entity).insert(Grad { value: d_pose });
                        }
                    }
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardRender))
        },
    }
}

/// Element-wise sum of two pose gradients of the same kind.
fn add_poses(a: &Pose, b: &Pose) -> Pose {
    let (_, pa) = a.camera();
    let (_, pb) = b.camera();
    let sum: Vec<f32> = pa.iter().zip(pb).map(|(x, y)| x + y).collect();
    a.from_camera(&sum)
}
