//! Checkpoints: everything a fit needs to go on as if never stopped — the scene as it ran, the
//! iteration, every free parameter (per frame and per subject, by name), the optimiser's moments
//! and learning-rate cut, and the loss history — in `checkpoint.json`, written atomically every
//! `outputs.checkpoint_every` iterations, on Ctrl-C and at the end. f32 values go through JSON
//! in their shortest round-trip form, so a resumed run continues bit for bit.

use crate::scene::{LoadedScene, Scene};
use anyhow::{bail, Context};
use bevy_ecs::entity::Entity;
use bevy_ecs::world::World;
use faceforge_components::{Coeffs, Frame, Illumination, Model, Moments, OptimizerState, PinholeParams, PoseParams, Subject};
use faceforge_model::atomic_write;
use faceforge_systems::adam::PARAMETER_KINDS;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const FILE: &str = "checkpoint.json";
const VERSION: u32 = 1;

/// The free parameters of one frame or subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    pub coeffs: Option<Coeffs>,
    pub pose: Option<PoseParams>,
    #[serde(default)]
    pub pinhole: Option<PinholeParams>,
    pub illumination: Option<Illumination>,
}

/// Adam's moments of one parameter vector, owned by a named frame or subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedMoments {
    /// `frame:NAME` or `subject:NAME`.
    pub owner: String,
    pub kind: String,
    pub moments: Moments,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// The scene file the run started from, and the scene as it ran (overrides applied).
    pub scene_file: String,
    pub scene: Scene,
    /// Iterations done: a resumed run starts at this one.
    pub iteration: u32,
    pub frames: BTreeMap<String, Parameters>,
    pub subjects: BTreeMap<String, Parameters>,
    pub moments: Vec<SavedMoments>,
    pub rescue: f32,
    pub loss_history: Vec<BTreeMap<String, f32>>,
}

/// Every named entity: frames as `frame:NAME`, subjects as `subject:NAME`.
fn owners(world: &mut World) -> HashMap<Entity, String> {
    let mut names: HashMap<Entity, String> = world.query::<(Entity, &Frame)>().iter(world).map(|(e, f)| (e, format!("frame:{}", f.name))).collect();
    names.extend(world.query::<(Entity, &Subject)>().iter(world).map(|(e, s)| (e, format!("subject:{}", s.name))));
    names
}

fn parameters(world: &World, entity: Entity) -> Parameters {
    Parameters {
        coeffs: world.get::<Coeffs>(entity).cloned(),
        pose: world.get::<PoseParams>(entity).cloned(),
        pinhole: world.get::<PinholeParams>(entity).cloned(),
        illumination: world.get::<Illumination>(entity).cloned(),
    }
}

/// The run's state after `iteration` iterations.
pub fn capture(world: &mut World, loaded: &LoadedScene, iteration: u32, loss_history: &[BTreeMap<String, f32>]) -> Checkpoint {
    let owners = owners(world);
    let (mut frames, mut subjects) = (BTreeMap::new(), BTreeMap::new());
    for (&entity, owner) in &owners {
        match owner.split_once(':') {
            Some(("frame", name)) => frames.insert(name.to_string(), parameters(world, entity)),
            Some((_, name)) => subjects.insert(name.to_string(), parameters(world, entity)),
            None => None,
        };
    }
    let state = world.resource::<OptimizerState>();
    let mut moments: Vec<SavedMoments> = state
        .moments
        .iter()
        .filter_map(|((entity, kind), m)| Some(SavedMoments { owner: owners.get(entity)?.clone(), kind: kind.to_string(), moments: m.clone() }))
        .collect();
    moments.sort_by(|a, b| (&a.owner, &a.kind).cmp(&(&b.owner, &b.kind)));
    Checkpoint {
        version: VERSION,
        scene_file: loaded.file.clone(),
        scene: loaded.scene.clone(),
        iteration,
        frames,
        subjects,
        moments,
        rescue: state.rescue,
        loss_history: loss_history.to_vec(),
    }
}

/// Writes `checkpoint.json` into `dir`, atomically.
pub fn save(dir: &Path, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    save_as(&dir.join(FILE), checkpoint)
}

/// Writes a checkpoint to `path`, atomically (one subject's, in a run over a folder).
pub fn save_as(path: &Path, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    atomic_write(path, serde_json::to_string(checkpoint)?.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Reads `dir/checkpoint.json`.
pub fn load(dir: &Path) -> anyhow::Result<Checkpoint> {
    let path = dir.join(FILE);
    std::fs::metadata(&path).with_context(|| format!("reading {}: is {} the output folder of a run?", path.display(), dir.display()))?;
    load_from(&path)
}

/// Reads a checkpoint file.
pub fn load_from(path: &Path) -> anyhow::Result<Checkpoint> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let checkpoint: Checkpoint = serde_json::from_str(&text).with_context(|| format!("{}: not a faceforge checkpoint", path.display()))?;
    if checkpoint.version != VERSION {
        bail!("{}: checkpoint version {} (this faceforge reads version {VERSION})", path.display(), checkpoint.version);
    }
    Ok(checkpoint)
}

/// Puts a checkpoint's parameters and optimiser state into a freshly prepared World (the same
/// scene, so the same frames and subjects by name).
pub fn restore(world: &mut World, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let by_name: HashMap<String, Entity> = owners(world).into_iter().map(|(e, n)| (n, e)).collect();
    let model = world.resource::<Model>().0.clone();
    let groups = [("frame", &checkpoint.frames), ("subject", &checkpoint.subjects)];
    for (kind, group) in groups {
        for (name, saved) in group {
            let owner = format!("{kind}:{name}");
            let entity = *by_name.get(&owner).with_context(|| format!("the checkpoint has {kind} `{name}`, which the scene's data no longer yields"))?;
            if let Some(c) = &saved.coeffs {
                let sizes = [("identity", c.id.len(), model.n_id()), ("expression", c.exp.len(), model.n_exp()), ("albedo", c.tex.len(), model.n_albedo())];
                // A subject holds only identity and albedo (its frames keep their expressions).
                if let Some((what, found, wanted)) = sizes.into_iter().find(|(w, found, wanted)| found != wanted && !(kind == "subject" && *w == "expression" && *found == 0)) {
                    bail!("the checkpoint's {kind} `{name}` has {found} {what} coefficients but the model {} has {wanted}: resume with the model the run started with", model.origin());
                }
            }
            let mut e = world.entity_mut(entity);
            if let Some(c) = &saved.coeffs {
                e.insert(c.clone());
            }
            if let Some(p) = &saved.pose {
                e.insert((p.clone(), p.pose()));
            }
            if let Some(p) = &saved.pinhole {
                e.insert((p.clone(), p.pose()));
            }
            if let Some(l) = &saved.illumination {
                e.insert(l.clone());
            }
        }
    }
    let mut state = OptimizerState { rescue: checkpoint.rescue, ..Default::default() };
    for saved in &checkpoint.moments {
        let entity = *by_name.get(&saved.owner).with_context(|| format!("the checkpoint's optimiser state names `{}`, which the scene's data no longer yields", saved.owner))?;
        let kind = PARAMETER_KINDS.iter().find(|k| **k == saved.kind).with_context(|| format!("the checkpoint's optimiser state has an unknown parameter kind `{}`", saved.kind))?;
        state.moments.insert((entity, kind), saved.moments.clone());
    }
    world.insert_resource(state);
    Ok(())
}
