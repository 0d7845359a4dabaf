//! loss_landmark: PGN's sparse landmark loss (Eq. 8), L_l = λ_l Σ |T·X − X_UV|, L1 between the
//! model's 68 landmark vertices under the frame's pose and the target landmarks, in 2D (x, y in
//! pixels) or 3D (plus depth, compared after removing each set's mean depth, since a weak-
//! perspective camera leaves the depth offset free). Summed over the landmarks as in the paper,
//! in pixels of a 256-pixel crop (PGN's input size) whatever the image size, so λ_l keeps its
//! balance against the per-pixel photometric terms; averaged over the frames. Gradients go to the
//! mesh and the pose.
//!
//! Dense landmarks: a frame the built-in detector found (`DenseLandmarks`, FaceMesh's 468 points)
//! is fitted at all 468, against the model's `dense_landmarks` (the canonical mesh's vertices, the
//! same points by construction), when `dense` is on (the default) and the model has them. The
//! face-oval points weigh `dense_contour` (they lie on the surface near the silhouette, where the
//! detector is least sure), the rest 1; FaceMesh's depth (z, centred as the 3D path centres it)
//! counts `dense_depth` (0.5). The sum is scaled by 68 / 468 so that λ_l keeps its balance
//! against the other terms whichever path a frame takes.
//!
//! The 68-point path serves `.pts` inputs and synthetic data; on detected frames without the dense
//! path (`dense: false`, or a model without dense correspondences) the jaw points (iBUG 0–16)
//! weigh `detected_jaw`: FaceMesh's jaw vertices lie on the face surface, a few pixels inside the
//! visible outline a 68-point annotation follows (docs/io.md).
//!
//! MGCNet's landmark loss is the same comparison squared and weighted, L_lm = Σ c_lm (q_gt − q)²
//! with c_lm = 10 on the nose and inner-mouth landmarks: `norm: SquaredL2, emphasis: 10.0,
//! crop: 224.0` (its 224-pixel input).

use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{DenseLandmarks, Frame, Grad, Image, Landmarks2d, Landmarks3d, LossTerms, LossWeights, Mesh, Model, Pose};
use faceforge_kernels::project;
use serde::Deserialize;

