//! Scene → `bevy_ecs` `Schedule`. A scene names the forward systems and the weighted losses; the
//! graph derives the rest:
//! - it checks that every system name is known and every system's inputs are produced upstream
//!   (by the data, or by a system of an earlier stage);
//! - it drops the forward systems whose outputs reach no weighted loss and no requested output;
//! - it inserts the adjoint of every forward system on a path from a free parameter (or the
//!   network) to a weighted loss, where a gradient actually arrives, in reverse stage order;
//! - it ends with the optimiser step: the scene's `optimizer` in fit mode, the network's step in
//!   learn mode.

use crate::scene::{DataSpec, LoadedScene, MeshFormat, Optimizer, SceneError};
use bevy_ecs::prelude::*;
use faceforge_components::{Albedo, Coeffs, Compute, Crop, Frame, GroundTruth, Image, Landmarks2d, Landmarks3d, Mesh, Model, Pose, Rendered, RenderedSwaps, SkinMask, Subject};
use faceforge_learn::learner::Learner;
use faceforge_systems::{data, DataName, Stage, SystemEntry};
use std::collections::BTreeSet;

/// Every system a scene can name: the stages of `faceforge_systems` and learn mode's.
pub fn registry() -> Vec<SystemEntry> {
    faceforge_systems::registry().into_iter().chain(faceforge_learn::registry()).collect()
}

/// Resources every run provides.
pub fn run_resources() -> Vec<DataName> {
    data![Model, Compute]
}

/// What a data source puts on its frame entities.
pub fn data_provides(data: &DataSpec) -> Vec<DataName> {
    match data {
        DataSpec::Sampled(_) => data![Frame, Subject, Coeffs, GroundTruth],
        DataSpec::Synthetic(_) => data![Frame, Subject, Coeffs, GroundTruth, Image, Landmarks2d, Landmarks3d, SkinMask],
        DataSpec::Folder(_) | DataSpec::Video(_) => data![Frame, Subject, Coeffs, Image, Landmarks2d, Crop],
    }
}

/// What a scene's frames carry: its data source's, and a training's mixed-in synthetic faces'.
pub fn scene_provides(scene: &crate::Scene) -> Vec<DataName> {
    let mut provided = data_provides(&scene.data);
    if let Some(mix) = scene.learn.as_ref().and_then(|l| l.synthetic.as_ref()) {
        provided.extend(data_provides(&DataSpec::Synthetic(mix.clone())).into_iter().filter(|d| !provided.contains(d)).collect::<Vec<_>>());
    }
    provided
}

/// What the run reads after its last iteration, beside the losses, and why: the per-frame
/// records, metrics and checkpoint always; the files the scene's `outputs` ask for.
pub fn requested_outputs(loaded: &LoadedScene) -> Vec<(DataName, &'static str)> {
    let outputs = &loaded.scene.outputs;
    let mut wanted: Vec<(DataName, &'static str)> = data![Coeffs, Pose, Mesh].into_iter().map(|d| (d, "the run's records and metrics")).collect();
    if !outputs.meshes.is_empty() {
        wanted.extend(data![Mesh, Albedo].into_iter().map(|d| (d, "outputs.meshes")));
    }
    if outputs.images {
        wanted.extend(data![Rendered, RenderedSwaps].into_iter().map(|d| (d, "outputs.images")));
    }
    if outputs.landmarks {
        wanted.push((DataName::of::<Rendered>(), "outputs.landmarks"));
    }
    if outputs.coefficients {
        wanted.push((DataName::of::<Rendered>(), "outputs.coefficients (the fitted 2D landmarks)"));
    }
    wanted
}

/// Why a system is in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named under `systems`.
    Scene,
    /// A weighted loss (`losses`), listed under `systems` or not.
    Loss,
    /// The adjoint the graph derived for this forward system.
    Adjoint(&'static str),
    /// The optimiser step the graph added.
    Step,
}

/// One system of the checked graph, in run order.
#[derive(Debug)]
pub struct PlannedSystem {
    pub entry: SystemEntry,
    pub origin: Origin,
    /// Its settings, as RON text.
    pub settings: Option<String>,
    /// Only the run's outputs read what it writes (no loss does): it runs once, after the last
    /// iteration, instead of in every one (e.g. `render` for the fitted landmarks of a landmark
    /// fit).
    pub after_last: bool,
}

/// A forward system the scene names that the graph left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub name: &'static str,
    pub stage: Stage,
    pub writes: Vec<DataName>,
    pub reason: String,
}

