//! The papers' metrics, measured the same way (definitions in papers.md §5 of each paper), per
//! frame and per run:
//! - 2D landmark NME (%): mean landmark distance / √(w·h) of the ground-truth landmark box
//!   (3DDFA's protocol, used by MGCNet and 2DASL), and the "mean" as the mean of the yaw-bin
//!   means (0–30°, 30–60°, 60–90°);
//! - dense 3D NME (%): mean per-vertex distance after rigid alignment / outer interocular
//!   distance (PGN after PRN; CEST with ICP correspondences, see `scan`);
//! - scan errors after the benchmarks' protocol (MGCNet, FRGC): the ground truth cropped to
//!   95 mm around the nose tip, aligned by the 3D landmarks then point-to-plane ICP, and the
//!   point-to-plane RMSE, mean point-to-plane distance and point-to-point MAE (mm);
//! - per-vertex and depth error (mm), pose error (degrees, geodesic), landmark error (pixels);
//! - cumulative error distributions.
//!
//! A frame is measured from a `Prediction` and a `Truth`, so a run (from its World) and
//! `faceforge eval` (from files) measure alike.

use crate::eval::alignment::{crop, horn, icp_point_to_plane, surface_distances};
use bevy_ecs::world::World;
use faceforge_components::{Albedo, Frame, GroundTruth, Mesh, Pose};
use faceforge_kernels::normals::{self, Adjacency};
use faceforge_kernels::pgn::{rotation_and_scale, rotation_angle_between};
use faceforge_kernels::{project, Backend};
use faceforge_model::MorphableModel;
use faceforge_systems::reconstruct::decode_batch;
use serde::{Deserialize, Serialize};

/// The yaw bins of the AFLW2000-3D tables, degrees of |yaw|.
pub const YAW_BINS: [[f32; 2]; 3] = [[0.0, 30.0], [30.0, 60.0], [60.0, 90.0]];
/// The crop of the ground truth around the nose tip (MGCNet, FRGC), mm.
pub const CROP_RADIUS_MM: f64 = 95.0;
/// iBUG indices: the nose tip and the outer eye corners.
const NOSE_TIP: usize = 30;
const OUTER_EYE_CORNERS: [usize; 2] = [36, 45];
const ICP_ITERATIONS: usize = 30;

/// The bin of a yaw (degrees); |yaw| ≥ 90° falls in the last bin.
pub fn yaw_bin(yaw_deg: f32) -> usize {
    YAW_BINS.iter().position(|b| yaw_deg.abs() < b[1]).unwrap_or(YAW_BINS.len() - 1)
}

/// 2D NME in percent: the mean distance between predicted and true landmarks over √(w·h) of the
/// true landmarks' bounding box.
pub fn nme_2d(predicted: &[[f32; 2]], truth: &[[f32; 2]]) -> f64 {
    let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
    for p in truth {
        for c in 0..2 {
            lo[c] = lo[c].min(p[c] as f64);
            hi[c] = hi[c].max(p[c] as f64);
        }
    }
    let size = ((hi[0] - lo[0]) * (hi[1] - lo[1])).sqrt();
    let distance = |a: &[f32; 2], b: &[f32; 2]| ((a[0] as f64 - b[0] as f64).powi(2) + (a[1] as f64 - b[1] as f64).powi(2)).sqrt();
    let mean = predicted.iter().zip(truth).map(|(a, b)| distance(a, b)).sum::<f64>() / truth.len() as f64;
    100.0 * mean / size
}

/// The mean of the per-bin means of `(yaw in degrees, value)` samples, over the bins that have
/// samples: every bin counts alike however many samples it holds.
pub fn mean_of_bin_means(samples: &[(f32, f32)]) -> Option<f32> {
    let means: Vec<f32> = (0..YAW_BINS.len())
        .filter_map(|b| {
            let values: Vec<f32> = samples.iter().filter(|(yaw, _)| yaw_bin(*yaw) == b).map(|(_, v)| *v).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f32>() / values.len() as f32)
        })
        .collect();
    (!means.is_empty()).then(|| means.iter().sum::<f32>() / means.len() as f32)
}

