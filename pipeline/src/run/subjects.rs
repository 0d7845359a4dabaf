//! A run over a folder goes subject by subject. Each subject (a loose image, a sub-folder's clip
//! or multi-view set, a video file) is loaded, fitted in a World of its own, written, and
//! forgotten. This has three effects:
//! - memory is one subject's;
//! - a killed run loses at most the subject it was in, which goes on from its checkpoint;
//! - a subject's result does not depend on which others were fitted beside it.
//!
//! The losses average over a World's frames. With one World for the whole folder, every face
//! would depend, through Adam's ε, on how many others came with it. Fitting each subject alone
//! is what lets `--shard I/N` split a run over machines, and lets `faceforge merge` put it back
//! together bit for bit equal to one process.
//!
//! After each subject, `records/NAME.json` holds what the run's summary reads of it: per-frame
//! metrics, the loss history, files, skipped inputs and clip stability. It is written last, so
//! its presence means the subject is done. The summary (`metrics.json`, the report, `run.json`)
//! is computed from the records alone, so a merge of shards computes it the same way.

use crate::eval::metrics::{measure_frames, FrameMetrics, RunMetrics};
use crate::eval::stability::{measure_clips, ClipStability};
use crate::io::inputs::{self, FolderSpec, Listed, Skipped};
use crate::report::{FrameImages, LossHistory, MAX_FRAME_STRIPS};
use crate::run::merge::Merged;
use crate::run::shard::{self, Manifest, ManifestSubject, Shard};
use crate::run::windows::{self, ClipFit};
use crate::run::{check_output_folder, WindowsDone, checkpoint, clock, data::spawn_loaded, finish_fit, interrupted, iterate_with, load_model, new_world, progress_bar, write_frames, write_summary, Interrupted, Measured, Prepared, RunFacts, RunOptions, RunSummary, Written};
use crate::scene::graph::{build_after_last, build_schedule, plan, svg, Plan};
use crate::scene::{DataSpec, LoadedScene};
use anyhow::{bail, Context};
use bevy_ecs::world::World;
use faceforge_kernels::Backend;
use faceforge_model::{atomic_write, MorphableModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The folder of the per-subject records (and checkpoints), inside the output folder.
pub const RECORDS: &str = "records";

/// What one subject's fit left for the run's summary.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SubjectRecord {
    pub subject: String,
    /// Its position in the manifest (the summary's order).
    pub position: usize,
    /// Frames fitted (0 when every input was skipped).
    pub frames: usize,
    /// The files written, by name in the output folder.
    pub files: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
    /// Per frame against the ground truth, when the data has one, in frame name order; with the
    /// per-vertex errors (mm) the report's heat map averages.
    pub metrics: Vec<FrameMetrics>,
    pub vertex_errors_mm: Vec<Vec<f32>>,
    pub clips: Vec<ClipStability>,
    /// Every iteration's loss terms (averages over this subject's frames).
    pub history: Vec<BTreeMap<String, f32>>,
    /// The report's image strips of this subject's frames, as PNGs in `records/`.
    pub strips: Vec<StripFiles>,
    /// A clip fitted in windows: how.
    pub windows: Option<WindowsDone>,
    pub seconds: f64,
}

/// A frame's report pictures, by file name in `records/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StripFiles {
    pub frame: String,
    pub input: Option<String>,
    pub overlay: Option<String>,
    pub error: Option<String>,
}

/// Resources every subject's World borrows (a trained network), lent before its fit and taken
/// back after it.
pub trait Lend {
    fn lend(&mut self, world: &mut World);
    fn take_back(&mut self, world: &mut World);
}

impl Lend for () {
    fn lend(&mut self, _: &mut World) {}
    fn take_back(&mut self, _: &mut World) {}
}

pub fn record_path(dir: &Path, subject: &str) -> PathBuf {
    dir.join(RECORDS).join(format!("{subject}.json"))
}

fn checkpoint_path(dir: &Path, subject: &str) -> PathBuf {
    dir.join(RECORDS).join(format!("{subject}.checkpoint.json"))
}

