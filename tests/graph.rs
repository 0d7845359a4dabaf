//! The derived graph: every scene of `scenes/` at its CI size gives the final losses it gave when
//! its graph was written by hand (recorded in `data/graph_before.json` before the graph derived
//! its adjoints), and every sweep variant's graph is the hand-written one.

use faceforge::scene::graph::plan;
use faceforge::LoadedScene;
use faceforge_e2e::scenes_dir;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn before_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/graph_before.json")
}

fn scene_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenes_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "ron")).collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// A scene at its CI size: the tiny model on the CPU, 3 iterations, small images, no files but
/// the checkpoint; a network starts from its seed, not from another scene's weights.
fn ci_sized(path: &Path, out: &Path) -> LoadedScene {
    let mut loaded = LoadedScene::load(path).unwrap();
    let mut set = vec![
        "model.Procedural.preset=Tiny".to_string(),
        "backend=Cpu".to_string(),
        "iterations=3".to_string(),
        "outputs.meshes=[]".to_string(),
        "outputs.images=false".to_string(),
        "outputs.landmarks=false".to_string(),
        "outputs.coefficients=false".to_string(),
        "outputs.texture=0".to_string(),
        format!("outputs.dir={:?}", out.display().to_string()),
    ];
    match &loaded.scene.data {
        faceforge::scene::DataSpec::Synthetic(s) if loaded.scene.learn.is_none() => {
            set.push(format!("data.Synthetic.size={}", s.size.min(64)));
            set.push(format!("data.Synthetic.subjects={}", s.subjects.min(2)));
        }
        faceforge::scene::DataSpec::Synthetic(s) => set.push(format!("data.Synthetic.subjects={}", s.subjects.min(4))),
        faceforge::scene::DataSpec::Folder(_) => {
            let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/obama.jpg");
            set.push(format!("data.Folder.path={:?}", photo.display().to_string()));
            set.push("data.Folder.size=96".to_string());
        }
        // (No recorded scene reads a video.)
        faceforge::scene::DataSpec::Sampled(_) | faceforge::scene::DataSpec::Video(_) => {}
    }
    if loaded.scene.learn.is_some() {
        set.push("learn.init=None".to_string());
        set.push("learn.held_out=2".to_string());
    }
    loaded.apply_overrides(&set).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    loaded
}

/// The final loss terms of a scene run at its CI size, as f32 bits.
fn ci_losses(path: &Path) -> BTreeMap<String, u32> {
    let out = tempfile::tempdir().unwrap();
    let loaded = ci_sized(path, out.path());
    let options = faceforge::run::RunOptions { overwrite: true, ..Default::default() };
    let losses = if loaded.scene.learn.is_some() {
        faceforge::run::train::train(&loaded, &options, false).unwrap_or_else(|e| panic!("{}: {e:#}", path.display())).losses
    } else {
        faceforge::run::run_with(&loaded, &options).unwrap_or_else(|e| panic!("{}: {e:#}", path.display())).losses
    };
    losses.into_iter().map(|(k, v)| (k, v.to_bits())).collect()
}

fn planned_names(loaded: &LoadedScene) -> Vec<String> {
    plan(loaded).unwrap_or_else(|e| panic!("{e}")).systems.iter().map(|p| p.entry.name.to_string()).collect()
}

/// Writes `data/graph_before.json` from the code as it is (run once, before the graph derived
/// its adjoints): `cargo test -p faceforge-e2e --test graph -- --ignored record`.
#[test]
#[ignore]
fn record() {
    let mut scenes = serde_json::Map::new();
    let mut variants = serde_json::Map::new();
    for path in scene_files() {
        if faceforge::scene::sweep::is_sweep(&path) {
            let sweep = faceforge::scene::sweep::load(&path).unwrap();
            let base = LoadedScene::load(&path.parent().unwrap().join(&sweep.base)).unwrap();
            for v in &sweep.variants {
                let scene = faceforge::scene::sweep::variant_scene(&base, &sweep, v, &[]).unwrap();
                variants.insert(format!("{} / {}", file_name(&path), v.name), serde_json::json!(planned_names(&scene)));
            }
        } else {
            let loaded = LoadedScene::load(&path).unwrap();
            let losses = ci_losses(&path);
            eprintln!("{}: {losses:?}", file_name(&path));
            scenes.insert(file_name(&path), serde_json::json!({"systems": planned_names(&loaded), "losses": losses}));
        }
    }
    let all = serde_json::json!({"scenes": scenes, "variants": variants});
    std::fs::write(before_file(), serde_json::to_string_pretty(&all).unwrap()).unwrap();
}

fn recorded() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(before_file()).unwrap()).unwrap()
}

