//! `faceforge run`: scene → checked graph → World → schedule × iterations → outputs.

pub mod checkpoint;
pub mod clock;
pub mod data;
pub mod detect;
pub mod infer;
pub mod merge;
pub mod real_data;
pub mod reconstruct;
pub mod shard;
pub mod subjects;
pub mod train;
pub mod windows;

use crate::io::inputs::Skipped;
use crate::scene::graph::{build_after_last, build_schedule, plan};
use crate::io::outputs::{landmarks_2d, landmarks_3d, mtl_text, overlay, png_bytes, pts_text, write_obj, write_ply, MeshView};
use faceforge_systems::unwrap::{unwrap as unwrap_texture, Unseen};
use crate::scene::{LoadedScene, MeshFormat, ModelSource};
use anyhow::{bail, Context};
use bevy_ecs::world::World;
use faceforge_components::{Albedo, Coeffs, Compute, Crop, DenseLandmarks, Frame, Image, Iteration, Landmarks2d, LossTerms, LossWeights, Mesh, Model, OptimizerState, Pose, Rendered, RenderedSwaps};
use crate::eval::metrics::{measure, RunMetrics};
use crate::report::{error_map, heat_map_max, heat_map_png, run_html, run_markdown, FrameImages, LossHistory, RunReport, MAX_FRAME_STRIPS};
use faceforge_kernels::Backend;
use faceforge_model::{atomic_write, MorphableModel};
use faceforge_systems::StageErrors;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What a finished run reports (also written as `run.json` in the output folder).
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub scene: String,
    pub backend: String,
    pub model: String,
    pub frames: usize,
    /// Inputs left out, with the reason; the run went on without them.
    pub skipped: Vec<Skipped>,
    pub iterations: u32,
    pub seconds: f64,
    pub losses: BTreeMap<String, f32>,
    /// Against the synthetic ground truth, when the data has it and a mesh was fitted.
    pub metrics: Option<RunMetrics>,
    pub out_dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// Every iteration's loss terms (also written as `losses.csv`).
    #[serde(skip)]
    pub loss_history: LossHistory,
    /// The process's peak resident memory so far (MB; Linux), when the run ended.
    pub peak_memory_mb: Option<f64>,
    /// A clip fitted in windows: how (absent when every frame was fitted at once).
    pub windows: Option<WindowsDone>,
    /// The part of a sharded run this folder holds (absent: not sharded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<shard::Shard>,
    /// Shards merged into this folder: each one, and the shards and subjects missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<merge::Merged>,
}

/// How a run fitted its clips in windows.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WindowsDone {
    pub windows: usize,
    pub frames: u32,
    pub overlap: u32,
    /// The most frames one window's World held (the run's memory is bounded by it).
    pub most_held: usize,
}

/// A memory size for the report, "–" when unknown.
pub fn megabytes(mb: Option<f64>) -> String {
    mb.map_or("–".into(), |mb| format!("{mb:.0} MB"))
}

/// The process's peak resident set size in MB (`VmHWM` of /proc/self/status), on Linux.
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Loads the scene's model.
pub fn load_model(source: &ModelSource) -> anyhow::Result<MorphableModel> {
    Ok(match source {
        ModelSource::Procedural(spec) => MorphableModel::generate(spec),
        ModelSource::File(path) => MorphableModel::open(path)?,
    })
}

/// A scene ready to run: its World (frames spawned, resources inserted) and its schedule.
pub struct Prepared {
    pub world: World,
    pub schedule: bevy_ecs::schedule::Schedule,
    /// The systems only the outputs need, run once after the last iteration (`finish_fit`).
    pub after_last: Option<bevy_ecs::schedule::Schedule>,
    pub model: Arc<MorphableModel>,
    pub backend: Backend,
    pub frames: usize,
    /// Inputs left out (unreadable images, images without landmarks), with the reason.
    pub skipped: Vec<Skipped>,
    /// The derived graph, drawn for the report (SVG).
    pub graph: String,
}

/// A World with the resources every run's systems read (no frames yet).
pub fn new_world(model: &Arc<MorphableModel>, backend: &Backend, losses: &BTreeMap<String, f32>) -> World {
    let mut world = World::new();
    world.insert_resource(Model(model.clone()));
    world.insert_resource(Compute(backend.clone()));
    world.init_resource::<StageErrors>();
    world.init_resource::<LossTerms>();
    world.init_resource::<OptimizerState>();
    world.insert_resource(LossWeights(losses.clone()));
    world.init_resource::<Iteration>();
    world
}