/// Reads a subject's record.
pub fn read_record(path: &Path) -> anyhow::Result<SubjectRecord> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a faceforge subject record", path.display()))
}

/// The folder a scene's data reads, when it is a folder (or a video file): the data a run goes
/// through subject by subject.
pub fn folder_of(data: &DataSpec) -> Option<FolderSpec> {
    match data {
        DataSpec::Folder(f) => Some(f.clone()),
        DataSpec::Video(v) => Some(v.folder()),
        _ => None,
    }
}

/// The manifest of a folder: every subject by name, with its inputs.
pub fn manifest(loaded: &LoadedScene, spec: &FolderSpec, shard: Shard) -> anyhow::Result<Manifest> {
    Ok(manifest_of(loaded, shard, &inputs::subjects(spec)?))
}

fn manifest_of(loaded: &LoadedScene, shard: Shard, subjects: &[(String, Vec<Listed>)]) -> Manifest {
    let entries = subjects.iter().map(|(name, listed)| ManifestSubject { name: name.clone(), inputs: listed.iter().map(|l| l.image.clone()).collect() }).collect();
    Manifest::new(loaded, shard, entries)
}

/// Makes `dir` ready for the manifest's run: a new folder, or one this same part of the run
/// started before (a shard started again goes on where it stopped; so does `--resume`).
fn open_folder(dir: &Path, manifest: &Manifest, options: &RunOptions, resuming: bool) -> anyhow::Result<()> {
    let same_part = |m: &Manifest| m.shard == manifest.shard && m.subjects == manifest.subjects;
    match shard::read(dir) {
        Ok(previous) if resuming && !same_part(&previous) => {
            bail!("{}: the data no longer lists the subjects this run started with ({} then, {} now): start it over with --force", dir.display(), previous.subjects.len(), manifest.subjects.len())
        }
        Ok(previous) if resuming || (!manifest.shard.is_whole() && same_part(&previous) && previous.scene == manifest.scene) => {
            let done = manifest.mine().filter(|(_, s)| record_path(dir, &s.name).exists()).count();
            tracing::info!("{}: going on, {done} of {} subjects already done", dir.display(), manifest.mine().count());
            return Ok(());
        }
        Ok(_) if !options.overwrite && !manifest.shard.is_whole() => {
            bail!("{} holds another run's shard (its manifest.json names another scene, data or shard): pass --force to start it over", dir.display())
        }
        _ if resuming => bail!("{}: no manifest.json, so no run over a folder to go on with", dir.display()),
        _ => {}
    }
    check_output_folder(dir, options.overwrite)?;
    // Records of another run would be taken as done.
    let records = dir.join(RECORDS);
    if records.exists() {
        std::fs::remove_dir_all(&records).with_context(|| format!("clearing {}", records.display()))?;
    }
    Ok(())
}

