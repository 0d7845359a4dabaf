//! CEST in fit mode: the re-renders with a partner's and a mirrored reflectance at the truth and
//! at the degenerate solution the paper warns about, their adjoint against central differences,
//! and the scene and its constraint sweep at a small size. In learn mode: the conditional chain
//! (each stage reading the one before), its training scene and the CEST / IEST sweep.

use bevy_ecs::prelude::*;
use faceforge::run::{iterate, prepare, Prepared};
use faceforge_components::{Coeffs, Grad, GroundTruth, Illumination, Image, LossTerms, Normals, ReflectanceRenders, Rendered, SkinMask};
use faceforge_e2e::{frames_by_name, scene, scene_into, sweep_into};
use faceforge_kernels::interpolate;
use faceforge_kernels::rasterize::RasterShape;
use faceforge_systems::loss_reflectance::masked_l1;
use faceforge_systems::render::shade_vertices;

/// One face in three frames of a clip (yaw −80°, 0°, 80° — florence-like), each under its own
/// lighting, drawn at its true shape, pose and lighting; `losses` picks the terms.
fn truth_scene(frames: u32, losses: &str) -> Prepared {
    let text = format!(
        r#"Scene(
    data: Synthetic(preset: FlorenceLike, subjects: 1, frames: {frames}, size: 96, seed: 21, landmark_noise: 0.0, yaws: [-20.0, 0.0, 20.0]),
    model: Procedural(preset: Tiny),
    backend: Cpu,
    systems: [
        (name: "oracle_coeffs"), (name: "oracle_pose"), (name: "oracle_lighting"),
        (name: "reconstruct", settings: (albedo: true)), (name: "vertex_normals"), (name: "render"),
        (name: "render_reflectance", keep: true, settings: (consistency: true, symmetry: true, own: true)),
    ],
    losses: {{{losses}}},
    optimizer: NoStep,
    outputs: (dir: "unused"),
)"#
    );
    prepare(&scene(&text, "cest_truth.ron")).unwrap()
}

/// The face region the loss compares: drawn and skin.
fn mask(p: &Prepared, e: Entity) -> Vec<f32> {
    let (rendered, skin) = (p.world.get::<Rendered>(e).unwrap(), p.world.get::<SkinMask>(e).unwrap());
    rendered.mask.iter().zip(&skin.weights).map(|(a, b)| a * b).collect()
}

/// With the true shape, pose, lighting and reflectance, the swapped term is zero up to the
/// image's clipping to [0, 1], even though every frame is lit differently. The degenerate
/// solution — each frame's reflectance the illuminated texture it sees, under one flat light —
/// reconstructs each frame as well, but worn by a partner frame it carries the wrong light.
#[test]
fn the_swapped_term_vanishes_at_the_truth_and_exposes_the_degenerate_solution() {
    let mut p = truth_scene(3, "");
    iterate(&mut p, 1, false).unwrap();
    let es = frames_by_name(&mut p.world);
    let n = p.model.n_vertices();
    let lights: Vec<Vec<f32>> = es.iter().map(|&e| p.world.get::<Illumination>(e).unwrap().sh.clone()).collect();
    assert!(lights[0] != lights[1], "the frames are lit differently");
    for &e in &es {
        let (renders, image) = (p.world.get::<ReflectanceRenders>(e).unwrap(), p.world.get::<Image>(e).unwrap());
        let (swapped, _) = masked_l1(&image.rgb, &renders.swapped, &mask(&p, e));
        let (own, _) = masked_l1(&image.rgb, &renders.own, &mask(&p, e));
        eprintln!("truth: swapped {swapped:.5}, own {own:.5}");
        assert!(swapped < 1e-3 && own < 1e-3, "swapped {swapped}, own {own}");
    }

    // The degenerate solution: R_i = the frame's shaded colours / the irradiance of a flat light
    // ℓ = (1, 0, …, 0), which draws frame i exactly; frame i wearing frame j's R_j shows j's light.
    let flat: Vec<f32> = (0..27).map(|k| if k % 9 == 0 { 1.0 } else { 0.0 }).collect();
    let draw = |e: Entity, reflectance: &[f32], sh: &[f32]| {
        let (rendered, normals) = (p.world.get::<Rendered>(e).unwrap(), p.world.get::<Normals>(e).unwrap());
        let colours = shade_vertices(&p.backend, &normals.xyz, reflectance, sh, n);
        interpolate::forward_cpu(RasterShape { batch: 1, width: rendered.width, height: rendered.height }, &rendered.projected, p.model.triangles(), n, &rendered.tri, &colours, 3)
    };
    let albedo = |e: Entity| p.world.get::<faceforge_components::Albedo>(e).unwrap().rgb.clone();
    let degenerate: Vec<Vec<f32>> = es
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let normals = &p.world.get::<Normals>(e).unwrap().xyz;
            let lit = shade_vertices(&p.backend, normals, &albedo(e), &lights[i], n);
            let irradiance = shade_vertices(&p.backend, normals, &vec![1.0; 3 * n], &flat, n);
            lit.iter().zip(&irradiance).map(|(c, k)| c / k).collect()
        })
        .collect();
    for (i, &e) in es.iter().enumerate() {
        let j = (i + 1) % es.len();
        let image = &p.world.get::<Image>(e).unwrap().rgb;
        let (own, _) = masked_l1(image, &draw(e, &degenerate[i], &flat), &mask(&p, e));
        let (swapped, _) = masked_l1(image, &draw(e, &degenerate[j], &flat), &mask(&p, e));
        let (true_swap, _) = masked_l1(image, &draw(e, &albedo(es[j]), &lights[i]), &mask(&p, e));
        eprintln!("frame {i}: degenerate own {own:.5}, degenerate swapped (frame {j}'s) {swapped:.5}, true swapped {true_swap:.5}");
        assert!(own < 1e-3, "the degenerate solution reconstructs its own frame: {own}");
        assert!(swapped > 0.02 && swapped > 20.0 * true_swap, "a partner's degenerate reflectance carries its light: {swapped} vs {true_swap} at the truth");
    }
}

