//! swap_visible_texture: PGN Eq. 5–6. For every ordered pair (i → j) of frames of one subject,
//! the commonly visible vertices M_ij = M_i ⊙ M_j take frame i's sampled colour and the others
//! keep frame j's own: C_{i→j} = C_i ⊙ M_ij + C_j ⊙ (1 − M_ij). Rendered at frame j's pose, it
//! should reproduce frame j where the two frames agree (same identity, lighting and albedo).
//!
//! MVF-Net draws the texture sampled in view A at view B's pose the same way, with the parts A
//! cannot see left out of its mask (here they keep B's own colours, so they compare equal), and
//! only over the pairs with its frontal view: `anchor: Some(1)` keeps the pairs whose source or
//! target is the frame of that index — (B, A→B), (B, C→B), (A, B→A), (C, B→C).

use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Frame, SwappedTextures, VertexColors, Visibility};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwapSettings {
    /// Only the pairs that include the frame of this index (all ordered pairs when absent).
    pub anchor: Option<u32>,
}

/// C_{i→j} for one pair.
pub fn swap(ci: &[f32], mi: &[f32], cj: &[f32], mj: &[f32]) -> Vec<f32> {
    ci.chunks(3)
        .zip(cj.chunks(3))
        .zip(mi.iter().zip(mj))
        .flat_map(|((a, b), (m1, m2))| {
            let m = m1 * m2;
            [a[0] * m + b[0] * (1.0 - m), a[1] * m + b[1] * (1.0 - m), a[2] * m + b[2] * (1.0 - m)]
        })
        .collect()
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "swap_visible_texture",
        stage: Stage::SwapVisibleTexture,
        reads: data![VertexColors, Visibility],
        writes: data![SwappedTextures],
        reads_if_present: data![],
        adjoint: Some("swap_visible_texture_backward"),
        summary: "PGN Eq. 5–6: commonly visible texture from each other frame of the subject",
        build: |settings| {
            let settings: SwapSettings = parse_settings(settings)?;
            Ok((move |frames: Query<(Entity, &Frame, &VertexColors, &Visibility)>, mut commands: Commands| {
                let mut subjects: BTreeMap<u32, Vec<_>> = BTreeMap::new();
                for row in &frames {
                    subjects.entry(row.1.subject_id).or_default().push(row);
                }
                for rows in subjects.values_mut() {
                    rows.sort_by_key(|r| r.1.index);
                    for (j, target) in rows.iter().enumerate() {
                        let from = rows
                            .iter()
                            .enumerate()
                            .filter(|(i, source)| *i != j && settings.anchor.is_none_or(|a| source.1.index == a || target.1.index == a))
                            .map(|(_, source)| (source.0, source.1.index, swap(&source.2.rgb, &source.3.visible, &target.2.rgb, &target.3.visible)))
                            .collect();
                        commands.entity(target.0).insert(SwappedTextures { from });
                    }
                }
            })
            .in_set(Stage::SwapVisibleTexture))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::swap;

    #[test]
    fn commonly_visible_vertices_take_the_source_colour_the_rest_keep_their_own() {
        let ci = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
        let cj = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0];
        // Vertex 0 seen by both, vertex 1 only by i, vertex 2 only by j.
        let out = swap(&ci, &[1.0, 1.0, 0.0], &cj, &[1.0, 0.0, 1.0]);
        assert_eq!(out, vec![0.1, 0.2, 0.3, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]);
    }
}
