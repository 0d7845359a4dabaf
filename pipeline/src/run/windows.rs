//! Long clips fitted in overlapping windows (`window: (frames: 100, overlap: 10)`), so memory
//! stays flat in a clip's length. The decoder streams the frames; each window of `frames` frames
//! is fitted as a clip of its own (one identity, expression and pose per frame), then its new
//! frames are written and forgotten, all but the last `overlap`: the next window holds those as
//! context, fixed where they were written, so its temporal term joins the motion across the seam.
//! A window starts from the one before: the identity and albedo are the first window's and stay
//! fixed (one identity per clip; later windows fit expression and pose), and each new frame
//! starts from the expression of the frame before it (the warm start). The run's summary (the clip's animation, stability,
//! report) comes from a small record per frame (coefficients, pose, crop, landmarks), not from
//! the frames. A single clip no longer than one window is fitted all at once, as without windows.

use crate::io::inputs::{list, stream_video, FolderSpec, LoadedFrame, Skipped};
use crate::report::LossHistory;
use crate::run::{clock, continue_run, finish_fit, interrupted, iterate_with, load_model, new_world, write_frames, write_run, Prepared, RunFacts, RunOptions, RunSummary, WindowsDone, Written};
use crate::scene::graph::{build_after_last, build_schedule, plan, svg, Plan};
use crate::scene::{DataSpec, LoadedScene, Window};
use anyhow::{bail, Context};
use bevy_ecs::entity::Entity;
use bevy_ecs::world::World;
use faceforge_components::{Coeffs, Crop, Frame, Landmarks2d, LossTerms, Pose, Subject, Timestamp};
use faceforge_kernels::Backend;
use faceforge_model::MorphableModel;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The clips of a scene's data when it is nothing but video clips (a `Video`, or a `Folder`
/// listing only videos): the folder spec to stream them with, and how many there are.
pub fn clips_of(data: &DataSpec) -> anyhow::Result<Option<(FolderSpec, usize)>> {
    let spec = match data {
        DataSpec::Video(v) => v.folder(),
        DataSpec::Folder(f) => f.clone(),
        _ => return Ok(None),
    };
    let listed = list(&spec)?;
    Ok(listed.iter().all(|l| crate::io::video::is_video(&l.image)).then_some((spec, listed.len())))
}

/// What one window leaves the next: the shared identity and albedo, the expressions of its last
/// `overlap` frames (by frame index; the next window's context), and the last frame's
/// expression (where the new frames start).
struct Carried {
    shared: Coeffs,
    context: BTreeMap<u32, Vec<f32>>,
    last: Vec<f32>,
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
    carried: Option<Carried>,
    /// One record per written frame, and a subject per clip: what the run's summary reads.
    records: World,
    written: Written,
    history: LossHistory,
    windows: usize,
    frames: usize,
    /// The most frames any window's World held.
    most_held: usize,
}

impl Windowed<'_> {
    fn push(&mut self, frame: LoadedFrame) -> anyhow::Result<()> {
        self.buffer.push((self.next_index, frame));
        self.next_index += 1;
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
        let frames: Vec<LoadedFrame> = self.buffer.iter().map(|(_, f)| f.clone()).collect();
        let subject = spawn_loaded_one_subject(&mut world, &frames, &self.model, self.clip)?;
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
        self.most_held = self.most_held.max(frames.len());
        drop(frames);
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
        let (history, stopped) = iterate_with(&mut prepared, 0..iterations, self.progress, history, |world, _, _| {
            if let (Some(fixed), Some(mut shared)) = (&fixed, world.get_mut::<Coeffs>(subject)) {
                shared.id.clone_from(&fixed.id);
                shared.tex.clone_from(&fixed.tex);
            }
            for (entity, exp) in &held {
                if let Some(mut coeffs) = world.get_mut::<Coeffs>(*entity) {
                    coeffs.exp.clone_from(exp);
                }
            }
            Ok(interrupted())
        })?;
        clock::add(clock::Stage::Fit, fit_started.elapsed());
        self.history = history;
        if stopped {
            bail!("interrupted in window {} (frames {first}..={last}); the frames before {first} are written, a windowed fit starts again from the clip's beginning", self.windows + 1);
        }
        clock::time(clock::Stage::Write, || finish_fit(&mut prepared))?;
        let mut world = prepared.world;
        let context = self.carried.as_ref().map(|c| c.context.clone()).unwrap_or_default();
        let new = |f: &Frame| !context.contains_key(&f.index);
        clock::time(clock::Stage::Write, || write_frames(scene, &mut world, &self.model, &new, &mut self.written))?;

        let mut q = world.query::<(&Frame, &Coeffs, Option<&Pose>, Option<&Crop>, Option<&Timestamp>, Option<&Landmarks2d>)>();
        let mut rows: Vec<_> = q.iter(&world).collect();
        rows.sort_by_key(|r| r.0.index);
        let record_subject = self.record_subject();
        for (frame, coeffs, pose, crop, time, marks) in rows.iter().filter(|r| new(r.0)) {
            let mut record = self.records.spawn((Frame { subject: record_subject, ..(*frame).clone() }, (*coeffs).clone()));
            if let Some(p) = pose {
                record.insert((*p).clone());
            }
            if let Some(c) = crop {
                record.insert((*c).clone());
            }
            if let Some(t) = time {
                record.insert(**t);
            }
            if let Some(m) = marks {
                record.insert((*m).clone());
            }
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
        self.records.insert_resource(world.resource::<LossTerms>().clone());
        self.frames += rows.iter().filter(|r| new(r.0)).count();
        self.windows += 1;
        self.buffer.drain(..n - overlap);
        Ok(())
    }

    /// Whether the buffer holds frames not yet fitted (beyond the context).
    fn has_new(&self) -> bool {
        self.buffer.len() > self.carried.as_ref().map_or(0, |c| c.context.len())
    }

    /// The records' subject entity of the current clip (spawned with its first record).
    fn record_subject(&mut self) -> Entity {
        let clip = self.clip;
        let mut q = self.records.query::<(Entity, &Subject)>();
        if let Some((entity, _)) = q.iter(&self.records).find(|(_, s)| s.id == clip) {
            return entity;
        }
        let name = self.buffer.first().map_or_else(String::new, |(_, f)| f.subject.clone());
        self.records.spawn(Subject { id: clip, name }).id()
    }
}

