//! The derived graph: every scene of `scenes/` at its CI size gives the final losses it gave when
//! its graph was written by hand (recorded in `data/graph_before.json` before the graph derived
//! its adjoints), and every sweep variant's graph is the hand-written one.

use faceforge::graph::plan;
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
        faceforge::scene::DataSpec::Sampled(_) => {}
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
        faceforge::train::train(&loaded, &options, false).unwrap_or_else(|e| panic!("{}: {e:#}", path.display())).losses
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
        if faceforge::sweep::is_sweep(&path) {
            let sweep = faceforge::sweep::load(&path).unwrap();
            let base = LoadedScene::load(&path.parent().unwrap().join(&sweep.base)).unwrap();
            for v in &sweep.variants {
                let scene = faceforge::sweep::variant_scene(&base, &sweep, v, &[]).unwrap();
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
