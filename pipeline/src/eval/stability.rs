//! A clip's stability. Jitter = the RMS over frames and landmarks of the second difference over
//! time of the 2D landmarks (in the original video's pixels: each frame is a crop of its own),
//! normalised by the clip's mean outer interocular distance, in %: for the detector's landmarks
//! and for the fit's. The same for the mesh's vertices (mm, the shape without its pose). On
//! synthetic clips, the fit's error to the true trajectory (RMS landmark distance, % of the
//! interocular distance).

use bevy_ecs::world::World;
use faceforge_components::{Coeffs, Crop, Frame, GroundTruth, Landmarks2d, Mesh, Pose, Subject};
use faceforge_model::MorphableModel;
use serde::Serialize;
use std::collections::BTreeMap;

/// The 68-point indices of the outer eye corners.
const OUTER_EYE_CORNERS: (usize, usize) = (36, 45);

/// One frame of a clip, for the report's plots.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ClipFrame {
    pub frame: String,
    /// Yaw, pitch, roll of the fitted head (degrees).
    pub ypr_deg: Option<[f32; 3]>,
    /// This frame's second-difference RMS (% of the interocular distance); none at the ends.
    pub jitter_fit: Option<f32>,
    pub jitter_detector: Option<f32>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ClipStability {
    pub subject: String,
    pub frames: usize,
    /// Jitter of the detector's (the data's) landmarks, %.
    pub jitter_detector: Option<f32>,
    /// Jitter of the fitted landmarks, %.
    pub jitter_fit: Option<f32>,
    /// RMS second difference of the fitted mesh's vertices (mm).
    pub jitter_vertices_mm: Option<f32>,
    /// RMS distance of the fitted landmarks to the true ones, % of the interocular distance.
    pub error_to_truth: Option<f32>,
    pub per_frame: Vec<ClipFrame>,
}

/// RMS of the second differences of point tracks (frames × points), overall and per frame.
pub fn second_difference_rms(tracks: &[Vec<[f32; 2]>]) -> (Option<f32>, Vec<Option<f32>>) {
    let mut per_frame = vec![None; tracks.len()];
    let (mut sum, mut count) = (0.0f64, 0usize);
    for t in 1..tracks.len().saturating_sub(1) {
        let n = tracks[t].len();
        let s: f64 = (0..n)
            .map(|l| (0..2).map(|c| (tracks[t - 1][l][c] - 2.0 * tracks[t][l][c] + tracks[t + 1][l][c]) as f64).map(|d| d * d).sum::<f64>())
            .sum();
        per_frame[t] = Some((s / n.max(1) as f64).sqrt() as f32);
        sum += s;
        count += n;
    }
    ((count > 0).then(|| (sum / count as f64).sqrt() as f32), per_frame)
}

fn in_original(points: &[[f32; 2]], crop: Option<&Crop>) -> Vec<[f32; 2]> {
    points.iter().map(|&p| crop.map_or(p, |c| c.to_original(p))).collect()
}

fn interocular(tracks: &[Vec<[f32; 2]>]) -> f32 {
    let (a, b) = OUTER_EYE_CORNERS;
    let d: f32 = tracks.iter().filter(|p| p.len() > b).map(|p| ((p[a][0] - p[b][0]).powi(2) + (p[a][1] - p[b][1]).powi(2)).sqrt()).sum();
    d / tracks.len().max(1) as f32
}

/// The RMS second difference of vertex tracks, fed one frame's positions at a time (only the
/// last two are kept, so a long clip's records need no meshes).
#[derive(Default)]
struct VertexJitter {
    last: [Vec<f32>; 2],
    sum: f64,
    count: usize,
}

impl VertexJitter {
    fn push(&mut self, positions: Vec<f32>) {
        if self.last[0].len() == positions.len() && self.last[1].len() == positions.len() {
            // Per vertex: the squared length of its 3D second difference.
            self.sum += positions.iter().zip(&self.last[1]).zip(&self.last[0]).map(|((c, b), a)| ((a - 2.0 * b + c) as f64).powi(2)).sum::<f64>();
            self.count += positions.len() / 3;
        }
        self.last = [std::mem::take(&mut self.last[1]), positions];
    }

    fn rms(&self) -> Option<f32> {
        (self.count > 0).then(|| (self.sum / self.count as f64).sqrt() as f32)
    }
}

