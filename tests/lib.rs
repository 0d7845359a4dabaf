//! Shared helpers for the end-to-end tests.

use faceforge::LoadedScene;
use std::path::{Path, PathBuf};

/// The repository's `scenes/` folder.
pub fn scenes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes")
}

/// The repository's `examples/` folder (the example portraits).
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
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

/// The frames' entities in name order (`s000_f000`, `s000_f001`, …: by subject, then index).
pub fn frames_by_name(world: &mut bevy_ecs::world::World) -> Vec<bevy_ecs::entity::Entity> {
    let mut q = world.query::<(bevy_ecs::entity::Entity, &faceforge_components::Frame)>();
    let mut rows: Vec<(String, bevy_ecs::entity::Entity)> = q.iter(world).map(|(e, f)| (f.name.clone(), e)).collect();
    rows.sort();
    rows.into_iter().map(|r| r.1).collect()
}

/// A scene of `scenes/` with `overrides`, writing into `out`.
pub fn scene_into(file: &str, overrides: &[String], out: &Path) -> LoadedScene {
    let mut loaded = LoadedScene::load(&scenes_dir().join(file)).unwrap();
    let mut all = overrides.to_vec();
    all.push(format!("outputs.dir={:?}", out.display().to_string()));
    loaded.apply_overrides(&all).unwrap();
    loaded
}

/// A sweep of `scenes/` with `overrides` for every variant, writing into `out`.
pub fn sweep_into(file: &str, overrides: &[String], out: &Path) -> faceforge::scene::sweep::Table {
    let mut all = overrides.to_vec();
    all.push(format!("sweep.out={}", out.display()));
    faceforge::scene::sweep::sweep(&scenes_dir().join(file), &all, false).unwrap()
}

/// A tiny network on 32-pixel AFLW-like faces of the tiny model, with the given graph.
/// A tiny learn-mode scene; `step: false` leaves the gradients unapplied (gradient checks).
pub fn tiny_scene(systems: &str, losses: &str, learn: &str, step: bool, out: &Path) -> LoadedScene {
    scene(
        &format!(
            r#"Scene(
            seed: 5,
            data: Synthetic(preset: AflwLike, subjects: 3, frames: 1, size: 32, seed: 5, landmark_noise: 0.5),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [{systems}],
            losses: {{{losses}}},
            {optimizer}
            iterations: 8,
            outputs: (dir: {out:?}, checkpoint_every: 0),
            learn: (network: (input: 32, width: 2, hidden: 8, seed: 2), {learn}),
        )"#,
            out = out.display().to_string(),
            optimizer = if step { "" } else { "optimizer: NoStep," },
        ),
        "tiny_learn.ron",
    )
}
