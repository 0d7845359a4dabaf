//! view_synthesis: MGCNet's occlusion-aware view synthesis (Eq. 2) for every ordered pair of a
//! subject's frames (target t ← source s; all pairs, so no view is singled out as the target
//! in a fit): each target pixel back-projected with the target's rendered depth, moved by the
//! relative pose P_rel t→s, projected into the source; the source image and depth read there
//! (Ĩ_t^s, D̃_t^s); and the covisible map C_s. `view_synthesis_backward` carries the losses'
//! gradients on Ĩ and D̃ to both renders' depth maps and both poses.
//!
//! Covisible map (`covisible`): `ByDepth` (default), the per-pixel ray test against the target's
//! mesh seen from the source camera (`covisible::by_depth`; the target's mesh stands for both,
//! since the source's differs only by its own estimate); `Vertices`, the paper's construction
//! from both frames' per-vertex z-buffer visibility (needs `visibility` with `method: ZBuffer`);
//! `None`, every target pixel where the synthesis is defined (Table 3's "without covisible map").

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Frame, Grad, Image, Mesh, Model, Pose, Rendered, SynthesisedViews, ViewPair, Visibility};
use faceforge_kernels::rasterize::{Raster, RasterShape};
use faceforge_kernels::view_synthesis::{self, Pair, Synthesis};
use faceforge_kernels::{covisible, relative_pose};
use serde::Deserialize;
use std::collections::BTreeMap;

const NAME: &str = "view_synthesis";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Covisible {
    #[default]
    ByDepth,
    Vertices,
    None,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewSynthesisSettings {
    pub covisible: Covisible,
    /// How much nearer (mm) another surface must be to hide a point (`ByDepth`).
    pub tolerance: f32,
}

impl Default for ViewSynthesisSettings {
    fn default() -> Self {
        Self { covisible: Covisible::ByDepth, tolerance: 1.0 }
    }
}

/// A pinhole pose as intrinsics (f_x, f_y, c_x, c_y) and its rigid part.
pub fn pinhole(pose: &Pose) -> Option<([f32; 4], relative_pose::Rigid)> {
    match pose {
        Pose::Pinhole { k, r, t } => Some(([k[0], k[4], k[2], k[5]], (*r, *t))),
        Pose::WeakPerspective { .. } => None,
    }
}

/// Adds a gradient on the relative pose (target → source) to both frames' pose gradients.
pub fn add_relative_grad(deltas: &mut BTreeMap<Entity, Pose>, target: (Entity, &relative_pose::Rigid), source: (Entity, &relative_pose::Rigid), grad: &relative_pose::Rigid) {
    let ((d_tr, d_tt), (d_sr, d_st)) = relative_pose::backward(target.1, source.1, grad);
    crate::add_pose_grad(deltas.entry(target.0).or_default(), &Pose::Pinhole { k: [0.0; 9], r: d_tr, t: d_tt });
    crate::add_pose_grad(deltas.entry(source.0).or_default(), &Pose::Pinhole { k: [0.0; 9], r: d_sr, t: d_st });
}

/// Every ordered pair (target, source) of frames of one subject, targets in `frames` order.
pub fn ordered_pairs<T: Copy>(frames: &[(Entity, u32, T)]) -> Vec<((Entity, T), (Entity, T))> {
    let mut pairs = Vec::new();
    for &(t, subject, a) in frames {
        for &(s, other, b) in frames {
            if s != t && other == subject {
                pairs.push(((t, a), (s, b)));
            }
        }
    }
    pairs
}

/// The pair's inputs as the op takes them.
fn pair<'a>(target: &'a Rendered, source: &'a Rendered, source_image: &'a Image, k_target: [f32; 4], k_source: [f32; 4]) -> Pair<'a> {
    Pair { width: target.width, height: target.height, target_depth: &target.depth, source_rgb: &source_image.rgb, source_depth: &source.depth, k_target, k_source }
}

fn raster(r: &Rendered) -> Raster {
    Raster { shape: RasterShape { batch: 1, width: r.width, height: r.height }, tri: r.tri.clone(), depth: r.depth.clone(), bary: r.bary.clone() }
}

