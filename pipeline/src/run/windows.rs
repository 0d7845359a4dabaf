//! Long clips fitted in overlapping windows (`window: (frames: 100, overlap: 10)`), so memory
//! stays flat in a clip's length. The decoder streams the frames; each window of `frames` frames
//! is fitted as a clip of its own (one identity, expression and pose per frame), then its new
//! frames are written and forgotten, all but the last `overlap`: the next window holds those as
//! context, fixed where they were written, so its temporal term joins the motion across the seam.
//! A window starts from the one before: the identity and albedo are the first window's and stay
//! fixed (one identity per clip; later windows fit expression and pose), and each new frame
//! starts from the expression of the frame before it (the warm start). The run's summary (the
//! clip's animation, stability, report) comes from a small record per frame (coefficients, pose,
//! crop, landmarks), not from the frames. A single clip no longer than one window is fitted all
//! at once, as without windows. After each window, `windows.json` holds what `run --resume`
//! needs to go on from the next one.

use crate::io::inputs::{list, stream_video, FolderSpec, Listed, LoadedFrame, Skipped};
use crate::report::LossHistory;
use crate::run::{clock, continue_run, finish_fit, interrupted, iterate_with, load_model, new_world, write_frames, write_run, Prepared, RunFacts, RunOptions, RunSummary, WindowsDone, Written};
use crate::scene::graph::{build_after_last, build_schedule, plan, svg, Plan};
use crate::scene::{DataSpec, LoadedScene, Scene, Window};
use anyhow::{bail, Context};
use bevy_ecs::entity::Entity;
use bevy_ecs::world::World;
use faceforge_components::{Coeffs, Crop, Frame, Landmarks2d, LossTerms, Pose, Subject, Timestamp};
use faceforge_kernels::Backend;
use faceforge_model::{atomic_write, MorphableModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A windowed run's checkpoint, written after every window.
pub const FILE: &str = "windows.json";

/// The folder spec to stream a scene's clips with, and the clips, when its data is nothing but
/// video clips (a `Video`, or a `Folder` listing only videos).
pub(crate) fn clips_of(data: &DataSpec) -> anyhow::Result<Option<(FolderSpec, Vec<Listed>)>> {
    let spec = match data {
        DataSpec::Video(v) => v.folder(),
        DataSpec::Folder(f) => f.clone(),
        _ => return Ok(None),
    };
    let listed = list(&spec)?;
    Ok(listed.iter().all(|l| crate::io::video::is_video(&l.image)).then_some((spec, listed)))
}

/// What one window leaves the next: the shared identity and albedo, the expressions of its last
/// `overlap` frames (by frame index; the next window's context), and the last frame's
/// expression (where the new frames start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Carried {
    shared: Coeffs,
    context: BTreeMap<u32, Vec<f32>>,
    last: Vec<f32>,
}

/// One written frame, as the run's summary reads it (about 2 KB).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    clip: u32,
    subject: String,
    index: u32,
    name: String,
    coeffs: Coeffs,
    pose: Option<Pose>,
    crop: Option<Crop>,
    seconds: Option<f64>,
    landmarks: Option<Vec<[f32; 2]>>,
}

/// What a windowed run has done, after each window (`windows.json`): enough to go on from the
/// next window as if never stopped. f32 values round-trip through JSON exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowsCheckpoint {
    pub scene_file: String,
    pub scene: Scene,
    /// The clip in progress, and how many of its frames (with a face) were fitted.
    clip: u32,
    fitted: u32,
    carried: Option<Carried>,
    records: Vec<Record>,
    files: Vec<PathBuf>,
    /// Per clip, the yaw of the most frontal frame written so far (its texture is
    /// `CLIP_texture.png`).
    frontal: BTreeMap<u32, f32>,
    history: Vec<BTreeMap<String, f32>>,
    skipped: Vec<Skipped>,
    windows: usize,
    frames: usize,
    most_held: usize,
    /// Every clip done and the summary written.
    pub finished: bool,
}

