//! MGCNet in fit mode end to end: the multi-view chain (pinhole poses → render colour and depth
//! → view synthesis → pixel / depth / epipolar losses → and back) against central differences,
//! each multi-view term correcting a wrong relative pose on its own, and the scene and its
//! Table 3 sweep at a small size.

use bevy_ecs::prelude::*;
use faceforge::run::{iterate, prepare, Prepared};
use faceforge_components::{Coeffs, Grad, GroundTruth, Image, Landmarks2d, PinholeParams, Pose, Rendered, SynthesisedViews};
use faceforge_e2e::{frames_by_name, scene, scene_into, sweep_into};
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::view_synthesis::{synthesise, Pair};
use faceforge_kernels::{depth_consistency, epipolar, interpolate, pixel_consistency, relative_pose};
use faceforge_systems::pinhole_pose::from_pinhole;
use faceforge_systems::view_synthesis::pinhole;

/// Two pinhole views (yaw 0° and 30°) of one face, the multi-view losses only.
const GRADIENT_SCENE: &str = r#"Scene(
    data: Synthetic(preset: MvfLike, subjects: 1, frames: 2, size: 96, seed: 5, landmark_noise: 1.0, focal: 4.53, yaws: [0.0, 30.0]),
    model: Procedural(preset: Tiny),
    backend: Cpu,
    systems: [
        (name: "oracle_lighting"), (name: "pinhole_pose", settings: (init: TruthOffset(2.0))),
        (name: "reconstruct", settings: (albedo: true)), (name: "vertex_normals"), (name: "render"),
        (name: "view_synthesis"),
    ],
    losses: {"pixel": PIXEL, "depth": DEPTH, "epipolar": EPIPOLAR},
    optimizer: NoStep,
    outputs: (dir: "unused"),
)"#;

/// The loss weights of a gradient check: pixel, depth, epipolar.
type Weights = [f64; 3];

fn gradient_scene(w: Weights) -> String {
    GRADIENT_SCENE.replace("PIXEL", &w[0].to_string()).replace("DEPTH", &w[1].to_string()).replace("EPIPOLAR", &w[2].to_string())
}

/// What the differences hold fixed: each frame's triangle ids and each pair's covisible map.
struct Frozen {
    tri: Vec<Vec<u32>>,
    covisible: Vec<Vec<Vec<f32>>>,
}

/// The frame's depth map through fixed triangle ids (the rasterizer's Σ bᵢ dᵢ).
fn depth_map(p: &Prepared, rendered: &Rendered, tri: &[u32]) -> Vec<f32> {
    let n = p.model.n_vertices();
    let shape = RasterShape { batch: 1, width: rendered.width, height: rendered.height };
    let depths: Vec<f32> = rendered.projected.chunks(4).map(|v| v[2]).collect();
    let map = interpolate::forward_cpu(shape, &rendered.projected, p.model.triangles(), n, tri, &depths, 1);
    map.iter().zip(tri).map(|(d, &t)| if t == 0 { f32::MAX } else { *d }).collect()
}