/// Checks the scene, loads its model, picks the backend and feeds the World.
pub fn prepare(loaded: &LoadedScene) -> anyhow::Result<Prepared> {
    prepare_with_model(loaded, Arc::new(load_model(&loaded.scene.model)?))
}

/// `prepare` with the scene's model already loaded (by a caller that needed it first).
pub fn prepare_with_model(loaded: &LoadedScene, model: Arc<MorphableModel>) -> anyhow::Result<Prepared> {
    let scene = &loaded.scene;
    let plan = plan(loaded)?;
    let (schedule, after_last) = (build_schedule(loaded, &plan)?, build_after_last(loaded, &plan)?);

    let backend = Backend::select(scene.backend)?;
    tracing::info!("backend: {}", backend.describe());
    tracing::info!(
        "model: {} ({} vertices, {} triangles, {} identity / {} expression / {} albedo components)",
        model.origin(),
        model.n_vertices(),
        model.n_triangles(),
        model.n_id(),
        model.n_exp(),
        model.n_albedo()
    );

    let mut world = new_world(&model, &backend, &scene.losses);
    let (frames, skipped) = data::populate(&mut world, &scene.data, &model, &backend, scene.seed)?;
    tracing::info!("{frames} frames ({} inputs skipped), {} systems, {} iterations", skipped.len(), plan.systems.len(), scene.iterations);
    Ok(Prepared { world, schedule, after_last, model, backend, frames, skipped, graph: crate::scene::graph::svg(&plan) })
}

/// After the last iteration: the whole meshes (a landmark fit decoded only the landmark
/// vertices) and the systems only the outputs need.
pub fn finish_fit(p: &mut Prepared) -> anyhow::Result<()> {
    faceforge_systems::reconstruct::decode_full_meshes(&mut p.world).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(schedule) = &mut p.after_last {
        schedule.run(&mut p.world);
        let errors = std::mem::take(&mut p.world.resource_mut::<StageErrors>().0);
        if let Some(first) = errors.first() {
            bail!("after the last iteration: {first}");
        }
    }
    Ok(())
}

/// Runs the schedule `iterations` times, stopping at the first error a system reports; returns
/// every iteration's loss terms.
pub fn iterate(p: &mut Prepared, iterations: u32, show_progress: bool) -> anyhow::Result<LossHistory> {
    let history = iterate_with(p, 0..iterations, show_progress, LossHistory::default(), |_, _, _| Ok(false))?.0;
    finish_fit(p)?;
    Ok(history)
}

/// The progress bar of runs and trainings (hidden unless asked for), at `start` of `len`.
pub(crate) fn progress_bar(show: bool, len: u32, start: u32) -> ProgressBar {
    let bar = if show { ProgressBar::new(len as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}").expect("valid template").progress_chars("=> "));
    bar.set_position(start as u64);
    bar
}

/// Runs the iterations of `range`, appending to `history`; after each one, `after(world,
/// iterations done, history)` may save state and ask to stop (`Ok(true)`). Returns the history
/// and whether it stopped early.
pub fn iterate_with(
    p: &mut Prepared,
    range: std::ops::Range<u32>,
    show_progress: bool,
    mut history: LossHistory,
    mut after: impl FnMut(&mut World, u32, &LossHistory) -> anyhow::Result<bool>,
) -> anyhow::Result<(LossHistory, bool)> {
    let bar = progress_bar(show_progress, range.end, range.start);
    for it in range {
        p.world.resource_mut::<Iteration>().0 = it;
        p.schedule.run(&mut p.world);
        let errors = std::mem::take(&mut p.world.resource_mut::<StageErrors>().0);
        if let Some(first) = errors.first() {
            bar.abandon();
            bail!("iteration {it}: {first}{}", if errors.len() > 1 { format!(" (and {} more)", errors.len() - 1) } else { String::new() });
        }
        let terms = &p.world.resource::<LossTerms>().terms;
        history.0.push(terms.clone());
        if !terms.is_empty() {
            let text: Vec<String> = terms.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            bar.set_message(format!("loss {:.4} ({})", terms.values().sum::<f32>(), text.join(", ")));
        }
        bar.inc(1);
        if after(&mut p.world, it + 1, &history)? {
            bar.abandon();
            return Ok((history, true));
        }
    }
    bar.finish();
    Ok((history, false))
}

/// How a run treats its output folder and when it stops.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub progress: bool,
    /// Write into a folder that holds a previous run's results (`run.json`, `checkpoint.json`).
    pub overwrite: bool,
    /// Stop after this many iterations as if interrupted: checkpoint, no outputs (for tests
    /// and for splitting a long run).
    pub stop_after: Option<u32>,
    /// Write no checkpoint (a one-pass inference has nothing to resume).
    pub no_checkpoints: bool,
    /// Fit only this shard's subjects of a folder, into its own folder inside the output
    /// folder; started again, it goes on where it stopped.
    pub shard: Option<shard::Shard>,
}