/// A windowed fit in progress.
struct Windowed<'a> {
    loaded: &'a LoadedScene,
    plan: &'a Plan,
    model: Arc<MorphableModel>,
    backend: Backend,
    window: Window,
    progress: bool,
    /// This clip's frames not yet written, with their index in the clip (frames with a face).
    buffer: Vec<(u32, LoadedFrame)>,
    next_index: u32,
    clip: u32,
    /// Resuming: the clip's frames before this index were fitted before the stop.
    resume_at: u32,
    /// The history's length at the last checkpoint.
    saved_iterations: u32,
    /// The loss terms of the last window's last iteration.
    last_terms: LossTerms,
    carried: Option<Carried>,
    /// One record per written frame: what the run's summary reads.
    records: Vec<Record>,
    written: Written,
    skipped: Vec<Skipped>,
    stop_after: Option<u32>,
    history: LossHistory,
    windows: usize,
    frames: usize,
    /// The most frames any window's World held.
    most_held: usize,
}

impl Windowed<'_> {
    fn push(&mut self, frame: LoadedFrame) -> anyhow::Result<()> {
        let index = self.next_index;
        self.next_index += 1;
        if index < self.resume_at {
            // Fitted before the stop: only the next window's context is kept.
            if self.carried.as_ref().is_some_and(|c| c.context.contains_key(&index)) {
                self.buffer.push((index, frame));
            }
            return Ok(());
        }
        self.buffer.push((index, frame));
        if self.buffer.len() >= self.window.frames as usize {
            self.fit()?;
        }
        Ok(())
    }

    /// Fits the buffered frames and writes the new ones (all but the context the previous
    /// window left); keeps the last `overlap` as the next window's context.
    fn fit(&mut self) -> anyhow::Result<()> {
        let scene = &self.loaded.scene;
        let (first, last) = (self.buffer[0].0, self.buffer[self.buffer.len() - 1].0);
        let mut world = new_world(&self.model, &self.backend, &scene.losses);
        let subject = spawn_loaded_one_subject(&mut world, self.buffer.iter().map(|(_, f)| f), &self.model, self.clip)?;
        // The context frames' expressions, held where they were written.
        let mut held: Vec<(Entity, Vec<f32>)> = Vec::new();
        let mut q = world.query::<(Entity, &mut Frame, &mut Coeffs)>();
        for (entity, mut frame, mut coeffs) in q.iter_mut(&mut world) {
            frame.index = self.buffer[frame.index as usize].0;
            if let Some(c) = &self.carried {
                coeffs.id.clone_from(&c.shared.id);
                coeffs.tex.clone_from(&c.shared.tex);
                match c.context.get(&frame.index) {
                    Some(exp) => {
                        coeffs.exp.clone_from(exp);
                        held.push((entity, exp.clone()));
                    }
                    None => coeffs.exp.clone_from(&c.last),
                }
            }
        }
        if let Some(c) = &self.carried {
            world.entity_mut(subject).insert(c.shared.clone());
        }
        self.most_held = self.most_held.max(self.buffer.len());
        let iterations = if self.windows == 0 || self.window.iterations == 0 { scene.iterations } else { self.window.iterations };
        tracing::info!("window {}: frames {first}..={last} of clip {} ({} held as context), {iterations} iterations", self.windows + 1, self.clip, held.len());
        let (schedule, after_last) = (build_schedule(self.loaded, self.plan)?, build_after_last(self.loaded, self.plan)?);
        let n = self.buffer.len();
        let mut prepared = Prepared { world, schedule, after_last, model: self.model.clone(), backend: self.backend.clone(), frames: n, skipped: Vec::new(), graph: String::new() };
        let history = std::mem::take(&mut self.history);
        let fit_started = std::time::Instant::now();
        // One identity per clip, the first window's: later windows fit the new frames'
        // expression and pose only. What the step moves of the identity, the albedo and the
        // context's expressions is undone after each iteration.
        let fixed = self.carried.as_ref().map(|c| c.shared.clone());
        let stop_after = self.stop_after;
        let (history, stopped) = iterate_with(&mut prepared, 0..iterations, self.progress, history, |world, _, history| {
            if let (Some(fixed), Some(mut shared)) = (&fixed, world.get_mut::<Coeffs>(subject)) {
                shared.id.clone_from(&fixed.id);
                shared.tex.clone_from(&fixed.tex);
            }
            for (entity, exp) in &held {
                if let Some(mut coeffs) = world.get_mut::<Coeffs>(*entity) {
                    coeffs.exp.clone_from(exp);
                }
            }
            Ok(interrupted() || stop_after == Some(history.0.len() as u32))
        })?;
        clock::add(clock::Stage::Fit, fit_started.elapsed());
        self.history = history;
        if stopped {
            let done = self.history.0.len() as u32 - self.saved_iterations;
            return Err(crate::run::Interrupted { iteration: done, of: iterations, window: Some(self.windows + 1), subject: None, dir: scene.outputs.dir.display().to_string(), command: "run" }.into());
        }
        clock::time(clock::Stage::Write, || finish_fit(&mut prepared))?;
        let mut world = prepared.world;
        let context = self.carried.as_ref().map(|c| c.context.clone()).unwrap_or_default();
        let new = |f: &Frame| !context.contains_key(&f.index);
        clock::time(clock::Stage::Write, || write_frames(scene, &mut world, &self.model, &new, &mut self.written))?;

        let mut q = world.query::<(&Frame, &Coeffs, Option<&Pose>, Option<&Crop>, Option<&Timestamp>, Option<&Landmarks2d>)>();
        let mut rows: Vec<_> = q.iter(&world).collect();
        rows.sort_by_key(|r| r.0.index);
        for (frame, coeffs, pose, crop, time, marks) in rows.iter().filter(|r| new(r.0)) {
            self.records.push(Record {
                clip: self.clip,
                subject: self.buffer[0].1.subject.clone(),
                index: frame.index,
                name: frame.name.clone(),
                coeffs: (*coeffs).clone(),
                pose: pose.cloned(),
                crop: crop.cloned(),
                seconds: time.map(|t| t.seconds),
                landmarks: marks.map(|m| m.points.clone()),
            });
        }
        let overlap = (self.window.overlap as usize).min(n);
        let (_, last_coeffs, ..) = rows[n - 1];
        self.carried = Some(Carried {
            // The identity the frames were decoded with (the subject's has had one more step;
            // without `share_identity`, the last frame's own).
            shared: Coeffs { exp: Vec::new(), ..last_coeffs.clone() },
            context: rows[n - overlap..].iter().map(|r| (r.0.index, r.1.exp.clone())).collect(),
            last: last_coeffs.exp.clone(),
        });
        self.last_terms = world.resource::<LossTerms>().clone();
        self.frames += rows.iter().filter(|r| new(r.0)).count();
        self.windows += 1;
        self.buffer.drain(..n - overlap);
        self.save(false)
    }

    fn save(&mut self, finished: bool) -> anyhow::Result<()> {
        let checkpoint = WindowsCheckpoint {
            scene_file: self.loaded.file.clone(),
            scene: self.loaded.scene.clone(),
            clip: self.clip,
            fitted: self.next_index,
            carried: self.carried.clone(),
            records: self.records.clone(),
            files: self.written.files.clone(),
            frontal: self.written.frontal.iter().map(|(clip, (yaw, _))| (*clip, *yaw)).collect(),
            history: self.history.0.clone(),
            skipped: self.skipped.clone(),
            windows: self.windows,
            frames: self.frames,
            most_held: self.most_held,
            finished,
        };
        let path = self.loaded.scene.outputs.dir.join(FILE);
        atomic_write(&path, serde_json::to_string(&checkpoint)?.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        self.saved_iterations = self.history.0.len() as u32;
        Ok(())
    }

    /// The World the run's summary reads: a subject per clip, a frame per record.
    fn summary_world(&self) -> World {
        let mut world = World::new();
        world.insert_resource(self.last_terms.clone());
        let mut subjects: BTreeMap<u32, Entity> = BTreeMap::new();
        for r in &self.records {
            let subject = *subjects.entry(r.clip).or_insert_with(|| world.spawn(Subject { id: r.clip, name: r.subject.clone() }).id());
            let mut e = world.spawn((Frame { subject, subject_id: r.clip, index: r.index, name: r.name.clone() }, r.coeffs.clone()));
            if let Some(p) = &r.pose {
                e.insert(p.clone());
            }
            if let Some(c) = &r.crop {
                e.insert(c.clone());
            }
            if let Some(seconds) = r.seconds {
                e.insert(Timestamp { seconds });
            }
            if let Some(points) = &r.landmarks {
                e.insert(Landmarks2d { points: points.clone() });
            }
        }
        world
    }

    /// Whether the buffer holds frames not yet fitted (beyond the context).
    fn has_new(&self) -> bool {
        self.buffer.len() > self.carried.as_ref().map_or(0, |c| c.context.len())
    }
}