/// The scene's total loss after one forward run, from the kernels directly with the frozen
/// visibility: mean over both ordered pairs of 1·pixel + 0.01·depth + 0.1·epipolar.
fn frozen_loss(p: &mut Prepared, frozen: &Frozen, w: Weights) -> f64 {
    iterate(p, 1, false).unwrap();
    let es = frames_by_name(&mut p.world);
    let get = |e: Entity| (p.world.get::<Rendered>(e).unwrap().clone(), p.world.get::<Pose>(e).unwrap().clone(), p.world.get::<Image>(e).unwrap().clone(), p.world.get::<Landmarks2d>(e).unwrap().clone());
    let views: Vec<_> = es.iter().map(|&e| get(e)).collect();
    let depths: Vec<Vec<f32>> = views.iter().zip(&frozen.tri).map(|(v, tri)| depth_map(p, &v.0, tri)).collect();
    let mut total = 0.0f64;
    for (t, s) in [(0usize, 1usize), (1, 0)] {
        let ((k_t, rigid_t), (k_s, rigid_s)) = (pinhole(&views[t].1).unwrap(), pinhole(&views[s].1).unwrap());
        let (r, tr) = relative_pose::forward(&rigid_t, &rigid_s);
        let pair = Pair { width: views[t].0.width, height: views[t].0.height, target_depth: &depths[t], source_rgb: &views[s].2.rgb, source_depth: &depths[s], k_target: k_t, k_source: k_s };
        let synthesis = synthesise(&pair, &r, tr);
        let covisible: Vec<f32> = frozen.covisible[t][0].iter().zip(&synthesis.valid).map(|(a, b)| a * b).collect();
        let pixel = pixel_consistency::forward(&synthesis.rgb, &views[t].2.rgb, &covisible) as f64;
        let depth = depth_consistency::forward(&depths[t], &synthesis.depth, &covisible) as f64;
        let wide = |l: &Landmarks2d| l.points.iter().map(|q| [q[0] as f64, q[1] as f64]).collect::<Vec<_>>();
        let k64 = |k: [f32; 4]| k.map(|v| v as f64);
        let epi = epipolar::forward(&wide(&views[t].3), &wide(&views[s].3), k64(k_t), k64(k_s), &r.map(|v| v as f64), tr.map(|v| v as f64));
        total += (w[0] * pixel + w[1] * depth + w[2] * epi) / 2.0;
    }
    total
}

/// A prepared graph whose pose parameters exist (one forward run made them), the second view
/// turned 3° in yaw and 2° in pitch against the first (away from the truth, where the epipolar
/// distances' |·| have their kinks), then changed by `change`.
fn prepared(w: Weights, change: &dyn Fn(&mut World, &[Entity])) -> Prepared {
    let mut p = prepare(&scene(&gradient_scene(w), "multiview_gradient.ron")).unwrap();
    iterate(&mut p, 1, false).unwrap();
    let es = frames_by_name(&mut p.world);
    let mut second = p.world.get_mut::<PinholeParams>(es[1]).unwrap();
    second.angles[0] += 3f32.to_radians();
    second.angles[1] += 2f32.to_radians();
    change(&mut p.world, &es);
    p
}

#[test]
fn the_multi_view_chain_matches_central_differences() {
    // Tolerances: the pixel term reads the source image bilinearly (piecewise linear, so its
    // differences carry kink noise); the depth term adds an L1 over hundreds of pixels whose
    // residuals sit near zero (its differences swing by ±50 % with the step on the small rows,
    // around the adjoint); the epipolar term is smooth away from the truth but for the few
    // landmarks whose distance crosses zero.
    //
    // Since issue 20 (the canonical face) the pixel and depth terms take an angle step of
    // 2·10⁻³ rad, not 5·10⁻⁴: its 2-mm albedo edges and its nose's occlusion edges put more kinks
    // within a 0.03° step (pixel, frame 0 angle 2: −0.085 against the adjoint's −0.106 at 5·10⁻⁴,
    // −0.1065 at 2·10⁻³; every pixel row within 3.2 %). The depth term's small rows are compared
    // against a quarter of its largest row, not a tenth: they are sums of signs of near-zero
    // residuals, and on the canonical face they swing by more than themselves with the step
    // (frame 0 angle 2: −0.0037 at 5·10⁻⁴, −0.0019 at 2·10⁻³, adjoint −0.0011; the largest row
    // is 0.035). A loosened floor, for that term only; docs/results.md says so.
    for (w, tolerance, angle_step, floor) in [([1.0, 0.0, 0.0], 0.05, 2e-3, 0.1), ([0.0, 0.01, 0.0], 0.3, 2e-3, 0.25), ([0.0, 0.0, 0.1], 0.03, 5e-4, 0.1)] {
        check_gradients(w, tolerance, angle_step, floor);
    }
}

