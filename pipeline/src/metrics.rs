//! How close a fit came to synthetic ground truth, per frame: per-vertex error and depth error of
//! the shape (mm, model space), pose error (degrees, geodesic), 2D landmark error (pixels, against
//! the noise-free landmarks). The papers' benchmark metrics (NME, ICP point-to-plane, CED) come
//! with `faceforge eval`.

use bevy_ecs::world::World;
use faceforge_components::{Frame, GroundTruth, Mesh, Pose};
use faceforge_kernels::pgn::{rotation_and_scale, rotation_angle_between};
use faceforge_kernels::{project, Backend};
use faceforge_model::MorphableModel;
use faceforge_systems::reconstruct::decode_batch;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FrameMetrics {
    pub frame: String,
    /// Mean distance of corresponding vertices after rigid alignment (mm).
    pub per_vertex_mm: f32,
    /// Mean |Δz − mean Δz|: the error along the face's depth axis with its offset removed (mm).
    pub depth_mm: f32,
    /// Geodesic angle between the fitted and the true rotation (degrees).
    pub pose_deg: Option<f32>,
    /// Mean distance between fitted and true (noise-free) projected landmarks (pixels).
    pub landmarks_px: Option<f32>,
    /// Fitted and true yaw, pitch, roll (degrees) of weak-perspective poses.
    pub pose_ypr_deg: Option<[f32; 3]>,
    pub true_ypr_deg: Option<[f32; 3]>,
}

/// Mean and standard deviation of one metric over frames.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
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

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct RunMetrics {
    pub per_vertex_mm: Spread,
    pub depth_mm: Spread,
    pub pose_deg: Spread,
    pub landmarks_px: Spread,
    /// The same shape metrics for the model's mean face at the true pose, the baseline a fit
    /// starts from.
    pub mean_face_per_vertex_mm: Spread,
    pub mean_face_depth_mm: Spread,
    pub frames: Vec<FrameMetrics>,
}

/// The rotation and translation that best map `from` onto `to` (least squares, Horn's
/// quaternion method), applied to `from`.
pub fn rigid_align(from: &[f32], to: &[f32]) -> Vec<f32> {
    let n = (from.len() / 3) as f64;
    let centre = |p: &[f32]| -> [f64; 3] { std::array::from_fn(|c| p.chunks(3).map(|v| v[c] as f64).sum::<f64>() / n) };
    let (ca, cb) = (centre(from), centre(to));
    let mut m = [[0.0f64; 3]; 3];
    for (a, b) in from.chunks(3).zip(to.chunks(3)) {
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += (a[i] as f64 - ca[i]) * (b[j] as f64 - cb[j]);
            }
        }
    }
    let [[sxx, sxy, sxz], [syx, syy, syz], [szx, szy, szz]] = m;
    let k = [
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ];
    let [w, x, y, z] = largest_eigenvector(k);
    let r = [
        [w * w + x * x - y * y - z * z, 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), w * w - x * x + y * y - z * z, 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ];
    from.chunks(3)
        .flat_map(|a| {
            let d = [a[0] as f64 - ca[0], a[1] as f64 - ca[1], a[2] as f64 - ca[2]];
            (0..3).map(move |i| (r[i][0] * d[0] + r[i][1] * d[1] + r[i][2] * d[2] + cb[i]) as f32)
        })
        .collect()
}

