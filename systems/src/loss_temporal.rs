//! loss_temporal: a clip's frames should move smoothly. For every three consecutive frames of a
//! subject (by frame index), the second difference over time of
//! - the pose, as its effect on the face: the model's 68 landmarks projected by each frame's pose
//!   and taken into the original video's pixels (each frame is a crop of its own), then measured
//!   in frame t's crop pixels: r_t = s_t (o_{t−1} − 2 o_t + o_{t+1});
//! - the expression, in units of each component's σ: Δ²(e/σ).
//!
//! L = λ/T Σ_t (w_pose · mean_l |r_t,l|² + w_exp · |Δ²(e_t/σ)|²). Squared, so it pulls frame-to-frame
//! jitter down without a dead zone.

use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Coeffs, Crop, Frame, Grad, LossTerms, LossWeights, Mesh, Model, Pose};
use faceforge_kernels::project;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalSettings {
    /// The landmark (pose) part's factor.
    pub pose: f32,
    /// The expression part's factor.
    pub expression: f32,
}

impl Default for TemporalSettings {
    fn default() -> Self {
        Self { pose: 1.0, expression: 1.0 }
    }
}

/// The three taps of a second difference.
const TAPS: [f32; 3] = [1.0, -2.0, 1.0];

/// One frame as the term sees it.
struct Row {
    entity: Entity,
    index: u32,
    /// The 68 landmarks projected (crop pixels), and the crop's offset and scale.
    projected: Vec<[f32; 2]>,
    offset: [f32; 2],
    scale: f32,
    exp: Vec<f32>,
}

