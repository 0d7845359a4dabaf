//! End-to-end: the backward systems against central differences through the whole forward graph
//! (reconstruct → vertex_normals → render), on a synthetic frame near frontal.
//!
//! The differences re-run the forward graph and recompute the rendered colours through the base
//! render's triangle ids: rasterization is not differentiated (as in the papers' renderers), so
//! the adjoints are derivatives with visibility held fixed, and so are these differences.
//!
//! The loss is L = Σ W ⊙ rendered colour with fixed random weights W on the face's pixels.

use bevy_ecs::prelude::*;
use faceforge::run::{iterate, prepare, Prepared};
use faceforge_components::{Albedo, Coeffs, Frame, Grad, GroundTruth, Illumination, Normals, Pose, Rendered};
use faceforge_kernels::interpolate;
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::Backend;
use faceforge_systems::render::shade_vertices;
use faceforge_e2e::scene;
use faceforge_kernels::testing::random;
use faceforge_systems::{registry, Stage};

const SCENE: &str = r#"Scene(
    data: Synthetic(preset: FacewarehouseLike, subjects: 1, frames: 1, size: 160, seed: 11, landmark_noise: 0.0),
    model: Procedural(preset: Tiny),
    backend: Cpu,
    systems: [(name: "oracle_lighting"), (name: "oracle_pose"), (name: "reconstruct"), (name: "vertex_normals"), (name: "render")],
    outputs: (dir: "unused"),
)"#;

#[derive(Resource, Clone)]
struct Weights(Vec<f32>);

/// The forward graph, its frame set to the truth (the oracles copy its pose and lighting from
/// `GroundTruth`, which the differences perturb) with the coefficients moved off it (so the
/// gradient is not special), and the frame's entity.
fn forward() -> (Prepared, Entity) {
    let mut p = prepare(&scene(SCENE, "backward.ron")).unwrap();
    let (entity, truth) = {
        let mut q = p.world.query::<(Entity, &GroundTruth)>();
        let (e, t) = q.single(&p.world).unwrap();
        (e, t.clone())
    };
    let mut coeffs = truth.coeffs.clone();
    coeffs.exp.iter_mut().for_each(|x| *x *= 0.5);
    coeffs.id.iter_mut().for_each(|x| *x *= 0.7);
    p.world.entity_mut(entity).insert(coeffs);
    let _ = truth;
    (p, entity)
}


/// Random weights on the pixels the face covers, zero elsewhere.
fn face_weights(rendered: &Rendered) -> Vec<f32> {
    let noise = random(rendered.color.len(), 3);
    (0..rendered.color.len()).map(|i| if rendered.mask[i / 3] > 0.0 { noise[i] } else { 0.0 }).collect()
}

/// L after one forward run, with the rendered colours recomputed through the triangle ids
/// `tri` (the base render's) instead of the run's own.
fn loss(p: &mut Prepared, weights: &[f32], tri: &[u32]) -> f64 {
    iterate(p, 1, false).unwrap();
    let mut q = p.world.query::<(&Rendered, &Normals, &Albedo, &Illumination)>();
    let (rendered, normals, albedo, light) = q.single(&p.world).unwrap();
    let n = p.model.n_vertices();
    let colours = shade_vertices(&Backend::Cpu, &normals.xyz, &albedo.rgb, &light.sh, n);
    let shape = RasterShape { batch: 1, width: rendered.width, height: rendered.height };
    let image = interpolate::forward_cpu(shape, &rendered.projected, p.model.triangles(), n, tri, &colours, 3);
    image.iter().zip(weights).map(|(c, w)| *c as f64 * *w as f64).sum()
}