/// The unit eigenvector of the largest eigenvalue of a symmetric 4 × 4 matrix (cyclic Jacobi).
fn largest_eigenvector(mut a: [[f64; 4]; 4]) -> [f64; 4] {
    let mut v: [[f64; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 1.0 } else { 0.0 }));
    for _ in 0..50 {
        for p in 0..4 {
            for q in p + 1..4 {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..4 {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..4 {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let best = (0..4).max_by(|&i, &j| a[i][i].total_cmp(&a[j][j])).expect("four eigenvalues");
    std::array::from_fn(|i| v[i][best])
}

/// Per-vertex and depth error between two meshes (xyz per vertex), after rigidly aligning the
/// first to the second: a weak-perspective fit cannot see the mesh's depth offset, and any
/// rotation of the shape is the pose's to absorb.
pub fn aligned_shape_errors(fit: &[f32], truth: &[f32]) -> (f32, f32) {
    shape_errors(&rigid_align(fit, truth), truth)
}

/// Per-vertex and depth error between two meshes (xyz per vertex), as they are.
pub fn shape_errors(fit: &[f32], truth: &[f32]) -> (f32, f32) {
    let n = fit.len() / 3;
    let per_vertex = fit.chunks(3).zip(truth.chunks(3)).map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()).sum::<f32>() / n as f32;
    let dz: Vec<f32> = fit.chunks(3).zip(truth.chunks(3)).map(|(a, b)| a[2] - b[2]).collect();
    let mean = dz.iter().sum::<f32>() / n as f32;
    (per_vertex, dz.iter().map(|d| (d - mean).abs()).sum::<f32>() / n as f32)
}

/// Pose error in degrees between two weak-perspective poses.
pub fn pose_error(fit: &Pose, truth: &Pose) -> Option<f32> {
    match (fit, truth) {
        (Pose::WeakPerspective { t: a }, Pose::WeakPerspective { t: b }) => Some(rotation_angle_between(&rotation_and_scale(a, true).0, &rotation_and_scale(b, true).0)),
        (Pose::Pinhole { r: a, .. }, Pose::Pinhole { r: b, .. }) => Some(rotation_angle_between(a, b)),
        _ => None,
    }
}

fn landmarks_2d(m: &MorphableModel, positions: &[f32], pose: &Pose) -> Vec<[f32; 2]> {
    let points: Vec<f32> = m.landmarks().iter().flat_map(|&v| positions[3 * v as usize..3 * v as usize + 3].to_vec()).collect();
    let (model, camera) = pose.camera();
    project::forward_cpu(model, &points, &camera, m.landmarks().len()).chunks(4).map(|p| [p[0], p[1]]).collect()
}

/// Measures every frame that has a fitted mesh and a ground truth.
pub fn measure(world: &mut World, m: &MorphableModel) -> Option<RunMetrics> {
    let mut q = world.query::<(&Frame, &Mesh, &GroundTruth, Option<&Pose>)>();
    let mut rows: Vec<_> = q.iter(world).collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let zero = faceforge_components::Coeffs::zeros(m.n_id(), m.n_exp(), m.n_albedo());
    let (mean_face, _) = decode_batch(&Backend::Cpu, m, None, &[(rows[0].0, &zero)], false).ok()?;
    let mut out = RunMetrics::default();
    let (mut mean_pv, mut mean_depth) = (Vec::new(), Vec::new());
    for (frame, mesh, truth, pose) in rows {
        let (true_shape, _) = decode_batch(&Backend::Cpu, m, None, &[(frame, &truth.coeffs)], false).ok()?;
        let (per_vertex_mm, depth_mm) = aligned_shape_errors(&mesh.positions, &true_shape);
        let (pv, d) = aligned_shape_errors(&mean_face, &true_shape);
        mean_pv.push(pv);
        mean_depth.push(d);
        let (pose_deg, landmarks_px) = match (pose, &truth.pose) {
            (Some(p), Some(t)) => {
                let fitted = landmarks_2d(m, &mesh.positions, p);
                let exact = landmarks_2d(m, &true_shape, t);
                let px = fitted.iter().zip(&exact).map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()).sum::<f32>() / fitted.len() as f32;
                (pose_error(p, t), Some(px))
            }
            _ => (None, None),
        };
        let angles = |p: Option<&Pose>| match p {
            Some(Pose::WeakPerspective { t }) => Some(faceforge_systems::direct_pose::params_of(t).angles.map(f32::to_degrees)),
            _ => None,
        };
        out.frames.push(FrameMetrics { frame: frame.name.clone(), per_vertex_mm, depth_mm, pose_deg, landmarks_px, pose_ypr_deg: angles(pose), true_ypr_deg: angles(truth.pose.as_ref()) });
    }
    let column = |f: fn(&FrameMetrics) -> Option<f32>| Spread::of(&out.frames.iter().filter_map(f).collect::<Vec<_>>());
    out.per_vertex_mm = column(|f| Some(f.per_vertex_mm));
    out.depth_mm = column(|f| Some(f.depth_mm));
    out.pose_deg = column(|f| f.pose_deg);
    out.landmarks_px = column(|f| f.landmarks_px);
    out.mean_face_per_vertex_mm = Spread::of(&mean_pv);
    out.mean_face_depth_mm = Spread::of(&mean_depth);
    Some(out)
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
    fn rigid_alignment_undoes_a_rotation_and_translation() {
        let cloud: Vec<f32> = (0..60).map(|i| ((i * 37 % 23) as f32 - 11.0) * 3.0).collect();
        let r = faceforge_kernels::project::rotation_ypr(0.3, -0.2, 0.5);
        let moved: Vec<f32> = cloud.chunks(3).flat_map(|p| (0..3).map(move |i| r[3 * i] * p[0] + r[3 * i + 1] * p[1] + r[3 * i + 2] * p[2] + [5.0, -2.0, 7.0][i])).collect();
        let (pv, _) = aligned_shape_errors(&moved, &cloud);
        assert!(pv < 1e-4, "{pv}");
        assert!(shape_errors(&moved, &cloud).0 > 1.0);
    }

    #[test]
    fn pose_error_is_the_yaw_difference() {
        let a = Pose::weak_from_angles(10.0, 0.0, 0.0, 1.2, [50.0, 50.0]);
        let b = Pose::weak_from_angles(25.0, 0.0, 0.0, 0.8, [10.0, 70.0]);
        assert!((pose_error(&a, &b).unwrap() - 15.0).abs() < 1e-3);
    }
}