/// The adjoint of the re-renders: the reflectance gradient reaches the partner's albedo
/// coefficients and the frame's own through the mirror, and the lighting, as central
/// differences of the loss say (away from the truth, where the L1 has its kinks).
#[test]
fn the_reflectance_adjoint_matches_central_differences() {
    let build = |change: &dyn Fn(&mut World, &[Entity])| {
        let mut p = truth_scene(2, r#""reflectance": 1.0"#);
        let es = frames_by_name(&mut p.world);
        // Off the truth: frame 0 lit brighter than its image, frame 1's albedo paler.
        p.world.get_mut::<GroundTruth>(es[0]).unwrap().sh.as_mut().unwrap().iter_mut().step_by(9).for_each(|v| *v *= 1.3);
        p.world.get_mut::<GroundTruth>(es[1]).unwrap().coeffs.tex.iter_mut().for_each(|v| *v *= 0.5);
        change(&mut p.world, &es);
        p
    };
    let mut base = build(&|_, _| {});
    iterate(&mut base, 1, false).unwrap();
    let es = frames_by_name(&mut base.world);
    let partner = base.world.get::<ReflectanceRenders>(es[0]).unwrap().partner;
    assert_eq!(partner, Some(es[1]), "two frames: each is the other's partner");
    let g_tex: Vec<Vec<f32>> = es.iter().map(|&e| base.world.get::<Grad<Coeffs>>(e).unwrap().value.tex.clone()).collect();
    let g_sh = base.world.get::<Grad<Illumination>>(es[0]).unwrap().value.sh.clone();
    let loss = |p: &mut Prepared| {
        iterate(p, 1, false).unwrap();
        p.world.resource::<LossTerms>().terms["reflectance"] as f64
    };
    let central = |change: &dyn Fn(&mut World, &[Entity], f32), h: f32| {
        let mut plus = build(&|w, es| change(w, es, h));
        let mut minus = build(&|w, es| change(w, es, -h));
        (loss(&mut plus) - loss(&mut minus)) / (2.0 * h as f64)
    };
    let sigma = base.model.albedo_sigma().to_vec();
    let mut rows = Vec::new();
    for f in 0..2 {
        for k in [0usize, 1, 2] {
            let h = 0.02 * sigma[k];
            rows.push((format!("frame {f} albedo {k}"), g_tex[f][k] as f64, central(&move |w, es, h| w.get_mut::<GroundTruth>(es[f]).unwrap().coeffs.tex[k] += h, h)));
        }
    }
    for k in [0usize, 1, 4, 9] {
        rows.push((format!("frame 0 SH {k}"), g_sh[k] as f64, central(&move |w, es, h| w.get_mut::<GroundTruth>(es[0]).unwrap().sh.as_mut().unwrap()[k] += h, 1e-2)));
    }
    let scale = rows.iter().fold(0.0f64, |m, r| m.max(r.2.abs()));
    for (what, analytic, numeric) in &rows {
        eprintln!("{what:>16}: adjoint {analytic:>10.6} central difference {numeric:>10.6}");
    }
    for (what, analytic, numeric) in &rows {
        assert!((analytic - numeric).abs() <= 0.05 * numeric.abs().max(0.1 * scale), "{what}: adjoint {analytic} vs central difference {numeric}");
    }
}

/// The scene on its preset at a small size and the constraint sweep: every row and the table;
/// a partner's reflectance fits the albedo closer to the truth than the plain
/// self-reconstruction does (which lets the reflectance take up the light). The mirror is not
/// asserted: the model's albedo is mostly symmetric since issue 20, but the truths drawn from its
/// prior carry an asymmetric part (a left–right gradient among the first components, a quarter of
/// the blotches), and the mirror still costs a little (docs/results.md).
///
/// Both clips, at 64 px: with one clip (as before issue 20, at 80 px), the four self-reconstructed
/// frames' albedo errors spread ±3/255 and on the canonical face's first clip they fell below
/// the tied fit's by chance (28.9 against 29.4); over both clips consistency leads, 20.1 to 22.8.
#[test]
fn the_scene_and_its_constraint_sweep_run_at_a_small_size() {
    let dir = tempfile::tempdir().unwrap();
    let small = ["data.Synthetic.size=64".to_string(), "data.Synthetic.subjects=2".to_string(), "iterations=60".to_string(), "backend=Cpu".to_string()];
    let loaded = scene_into("cest.ron", &small, &dir.path().join("scene"));
    let summary = faceforge::run::run(&loaded, false).unwrap();
    let m = summary.metrics.unwrap();
    assert_eq!(m.frames.len(), 8);
    assert!(m.albedo_255.is_some() && summary.loss_history.0.last().unwrap().contains_key("reflectance"));

    let table = sweep_into("cest_ablation.ron", &small, &dir.path().join("sweep"));
    eprintln!("{}", faceforge::scene::sweep::markdown(&table));
    assert_eq!(table.rows.len(), 4);
    let albedo = |name: &str| table.rows.iter().find(|r| r.variant == name).unwrap_or_else(|| panic!("row {name}")).metrics.albedo_255.unwrap().mean;
    assert!(albedo("consistency only") < albedo("none (self-reconstruction)"), "albedo error: consistency {} vs none {}", albedo("consistency only"), albedo("none (self-reconstruction)"));
    assert!(std::fs::read_to_string(dir.path().join("sweep/table.md")).unwrap().contains("albedo (/255)"));
}

/// Overrides that make the CEST training scenes tiny: 2 clips of 4 32-pixel frames of the tiny
/// model, a 2-channel network, 3 steps.
fn tiny_training() -> Vec<String> {
    ["data.Synthetic.subjects=2", "data.Synthetic.size=32", "learn.network.input=32", "learn.network.width=2", "learn.network.hidden=8", "model.Procedural.preset=Tiny", "iterations=3", "learn.held_out=2", "outputs.checkpoint_every=0"]
        .map(String::from)
        .to_vec()
}

#[test]
fn the_conditional_chain_trains_and_the_cest_iest_sweep_runs_at_a_small_size() {
    let out = tempfile::tempdir().unwrap();
    let summary = faceforge::run::train::train(&scene_into("cest_train.ron", &tiny_training(), &out.path().join("cest")), &Default::default(), false).unwrap();
    let names: Vec<&str> = summary.losses.keys().map(String::as_str).collect();
    assert_eq!(names, ["landmark", "reflectance", "regulariser"]);
    assert!(summary.losses.values().all(|v| v.is_finite() && *v > 0.0), "{:?}", summary.losses);
    assert!(summary.held_out.albedo_255.as_ref().is_some_and(|a| a.mean.is_finite()) && summary.held_out.mean_albedo_255.is_some());
    let info = std::fs::read_to_string(out.path().join("cest/weights.json")).unwrap();
    assert!(info.contains("\"conditional\": true") && info.contains("\"mono_lighting\": true"));

    let table = sweep_into("cest_train_ablation.ron", &tiny_training(), &out.path().join("sweep"));
    let rows: Vec<&str> = table.trainings.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(rows, ["CEST, consistency + symmetry", "IEST, consistency + symmetry", "CEST, consistency only", "CEST, symmetry only", "CEST, none (self-reconstruction)", "IEST, none (self-reconstruction)"]);
    assert!(table.trainings.iter().all(|r| r.held_out.albedo_255.is_some()));
    let conditional = |folder: &str| std::fs::read_to_string(out.path().join("sweep").join(folder).join("weights.json")).unwrap().contains("\"conditional\": true");
    assert!(conditional("cest_consistency_symmetry") && !conditional("iest_consistency_symmetry"));
    let markdown = std::fs::read_to_string(out.path().join("sweep/table.md")).unwrap();
    assert!(markdown.contains("albedo (/255)"), "{markdown}");
}