/// The cumulative error distribution: (error, fraction of samples with at most that error),
/// one point per sample in increasing order.
pub fn ced(errors: &[f32]) -> Vec<(f32, f32)> {
    let mut sorted: Vec<f32> = errors.iter().copied().filter(|e| e.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len() as f32;
    sorted.iter().enumerate().map(|(i, &e)| (e, (i + 1) as f32 / n)).collect()
}

/// Unit vertex normals of a mesh of the model's topology.
pub fn vertex_normals(model: &MorphableModel, positions: &[f32]) -> Vec<f32> {
    let n = positions.len() / 3;
    normals::forward_cpu(positions, model.triangles(), &Adjacency::new(n, model.triangles()), n)
}

fn vertex(positions: &[f32], v: usize) -> [f32; 3] {
    [positions[3 * v], positions[3 * v + 1], positions[3 * v + 2]]
}

fn landmark_points(model: &MorphableModel, positions: &[f32]) -> Vec<f32> {
    crate::io::outputs::landmarks_3d(model, positions).concat()
}

/// The distance between the outer eye corners (landmarks 36 and 45), mm.
pub fn interocular(model: &MorphableModel, positions: &[f32]) -> f32 {
    let [a, b] = OUTER_EYE_CORNERS.map(|l| vertex(positions, model.landmarks()[l] as usize));
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// The distance of each vertex of one mesh to its counterpart in another (xyz per vertex).
pub fn vertex_distances(fit: &[f32], truth: &[f32]) -> Vec<f32> {
    fit.chunks(3).zip(truth.chunks(3)).map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()).collect()
}

/// Per-vertex and depth error between two meshes (xyz per vertex), as they are.
pub fn shape_errors(fit: &[f32], truth: &[f32]) -> (f32, f32) {
    let n = fit.len() / 3;
    let per_vertex = vertex_distances(fit, truth).iter().sum::<f32>() / n as f32;
    let dz: Vec<f32> = fit.chunks(3).zip(truth.chunks(3)).map(|(a, b)| a[2] - b[2]).collect();
    let mean = dz.iter().sum::<f32>() / n as f32;
    (per_vertex, dz.iter().map(|d| (d - mean).abs()).sum::<f32>() / n as f32)
}

/// The errors of a predicted surface against a ground-truth "scan", the benchmarks' way.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ScanErrors {
    /// Point-to-plane RMSE (mm, MGCNet's Florence metric).
    pub rmse_mm: f32,
    /// Mean point-to-plane distance (mm, the MVF-Net / PGN Florence metric).
    pub mean_mm: f32,
    /// Mean point-to-point distance (mm, FRGC's MAE).
    pub mae_mm: f32,
    /// Scan points within the crop.
    pub points: usize,
}

/// Crops the truth to 95 mm around its nose tip, aligns it to the prediction by the 68 3D
/// landmarks (Horn), refines by point-to-plane ICP against the prediction's surface, and
/// measures each scan point's distance to that surface. Moving the scan rather than the
/// prediction keeps the prediction's unmatched border out of the correspondences.
pub fn scan_errors(model: &MorphableModel, predicted: &[f32], truth: &[f32]) -> ScanErrors {
    let kept = crop(truth, vertex(truth, model.landmarks()[NOSE_TIP] as usize).map(f64::from), CROP_RADIUS_MM);
    let scan: Vec<f32> = kept.iter().flat_map(|&v| vertex(truth, v)).collect();
    let normals = vertex_normals(model, predicted);
    let init = horn(&landmark_points(model, truth), &landmark_points(model, predicted));
    let fit = icp_point_to_plane(&scan, predicted, &normals, init, ICP_ITERATIONS);
    let (plane, nearest) = surface_distances(&fit.transform.apply_all(&scan), predicted, &normals);
    let n = plane.len().max(1) as f64;
    ScanErrors {
        rmse_mm: (plane.iter().map(|d| d * d).sum::<f64>() / n).sqrt() as f32,
        mean_mm: (plane.iter().sum::<f64>() / n) as f32,
        mae_mm: (nearest.iter().sum::<f64>() / n) as f32,
        points: kept.len(),
    }
}

/// What a method produced for one frame.
pub struct Prediction<'a> {
    /// The mesh in model space (the model's topology), mm.
    pub shape: &'a [f32],
    /// The 68 landmarks in the image, pixels.
    pub landmarks_2d: Option<Vec<[f32; 2]>>,
    pub pose: Option<&'a Pose>,
}