fn check_gradients(w: Weights, tolerance: f64, angle_step: f32, floor: f64) {
    let mut base = prepared(w, &|_, _| {});
    iterate(&mut base, 1, false).unwrap();
    let es = frames_by_name(&mut base.world);
    let terms = &base.world.resource::<faceforge_components::LossTerms>().terms;
    assert!(["pixel", "depth", "epipolar"].iter().zip(w).all(|(t, w)| w == 0.0 || terms[*t] > 0.0), "{terms:?}");
    let covisible: Vec<Vec<Vec<f32>>> = es.iter().map(|&e| base.world.get::<SynthesisedViews>(e).unwrap().pairs.iter().map(|v| v.covisible.clone()).collect()).collect();
    assert!(covisible.iter().all(|c| c[0].iter().sum::<f32>() > 300.0), "covisible pixels: {:?}", covisible.iter().map(|c| c[0].iter().sum::<f32>()).collect::<Vec<_>>());
    let frozen = Frozen { tri: es.iter().map(|&e| base.world.get::<Rendered>(e).unwrap().tri.clone()).collect(), covisible };
    let g_pose: Vec<PinholeParams> = es.iter().map(|&e| base.world.get::<Grad<PinholeParams>>(e).unwrap().value.clone()).collect();
    let g_coeffs = base.world.get::<Grad<Coeffs>>(es[1]).unwrap().value.clone();

    let central = |change: &(dyn Fn(&mut World, &[Entity], f32) + Sync), h: f32| -> f64 {
        let mut plus = prepared(w, &|world, es| change(world, es, h));
        let mut minus = prepared(w, &|world, es| change(world, es, -h));
        (frozen_loss(&mut plus, &frozen, w) - frozen_loss(&mut minus, &frozen, w)) / (2.0 * h as f64)
    };
    let mut rows = Vec::new();
    for f in 0..2 {
        for k in 0..3 {
            rows.push((format!("frame {f} angle {k}"), g_pose[f].angles[k] as f64, central(&move |w, es, h| w.get_mut::<PinholeParams>(es[f]).unwrap().angles[k] += h, angle_step)));
            rows.push((format!("frame {f} translation {k}"), g_pose[f].translation[k] as f64, central(&move |w, es, h| w.get_mut::<PinholeParams>(es[f]).unwrap().translation[k] += h, if k == 2 { 0.2 } else { 0.02 })));
        }
    }
    let sigma = (base.model.id_sigma()[0], base.model.exp_sigma()[0]);
    rows.push(("frame 1 identity 0".into(), g_coeffs.id[0] as f64, central(&|w, es, h| w.get_mut::<Coeffs>(es[1]).unwrap().id[0] += h, 0.05 * sigma.0)));
    rows.push(("frame 1 expression 0".into(), g_coeffs.exp[0] as f64, central(&|w, es, h| w.get_mut::<Coeffs>(es[1]).unwrap().exp[0] += h, 0.05 * sigma.1)));
    println!("weights (pixel, depth, epipolar) {w:?}");
    for (what, analytic, numeric) in &rows {
        println!("{what:>22}: adjoint {analytic:>12.6} central difference {numeric:>12.6}");
    }
    let scale = rows.iter().fold(0.0f64, |m, r| m.max(r.2.abs()));
    for (what, analytic, numeric) in &rows {
        // Each row within the tolerance of itself or of `floor` × the largest row.
        let rel = (analytic - numeric).abs() / numeric.abs().max(floor * scale);
        assert!(rel < tolerance, "{w:?} {what}: adjoint {analytic} vs central difference {numeric}");
    }
}

/// The angle (degrees) between the fitted and the true relative rotation of frames 0 → 1.
fn relative_rotation_error(p: &mut Prepared) -> f32 {
    let es = frames_by_name(&mut p.world);
    let rigid = |pose: &Pose| pinhole(pose).unwrap().1;
    let fitted = relative_pose::forward(&rigid(p.world.get::<Pose>(es[0]).unwrap()), &rigid(p.world.get::<Pose>(es[1]).unwrap())).0;
    let truth = |e: Entity| rigid(p.world.get::<GroundTruth>(e).unwrap().pose.as_ref().unwrap());
    let true_r = relative_pose::forward(&truth(es[0]), &truth(es[1])).0;
    faceforge_kernels::pgn::rotation_angle_between(&fitted, &true_r)
}