/// Spawns one clip's frames (a single subject, numbered `clip`); returns the subject.
fn spawn_loaded_one_subject(world: &mut World, frames: &[LoadedFrame], model: &MorphableModel, clip: u32) -> anyhow::Result<Entity> {
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
pub fn run_windows(loaded: &LoadedScene, window: &Window, spec: &FolderSpec, options: &RunOptions) -> anyhow::Result<RunSummary> {
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
    let mut records = World::new();
    records.init_resource::<LossTerms>();
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
        carried: None,
        records,
        written: Written::default(),
        history: LossHistory::default(),
        windows: 0,
        frames: 0,
        most_held: 0,
    };
    let mut skipped: Vec<Skipped> = Vec::new();
    let clips = list(spec)?;
    let single = clips.len() == 1;
    for (k, clip) in clips.iter().enumerate() {
        (w.clip, w.next_index, w.carried) = (k as u32, 0, None);
        let mut skip = |file: std::path::PathBuf, reason: String| -> anyhow::Result<()> {
            if spec.strict {
                bail!("{}: {reason} (strict: every input must be usable)", file.display());
            }
            tracing::warn!("skipped {}: {reason}", file.display());
            skipped.push(Skipped { file, reason });
            Ok(())
        };
        stream_video(spec, clip, &mut |frame| w.push(frame), &mut skip)?;
        if single && w.windows == 0 {
            // The clip fits in one window: the ordinary run, with its checkpoints.
            if w.buffer.is_empty() {
                bail!("no usable frame in {} ({})", clip.image.display(), skipped.iter().map(|s| format!("{}: {}", s.file.display(), s.reason)).collect::<Vec<_>>().join("; "));
            }
            let frames: Vec<LoadedFrame> = w.buffer.drain(..).map(|(_, f)| f).collect();
            let mut world = new_world(&model, &backend, &scene.losses);
            crate::run::data::spawn_loaded(&mut world, &frames, &model);
            let (schedule, after_last) = (build_schedule(loaded, &plan)?, build_after_last(loaded, &plan)?);
            let prepared = Prepared { world, schedule, after_last, model, backend, frames: frames.len(), skipped, graph: svg(&plan) };
            drop(frames);
            return continue_run(loaded, prepared, 0, LossHistory::default(), options);
        }
        if w.has_new() {
            w.fit()?;
        }
    }
    if w.frames == 0 {
        bail!("no usable frame in {} ({} skipped)", spec.path.display(), skipped.len());
    }
    tracing::info!("{} frames in {} windows, at most {} frames held at once", w.frames, w.windows, w.most_held);
    let facts = RunFacts {
        backend: backend.describe(),
        frames: w.frames,
        skipped,
        graph: svg(&plan),
        windows: Some(WindowsDone { windows: w.windows, frames: window.frames, overlap: window.overlap, most_held: w.most_held }),
    };
    let Windowed { mut records, written, history, .. } = w;
    clock::time(clock::Stage::Write, || write_run(loaded, &mut records, &model, facts, history, started, written))
}
