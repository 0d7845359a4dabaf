//! loss_guidance: how PGN itself is trained (`000_…` §3, step 1): the L1 distance between the
//! network's landmarks X_UV and the annotations, on x, y and depth when the frame has 3D
//! annotations (synthetic, as 300W-LP) and on x, y only otherwise (in-the-wild images with 2D
//! landmarks); depth compared after removing each set's mean, as `loss_landmark` does. In pixels
//! of a 256-pixel crop, summed over the landmarks, averaged over the frames. The gradient goes to
//! X_UV (`Grad<Landmarks3d>`), which `encode_backward` hands to the network.

use crate::loss_landmark::{landmark_l1, PAPER_CROP};
use crate::{parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Frame, Grad, Image, LandmarkTargets, Landmarks3d, LossTerms, LossWeights};

pub const WEIGHT: f32 = 1.0;

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "loss_guidance",
        stage: Stage::Loss,
        reads: data![Landmarks3d, LandmarkTargets],
        writes: data![Grad<Landmarks3d>, LossTerms],
        reads_if_present: data![],
        adjoint: None,
        summary: "L1 between the network's landmarks X_UV and the annotations, 3D or 2D (PGN's training of its decoder)",
        build: |settings| {
            parse_settings::<crate::NoSettings>(settings)?;
            Ok((|weights: Res<LossWeights>, mut terms: ResMut<LossTerms>, mut frames: Query<(&Frame, &Landmarks3d, &LandmarkTargets, Option<&Image>, &mut Grad<Landmarks3d>)>| -> Result<(), StageError> {
                let lambda = weights.get("guidance", WEIGHT);
                let count = frames.iter().count().max(1) as f32;
                let mut total = 0.0;
                for (frame, predicted, targets, image, mut grad) in frames.iter_mut() {
                    if predicted.points.len() != targets.points_2d.len() || targets.points_3d.as_ref().is_some_and(|t| t.len() != targets.points_2d.len()) {
                        return Err(StageError { system: "loss_guidance", message: format!("frame {}: {} predicted landmarks, {} annotated", frame.name, predicted.points.len(), targets.points_2d.len()) });
                    }
                    let as_projected: Vec<[f32; 4]> = predicted.points.iter().map(|p| [p[0], p[1], p[2], 1.0]).collect();
                    let (value, d) = landmark_l1(&as_projected, &targets.points_2d, targets.points_3d.as_deref(), &vec![1.0; as_projected.len()], 1.0);
                    let to_crop = PAPER_CROP / image.map_or(PAPER_CROP, |im| im.width.max(im.height) as f32);
                    total += value * to_crop;
                    let scale = lambda * to_crop / count;
                    let d: Vec<f32> = d.chunks(4).flat_map(|g| [g[0] * scale, g[1] * scale, g[2] * scale]).collect();
                    let mut flat: Vec<f32> = grad.value.points.iter().flatten().copied().collect();
                    accumulate(&mut flat, &d);
                    grad.value.points = flat.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
                }
                terms.terms.insert("guidance".into(), lambda * total / count);
                Ok(())
            })
            .pipe(crate::collect_errors)
            .in_set(Stage::Loss))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_and_gradient_on_x_uv_in_2d_and_3d() {
        let mut world = World::new();
        world.init_resource::<LossTerms>();
        world.insert_resource(LossWeights::default());
        world.init_resource::<crate::StageErrors>();
        let subject = world.spawn_empty().id();
        // 256-pixel crop: no rescaling. Residuals (2, −1) and (0, 0.5): L1 3.5 in 2D.
        let frame = |name: &str| Frame { subject, subject_id: 0, index: 0, name: name.into() };
        let predicted = Landmarks3d { points: vec![[12.0, 9.0, 5.0], [20.0, 20.5, 1.0]] };
        let image = Image { width: 256, height: 256, rgb: vec![] };
        let two_d = LandmarkTargets { points_2d: vec![[10.0, 10.0], [20.0, 20.0]], points_3d: None };
        let three_d = LandmarkTargets { points_3d: Some(vec![[10.0, 10.0, 0.0], [20.0, 20.0, 0.0]]), ..two_d.clone() };
        let a = world.spawn((frame("a"), predicted.clone(), two_d, image.clone(), Grad::<Landmarks3d>::default())).id();
        let b = world.spawn((frame("b"), predicted, three_d, image, Grad::<Landmarks3d>::default())).id();
        let mut schedule = Schedule::default();
        schedule.add_systems((entry().build)(None).unwrap());
        schedule.run(&mut world);
        // Frame b adds centred depth: (5 − 3) − 0 and (1 − 3) − 0 → 4 more. Mean of 3.5 and 7.5.
        assert_eq!(world.resource::<LossTerms>().terms["guidance"], 5.5);
        let grad_a = &world.get::<Grad<Landmarks3d>>(a).unwrap().value.points;
        assert_eq!(grad_a, &vec![[0.5, -0.5, 0.0], [0.0, 0.5, 0.0]]);
        let grad_b = &world.get::<Grad<Landmarks3d>>(b).unwrap().value.points;
        assert_eq!((grad_b[0][2], grad_b[1][2]), (0.5, -0.5));
    }
}