/// A checked graph.
#[derive(Debug)]
pub struct Plan {
    /// In run order: forward stages, losses, adjoints (reverse stage order), the step.
    pub systems: Vec<PlannedSystem>,
    pub dropped: Vec<Dropped>,
    /// Free parameters that no weighted loss reaches: they keep their initial values.
    pub unreached: Vec<String>,
    /// Every data kind available after the last stage.
    pub available: BTreeSet<DataName>,
}

impl Plan {
    /// The systems' names in run order.
    pub fn names(&self) -> Vec<&'static str> {
        self.systems.iter().map(|p| p.entry.name).collect()
    }
}

/// A registry entry by name.
fn take(all: &[SystemEntry], name: &str) -> Option<SystemEntry> {
    all.iter().find(|e| e.name == name).cloned()
}

fn known_names(entries: &[SystemEntry]) -> String {
    entries.iter().filter(|e| !e.stage.is_adjoint() && e.stage != Stage::Step).map(|e| e.name).collect::<Vec<_>>().join(", ")
}

fn list(names: &[DataName]) -> String {
    names.iter().map(DataName::short).collect::<Vec<_>>().join(", ")
}

/// Checks the scene's graph, derives its adjoints and step, and returns the systems in run order.
pub fn plan(loaded: &LoadedScene) -> Result<Plan, SceneError> {
    let scene = &loaded.scene;
    let all = registry();
    let mut planned: Vec<PlannedSystem> = Vec::new();
    let mut keep: BTreeSet<&'static str> = BTreeSet::new();

    for spec in &scene.systems {
        let needle = format!("\"{}\"", spec.name);
        let Some(entry) = take(&all, &spec.name) else {
            return Err(loaded.error_at(&needle, format!("unknown system `{}`; known systems: {}", spec.name, known_names(&all))));
        };
        if let Some(forward) = all.iter().find(|e| e.adjoint == Some(entry.name)) {
            return Err(loaded.error_at(
                &needle,
                format!("`{}` is no longer needed: the graph inserts the adjoint of `{}` where a gradient flows; remove it from systems", entry.name, forward.name),
            ));
        }
        if entry.stage == Stage::Step {
            return Err(loaded.error_at(
                &needle,
                format!("`{}` is no longer needed: the step is the scene's `optimizer: Adam(lr: …, halve_every: …)` (fit mode) or the `learn:` section's rate", entry.name),
            ));
        }
        if planned.iter().any(|p| p.entry.name == entry.name) {
            return Err(loaded.error_at(&needle, format!("system `{}` appears twice in the graph", spec.name)));
        }
        if spec.keep {
            keep.insert(entry.name);
        }
        let origin = if entry.stage == Stage::Loss { Origin::Loss } else { Origin::Scene };
        planned.push(PlannedSystem { entry, origin, settings: spec.settings.as_deref().map(|raw| raw.get_ron().to_string()), after_last: false });
    }
    for name in scene.losses.keys() {
        let system = format!("loss_{name}");
        if !all.iter().any(|e| e.name == system && e.stage == Stage::Loss) {
            let known: Vec<&str> = all.iter().filter(|e| e.stage == Stage::Loss).map(|e| e.name.trim_start_matches("loss_")).collect();
            return Err(loaded.error_at(&format!("\"{name}\""), format!("unknown loss `{name}`; known losses: {}", known.join(", "))));
        }
        if !planned.iter().any(|p| p.entry.name == system) {
            planned.push(PlannedSystem { entry: take(&all, &system).expect("checked above"), origin: Origin::Loss, settings: None, after_last: false });
        }
    }
    planned.sort_by_key(|p| p.entry.stage);

    let available = check_inputs(loaded, &planned, &all)?;
    check_outputs(loaded, &available)?;
    if scene.iterations == 0 {
        return Err(loaded.error_at("iterations", "iterations must be at least 1".into()));
    }
    let dropped = drop_unused(loaded, &mut planned, &keep);
    if scene.learn.is_none() && !scene.losses.is_empty() {
        mark_after_last(&mut planned, &keep);
    }

    // The step and the parameters it moves: the network in learn mode, the fitted parameters
    // (Adam's writes) in fit mode.
    let step = match (&scene.learn, &scene.optimizer) {
        (_, Some(Optimizer::NoStep)) => None,
        (Some(_), Some(Optimizer::Adam(_))) => {
            return Err(loaded.error_at("optimizer", "learn mode steps the network at `learn.learning_rate`; remove `optimizer`".into()))
        }
        (Some(_), None) => Some(PlannedSystem { entry: take(&all, "encoder_step").expect("learn's registry has the step"), origin: Origin::Step, settings: None, after_last: false }),
        (None, optimizer) if !scene.losses.is_empty() => {
            let settings = match optimizer {
                Some(Optimizer::Adam(s)) => Some(ron::to_string(s).map_err(|e| loaded.error_at("optimizer", e.to_string()))?),
                _ => None,
            };
            Some(PlannedSystem { entry: take(&all, "adam").expect("the registry has adam"), origin: Origin::Step, settings, after_last: false })
        }
        (None, _) => None,
    };
    let parameters: Vec<DataName> = match scene.learn {
        Some(_) => data![Learner],
        None => take(&all, "adam").expect("the registry has adam").writes,
    };
    let (adjoints, live) = derive_adjoints(&all, &planned, &parameters);
    let unreached = unreached_parameters(loaded, &planned, &dropped, &parameters, &live);
    planned.extend(adjoints);
    planned.extend(step);
    planned.sort_by_key(|p| p.entry.stage);
    Ok(Plan { systems: planned, dropped, unreached, available })
}

