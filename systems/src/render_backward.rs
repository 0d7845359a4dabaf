//! render_backward: the adjoint of `render`. From dL/d(rendered colour) it goes back through
//! interpolation (visibility held fixed) to the vertex colours and the projected vertices,
//! through projection to the mesh and the pose, and through SH shading to the albedo, the
//! lighting and the normals, and through the normals to the mesh again. From dL/d(depth map)
//! (MGCNet's depth and view-synthesis terms) it goes back through the same interpolation to the
//! vertices' depths and positions, and through projection to the mesh and the pose.

use crate::render::lighting_of;
use crate::{add_geometry_grad, collect_errors, parse_settings, Stage, StageError, SystemEntry, NoSettings};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Albedo, Compute, Grad, Illumination, Mesh, Model, Normals, Pose, Rendered};
use faceforge_kernels::normals::{self, Adjacency};
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::shade::{self, Lighting, ShadeShape};
use faceforge_kernels::{interpolate, project};

/// The adjoint of drawing per-vertex `albedo`, shaded by the 27 SH coefficients `sh` and the
/// frame's normals, over the frame's raster: from d image to d projected vertices (for
/// `project`'s adjoint), d positions (through the normals), d albedo and d sh.
pub(crate) struct ColourAdjoint {
    pub projected: Vec<f32>,
    pub positions: Vec<f32>,
    pub albedo: Vec<f32>,
    pub sh: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn colour_adjoint(backend: &faceforge_kernels::Backend, m: &faceforge_model::MorphableModel, adjacency: &Adjacency, rendered: &Rendered, mesh: &Mesh, normals: &Normals, albedo: &[f32], sh: &[f32], grad: &[f32]) -> ColourAdjoint {
    let n = m.n_vertices();
    let shade_shape = ShadeShape { batch: 1, vertices: n, lighting: Lighting::Rgb };
    let shape = RasterShape { batch: 1, width: rendered.width, height: rendered.height };
    let colours = shade::forward(backend, shade_shape, &normals.xyz, albedo, sh);
    let (d_colours, projected) = interpolate::backward(backend, shape, &rendered.projected, m.triangles(), n, &rendered.tri, &colours, 3, grad);
    let (d_normals, albedo, sh) = shade::backward(backend, shade_shape, &normals.xyz, albedo, sh, &d_colours);
    ColourAdjoint { projected, positions: normals::backward(backend, &mesh.positions, m.triangles(), adjacency, &d_normals, n), albedo, sh }
}

/// A 27-coefficient lighting gradient in the layout of the frame's own lighting: mono lighting
/// shares its 9 coefficients across the channels.
pub(crate) fn fold_lighting(light: &Illumination, d_sh: Vec<f32>) -> Vec<f32> {
    if light.sh.len() == 9 {
        (0..9).map(|k| d_sh[k] + d_sh[9 + k] + d_sh[18 + k]).collect()
    } else {
        d_sh
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "render_backward",
        stage: Stage::BackwardRender,
        reads: data![Rendered, Grad<Rendered>, Mesh, Normals, Albedo, Pose],
        writes: data![Grad<Mesh>, Grad<Albedo>, Grad<Illumination>, Grad<Pose>],
        reads_if_present: data![Illumination],
        adjoint: None,
        summary: "adjoint of render: d colour image and d depth map → d mesh, albedo, lighting, pose",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            let mut adjacency: Option<Adjacency> = None;
            Ok((move |model: Res<Model>,
                      compute: Res<Compute>,
                      mut frames: Query<(
                &Rendered,
                &Grad<Rendered>,
                &Mesh,
                &Normals,
                &Albedo,
                &Pose,
                Option<&Illumination>,
                &mut Grad<Mesh>,
                &mut Grad<Albedo>,
                &mut Grad<Illumination>,
                &mut Grad<Pose>,
            )>|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let n = m.n_vertices();
                let adjacency = adjacency.get_or_insert_with(|| Adjacency::new(n, m.triangles()));
                for (rendered, grad, mesh, normals, albedo, pose, light, mut g_mesh, mut g_albedo, mut g_light, mut g_pose) in frames.iter_mut() {
                    let (has_colour, has_depth) = (!grad.value.color.is_empty(), !grad.value.depth.is_empty());
                    if !has_colour && !has_depth {
                        continue; // no loss reached this frame's render
                    }
                    if (has_colour && grad.value.color.len() != rendered.color.len()) || (has_depth && grad.value.depth.len() != rendered.depth.len()) {
                        return Err(StageError { system: "render_backward", message: "the gradient does not match the rendered image".into() });
                    }
                    let shape = RasterShape { batch: 1, width: rendered.width, height: rendered.height };
                    let (camera_model, camera) = pose.camera();
                    let mut d_projected = vec![0.0; rendered.projected.len()];
                    let mut d_positions = vec![0.0; mesh.positions.len()];
                    let mut d_camera = vec![0.0; camera.len()];
                    if has_depth {
                        // The depth map is the vertices' depths interpolated like a colour (the
                        // rasterizer's Σ bᵢ dᵢ), so its adjoint is interpolate's, then project's
                        // for the depths themselves.
                        let depths: Vec<f32> = rendered.projected.chunks(4).map(|p| p[2]).collect();
                        let g: Vec<f32> = grad.value.depth.iter().zip(&rendered.tri).map(|(g, &t)| if t == 0 { 0.0 } else { *g }).collect();
                        let (d_depths, d_proj) = interpolate::backward(backend, shape, &rendered.projected, m.triangles(), n, &rendered.tri, &depths, 1, &g);
                        accumulate(&mut d_projected, &d_proj);
                        let (dp, dc) = project::depth_backward_cpu(camera_model, &mesh.positions, &camera, &d_depths, n);
                        accumulate(&mut d_positions, &dp);
                        accumulate(&mut d_camera, &dc);
                    }
                    if has_colour {
                        let sh = lighting_of(light);
                        let d = colour_adjoint(backend, m, adjacency, rendered, mesh, normals, &albedo.rgb, &sh, &grad.value.color);
                        accumulate(&mut d_projected, &d.projected);
                        accumulate(&mut d_positions, &d.positions);
                        accumulate(&mut g_albedo.value.rgb, &d.albedo);
                        if let Some(l) = light {
                            accumulate(&mut g_light.value.sh, &fold_lighting(l, d.sh));
                        }
                    }
                    let (dp, dc) = project::backward(backend, camera_model, &mesh.positions, &camera, &d_projected, n);
                    accumulate(&mut d_positions, &dp);
                    accumulate(&mut d_camera, &dc);
                    add_geometry_grad(&d_positions, &pose.from_camera(&d_camera), &mut g_mesh, &mut g_pose);
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardRender))
        },
    }
}