/// Runs a scene over the folder `spec` subject by subject, into `dir` (the shard's folder of a
/// sharded run), going on from what `dir` already holds when `resuming` or when it is the same
/// shard started again.
pub fn run_folder(loaded: &LoadedScene, spec: &FolderSpec, dir: &Path, options: &RunOptions, resuming: bool, lend: &mut dyn Lend) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let shard = options.shard.unwrap_or(Shard::WHOLE);
    let listed = inputs::subjects(spec)?;
    let manifest = manifest_of(loaded, shard, &listed);
    open_folder(dir, &manifest, options, resuming)?;
    std::fs::create_dir_all(dir.join(RECORDS)).with_context(|| format!("creating {}", dir.join(RECORDS).display()))?;
    manifest.save(dir)?;
    let plan = plan(loaded)?;
    let model = Arc::new(load_model(&loaded.scene.model)?);
    let backend = Backend::select(loaded.scene.backend)?;
    tracing::info!("backend: {}; model: {} ({} vertices)", backend.describe(), model.origin(), model.n_vertices());
    let mut here = loaded.clone();
    here.scene.outputs.dir = dir.to_path_buf();
    let mine: Vec<(usize, &ManifestSubject)> = manifest.mine().collect();
    tracing::info!("{} of {} subjects{}", mine.len(), manifest.subjects.len(), if shard.is_whole() { String::new() } else { format!(" (shard {shard})") });
    // One subject: a bar over its iterations; more: a bar over the subjects.
    let one = mine.len() == 1;
    let mut fitter = Fitter { loaded: &here, spec, plan: &plan, model: model.clone(), backend: backend.clone(), options, dir, iterations: 0, progress: options.progress && one };
    let bar = progress_bar(options.progress && !one, mine.len() as u32, 0);
    let mut records = Vec::with_capacity(mine.len());
    for (position, subject) in mine {
        bar.set_message(subject.name.clone());
        let path = record_path(dir, &subject.name);
        if path.exists() {
            match read_record(&path) {
                Ok(record) => {
                    records.push(record);
                    bar.inc(1);
                    continue;
                }
                Err(e) => tracing::warn!("{e:#}: fitting {} again", subject.name),
            }
        }
        if interrupted() || options.stop_after.is_some_and(|n| fitter.iterations >= n) {
            bar.abandon();
            return Err(Interrupted { iteration: 0, of: loaded.scene.iterations, window: None, subject: Some(subject.name.clone()), dir: dir.display().to_string(), command: "run" }.into());
        }
        let record = match fitter.fit(position, &subject.name, &listed[position].1, lend) {
            Ok(record) => record,
            Err(e) if e.is::<Interrupted>() || spec.strict => {
                bar.abandon();
                return Err(e);
            }
            // One subject that cannot be fitted does not stop the others: it is listed, with why.
            Err(e) => {
                tracing::warn!("{}: {e:#}; going on with the next subject", subject.name);
                let file = subject.inputs.first().cloned().unwrap_or_default();
                SubjectRecord { subject: subject.name.clone(), position, skipped: vec![Skipped { file, reason: format!("{e:#}") }], ..SubjectRecord::default() }
            }
        };
        atomic_write(&path, serde_json::to_string(&record)?.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        for done in [checkpoint_path(dir, &subject.name), windows::checkpoint_path(dir, &subject.name)] {
            let _ = std::fs::remove_file(done);
        }
        records.push(record);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let folders: Vec<(&Path, &SubjectRecord)> = records.iter().map(|r| (dir, r)).collect();
    let shard = (!shard.is_whole()).then_some(shard);
    clock::time(clock::Stage::Write, || summarize(&here, &model, &folders, backend.describe(), svg(&plan), shard, None, started))
}

/// Fits one subject at a time.
pub(crate) struct Fitter<'a> {
    /// The scene, writing into the run's (or the shard's) folder.
    pub loaded: &'a LoadedScene,
    pub spec: &'a FolderSpec,
    pub plan: &'a Plan,
    pub model: Arc<MorphableModel>,
    pub backend: Backend,
    pub options: &'a RunOptions,
    pub dir: &'a Path,
    /// Iterations run by this process (for `stop_after`).
    pub iterations: u32,
    /// A progress bar over each fit's iterations.
    pub progress: bool,
}