/// What is known about one frame.
pub struct Truth<'a> {
    pub shape: &'a [f32],
    /// The noise-free landmarks in the image, pixels.
    pub landmarks_2d: Option<Vec<[f32; 2]>>,
    pub pose: Option<&'a Pose>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrameMetrics {
    pub frame: String,
    /// Mean distance of corresponding vertices after rigid alignment (mm).
    pub per_vertex_mm: f32,
    /// Mean |Δz − mean Δz| after rigid alignment: the error along the depth axis (mm).
    pub depth_mm: f32,
    /// Dense 3D NME: per-vertex error / outer interocular distance (%).
    pub nme_3d: f32,
    /// Against the truth cropped to 95 mm around the nose tip, after landmark alignment and ICP.
    pub scan: ScanErrors,
    /// 2D landmark NME, √(w·h) of the true landmark box (%).
    pub nme_2d: Option<f32>,
    /// Mean distance between predicted and true (noise-free) landmarks (pixels).
    pub landmarks_px: Option<f32>,
    /// Geodesic angle between the fitted and the true rotation (degrees).
    pub pose_deg: Option<f32>,
    /// Fitted and true yaw, pitch, roll (degrees) of weak-perspective poses.
    pub pose_ypr_deg: Option<[f32; 3]>,
    pub true_ypr_deg: Option<[f32; 3]>,
    /// The model's mean face measured the same way: what a fit starts from.
    pub mean_face: Baseline,
    /// RMS over vertices of the fitted albedo's RGB error against the truth's (in 1/255), and
    /// of the model's mean albedo, when the frame has an albedo: how well the reflectance is
    /// told apart from the light.
    #[serde(default)]
    pub albedo_255: Option<[f32; 2]>,
}

/// The shape metrics of the mean face against a frame's truth.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Baseline {
    pub per_vertex_mm: f32,
    pub depth_mm: f32,
    pub nme_3d: f32,
    pub scan_rmse_mm: f32,
}

impl FrameMetrics {
    /// |true yaw| in degrees, when the truth has a pose.
    pub fn yaw(&self) -> Option<f32> {
        self.true_ypr_deg.map(|a| a[0].abs())
    }
}

/// Yaw, pitch, roll in degrees of the head in a pose.
pub fn ypr_deg(pose: Option<&Pose>) -> Option<[f32; 3]> {
    match pose {
        Some(Pose::WeakPerspective { t }) => Some(faceforge_systems::direct_pose::params_of(t).angles.map(f32::to_degrees)),
        Some(Pose::Pinhole { k, r, t }) => Some(faceforge_systems::pinhole_pose::from_pinhole(k, r, *t).angles.map(f32::to_degrees)),
        None => None,
    }
}

/// Measures one frame; `mean_face` is the model's mean shape (for the baseline) and
/// `vertex_errors` receives the aligned per-vertex errors (for the heat map).
pub fn measure_frame(model: &MorphableModel, name: &str, predicted: &Prediction, truth: &Truth, mean_face: &[f32]) -> (FrameMetrics, Vec<f32>) {
    // Corresponding vertices, so Horn aligns exactly: a weak-perspective fit cannot see the
    // mesh's depth offset, and any rotation of the shape is the pose's to absorb.
    let aligned = horn(predicted.shape, truth.shape).apply_all(predicted.shape);
    let errors = vertex_distances(&aligned, truth.shape);
    let (per_vertex_mm, depth_mm) = shape_errors(&aligned, truth.shape);
    let eyes = interocular(model, truth.shape);
    let baseline = {
        let aligned = horn(mean_face, truth.shape).apply_all(mean_face);
        let (per_vertex_mm, depth_mm) = shape_errors(&aligned, truth.shape);
        Baseline { per_vertex_mm, depth_mm, nme_3d: 100.0 * per_vertex_mm / eyes, scan_rmse_mm: scan_errors(model, mean_face, truth.shape).rmse_mm }
    };
    let (nme, px) = match (&predicted.landmarks_2d, &truth.landmarks_2d) {
        (Some(p), Some(t)) => (Some(nme_2d(p, t) as f32), Some(p.iter().zip(t).map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()).sum::<f32>() / t.len() as f32)),
        _ => (None, None),
    };
    let metrics = FrameMetrics {
        frame: name.to_string(),
        per_vertex_mm,
        depth_mm,
        nme_3d: 100.0 * per_vertex_mm / eyes,
        scan: scan_errors(model, predicted.shape, truth.shape),
        nme_2d: nme,
        landmarks_px: px,
        pose_deg: predicted.pose.zip(truth.pose).and_then(|(p, t)| pose_error(p, t)),
        pose_ypr_deg: ypr_deg(predicted.pose),
        true_ypr_deg: ypr_deg(truth.pose),
        mean_face: baseline,
        albedo_255: None,
    };
    (metrics, errors)
}