/// Set by Ctrl-C (see `interrupt_on_ctrl_c`): the run checkpoints and stops after the current
/// iteration.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes Ctrl-C stop a run cleanly (checkpoint, then exit) instead of killing it.
pub fn interrupt_on_ctrl_c() {
    if let Err(e) = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: checkpointing after this iteration (Ctrl-C again to quit now)");
    }) {
        tracing::warn!("cannot catch Ctrl-C ({e}); an interrupted run resumes from its last periodic checkpoint");
    }
}

/// Whether Ctrl-C asked the run to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// A run that stopped before its last iteration, with a checkpoint to resume from.
#[derive(Debug, thiserror::Error)]
#[error("stopped after iteration {iteration} of {of}{}{}; checkpoint in {dir}; continue with `faceforge {command} --resume {dir}`", window.map_or(String::new(), |w| format!(" of window {w} (the windows before it are kept)")), subject.as_ref().map_or(String::new(), |s| format!(" of subject {s} (the subjects before it are kept)")))]
pub struct Interrupted {
    pub iteration: u32,
    pub of: u32,
    /// A clip fitted in windows: the window it stopped in (counted from 1).
    pub window: Option<usize>,
    /// A run over a folder: the subject it stopped in.
    pub subject: Option<String>,
    pub dir: String,
    /// The command that continues it: `run` or `train`.
    pub command: &'static str,
}