/// Spawns one clip's frames (a single subject, numbered `clip`); returns the subject.
fn spawn_loaded_one_subject<'a>(world: &mut World, frames: impl IntoIterator<Item = &'a LoadedFrame>, model: &MorphableModel, clip: u32) -> anyhow::Result<Entity> {
    let subjects = crate::run::data::spawn_loaded(world, frames, model);
    let [subject] = subjects[..] else { bail!("a window holds frames of {} clips", subjects.len()) };
    world.get_mut::<Subject>(subject).context("the window's subject")?.id = clip;
    let mut q = world.query::<&mut Frame>();
    for mut frame in q.iter_mut(world) {
        frame.subject_id = clip;
    }
    Ok(subject)
}

/// Runs a scene whose data is video clips and which sets `window`: each clip streamed and fitted
/// window by window; a single clip no longer than one window is fitted all at once (with the
/// checkpoints of any run).
pub(crate) fn run_windows(loaded: &LoadedScene, window: &Window, (spec, clips): (FolderSpec, Vec<Listed>), options: &RunOptions) -> anyhow::Result<RunSummary> {
    go_on(loaded, window, &spec, &clips, options, None)
}

/// Whether `dir` holds a windowed run's checkpoint.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(FILE).exists()
}

/// Continues the windowed run in `dir` from its last finished window: the clips are streamed and
/// tracked again (deterministically), the frames fitted before the stop skipped but for the next
/// window's context.
pub fn resume(dir: &Path, overrides: &[String], options: &RunOptions) -> anyhow::Result<RunSummary> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let checkpoint: WindowsCheckpoint = serde_json::from_str(&text).with_context(|| format!("{}: not a windowed run's checkpoint", path.display()))?;
    if checkpoint.finished {
        bail!("the windowed run in {} is finished", dir.display());
    }
    let mut loaded = LoadedScene { scene: checkpoint.scene.clone(), file: checkpoint.scene_file.clone(), source: String::new() };
    loaded.apply_overrides(overrides)?;
    loaded.scene.outputs.dir = dir.to_path_buf();
    let window = loaded.scene.window.clone().with_context(|| format!("{}: the scene has no `window`", path.display()))?;
    let (spec, clips) = clips_of(&loaded.scene.data)?.with_context(|| format!("{}: the data is not video clips", path.display()))?;
    tracing::info!("resuming {} after window {} (clip {}, {} frames fitted)", dir.display(), checkpoint.windows, checkpoint.clip, checkpoint.fitted);
    go_on(&loaded, &window, &spec, &clips, options, Some(checkpoint))
}