type Row<'a> = (Entity, &'a Frame, &'a Rendered, &'a Pose, &'a Image, &'a Mesh, Option<&'a Visibility>);

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::ViewSynthesis,
        reads: data![Rendered, Pose, Image, Mesh],
        writes: data![SynthesisedViews],
        reads_if_present: data![Visibility],
        adjoint: Some("view_synthesis_backward"),
        summary: "every other view of the subject synthesised into each view, with the covisible map (MGCNet Eq. 2)",
        build: |settings| {
            let settings: ViewSynthesisSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>, frames: Query<Row>, mut commands: Commands| -> Result<(), StageError> {
                let rows: Vec<Row> = frames.iter().collect();
                let keyed: Vec<(Entity, u32, usize)> = rows.iter().enumerate().map(|(i, r)| (r.0, r.1.subject_id, i)).collect();
                // Ordered by entity: inserting a new component moves entities between tables, so
                // the insertion order decides later queries' order (and float sums' order).
                let mut views: BTreeMap<Entity, SynthesisedViews> = BTreeMap::new();
                for ((_, ti), (_, si)) in ordered_pairs(&keyed) {
                    let (t, s) = (&rows[ti], &rows[si]);
                    let (Some((k_t, rigid_t)), Some((k_s, rigid_s))) = (pinhole(t.3), pinhole(s.3)) else {
                        return Err(StageError { system: NAME, message: format!("frames {} and {} need pinhole poses (pinhole_pose)", t.1.name, s.1.name) });
                    };
                    if (t.2.width, t.2.height) != (s.2.width, s.2.height) || s.4.rgb.len() != 3 * s.2.width * s.2.height {
                        return Err(StageError { system: NAME, message: format!("frames {} and {} differ in size", t.1.name, s.1.name) });
                    }
                    let (r, tr) = relative_pose::forward(&rigid_t, &rigid_s);
                    let synthesis = view_synthesis::synthesise(&pair(t.2, s.2, s.4, k_t, k_s), &r, tr);
                    let map = match settings.covisible {
                        Covisible::ByDepth => {
                            let camera = faceforge_kernels::project::pinhole_params(k_s, rigid_s.0, rigid_s.1);
                            covisible::by_depth(&t.5.positions, model.0.triangles(), &raster(t.2), &raster(s.2), &camera, settings.tolerance)
                        }
                        Covisible::Vertices => match (t.6, s.6) {
                            (Some(a), Some(b)) => covisible::map(&a.visible, &b.visible, model.0.triangles(), &t.2.tri),
                            _ => return Err(StageError { system: NAME, message: "covisible: Vertices needs the `visibility` system".into() }),
                        },
                        Covisible::None => t.2.mask.clone(),
                    };
                    let Synthesis { coords, rgb, depth, valid } = synthesis;
                    let covisible = map.iter().zip(&valid).map(|(a, b)| a * b).collect();
                    let entry = views.entry(t.0).or_insert_with(|| SynthesisedViews { width: t.2.width, height: t.2.height, pairs: Vec::new() });
                    entry.pairs.push(ViewPair { source: s.0, coords, rgb, depth, covisible });
                }
                for (entity, v) in views {
                    commands.entity(entity).insert(v);
                }
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::ViewSynthesis))
        },
    }
}

pub fn backward_entry() -> SystemEntry {
    SystemEntry {
        name: "view_synthesis_backward",
        stage: Stage::BackwardViewSynthesis,
        reads: data![SynthesisedViews, Grad<SynthesisedViews>, Rendered, Pose, Image],
        writes: data![Grad<Rendered>, Grad<Pose>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of view_synthesis: d synthesised colour and depth → d both depth maps, d both poses",
        build: |settings| {
            parse_settings::<crate::NoSettings>(settings)?;
            Ok((|frames: Query<(Entity, &Rendered, &Pose, &Image, Option<&SynthesisedViews>, &Grad<SynthesisedViews>)>,
                  mut grads: Query<(&mut Grad<Rendered>, &mut Grad<Pose>)>| {
                // Deltas per frame first: a pair's gradient lands on two frames.
                let mut depth: BTreeMap<Entity, Vec<f32>> = BTreeMap::new();
                let mut poses: BTreeMap<Entity, Pose> = BTreeMap::new();
                for (target, rendered, pose, _, views, grad) in &frames {
                    let Some(views) = views else { continue };
                    for (view, g) in views.pairs.iter().zip(&grad.value.pairs) {
                        if g.rgb.is_empty() && g.depth.is_empty() {
                            continue;
                        }
                        let Ok((_, s_rendered, s_pose, s_image, _, _)) = frames.get(view.source) else { continue };
                        let (Some((k_t, rigid_t)), Some((k_s, rigid_s))) = (pinhole(pose), pinhole(s_pose)) else { continue };
                        let (r, tr) = relative_pose::forward(&rigid_t, &rigid_s);
                        // The gradient only where the loss saw the pixel: the covisible map.
                        let (g_target, g_source, g_r, g_t) = view_synthesis::synthesise_backward(&pair(rendered, s_rendered, s_image, k_t, k_s), &r, tr, &view.coords, &view.covisible, &g.rgb, &g.depth);
                        faceforge_components::accumulate(depth.entry(target).or_default(), &g_target);
                        faceforge_components::accumulate(depth.entry(view.source).or_default(), &g_source);
                        add_relative_grad(&mut poses, (target, &rigid_t), (view.source, &rigid_s), &(g_r, g_t));
                    }
                }
                for (entity, d) in depth {
                    if let Ok((mut g_rendered, _)) = grads.get_mut(entity) {
                        faceforge_components::accumulate(&mut g_rendered.value.depth, &d);
                    }
                }
                for (entity, d) in poses {
                    if let Ok((_, mut g_pose)) = grads.get_mut(entity) {
                        crate::add_pose_grad(&mut g_pose.value, &d);
                    }
                }
            })
            .in_set(Stage::BackwardViewSynthesis))
        },
    }
}