#[test]
fn backward_systems_match_central_differences_through_the_render_graph() {
    // Weights on the face, from the unperturbed render.
    let (mut base, entity) = forward();
    iterate(&mut base, 1, false).unwrap();
    let rendered = base.world.get::<Rendered>(entity).unwrap().clone();
    let weights = face_weights(&rendered);
    assert!(weights.iter().filter(|w| **w != 0.0).count() > 3000);

    // The same graph with the seed of L and the backward systems.
    base.world.insert_resource(Weights(weights.clone()));
    base.schedule.add_systems(
        (|weights: Res<Weights>, frames: Query<Entity, With<Frame>>, mut commands: Commands| {
            for e in &frames {
                commands.entity(e).insert(Grad { value: Rendered { color: weights.0.clone(), ..Rendered::default() } });
            }
        })
        .in_set(Stage::Loss),
    );
    for entry in registry().into_iter().filter(|e| e.name == "render_backward" || e.name == "reconstruct_backward") {
        base.schedule.add_systems((entry.build)(None).unwrap());
    }
    iterate(&mut base, 1, false).unwrap();
    let g_coeffs = base.world.get::<Grad<Coeffs>>(entity).expect("reconstruct_backward wrote Grad<Coeffs>").value.clone();
    let g_pose = base.world.get::<Grad<Pose>>(entity).expect("render_backward wrote Grad<Pose>").value.camera().1;
    let g_light = base.world.get::<Grad<Illumination>>(entity).expect("render_backward wrote Grad<Illumination>").value.sh.clone();

    // Central differences, each on a fresh forward graph, with the visibility (triangle ids) of
    // the base render held fixed, as the adjoints hold it.
    let central = |change: &dyn Fn(&mut World, Entity, f32), h: f32| -> f64 {
        let (mut plus, e) = forward();
        change(&mut plus.world, e, h);
        let (mut minus, e) = forward();
        change(&mut minus.world, e, -h);
        (loss(&mut plus, &weights, &rendered.tri) - loss(&mut minus, &weights, &rendered.tri)) / (2.0 * h as f64)
    };
    let mut rows = Vec::new();
    for k in [0, 1, 5] {
        let sigma = base.model.id_sigma()[k];
        rows.push((format!("identity {k}"), g_coeffs.id[k] as f64, central(&|w, e, h| w.get_mut::<Coeffs>(e).unwrap().id[k] += h, 0.02 * sigma)));
        let sigma = base.model.exp_sigma()[k];
        rows.push((format!("expression {k}"), g_coeffs.exp[k] as f64, central(&|w, e, h| w.get_mut::<Coeffs>(e).unwrap().exp[k] += h, 0.02 * sigma)));
        let sigma = base.model.albedo_sigma()[k];
        rows.push((format!("albedo {k}"), g_coeffs.tex[k] as f64, central(&|w, e, h| w.get_mut::<Coeffs>(e).unwrap().tex[k] += h, 0.02 * sigma)));
    }
    for j in [0, 3, 5, 7] {
        let change = move |w: &mut World, e: Entity, h: f32| {
            let mut truth = w.get_mut::<GroundTruth>(e).unwrap();
            let pose = truth.pose.as_mut().unwrap();
            let (_, mut c) = pose.camera();
            c[j] += h;
            *pose = pose.from_camera(&c);
        };
        let h = if j % 4 == 3 { 0.02 } else { 3e-4 };
        rows.push((format!("pose parameter {j}"), g_pose[j] as f64, central(&change, h)));
    }
    for j in [0, 2, 13] {
        rows.push((format!("SH coefficient {j}"), g_light[j] as f64, central(&|w, e, h| w.get_mut::<GroundTruth>(e).unwrap().sh.as_mut().unwrap()[j] += h, 1e-2)));
    }
    let scale = rows.iter().fold(0.0f64, |m, r| m.max(r.2.abs()));
    for (what, analytic, numeric) in &rows {
        println!("{what:>18}: adjoint {analytic:>12.5} central difference {numeric:>12.5}");
    }
    for (what, analytic, numeric) in &rows {
        let rel = (analytic - numeric).abs() / numeric.abs().max(1e-3 * scale);
        assert!(rel < 1e-2, "{what}: adjoint {analytic} vs central difference {numeric}");
    }
}