/// Refuses an output folder that is not empty (a previous run's, or anything else whose files a
/// run could overwrite), unless asked to overwrite it.
pub(crate) fn check_output_folder(dir: &std::path::Path, overwrite: bool) -> anyhow::Result<()> {
    if overwrite {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    if let Some(f) = ["run.json", crate::run::checkpoint::FILE, shard::FILE].iter().find(|f| dir.join(f).exists()) {
        bail!("the output folder {} holds a previous run ({f}): pass --force to overwrite it, or --resume {} to continue it", dir.display(), dir.display());
    }
    if entries > 0 {
        bail!("the output folder {} is not empty ({entries} entries): pass --force to write into it anyway, or choose another with --set 'outputs.dir=\"…\"'", dir.display());
    }
    Ok(())
}

/// Runs a checked scene to the end and writes its outputs (overwriting a previous run's).
pub fn run(loaded: &LoadedScene, show_progress: bool) -> anyhow::Result<RunSummary> {
    run_with(loaded, &RunOptions { progress: show_progress, overwrite: true, ..RunOptions::default() })
}

/// Runs a checked scene, checkpointing as the scene asks, and writes its outputs.
pub fn run_with(loaded: &LoadedScene, options: &RunOptions) -> anyhow::Result<RunSummary> {
    if loaded.scene.learn.is_some() {
        bail!("{}: the scene has a `learn` section: it trains a network, run it with `faceforge train`", loaded.file);
    }
    if let Some(spec) = subjects::folder_of(&loaded.scene.data) {
        let dir = options.shard.unwrap_or(shard::Shard::WHOLE).folder(&loaded.scene.outputs.dir);
        return subjects::run_folder(loaded, &spec, &dir, options, false, &mut ());
    }
    if options.shard.is_some() {
        bail!("{}: --shard splits a folder's subjects, and this scene's data is generated: write it to a folder first (`faceforge synth`) and run over that", loaded.file);
    }
    check_output_folder(&loaded.scene.outputs.dir, options.overwrite)?;
    let prepared = prepare(loaded)?;
    continue_run(loaded, prepared, 0, LossHistory::default(), options)
}

/// Continues the run whose output folder is `dir` from its checkpoint, to the scene's last
/// iteration (`overrides`, e.g. `iterations=500`, apply to the scene it ran).
pub fn resume(dir: &std::path::Path, overrides: &[String], options: &RunOptions) -> anyhow::Result<RunSummary> {
    if dir.join(shard::FILE).exists() {
        // A run over a folder: the subjects done are kept, the one it stopped in goes on.
        let manifest = shard::read(dir)?;
        let mut loaded = LoadedScene { scene: manifest.scene.clone(), file: manifest.scene_file.clone(), source: String::new() };
        loaded.apply_overrides(overrides)?;
        let spec = subjects::folder_of(&loaded.scene.data).with_context(|| format!("{}: the manifest's scene does not read a folder", dir.display()))?;
        let options = RunOptions { shard: Some(manifest.shard), ..options.clone() };
        return subjects::run_folder(&loaded, &spec, dir, &options, true, &mut ());
    }
    let checkpoint = crate::run::checkpoint::load(dir)?;
    let mut loaded = LoadedScene { scene: checkpoint.scene.clone(), file: checkpoint.scene_file.clone(), source: String::new() };
    loaded.apply_overrides(overrides)?;
    loaded.scene.outputs.dir = dir.to_path_buf();
    if checkpoint.iteration >= loaded.scene.iterations {
        bail!("the run in {} is finished ({} of {} iterations): pass --set iterations=N with N > {} to go on", dir.display(), checkpoint.iteration, loaded.scene.iterations, checkpoint.iteration);
    }
    let mut prepared = prepare(&loaded)?;
    crate::run::checkpoint::restore(&mut prepared.world, &checkpoint)?;
    tracing::info!("resuming {} at iteration {} of {}", dir.display(), checkpoint.iteration, loaded.scene.iterations);
    continue_run(&loaded, prepared, checkpoint.iteration, LossHistory(checkpoint.loss_history), options)
}

/// Iterates from `start` to the scene's end (checkpointing every `outputs.checkpoint_every`, on
/// Ctrl-C and at `stop_after`), then writes the outputs.
pub(crate) fn continue_run(loaded: &LoadedScene, mut prepared: Prepared, start: u32, history: LossHistory, options: &RunOptions) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let scene = &loaded.scene;
    let out_dir = scene.outputs.dir.clone();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating the output folder {}", out_dir.display()))?;
    let every = scene.outputs.checkpoint_every;
    let end = scene.iterations.max(start);
    let fit_started = Instant::now();
    let (loss_history, stopped) = iterate_with(&mut prepared, start..end, options.progress, history, |world, done, history| {
        let interrupted = interrupted() || options.stop_after == Some(done);
        if !options.no_checkpoints && (interrupted || (every > 0 && done % every == 0 && done < end)) {
            crate::run::checkpoint::save(&out_dir, &crate::run::checkpoint::capture(world, loaded, done, &history.0))?;
        }
        Ok(interrupted && done < end)
    })?;
    clock::add(clock::Stage::Fit, fit_started.elapsed());
    if stopped {
        let done = loss_history.0.len() as u32;
        return Err(Interrupted { iteration: done, of: end, window: None, subject: None, dir: out_dir.display().to_string(), command: "run" }.into());
    }
    if !options.no_checkpoints {
        crate::run::checkpoint::save(&out_dir, &crate::run::checkpoint::capture(&mut prepared.world, loaded, end, &loss_history.0))?;
    }
    clock::time(clock::Stage::Write, || finish(loaded, prepared, loss_history, started))
}

/// Writes a finished run's outputs, metrics and report.
fn finish(loaded: &LoadedScene, mut prepared: Prepared, loss_history: LossHistory, start: Instant) -> anyhow::Result<RunSummary> {
    finish_fit(&mut prepared)?;
    let Prepared { mut world, model, backend, frames, skipped, graph, .. } = prepared;
    let mut written = Written::default();
    write_frames(&loaded.scene, &mut world, &model, &|_| true, &mut written)?;
    let facts = RunFacts { backend: backend.describe(), frames, skipped, graph, windows: None, shard: None, merged: None };
    write_run(loaded, &mut world, &model, facts, loss_history, start, written)
}