/// Mean and standard deviation of one metric over frames.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Spread {
    pub mean: f32,
    pub std: f32,
}

impl Spread {
    pub fn of(values: &[f32]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        Self { mean, std: (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt() }
    }
}

/// The metrics of the frames whose |true yaw| falls in one bin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct YawBin {
    pub yaw_deg: [f32; 2],
    pub frames: usize,
    pub nme_2d: Option<f32>,
    pub nme_3d: Option<f32>,
    pub pose_deg: Option<f32>,
    /// Mean aligned per-vertex error (mm).
    #[serde(default)]
    pub per_vertex_mm: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RunMetrics {
    pub per_vertex_mm: Spread,
    pub depth_mm: Spread,
    pub nme_3d: Spread,
    pub scan_rmse_mm: Spread,
    pub scan_mean_mm: Spread,
    pub scan_mae_mm: Spread,
    pub nme_2d: Spread,
    /// The mean of the yaw-bin means of the 2D NME: the "Mean" column of the papers' tables.
    pub nme_2d_mean_of_bins: Option<f32>,
    pub nme_3d_mean_of_bins: Option<f32>,
    pub pose_deg: Spread,
    pub landmarks_px: Spread,
    pub by_yaw: Vec<YawBin>,
    /// The same shape metrics for the model's mean face (aligned the same way).
    pub mean_face_per_vertex_mm: Spread,
    pub mean_face_depth_mm: Spread,
    pub mean_face_nme_3d: Spread,
    pub mean_face_scan_rmse_mm: Spread,
    /// The fitted albedo's error and the mean albedo's (1/255), when the frames have albedo.
    #[serde(default)]
    pub albedo_255: Option<Spread>,
    #[serde(default)]
    pub mean_albedo_255: Option<Spread>,
    pub frames: Vec<FrameMetrics>,
    /// Mean aligned error per vertex over the frames (mm), for the heat map.
    #[serde(skip)]
    pub vertex_errors_mm: Vec<f32>,
}

impl RunMetrics {
    /// Summarises measured frames (and their per-vertex errors).
    pub fn from_frames(mut frames: Vec<FrameMetrics>, vertex_errors: &[Vec<f32>]) -> Self {
        frames.sort_by(|a, b| a.frame.cmp(&b.frame));
        let column = |f: &dyn Fn(&FrameMetrics) -> Option<f32>| Spread::of(&frames.iter().filter_map(f).collect::<Vec<_>>());
        let binned = |f: &dyn Fn(&FrameMetrics) -> Option<f32>| frames.iter().filter_map(|m| Some((m.yaw()?, f(m)?))).collect::<Vec<_>>();
        let by_yaw = YAW_BINS
            .iter()
            .enumerate()
            .map(|(b, range)| {
                let in_bin: Vec<&FrameMetrics> = frames.iter().filter(|m| m.yaw().is_some_and(|y| yaw_bin(y) == b)).collect();
                let mean = |f: &dyn Fn(&FrameMetrics) -> Option<f32>| {
                    let v: Vec<f32> = in_bin.iter().filter_map(|m| f(m)).collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32)
                };
                YawBin { yaw_deg: *range, frames: in_bin.len(), nme_2d: mean(&|m| m.nme_2d), nme_3d: mean(&|m| Some(m.nme_3d)), pose_deg: mean(&|m| m.pose_deg), per_vertex_mm: mean(&|m| Some(m.per_vertex_mm)) }
            })
            .collect();
        let mut vertex_errors_mm = vec![0.0f32; vertex_errors.first().map_or(0, Vec::len)];
        for errors in vertex_errors {
            for (sum, e) in vertex_errors_mm.iter_mut().zip(errors) {
                *sum += e / vertex_errors.len() as f32;
            }
        }
        Self {
            per_vertex_mm: column(&|m| Some(m.per_vertex_mm)),
            depth_mm: column(&|m| Some(m.depth_mm)),
            nme_3d: column(&|m| Some(m.nme_3d)),
            scan_rmse_mm: column(&|m| Some(m.scan.rmse_mm)),
            scan_mean_mm: column(&|m| Some(m.scan.mean_mm)),
            scan_mae_mm: column(&|m| Some(m.scan.mae_mm)),
            nme_2d: column(&|m| m.nme_2d),
            nme_2d_mean_of_bins: mean_of_bin_means(&binned(&|m| m.nme_2d)),
            nme_3d_mean_of_bins: mean_of_bin_means(&binned(&|m| Some(m.nme_3d))),
            pose_deg: column(&|m| m.pose_deg),
            landmarks_px: column(&|m| m.landmarks_px),
            by_yaw,
            mean_face_per_vertex_mm: column(&|m| Some(m.mean_face.per_vertex_mm)),
            mean_face_depth_mm: column(&|m| Some(m.mean_face.depth_mm)),
            mean_face_nme_3d: column(&|m| Some(m.mean_face.nme_3d)),
            mean_face_scan_rmse_mm: column(&|m| Some(m.mean_face.scan_rmse_mm)),
            albedo_255: frames.iter().any(|m| m.albedo_255.is_some()).then(|| column(&|m| m.albedo_255.map(|a| a[0]))),
            mean_albedo_255: frames.iter().any(|m| m.albedo_255.is_some()).then(|| column(&|m| m.albedo_255.map(|a| a[1]))),
            frames,
            vertex_errors_mm,
        }
    }
}

