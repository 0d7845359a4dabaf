//! sample_texture: PGN Eq. 2's texture — the colour of each frame's input image at each of its
//! projected vertices (bilinear, zero outside the image). Visibility is decided separately
//! (`visibility`); this samples every vertex.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry, NoSettings};
use bevy_ecs::prelude::*;
use faceforge_components::{Compute, Frame, Image, Mesh, Model, Pose, VertexColors};
use faceforge_kernels::project;
use faceforge_kernels::sample::{self, SampleShape};

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "sample_texture",
        stage: Stage::SampleTexture,
        reads: data![Mesh, Pose, Image],
        writes: data![VertexColors],
        reads_if_present: data![],
        adjoint: Some("sample_texture_backward"),
        summary: "image colour at every projected vertex (PGN Eq. 2, bilinear)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>, compute: Res<Compute>, frames: Query<(Entity, &Frame, &Mesh, &Pose, &Image)>, mut commands: Commands| -> Result<(), StageError> {
                let n = model.0.n_vertices();
                for (entity, frame, mesh, pose, image) in &frames {
                    if image.rgb.len() != image.width * image.height * 3 || image.width == 0 {
                        return Err(StageError { system: "sample_texture", message: format!("frame {} has a malformed image", frame.name) });
                    }
                    let (camera_model, camera) = pose.camera();
                    let projected = project::forward(&compute.0, camera_model, &mesh.positions, &camera, n);
                    let positions: Vec<f32> = projected.chunks(4).flat_map(|p| [p[0], p[1]]).collect();
                    let shape = SampleShape { batch: 1, width: image.width, height: image.height, channels: 3, points: n };
                    let rgb = sample::forward(&compute.0, shape, &image.rgb, &positions);
                    commands.entity(entity).insert(VertexColors { rgb });
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::SampleTexture))
        },
    }
}
