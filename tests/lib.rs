//! Shared helpers for the end-to-end tests.

use faceforge::LoadedScene;
use std::path::{Path, PathBuf};

/// The repository's `scenes/` folder.
pub fn scenes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes")
}

/// A scene from text, as if read from `name`.
pub fn scene(text: &str, name: &str) -> LoadedScene {
    LoadedScene::from_str(text, name).unwrap_or_else(|e| panic!("{e}"))
}

/// The quickstart scene on the tiny model at 64 px for 60 iterations, writing into `out`.
pub fn quickstart_into(out: &Path) -> LoadedScene {
    let mut loaded = LoadedScene::load(&scenes_dir().join("quickstart.ron")).unwrap();
    loaded
        .apply_overrides(&[
            format!("outputs.dir={:?}", out.display().to_string()),
            "model.Procedural.preset=Tiny".to_string(),
            "backend=Cpu".to_string(),
            "data.Synthetic.size=64".to_string(),
            "iterations=60".to_string(),
        ])
        .unwrap();
    loaded
}