/// What a run's per-frame outputs gave its summary: the files, the report's image strips, and
/// per subject the texture of its most frontal frame (for the clip's glTF).
#[derive(Default)]
pub(crate) struct Written {
    pub files: Vec<PathBuf>,
    pub strips: Vec<FrameImages>,
    pub frontal: std::collections::HashMap<u32, (f32, Vec<f32>)>,
}

/// What the report and `run.json` say of a run besides its outputs.
pub(crate) struct RunFacts {
    pub backend: String,
    pub frames: usize,
    pub skipped: Vec<Skipped>,
    pub graph: String,
    /// A clip fitted in windows: how.
    pub windows: Option<WindowsDone>,
    pub shard: Option<shard::Shard>,
    pub merged: Option<merge::Merged>,
}

/// Writes the outputs of the frames of `world` that `only` selects (meshes, textures,
/// landmarks, coefficients, images), into `written`.
pub(crate) fn write_frames(scene: &crate::scene::Scene, world: &mut World, model: &MorphableModel, only: &dyn Fn(&Frame) -> bool, written: &mut Written) -> anyhow::Result<()> {
    let out_dir = scene.outputs.dir.clone();
    let Written { files, strips, frontal } = written;
    let names: std::collections::HashMap<bevy_ecs::entity::Entity, String> =
        world.query::<(bevy_ecs::entity::Entity, &Frame)>().iter(world).map(|(e, f)| (e, f.name.clone())).collect();
    let subject_names: std::collections::HashMap<bevy_ecs::entity::Entity, String> =
        world.query::<(bevy_ecs::entity::Entity, &faceforge_components::Subject)>().iter(world).map(|(e, s)| (e, s.name.clone())).collect();
    let mut q = world.query::<(&Frame, Option<&Mesh>, Option<&Albedo>, &Coeffs, Option<&Rendered>, Option<&Image>, Option<&RenderedSwaps>, Option<&Pose>, Option<&Crop>, Option<&Landmarks2d>, Option<&DenseLandmarks>)>();
    let mut rows: Vec<_> = q.iter(world).filter(|row| only(row.0)).collect();
    rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    for &(frame, mesh, albedo, coeffs, rendered, image, swaps, pose, crop, targets, detected) in &rows {
        let mut write = |path: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
            atomic_write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            files.push(path);
            Ok(())
        };
        // The overlay is drawn when it is written or shown in the report; the texture when the
        // OBJ carries one.
        let overlay_wanted = rendered.is_some() && (scene.outputs.images || strips.len() < MAX_FRAME_STRIPS);
        let textured = mesh.is_some() && pose.is_some() && scene.outputs.meshes.contains(&MeshFormat::Obj) && scene.outputs.texture > 0;
        // A crop of a photo, read again at the photo's resolution for those two (once a frame).
        let source = match (crop, image) {
            (Some(c), Some(im)) if overlay_wanted || textured => crate::report::overlay::source_view(c, im.width),
            _ => None,
        };
        if let Some(r) = rendered {
            let marks = landmarks_2d(model, &r.projected);
            if scene.outputs.landmarks {
                // In the original image's pixels when the frame is a crop of it.
                let original: Vec<[f32; 2]> = marks.iter().map(|p| crop.map_or(*p, |c| c.to_original(*p))).collect();
                write(out_dir.join(format!("{}.pts", frame.name)), pts_text(&original).as_bytes())?;
            }
            let input = image.filter(|im| im.width == r.width && im.height == r.height);
            // A crop of a photo: the overlay at the photo's resolution around the face.
            let overlay_png = match (mesh, pose, &source) {
                _ if !overlay_wanted => None,
                (Some(m), Some(p), Some(view)) => {
                    let o = crate::report::overlay::at_source(model, &m.positions, p, view, &marks, targets.map_or(&[][..], |t| &t.points));
                    Some(png_bytes(&o.rgb, o.width, o.height))
                }
                _ => input.map(|im| png_bytes(&overlay(&im.rgb, im.width, im.height, &r.color, &r.mask, &marks), im.width, im.height)),
            };
            if scene.outputs.images {
                write(out_dir.join(format!("{}_render.png", frame.name)), &png_bytes(&r.color, r.width, r.height))?;
                if let Some(png) = &overlay_png {
                    write(out_dir.join(format!("{}_overlay.png", frame.name)), png)?;
                }
            }
            if strips.len() < MAX_FRAME_STRIPS {
                // The error the fit sees: PGN's losses compare the frame with another frame's
                // texture drawn at its pose (the first swap); without swaps, with the render.
                let seen = swaps.and_then(|s| s.images.first().map(|(_, rgb)| (rgb, &s.mask))).filter(|(rgb, _)| rgb.len() == r.color.len()).unwrap_or((&r.color, &r.mask));
                strips.push(FrameImages {
                    name: frame.name.clone(),
                    input: input.map(|im| png_bytes(&im.rgb, im.width, im.height)),
                    overlay: overlay_png,
                    error: input.map(|im| png_bytes(&error_map(&im.rgb, seen.0, seen.1), im.width, im.height)),
                });
            }
        }
        if let (Some(s), true) = (swaps, scene.outputs.images) {
            for (source, rgb) in &s.images {
                let from = names.get(source).map_or("unknown", String::as_str);
                write(out_dir.join(format!("{}_from_{from}.png", frame.name)), &png_bytes(rgb, s.width, s.height))?;
            }
        }
        if let Some(mesh) = mesh {
            let colors = albedo.map(|a| a.rgb.as_slice());
            // The textured OBJ: texture PNG and MTL beside it, when there is an image to unwrap.
            let mut texture_rgb = None;
            let material = match (image, pose) {
                (Some(im), Some(p)) if textured => {
                    let (rgb, sources) = frame_texture(model, &mesh.positions, p, im, source.as_ref(), colors.unwrap_or(model.mean_albedo()), scene.outputs.texture);
                    tracing::debug!("{}: texture {:.0} % from the image, {:.0} % mirrored, {:.0} % from the model", frame.name, 100.0 * sources.image, 100.0 * sources.mirrored, 100.0 * sources.model);
                    let (png, mtl) = (format!("{}_texture.png", frame.name), format!("{}.mtl", frame.name));
                    for (file, bytes) in [(&png, png_bytes(&rgb, scene.outputs.texture, scene.outputs.texture)), (&mtl, mtl_text(&png).into_bytes())] {
                        let path = out_dir.join(file);
                        atomic_write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
                        files.push(path);
                    }
                    texture_rgb = Some(rgb);
                    Some(mtl)
                }
                _ => None,
            };
            if scene.outputs.images && source.is_some() {
                // A photo's face turned, to see its shape from the side.
                let colours = texture_rgb.as_ref().map(|t| crate::report::views::colours_from_texture(model, t, scene.outputs.texture));
                let path = out_dir.join(format!("{}_views.png", frame.name));
                atomic_write(&path, &crate::report::views::turned_png(model, &mesh.positions, colours.as_deref().or(colors), 320)).with_context(|| format!("writing {}", path.display()))?;
                files.push(path);
            }
            let view = MeshView { positions: &mesh.positions, colors, material: material.as_deref() };
            for format in &scene.outputs.meshes {
                let path = match format {
                    MeshFormat::Obj => out_dir.join(format!("{}.obj", frame.name)),
                    MeshFormat::Ply => out_dir.join(format!("{}.ply", frame.name)),
                };
                match format {
                    MeshFormat::Obj => write_obj(&path, model, &view),
                    MeshFormat::Ply => write_ply(&path, model, &view),
                }
                .with_context(|| format!("writing {}", path.display()))?;
                files.push(path);
            }
        }
        if scene.outputs.coefficients {
            let path = out_dir.join(format!("{}.json", frame.name));
            let record = serde_json::json!({
                "frame": frame.name,
                "subject": frame.subject_id,
                "index": frame.index,
                "coefficients": coeffs,
                "pose": pose,
                "crop": crop,
                "landmarks_3d": mesh.map(|m| landmarks_3d(model, &m.positions)),
                // The fitted model's FaceMesh 468 points (its dense landmarks), projected, in the
                // original image's pixels.
                "dense_landmarks_2d": rendered.filter(|_| !model.dense_landmarks().is_empty()).map(|r| {
                    model.dense_landmarks().iter().map(|&v| {
                        let p = [r.projected[4 * v as usize], r.projected[4 * v as usize + 1]];
                        crop.map_or(p, |c| c.to_original(p))
                    }).collect::<Vec<_>>()
                }),
                // The detector's 468 points, in the original image's pixels (z in the same scale).
                "detected": detected.map(|d| serde_json::json!({
                    "score": d.score,
                    "points": d.points.iter().map(|p| {
                        let [x, y] = crop.map_or([p[0], p[1]], |c| c.to_original([p[0], p[1]]));
                        [x, y, p[2] / crop.map_or(1.0, |c| c.scale)]
                    }).collect::<Vec<_>>(),
                })),
            });
            atomic_write(&path, serde_json::to_string_pretty(&record)?.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            files.push(path);
        }
    }
    if scene.outputs.animation && scene.outputs.texture > 0 {
        // Per clip, the texture of its most frontal frame (for its glTF), unwrapped once per
        // call for the best frame here when it beats the clip's best so far; kept on disk as
        // CLIP_texture.png.
        let mut best: BTreeMap<u32, (f32, usize)> = BTreeMap::new();
        for (k, row) in rows.iter().enumerate() {
            let (frame, Some(_), _, _, _, Some(_), _, Some(pose), ..) = *row else { continue };
            let yaw = crate::eval::metrics::ypr_deg(Some(pose)).map_or(f32::MAX, |a| a[0].abs());
            if best.get(&frame.subject_id).is_none_or(|(b, _)| yaw < *b) && frontal.get(&frame.subject_id).is_none_or(|(b, _)| yaw < *b) {
                best.insert(frame.subject_id, (yaw, k));
            }
        }
        for (subject_id, (yaw, k)) in best {
            let (frame, Some(mesh), albedo, _, _, Some(image), _, Some(pose), crop, ..) = rows[k] else { continue };
            let source = crop.and_then(|c| crate::report::overlay::source_view(c, image.width));
            let colors = albedo.map_or(model.mean_albedo(), |a| a.rgb.as_slice());
            let (rgb, _) = frame_texture(model, &mesh.positions, pose, image, source.as_ref(), colors, scene.outputs.texture);
            let clip = subject_names.get(&frame.subject).cloned().unwrap_or_else(|| format!("subject{subject_id}"));
            let path = out_dir.join(format!("{clip}_texture.png"));
            atomic_write(&path, &png_bytes(&rgb, scene.outputs.texture, scene.outputs.texture)).with_context(|| format!("writing {}", path.display()))?;
            if !files.contains(&path) {
                files.push(path);
            }
            frontal.insert(subject_id, (yaw, rgb));
        }
    }
    Ok(())
}