/// The frame's true pose as parameters.
fn true_params(world: &World, e: Entity) -> PinholeParams {
    let Some(Pose::Pinhole { k, r, t }) = &world.get::<GroundTruth>(e).unwrap().pose else { panic!("pinhole truth") };
    from_pinhole(k, r, *t)
}

/// Two views of the true face under the true lighting, one multi-view term, poses fitted from
/// the truth with the second view's `axis` angle (0 yaw, 1 pitch) 4° off.
fn one_term(loss: &str, weight: f32, axis: usize) -> Prepared {
    // The epipolar term reaches the poses directly; the render loss at weight 0 gives the
    // coefficients a gradient (zero) as in the other cases.
    let (render, synthesis) = match loss {
        "epipolar" => (r#", "render": 0.0"#, ""),
        _ => ("", r#"(name: "view_synthesis"),"#),
    };
    let text = format!(
        r#"Scene(
    data: Synthetic(preset: MvfLike, subjects: 1, frames: 2, size: 96, seed: 9, landmark_noise: 0.5, focal: 4.53, yaws: [0.0, 30.0]),
    model: Procedural(preset: Tiny),
    backend: Cpu,
    systems: [
        (name: "oracle_coeffs"), (name: "oracle_lighting"), (name: "pinhole_pose"),
        (name: "reconstruct", settings: (albedo: true)), (name: "vertex_normals"), (name: "render"),
        {synthesis}
    ],
    losses: {{"{loss}": {weight}{render}}},
    optimizer: Adam(lr: 0.02, halve_every: 0),
    outputs: (dir: "unused"),
)"#
    );
    let mut p = prepare(&scene(&text, "multiview_pose.ron")).unwrap();
    for (i, e) in frames_by_name(&mut p.world).into_iter().enumerate() {
        let mut params = true_params(&p.world, e);
        params.angles[axis] += if i == 1 { 4f32.to_radians() } else { 0.0 };
        p.world.entity_mut(e).insert((params.pose(), params));
    }
    p
}

/// The pixel term alone pulls a relative pose 4° off in yaw back: the synthesised view only
/// lines up with the target when the relative pose is right.
#[test]
fn the_pixel_term_alone_corrects_a_wrong_relative_pose() {
    let mut p = one_term("pixel", 1.0, 0);
    let before = relative_rotation_error(&mut p);
    let history = iterate(&mut p, 150, false).unwrap();
    let after = relative_rotation_error(&mut p);
    let (first, last) = (history.0[0]["pixel"], history.0[149]["pixel"]);
    eprintln!("pixel alone: relative rotation error {before:.2}° → {after:.2}°, loss {first:.4} → {last:.4}");
    assert!((before - 4.0).abs() < 0.1, "{before}");
    assert!(after < 1.0, "the pixel term alone leaves the relative rotation {after}° off");
}

/// The epipolar term alone, from a relative pose 4° off in pitch, brings the landmarks onto each
/// other's epipolar lines as well as the true poses do (the distances left are the landmarks'
/// noise) — but not the true rotation back: a face-sized cloud seen from a metre leaves
/// rotation and baseline direction nearly interchangeable (and for a yaw error, which slides
/// points along the horizontal epipolar lines, the loss hardly moves at all). That is why
/// MGCNet uses it beside the dense terms; the number is recorded, not asserted. At the start the
/// 4° of pitch show as 1.9 × the truth's level (the bound was 2 × until issue 20: synthetic faces
/// are sized by their width, and the canonical face is wider for its height, 165 mm to the
/// analytic face's 144, so its landmarks span 13 % fewer pixels and a pitch error moves them
/// less against the same landmark noise; the bound is now 1.8 ×).
#[test]
fn the_epipolar_term_alone_reaches_the_truths_consistency() {
    let truth_level = {
        // The loss of the first iteration is taken before its step: at the true poses.
        let mut p = one_term("epipolar", 0.1, 1);
        for e in frames_by_name(&mut p.world) {
            let truth = true_params(&p.world, e);
            p.world.entity_mut(e).insert((truth.pose(), truth));
        }
        iterate(&mut p, 1, false).unwrap().0[0]["epipolar"]
    };
    let mut p = one_term("epipolar", 0.1, 1);
    let history = iterate(&mut p, 150, false).unwrap();
    let (first, last) = (history.0[0]["epipolar"], history.0[149]["epipolar"]);
    eprintln!("epipolar alone: loss {first:.4} → {last:.4} (at the truth {truth_level:.4}); relative rotation error 4° → {:.2}°", relative_rotation_error(&mut p));
    assert!(first > 1.8 * truth_level, "4° of pitch: {first} vs {truth_level} at the truth");
    assert!(last <= 1.05 * truth_level, "{last} left vs {truth_level} at the truth");
}

/// The scene on its preset at a small size, and the Table 3 sweep: every row, the table and the
/// report written; the multi-view terms with the depth term weighted for millimetres beat the
/// 2D feature loss alone on the shape.
#[test]
fn the_scene_and_its_ablation_sweep_run_at_a_small_size() {
    let dir = tempfile::tempdir().unwrap();
    let small = ["data.Synthetic.size=80".to_string(), "data.Synthetic.subjects=1".to_string(), "iterations=60".to_string(), "backend=Cpu".to_string()];
    let loaded = scene_into("mgcnet.ron", &small, &dir.path().join("scene"));
    let summary = faceforge::run::run(&loaded, false).unwrap();
    let m = summary.metrics.unwrap();
    assert_eq!(m.frames.len(), 3);
    assert!(m.per_vertex_mm.mean < m.mean_face_per_vertex_mm.mean, "per-vertex {} mm vs mean face {} mm", m.per_vertex_mm.mean, m.mean_face_per_vertex_mm.mean);
    assert!(dir.path().join("scene/s000_f001.obj").exists());

    let table = sweep_into("mgcnet_ablation.ron", &small, &dir.path().join("sweep"));
    eprintln!("{}", faceforge::scene::sweep::markdown(&table));
    assert_eq!(table.rows.len(), 9);
    let row = |name: &str| table.rows.iter().find(|r| r.variant == name).unwrap_or_else(|| panic!("row {name}"));
    let (baseline, scaled) = (row("2D feature (baseline)"), row("+ pixel + depth + epipolar, w_depth for mm (0.1)"));
    assert!(!baseline.losses.contains_key("pixel") && row("+ pixel + depth + epipolar (full)").losses.contains_key("pixel"));
    assert!(scaled.metrics.per_vertex_mm.mean < baseline.metrics.per_vertex_mm.mean, "per-vertex: {} mm with the multi-view terms, {} mm without", scaled.metrics.per_vertex_mm.mean, baseline.metrics.per_vertex_mm.mean);
    let md = std::fs::read_to_string(dir.path().join("sweep/table.md")).unwrap();
    assert!(md.contains("| + pixel + depth + epipolar, no covisible map |"), "{md}");
}

/// MVF-Net's scene on its preset at a small size, and its Table 1 sweep under consistent and
/// changing lighting: one shape per triplet (the views' identity and expression equal), every
/// row and the table written; with consistent lighting the photometric and flow terms each
/// improve the depth on landmarks alone (at this size the per-vertex error moves by less than
/// its noise; docs/results.md has the full size), and a change of lighting between the views
/// ruins the photometric term alone (the paper's Fig. 8) more than the flow term.
#[test]
fn mvfnet_scene_and_its_ablation_sweep_run_at_a_small_size() {
    let dir = tempfile::tempdir().unwrap();
    let small = ["data.Synthetic.size=96".to_string(), "data.Synthetic.subjects=1".to_string(), "iterations=80".to_string(), "backend=Cpu".to_string()];
    let loaded = scene_into("mvfnet.ron", &small, &dir.path().join("scene"));
    let mut p = prepare(&loaded).unwrap();
    iterate(&mut p, 2, false).unwrap();
    let coeffs: Vec<Coeffs> = frames_by_name(&mut p.world).into_iter().map(|e| p.world.get::<Coeffs>(e).unwrap().clone()).collect();
    assert!(coeffs.iter().all(|c| c.id == coeffs[0].id && c.exp == coeffs[0].exp), "one identity and expression per triplet");
    assert!(coeffs[0].exp.iter().any(|x| *x != 0.0), "the shared expression moved");
    let summary = faceforge::run::run(&loaded, false).unwrap();
    let m = summary.metrics.unwrap();
    assert!(m.per_vertex_mm.mean < 0.8 * m.mean_face_per_vertex_mm.mean, "per-vertex {} mm vs mean face {} mm", m.per_vertex_mm.mean, m.mean_face_per_vertex_mm.mean);

    let table = sweep_into("mvfnet_ablation.ron", &small, &dir.path().join("sweep"));
    eprintln!("{}", faceforge::scene::sweep::markdown(&table));
    assert_eq!(table.rows.len(), 8);
    let row = |name: &str| &table.rows.iter().find(|r| r.variant == name).unwrap_or_else(|| panic!("row {name}")).metrics;
    let error = |name: &str| row(name).per_vertex_mm.mean;
    let depth = |name: &str| row(name).depth_mm.mean;
    let v1 = depth("v1 landmarks");
    assert!(depth("v2 + photo") < v1 && depth("v3 + align") < v1, "consistent lighting, depth error: v1 {v1}, v2 {}, v3 {}", depth("v2 + photo"), depth("v3 + align"));
    let (photo, align) = (error("v2 + photo, changing lighting"), error("v3 + align, changing lighting"));
    assert!(photo > error("v2 + photo") && photo > align, "changing lighting: photo alone {photo} mm, align alone {align} mm");
    assert!(std::fs::read_to_string(dir.path().join("sweep/table.md")).unwrap().contains("| v4 + photo + align, changing lighting |"));
}

/// The MGCNet scene stopped halfway and resumed ends where an uninterrupted run ends, loss for
/// loss: the checkpoint carries the pinhole poses, the lighting and their Adam moments, and the
/// run is deterministic (view synthesis inserts its components in entity order, so the frames'
/// query order is the same each run). A resumed world builds its tables in another order, so
/// sums over frames may differ in the last bit, as in the PGN resume test.
#[test]
fn mgcnet_stopped_and_resumed_ends_where_an_uninterrupted_run_ends() {
    use faceforge::run::{resume, run_with, Interrupted, RunOptions};
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let overrides = ["model.Procedural.preset=Tiny", "data.Synthetic.size=64", "data.Synthetic.subjects=1", "iterations=12", "outputs.checkpoint_every=5", "backend=Cpu"].map(String::from);
    let scene = |dir: &std::path::Path| scene_into("mgcnet.ron", &overrides, dir);
    let options = RunOptions { progress: false, overwrite: false, ..Default::default() };
    let whole = run_with(&scene(straight.path()), &options).unwrap();
    let err = run_with(&scene(split.path()), &RunOptions { stop_after: Some(7), ..options.clone() }).unwrap_err();
    assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
    let checkpoint = std::fs::read_to_string(split.path().join("checkpoint.json")).unwrap();
    assert!(checkpoint.contains("\"pinhole\"") && checkpoint.contains("pinhole_translation"), "the checkpoint holds the pinhole poses and their moments");
    let resumed = resume(split.path(), &[], &options).unwrap();
    assert_eq!(resumed.loss_history.0.len(), 12);
    for (a, b) in whole.loss_history.0.iter().zip(&resumed.loss_history.0) {
        for (k, v) in a {
            assert!((v - b[k]).abs() <= 1e-5 * v.abs().max(1e-3), "{k}: {v} vs {}", b[k]);
        }
    }
    // And two uninterrupted runs agree bit for bit.
    let again = tempfile::tempdir().unwrap();
    assert_eq!(run_with(&scene(again.path()), &options).unwrap().loss_history.0, whole.loss_history.0);
}
