//! swap_visible_texture: PGN Eq. 5–6. For every ordered pair (i → j) of frames of one subject,
//! the commonly visible vertices M_ij = M_i ⊙ M_j take frame i's sampled colour and the others
//! keep frame j's own: C_{i→j} = C_i ⊙ M_ij + C_j ⊙ (1 − M_ij). Rendered at frame j's pose, it
//! should reproduce frame j where the two frames agree (same identity, lighting and albedo).
//!
//! MVF-Net draws the texture sampled in view A at view B's pose the same way, with the parts A
//! cannot see left out of its mask (here they keep B's own colours, so they compare equal), and
//! only over the pairs with its frontal view: `anchor: Some(1)` keeps the pairs whose source or
//! target is the frame of that index — (B, A→B), (B, C→B), (A, B→A), (C, B→C).
//!
//! A clip has too many pairs for all of them (n(n−1) per iteration): `pairs: Neighbours(k)` takes,
//! for each target frame, the k frames before and after it in time; `Random(k)`, k other frames
//! drawn at random each iteration (CEST's stochastic O(n) sampling). Random(k)'s draw is a
//! function of the iteration and the frame, so a resumed run draws what an uninterrupted one
//! would (its RNG state is the checkpoint's iteration).

use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Frame, Iteration, SwappedTextures, VertexColors, Visibility};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwapSettings {
    /// Only the pairs that include the frame of this index (all ordered pairs when absent).
    pub anchor: Option<u32>,
    /// Which source frames each target frame is compared with.
    pub pairs: Pairs,
}

/// The pair schedule: which frames i give a target frame j its swap i → j.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Pairs {
    /// Every other frame of the subject: n(n−1) pairs.
    #[default]
    All,
    /// The k frames before and the k after, in time: about 2kn pairs.
    Neighbours(u32),
    /// k other frames drawn at random, anew each iteration: kn pairs.
    Random(u32),
}

/// The positions (in time order, among `n` frames) of the sources of target `j`.
pub fn sources(pairs: Pairs, n: usize, j: usize, draw: u64) -> Vec<usize> {
    match pairs {
        Pairs::All => (0..n).filter(|&i| i != j).collect(),
        Pairs::Neighbours(k) => (j.saturating_sub(k as usize)..(j + k as usize + 1).min(n)).filter(|&i| i != j).collect(),
        Pairs::Random(k) => {
            // A partial Fisher–Yates shuffle of the other frames.
            let mut others: Vec<usize> = (0..n).filter(|&i| i != j).collect();
            let mut rng = faceforge_model::SplitMix64::new(draw);
            let k = (k as usize).min(others.len());
            for a in 0..k {
                let b = a + (rng.next_u64() % (others.len() - a) as u64) as usize;
                others.swap(a, b);
            }
            others.truncate(k);
            others.sort_unstable();
            others
        }
    }
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
            Ok((move |iteration: Option<Res<Iteration>>, frames: Query<(Entity, &Frame, &VertexColors, &Visibility)>, mut commands: Commands| {
                let iteration = iteration.map_or(0, |i| i.0) as u64;
                let mut subjects: BTreeMap<u32, Vec<_>> = BTreeMap::new();
                for row in &frames {
                    subjects.entry(row.1.subject_id).or_default().push(row);
                }
                for (subject, rows) in subjects.iter_mut() {
                    rows.sort_by_key(|r| r.1.index);
                    for (j, target) in rows.iter().enumerate() {
                        let draw = (iteration << 32) ^ ((*subject as u64) << 20) ^ target.1.index as u64;
                        let from = sources(settings.pairs, rows.len(), j, draw)
                            .into_iter()
                            .map(|i| &rows[i])
                            .filter(|source| settings.anchor.is_none_or(|a| source.1.index == a || target.1.index == a))
                            .map(|source| (source.0, source.1.index, swap(&source.2.rgb, &source.3.visible, &target.2.rgb, &target.3.visible)))
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
    use super::{sources, swap, Pairs};

    #[test]
    fn the_pair_schedules_count_all_neighbour_and_random_pairs() {
        let count = |pairs: Pairs, n: usize| (0..n).map(|j| sources(pairs, n, j, j as u64).len()).sum::<usize>();
        assert_eq!(count(Pairs::All, 10), 90);
        // k = 1: the ends have one neighbour, the rest two.
        assert_eq!(count(Pairs::Neighbours(1), 10), 18);
        assert_eq!(count(Pairs::Neighbours(1), 100), 198);
        assert_eq!(count(Pairs::Random(2), 100), 200);
        assert_eq!(sources(Pairs::Neighbours(2), 10, 0, 0), [1, 2]);
        // Random: k distinct other frames, the same for the same draw, another for another.
        let a = sources(Pairs::Random(3), 50, 7, 11);
        assert!(a.len() == 3 && !a.contains(&7) && a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, sources(Pairs::Random(3), 50, 7, 11));
        assert!((12..20).any(|d| sources(Pairs::Random(3), 50, 7, d) != a));
    }

    #[test]
    fn commonly_visible_vertices_take_the_source_colour_the_rest_keep_their_own() {
        let ci = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
        let cj = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0];
        // Vertex 0 seen by both, vertex 1 only by i, vertex 2 only by j.
        let out = swap(&ci, &[1.0, 1.0, 0.0], &cj, &[1.0, 0.0, 1.0]);
        assert_eq!(out, vec![0.1, 0.2, 0.3, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]);
    }
}