/// Walks the stages in order: a system may read what the data provides and what any system of an
/// earlier stage writes (systems of one stage run in parallel, so not each other's output).
fn check_inputs(loaded: &LoadedScene, planned: &[PlannedSystem], all: &[SystemEntry]) -> Result<BTreeSet<DataName>, SceneError> {
    let scene = &loaded.scene;
    let mut available: BTreeSet<DataName> = scene_provides(scene).into_iter().chain(run_resources()).collect();
    let learner = DataName::of::<Learner>();
    if scene.learn.is_some() {
        available.insert(learner);
    }
    for stage in Stage::ALL {
        let in_stage: Vec<&PlannedSystem> = planned.iter().filter(|p| p.entry.stage == stage).collect();
        for p in &in_stage {
            for read in &p.entry.reads {
                if available.contains(read) {
                    continue;
                }
                let producers: Vec<&str> = all.iter().filter(|e| e.writes.contains(read)).map(|e| e.name).collect();
                let hint = if *read == learner {
                    "; the network's systems run in learn mode: add a `learn: (...)` section and use `faceforge train`".to_string()
                } else if producers.is_empty() {
                    String::new()
                } else {
                    format!("; it is written by {}, add one of them upstream", producers.join(", "))
                };
                return Err(loaded.error_at(&format!("\"{}\"", p.entry.name), format!("system `{}` reads `{read}`, which no upstream system produces{hint}", p.entry.name)));
            }
        }
        for p in in_stage {
            available.extend(p.entry.writes.iter().copied());
        }
    }
    Ok(available)
}