/// The term's value and its gradients on a subject's rows (in time order): per row, d/d projected
/// (crop pixels) and d/d expression coefficients.
fn second_differences(rows: &[Row], sigma: &[f32], settings: &TemporalSettings) -> (f32, Vec<Vec<[f32; 2]>>, Vec<Vec<f32>>) {
    let mut d_points: Vec<Vec<[f32; 2]>> = rows.iter().map(|r| vec![[0.0; 2]; r.projected.len()]).collect();
    let mut d_exp: Vec<Vec<f32>> = rows.iter().map(|r| vec![0.0; r.exp.len()]).collect();
    let mut value = 0.0;
    for t in 1..rows.len().saturating_sub(1) {
        let window = &rows[t - 1..=t + 1];
        let n = rows[t].projected.len();
        // Landmarks: in original pixels, the second difference, back in frame t's crop pixels.
        for l in 0..n {
            let mut r = [0.0f32; 2];
            for (k, row) in window.iter().enumerate() {
                for c in 0..2 {
                    r[c] += TAPS[k] * (row.projected[l][c] / row.scale + row.offset[c]);
                }
            }
            let r = [r[0] * rows[t].scale, r[1] * rows[t].scale];
            value += settings.pose * (r[0] * r[0] + r[1] * r[1]) / n as f32;
            for (k, row) in window.iter().enumerate() {
                let g = 2.0 * settings.pose / n as f32 * TAPS[k] * rows[t].scale / row.scale;
                d_points[t - 1 + k][l][0] += g * r[0];
                d_points[t - 1 + k][l][1] += g * r[1];
            }
        }
        // Expression, in units of σ.
        for (c, s) in sigma.iter().enumerate().take(rows[t].exp.len()) {
            let r: f32 = window.iter().enumerate().map(|(k, row)| TAPS[k] * row.exp[c] / s).sum();
            value += settings.expression * r * r;
            for k in 0..3 {
                d_exp[t - 1 + k][c] += 2.0 * settings.expression * r * TAPS[k] / s;
            }
        }
    }
    (value, d_points, d_exp)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_temporal",
        stage: Stage::Loss,
        reads: data![Frame, Mesh, Pose, Coeffs],
        writes: data![Grad<Mesh>, Grad<Pose>, Grad<Coeffs>, LossTerms],
        reads_if_present: data![Crop],
        adjoint: None,
        summary: "a clip's smoothness: second differences over time of the projected landmarks (pose) and the expression",
        build: |settings| {
            let settings: TemporalSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>,
                      weights: Res<LossWeights>,
                      mut terms: ResMut<LossTerms>,
                      frames: Query<(Entity, &Frame, &Mesh, &Pose, &Coeffs, Option<&Crop>)>,
                      mut grads: Query<(&mut Grad<Mesh>, &mut Grad<Pose>, &mut Grad<Coeffs>)>| {
                let m = &model.0;
                let lambda = weights.get("temporal", 1.0);
                let vertices = m.landmarks();
                let n = vertices.len();
                let mut subjects: BTreeMap<u32, Vec<(Row, Vec<f32>, Pose)>> = BTreeMap::new();
                for (entity, frame, mesh, pose, coeffs, crop) in &frames {
                    let positions: Vec<f32> = vertices.iter().flat_map(|&v| mesh.vertex(v as usize)).collect();
                    let (camera_model, camera) = pose.camera();
                    let projected = project::forward_cpu(camera_model, &positions, &camera, n).chunks(4).map(|p| [p[0], p[1]]).collect();
                    let (offset, scale) = crop.map_or(([0.0; 2], 1.0), |c| (c.offset, c.scale));
                    subjects.entry(frame.subject_id).or_default().push((Row { entity, index: frame.index, projected, offset, scale, exp: coeffs.exp.clone() }, positions, pose.clone()));
                }
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for rows in subjects.values_mut() {
                    rows.sort_by_key(|r| r.0.index);
                    let (parts, rest): (Vec<Row>, Vec<(Vec<f32>, Pose)>) = std::mem::take(rows).into_iter().map(|(r, x, p)| (r, (x, p))).unzip();
                    let (value, d_points, d_exp) = second_differences(&parts, m.exp_sigma(), &settings);
                    total += value;
                    let scale = lambda / count;
                    for ((row, (positions, pose)), (d_p, d_e)) in parts.iter().zip(&rest).zip(d_points.iter().zip(&d_exp)) {
                        let Ok((mut g_mesh, mut g_pose, mut g_coeffs)) = grads.get_mut(row.entity) else { continue };
                        let d_projected: Vec<f32> = d_p.iter().flat_map(|g| [g[0] * scale, g[1] * scale, 0.0, 0.0]).collect();
                        let (camera_model, camera) = pose.camera();
                        let (d_positions, d_camera) = project::backward_cpu(camera_model, positions, &camera, &d_projected, n);
                        crate::add_vertex_grad(vertices, &d_positions, &pose.from_camera(&d_camera), m.n_vertices(), &mut g_mesh, &mut g_pose);
                        accumulate(&mut g_coeffs.value.exp, &d_e.iter().map(|g| g * scale).collect::<Vec<_>>());
                    }
                }
                terms.terms.insert("temporal".into(), lambda * total / count);
            })
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: u32, x: f32, e: f32) -> Row {
        Row { entity: Entity::PLACEHOLDER, index, projected: vec![[x, 10.0]], offset: [0.0; 2], scale: 1.0, exp: vec![e] }
    }

    #[test]
    fn straight_motion_costs_nothing_a_jump_costs_its_second_difference() {
        let settings = TemporalSettings::default();
        let smooth = [row(0, 0.0, 0.0), row(1, 1.0, 0.1), row(2, 2.0, 0.2)];
        assert!(second_differences(&smooth, &[1.0], &settings).0.abs() < 1e-10);
        // x: 0, 3, 0 → Δ² = −6, squared 36; e: 0, 0.5, 0 with σ 0.5 → Δ² = −2, squared 4.
        let jump = [row(0, 0.0, 0.0), row(1, 3.0, 0.5), row(2, 0.0, 0.0)];
        let (value, d_points, d_exp) = second_differences(&jump, &[0.5], &settings);
        assert!((value - 40.0).abs() < 1e-4, "{value}");
        assert_eq!((d_points[1][0][0], d_exp[1][0]), (24.0, 16.0));
    }

    #[test]
    fn the_landmark_part_is_measured_in_the_original_video_and_scaled_to_the_middle_crop() {
        // Three crops of a point standing still at x = 50 in the video.
        let crop = |index, offset: f32, scale: f32| Row { entity: Entity::PLACEHOLDER, index, projected: vec![[(50.0 - offset) * scale, 0.0]], offset: [offset, 0.0], scale, exp: vec![] };
        let still = [crop(0, 10.0, 2.0), crop(1, 20.0, 1.0), crop(2, 0.0, 4.0)];
        assert!(second_differences(&still, &[], &TemporalSettings::default()).0.abs() < 1e-6);
    }
}
