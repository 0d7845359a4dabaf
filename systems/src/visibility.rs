//! visibility: which vertices each frame's camera sees — by the normal test (PGN Eq. 5, the
//! default) or by the z-buffer (MGCNet's covisibility), chosen in the settings.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Compute, Frame, Image, Mesh, Model, Normals, Pose, Visibility};
use faceforge_kernels::normals::Adjacency;
use faceforge_kernels::rasterize::{self, RasterShape};
use faceforge_kernels::{project, visibility};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Method {
    /// The vertex normal faces the camera.
    #[default]
    Normals,
    /// The vertex is the nearest surface at its pixel.
    ZBuffer,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisibilitySettings {
    pub method: Method,
    /// Depth tolerance of the z-buffer test, in the projection's depth units (pixels for weak
    /// perspective, mm for pinhole).
    pub tolerance: f32,
    /// Image size for the z-buffer when a frame has no image.
    pub size: (usize, usize),
}

impl Default for VisibilitySettings {
    fn default() -> Self {
        Self { method: Method::Normals, tolerance: 1.0, size: (224, 224) }
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "visibility",
        stage: Stage::SampleTexture,
        reads: data![Mesh, Normals, Pose],
        writes: data![Visibility],
        reads_if_present: data![],
        adjoint: None,
        summary: "per-vertex visibility by the normal test (PGN) or the z-buffer (MGCNet)",
        build: |settings| {
            let settings: VisibilitySettings = parse_settings(settings)?;
            let mut adjacency: Option<Adjacency> = None;
            Ok((move |model: Res<Model>,
                      compute: Res<Compute>,
                      frames: Query<(Entity, &Frame, &Mesh, &Normals, &Pose, Option<&Image>)>,
                      mut commands: Commands|
                  -> Result<(), StageError> {
                let m = &model.0;
                let n = m.n_vertices();
                for (entity, _, mesh, normals, pose, image) in &frames {
                    let (camera_model, camera) = pose.camera();
                    let visible = match settings.method {
                        Method::Normals => visibility::by_normals(&compute.0, camera_model, &mesh.positions, &normals.xyz, &camera, n),
                        Method::ZBuffer => {
                            let (width, height) = image.map_or(settings.size, |im| (im.width, im.height));
                            let shape = RasterShape { batch: 1, width, height };
                            let projected = project::forward(&compute.0, camera_model, &mesh.positions, &camera, n);
                            let raster = rasterize::forward(&compute.0, shape, &projected, m.triangles(), n);
                            let adjacency = adjacency.get_or_insert_with(|| Adjacency::new(n, m.triangles()));
                            visibility::by_zbuffer(&compute.0, &raster, &projected, n, settings.tolerance, adjacency)
                        }
                    };
                    commands.entity(entity).insert(Visibility { visible });
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::SampleTexture))
        },
    }
}
