//! render_swapped: draws each swapped texture C_{i→j} at frame j's pose (I_{i→j} in PGN), the
//! image the census and flow losses compare with frame j. The sampled colours already carry the
//! lighting, so they are drawn as they are.

use crate::render::{render_batch, RenderBatch};
use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Compute, Image, Mesh, Model, Pose, RenderedSwaps, SwappedTextures};
use faceforge_kernels::rasterize::RasterShape;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderSwappedSettings {
    /// Image size when the frame has no input image: (width, height).
    pub size: (usize, usize),
}

impl Default for RenderSwappedSettings {
    fn default() -> Self {
        Self { size: (224, 224) }
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "render_swapped",
        stage: Stage::Render,
        reads: data![Mesh, Pose, SwappedTextures],
        writes: data![RenderedSwaps],
        reads_if_present: data![],
        adjoint: Some("render_swapped_backward"),
        summary: "each swapped texture drawn at the target frame's pose (I_{i→j})",
        build: |settings| {
            let settings: RenderSwappedSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>,
                      compute: Res<Compute>,
                      frames: Query<(Entity, &Mesh, &Pose, &SwappedTextures, Option<&Image>)>,
                      mut commands: Commands|
                  -> Result<(), StageError> {
                let m = &model.0;
                let n = m.n_vertices();
                for (entity, mesh, pose, swapped, image) in &frames {
                    let (width, height) = image.map_or(settings.size, |im| (im.width, im.height));
                    let batch = swapped.from.len();
                    if batch == 0 {
                        continue;
                    }
                    // One batch: the same mesh and pose, one texture per source frame.
                    let positions: Vec<f32> = (0..batch).flat_map(|_| mesh.positions.iter().copied()).collect();
                    let colors: Vec<f32> = swapped.from.iter().flat_map(|(_, _, rgb)| rgb.iter().copied()).collect();
                    let (camera_model, camera) = pose.camera();
                    let cameras: Vec<f32> = (0..batch).flat_map(|_| camera).collect();
                    let shape = RasterShape { batch, width, height };
                    let out = render_batch(&compute.0, m.triangles(), n, shape, &RenderBatch { positions: &positions, colors: &colors, camera_model, cameras: &cameras });
                    let p = shape.pixels();
                    let images = swapped.from.iter().enumerate().map(|(b, (source, _, _))| (*source, out.color[3 * b * p..3 * (b + 1) * p].to_vec())).collect();
                    commands.entity(entity).insert(RenderedSwaps {
                        width,
                        height,
                        images,
                        mask: out.raster.item_mask(0),
                        tri: out.raster.tri[..p].to_vec(),
                        projected: out.projected[..4 * n].to_vec(),
                    });
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Render))
        },
    }
}
