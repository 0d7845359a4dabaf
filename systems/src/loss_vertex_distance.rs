//! loss_vertex_distance: 3DDFA's Vertex Distance Cost, 2DASL's stage-2 fine-tuning term
//! (`002_…` §2; papers.md: "formula not given in file"): the mean over vertices of
//! ‖V(α̂) − V(α*)‖², V the whole mesh under the weak pose's [f·R | t] — image u, v and depth,
//! as 3DDFA's code compares its 3D vertices — against the ground truth's mesh under the true
//! pose. Averaged over the frames with 3D annotations (`Landmarks3d`, as 2DASL's L_3d: the
//! in-the-wild share of a training has none); gradients to `Grad<Mesh>` (through
//! `reconstruct_backward`) and `Grad<Pose>`.

use crate::reconstruct::decode_stacked;
use crate::{add_geometry_grad, collect_errors, parse_settings, NoSettings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Frame, Grad, GroundTruth, Landmarks3d, LossTerms, LossWeights, Mesh, Model, Pose};
use faceforge_kernels::project;
use faceforge_kernels::Backend;

const NAME: &str = "loss_vertex_distance";
pub const WEIGHT: f32 = 1.0;

/// ‖V − V*‖² averaged over vertices and its gradient (d positions, d camera) for one frame.
pub fn vertex_distance(positions: &[f32], pose: &Pose, truth_positions: &[f32], truth_pose: &Pose) -> (f32, Vec<f32>, Pose) {
    let n = positions.len() / 3;
    let (model, camera) = pose.camera();
    let (truth_model, truth_camera) = truth_pose.camera();
    let ours = project::forward_cpu(model, positions, &camera, n);
    let theirs = project::forward_cpu(truth_model, truth_positions, &truth_camera, n);
    let mut value = 0.0;
    let mut g_uv = vec![0.0; 4 * n];
    let mut g_depth = vec![0.0; n];
    for v in 0..n {
        for c in 0..3 {
            let d = ours[4 * v + c] - theirs[4 * v + c];
            value += d * d / n as f32;
            let g = 2.0 * d / n as f32;
            if c < 2 { g_uv[4 * v + c] = g } else { g_depth[v] = g }
        }
    }
    let (mut gx, mut gc) = project::backward_cpu(model, positions, &camera, &g_uv, n);
    let (gx_depth, gc_depth) = project::depth_backward_cpu(model, positions, &camera, &g_depth, n);
    gx.iter_mut().zip(&gx_depth).for_each(|(a, b)| *a += b);
    gc.iter_mut().zip(&gc_depth).for_each(|(a, b)| *a += b);
    (value, gx, pose.from_camera(&gc))
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Loss,
        reads: data![Mesh, Pose, GroundTruth],
        writes: data![Grad<Mesh>, Grad<Pose>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "3DDFA's vertex distance cost to the ground truth's posed mesh (2DASL's stage 2)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|model: Res<Model>, weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Frame, &Mesh, &Pose, &GroundTruth, &mut Grad<Mesh>, &mut Grad<Pose>), With<Landmarks3d>>| -> Result<(), StageError> {
                let m = &model.0;
                let lambda = weights.get("vertex_distance", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (frame, mesh, pose, truth, mut g_mesh, mut g_pose) in frames.iter_mut() {
                    let Some(truth_pose) = &truth.pose else {
                        return Err(StageError { system: NAME, message: format!("frame {} has no true pose to compare the posed mesh with", frame.name) });
                    };
                    let (truth_mesh, _) = decode_stacked(&Backend::Cpu, m, None, 1, &truth.coeffs.id, &truth.coeffs.exp, None);
                    let (value, d_positions, d_pose) = vertex_distance(&mesh.positions, pose, &truth_mesh, truth_pose);
                    total += value;
                    let scale = lambda / count;
                    let d_positions: Vec<f32> = d_positions.iter().map(|g| g * scale).collect();
                    let d_pose = d_pose.from_camera(&d_pose.camera().1.map(|g| g * scale));
                    add_geometry_grad(&d_positions, &d_pose, &mut g_mesh, &mut g_pose);
                }
                terms.terms.insert("vertex_distance".into(), lambda * total / count);
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_at_the_truth_and_the_adjoint_matches_central_differences() {
        let positions: Vec<f32> = (0..60).map(|i| 40.0 * ((i as f32) * 0.37).sin()).collect();
        let truth_pose = Pose::weak_from_angles(30.0, 5.0, 0.0, 0.5, [60.0, 60.0]);
        assert_eq!(vertex_distance(&positions, &truth_pose, &positions, &truth_pose).0, 0.0);
        let pose = Pose::weak_from_angles(24.0, 0.0, 4.0, 0.45, [57.0, 62.0]);
        let truth: Vec<f32> = positions.iter().map(|p| p * 1.1 + 0.5).collect();
        let (_, d_positions, d_pose) = vertex_distance(&positions, &pose, &truth, &truth_pose);
        let f = |x: &[f32]| vertex_distance(x, &pose, &truth, &truth_pose).0;
        assert!(faceforge_kernels::testing::worst_against_central_differences(f, &positions, &d_positions, 1, 1e-2, 1e-2) < 1e-2);
        let camera = pose.camera().1;
        let g = |c: &[f32]| vertex_distance(&positions, &pose.from_camera(c), &truth, &truth_pose).0;
        let worst = faceforge_kernels::testing::worst_against_central_differences(g, &camera[..8], &d_pose.camera().1[..8], 1, 1e-3, 1e-2);
        assert!(worst < 1e-2, "pose rows: worst relative error {worst}");
    }
}
