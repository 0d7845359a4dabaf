//! loss_epipolar: MGCNet's facial epipolar loss (Eq. 5) for every ordered pair of a subject's
//! frames: the detected landmarks of the source view against the epipolar lines of the target
//! view's, through the relative pose of the two fitted pinhole poses (one-sided, absolute
//! point-to-line distance in pixels, averaged over the landmarks, as the public code; the
//! decisions are in `kernels/src/epipolar.rs`). Averaged over the pairs; weight w_epi = 1e-3
//! (× w_mul = 1). The gradient goes to both frames' poses.

use crate::view_synthesis::{add_relative_grad, ordered_pairs, pinhole};
use crate::{add_pose_grad, collect_errors, parse_settings, NoSettings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Frame, Grad, Landmarks2d, LossTerms, LossWeights, Pose};
use faceforge_kernels::{epipolar, relative_pose};
use std::collections::BTreeMap;

/// w_epi of MGCNet.
pub const WEIGHT: f32 = 1e-3;

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_epipolar",
        stage: Stage::Loss,
        reads: data![Pose, Landmarks2d],
        writes: data![Grad<Pose>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "distance of each view's landmarks to the epipolar lines of another's (MGCNet Eq. 5)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, frames: Query<(Entity, &Frame, &Pose, &Landmarks2d)>, mut grads: Query<&mut Grad<Pose>>| -> Result<(), StageError> {
                let lambda = weights.get("epipolar", WEIGHT);
                let keyed: Vec<(Entity, u32, usize)> = frames.iter().enumerate().map(|(i, (e, f, _, _))| (e, f.subject_id, i)).collect();
                let rows: Vec<_> = frames.iter().collect();
                let pairs = ordered_pairs(&keyed);
                let count = pairs.len().max(1) as f32;
                let (mut total, mut deltas) = (0.0f64, BTreeMap::<Entity, Pose>::new());
                let wide = |p: &[[f32; 2]]| p.iter().map(|q| [q[0] as f64, q[1] as f64]).collect::<Vec<_>>();
                let k64 = |k: [f32; 4]| k.map(|v| v as f64);
                for ((t, ti), (s, si)) in pairs {
                    let ((_, tf, tp, tl), (_, sf, sp, sl)) = (rows[ti], rows[si]);
                    let (Some((k_t, rigid_t)), Some((k_s, rigid_s))) = (pinhole(tp), pinhole(sp)) else {
                        return Err(StageError { system: "loss_epipolar", message: format!("frames {} and {} need pinhole poses (pinhole_pose)", tf.name, sf.name) });
                    };
                    let (r, tr) = relative_pose::forward(&rigid_t, &rigid_s);
                    let (value, d_r, d_t) = epipolar::backward(&wide(&tl.points), &wide(&sl.points), k64(k_t), k64(k_s), &r.map(|v| v as f64), tr.map(|v| v as f64));
                    total += value;
                    let scale = lambda / count;
                    let grad = (d_r.map(|v| v as f32 * scale), d_t.map(|v| v as f32 * scale));
                    add_relative_grad(&mut deltas, (t, &rigid_t), (s, &rigid_s), &grad);
                }
                for (entity, d) in deltas {
                    if let Ok(mut g) = grads.get_mut(entity) {
                        add_pose_grad(&mut g.value, &d);
                    }
                }
                terms.terms.insert("epipolar".into(), lambda * total as f32 / count);
                Ok(())
            })
            .pipe(collect_errors)
            .in_set(Stage::Loss))
        },
    }
}