fn names_of(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// The forward systems the derived graph drops. Two kinds:
/// - the variants that removed a loss's stages by name (the swap chain without an image-pair
///   term, the view synthesis without the pixel and depth terms) now change `losses` alone;
/// - the hand-written graphs ran `render` where no loss read the render and the sweep writes no
///   images (the metrics project the landmarks with the pose), and `vertex_normals` where only
///   that render read them.
const DROPPED: &[(&str, &[&str])] = &[
    ("mgcnet_ablation.ron / 2D feature (baseline)", &["view_synthesis"]),
    ("mgcnet_ablation.ron / + epipolar", &["view_synthesis"]),
    ("dense_landmarks.ron / 68 iBUG landmarks", &["vertex_normals", "render"]),
    ("dense_landmarks.ron / 468 dense landmarks", &["vertex_normals", "render"]),
    ("mvfnet_ablation.ron / v1 landmarks", &["vertex_normals", "sample_texture", "visibility", "swap_visible_texture", "render_swapped", "render"]),
    ("mvfnet_ablation.ron / v2 + photo", &["render"]),
    ("mvfnet_ablation.ron / v3 + align", &["render"]),
    ("mvfnet_ablation.ron / v4 + photo + align", &["render"]),
    ("mvfnet_ablation.ron / v1 landmarks, changing lighting", &["vertex_normals", "sample_texture", "visibility", "swap_visible_texture", "render_swapped", "render"]),
    ("mvfnet_ablation.ron / v2 + photo, changing lighting", &["render"]),
    ("mvfnet_ablation.ron / v3 + align, changing lighting", &["render"]),
    ("mvfnet_ablation.ron / v4 + photo + align, changing lighting", &["render"]),
    ("pgn_ablation.ron / L_l + L_r", &["vertex_normals", "sample_texture", "visibility", "swap_visible_texture", "render_swapped", "render"]),
    ("pgn_ablation.ron / + L_p- (L1)", &["render"]),
    ("pgn_ablation.ron / + L_p (census)", &["render"]),
    ("pgn_ablation.ron / + L_p + L_s", &["render"]),
    ("pgn_ablation.ron / + L_p + L_f", &["render"]),
    ("pgn_ablation.ron / + L_p + L_s + L_f (full)", &["render"]),
    ("pgn_ablation.ron / single-frame, without PGN", &["vertex_normals", "sample_texture", "visibility", "swap_visible_texture", "render_swapped", "render"]),
    ("pgn_ablation.ron / single-frame, with PGN", &["vertex_normals", "sample_texture", "visibility", "swap_visible_texture", "render_swapped", "render"]),
    ("pgn_ablation.ron / multi-frame, without PGN", &["render"]),
    ("pgn_ablation.ron / multi-frame, with PGN", &["render"]),
    ("pgn_ablation.ron / multi-frame, with PGN, T as a scaled rotation", &["render"]),
];

/// Every scene's and every sweep variant's derived graph is the one written by hand before, in
/// the same run order (so the gradients add up in the same order), but for the unread forward
/// systems of `DROPPED`, which the graph reports as dropped.
#[test]
fn derived_graphs_equal_the_hand_written_ones() {
    let before = recorded();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    let mut compare = |key: String, loaded: &LoadedScene, was: Vec<String>| {
        let plan = plan(loaded).unwrap_or_else(|e| panic!("{key}: {e}"));
        let now: Vec<String> = plan.names().iter().map(|s| s.to_string()).collect();
        let dropped: Vec<&str> = plan.dropped.iter().map(|d| d.name).collect();
        let expected_drop: &[&str] = DROPPED.iter().find(|(k, _)| *k == key).map_or(&[], |(_, d)| d);
        let expected: Vec<String> = was.into_iter().filter(|n| !expected_drop.contains(&n.as_str())).collect();
        if now != expected || dropped != expected_drop {
            mismatches.push(format!("{key}:\n  hand-written minus {expected_drop:?}: {expected:?}\n  derived, dropping {dropped:?}: {now:?}"));
        }
        checked += 1;
    };
    for path in scene_files() {
        if faceforge::scene::sweep::is_sweep(&path) {
            let sweep = faceforge::scene::sweep::load(&path).unwrap();
            let base = LoadedScene::load(&path.parent().unwrap().join(&sweep.base)).unwrap();
            for v in &sweep.variants {
                let scene = faceforge::scene::sweep::variant_scene(&base, &sweep, v, &[]).unwrap_or_else(|e| panic!("{e}"));
                let key = format!("{} / {}", file_name(&path), v.name);
                let was = names_of(&before["variants"][&key]);
                compare(key, &scene, was);
            }
        } else {
            let key = file_name(&path);
            // Scenes written after the record have no hand-written graph to equal.
            if before["scenes"].get(&key).is_some() {
                let was = names_of(&before["scenes"][&key]["systems"]);
                compare(key, &LoadedScene::load(&path).unwrap(), was);
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    let recorded_count = before["scenes"].as_object().unwrap().len() + before["variants"].as_object().unwrap().len();
    assert_eq!(checked, recorded_count, "every recorded scene and variant is still in scenes/");
}

/// Every scene of `scenes/`, run at its CI size, ends with the bit-identical loss terms it ended
/// with when its adjoints and step were written by hand.
#[test]
fn every_scene_gives_the_losses_it_gave_before_the_graph_derived_its_adjoints() {
    let before = recorded();
    let mut differ = Vec::new();
    let recorded_scenes = before["scenes"].as_object().unwrap().len();
    let mut compared = 0;
    for path in scene_files().into_iter().filter(|p| !faceforge::scene::sweep::is_sweep(p)) {
        let key = file_name(&path);
        if before["scenes"].get(&key).is_none() {
            continue; // written after the record
        }
        compared += 1;
        let was: BTreeMap<String, u32> = serde_json::from_value(before["scenes"][&key]["losses"].clone()).unwrap();
        let now = ci_losses(&path);
        if now != was {
            let show = |m: &BTreeMap<String, u32>| m.iter().map(|(k, v)| format!("{k} {}", f32::from_bits(*v))).collect::<Vec<_>>().join(", ");
            differ.push(format!("{key}: before {}; now {}", show(&was), show(&now)));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert_eq!(compared, recorded_scenes, "every recorded scene is still in scenes/");
}

fn pgn_fit_with(losses: &str) -> faceforge::scene::graph::Plan {
    let mut loaded = LoadedScene::load(&scenes_dir().join("pgn_fit.ron")).unwrap();
    loaded.apply_overrides(&["outputs.images=false".to_string(), format!("losses={{{losses}}}")]).unwrap();
    plan(&loaded).unwrap_or_else(|e| panic!("{e}"))
}

fn removed(from: &faceforge::scene::graph::Plan, to: &faceforge::scene::graph::Plan) -> Vec<&'static str> {
    from.names().into_iter().filter(|n| !to.names().contains(n)).collect()
}

/// Taking PGN's census term out of `pgn_fit.ron` (no swap images written) removes exactly the
/// systems only it needed: alone of the image-pair terms, the swap chain and its adjoints with
/// it; beside the semantic and flow terms, which read the same swaps, only the loss itself.
#[test]
fn removing_the_census_term_removes_exactly_the_systems_only_it_needed() {
    let census_only = pgn_fit_with(r#""landmark": 1.0, "regulariser": 1.0, "census": 10.0"#);
    let none = pgn_fit_with(r#""landmark": 1.0, "regulariser": 1.0"#);
    assert_eq!(
        removed(&census_only, &none),
        [
            "sample_texture",
            "visibility",
            "swap_visible_texture",
            "render_swapped",
            "loss_census",
            "render_swapped_backward",
            "swap_visible_texture_backward",
            "sample_texture_backward"
        ]
    );
    assert!(removed(&none, &census_only).is_empty());
    let full = pgn_fit_with(r#""landmark": 1.0, "regulariser": 1.0, "census": 10.0, "semantic": 50.0, "flow": 10.0"#);
    let without_census = pgn_fit_with(r#""landmark": 1.0, "regulariser": 1.0, "semantic": 50.0, "flow": 10.0"#);
    assert_eq!(removed(&full, &without_census), ["loss_census"]);
}

/// A fitted parameter that no weighted loss reaches is reported: CEST's lighting with only the
/// landmark and regulariser terms (the render stays for the coefficients' output, the
/// reflectance re-renders go); with the reflectance term it is reached.
#[test]
fn a_parameter_that_reaches_no_loss_is_reported() {
    let cest = |losses: &str| {
        let mut loaded = LoadedScene::load(&scenes_dir().join("cest.ron")).unwrap();
        loaded.apply_overrides(&[format!("losses={{{losses}}}")]).unwrap();
        plan(&loaded).unwrap_or_else(|e| panic!("{e}"))
    };
    let landmarks_only = cest(r#""landmark": 1.0, "regulariser": 1.0"#);
    assert_eq!(landmarks_only.unreached, ["`Illumination` (set by lighting) reaches no weighted loss: it keeps its initial value"]);
    assert_eq!(landmarks_only.dropped.iter().map(|d| d.name).collect::<Vec<_>>(), ["render_reflectance"]);
    let full = cest(r#""reflectance": 1.0, "landmark": 0.0147, "regulariser": 0.1"#);
    assert!(full.unreached.is_empty() && full.dropped.is_empty(), "{:?} {:?}", full.unreached, full.dropped);
    assert!(full.names().contains(&"render_reflectance_backward"));
}