fn check_outputs(loaded: &LoadedScene, available: &BTreeSet<DataName>) -> Result<(), SceneError> {
    let outputs = &loaded.scene.outputs;
    if !outputs.meshes.is_empty() && !available.contains(&DataName::of::<Mesh>()) {
        let format = if outputs.meshes.contains(&MeshFormat::Obj) { "Obj" } else { "Ply" };
        return Err(loaded.error_at(format, "outputs ask for meshes, but no system produces `Mesh`; add `reconstruct` to systems".into()));
    }
    if (outputs.images || outputs.landmarks) && !available.contains(&DataName::of::<Rendered>()) {
        let key = if outputs.images { "images" } else { "landmarks" };
        return Err(loaded.error_at(key, format!("outputs ask for {key}, but no system produces `Rendered`; add `render` to systems")));
    }
    Ok(())
}

/// Drops, last stage first, the forward systems none of whose outputs a kept system, a loss or
/// the run's outputs read (a system the scene marks `keep: true` stays).
fn drop_unused(loaded: &LoadedScene, planned: &mut Vec<PlannedSystem>, keep: &BTreeSet<&'static str>) -> Vec<Dropped> {
    let mut needed: BTreeSet<DataName> = requested_outputs(loaded).into_iter().map(|(d, _)| d).collect();
    let mut dropped = Vec::new();
    let mut kept = vec![true; planned.len()];
    for (i, p) in planned.iter().enumerate().rev() {
        let e = &p.entry;
        let used = p.origin == Origin::Loss || keep.contains(e.name) || e.writes.iter().any(|w| needed.contains(w));
        if used {
            needed.extend(e.reads.iter().chain(&e.reads_if_present).copied());
        } else {
            kept[i] = false;
            dropped.push(Dropped { name: e.name, stage: e.stage, writes: e.writes.clone(), reason: format!("nothing reads {}", list(&e.writes)) });
        }
    }
    let mut flags = kept.into_iter();
    planned.retain(|_| flags.next().unwrap_or(true));
    dropped.reverse();
    dropped
}

/// Marks the forward systems that no loss needs, directly or through a later system (and that
/// the scene does not `keep`): only the outputs read them, so they run once after the last
/// iteration.
fn mark_after_last(planned: &mut [PlannedSystem], keep: &BTreeSet<&'static str>) {
    let mut needed: BTreeSet<DataName> = BTreeSet::new();
    for p in planned.iter_mut().rev() {
        let e = &p.entry;
        if p.origin == Origin::Loss || keep.contains(e.name) || e.writes.iter().any(|w| needed.contains(w)) {
            needed.extend(e.reads.iter().chain(&e.reads_if_present).copied());
        } else {
            p.after_last = true;
        }
    }
}

/// The adjoints a gradient flows through, last forward stage first: a forward system's adjoint
/// joins when the system depends on a free parameter and a loss or a later adjoint writes a
/// gradient its adjoint reads. Returns them and every gradient that flows.
fn derive_adjoints(all: &[SystemEntry], planned: &[PlannedSystem], parameters: &[DataName]) -> (Vec<PlannedSystem>, BTreeSet<DataName>) {
    // Forward: which systems' inputs depend on a free parameter.
    let mut depends: BTreeSet<DataName> = parameters.iter().copied().collect();
    let mut dependent = BTreeSet::new();
    for p in planned.iter().filter(|p| p.origin != Origin::Loss) {
        if p.entry.reads.iter().chain(&p.entry.reads_if_present).any(|r| depends.contains(r)) {
            dependent.insert(p.entry.name);
            depends.extend(p.entry.writes.iter().copied());
        }
    }
    // Backward: the gradients the losses write, carried back through the adjoints.
    let mut live: BTreeSet<DataName> = planned.iter().filter(|p| p.origin == Origin::Loss).flat_map(|p| p.entry.writes.iter().copied()).filter(DataName::is_gradient).collect();
    let mut adjoints = Vec::new();
    for p in planned.iter().rev().filter(|p| dependent.contains(p.entry.name)) {
        let Some(adjoint) = p.entry.adjoint.and_then(|name| take(all, name)) else { continue };
        if adjoint.reads.iter().chain(&adjoint.reads_if_present).any(|r| live.contains(r)) {
            live.extend(adjoint.writes.iter().copied());
            adjoints.push(PlannedSystem { entry: adjoint, origin: Origin::Adjoint(p.entry.name), settings: None, after_last: false });
        }
    }
    (adjoints, live)
}

