//! The adjoints of PGN's swap path, from the loss on I_{i→j} back to the sampled textures:
//! - `render_swapped_backward`: d I_{i→j} → d C_{i→j} (interpolation, visibility fixed) and
//!   d mesh, d pose of frame j (through the barycentrics);
//! - `swap_visible_texture_backward`: d C_{i→j} → d C_i ⊙ M_ij and d C_j ⊙ (1 − M_ij);
//! - `sample_texture_backward`: d C (sampled colours) → d sample positions → d mesh, d pose.

use crate::{add_geometry_grad, collect_errors, parse_settings, Stage, StageError, SystemEntry, NoSettings};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Compute, Frame, Grad, Image, Mesh, Model, Pose, RenderedSwaps, SwappedTextures, VertexColors, Visibility};
use faceforge_kernels::interpolate;
use faceforge_kernels::project;
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::sample::{self, SampleShape};
use std::collections::HashMap;

pub fn render_swapped_entry() -> SystemEntry {
    SystemEntry {
        name: "render_swapped_backward",
        stage: Stage::BackwardRender,
        reads: data![RenderedSwaps, Grad<RenderedSwaps>, SwappedTextures, Mesh, Pose],
        writes: data![Grad<SwappedTextures>, Grad<Mesh>, Grad<Pose>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of render_swapped: d I_{i→j} → d C_{i→j}, d mesh and pose of frame j",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>,
                 compute: Res<Compute>,
                 mut frames: Query<(
                &RenderedSwaps,
                &Grad<RenderedSwaps>,
                &SwappedTextures,
                &Mesh,
                &Pose,
                &mut Grad<SwappedTextures>,
                &mut Grad<Mesh>,
                &mut Grad<Pose>,
            )>|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let n = m.n_vertices();
                for (drawn, grad, swapped, mesh, pose, mut g_textures, mut g_mesh, mut g_pose) in frames.iter_mut() {
                    if grad.value.images.is_empty() {
                        continue; // no loss reached this frame's swaps
                    }
                    if grad.value.images.len() != swapped.from.len() {
                        return Err(StageError { system: "render_swapped_backward", message: "one image gradient per swap is needed".into() });
                    }
                    let shape = RasterShape { batch: 1, width: drawn.width, height: drawn.height };
                    let mut d_projected = vec![0.0; 4 * n];
                    let mut d_textures = Vec::new();
                    for ((source, index, colours), (_, g_image)) in swapped.from.iter().zip(&grad.value.images) {
                        let (d_colours, d_proj) = interpolate::backward(backend, shape, &drawn.projected, m.triangles(), n, &drawn.tri, colours, 3, g_image);
                        accumulate(&mut d_projected, &d_proj);
                        d_textures.push((*source, *index, d_colours));
                    }
                    let (camera_model, camera) = pose.camera();
                    let (d_positions, d_camera) = project::backward(backend, camera_model, &mesh.positions, &camera, &d_projected, n);
                    add_geometry_grad(&d_positions, &pose.from_camera(&d_camera), &mut g_mesh, &mut g_pose);
                    g_textures.value = SwappedTextures { from: d_textures };
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardRender))
        },
    }
}

pub fn swap_entry() -> SystemEntry {
    SystemEntry {
        name: "swap_visible_texture_backward",
        stage: Stage::BackwardSwapVisibleTexture,
        reads: data![Grad<SwappedTextures>, Visibility],
        writes: data![Grad<VertexColors>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of swap_visible_texture: d C_{i→j} → d C_i ⊙ M_ij, d C_j ⊙ (1 − M_ij)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|targets: Query<(Entity, &Grad<SwappedTextures>, &Visibility)>,
                 visibility: Query<&Visibility>,
                 mut colours: Query<(Entity, &mut Grad<VertexColors>), With<Frame>>| {
                // Gather every frame's share first: a swap writes to two frames.
                let mut shares: HashMap<Entity, Vec<f32>> = HashMap::new();
                for (target, grad, target_visible) in &targets {
                    for (source, _, g) in &grad.value.from {
                        let Ok(source_visible) = visibility.get(*source) else { continue };
                        let mut to_source = vec![0.0; g.len()];
                        let mut to_target = vec![0.0; g.len()];
                        for v in 0..g.len() / 3 {
                            let m = source_visible.visible[v] * target_visible.visible[v];
                            for c in 0..3 {
                                to_source[3 * v + c] = g[3 * v + c] * m;
                                to_target[3 * v + c] = g[3 * v + c] * (1.0 - m);
                            }
                        }
                        accumulate(shares.entry(*source).or_default(), &to_source);
                        accumulate(shares.entry(target).or_default(), &to_target);
                    }
                }
                for (entity, mut g) in colours.iter_mut() {
                    if let Some(share) = shares.remove(&entity) {
                        accumulate(&mut g.value.rgb, &share);
                    }
                }
            })
            .in_set(Stage::BackwardSwapVisibleTexture))
        },
    }
}

pub fn sample_entry() -> SystemEntry {
    SystemEntry {
        name: "sample_texture_backward",
        stage: Stage::BackwardSampleTexture,
        reads: data![Grad<VertexColors>, Mesh, Pose, Image],
        writes: data![Grad<Mesh>, Grad<Pose>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of sample_texture: d sampled colours → d mesh, d pose (where the image is sampled)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>,
                 compute: Res<Compute>,
                 mut frames: Query<(&Grad<VertexColors>, &Mesh, &Pose, &Image, &mut Grad<Mesh>, &mut Grad<Pose>)>|
                  -> Result<(), StageError> {
                let (m, backend) = (&model.0, &compute.0);
                let n = m.n_vertices();
                for (grad, mesh, pose, image, mut g_mesh, mut g_pose) in frames.iter_mut() {
                    if grad.value.rgb.is_empty() {
                        continue;
                    }
                    let (camera_model, camera) = pose.camera();
                    let projected = project::forward(backend, camera_model, &mesh.positions, &camera, n);
                    let positions: Vec<f32> = projected.chunks(4).flat_map(|p| [p[0], p[1]]).collect();
                    let shape = SampleShape { batch: 1, width: image.width, height: image.height, channels: 3, points: n };
                    let d_uv = sample::backward(backend, shape, &image.rgb, &positions, &grad.value.rgb);
                    let d_projected: Vec<f32> = d_uv.chunks(2).flat_map(|g| [g[0], g[1], 0.0, 0.0]).collect();
                    let (d_positions, d_camera) = project::backward(backend, camera_model, &mesh.positions, &camera, &d_projected, n);
                    add_geometry_grad(&d_positions, &pose.from_camera(&d_camera), &mut g_mesh, &mut g_pose);
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::BackwardSampleTexture))
        },
    }
}