impl Fitter<'_> {
    fn fit(&mut self, position: usize, name: &str, listed: &[Listed], lend: &mut dyn Lend) -> anyhow::Result<SubjectRecord> {
        let started = Instant::now();
        let (loaded, scene) = (self.loaded, &self.loaded.scene);
        let (frames, skipped) = match (&scene.window, listed) {
            (Some(window), [clip]) if crate::io::video::is_video(&clip.image) => match windows::fit_clip(self, position, name, clip, window)? {
                ClipFit::Windows(record) => return Ok(*record),
                ClipFit::Whole { frames, skipped } => (frames, skipped),
            },
            _ => inputs::load_listed(self.spec, listed, &self.model)?,
        };
        for s in &skipped {
            tracing::warn!("skipped {}: {}", s.file.display(), s.reason);
        }
        let mut record = SubjectRecord { subject: name.to_string(), position, skipped, ..SubjectRecord::default() };
        if frames.is_empty() {
            record.seconds = started.elapsed().as_secs_f64();
            return Ok(record);
        }
        let mut world = new_world(&self.model, &self.backend, &scene.losses);
        spawn_loaded(&mut world, &frames, &self.model);
        record.frames = frames.len();
        drop(frames);
        let (schedule, after_last) = (build_schedule(loaded, self.plan)?, build_after_last(loaded, self.plan)?);
        let mut prepared = Prepared { world, schedule, after_last, model: self.model.clone(), backend: self.backend.clone(), frames: record.frames, skipped: Vec::new(), graph: String::new() };
        lend.lend(&mut prepared.world);
        let fitted = self.iterate(&mut prepared, name);
        lend.take_back(&mut prepared.world);
        let history = fitted?;
        let world = &mut prepared.world;
        let mut written = Written::default();
        write_frames(scene, world, &self.model, &|_| true, &mut written)?;
        let Written { mut files, strips, frontal } = written;
        if scene.outputs.animation {
            files.extend(crate::io::outputs::write_clip_animations(world, &self.model, self.dir, &frontal, scene.outputs.texture)?);
        }
        (record.metrics, record.vertex_errors_mm) = measure_frames(world, &self.model).unwrap_or_default().into_iter().unzip();
        record.clips = measure_clips(world, &self.model);
        // The report shows the first subjects' frames: a subject far down the manifest keeps none.
        if position < MAX_FRAME_STRIPS {
            record.strips = strips.iter().map(|s| save_strip(self.dir, s)).collect::<anyhow::Result<_>>()?;
        }
        record.files = files.iter().map(|f| f.strip_prefix(self.dir).map_or_else(|_| f.clone(), Path::to_path_buf)).collect();
        record.history = history.0;
        record.seconds = started.elapsed().as_secs_f64();
        Ok(record)
    }
}

impl Fitter<'_> {
    /// Iterates a subject's World to the scene's end (from its checkpoint, when it has one),
    /// checkpointing as the scene asks and at a stop, then runs what only the outputs need.
    fn iterate(&mut self, prepared: &mut Prepared, name: &str) -> anyhow::Result<LossHistory> {
        let (loaded, scene, options) = (self.loaded, &self.loaded.scene, self.options);
        let saved = checkpoint_path(self.dir, name);
        let (start, history) = if saved.exists() {
            let checkpoint = checkpoint::load_from(&saved)?;
            checkpoint::restore(&mut prepared.world, &checkpoint).with_context(|| format!("going on with {name} from {}", saved.display()))?;
            tracing::info!("{name}: going on from iteration {} of {}", checkpoint.iteration, scene.iterations);
            (checkpoint.iteration, LossHistory(checkpoint.loss_history))
        } else {
            (0, LossHistory::default())
        };
        let (end, every) = (scene.iterations.max(start), scene.outputs.checkpoint_every);
        let mut total = self.iterations;
        let fit_started = Instant::now();
        let fitted = iterate_with(prepared, start..end, self.progress, history, |world, done, history| {
            total += 1;
            let stop = interrupted() || options.stop_after == Some(total);
            if !options.no_checkpoints && (stop || (every > 0 && done % every == 0 && done < end)) {
                checkpoint::save_as(&saved, &checkpoint::capture(world, loaded, done, &history.0))?;
            }
            Ok(stop && done < end)
        });
        self.iterations = total;
        clock::add(clock::Stage::Fit, fit_started.elapsed());
        let (history, stopped) = fitted.with_context(|| format!("fitting {name}"))?;
        if stopped {
            return Err(Interrupted { iteration: history.0.len() as u32, of: end, window: None, subject: Some(name.to_string()), dir: self.dir.display().to_string(), command: "run" }.into());
        }
        finish_fit(prepared).with_context(|| format!("fitting {name}"))?;
        Ok(history)
    }
}

/// Writes a frame's report pictures into `records/`.
pub(crate) fn save_strip(dir: &Path, strip: &FrameImages) -> anyhow::Result<StripFiles> {
    let save = |kind: &str, png: &Option<Vec<u8>>| -> anyhow::Result<Option<String>> {
        let Some(png) = png else { return Ok(None) };
        let name = format!("{}.{kind}.png", strip.name);
        let path = dir.join(RECORDS).join(&name);
        atomic_write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(Some(name))
    };
    Ok(StripFiles { frame: strip.name.clone(), input: save("input", &strip.input)?, overlay: save("overlay", &strip.overlay)?, error: save("error", &strip.error)? })
}

