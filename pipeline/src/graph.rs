//! Scene → `bevy_ecs` `Schedule`. The graph is checked before anything runs: every system name
//! is known, every system's inputs are produced upstream (by the data, or by a system in an
//! earlier stage), every loss names a loss system, every output has its data.

use crate::scene::{DataSpec, LoadedScene, MeshFormat, SceneError};
use bevy_ecs::prelude::*;
use faceforge_systems::{DataName, Stage, SystemEntry};
use std::collections::BTreeSet;

/// Every system a scene can name: the stages of `faceforge_systems` and learn mode's.
pub fn registry() -> Vec<SystemEntry> {
    faceforge_systems::registry().into_iter().chain(faceforge_learn::registry()).collect()
}

/// Resources every run provides.
pub const RUN_RESOURCES: &[DataName] = &["Model", "Compute"];

/// What a data source puts on its frame entities.
pub fn data_provides(data: &DataSpec) -> &'static [DataName] {
    match data {
        DataSpec::Sampled(_) => &["Frame", "Subject", "Coeffs", "GroundTruth"],
        DataSpec::Synthetic(_) => &["Frame", "Subject", "Coeffs", "GroundTruth", "Image", "Landmarks2d", "Landmarks3d", "SkinMask"],
        DataSpec::Folder(_) => &["Frame", "Subject", "Coeffs", "Image", "Landmarks2d", "Crop"],
    }
}

/// One system of the checked graph, in run order.
#[derive(Debug)]
pub struct PlannedSystem {
    pub entry: SystemEntry,
    /// The scene's index of this system (for settings and messages).
    pub scene_index: usize,
}

/// A checked graph.
#[derive(Debug)]
pub struct Plan {
    pub systems: Vec<PlannedSystem>,
    /// Every data kind available after the last stage.
    pub available: BTreeSet<DataName>,
}

fn known_names(entries: &[SystemEntry]) -> String {
    entries.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

/// Checks the scene's graph and returns the systems in stage order.
pub fn plan(loaded: &LoadedScene) -> Result<Plan, SceneError> {
    let scene = &loaded.scene;
    let mut entries: Vec<Option<SystemEntry>> = registry().into_iter().map(Some).collect();
    let all = registry();
    let mut planned = Vec::new();
    let mut seen = BTreeSet::new();

    let mut take = |name: &str, scene_index: usize, needle: String| -> Result<PlannedSystem, SceneError> {
        if !seen.insert(name.to_string()) {
            return Err(loaded.error_at(&needle, format!("system `{name}` appears twice in the graph")));
        }
        let slot = entries.iter_mut().find(|e| e.as_ref().is_some_and(|e| e.name == name));
        match slot.and_then(Option::take) {
            Some(entry) => Ok(PlannedSystem { entry, scene_index }),
            None => Err(loaded.error_at(&needle, format!("unknown system `{name}`; known systems: {}", known_names(&all)))),
        }
    };
    for (i, spec) in scene.systems.iter().enumerate() {
        planned.push(take(&spec.name, i, format!("\"{}\"", spec.name))?);
    }
    for name in scene.losses.keys() {
        let system = format!("loss_{name}");
        let known: Vec<&str> = all.iter().filter(|e| e.stage == Stage::Loss).map(|e| e.name.trim_start_matches("loss_")).collect();
        if !all.iter().any(|e| e.name == system && e.stage == Stage::Loss) {
            let known = if known.is_empty() { "none yet".to_string() } else { known.join(", ") };
            return Err(loaded.error_at(&format!("\"{name}\""), format!("unknown loss `{name}`; known losses: {known}")));
        }
        if scene.systems.iter().any(|s| s.name == system) {
            continue; // listed under systems for its settings
        }
        planned.push(take(&system, usize::MAX, format!("\"{name}\""))?);
    }
    planned.sort_by_key(|p| p.entry.stage);

    // Walk the stages in order: a system may read what the data provides and what any system of
    // an earlier stage writes (systems of one stage run in parallel, so not each other's output).
    let mut available: BTreeSet<DataName> = data_provides(&scene.data).iter().chain(RUN_RESOURCES).copied().collect();
    if scene.learn.is_some() {
        available.insert("Learner");
    }
    for stage in Stage::ALL {
        let in_stage: Vec<&PlannedSystem> = planned.iter().filter(|p| p.entry.stage == stage).collect();
        for p in &in_stage {
            for read in p.entry.reads {
                if !available.contains(read) {
                    let producers: Vec<&str> = all.iter().filter(|e| e.writes.contains(read)).map(|e| e.name).collect();
                    let hint = if *read == "Learner" {
                        "; the network's systems run in learn mode: add a `learn: (...)` section and use `faceforge train`".to_string()
                    } else if producers.is_empty() {
                        String::new()
                    } else {
                        format!("; it is written by {}, add one of them upstream", producers.join(", "))
                    };
                    return Err(loaded.error_at(
                        &format!("\"{}\"", p.entry.name),
                        format!("system `{}` reads `{read}`, which no upstream system produces{hint}", p.entry.name),
                    ));
                }
            }
        }
        for p in in_stage {
            available.extend(p.entry.writes.iter().copied());
        }
    }

    if !scene.outputs.meshes.is_empty() && !available.contains("Mesh") {
        let format = if scene.outputs.meshes.contains(&MeshFormat::Obj) { "Obj" } else { "Ply" };
        return Err(loaded.error_at(format, "outputs ask for meshes, but no system produces `Mesh`; add `reconstruct` to systems".into()));
    }
    if (scene.outputs.images || scene.outputs.landmarks) && !available.contains("Rendered") {
        let key = if scene.outputs.images { "images" } else { "landmarks" };
        return Err(loaded.error_at(key, format!("outputs ask for {key}, but no system produces `Rendered`; add `render` to systems")));
    }
    if scene.iterations == 0 {
        return Err(loaded.error_at("iterations", "iterations must be at least 1".into()));
    }
    Ok(Plan { systems: planned, available })
}

/// An empty schedule whose stage sets run in `Stage` order (bevy applies each stage's commands
/// before the next stage reads them). Its systems run one after another on the calling thread:
/// the stages are a chain anyway, the heavy ops spread over the cores themselves (the compute
/// pool), and waking the multi-threaded executor's threads for every system cost more than a
/// landmark fit's whole iteration.
pub fn staged_schedule() -> Schedule {
    let mut schedule = Schedule::default();
    schedule.set_executor(bevy_ecs::schedule::SingleThreadedExecutor::new());
    for pair in Stage::ALL.windows(2) {
        schedule.configure_sets(pair[1].after(pair[0]));
    }
    schedule
}

/// Builds the schedule: one `SystemSet` per stage, chained in `Stage` order, each system
/// configured with its settings from the scene.
pub fn build_schedule(loaded: &LoadedScene, plan: &Plan) -> Result<Schedule, SceneError> {
    let mut schedule = staged_schedule();
    schedule.add_systems(faceforge_systems::clear_gradients.before(Stage::Encode));
    for p in &plan.systems {
        let settings = loaded.scene.systems.get(p.scene_index).and_then(|s| s.settings.as_deref()).map(|raw| raw.get_ron());
        let configs = (p.entry.build)(settings).map_err(|e| {
            loaded.error_at(&format!("\"{}\"", p.entry.name), format!("settings of system `{}`: {e}", p.entry.name))
        })?;
        schedule.add_systems(configs);
    }
    Ok(schedule)
}