/// λ_l of PGN.
pub const WEIGHT: f32 = 1.0;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Norm {
    /// |r| (PGN).
    #[default]
    L1,
    /// r² (MGCNet).
    SquaredL2,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LandmarkSettings {
    /// 2: image x, y. 3: x, y and depth (needs `Landmarks3d`).
    pub dims: u8,
    pub norm: Norm,
    /// The weight of the nose (iBUG 28–36) and inner-mouth (61–68) landmarks; 1 elsewhere.
    pub emphasis: f32,
    /// Residuals are measured in pixels of a crop this size, whatever the image size.
    pub crop: f32,
    /// The weight of the jaw points (0–16) of landmarks the detector found (68-point path).
    pub detected_jaw: f32,
    /// Fit detected frames at their 468 points (when the model has dense correspondences).
    pub dense: bool,
    /// The weight of the 36 face-oval points of the dense path.
    pub dense_contour: f32,
    /// The weight of the dense points' centred depth, where the detector gives one (FaceMesh's
    /// z); 0 fits them in 2D alone.
    pub dense_depth: f32,
}

impl Default for LandmarkSettings {
    fn default() -> Self {
        Self { dims: 2, norm: Norm::L1, emphasis: 1.0, crop: PAPER_CROP, detected_jaw: DETECTED_JAW, dense: true, dense_contour: DENSE_CONTOUR, dense_depth: DENSE_DEPTH }
    }
}

/// Each landmark's weight: `emphasis` on the nose (27–35, 0-based) and inner mouth (60–67).
pub fn landmark_weights(count: usize, emphasis: f32) -> Vec<f32> {
    (0..count).map(|l| if (27..=35).contains(&l) || (60..=67).contains(&l) { emphasis } else { 1.0 }).collect()
}

/// How much a detected jaw point counts against an interior one (docs/io.md: measured on the
/// committed portrait).
pub const DETECTED_JAW: f32 = 0.25;

/// How much a dense face-oval point counts against an interior one: as the detected jaw.
pub const DENSE_CONTOUR: f32 = 0.25;

/// How much FaceMesh's depth counts against its image position: half. Fitted in 2D alone, the
/// 468 points leave the profile to the prior and to the weak-perspective trade-offs, and on the
/// committed portrait the nose came out 34 mm in front of the outer eye corners where FaceMesh
/// (and the canonical face) put it near 50 (docs/results.md).
pub const DENSE_DEPTH: f32 = 0.5;

/// The dense path's per-point weights over FaceMesh's 468: `contour` on the face oval, 1 elsewhere.
pub fn dense_weights(contour: f32) -> Vec<f32> {
    let oval = faceforge_model::canonical::contour("face_oval_0");
    (0..faceforge_model::canonical::POINTS).map(|i| if oval.contains(&i) { contour } else { 1.0 }).collect()
}

/// iBUG's jaw: points 0–16.
const JAW_POINTS: usize = 17;

/// The crop size PGN's losses are written for.
pub const PAPER_CROP: f32 = 256.0;

/// One frame's summed L1 landmark error, Σ w_l |r_l| in 2D (plus the centred depth in 3D,
/// weighted `depth_weight`), and its gradient with respect to the landmarks' projections
/// [u, v, depth, inv_w] (4 per landmark).
pub fn landmark_l1(projected: &[[f32; 4]], targets_2d: &[[f32; 2]], targets_3d: Option<&[[f32; 3]]>, weights: &[f32], depth_weight: f32) -> (f32, Vec<f32>) {
    let n = projected.len() as f32;
    let mut value = 0.0f32;
    let mut grad = vec![0.0; 4 * projected.len()];
    for (l, (p, t)) in projected.iter().zip(targets_2d).enumerate() {
        for c in 0..2 {
            let r = p[c] - t[c];
            value += weights[l] * r.abs();
            grad[4 * l + c] = weights[l] * crate::sign(r);
        }
    }
    if let Some(t3) = targets_3d {
        let mean_model = projected.iter().map(|p| p[2]).sum::<f32>() / n;
        let mean_target = t3.iter().map(|t| t[2]).sum::<f32>() / n;
        let signs: Vec<f32> = projected.iter().zip(t3).map(|(p, t)| (p[2] - mean_model) - (t[2] - mean_target)).inspect(|r| value += depth_weight * r.abs()).map(crate::sign).collect();
        let mean_sign = signs.iter().sum::<f32>() / n;
        for (l, s) in signs.iter().enumerate() {
            grad[4 * l + 2] = depth_weight * (s - mean_sign);
        }
    }
    (value, grad)
}

/// One frame's weighted sum of squared 2D landmark residuals, Σ c_l ‖p_l − t_l‖², and its
/// gradient with respect to the projections (4 per landmark).
pub fn landmark_squared(projected: &[[f32; 4]], targets: &[[f32; 2]], weights: &[f32]) -> (f32, Vec<f32>) {
    let mut value = 0.0f32;
    let mut grad = vec![0.0; 4 * projected.len()];
    for (l, (p, t)) in projected.iter().zip(targets).enumerate() {
        for c in 0..2 {
            let r = p[c] - t[c];
            value += weights[l] * r * r;
            grad[4 * l + c] = 2.0 * weights[l] * r;
        }
    }
    (value, grad)
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_landmark",
        stage: Stage::Loss,
        // (Frames may also carry `DenseLandmarks`; those without keep the 68-point path.)
        reads: data![Mesh, Pose, Landmarks2d],
        writes: data![Grad<Mesh>, Grad<Pose>, LossTerms],
        reads_if_present: data![Landmarks3d],
        adjoint: None,
        summary: "landmark loss: L1 in 2D or 3D (PGN Eq. 8), or weighted squared (MGCNet)",
        build: |settings| {
            let settings: LandmarkSettings = parse_settings(settings)?;
            if settings.dims != 2 && settings.dims != 3 {
                return Err(crate::SettingsError(format!("dims must be 2 or 3, not {}", settings.dims)));
            }
            if settings.norm == Norm::SquaredL2 && settings.dims == 3 {
                return Err(crate::SettingsError("norm: SquaredL2 compares 2D landmarks (dims: 2)".into()));
            }
            if settings.norm == Norm::L1 && settings.emphasis != 1.0 {
                return Err(crate::SettingsError("emphasis needs norm: SquaredL2".into()));
            }
            let dense_point_weights = dense_weights(settings.dense_contour);
            Ok((move |model: Res<Model>,
                      weights: Res<LossWeights>,
                      mut terms: ResMut<LossTerms>,
                      mut frames: Query<(&Frame, &Mesh, &Pose, &Landmarks2d, Option<&Landmarks3d>, Option<&Image>, Option<&DenseLandmarks>, &mut Grad<Mesh>, &mut Grad<Pose>)>|
                  -> Result<(), crate::StageError> {
                let m = &model.0;
                let lambda = weights.get("landmark", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (frame, mesh, pose, targets, targets_3d, image, detected, mut g_mesh, mut g_pose) in frames.iter_mut() {
                    let frame_size = image.map(|im| im.width.max(im.height));
                    let fail = |message: String| crate::StageError { system: "loss_landmark", message: format!("frame {}: {message}", frame.name) };
                    if targets.points.len() != m.landmarks().len() {
                        return Err(fail(format!("{} landmarks, the model has {}", targets.points.len(), m.landmarks().len())));
                    }
                    // The dense path: the detector's 468 points at the model's 468 vertices.
                    let dense = detected.filter(|d| settings.dense && settings.dims == 2 && !m.dense_landmarks().is_empty() && d.points.len() == m.dense_landmarks().len());
                    let (vertices, dense_targets, path_scale) = match dense {
                        Some(d) => (m.dense_landmarks(), Some(d.points.iter().map(|p| [p[0], p[1]]).collect::<Vec<_>>()), m.landmarks().len() as f32 / d.points.len() as f32),
                        None => (m.landmarks(), None, 1.0),
                    };
                    let targets_2d = dense_targets.as_deref().unwrap_or(&targets.points);
                    let (t3, depth_weight) = match (dense, settings.dims, targets_3d) {
                        (Some(d), _, _) if d.depth && settings.dense_depth > 0.0 => (Some(d.points.as_slice()), settings.dense_depth),
                        (Some(_), _, _) => (None, 0.0),
                        (None, 3, Some(t)) if t.points.len() == targets.points.len() => (Some(t.points.as_slice()), 1.0),
                        (None, 3, _) => return Err(fail("the 3D landmark loss needs 68 3D landmarks".into())),
                        _ => (None, 0.0),
                    };
                    let positions: Vec<f32> = vertices.iter().flat_map(|&v| mesh.vertex(v as usize)).collect();
                    let (camera_model, camera) = pose.camera();
                    let n = vertices.len();
                    let projected: Vec<[f32; 4]> = project::forward_cpu(camera_model, &positions, &camera, n).chunks(4).map(|p| [p[0], p[1], p[2], p[3]]).collect();
                    // In pixels of the crop: the error scales with the residuals to its norm's power.
                    let to_crop = settings.crop / frame_size.map_or(settings.crop, |s| s as f32);
                    let sparse_weights;
                    let point_weights: &[f32] = if dense.is_some() {
                        &dense_point_weights
                    } else {
                        let mut w = landmark_weights(n, settings.emphasis);
                        if detected.is_some() {
                            w.iter_mut().take(JAW_POINTS).for_each(|w| *w *= settings.detected_jaw);
                        }
                        sparse_weights = w;
                        &sparse_weights
                    };
                    let (value, d_projected, to_crop) = match settings.norm {
                        Norm::L1 => {
                            let (v, d) = landmark_l1(&projected, targets_2d, t3, point_weights, depth_weight);
                            (v, d, to_crop * path_scale)
                        }
                        Norm::SquaredL2 => {
                            let (v, d) = landmark_squared(&projected, targets_2d, point_weights);
                            (v, d, to_crop * to_crop * path_scale)
                        }
                    };
                    total += value * to_crop;
                    let scale = lambda / count * to_crop;
                    let d_projected: Vec<f32> = d_projected.iter().map(|g| g * scale).collect();
                    let (mut d_positions, mut d_camera) = project::backward_cpu(camera_model, &positions, &camera, &d_projected, n);
                    if t3.is_some() {
                        // The render's adjoint ignores depth; the 3D loss compares it.
                        let d_depth: Vec<f32> = d_projected.chunks(4).map(|g| g[2]).collect();
                        let (dx, dc) = project::depth_backward_cpu(camera_model, &positions, &camera, &d_depth, n);
                        d_positions.iter_mut().zip(dx).for_each(|(a, b)| *a += b);
                        d_camera.iter_mut().zip(dc).for_each(|(a, b)| *a += b);
                    }
                    // Straight into the mesh gradient, at the landmark vertices only.
                    crate::add_vertex_grad(vertices, &d_positions, &pose.from_camera(&d_camera), mesh.positions.len() / 3, &mut g_mesh, &mut g_pose);
                }
                terms.terms.insert("landmark".into(), lambda * total / count);
                Ok(())
            })
            .pipe(crate::collect_errors)
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::landmark_l1;

    #[test]
    fn l1_by_hand_in_2d_and_with_centred_depth() {
        // Two landmarks, residuals (1, −2) and (0.5, 0): 3.5 in 2D.
        let projected = [[1.0, -2.0, 4.0, 1.0], [0.5, 0.0, 0.0, 1.0]];
        let targets = [[0.0, 0.0], [0.0, 0.0]];
        let (value, grad) = landmark_l1(&projected, &targets, None, &[1.0, 1.0], 1.0);
        assert_eq!(value, 3.5);
        assert_eq!(grad, vec![1.0, -1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        // Depths 4 and 0 against 10 and 10: centred, +2 and −2 → 4 more; a shared offset is free.
        let (value, grad) = landmark_l1(&projected, &targets, Some(&[[0.0, 0.0, 10.0], [0.0, 0.0, 10.0]]), &[1.0, 1.0], 1.0);
        assert_eq!(value, 7.5);
        assert_eq!((grad[2], grad[6]), (1.0, -1.0));
        let (same, _) = landmark_l1(&projected, &targets, Some(&[[0.0, 0.0, 14.0], [0.0, 0.0, 10.0]]), &[1.0, 1.0], 1.0);
        assert_eq!(same, 3.5);
        // The dense path's depth at half weight: half the 4 and half the pull.
        let (value, grad) = landmark_l1(&projected, &targets, Some(&[[0.0, 0.0, 10.0], [0.0, 0.0, 10.0]]), &[1.0, 1.0], 0.5);
        assert_eq!(value, 3.5 + 2.0);
        assert_eq!((grad[2], grad[6]), (0.5, -0.5));
        // A point weighted 0.25 (a detected jaw point) counts and pulls a quarter as much.
        let (value, grad) = landmark_l1(&projected, &targets, None, &[0.25, 1.0], 1.0);
        assert_eq!(value, 0.75 + 0.5);
        assert_eq!(&grad[..2], &[0.25, -0.25]);
    }

    #[test]
    fn squared_with_nose_and_mouth_emphasis_by_hand() {
        let weights = super::landmark_weights(68, 10.0);
        assert_eq!((weights[26], weights[27], weights[35], weights[36], weights[59], weights[60], weights[67]), (1.0, 10.0, 10.0, 1.0, 1.0, 10.0, 10.0));
        let mut projected = vec![[0.0f32; 4]; 68];
        projected[0] = [3.0, 4.0, 0.0, 1.0];
        projected[30] = [1.0, 0.0, 0.0, 1.0];
        let (value, grad) = super::landmark_squared(&projected, &vec![[0.0; 2]; 68], &weights);
        // 25 on an ordinary landmark, 10 × 1 on the nose tip.
        assert_eq!(value, 35.0);
        assert_eq!((grad[0], grad[1], grad[120]), (6.0, 8.0, 20.0));
    }
}
