//! vertex_normals: the unit normal of every vertex of every frame's mesh (area-weighted over its
//! triangles), for the visibility test n_z > 0 and for shading.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry, NoSettings};
use bevy_ecs::prelude::*;
use faceforge_components::{Compute, Mesh, Model, Normals};
use faceforge_kernels::normals::{self, Adjacency};

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "vertex_normals",
        stage: Stage::Geometry,
        reads: data![Mesh],
        writes: data![Normals],
        reads_if_present: data![],
        adjoint: None,
        summary: "mesh → unit vertex normals (area-weighted)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            let mut adjacency: Option<Adjacency> = None;
            Ok((move |model: Res<Model>, compute: Res<Compute>, meshes: Query<(Entity, &Mesh)>, mut commands: Commands| -> Result<(), StageError> {
                let m = &model.0;
                let adjacency = adjacency.get_or_insert_with(|| Adjacency::new(m.n_vertices(), m.triangles()));
                let rows: Vec<_> = meshes.iter().collect();
                if rows.is_empty() {
                    return Ok(());
                }
                let batch: Vec<f32> = rows.iter().flat_map(|(_, mesh)| mesh.positions.iter().copied()).collect();
                let out = normals::forward(&compute.0, &batch, m.triangles(), adjacency, m.n_vertices());
                for ((entity, _), xyz) in rows.iter().zip(out.chunks(3 * m.n_vertices())) {
                    commands.entity(*entity).insert(Normals { xyz: xyz.to_vec() });
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Geometry))
        },
    }
}