/// Pose error in degrees between two poses of the same kind.
pub fn pose_error(fit: &Pose, truth: &Pose) -> Option<f32> {
    match (fit, truth) {
        (Pose::WeakPerspective { t: a }, Pose::WeakPerspective { t: b }) => Some(rotation_angle_between(&rotation_and_scale(a, true).0, &rotation_and_scale(b, true).0)),
        (Pose::Pinhole { r: a, .. }, Pose::Pinhole { r: b, .. }) => Some(rotation_angle_between(a, b)),
        _ => None,
    }
}

/// The model's 68 landmarks of a mesh, projected by a pose (pixels).
pub fn project_landmarks(m: &MorphableModel, positions: &[f32], pose: &Pose) -> Vec<[f32; 2]> {
    let (camera_model, camera) = pose.camera();
    project::forward_cpu(camera_model, &landmark_points(m, positions), &camera, m.landmarks().len()).chunks(4).map(|p| [p[0], p[1]]).collect()
}

/// RMS over vertices of the RGB distance between two per-vertex albedos, in 1/255.
pub fn albedo_rms_255(a: &[f32], b: &[f32]) -> f32 {
    let n = (a.len() / 3).max(1) as f32;
    255.0 * (a.chunks(3).zip(b.chunks(3)).map(|(x, y)| (0..3).map(|c| (x[c] - y[c]).powi(2)).sum::<f32>()).sum::<f32>() / n).sqrt()
}

/// Measures every frame that has a fitted mesh and a ground truth.
pub fn measure(world: &mut World, m: &MorphableModel) -> Option<RunMetrics> {
    let (frames, vertex_errors): (Vec<FrameMetrics>, Vec<Vec<f32>>) = measure_frames(world, m)?.into_iter().unzip();
    (!frames.is_empty()).then(|| RunMetrics::from_frames(frames, &vertex_errors))
}