/// The free parameters present (from the data or a system the scene names) whose gradient no
/// loss reaches (the network is reached when its adjoint runs).
fn unreached_parameters(loaded: &LoadedScene, planned: &[PlannedSystem], dropped: &[Dropped], parameters: &[DataName], live: &BTreeSet<DataName>) -> Vec<String> {
    if loaded.scene.losses.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for p in parameters {
        let reached = live.contains(p) || live.iter().any(|g| g.short() == format!("Grad<{p}>"));
        let set_by: Vec<String> = planned
            .iter()
            .filter(|s| s.origin == Origin::Scene && s.entry.writes.contains(p))
            .map(|s| s.entry.name.to_string())
            .chain(dropped.iter().filter(|d| d.writes.contains(p)).map(|d| format!("{} (dropped)", d.name)))
            .collect();
        let present = scene_provides(&loaded.scene).contains(p) || !set_by.is_empty();
        if present && !reached {
            let from = if set_by.is_empty() { String::new() } else { format!(" (set by {})", set_by.join(", ")) };
            out.push(format!("`{p}`{from} reaches no weighted loss: it keeps its initial value"));
        }
    }
    out
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

/// Builds an iteration's schedule: one `SystemSet` per stage, chained in `Stage` order, each
/// system configured with its settings (all but those that run after the last iteration).
pub fn build_schedule(loaded: &LoadedScene, plan: &Plan) -> Result<Schedule, SceneError> {
    let mut schedule = staged_schedule();
    schedule.add_systems(faceforge_systems::clear_gradients.before(Stage::Encode));
    add_systems(loaded, plan.systems.iter().filter(|p| !p.after_last), &mut schedule)?;
    Ok(schedule)
}

/// The schedule of the systems that run once after the last iteration, if any.
pub fn build_after_last(loaded: &LoadedScene, plan: &Plan) -> Result<Option<Schedule>, SceneError> {
    if !plan.systems.iter().any(|p| p.after_last) {
        return Ok(None);
    }
    let mut schedule = staged_schedule();
    add_systems(loaded, plan.systems.iter().filter(|p| p.after_last), &mut schedule)?;
    Ok(Some(schedule))
}

fn add_systems<'a>(loaded: &LoadedScene, systems: impl Iterator<Item = &'a PlannedSystem>, schedule: &mut Schedule) -> Result<(), SceneError> {
    for p in systems {
        let configs = (p.entry.build)(p.settings.as_deref()).map_err(|e| {
            let (needle, what) = match p.origin {
                Origin::Step => ("optimizer".to_string(), "optimizer".to_string()),
                _ => (format!("\"{}\"", p.entry.name), format!("settings of system `{}`", p.entry.name)),
            };
            loaded.error_at(&needle, format!("{what}: {e}"))
        })?;
        schedule.add_systems(configs);
    }
    Ok(())
}

/// The dropped systems and the parameters no loss reaches, one line each.
pub fn notes(plan: &Plan) -> String {
    let dropped = plan.dropped.iter().map(|d| format!("dropped {}: {}\n", d.name, d.reason));
    let unreached = plan.unreached.iter().map(|u| format!("note: {u}\n"));
    dropped.chain(unreached).collect()
}