/// Every subject with at least three fitted frames: its stability. A frame without a `Mesh` (a
/// long clip's record, fitted in windows) is decoded from its coefficients.
pub fn measure_clips(world: &mut World, m: &MorphableModel) -> Vec<ClipStability> {
    let names: BTreeMap<u32, String> = world.query::<&Subject>().iter(world).map(|s| (s.id, s.name.clone())).collect();
    let mut q = world.query::<(&Frame, Option<&Mesh>, &Coeffs, &Pose, Option<&Landmarks2d>, Option<&Crop>, Option<&GroundTruth>)>();
    let mut clips: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for row in q.iter(world) {
        clips.entry(row.0.subject_id).or_default().push(row);
    }
    let mut out = Vec::new();
    for (subject, mut rows) in clips {
        if rows.len() < 3 {
            continue;
        }
        rows.sort_by_key(|r| r.0.index);
        let mut vertex_jitter = VertexJitter::default();
        let mut fit: Vec<Vec<[f32; 2]>> = Vec::with_capacity(rows.len());
        for (frame, mesh, coeffs, pose, _, crop, _) in &rows {
            let positions = match mesh {
                Some(mesh) => mesh.positions.clone(),
                None => match faceforge_systems::reconstruct::decode_batch(&faceforge_kernels::Backend::Cpu, m, None, &[(frame, coeffs)], false) {
                    Ok((shape, _)) => shape,
                    Err(e) => {
                        tracing::warn!("{}: no stability ({e})", frame.name);
                        return out;
                    }
                },
            };
            fit.push(in_original(&crate::eval::metrics::project_landmarks(m, &positions, pose), *crop));
            vertex_jitter.push(positions);
        }
        let detected: Option<Vec<Vec<[f32; 2]>>> = rows.iter().map(|(_, _, _, _, marks, crop, _)| marks.filter(|l| l.points.len() == m.landmarks().len()).map(|l| in_original(&l.points, *crop))).collect();
        let iod = interocular(detected.as_deref().unwrap_or(&fit)).max(1e-6);
        let percent = |v: Option<f32>| v.map(|v| 100.0 * v / iod);
        let (jitter_fit, fit_frames) = second_difference_rms(&fit);
        let (jitter_detector, detector_frames) = detected.as_deref().map_or((None, vec![None; rows.len()]), second_difference_rms);
        let jitter_vertices_mm = vertex_jitter.rms();
        let error_to_truth = rows
            .iter()
            .zip(&fit)
            .map(|((frame, _, _, _, _, crop, truth), fitted)| {
                let truth = (*truth)?;
                let pose = truth.pose.as_ref()?;
                let (shape, _) = faceforge_systems::reconstruct::decode_batch(&faceforge_kernels::Backend::Cpu, m, None, &[(frame, &truth.coeffs)], false).ok()?;
                let exact = in_original(&crate::eval::metrics::project_landmarks(m, &shape, pose), *crop);
                Some(fitted.iter().zip(&exact).map(|(a, b)| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sum::<f32>() / fitted.len() as f32)
            })
            .collect::<Option<Vec<f32>>>()
            .map(|squares| 100.0 * (squares.iter().sum::<f32>() / squares.len() as f32).sqrt() / iod);
        let per_frame = rows
            .iter()
            .enumerate()
            .map(|(t, (frame, _, _, pose, ..))| ClipFrame { frame: frame.name.clone(), ypr_deg: crate::eval::metrics::ypr_deg(Some(pose)), jitter_fit: percent(fit_frames[t]), jitter_detector: percent(detector_frames[t]) })
            .collect();
        out.push(ClipStability {
            subject: names.get(&subject).cloned().unwrap_or_else(|| subject.to_string()),
            frames: rows.len(),
            jitter_detector: percent(jitter_detector),
            jitter_fit: percent(jitter_fit),
            jitter_vertices_mm,
            error_to_truth,
            per_frame,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_lines_have_no_jitter_a_zigzag_has_its_amplitude_times_four() {
        let line: Vec<Vec<[f32; 2]>> = (0..5).map(|t| vec![[t as f32, 2.0 * t as f32]]).collect();
        assert_eq!(second_difference_rms(&line).0, Some(0.0));
        // x alternating ±1: each second difference is ±4.
        let zigzag: Vec<Vec<[f32; 2]>> = (0..5).map(|t| vec![[if t % 2 == 0 { 1.0 } else { -1.0 }, 0.0]]).collect();
        let (all, per_frame) = second_difference_rms(&zigzag);
        assert_eq!(all, Some(4.0));
        assert_eq!(per_frame, [None, Some(4.0), Some(4.0), Some(4.0), None]);
    }
}
