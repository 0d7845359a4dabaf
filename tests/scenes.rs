//! End-to-end: the scenes users copy, the graph checks that protect them, and a real run.

use faceforge::scene::graph::{build_schedule, plan};
use faceforge::run::run;
use faceforge::LoadedScene;
use faceforge_e2e::{quickstart_into, scene, scenes_dir};
use faceforge_model::{MorphableModel, ModelSpec, Preset};

#[test]
fn every_scene_in_scenes_checks() {
    let mut count = 0;
    for entry in std::fs::read_dir(scenes_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ron") && faceforge::scene::sweep::is_sweep(&path) {
            // Every variant of a sweep is a scene that checks.
            let variants = faceforge::scene::sweep::check(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(!variants.is_empty());
            count += 1;
        } else if path.extension().is_some_and(|e| e == "ron") {
            let loaded = LoadedScene::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let p = plan(&loaded).unwrap_or_else(|e| panic!("{e}"));
            build_schedule(&loaded, &p).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    assert!(count >= 2, "scenes/ holds {count} scenes");
}

const GOOD: &str = r#"Scene(
    data: Sampled(subjects: 1, frames: 2),
    model: Procedural(preset: Tiny),
    backend: Cpu,
    systems: [(name: "reconstruct")],
    outputs: (dir: "unused"),
)"#;

#[test]
fn a_typo_gives_file_line_and_column() {
    let text = GOOD.replace("    systems:", "    sytems:");
    let err = LoadedScene::from_str(&text, "typo.ron").unwrap_err();
    assert_eq!(err.position, Some((5, 5)), "{err}");
    let shown = err.to_string();
    assert!(shown.starts_with("typo.ron:5:5: ") && shown.contains("sytems"), "{shown}");

    let err = LoadedScene::from_str(&GOOD.replace("subjects: 1", "subjects: -1"), "neg.ron").unwrap_err();
    assert_eq!(err.position.map(|p| p.0), Some(2), "{err}");
}

#[test]
fn a_missing_producer_is_a_graph_error_naming_system_and_component() {
    let loaded = scene(&GOOD.replace(r#"(name: "reconstruct")"#, r#"(name: "vertex_normals")"#), "missing.ron");
    let err = plan(&loaded).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("system `vertex_normals` reads `Mesh`, which no upstream system produces"), "{shown}");
    assert!(shown.contains("reconstruct"), "the error names the producer to add: {shown}");
    assert_eq!(err.position, Some((5, 22)), "{shown}");
}

#[test]
fn unknown_system_and_loss_list_the_known_ones() {
    let loaded = scene(&GOOD.replace("\"reconstruct\"", "\"recnstruct\""), "unknown.ron");
    let shown = plan(&loaded).unwrap_err().to_string();
    assert!(shown.contains("unknown system `recnstruct`; known systems: oracle_coeffs, oracle_lighting, oracle_pose, lighting, reconstruct, vertex_normals, sample_texture"), "{shown}");

    let loaded = scene(&GOOD.replace("    outputs:", "    losses: {\"censsus\": 0.2},\n    outputs:"), "loss.ron");
    let err = plan(&loaded).unwrap_err();
    assert!(err.to_string().contains("unknown loss `censsus`; known losses: landmark, guidance, regulariser, render, pixel, depth, epipolar, identity, reflectance, photometric, photo, align, census, flow, semantic, coefficients, vertex_distance, temporal, pose, weighted_coefficients, self_supervision, self_critic"), "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(6));
}

#[test]
fn bad_settings_name_the_system_and_the_field() {
    let loaded = scene(&GOOD.replace(r#"(name: "reconstruct")"#, r#"(name: "reconstruct", settings: (albdo: true))"#), "settings.ron");
    let p = plan(&loaded).unwrap();
    let shown = build_schedule(&loaded, &p).err().expect("bad settings are refused").to_string();
    assert!(shown.contains("settings of system `reconstruct`") && shown.contains("albdo"), "{shown}");
}

#[test]
fn outputs_without_their_data_are_refused() {
    let loaded = scene(&GOOD.replace("systems: [(name: \"reconstruct\")]", "systems: []").replace("dir: \"unused\"", "dir: \"unused\", meshes: [Obj]"), "out.ron");
    let shown = plan(&loaded).unwrap_err().to_string();
    assert!(shown.contains("no system produces `Mesh`"), "{shown}");
}

#[test]
fn overrides_reach_any_field_and_refuse_unknown_paths() {
    let mut loaded = scene(GOOD, "set.ron");
    loaded
        .apply_overrides(&["iterations=3".into(), "data.Sampled.subjects=4".into(), "backend=Wgpu".into(), "outputs.meshes=[Ply]".into()])
        .unwrap();
    assert_eq!(loaded.scene.iterations, 3);
    assert_eq!(loaded.scene.backend, faceforge_kernels::BackendChoice::Wgpu);
    let faceforge::scene::DataSpec::Sampled(s) = &loaded.scene.data else { panic!("the data stays Sampled") };
    assert_eq!(s.subjects, 4);
    assert_eq!(loaded.scene.outputs.meshes, vec![faceforge::scene::MeshFormat::Ply]);
    let err = loaded.apply_overrides(&["data.Sampled.subjcts=4".into()]).unwrap_err();
    assert!(err.to_string().contains("subjcts"), "{err}");
    let err = loaded.apply_overrides(&["iterations".into()]).unwrap_err();
    assert!(err.to_string().contains("path=value"), "{err}");
}

/// Parses the `v` lines of an OBJ: positions and colours.
fn obj_vertices(text: &str) -> Vec<[f32; 6]> {
    text.lines()
        .filter_map(|l| l.strip_prefix("v "))
        .map(|l| {
            let v: Vec<f32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3], v[4], v[5]]
        })
        .collect()
}

#[test]
fn sampled_faces_are_written_as_the_model_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"Scene(
        seed: 7,
        data: Sampled(subjects: 2, frames: 2),
        model: Procedural(preset: Tiny, seed: 0),
        backend: Cpu,
        systems: [(name: "reconstruct", settings: (albedo: true))],
        outputs: (dir: "DIR", meshes: [Obj, Ply], coefficients: true),
    )"#
    .replace("DIR", &dir.path().display().to_string());
    let summary = run(&scene(&text, "sampled.ron"), false).unwrap();
    assert_eq!(summary.frames, 4);
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, seed: 0, ..ModelSpec::default() });
    let n = model.n_vertices();
    let len = 3 * n;

    for name in ["s000_f000", "s000_f001", "s001_f000", "s001_f001"] {
        let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap()).unwrap();
        let floats = |k: &str| -> Vec<f64> { record["coefficients"][k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
        let (id, exp, tex) = (floats("id"), floats("exp"), floats("tex"));
        assert_eq!((id.len(), exp.len(), tex.len()), (model.n_id(), model.n_exp(), model.n_albedo()));

        let obj = std::fs::read_to_string(dir.path().join(format!("{name}.obj"))).unwrap();
        let vertices = obj_vertices(&obj);
        assert_eq!(vertices.len(), n);
        assert_eq!(obj.lines().filter(|l| l.starts_with("vt ")).count(), n);
        assert_eq!(obj.lines().filter(|l| l.starts_with("f ")).count(), model.n_triangles());
        // Every position is S̄ + B_id α + B_exp β (to the OBJ's printed precision), every colour
        // T̄ + B_tex γ clamped to [0, 1] (4 decimals).
        let mut worst = (0.0f64, 0.0f64);
        for (v, got) in vertices.iter().enumerate() {
            for c in 0..3 {
                let i = 3 * v + c;
                let mut s = model.mean_shape()[i] as f64;
                let mut a = model.mean_albedo()[i] as f64;
                s += id.iter().enumerate().map(|(k, x)| x * model.id_basis()[k * len + i] as f64).sum::<f64>();
                s += exp.iter().enumerate().map(|(k, x)| x * model.exp_basis()[k * len + i] as f64).sum::<f64>();
                a += tex.iter().enumerate().map(|(k, x)| x * model.albedo_basis()[k * len + i] as f64).sum::<f64>();
                worst.0 = worst.0.max((got[c] as f64 - s).abs());
                worst.1 = worst.1.max((got[3 + c] as f64 - a.clamp(0.0, 1.0)).abs());
            }
        }
        assert!(worst.0 < 1e-3 && worst.1 < 1e-4, "{name}: position error {} mm, colour error {}", worst.0, worst.1);

        // The 3D landmarks are the landmark vertices of the same mesh.
        let lm = record["landmarks_3d"].as_array().unwrap();
        assert_eq!(lm.len(), 68);
        let tip = &vertices[model.landmarks()[30] as usize];
        assert!((lm[30][2].as_f64().unwrap() - tip[2] as f64).abs() < 1e-3);

        let ply = std::fs::read(dir.path().join(format!("{name}.ply"))).unwrap();
        let header_end = ply.windows(11).position(|w| w == b"end_header\n").unwrap() + 11;
        assert_eq!(ply.len() - header_end, n * 15 + model.n_triangles() * 13, "binary PLY body size");
    }
    // Two frames of one subject share identity but not expression.
    let read = |name: &str| std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap();
    let (a, b): (serde_json::Value, serde_json::Value) = (serde_json::from_str(&read("s000_f000")).unwrap(), serde_json::from_str(&read("s000_f001")).unwrap());
    assert_eq!(a["coefficients"]["id"], b["coefficients"]["id"]);
    assert_ne!(a["coefficients"]["exp"], b["coefficients"]["exp"]);
    let run_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["frames"], 4);
}

