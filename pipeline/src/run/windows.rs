//! Long clips fitted in overlapping windows (`window: (frames: 100, overlap: 10)`), so memory
//! stays flat in a clip's length. A run over a folder fits each clip as one of its subjects
//! (`subjects.rs`); this file fits a clip longer than one window.
//!
//! The decoder streams the frames. Each window of `frames` frames is fitted as a clip of its own
//! (one identity, expression and pose per frame). Then its new frames are written and forgotten,
//! all but the last `overlap`: the next window holds those as context, fixed where they were
//! written, so its temporal term joins the motion across the seam.
//!
//! A window starts from the one before. The identity and albedo are the first window's and stay
//! fixed (one identity per clip; later windows fit expression and pose). Each new frame starts
//! from the expression of the frame before it (the warm start).
//!
//! The clip's summary (its animation, stability, the subject's record) comes from a small record
//! per frame (coefficients, pose, crop, landmarks), not from the frames. A clip no longer than one
//! window is fitted all at once, as without windows. After each window,
//! `records/NAME.windows.json` holds what is needed to go on from the next one.

use crate::io::inputs::{stream_video, Listed, LoadedFrame, Skipped};
use crate::report::LossHistory;
use crate::run::subjects::{save_strip, Fitter, SubjectRecord, RECORDS};
use crate::run::{clock, finish_fit, interrupted, iterate_with, new_world, write_frames, Prepared, WindowsDone, Written};
use crate::scene::graph::{build_after_last, build_schedule};
use crate::scene::Window;
use anyhow::{bail, Context};
use bevy_ecs::entity::Entity;
use bevy_ecs::world::World;
use faceforge_components::{Coeffs, Crop, Frame, Landmarks2d, LossTerms, Pose, Subject, Timestamp};
use faceforge_model::{atomic_write, MorphableModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A clip's windows checkpoint, beside its record-to-be.
pub(crate) fn checkpoint_path(dir: &Path, subject: &str) -> PathBuf {
    dir.join(RECORDS).join(format!("{subject}.windows.json"))
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
    subject: String,
    index: u32,
    name: String,
    coeffs: Coeffs,
    pose: Option<Pose>,
    crop: Option<Crop>,
    seconds: Option<f64>,
    landmarks: Option<Vec<[f32; 2]>>,
}

/// What a clip's windows have done, after each window: enough to go on from the next window as
/// if never stopped. f32 values round-trip through JSON exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct WindowsCheckpoint {
    /// How many of the clip's frames (with a face) were fitted.
    fitted: u32,
    carried: Option<Carried>,
    records: Vec<Record>,
    files: Vec<PathBuf>,
    /// The yaw of the most frontal frame written so far (its texture is `CLIP_texture.png`).
    frontal: Option<f32>,
    history: Vec<BTreeMap<String, f32>>,
    skipped: Vec<Skipped>,
    windows: usize,
    frames: usize,
    most_held: usize,
}

/// A clip's windowed fit in progress.
struct Windowed<'a, 'f> {
    fitter: &'f Fitter<'a>,
    subject: &'f str,
    window: Window,
    /// This clip's frames not yet written, with their index in the clip (frames with a face).
    buffer: Vec<(u32, LoadedFrame)>,
    next_index: u32,
    /// Resuming: the clip's frames before this index were fitted before the stop.
    resume_at: u32,
    /// The loss terms of the last window's last iteration.
    last_terms: LossTerms,
    carried: Option<Carried>,
    /// One record per written frame: what the clip's summary reads.
    records: Vec<Record>,
    written: Written,
    skipped: Vec<Skipped>,
    /// Iterations this process ran (with the fitter's before this clip: for `stop_after`).
    ran: u32,
    history: LossHistory,
    /// The history's length at the last checkpoint (the current window's are lost on a stop).
    saved: u32,
    windows: usize,
    frames: usize,
    /// The most frames any window's World held.
    most_held: usize,
}