/// The derived graph as text, stage by stage (forward, losses, adjoints, step): each system with
/// what it reads and writes and why it is there; the dropped systems and the parameters no loss
/// reaches after. For `faceforge check --graph`.
pub fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    for stage in Stage::ALL {
        let here: Vec<&PlannedSystem> = plan.systems.iter().filter(|p| p.entry.stage == stage).collect();
        let gone: Vec<&Dropped> = plan.dropped.iter().filter(|d| d.stage == stage).collect();
        if here.is_empty() && gone.is_empty() {
            continue;
        }
        out.push_str(&format!("{stage:?}\n"));
        for p in here {
            let why = match p.origin {
                Origin::Scene if p.after_last => "  [once, after the last iteration: only the outputs read it]".into(),
                Origin::Scene => String::new(),
                Origin::Loss => "  [loss]".into(),
                Origin::Adjoint(of) => format!("  [adjoint of {of}]"),
                Origin::Step => "  [step]".into(),
            };
            let reads: Vec<DataName> = p.entry.reads.iter().copied().chain(p.entry.reads_if_present.iter().copied()).collect();
            out.push_str(&format!("  {:<30} reads {}  →  writes {}{why}\n", p.entry.name, list(&reads), list(&p.entry.writes)));
        }
        for d in gone {
            out.push_str(&format!("  {:<30} dropped: {}\n", d.name, d.reason));
        }
    }
    out.extend(plan.unreached.iter().map(|u| format!("note: {u}\n")));
    out
}