#[test]
fn quickstart_fits_and_reports_errors_against_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(&quickstart_into(dir.path()), false).unwrap();
    let m = summary.metrics.expect("synthetic data has ground truth");
    assert_eq!(m.frames.len(), 2);
    // 60 iterations on the tiny model at 64 px: the fit is well under way, not finished.
    assert!(m.per_vertex_mm.mean < 0.9 * m.mean_face_per_vertex_mm.mean, "{m:?}");
    assert!(m.landmarks_px.mean < 2.0 && m.pose_deg.mean < 5.0, "{m:?}");
    for f in ["s000_f000.obj", "s000_f001.ply", "s000_f000_overlay.png", "s000_f001_from_s000_f000.png", "s000_f001.pts", "metrics.json"] {
        assert!(dir.path().join(f).exists(), "{f} written");
    }
    for term in ["landmark", "regulariser", "census", "semantic", "flow"] {
        assert!(summary.losses.contains_key(term), "{term} in {:?}", summary.losses);
    }
    // The report: every plot inline as SVG, every image inline, nothing fetched from elsewhere.
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for plot in ["loss per term", "error by yaw bin", "CED, 2D landmarks", "CED, dense 3D", "CED, point-to-plane RMSE (95 mm crop)", "colour scale, mm"] {
        assert!(html.contains(&format!("<title>{plot}</title>")), "{plot} drawn as inline SVG");
    }
    assert!(html.contains("alt=\"per-vertex error heat map\" src=\"data:image/png;base64,"));
    assert_eq!(html.matches("alt=\"overlay\" src=\"data:image/png;base64,").count(), 2, "one strip per frame");
    for external in ["http:", "https:", "src=\"//", "<script", "<link", "url("] {
        assert!(!html.contains(external), "the report must open offline: found {external}");
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("mean of the yaw-bin means") && md.contains("| s000_f001 |"), "{md}");
    let csv = std::fs::read_to_string(dir.path().join("losses.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + summary.iterations as usize, "a header and a line per iteration");
    // share_identity: one fitted identity for the subject, an expression per frame.
    let read = |name: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap()).unwrap() };
    let (a, b) = (read("s000_f000"), read("s000_f001"));
    assert_eq!(a["coefficients"]["id"], b["coefficients"]["id"]);
    assert_ne!(a["coefficients"]["exp"], b["coefficients"]["exp"]);
    assert!(a["coefficients"]["id"].as_array().unwrap().iter().any(|x| x.as_f64().unwrap() != 0.0), "the identity moved off the mean");
}