impl Windowed<'_, '_> {
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
        let f = self.fitter;
        let scene = &f.loaded.scene;
        let (first, last) = (self.buffer[0].0, self.buffer[self.buffer.len() - 1].0);
        let mut world = new_world(&f.model, &f.backend, &scene.losses);
        let subject = spawn_loaded_one_subject(&mut world, self.buffer.iter().map(|(_, f)| f), &f.model)?;
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
        tracing::info!("window {}: frames {first}..={last} of {} ({} held as context), {iterations} iterations", self.windows + 1, self.subject, held.len());
        let (schedule, after_last) = (build_schedule(f.loaded, f.plan)?, build_after_last(f.loaded, f.plan)?);
        let n = self.buffer.len();
        let mut prepared = Prepared { world, schedule, after_last, model: f.model.clone(), backend: f.backend.clone(), frames: n, skipped: Vec::new(), graph: String::new() };
        let history = std::mem::take(&mut self.history);
        let fit_started = std::time::Instant::now();
        // One identity per clip, the first window's: later windows fit the new frames'
        // expression and pose only. What the step moves of the identity, the albedo and the
        // context's expressions is undone after each iteration.
        let fixed = self.carried.as_ref().map(|c| c.shared.clone());
        let (stop_after, mut ran) = (f.options.stop_after, self.ran);
        let (history, stopped) = iterate_with(&mut prepared, 0..iterations, f.progress, history, |world, _, _| {
            if let (Some(fixed), Some(mut shared)) = (&fixed, world.get_mut::<Coeffs>(subject)) {
                shared.id.clone_from(&fixed.id);
                shared.tex.clone_from(&fixed.tex);
            }
            for (entity, exp) in &held {
                if let Some(mut coeffs) = world.get_mut::<Coeffs>(*entity) {
                    coeffs.exp.clone_from(exp);
                }
            }
            ran += 1;
            Ok(interrupted() || stop_after == Some(ran))
        })?;
        self.ran = ran;
        clock::add(clock::Stage::Fit, fit_started.elapsed());
        self.history = history;
        if stopped {
            let done = self.history.0.len() as u32 - self.saved;
            return Err(crate::run::Interrupted { iteration: done, of: iterations, window: Some(self.windows + 1), subject: Some(self.subject.to_string()), dir: f.dir.display().to_string(), command: "run" }.into());
        }
        clock::time(clock::Stage::Write, || finish_fit(&mut prepared))?;
        let mut world = prepared.world;
        let context = self.carried.as_ref().map(|c| c.context.clone()).unwrap_or_default();
        let new = |f: &Frame| !context.contains_key(&f.index);
        clock::time(clock::Stage::Write, || write_frames(scene, &mut world, &f.model, &new, &mut self.written))?;

