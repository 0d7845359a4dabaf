//! render: draws every frame's face — project, rasterize (z-buffer, triangle ids, barycentrics,
//! mask M²ᵈ) and interpolate the per-vertex colours: the model's albedo, shaded with the frame's
//! SH lighting when it has one (ambient white otherwise). Frames of one image size are drawn as
//! one batch.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Albedo, Compute, Frame, Illumination, Image, Mesh, Model, Normals, Pose, Rendered};
use faceforge_kernels::interpolate;
use faceforge_kernels::project::{self, CameraModel};
use faceforge_kernels::rasterize::{self, Raster, RasterShape};
use faceforge_kernels::shade::{self, Lighting, ShadeShape};
use faceforge_kernels::render_chain;
use faceforge_kernels::Backend;
use serde::Deserialize;

const NAME: &str = "render";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderSettings {
    /// Image size when the frame has no input image: (width, height).
    pub size: (usize, usize),
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self { size: (224, 224) }
    }
}

/// A batch to draw: meshes, per-vertex colours and cameras of one camera model.
pub struct RenderBatch<'a> {
    pub positions: &'a [f32],
    pub colors: &'a [f32],
    pub camera_model: CameraModel,
    pub cameras: &'a [f32],
}

/// What a batch looks like: the raster, the projected vertices and the colour image (B × P × 3).
pub struct RenderOutput {
    pub raster: Raster,
    pub projected: Vec<f32>,
    pub color: Vec<f32>,
}

/// project → rasterize → interpolate for one batch; on a device chained on device buffers (the
/// inputs go up once, the five outputs come down in one read).
pub fn render_batch(backend: &Backend, triangles: &[u32], n: usize, shape: RasterShape, batch: &RenderBatch) -> RenderOutput {
    match backend {
        Backend::Gpu { client, .. } => render_batch_device(client, triangles, n, shape, batch),
        Backend::Cpu => render_batch_per_op(backend, triangles, n, shape, batch),
    }
}

fn render_batch_device(client: &faceforge_kernels::Client, triangles: &[u32], n: usize, shape: RasterShape, batch: &RenderBatch) -> RenderOutput {
    let drawn = render_chain::draw(client, shape, batch.camera_model, triangles, n, batch.positions, batch.cameras, batch.colors);
    RenderOutput { raster: drawn.raster, projected: drawn.projected, color: drawn.image }
}

/// project → rasterize → interpolate op by op (the native twins).
fn render_batch_per_op(backend: &Backend, triangles: &[u32], n: usize, shape: RasterShape, batch: &RenderBatch) -> RenderOutput {
    let projected = project::forward(backend, batch.camera_model, batch.positions, batch.cameras, n);
    let raster = rasterize::forward(backend, shape, &projected, triangles, n);
    let color = interpolate::forward(backend, shape, &projected, triangles, n, &raster.tri, batch.colors, 3);
    RenderOutput { raster, projected, color }
}

/// Shaded vertex colours: albedo ⊙ SH irradiance, per item (`sh` is 27 or 9 per item).
pub fn shade_vertices(backend: &Backend, normals: &[f32], albedo: &[f32], sh: &[f32], n: usize) -> Vec<f32> {
    let batch = normals.len() / (3 * n);
    let lighting = if sh.len() == 27 * batch { Lighting::Rgb } else { Lighting::Mono };
    shade::forward(backend, ShadeShape { batch, vertices: n, lighting }, normals, albedo, sh)
}

/// The frame's 27 RGB SH coefficients: its own, its 9 mono ones repeated per channel, or white
/// ambient light when it has none.
pub fn lighting_of(illumination: Option<&Illumination>) -> Vec<f32> {
    match illumination {
        Some(l) if l.sh.len() == 27 => l.sh.clone(),
        Some(l) if l.sh.len() == 9 => (0..3).flat_map(|_| l.sh.iter().copied()).collect(),
        _ => (0..27).map(|j| if j % 9 == 0 { 1.0 } else { 0.0 }).collect(),
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Render,
        reads: data![Mesh, Normals, Albedo, Pose],
        writes: data![Rendered],
        reads_if_present: data![Illumination],
        adjoint: Some("render_backward"),
        summary: "mesh, normals, albedo, pose (and SH lighting) → image, depth, triangle ids, barycentrics, mask",
        build: |settings| {
            let settings: RenderSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>,
                      compute: Res<Compute>,
                      frames: Query<(Entity, &Frame, &Mesh, &Normals, &Albedo, &Pose, Option<&Illumination>, Option<&Image>)>,
                      mut commands: Commands|
                  -> Result<(), StageError> {
                let m = &model.0;
                let n = m.n_vertices();
                // Group frames by (image size, camera model) so each group is one batch.
                let mut groups: Vec<((usize, usize, CameraModel), Vec<_>)> = Vec::new();
                for row in frames.iter() {
                    let size = row.7.map_or(settings.size, |im| (im.width, im.height));
                    let key = (size.0, size.1, row.5.camera().0);
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, rows)) => rows.push(row),
                        None => groups.push((key, vec![row])),
                    }
                }
                for ((width, height, camera_model), rows) in groups {
                    if width == 0 || height == 0 {
                        return Err(StageError { system: NAME, message: format!("frame {} has an empty image", rows[0].1.name) });
                    }
                    let positions: Vec<f32> = rows.iter().flat_map(|r| r.2.positions.iter().copied()).collect();
                    let normals: Vec<f32> = rows.iter().flat_map(|r| r.3.xyz.iter().copied()).collect();
                    let albedo: Vec<f32> = rows.iter().flat_map(|r| r.4.rgb.iter().copied()).collect();
                    let sh: Vec<f32> = rows.iter().flat_map(|r| lighting_of(r.6)).collect();
                    let cameras: Vec<f32> = rows.iter().flat_map(|r| r.5.camera().1).collect();
                    let colors = shade_vertices(&compute.0, &normals, &albedo, &sh, n);
                    let shape = RasterShape { batch: rows.len(), width, height };
                    let out = render_batch(&compute.0, m.triangles(), n, shape, &RenderBatch { positions: &positions, colors: &colors, camera_model, cameras: &cameras });
                    let (p, mask) = (shape.pixels(), out.raster.mask());
                    for (b, row) in rows.iter().enumerate() {
                        commands.entity(row.0).insert(Rendered {
                            width,
                            height,
                            color: out.color[3 * b * p..3 * (b + 1) * p].to_vec(),
                            depth: out.raster.depth[b * p..(b + 1) * p].to_vec(),
                            tri: out.raster.tri[b * p..(b + 1) * p].to_vec(),
                            bary: out.raster.bary[2 * b * p..2 * (b + 1) * p].to_vec(),
                            mask: mask[b * p..(b + 1) * p].to_vec(),
                            projected: out.projected[4 * b * n..4 * (b + 1) * n].to_vec(),
                        });
                    }
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Render))
        },
    }
}