#[test]
fn the_graph_runs_in_stage_order_whatever_the_scene_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD
        .replace(r#"[(name: "reconstruct")]"#, r#"[(name: "vertex_normals", keep: true), (name: "reconstruct")]"#)
        .replace("\"unused\"", &format!("{:?}, meshes: [Obj]", dir.path().display().to_string()));
    let loaded = scene(&text, "order.ron");
    let order: Vec<&str> = plan(&loaded).unwrap().systems.iter().map(|p| p.entry.name).collect();
    assert_eq!(order, ["reconstruct", "vertex_normals"]);
    // Nothing reads the normals: without `keep` the graph drops them and says why.
    let dropped = plan(&scene(&text.replace(", keep: true", ""), "order.ron")).unwrap().dropped;
    assert_eq!((dropped[0].name, dropped[0].reason.as_str()), ("vertex_normals", "nothing reads Normals"));
    let summary = run(&loaded, false).unwrap();
    assert_eq!(summary.frames, 2);
    assert!(dir.path().join("s000_f001.obj").exists());
}

#[test]
fn a_listed_adjoint_or_step_is_refused_as_no_longer_needed() {
    let text = GOOD.replace(r#"[(name: "reconstruct")]"#, r#"[(name: "reconstruct"), (name: "reconstruct_backward")]"#);
    let err = plan(&scene(&text, "adjoint.ron")).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("`reconstruct_backward` is no longer needed: the graph inserts the adjoint of `reconstruct`"), "{shown}");
    assert_eq!(err.position, Some((5, 45)), "{shown}");
    let text = GOOD.replace(r#"[(name: "reconstruct")]"#, r#"[(name: "reconstruct"), (name: "adam", settings: (lr: 0.1))]"#);
    let shown = plan(&scene(&text, "adam.ron")).unwrap_err().to_string();
    assert!(shown.contains("`adam` is no longer needed") && shown.contains("optimizer: Adam("), "{shown}");
}

/// `faceforge bench decode` and `bench fit` run and report each case against its baseline from
/// the same run (the numbers themselves belong to docs/performance.md, not to a test).
#[test]
fn benchmarks_run_and_report_ratios_against_a_baseline() {
    let model = faceforge_model::MorphableModel::generate(&faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, ..Default::default() });
    let rows = faceforge::bench::decode(&model, &[1, 4], 1);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.ms.iter().all(|t| t.is_finite() && *t >= 0.0)));
    let table = faceforge::bench::rows_table("ms/frame", &rows);
    assert!(table.contains("× frame by frame, batch 4"), "{table}");
    let scene = quickstart_into(tempfile::tempdir().unwrap().path());
    let rows = faceforge::bench::fit(&scene, &["tiny"], 1).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].baseline.as_ref().map(|b| b.0.as_str()), Some("landmark + regulariser, tiny"));
    let mut clip = LoadedScene::load(&scenes_dir().join("clip_fit.ron")).unwrap();
    clip.apply_overrides(&["model.Procedural.preset=Tiny".to_string(), "backend=Cpu".to_string(), "iterations=3".to_string(), "data.Synthetic.size=64".to_string()]).unwrap();
    let rows = faceforge::bench::run_clip(&clip, 10).unwrap();
    assert!(rows[0].case.starts_with("1 frames") && rows[1].case.starts_with("10 frames") && rows[1].case.contains("peak memory"), "{rows:?}");
}
