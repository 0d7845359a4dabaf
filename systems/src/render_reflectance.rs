//! render_reflectance: CEST's re-renders (`004_…` Eq. 7–8). Each frame is drawn again with its
//! own shape, pose and lighting but another reflectance — the model's albedo per vertex stands
//! for CEST's UV reflectance map:
//! - `consistency`: a partner frame's reflectance R_j, the partner drawn at random among the
//!   subject's other frames each iteration (Eq. 8's stochastic pairing: one partner per frame,
//!   so the cost grows with the frames, not their square); none for a subject of one frame;
//! - `symmetry`: its own reflectance mirrored left to right, R_i^⋈ (each vertex takes its
//!   mirror vertex's albedo);
//! - `own`: its own reflectance, the plain self-reconstruction (the "no constraint" and
//!   independent-estimation variants, whose minimum CEST calls degenerate).
//!
//! The shape and pose are the frame's own, so its `render` raster serves every re-render: only
//! the colours differ (shade, then interpolate over the same triangle ids).
//! `render_reflectance_backward` returns the images' gradients to the shape (through the
//! projected vertices and the normals), the pose, the lighting and the reflectances used — the
//! partner's, or the frame's own through the mirror.

use crate::render::{lighting_of, shade_vertices};
use crate::render_backward::{colour_adjoint, fold_lighting};
use crate::{add_geometry_grad, parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Albedo, Compute, Frame, Grad, Illumination, Iteration, Mesh, Model, Normals, Pose, ReflectanceRenders, Rendered};
use faceforge_kernels::interpolate;
use faceforge_kernels::normals::Adjacency;
use faceforge_kernels::rasterize::RasterShape;
use faceforge_model::SplitMix64;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReflectanceSettings {
    pub consistency: bool,
    pub symmetry: bool,
    pub own: bool,
    /// Seeds the partner draws (with the iteration).
    pub seed: u64,
}

impl Default for ReflectanceSettings {
    fn default() -> Self {
        Self { consistency: true, symmetry: true, own: false, seed: 0 }
    }
}

/// Each vertex's albedo taken from its mirror vertex: R^⋈.
pub fn mirrored(albedo: &[f32], mirror: &[u32]) -> Vec<f32> {
    mirror.iter().flat_map(|&m| [albedo[3 * m as usize], albedo[3 * m as usize + 1], albedo[3 * m as usize + 2]]).collect()
}

/// Frame i's partner: one of the other frames of its subject, drawn with the iteration.
fn partner(others: &[Entity], seed: u64, iteration: u32, frame: &Frame) -> Option<Entity> {
    if others.is_empty() {
        return None;
    }
    let mut rng = SplitMix64::new(seed ^ ((iteration as u64) << 32) ^ ((frame.subject_id as u64) << 16) ^ frame.index as u64);
    Some(others[(rng.uniform() * others.len() as f64) as usize % others.len()])
}

/// Frame rows in subject, index order (so partner draws do not depend on storage order).
type Row<'a> = (Entity, &'a Frame, &'a Rendered, &'a Normals, &'a Albedo, Option<&'a Illumination>);

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "render_reflectance",
        stage: Stage::ViewSynthesis,
        reads: data![Rendered, Normals, Albedo],
        writes: data![ReflectanceRenders],
        reads_if_present: data![Illumination],
        adjoint: Some("render_reflectance_backward"),
        summary: "each frame re-rendered with a partner's and its own mirrored reflectance (CEST Eq. 8)",
        build: |settings| {
            let settings: ReflectanceSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>, compute: Res<Compute>, iteration: Res<Iteration>, frames: Query<Row>, mut commands: Commands| {
                let m = &model.0;
                let n = m.n_vertices();
                let mut rows: Vec<Row> = frames.iter().collect();
                rows.sort_by_key(|r| (r.1.subject_id, r.1.index));
                let albedo_of: BTreeMap<Entity, &Albedo> = rows.iter().map(|r| (r.0, r.4)).collect();
                for (entity, frame, rendered, normals, albedo, light) in &rows {
                    let sh = lighting_of(*light);
                    let draw = |reflectance: &[f32]| {
                        let colours = shade_vertices(&compute.0, &normals.xyz, reflectance, &sh, n);
                        let shape = RasterShape { batch: 1, width: rendered.width, height: rendered.height };
                        interpolate::forward(&compute.0, shape, &rendered.projected, m.triangles(), n, &rendered.tri, &colours, 3)
                    };
                    let others: Vec<Entity> = rows.iter().filter(|r| r.1.subject_id == frame.subject_id && r.0 != *entity).map(|r| r.0).collect();
                    let partner = if settings.consistency { partner(&others, settings.seed, iteration.0, frame) } else { None };
                    commands.entity(*entity).insert(ReflectanceRenders {
                        partner,
                        swapped: partner.map(|p| draw(&albedo_of[&p].rgb)).unwrap_or_default(),
                        flipped: if settings.symmetry { draw(&mirrored(&albedo.rgb, m.mirror())) } else { Vec::new() },
                        own: if settings.own { draw(&albedo.rgb) } else { Vec::new() },
                    });
                }
            })
            .in_set(Stage::ViewSynthesis))
        },
    }
}