/// The derived graph drawn as an inline SVG for the run's report: a row per stage, a box per
/// system (forward blue, losses orange, adjoints red, the step grey, dropped systems dashed), an
/// edge from each system to the systems that read what it writes (gradients in red). Hovering a
/// box or an edge shows what it reads and writes or carries.
pub fn svg(plan: &Plan) -> String {
    use crate::report::svg::escape;
    use std::fmt::Write;
    const ROW: f32 = 62.0;
    const LABEL: f32 = 190.0;
    const BOX_W: f32 = 184.0;
    const BOX_H: f32 = 28.0;
    const GAP: f32 = 14.0;
    const TOP: f32 = 40.0;
    // (name, fill, stroke, dashed, tooltip) per box, a row per stage that has any.
    let rows: Vec<(Stage, Vec<(&str, &str, &str, bool, String)>)> = Stage::ALL
        .iter()
        .map(|&stage| {
            let planned = plan.systems.iter().filter(|p| p.entry.stage == stage).map(|p| {
                let (fill, stroke) = match p.origin {
                    Origin::Scene => ("#dbe6f1", "#4e79a7"),
                    Origin::Loss => ("#fde3c8", "#f28e2b"),
                    Origin::Adjoint(_) => ("#f8d3d4", "#e15759"),
                    Origin::Step => ("#eeeeee", "#79706e"),
                };
                let reads: Vec<DataName> = p.entry.reads.iter().chain(&p.entry.reads_if_present).copied().collect();
                let when = if p.after_last { " (once, after the last iteration)" } else { "" };
                (p.entry.name, fill, stroke, false, format!("{}{when}: reads {}; writes {}", p.entry.name, list(&reads), list(&p.entry.writes)))
            });
            let dropped = plan.dropped.iter().filter(|d| d.stage == stage).map(|d| (d.name, "#ffffff", "#9a9a9a", true, format!("{}: dropped, {}", d.name, d.reason)));
            (stage, planned.chain(dropped).collect::<Vec<_>>())
        })
        .filter(|(_, boxes)| !boxes.is_empty())
        .collect();
    let widest = rows.iter().map(|(_, b)| b.len()).max().unwrap_or(1) as f32;
    let width = (LABEL + widest * (BOX_W + GAP) + GAP).max(760.0);
    let height = TOP + rows.len() as f32 * ROW + 10.0;
    // Box centres by system name.
    let mut at = std::collections::HashMap::new();
    for (r, (_, boxes)) in rows.iter().enumerate() {
        let span = boxes.len() as f32 * (BOX_W + GAP) - GAP;
        let x0 = LABEL + (width - LABEL - span) / 2.0;
        for (i, b) in boxes.iter().enumerate() {
            at.insert(b.0, (x0 + i as f32 * (BOX_W + GAP) + BOX_W / 2.0, TOP + r as f32 * ROW + BOX_H / 2.0));
        }
    }
    let mut out = String::new();
    let _ = write!(out, r#"<svg class="graph" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#);
    let legend = [("forward", "#dbe6f1", "#4e79a7"), ("loss", "#fde3c8", "#f28e2b"), ("adjoint", "#f8d3d4", "#e15759"), ("step", "#eeeeee", "#79706e"), ("dropped", "#ffffff", "#9a9a9a")];
    for (i, (name, fill, stroke)) in legend.iter().enumerate() {
        let x = 10.0 + i as f32 * 110.0;
        let _ = write!(out, r#"<rect x="{x}" y="8" width="16" height="12" fill="{fill}" stroke="{stroke}"/><text x="{}" y="18">{name}</text>"#, x + 22.0);
    }
    // Edges first, under the boxes: from the last earlier-stage writer of each thing a system
    // reads; into the adjoints and the step, only the gradients (the forward values they also
    // read would cross the whole picture).
    for p in &plan.systems {
        let mut from: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        let backward = p.entry.stage > Stage::Loss;
        for d in p.entry.reads.iter().chain(&p.entry.reads_if_present).filter(|d| !backward || d.is_gradient()) {
            // A gradient adds up from every earlier writer; a value is the last one's.
            let writers = plan.systems.iter().filter(|w| w.entry.stage < p.entry.stage && w.entry.writes.contains(d));
            let last = writers.clone().map(|w| w.entry.stage).max();
            for w in writers.filter(|w| d.is_gradient() || Some(w.entry.stage) == last) {
                from.entry(w.entry.name).or_default().push(d.short());
            }
        }
        let Some(&(x1, y1)) = at.get(p.entry.name) else { continue };
        for (source, carried) in from {
            let (x0, y0) = at[source];
            let colour = if p.entry.stage > Stage::Loss { "#e15759" } else { "#8c8c8c" };
            let (ya, yb) = (y0 + BOX_H / 2.0, y1 - BOX_H / 2.0);
            let bend = ((yb - ya) / 2.0).max(20.0);
            let _ = write!(
                out,
                r#"<path d="M{x0:.1},{ya:.1} C{x0:.1},{:.1} {x1:.1},{:.1} {x1:.1},{yb:.1}" fill="none" stroke="{colour}" stroke-opacity="0.55" stroke-width="1.3"><title>{} → {}: {}</title></path>"#,
                ya + bend,
                yb - bend,
                source,
                p.entry.name,
                escape(&carried.join(", "))
            );
        }
    }
    for (r, (stage, boxes)) in rows.iter().enumerate() {
        let y = TOP + r as f32 * ROW;
        let _ = write!(out, r##"<text x="10" y="{:.1}" fill="#555">{stage:?}</text>"##, y + BOX_H / 2.0 + 4.0);
        for (name, fill, stroke, dashed, tip) in boxes {
            let (cx, _) = at[name];
            let dash = if *dashed { r#" stroke-dasharray="4 3""# } else { "" };
            let colour = if *dashed { "#9a9a9a" } else { "#222" };
            let _ = write!(
                out,
                r#"<g><title>{}</title><rect x="{:.1}" y="{y:.1}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" stroke="{stroke}"{dash}/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="{colour}">{name}</text></g>"#,
                escape(tip),
                cx - BOX_W / 2.0,
                y + BOX_H / 2.0 + 4.0
            );
        }
    }
    out.push_str("</svg>");
    out
}