/// Each frame's metrics and per-vertex errors (mm), in name order: what `RunMetrics::from_frames`
/// summarises. `None` when a truth does not decode with this model.
pub fn measure_frames(world: &mut World, m: &MorphableModel) -> Option<Vec<(FrameMetrics, Vec<f32>)>> {
    let mut q = world.query::<(&Frame, &Mesh, &GroundTruth, Option<&Pose>, Option<&Albedo>)>();
    let mut rows: Vec<_> = q.iter(world).collect();
    rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut measured = Vec::new();
    for (frame, mesh, truth, pose, albedo) in rows {
        let (true_shape, true_albedo) = decode_batch(&Backend::Cpu, m, None, &[(frame, &truth.coeffs)], albedo.is_some()).ok()?;
        let predicted = Prediction { shape: &mesh.positions, landmarks_2d: pose.map(|p| project_landmarks(m, &mesh.positions, p)), pose };
        let exact = Truth { shape: &true_shape, landmarks_2d: truth.pose.as_ref().map(|p| project_landmarks(m, &true_shape, p)), pose: truth.pose.as_ref() };
        let (mut metrics, errors) = measure_frame(m, &frame.name, &predicted, &exact, m.mean_shape());
        if let (Some(fitted), Some(truth)) = (albedo, true_albedo.as_ref()) {
            metrics.albedo_255 = Some([albedo_rms_255(&fitted.rgb, truth), albedo_rms_255(m.mean_albedo(), truth)]);
        }
        measured.push((metrics, errors));
    }
    Some(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_by_hand() {
        // Two vertices: one moved by (3, 4, 0) → 5 mm, one by (0, 0, 2) → 2 mm; Δz = (0, 2),
        // mean 1, so the depth error is (1 + 1) / 2.
        let truth = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let fit = [3.0, 4.0, 0.0, 1.0, 1.0, 3.0];
        let (pv, depth) = shape_errors(&fit, &truth);
        assert!((pv - 3.5).abs() < 1e-6 && (depth - 1.0).abs() < 1e-6, "{pv} {depth}");
        let s = Spread::of(&[1.0, 3.0]);
        assert_eq!((s.mean, s.std), (2.0, 1.0));
    }

    #[test]
    fn nme_2d_by_hand() {
        // True box 40 × 10 px → √(w·h) = 20 px. Errors: 5 px (3-4-5), √2 px, 0, 0 → mean
        // (5 + √2) / 4, NME = 100 · (5 + √2) / 80 %.
        let truth = [[0.0, 0.0], [40.0, 0.0], [0.0, 10.0], [40.0, 10.0]];
        let predicted = [[3.0, 4.0], [41.0, 1.0], [0.0, 10.0], [40.0, 10.0]];
        let by_hand = 100.0 * (5.0 + 2f64.sqrt()) / 80.0;
        assert!((nme_2d(&predicted, &truth) - by_hand).abs() < 1e-9, "{} vs {by_hand}", nme_2d(&predicted, &truth));
    }

    #[test]
    fn mean_of_bin_means_is_not_the_plain_mean_on_an_unbalanced_set() {
        // Four frontal frames with NME 1, one at 45° with 4, one at 75° with 7: bin means 1, 4, 7.
        let samples = [(10.0, 1.0), (-5.0, 1.0), (20.0, 1.0), (29.0, 1.0), (-45.0, 4.0), (75.0, 7.0)];
        let plain = samples.iter().map(|s| s.1).sum::<f32>() / 6.0;
        assert_eq!(mean_of_bin_means(&samples), Some(4.0));
        assert!((plain - 2.5).abs() < 1e-6);
        // 90° and beyond count in the last bin, 30° starts the second.
        assert_eq!((yaw_bin(30.0), yaw_bin(-95.0), yaw_bin(0.0)), (1, 2, 0));
        // The run's summary reports the mean of the bin means, not the plain mean.
        let frame = |name: &str, yaw: f32, nme: f32| FrameMetrics {
            frame: name.into(),
            per_vertex_mm: 1.0,
            depth_mm: 1.0,
            nme_3d: nme,
            scan: ScanErrors { rmse_mm: 1.0, mean_mm: 1.0, mae_mm: 1.0, points: 10 },
            nme_2d: Some(nme),
            landmarks_px: Some(1.0),
            pose_deg: Some(1.0),
            pose_ypr_deg: None,
            true_ypr_deg: Some([yaw, 0.0, 0.0]),
            mean_face: Baseline::default(),
            albedo_255: None,
        };
        let frames: Vec<FrameMetrics> = samples.iter().enumerate().map(|(i, (yaw, v))| frame(&format!("f{i}"), *yaw, *v)).collect();
        let run = RunMetrics::from_frames(frames, &[]);
        assert_eq!(run.nme_2d_mean_of_bins, Some(4.0));
        assert!((run.nme_2d.mean - 2.5).abs() < 1e-6);
        assert_eq!(run.by_yaw.iter().map(|b| b.frames).collect::<Vec<_>>(), vec![4, 1, 1]);
    }

    #[test]
    fn ced_counts_samples_at_or_below_each_error() {
        let curve = ced(&[3.0, 1.0, f32::NAN, 2.0, 2.0]);
        assert_eq!(curve, vec![(1.0, 0.25), (2.0, 0.5), (2.0, 0.75), (3.0, 1.0)]);
    }

    fn tiny() -> MorphableModel {
        MorphableModel::generate(&faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, ..Default::default() })
    }

    #[test]
    fn dense_nme_3d_by_hand() {
        let m = tiny();
        let truth = m.mean_shape();
        let eyes = interocular(&m, truth);
        assert!((60.0..120.0).contains(&eyes), "outer interocular {eyes} mm");
        let truth_only = |shape: &[f32]| measure_frame(&m, "f", &Prediction { shape, landmarks_2d: None, pose: None }, &Truth { shape: truth, landmarks_2d: None, pose: None }, truth).0;
        // Moved 1.5 mm along z: the alignment removes it, error 0.
        let moved = crate::eval::alignment::Rigid { r: crate::eval::alignment::Rigid::default().r, t: [0.0, 0.0, 1.5] }.apply_all(truth);
        let frame = truth_only(&moved);
        assert!(frame.nme_3d < 1e-4 && frame.scan.rmse_mm < 1e-3, "{frame:?}");
        // The scan is the truth within 95 mm of its nose tip: the forehead's top and the chin's
        // tip (96 mm from the centre of a 192 mm tall face) fall outside.
        let nose = vertex(truth, m.landmarks()[NOSE_TIP] as usize);
        let inside = truth.chunks(3).filter(|p| ((p[0] - nose[0]).powi(2) + (p[1] - nose[1]).powi(2) + (p[2] - nose[2]).powi(2)).sqrt() <= 95.0).count();
        assert_eq!(frame.scan.points, inside);
        assert!(inside > truth.len() / 3 / 2 && inside < truth.len() / 3, "{inside} of {} vertices in the crop", truth.len() / 3);
        // Scaled by 1.1 about its centroid c: no rigid motion undoes that, and the best one is
        // the identity, so vertex i is off by 0.1 |p_i − c| and NME = 100 · mean / eyes.
        let n = truth.len() / 3;
        let c: Vec<f32> = (0..3).map(|k| truth.chunks(3).map(|p| p[k]).sum::<f32>() / n as f32).collect();
        let scaled: Vec<f32> = truth.chunks(3).flat_map(|p| (0..3).map(|k| c[k] + 1.1 * (p[k] - c[k])).collect::<Vec<_>>()).collect();
        let mean = truth.chunks(3).map(|p| 0.1 * ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2)).sqrt()).sum::<f32>() / n as f32;
        let by_hand = 100.0 * mean / eyes;
        let frame = truth_only(&scaled);
        assert!((frame.nme_3d - by_hand).abs() < 1e-4 * by_hand, "{} vs {by_hand}", frame.nme_3d);
    }

    #[test]
    fn icp_recovers_a_known_rigid_motion_of_a_face() {
        // The mean face turned 10° about a tilted axis and moved 5 mm; ICP from the identity.
        let m = MorphableModel::generate(&faceforge_model::ModelSpec::default());
        let face = m.mean_shape();
        let axis = [0.3f64, 1.0, 0.2];
        let norm = (axis.iter().map(|v| v * v).sum::<f64>()).sqrt();
        let angle = 10f64.to_radians();
        let known = crate::eval::alignment::Rigid { r: crate::eval::alignment::rotation_from_vector(axis.map(|v| v / norm * angle)), t: [3.0, 4.0, 0.0] };
        let target = known.apply_all(face);
        let normals = vertex_normals(&m, &target);
        let found = icp_point_to_plane(face, &target, &normals, crate::eval::alignment::Rigid::default(), 100);
        let error = found.transform.after(&known.inverse());
        let (plane, _) = surface_distances(&found.transform.apply_all(face), &target, &normals);
        let rmse = (plane.iter().map(|d| d * d).sum::<f64>() / plane.len() as f64).sqrt();
        let dt = error.t.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(error.angle_deg() < 0.01 && dt < 0.01 && rmse < 0.01, "rotation off by {}°, translation by {dt} mm, RMSE {rmse} mm after {} iterations", error.angle_deg(), found.iterations);
    }

    #[test]
    fn pose_error_is_the_yaw_difference() {
        let a = Pose::weak_from_angles(10.0, 0.0, 0.0, 1.2, [50.0, 50.0]);
        let b = Pose::weak_from_angles(25.0, 0.0, 0.0, 0.8, [10.0, 70.0]);
        assert!((pose_error(&a, &b).unwrap() - 15.0).abs() < 1e-3);
    }
}