/// A frame's texture: unwrapped from the photo at its resolution when the frame is a crop of one
/// (`source`), else from the frame's image; what neither shows mirrored, else `colors`.
fn frame_texture(model: &MorphableModel, positions: &[f32], pose: &Pose, image: &Image, source: Option<&crate::report::overlay::SourceView>, colors: &[f32], size: usize) -> (Vec<f32>, faceforge_systems::unwrap::TextureSources) {
    match source {
        Some(view) => unwrap_texture(model, positions, &crate::report::overlay::magnified(pose, view.k), &view.image, size, Unseen::MirrorThenAlbedo(colors)),
        None => unwrap_texture(model, positions, pose, image, size, Unseen::MirrorThenAlbedo(colors)),
    }
}

/// Writes what a run says as a whole, from the World of its fitted frames (or of their records,
/// for a clip fitted in windows): the clips' animations, the metrics and stability, the report,
/// the losses and `run.json`.
pub(crate) fn write_run(loaded: &LoadedScene, world: &mut World, model: &MorphableModel, facts: RunFacts, loss_history: LossHistory, start: Instant, written: Written) -> anyhow::Result<RunSummary> {
    let scene = &loaded.scene;
    let Written { mut files, strips, frontal } = written;
    if scene.outputs.animation {
        files.extend(crate::io::outputs::write_clip_animations(world, model, &scene.outputs.dir, &frontal, scene.outputs.texture)?);
    }
    let measured = Measured { metrics: measure(world, model), clips: crate::eval::stability::measure_clips(world, model), losses: world.resource::<LossTerms>().terms.clone() };
    write_summary(loaded, model, facts, measured, loss_history, start, files, strips)
}