pub fn backward_entry() -> SystemEntry {
    SystemEntry {
        name: "render_reflectance_backward",
        stage: Stage::BackwardViewSynthesis,
        reads: data![ReflectanceRenders, Grad<ReflectanceRenders>, Rendered, Mesh, Normals, Albedo, Pose],
        writes: data![Grad<Mesh>, Grad<Albedo>, Grad<Illumination>, Grad<Pose>],
        reads_if_present: data![Illumination],
        adjoint: None,
        summary: "adjoint of render_reflectance: d re-renders → d mesh, pose, lighting and the reflectances used",
        build: |settings| {
            parse_settings::<crate::NoSettings>(settings)?;
            let mut adjacency: Option<Adjacency> = None;
            Ok((move |model: Res<Model>,
                      compute: Res<Compute>,
                      frames: Query<(Entity, &ReflectanceRenders, &Grad<ReflectanceRenders>, &Rendered, &Mesh, &Normals, &Albedo, &Pose, Option<&Illumination>)>,
                      mut grads: Query<(&mut Grad<Mesh>, &mut Grad<Albedo>, &mut Grad<Illumination>, &mut Grad<Pose>)>| {
                let (m, backend) = (&model.0, &compute.0);
                let n = m.n_vertices();
                let adjacency = adjacency.get_or_insert_with(|| Adjacency::new(n, m.triangles()));
                // The reflectance gradients land on other frames too: collected first.
                let mut d_albedo: BTreeMap<Entity, Vec<f32>> = BTreeMap::new();
                for (entity, renders, grad, rendered, mesh, normals, albedo, pose, light) in &frames {
                    let g = &grad.value;
                    let sh = lighting_of(light);
                    let mut d_projected = vec![0.0; rendered.projected.len()];
                    let mut d_positions = vec![0.0; mesh.positions.len()];
                    let mut d_sh = vec![0.0; 27];
                    let mut any = false;
                    let mut through = |reflectance: &[f32], image_grad: &[f32]| -> Vec<f32> {
                        let d = colour_adjoint(backend, m, adjacency, rendered, mesh, normals, reflectance, &sh, image_grad);
                        accumulate(&mut d_projected, &d.projected);
                        accumulate(&mut d_positions, &d.positions);
                        accumulate(&mut d_sh, &d.sh);
                        any = true;
                        d.albedo
                    };
                    // The partner is one of these frames (forward drew it from them).
                    if let (Some((p, .., partner_albedo, _, _)), false) = (renders.partner.and_then(|p| frames.get(p).ok()), g.swapped.is_empty()) {
                        let d = through(&partner_albedo.rgb, &g.swapped);
                        accumulate(d_albedo.entry(p).or_default(), &d);
                    }
                    if !g.flipped.is_empty() {
                        let d = through(&mirrored(&albedo.rgb, m.mirror()), &g.flipped);
                        // R^⋈[v] = R[mirror v], so R[mirror v] receives d R^⋈[v].
                        let mut back = vec![0.0; d.len()];
                        for (v, &mv) in m.mirror().iter().enumerate() {
                            (0..3).for_each(|c| back[3 * mv as usize + c] += d[3 * v + c]);
                        }
                        accumulate(d_albedo.entry(entity).or_default(), &back);
                    }
                    if !g.own.is_empty() {
                        let d = through(&albedo.rgb, &g.own);
                        accumulate(d_albedo.entry(entity).or_default(), &d);
                    }
                    if !any {
                        continue;
                    }
                    let Ok((mut g_mesh, _, mut g_light, mut g_pose)) = grads.get_mut(entity) else { continue };
                    let (camera_model, camera) = pose.camera();
                    let (dp, d_camera) = faceforge_kernels::project::backward(backend, camera_model, &mesh.positions, &camera, &d_projected, n);
                    accumulate(&mut d_positions, &dp);
                    add_geometry_grad(&d_positions, &pose.from_camera(&d_camera), &mut g_mesh, &mut g_pose);
                    if let Some(l) = light {
                        accumulate(&mut g_light.value.sh, &fold_lighting(l, d_sh));
                    }
                }
                for (entity, d) in d_albedo {
                    if let Ok((_, mut g_albedo, _, _)) = grads.get_mut(entity) {
                        accumulate(&mut g_albedo.value.rgb, &d);
                    }
                }
            })
            .in_set(Stage::BackwardViewSynthesis))
        },
    }
}