fn go_on(loaded: &LoadedScene, window: &Window, spec: &FolderSpec, clips: &[Listed], options: &RunOptions, from: Option<WindowsCheckpoint>) -> anyhow::Result<RunSummary> {
    let scene = &loaded.scene;
    if window.frames < 2 || window.overlap >= window.frames {
        bail!("{}: window: `frames` must be at least 2 and `overlap` less than `frames` (got {} and {})", loaded.file, window.frames, window.overlap);
    }
    let started = Instant::now();
    let model = Arc::new(load_model(&scene.model)?);
    let plan = plan(loaded)?;
    let backend = Backend::select(scene.backend)?;
    let out_dir = scene.outputs.dir.clone();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating the output folder {}", out_dir.display()))?;
    let mut w = Windowed {
        loaded,
        plan: &plan,
        model: model.clone(),
        backend: backend.clone(),
        window: window.clone(),
        progress: options.progress,
        buffer: Vec::new(),
        next_index: 0,
        clip: 0,
        resume_at: 0,
        saved_iterations: 0,
        last_terms: LossTerms::default(),
        carried: None,
        records: Vec::new(),
        written: Written::default(),
        skipped: Vec::new(),
        stop_after: options.stop_after,
        history: LossHistory::default(),
        windows: 0,
        frames: 0,
        most_held: 0,
    };
    let first_clip = match &from {
        Some(c) => {
            (w.records, w.skipped, w.history, w.carried) = (c.records.clone(), c.skipped.clone(), LossHistory(c.history.clone()), c.carried.clone());
            (w.windows, w.frames, w.most_held, w.saved_iterations) = (c.windows, c.frames, c.most_held, c.history.len() as u32);
            w.written.files.clone_from(&c.files);
            for (clip, yaw) in &c.frontal {
                let name = &c.records.iter().find(|r| r.clip == *clip).with_context(|| format!("{}: no frame of clip {clip}", FILE))?.subject;
                let png = out_dir.join(format!("{name}_texture.png"));
                let image = crate::io::inputs::decode_image(&png).with_context(|| format!("the clip's texture {}", png.display()))?;
                w.written.frontal.insert(*clip, (*yaw, image.into_raw().iter().map(|&b| b as f32 / 255.0).collect()));
            }
            c.clip as usize
        }
        None => 0,
    };
    let single = clips.len() == 1;
    for (k, clip) in clips.iter().enumerate().skip(first_clip) {
        let resuming = from.as_ref().filter(|c| c.clip as usize == k);
        (w.clip, w.next_index, w.resume_at) = (k as u32, 0, resuming.map_or(0, |c| c.fitted));
        if resuming.is_none() {
            w.carried = None;
        }
        let mut skipped = std::mem::take(&mut w.skipped);
        let mut skip = |file: PathBuf, reason: String| -> anyhow::Result<()> {
            if spec.strict {
                bail!("{}: {reason} (strict: every input must be usable)", file.display());
            }
            // A resumed clip's lost frames were listed before the stop.
            if !skipped.iter().any(|s| s.file == file) {
                tracing::warn!("skipped {}: {reason}", file.display());
                skipped.push(Skipped { file, reason });
            }
            Ok(())
        };
        let streamed = stream_video(spec, clip, &mut |frame| w.push(frame), &mut skip);
        w.skipped = skipped;
        streamed?;
        if single && w.windows == 0 {
            // The clip fits in one window: the ordinary run, with its checkpoints.
            if w.buffer.is_empty() {
                bail!("no usable frame in {} ({})", clip.image.display(), w.skipped.iter().map(|s| format!("{}: {}", s.file.display(), s.reason)).collect::<Vec<_>>().join("; "));
            }
            let frames: Vec<LoadedFrame> = w.buffer.drain(..).map(|(_, f)| f).collect();
            let mut world = new_world(&model, &backend, &scene.losses);
            crate::run::data::spawn_loaded(&mut world, &frames, &model);
            let (schedule, after_last) = (build_schedule(loaded, &plan)?, build_after_last(loaded, &plan)?);
            let prepared = Prepared { world, schedule, after_last, model, backend, frames: frames.len(), skipped: w.skipped, graph: svg(&plan) };
            drop(frames);
            return continue_run(loaded, prepared, 0, LossHistory::default(), options);
        }
        if w.has_new() {
            w.fit()?;
        }
    }
    if w.frames == 0 {
        bail!("no usable frame in {} ({} skipped)", spec.path.display(), w.skipped.len());
    }
    tracing::info!("{} frames in {} windows, at most {} frames held at once", w.frames, w.windows, w.most_held);
    w.save(true)?;
    let mut records = w.summary_world();
    let facts = RunFacts {
        backend: backend.describe(),
        frames: w.frames,
        skipped: w.skipped,
        graph: svg(&plan),
        windows: Some(WindowsDone { windows: w.windows, frames: window.frames, overlap: window.overlap, most_held: w.most_held }),
        shard: None,
        merged: None,
    };
    clock::time(clock::Stage::Write, || write_run(loaded, &mut records, &model, facts, w.history, started, w.written))
}