        let mut q = world.query::<(&Frame, &Coeffs, Option<&Pose>, Option<&Crop>, Option<&Timestamp>, Option<&Landmarks2d>)>();
        let mut rows: Vec<_> = q.iter(&world).collect();
        rows.sort_by_key(|r| r.0.index);
        for (frame, coeffs, pose, crop, time, marks) in rows.iter().filter(|r| new(r.0)) {
            self.records.push(Record {
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
        self.save()
    }

    fn save(&mut self) -> anyhow::Result<()> {
        let checkpoint = WindowsCheckpoint {
            fitted: self.next_index,
            carried: self.carried.clone(),
            records: self.records.clone(),
            files: self.written.files.clone(),
            frontal: self.written.frontal.values().next().map(|(yaw, _)| *yaw),
            history: self.history.0.clone(),
            skipped: self.skipped.clone(),
            windows: self.windows,
            frames: self.frames,
            most_held: self.most_held,
        };
        let path = checkpoint_path(self.fitter.dir, self.subject);
        atomic_write(&path, serde_json::to_string(&checkpoint)?.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        self.saved = self.history.0.len() as u32;
        Ok(())
    }

    /// The World the clip's summary reads: its subject, a frame per record.
    fn summary_world(&self) -> World {
        let mut world = World::new();
        world.insert_resource(self.last_terms.clone());
        let subject = world.spawn(Subject { id: 0, name: self.subject.to_string() }).id();
        for r in &self.records {
            let mut e = world.spawn((Frame { subject, subject_id: 0, index: r.index, name: r.name.clone() }, r.coeffs.clone()));
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

/// Spawns one clip's frames (a single subject); returns the subject.
fn spawn_loaded_one_subject<'a>(world: &mut World, frames: impl IntoIterator<Item = &'a LoadedFrame>, model: &MorphableModel) -> anyhow::Result<Entity> {
    let subjects = crate::run::data::spawn_loaded(world, frames, model);
    let [subject] = subjects[..] else { bail!("a window holds frames of {} clips", subjects.len()) };
    Ok(subject)
}

/// What fitting a clip in windows gave.
pub(crate) enum ClipFit {
    /// The clip has no more frames than one window: fit them all at once, as any subject.
    Whole { frames: Vec<LoadedFrame>, skipped: Vec<Skipped> },
    /// Fitted and written, window by window.
    Windows(Box<SubjectRecord>),
}

/// Fits the clip `listed` (subject `subject` at `position` of the manifest) window by window, going
/// on from its windows checkpoint when there is one. `fitter.iterations` counts what it ran.
pub(crate) fn fit_clip(fitter: &mut Fitter, position: usize, subject: &str, listed: &Listed, window: &Window) -> anyhow::Result<ClipFit> {
    let started = Instant::now();
    if window.frames < 2 || window.overlap >= window.frames {
        bail!("{}: window: `frames` must be at least 2 and `overlap` less than `frames` (got {} and {})", fitter.loaded.file, window.frames, window.overlap);
    }
    let path = checkpoint_path(fitter.dir, subject);
    let from: Option<WindowsCheckpoint> = if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Some(serde_json::from_str(&text).with_context(|| format!("{}: not a clip's windows checkpoint", path.display()))?)
    } else {
        None
    };
    let dir = fitter.dir.to_path_buf();
    let mut w = Windowed {
        fitter: &*fitter,
        subject,
        window: window.clone(),
        buffer: Vec::new(),
        next_index: 0,
        resume_at: 0,
        last_terms: LossTerms::default(),
        carried: None,
        records: Vec::new(),
        written: Written::default(),
        skipped: Vec::new(),
        ran: fitter.iterations,
        history: LossHistory::default(),
        saved: 0,
        windows: 0,
        frames: 0,
        most_held: 0,
    };
    if let Some(c) = from {
        tracing::info!("{subject}: going on after window {} ({} frames fitted)", c.windows, c.fitted);
        (w.records, w.skipped, w.history, w.carried, w.resume_at) = (c.records, c.skipped, LossHistory(c.history), c.carried, c.fitted);
        (w.windows, w.frames, w.most_held, w.saved) = (c.windows, c.frames, c.most_held, w.history.0.len() as u32);
        w.written.files = c.files;
        if let Some(yaw) = c.frontal {
            let png = dir.join(format!("{subject}_texture.png"));
            let image = crate::io::inputs::decode_image(&png).with_context(|| format!("the clip's texture {}", png.display()))?;
            w.written.frontal.insert(0, (yaw, image.into_raw().iter().map(|&b| b as f32 / 255.0).collect()));
        }
    }
    let spec = w.fitter.spec;
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
    let streamed = stream_video(spec, listed, &mut |frame| w.push(frame), &mut skip);
    w.skipped = skipped;
    streamed?;
    if w.windows == 0 {
        return Ok(ClipFit::Whole { frames: w.buffer.drain(..).map(|(_, f)| f).collect(), skipped: w.skipped });
    }
    if w.has_new() {
        w.fit()?;
    }
    tracing::info!("{subject}: {} frames in {} windows, at most {} frames held at once", w.frames, w.windows, w.most_held);
    let (model, scene) = (&w.fitter.model, &w.fitter.loaded.scene);
    let mut world = w.summary_world();
    let Written { mut files, strips, frontal } = std::mem::take(&mut w.written);
    if scene.outputs.animation {
        files.extend(crate::io::outputs::write_clip_animations(&mut world, model, &dir, &frontal, scene.outputs.texture)?);
    }
    let record = SubjectRecord {
        subject: subject.to_string(),
        position,
        frames: w.frames,
        files: files.iter().map(|f| f.strip_prefix(&dir).map_or_else(|_| f.clone(), Path::to_path_buf)).collect(),
        skipped: w.skipped.clone(),
        clips: crate::eval::stability::measure_clips(&mut world, model),
        history: w.history.0.clone(),
        strips: if position < crate::report::MAX_FRAME_STRIPS { strips.iter().map(|s| save_strip(&dir, s)).collect::<anyhow::Result<_>>()? } else { Vec::new() },
        windows: Some(WindowsDone { windows: w.windows, frames: window.frames, overlap: window.overlap, most_held: w.most_held }),
        seconds: started.elapsed().as_secs_f64(),
        ..SubjectRecord::default()
    };
    let ran = w.ran;
    fitter.iterations = ran;
    Ok(ClipFit::Windows(Box::new(record)))
}