/// What a run measured over all its frames.
pub(crate) struct Measured {
    pub metrics: Option<RunMetrics>,
    pub clips: Vec<crate::eval::stability::ClipStability>,
    /// The last iteration's loss terms.
    pub losses: BTreeMap<String, f32>,
}

/// Writes the metrics, the report, the losses and `run.json` of a run (or of shards merged).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_summary(loaded: &LoadedScene, model: &MorphableModel, facts: RunFacts, measured: Measured, loss_history: LossHistory, start: Instant, mut files: Vec<PathBuf>, strips: Vec<FrameImages>) -> anyhow::Result<RunSummary> {
    let scene = &loaded.scene;
    let out_dir = scene.outputs.dir.clone();
    let RunFacts { backend, frames, skipped, graph, windows, shard, merged } = facts;
    let Measured { metrics, clips, losses } = measured;
    if metrics.is_some() || !clips.is_empty() {
        // The accuracy against the truth (when there is one) and each clip's stability.
        let mut json = metrics.as_ref().map_or(Ok(serde_json::json!({})), serde_json::to_value)?;
        if !clips.is_empty() {
            json["clips"] = serde_json::to_value(&clips)?;
        }
        let path = out_dir.join("metrics.json");
        atomic_write(&path, serde_json::to_string_pretty(&json)?.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    let seconds = start.elapsed().as_secs_f64();
    let report = RunReport {
        title: loaded.name(),
        facts: vec![
            ("scene".into(), loaded.file.clone()),
            ("backend".into(), backend.clone()),
            ("model".into(), format!("{} ({} vertices)", model.origin(), model.n_vertices())),
            ("frames × iterations".into(), match (&windows, &scene.window) {
                // A windowed run: the first window's iterations, then the later windows'.
                (Some(_), Some(w)) if w.iterations > 0 => format!("{frames} × {} (first window), {} (later windows)", scene.iterations, w.iterations),
                _ => format!("{frames} × {}", scene.iterations),
            }),
        ]
        .into_iter()
        .chain(windows.as_ref().map(|w| ("windows".to_string(), format!("{} of up to {} frames ({} shared with the next), at most {} frames held at once", w.windows, w.frames, w.overlap, w.most_held))))
        .chain(shard.filter(|s| !s.is_whole()).map(|s| ("shard".to_string(), format!("{s}: every {}-th subject from the {}-th (merge the shards with `faceforge merge`)", s.count, s.index))))
        .chain(merged.as_ref().map(|m| ("merged".to_string(), m.describe())))
        .chain([
            ("time".into(), merged.as_ref().map_or(format!("{seconds:.1} s"), |m| m.time(seconds))),
            ("peak memory".into(), merged.as_ref().map_or(megabytes(peak_memory_mb()), |m| m.peak_memory(peak_memory_mb()))),
        ])
        .chain((!skipped.is_empty()).then(|| ("skipped inputs".to_string(), skipped.iter().map(|s| format!("{}: {}", s.file.display(), s.reason)).collect::<Vec<_>>().join("; "))))
        .collect(),
        metrics: metrics.as_ref(),
        losses: &loss_history,
        images: &strips,
        heat_map: metrics.as_ref().filter(|m| !m.vertex_errors_mm.is_empty()).map(|m| {
            let max = heat_map_max(&m.vertex_errors_mm);
            (heat_map_png(model, &m.vertex_errors_mm, max, 256), max)
        }),
        graph: (!graph.is_empty()).then_some(graph),
        clips: &clips,
        viewers: files.iter().filter_map(|f| f.file_name()?.to_str().filter(|n| n.ends_with("_viewer.html")).map(str::to_string)).collect(),
        plots: Vec::new(),
    };
    for (name, text) in [("report.md", run_markdown(&report)), ("report.html", run_html(&report)), ("losses.csv", loss_history.csv())] {
        let path = out_dir.join(name);
        atomic_write(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    let summary = RunSummary {
        scene: loaded.name(),
        backend,
        model: model.origin().to_string(),
        frames,
        skipped,
        iterations: scene.iterations,
        seconds,
        losses,
        metrics,
        out_dir: out_dir.clone(),
        files,
        loss_history,
        peak_memory_mb: peak_memory_mb(),
        windows,
        shard,
        merged,
    };
    atomic_write(&out_dir.join("run.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    Ok(summary)
}