/// Each iteration's loss terms over all subjects' frames: the frame-weighted mean of the
/// subjects' averages, which is the average one World of all the frames would report.
fn pooled_history(records: &[(&Path, &SubjectRecord)]) -> Vec<BTreeMap<String, f32>> {
    let fitted: Vec<&SubjectRecord> = records.iter().map(|(_, r)| *r).filter(|r| r.frames > 0).collect();
    if let [only] = fitted[..] {
        return only.history.clone();
    }
    let len = fitted.iter().map(|r| r.history.len()).max().unwrap_or(0);
    (0..len)
        .map(|it| {
            let mut sums: BTreeMap<String, (f32, f32)> = BTreeMap::new();
            for r in fitted.iter().filter(|r| it < r.history.len()) {
                for (term, value) in &r.history[it] {
                    let sum = sums.entry(term.clone()).or_default();
                    sum.0 += value * r.frames as f32;
                    sum.1 += r.frames as f32;
                }
            }
            sums.into_iter().map(|(term, (sum, frames))| (term, sum / frames)).collect()
        })
        .collect()
}

/// The run's summary (metrics, report, losses, `run.json`) from its subjects' records, each with
/// the folder it is in; written into the scene's output folder, whose files the records name.
#[allow(clippy::too_many_arguments)]
pub(crate) fn summarize(loaded: &LoadedScene, model: &MorphableModel, records: &[(&Path, &SubjectRecord)], backend: String, graph: String, shard: Option<Shard>, merged: Option<Merged>, started: Instant) -> anyhow::Result<RunSummary> {
    let mut records = records.to_vec();
    records.sort_by_key(|(_, r)| r.position);
    let frames: usize = records.iter().map(|(_, r)| r.frames).sum();
    let skipped: Vec<Skipped> = records.iter().flat_map(|(_, r)| r.skipped.iter().cloned()).collect();
    if frames == 0 && merged.is_none() {
        let listed: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.file.display(), s.reason)).collect();
        bail!("no usable image in {} subjects ({} inputs skipped: {})", records.len(), skipped.len(), listed.join("; "));
    }
    let measured: Vec<FrameMetrics> = records.iter().flat_map(|(_, r)| r.metrics.iter().cloned()).collect();
    let vertex_errors: Vec<Vec<f32>> = records.iter().flat_map(|(_, r)| r.vertex_errors_mm.iter().cloned()).collect();
    let history = pooled_history(&records);
    let out_dir = &loaded.scene.outputs.dir;
    let mut strips = Vec::new();
    for (folder, r) in &records {
        for s in r.strips.iter().take(MAX_FRAME_STRIPS - strips.len().min(MAX_FRAME_STRIPS)) {
            let read = |name: &Option<String>| name.as_ref().and_then(|n| std::fs::read(folder.join(RECORDS).join(n)).ok());
            strips.push(FrameImages { name: s.frame.clone(), input: read(&s.input), overlay: read(&s.overlay), error: read(&s.error) });
        }
    }
    let measured = Measured {
        metrics: (!measured.is_empty()).then(|| RunMetrics::from_frames(measured, &vertex_errors)),
        clips: records.iter().flat_map(|(_, r)| r.clips.iter().cloned()).collect(),
        losses: history.last().cloned().unwrap_or_default(),
    };
    let files = records.iter().flat_map(|(_, r)| r.files.iter().map(|f| out_dir.join(f))).collect();
    // Clips fitted in windows: how many windows, and the most frames one held.
    let windows = records.iter().filter_map(|(_, r)| r.windows.clone()).reduce(|a, b| WindowsDone { windows: a.windows + b.windows, most_held: a.most_held.max(b.most_held), ..a });
    let facts = RunFacts { backend, frames, skipped, graph, windows, shard, merged };
    write_summary(loaded, model, facts, measured, LossHistory(history), started, files, strips)
}
