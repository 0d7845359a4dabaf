//! `faceforge train`: learn mode. Each step draws a fresh batch of synthetic frames (seeded by the
//! step, so a resumed training sees the batches an uninterrupted one would), or takes the next
//! items of a folder's or a video's frames (`real_data`, a seeded shuffle per epoch) with
//! synthetic faces mixed in, runs the scene's graph once — `encode` (the network), the fit mode's
//! stages and losses, `encode_backward`, `encoder_step` — and so trains the network through the ECS graph. At the end: the weights
//! (burn's record), the loss history, and the network measured on held-out frames against the
//! mean-face baseline.

use crate::run::data;
use crate::run::real_data::{EpochPosition, RealSet};
use crate::scene::graph::{build_schedule, plan};
use crate::eval::metrics::{mean_of_bin_means, nme_2d, pose_error, yaw_bin, Spread};
use crate::report::{run_html, run_markdown, LossHistory, RunReport};
use crate::run::{load_model, peak_memory_mb};
use crate::scene::{DataSpec, LoadedScene};
use crate::io::synth::SynthSpec;
use anyhow::{bail, Context};
use bevy_ecs::prelude::{Entity, Or, Schedule, With, World};
use faceforge_components::{Coeffs, Frame, GroundTruth, Image, Iteration, LossTerms, Landmarks2d, Landmarks3d, Pose, Rendered, Subject};
use crate::report::svg::{LinePlot, Series};
use faceforge_kernels::{project, Backend};
use crate::scene::learn::LearnSpec;
use faceforge_learn::{LearnDevice, Learner, Trained};
use faceforge_model::{atomic_write, MorphableModel, SplitMix64};
use faceforge_systems::{registry, StageErrors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The batch of step `step`: the scene's synthetic spec with a seed of its own.
pub fn batch_spec(spec: &SynthSpec, step: u32) -> SynthSpec {
    SynthSpec { seed: spec.seed.wrapping_add(1 + step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), ..spec.clone() }
}

/// The held-out frames: a seed no training batch uses.
pub fn held_out_spec(spec: &SynthSpec, subjects: u32) -> SynthSpec {
    SynthSpec { seed: spec.seed ^ 0x0E7A_1000_0000_0001, subjects, ..spec.clone() }
}

/// What the network does on held-out frames, against the truth.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeldOut {
    pub frames: usize,
    /// 2D NME (%) of the network's own landmarks X_UV; mean of the yaw-bin means.
    pub nme_network: Option<f32>,
    /// 2D NME (%) of the model's landmarks under the pose (PGN's closed form, or the pose head).
    pub nme_reconstruction: Option<f32>,
    /// 2D NME (%) of the mean face at the mean pose: the training set's average landmarks.
    pub nme_mean_face: f32,
    /// Pose error (degrees, geodesic) of the reconstruction.
    pub pose_error_deg: Option<Spread>,
    /// The shape: per-vertex error (mm) and dense 3D NME (%) after rigid alignment, for the
    /// prediction and for the mean face (PGN's Table 2 metric; docs/evaluation.md).
    pub per_vertex_mm: Option<Spread>,
    pub nme_3d: Option<f32>,
    pub mean_face_per_vertex_mm: f32,
    pub mean_face_nme_3d: f32,
    /// Per yaw bin: frames, NME of X_UV, of the reconstruction, of the mean face, pose error.
    pub by_yaw: Vec<HeldOutBin>,
    /// PGN's Fig. 1: the reconstruction's NME with one of pose, identity, expression replaced by
    /// the truth (mean of the yaw-bin means).
    pub with_true_pose: Option<f32>,
    pub with_true_identity: Option<f32>,
    pub with_true_expression: Option<f32>,
    /// With appearance heads: the predicted albedo's RMS error over vertices (1/255), and the
    /// mean albedo's on the same frames.
    #[serde(default)]
    pub albedo_255: Option<Spread>,
    #[serde(default)]
    pub mean_albedo_255: Option<f32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeldOutBin {
    pub bin: String,
    pub frames: usize,
    pub nme_network: Option<f32>,
    pub nme_reconstruction: Option<f32>,
    pub nme_mean_face: f32,
    pub pose_error_deg: Option<f32>,
}

/// What `faceforge train` writes as `train.json`.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    pub scene: String,
    pub steps: u32,
    pub frames_per_step: usize,
    pub seconds: f64,
    pub weights: PathBuf,
    /// On held-out synthetic faces (none, `frames: 0`, when the training has no synthetic data).
    pub held_out: HeldOut,
    /// On held-out real frames, at the start, at each checkpoint and at the end (`Folder` or
    /// `Video` data).
    pub held_out_real: Vec<RealHeldOut>,
    /// Where the last step's batch started in the epochs (`Folder` or `Video` data).
    pub epoch: Option<EpochPosition>,
    pub losses: BTreeMap<String, f32>,
    #[serde(skip)]
    pub loss_history: LossHistory,
    pub peak_memory_mb: Option<f64>,
    pub out_dir: PathBuf,
    /// Where the networks ran (`learn.device`) and the kernels (`backend`).
    pub devices: String,
}

/// The training state a killed run resumes from (`checkpoint/` in the output folder).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    scene_file: String,
    scene: crate::Scene,
    step: u32,
    loss_history: Vec<BTreeMap<String, f32>>,
    /// Where the next step's batch starts (`Folder`/`Video` data; it follows from the step and
    /// the seed, and is kept here to be read).
    #[serde(default)]
    epoch: Option<EpochPosition>,
    #[serde(default)]
    held_out_real: Vec<RealHeldOut>,
}

/// What the network does on held-out real frames, which have no 3D truth: 2D NME against the
/// data's own landmarks (the `.pts` files or the detector's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RealHeldOut {
    /// Steps trained when measured.
    pub step: u32,
    pub frames: usize,
    /// 2D NME (%) of the network's landmarks X_UV (a guidance network).
    pub nme_network: Option<f32>,
    /// 2D NME (%) of the model's landmarks under the pose (once the heads are trained).
    pub nme_reconstruction: Option<f32>,
    /// 2D NME (%) of the training frames' mean landmarks: a prediction that ignores the image.
    pub nme_mean: f32,
    /// The photometric error of the re-render on the face region: mean absolute RGB difference
    /// (1/255) between each frame and its reconstruction drawn over it (once the heads are
    /// trained; the mean albedo and default light without appearance heads).
    #[serde(default)]
    pub photometric_255: Option<f32>,
}

/// Where a training's frames come from.
pub enum TrainingData {
    /// A fresh synthetic batch each step.
    Synthetic(SynthSpec),
    /// A folder's or a video's frames, with synthetic faces mixed into every step.
    Real { set: std::sync::Arc<RealSet>, synthetic: Option<SynthSpec> },
}

impl TrainingData {
    /// The synthetic faces of each step, if any.
    pub fn synthetic(&self) -> Option<&SynthSpec> {
        match self {
            TrainingData::Synthetic(spec) => Some(spec),
            TrainingData::Real { synthetic, .. } => synthetic.as_ref(),
        }
    }
}

/// A scene's training data as written: synthetic, or a folder (a video's included).
enum DataSource<'a> {
    Synthetic(&'a SynthSpec),
    Real(crate::io::inputs::FolderSpec),
}

const CHECKPOINT: &str = "checkpoint";

fn learn_spec(loaded: &LoadedScene) -> anyhow::Result<(&LearnSpec, DataSource<'_>)> {
    let scene = &loaded.scene;
    let Some(learn) = &scene.learn else {
        bail!("{}: `faceforge train` needs a `learn: (...)` section (network, trained parts); `faceforge run` fits without one", loaded.file);
    };
    let input = learn.network.input;
    let check_size = |what: &str, size: usize| -> anyhow::Result<()> {
        if size != input {
            bail!("{}: {what} is {size} but learn.network.input is {input}: the network takes the frames as they are", loaded.file);
        }
        Ok(())
    };
    let source = match &scene.data {
        DataSpec::Synthetic(spec) => {
            check_size("data.Synthetic.size", spec.size)?;
            if learn.synthetic.is_some() {
                bail!("{}: learn.synthetic mixes synthetic faces into real data; with `data: Synthetic(...)` every frame is synthetic already", loaded.file);
            }
            DataSource::Synthetic(spec)
        }
        DataSpec::Folder(spec) => {
            check_size("data.Folder.size", spec.size)?;
            DataSource::Real(spec.clone())
        }
        DataSpec::Video(spec) => {
            check_size("data.Video.size", spec.size)?;
            DataSource::Real(spec.folder())
        }
        DataSpec::Sampled(_) => bail!("{}: training needs images: `data: Synthetic(...)`, `Folder(...)` or `Video(...)`", loaded.file),
    };
    if let Some(mix) = &learn.synthetic {
        check_size("learn.synthetic.size", mix.size)?;
    }
    learn.network.check().map_err(|e| anyhow::anyhow!("{}: {e}", loaded.file))?;
    Ok((learn, source))
}

/// The scene's training data, a folder's frames loaded (once, for the whole training).
fn training_data(loaded: &LoadedScene, model: &MorphableModel) -> anyhow::Result<TrainingData> {
    let (learn, source) = learn_spec(loaded)?;
    Ok(match source {
        DataSource::Synthetic(spec) => TrainingData::Synthetic(spec.clone()),
        DataSource::Real(folder) => {
            let set = RealSet::load(&folder, model, learn.group, learn.held_out, loaded.scene.seed)?;
            tracing::info!("{}: {} frames, {} items of {} trained on, {} held out", folder.path.display(), set.len(), set.training_items(), learn.group.max(1), learn.held_out);
            TrainingData::Real { set: std::sync::Arc::new(set), synthetic: learn.synthetic.clone() }
        }
    })
}

/// The device `learn.device` resolves to here, said once per training.
fn learn_device(learn: &LearnSpec) -> anyhow::Result<LearnDevice> {
    let device = LearnDevice::select(learn.device)?;
    tracing::info!("networks on {} (learn.device: {:?})", device.describe(), learn.device);
    Ok(device)
}

fn new_learner(learn: &LearnSpec, model: &MorphableModel) -> anyhow::Result<Learner> {
    let device = learn_device(learn)?.device;
    let mut learner = match &learn.init {
        Some(path) => {
            let l = Learner::load_on(path, model, device)?;
            if l.info.network != learn.network {
                tracing::info!("network from {} (its own shape, not the scene's)", path.display());
            }
            if l.info.heads() != learn.heads() {
                bail!("{}: the network's heads are {:?} but the scene's learn section asks for {:?}", path.display(), l.info.heads(), learn.heads());
            }
            l
        }
        None => Learner::new_on(&learn.network, model, learn.heads(), device)?,
    };
    learner.configure(learn.trained, true);
    learner.learning_rate = learn.learning_rate;
    Ok(learner)
}

/// Replaces the World's frames and subjects by step `step`'s batch: its synthetic faces (the 3D
/// annotations of their 2D-only share dropped), then its real frames.
fn feed(world: &mut World, learn: &LearnSpec, data: &TrainingData, model: &MorphableModel, backend: &Backend, step: u32, loaded: Option<Vec<crate::io::inputs::LoadedFrame>>) -> anyhow::Result<usize> {
    let old: Vec<Entity> = world.query_filtered::<Entity, Or<(With<Frame>, With<Subject>)>>().iter(world).collect();
    for e in old {
        world.despawn(e);
    }
    let mut frames = match data.synthetic() {
        Some(spec) => feed_synthetic(world, learn, spec, model, backend, step)?,
        None => 0,
    };
    if let TrainingData::Real { set, .. } = data {
        let batch = match loaded {
            Some(batch) => batch,
            None => set.batch(step, learn.batch)?,
        };
        let first_subject = world.query::<&Subject>().iter(world).count() as u32;
        data::spawn_loaded_after(world, &batch, model, first_subject);
        frames += batch.len();
    }
    Ok(frames)
}

fn feed_synthetic(world: &mut World, learn: &LearnSpec, spec: &SynthSpec, model: &MorphableModel, backend: &Backend, step: u32) -> anyhow::Result<usize> {
    let batch = batch_spec(spec, step);
    let (frames, _) = data::populate(world, &DataSpec::Synthetic(batch.clone()), model, backend, batch.seed)?;
    if learn.two_d_fraction > 0.0 {
        let mut rng = SplitMix64::new(batch.seed ^ 0x2D);
        let mut named: Vec<(String, Entity)> = world.query::<(Entity, &Frame)>().iter(world).map(|(e, f)| (f.name.clone(), e)).collect();
        named.sort();
        for (_, e) in named {
            if (rng.uniform() as f32) < learn.two_d_fraction {
                world.entity_mut(e).remove::<Landmarks3d>();
            }
        }
    }
    Ok(frames)
}

/// A training's World and schedule: the frames of the current step, the resources, the
/// learner, and the scene's graph.
pub struct Session {
    pub world: World,
    pub schedule: Schedule,
    pub model: std::sync::Arc<MorphableModel>,
    pub backend: Backend,
    pub learn: LearnSpec,
    pub data: TrainingData,
    /// Real batches read ahead by the loader: the next step it sends, and the channel.
    ahead: Option<(u32, crossbeam_channel::Receiver<anyhow::Result<Vec<crate::io::inputs::LoadedFrame>>>)>,
}

impl Session {
    /// Checks the scene and builds its World around `learner` (the scene's own when `None`).
    pub fn new(loaded: &LoadedScene, learner: Option<Learner>) -> anyhow::Result<Self> {
        Self::with_model(loaded, std::sync::Arc::new(load_model(&loaded.scene.model)?), learner)
    }

    /// `new` with the scene's model already loaded.
    pub fn with_model(loaded: &LoadedScene, model: std::sync::Arc<MorphableModel>, learner: Option<Learner>) -> anyhow::Result<Self> {
        let data = training_data(loaded, &model)?;
        Self::with_data(loaded, model, learner, data)
    }

    /// `with_model` on given data instead of the scene's (frames already in memory).
    pub fn with_data(loaded: &LoadedScene, model: std::sync::Arc<MorphableModel>, learner: Option<Learner>, data: TrainingData) -> anyhow::Result<Self> {
        let (learn, _) = learn_spec(loaded)?;
        let scene = &loaded.scene;
        let plan = plan(loaded)?;
        let schedule = build_schedule(loaded, &plan)?;
        let backend = Backend::select(scene.backend)?;
        let learner = match learner {
            Some(l) => l,
            None => new_learner(learn, &model)?,
        };
        let mut world = crate::run::new_world(&model, &backend, &scene.losses);
        world.insert_resource(learner);
        Ok(Self { world, schedule, model, backend, learn: learn.clone(), data, ahead: None })
    }

    /// Puts step `step`'s batch in the World; returns its frame count.
    pub fn feed(&mut self, step: u32) -> anyhow::Result<usize> {
        let real = match &mut self.ahead {
            Some((next, receiver)) if *next == step => {
                *next += 1;
                Some(receiver.recv().map_err(|_| anyhow::anyhow!("the frame loader stopped before step {step}"))??)
            }
            _ => None,
        };
        feed(&mut self.world, &self.learn, &self.data, &self.model, &self.backend, step, real)
    }

    /// Starts the loader on steps `from..to` of real data (nothing for synthetic data): `feed`
    /// takes those steps' batches from it, in order.
    pub fn load_ahead(&mut self, from: u32, to: u32) {
        if let TrainingData::Real { set, .. } = &self.data {
            self.ahead = Some((from, set.load_ahead(from, to, self.learn.batch)));
        }
    }

    /// Where step `step`'s batch starts in the epochs of real data.
    pub fn epoch(&self, step: u32) -> Option<EpochPosition> {
        match &self.data {
            TrainingData::Real { set, .. } => Some(set.position(step, self.learn.batch)),
            TrainingData::Synthetic(_) => None,
        }
    }

    /// The network, as trained so far, on the held-out real frames (none with synthetic data).
    /// Inference only: the training goes on as if it had not been measured.
    pub fn measure_real(&mut self, step: u32) -> anyhow::Result<Option<RealHeldOut>> {
        let TrainingData::Real { set, .. } = &self.data else { return Ok(None) };
        let learner = self.world.remove_resource::<Learner>().expect("the learner");
        let (learner, measured) = evaluate_real(learner, &self.model, &self.backend, set, step)?;
        self.world.insert_resource(learner);
        tracing::info!("held-out real frames at step {step}: 2D NME network {}, reconstruction {}, mean {:.2} %; redrawn {}", pct(measured.nme_network), pct(measured.nme_reconstruction), measured.nme_mean, measured.photometric_255.map_or("–".into(), |e| format!("{e:.1}/255")));
        Ok(Some(measured))
    }

    /// Runs the graph once on the frames in the World (at step `step`'s learning rate); returns
    /// the loss terms.
    pub fn run(&mut self, step: u32) -> anyhow::Result<BTreeMap<String, f32>> {
        self.world.resource_mut::<Learner>().learning_rate = self.learn.rate(step);
        self.world.resource_mut::<Iteration>().0 = step;
        self.schedule.run(&mut self.world);
        let errors = std::mem::take(&mut self.world.resource_mut::<StageErrors>().0);
        if let Some(first) = errors.first() {
            bail!("step {step}: {first}");
        }
        Ok(self.world.resource::<LossTerms>().terms.clone())
    }
}

/// Trains the scene's network, checkpointing in `OUT/checkpoint/`; `resume` continues from there.
pub fn train(loaded: &LoadedScene, options: &crate::run::RunOptions, resume: bool) -> anyhow::Result<TrainSummary> {
    let started = Instant::now();
    let (learn, _) = learn_spec(loaded)?;
    let scene = &loaded.scene;
    let out_dir = scene.outputs.dir.clone();
    let checkpoint_dir = out_dir.join(CHECKPOINT);
    let model = std::sync::Arc::new(load_model(&scene.model)?);
    let (start, mut history, learner) = if resume {
        let text = std::fs::read_to_string(checkpoint_dir.join("state.json")).with_context(|| format!("reading {}", checkpoint_dir.join("state.json").display()))?;
        let state: TrainState = serde_json::from_str(&text).with_context(|| format!("{}", checkpoint_dir.join("state.json").display()))?;
        let mut learner = Learner::load_on(&checkpoint_dir.join("weights.bpk"), &model, learn_device(learn)?.device)?;
        learner.configure(learn.trained, true);
        learner.restore_optimizer(std::fs::read(checkpoint_dir.join("optimizer.bpk")).with_context(|| format!("reading {}", checkpoint_dir.join("optimizer.bpk").display()))?)?;
        learner.steps = state.step as u64;
        tracing::info!("resuming {} at step {} of {}", out_dir.display(), state.step, scene.iterations);
        (state.step, LossHistory(state.loss_history), Some((learner, state.held_out_real)))
    } else {
        crate::run::check_output_folder(&out_dir, options.overwrite)?;
        (0, LossHistory::default(), None)
    };
    let (learner, mut held_out_real) = learner.map_or((None, Vec::new()), |(l, h)| (Some(l), h));
    let mut session = Session::with_model(loaded, model, learner)?;
    std::fs::create_dir_all(&checkpoint_dir).with_context(|| format!("creating {}", checkpoint_dir.display()))?;
    if start == 0 {
        // Where the network starts on the held-out real frames: what the training improves on.
        held_out_real.extend(session.measure_real(0)?);
    }

    let save = |world: &World, step: u32, history: &LossHistory, held_out_real: &[RealHeldOut], epoch: Option<EpochPosition>| -> anyhow::Result<()> {
        let learner = world.resource::<Learner>();
        learner.save_weights(&checkpoint_dir.join("weights.bpk"))?;
        atomic_write(&checkpoint_dir.join("optimizer.bpk"), &learner.optimizer_bytes()?)?;
        let state = TrainState { scene_file: loaded.file.clone(), scene: scene.clone(), step, loss_history: history.0.clone(), epoch, held_out_real: held_out_real.to_vec() };
        atomic_write(&checkpoint_dir.join("state.json"), serde_json::to_string(&state)?.as_bytes())?;
        Ok(())
    };

    let bar = crate::run::progress_bar(options.progress, scene.iterations, start);
    let mut frames_per_step = 0;
    let every = scene.outputs.checkpoint_every;
    session.load_ahead(start, scene.iterations);
    for step in start..scene.iterations {
        frames_per_step = session.feed(step)?;
        let terms = session.run(step).inspect_err(|_| bar.abandon())?;
        bar.set_message(format!("loss {:.4}", terms.values().sum::<f32>()));
        history.0.push(terms);
        bar.inc(1);
        let done = step + 1;
        let interrupted = crate::run::interrupted() || options.stop_after == Some(done);
        let checkpoint = every > 0 && done % every == 0;
        if checkpoint && done < scene.iterations {
            held_out_real.extend(session.measure_real(done)?);
        }
        if interrupted || checkpoint {
            save(&session.world, done, &history, &held_out_real, session.epoch(done))?;
        }
        if interrupted && done < scene.iterations {
            bar.abandon();
            return Err(crate::run::Interrupted { iteration: done, of: scene.iterations, window: None, subject: None, dir: out_dir.display().to_string(), command: "train" }.into());
        }
    }
    bar.finish();
    let end = scene.iterations.max(start);
    if held_out_real.last().is_none_or(|h| h.step < end) {
        held_out_real.extend(session.measure_real(end)?);
    }
    let epoch = session.epoch(end);
    save(&session.world, end, &history, &held_out_real, epoch)?;

    let Session { mut world, model, backend, data, .. } = session;
    let mut learner = world.remove_resource::<Learner>().expect("the learner");
    let weights = out_dir.join("weights.bpk");
    learner.save_weights(&weights)?;
    learner.configure(learner.trained, false);
    let held_out = match data.synthetic() {
        Some(spec) => evaluate(learner, &model, &backend, &held_out_spec(spec, learn.held_out), spec)?.1,
        None => HeldOut::default(),
    };
    let seconds = started.elapsed().as_secs_f64();
    let summary = TrainSummary {
        scene: loaded.name(),
        steps: scene.iterations,
        frames_per_step,
        seconds,
        weights,
        held_out,
        held_out_real,
        epoch,
        losses: history.0.last().cloned().unwrap_or_default(),
        loss_history: history,
        peak_memory_mb: peak_memory_mb(),
        out_dir: out_dir.clone(),
        devices: format!("networks: {}; kernels: {}", LearnDevice::select(learn.device)?.describe(), backend.describe()),
    };
    write_report(loaded, &summary)?;
    Ok(summary)
}

fn write_report(loaded: &LoadedScene, s: &TrainSummary) -> anyhow::Result<()> {
    let h = &s.held_out;
    let mut facts = vec![
        ("scene".to_string(), loaded.file.clone()),
        ("steps × frames".into(), format!("{} × {}", s.steps, s.frames_per_step)),
        ("time".into(), format!("{:.1} s", s.seconds)),
        ("devices".into(), s.devices.clone()),
    ];
    if let Some(e) = &s.epoch {
        facts.push(("epochs".into(), epochs_text(e)));
    }
    if let (Some(first), Some(last)) = (s.held_out_real.first(), s.held_out_real.last()) {
        facts.push((format!("held-out real frames ({})", last.frames), real_text(first, last)));
    }
    if h.frames > 0 {
        facts.extend([
            ("held-out synthetic frames".into(), h.frames.to_string()),
            ("2D NME, network landmarks X_UV".into(), pct(h.nme_network)),
            ("2D NME, reconstruction (model landmarks under the pose)".into(), pct(h.nme_reconstruction)),
            ("2D NME, mean face at the mean pose".into(), pct(Some(h.nme_mean_face))),
        ]);
    }
    if let Some(p) = &h.pose_error_deg {
        facts.push(("pose error".into(), format!("{:.2}° ± {:.2}°", p.mean, p.std)));
    }
    if let (Some(v), Some(n)) = (&h.per_vertex_mm, h.nme_3d) {
        facts.push(("shape: per-vertex error, 3D NME".into(), format!("{:.3} ± {:.3} mm, {n:.2} % (mean face {:.3} mm, {:.2} %)", v.mean, v.std, h.mean_face_per_vertex_mm, h.mean_face_nme_3d)));
    }
    for b in &h.by_yaw {
        facts.push((
            format!("yaw {} ({} frames)", b.bin, b.frames),
            format!("X_UV {}, reconstruction {}, mean face {}, pose {}", pct(b.nme_network), pct(b.nme_reconstruction), pct(Some(b.nme_mean_face)), b.pose_error_deg.map_or("–".into(), |d| format!("{d:.2}°"))),
        ));
    }
    for (name, v) in [("with the true pose", h.with_true_pose), ("with the true identity", h.with_true_identity), ("with the true expression", h.with_true_expression)] {
        if v.is_some() {
            facts.push((format!("2D NME {name}"), pct(v)));
        }
    }
    facts.push(("peak memory".into(), crate::run::megabytes(s.peak_memory_mb)));
    let graph = crate::scene::graph::plan(loaded).ok().map(|p| crate::scene::graph::svg(&p));
    let report = RunReport { title: loaded.name(), facts, metrics: None, losses: &s.loss_history, images: &[], heat_map: None, graph, clips: &[], viewers: Vec::new(), plots: real_plots(&s.held_out_real) };
    for (name, text) in [
        ("report.md", run_markdown(&report)),
        ("report.html", run_html(&report)),
        ("losses.csv", s.loss_history.csv()),
        ("train.json", serde_json::to_string_pretty(s)?),
    ] {
        let path = s.out_dir.join(name);
        atomic_write(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The model's landmarks for `coeffs` under `pose`, in pixels.
fn projected_landmarks(model: &MorphableModel, coeffs: &Coeffs, pose: &Pose) -> Vec<[f32; 2]> {
    let points: Vec<f32> = faceforge_systems::pgn::landmark_positions(model, coeffs).concat();
    let (camera_model, camera) = pose.camera();
    project::forward_cpu(camera_model, &points, &camera, points.len() / 3).chunks(4).map(|p| [p[0], p[1]]).collect()
}

/// Runs the network (inference) and the pose it implies on the frames `fill` spawns (PGN's
/// closed form from a guidance network's landmarks; a pose head's output read as the data's
/// camera, the calibrated pinhole one when `pinhole`), then the systems `also` names (with their
/// settings). Returns the learner as it was configured, and the World.
fn run_network(mut learner: Learner, model: &std::sync::Arc<MorphableModel>, backend: &Backend, pinhole: bool, also: &[(&str, &str)], fill: impl FnOnce(&mut World) -> anyhow::Result<()>) -> anyhow::Result<(Learner, World)> {
    let (guide, conditional) = (learner.net.pose.is_none(), learner.info.conditional);
    let mut world = crate::run::new_world(model, backend, &BTreeMap::new());
    fill(&mut world)?;
    let (trained, was) = (learner.trained, learner.training);
    learner.configure(trained, false);
    world.insert_resource(learner);
    // In stage order: pgn must see the landmarks and coefficients encode wrote.
    let mut schedule = crate::scene::graph::staged_schedule();
    // A pose head's output is read as the data's camera: weak perspective, or the calibrated
    // pinhole camera of `focal` data (MGCNet).
    let pose_system = match (guide, pinhole) {
        (true, _) => "pgn",
        (false, true) => "pinhole_pose",
        (false, false) => "direct_pose",
    };
    let encode_settings = if guide { "(guide: true)" } else { "(guide: false)" };
    let encoder = if conditional { "encode_conditional" } else { "encode" };
    for entry in faceforge_learn::registry().into_iter().chain(registry()).filter(|e| e.name == encoder || e.name == pose_system || also.iter().any(|(name, _)| *name == e.name)) {
        let settings = (entry.name == "encode").then_some(encode_settings).or((entry.name == "pgn").then_some("(camera: ScaledRotation)")).or(also.iter().find(|(name, _)| *name == entry.name).map(|(_, s)| *s));
        schedule.add_systems((entry.build)(settings).map_err(|e| anyhow::anyhow!("{}: {e}", entry.name))?);
    }
    schedule.run(&mut world);
    let mut learner = world.remove_resource::<Learner>().expect("the learner");
    learner.configure(trained, was);
    if let Some(e) = world.resource::<StageErrors>().0.first() {
        bail!("evaluating: {e}");
    }
    Ok((learner, world))
}

/// Whether the heads that give a reconstruction are trained (not only PGN's guidance).
fn heads_trained(learner: &Learner) -> bool {
    learner.trained != Trained::Guidance || learner.net.pose.is_some()
}

/// Runs the network (inference) on a synthetic set and measures it against the truth.
pub fn evaluate(learner: Learner, model: &std::sync::Arc<MorphableModel>, backend: &Backend, spec: &SynthSpec, training_spec: &SynthSpec) -> anyhow::Result<(Learner, HeldOut)> {
    let guide = learner.net.pose.is_none();
    let learner_has_albedo = learner.info.appearance;
    let mut frames = 0;
    let (learner, mut world) = run_network(learner, model, backend, spec.focal > 0.0, &[], |world| {
        frames = data::populate(world, &DataSpec::Synthetic(spec.clone()), model, backend, spec.seed)?.0;
        Ok(())
    })?;
    let mean_face = mean_landmarks(model, backend, training_spec)?;

    struct Row {
        yaw: f32,
        network: Option<f32>,
        reconstruction: f32,
        mean_face: f32,
        pose: Option<f32>,
        subs: [f32; 3],
        shape: crate::eval::metrics::FrameMetrics,
        /// Predicted and mean albedo against the truth (1/255), with an albedo head.
        albedo: Option<[f32; 2]>,
    }
    let decode = |c: &Coeffs| faceforge_systems::reconstruct::decode_stacked(&Backend::Cpu, model, None, 1, &c.id, &c.exp, None).0;
    let mean_shape = model.mean_shape().to_vec();
    let mut rows = Vec::new();
    for (frame, coeffs, pose, marks, truth) in world.query::<(&Frame, &Coeffs, &Pose, Option<&Landmarks2d>, &GroundTruth)>().iter(&world) {
        let true_pose = truth.pose.as_ref().with_context(|| format!("frame {} has no true pose", frame.name))?;
        let exact = projected_landmarks(model, &truth.coeffs, true_pose);
        let nme = |p: &[[f32; 2]]| nme_2d(p, &exact) as f32;
        let yaw = crate::eval::metrics::ypr_deg(Some(true_pose)).map_or(0.0, |a| a[0]);
        let with = |id: bool, exp: bool| Coeffs { id: if id { truth.coeffs.id.clone() } else { coeffs.id.clone() }, exp: if exp { truth.coeffs.exp.clone() } else { coeffs.exp.clone() }, tex: coeffs.tex.clone() };
        rows.push(Row {
            yaw,
            network: marks.filter(|_| guide).map(|m| nme(&m.points)),
            reconstruction: nme(&projected_landmarks(model, coeffs, pose)),
            mean_face: nme(&mean_face),
            pose: pose_error(pose, true_pose),
            subs: [nme(&projected_landmarks(model, coeffs, true_pose)), nme(&projected_landmarks(model, &with(true, false), pose)), nme(&projected_landmarks(model, &with(false, true), pose))],
            shape: {
                let (predicted, truth_shape) = (decode(coeffs), decode(&truth.coeffs));
                let p = crate::eval::metrics::Prediction { shape: &predicted, landmarks_2d: None, pose: Some(pose) };
                let t = crate::eval::metrics::Truth { shape: &truth_shape, landmarks_2d: None, pose: Some(true_pose) };
                crate::eval::metrics::measure_frame(model, &frame.name, &p, &t, &mean_shape).0
            },
            albedo: (coeffs.tex.len() == model.n_albedo() && truth.coeffs.tex.len() == model.n_albedo() && model.n_albedo() > 0).then(|| {
                let albedo = |tex: &[f32]| faceforge_systems::reconstruct::decode_albedo_cpu(model, 1, tex);
                let true_albedo = albedo(&truth.coeffs.tex);
                [crate::eval::metrics::albedo_rms_255(&albedo(&coeffs.tex), &true_albedo), crate::eval::metrics::albedo_rms_255(model.mean_albedo(), &true_albedo)]
            }),
        });
    }
    let binned = |f: &dyn Fn(&Row) -> Option<f32>| -> Option<f32> { mean_of_bin_means(&rows.iter().filter_map(|r| f(r).map(|v| (r.yaw, v))).collect::<Vec<_>>()) };
    let heads_trained = heads_trained(&learner);
    let by_yaw = crate::eval::metrics::YAW_BINS
        .iter()
        .enumerate()
        .filter_map(|(b, range)| {
            let in_bin: Vec<&Row> = rows.iter().filter(|r| yaw_bin(r.yaw) == b).collect();
            let mean = |f: &dyn Fn(&Row) -> Option<f32>| -> Option<f32> {
                let v: Vec<f32> = in_bin.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32)
            };
            (!in_bin.is_empty()).then(|| HeldOutBin {
                bin: format!("{}–{}°", range[0], range[1]),
                frames: in_bin.len(),
                nme_network: mean(&|r| r.network),
                nme_reconstruction: mean(&|r| Some(r.reconstruction)).filter(|_| heads_trained),
                nme_mean_face: mean(&|r| Some(r.mean_face)).unwrap_or_default(),
                pose_error_deg: mean(&|r| r.pose).filter(|_| heads_trained),
            })
        })
        .collect();
    let poses: Vec<f32> = rows.iter().filter_map(|r| r.pose).collect();
    let held_out = HeldOut {
        frames,
        nme_network: binned(&|r| r.network),
        nme_reconstruction: binned(&|r| Some(r.reconstruction)).filter(|_| heads_trained),
        nme_mean_face: binned(&|r| Some(r.mean_face)).unwrap_or_default(),
        pose_error_deg: (heads_trained && !poses.is_empty()).then(|| Spread::of(&poses)),
        per_vertex_mm: heads_trained.then(|| Spread::of(&rows.iter().map(|r| r.shape.per_vertex_mm).collect::<Vec<_>>())),
        nme_3d: heads_trained.then(|| rows.iter().map(|r| r.shape.nme_3d).sum::<f32>() / rows.len().max(1) as f32),
        mean_face_per_vertex_mm: rows.iter().map(|r| r.shape.mean_face.per_vertex_mm).sum::<f32>() / rows.len().max(1) as f32,
        mean_face_nme_3d: rows.iter().map(|r| r.shape.mean_face.nme_3d).sum::<f32>() / rows.len().max(1) as f32,
        by_yaw,
        with_true_pose: binned(&|r| Some(r.subs[0])).filter(|_| heads_trained),
        with_true_identity: binned(&|r| Some(r.subs[1])).filter(|_| heads_trained),
        with_true_expression: binned(&|r| Some(r.subs[2])).filter(|_| heads_trained),
        albedo_255: (learner_has_albedo && heads_trained).then(|| Spread::of(&rows.iter().filter_map(|r| r.albedo.map(|a| a[0])).collect::<Vec<_>>())),
        mean_albedo_255: learner_has_albedo.then(|| rows.iter().filter_map(|r| r.albedo.map(|a| a[1])).sum::<f32>() / rows.len().max(1) as f32),
    };
    Ok((learner, held_out))
}

/// Runs the network (inference) on the held-out real frames and measures its landmarks, and
/// once the heads are trained the reconstruction's, against the data's own landmarks.
pub fn evaluate_real(learner: Learner, model: &std::sync::Arc<MorphableModel>, backend: &Backend, set: &RealSet, step: u32) -> anyhow::Result<(Learner, RealHeldOut)> {
    let guide = learner.net.pose.is_none();
    let held_out: Vec<_> = set.held_out().into_iter().filter(|f| f.landmarks.len() == model.landmarks().len()).collect();
    // The face drawn back over each frame: the reconstruction with its albedo (the mean one
    // without an albedo head) under its lighting (the default without a lighting head).
    let redraw = [("reconstruct", "(albedo: true)"), ("vertex_normals", "()"), ("render", "()")];
    let (learner, mut world) = run_network(learner, model, backend, false, &redraw, |world| {
        data::spawn_loaded(world, &held_out, model);
        Ok(())
    })?;
    let given: BTreeMap<&str, &[[f32; 2]]> = held_out.iter().map(|f| (f.name.as_str(), f.landmarks.as_slice())).collect();
    // The image-ignoring baseline: the training frames' mean landmarks (crop pixels).
    let mean = set.mean_training_landmarks(model.landmarks().len());
    let heads = heads_trained(&learner);
    let (mut network, mut reconstruction, mut baseline, mut photometric) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (frame, coeffs, pose, marks, image, rendered) in world.query::<(&Frame, &Coeffs, Option<&Pose>, Option<&Landmarks2d>, &Image, Option<&Rendered>)>().iter(&world) {
        let truth = given[frame.name.as_str()];
        let nme = |p: &[[f32; 2]]| nme_2d(p, truth) as f32;
        if let Some(m) = marks.filter(|_| guide) {
            network.push(nme(&m.points));
        }
        if let Some(pose) = pose.filter(|_| heads) {
            reconstruction.push(nme(&projected_landmarks(model, coeffs, pose)));
        }
        if let Some(error) = rendered.filter(|_| heads).and_then(|r| face_error_255(image, r)) {
            photometric.push(error);
        }
        baseline.push(nme(mean));
    }
    let mean_of = |v: &[f32]| (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32);
    let measured = RealHeldOut { step, frames: baseline.len(), nme_network: mean_of(&network), nme_reconstruction: mean_of(&reconstruction), nme_mean: mean_of(&baseline).unwrap_or_default(), photometric_255: mean_of(&photometric) };
    Ok((learner, measured))
}

/// The held-out real frames' measures over the steps, when measured more than once: the 2D NME,
/// and the photometric error of the re-render when there is one.
fn real_plots(measured: &[RealHeldOut]) -> Vec<LinePlot> {
    let photometric = Series { name: "face redrawn".into(), points: measured.iter().filter_map(|m| m.photometric_255.map(|v| (m.step as f32, v))).collect() };
    let photometric = (photometric.points.len() > 1).then(|| LinePlot { title: "held-out real frames: photometric error of the re-render".into(), x_label: "step".into(), y_label: "mean |RGB| on the face (1/255)".into(), series: vec![photometric], ..Default::default() });
    real_plot(measured).into_iter().chain(photometric).collect()
}

/// The held-out real frames' 2D NME over the steps, when measured more than once.
fn real_plot(measured: &[RealHeldOut]) -> Option<LinePlot> {
    let series = |name: &str, f: &dyn Fn(&RealHeldOut) -> Option<f32>| Series { name: name.into(), points: measured.iter().filter_map(|m| f(m).map(|v| (m.step as f32, v))).collect() };
    let series: Vec<Series> = [series("network X_UV", &|m| m.nme_network), series("reconstruction", &|m| m.nme_reconstruction), series("mean landmarks", &|m| Some(m.nme_mean))].into_iter().filter(|s| !s.points.is_empty()).collect();
    (measured.len() > 1).then(|| LinePlot { title: "held-out real frames: 2D NME against their landmarks".into(), x_label: "step".into(), y_label: "2D NME (%)".into(), series, ..Default::default() })
}

/// How far through its data a training went.
fn epochs_text(e: &EpochPosition) -> String {
    format!("{:.2} epochs of {} training items", e.epoch as f64 + e.position as f64 / e.items.max(1) as f64, e.items)
}

/// The held-out real frames' NME at the start and at the end.
fn real_text(first: &RealHeldOut, last: &RealHeldOut) -> String {
    let at = |m: &RealHeldOut| {
        let redrawn = m.photometric_255.map_or(String::new(), |e| format!(" (redrawn: {e:.1}/255 on the face)"));
        format!("network landmarks {}, reconstruction {}{redrawn}", pct(m.nme_network), pct(m.nme_reconstruction))
    };
    format!("step {}: {}; step {}: {}; training frames' mean landmarks {:.2} %", first.step, at(first), last.step, at(last), last.nme_mean)
}

/// The mean absolute difference (RGB, 1/255) between a frame and the face drawn over it, on the
/// pixels the face covers; none when it covers none.
fn face_error_255(image: &Image, rendered: &Rendered) -> Option<f32> {
    if rendered.color.len() != image.rgb.len() || rendered.tri.len() * 3 != image.rgb.len() {
        return None;
    }
    let (mut sum, mut count) = (0.0f64, 0usize);
    for p in (0..rendered.tri.len()).filter(|&p| rendered.tri[p] > 0) {
        for c in 0..3 {
            sum += (rendered.color[3 * p + c] - image.rgb[3 * p + c]).abs() as f64;
        }
        count += 3;
    }
    (count > 0).then(|| (255.0 * sum / count as f64) as f32)
}

/// A percentage, "–" when there is none.
fn pct(v: Option<f32>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.2} %"))
}

/// The mean-face baseline: the average exact landmarks of 64 frames drawn like the training
/// data (the mean face at the mean pose, a prediction that ignores the image).
fn mean_landmarks(model: &MorphableModel, backend: &Backend, spec: &SynthSpec) -> anyhow::Result<Vec<[f32; 2]>> {
    let sample = SynthSpec { seed: spec.seed ^ 0xBA5E_11E5, subjects: 64.max(spec.subjects), ..spec.clone() };
    let frames = crate::io::synth::generate(model, backend, &sample);
    let n = model.landmarks().len();
    let mut sum = vec![[0.0f32; 2]; n];
    for f in &frames {
        for (s, p) in sum.iter_mut().zip(&f.truth.landmarks_2d_exact) {
            s[0] += p[0];
            s[1] += p[1];
        }
    }
    Ok(sum.iter().map(|s| [s[0] / frames.len() as f32, s[1] / frames.len() as f32]).collect())
}

/// Continues the training whose output folder is `dir` from its `checkpoint/` (`overrides`, e.g.
/// `iterations=N`, apply to the scene it ran).
pub fn resume(dir: &std::path::Path, overrides: &[String], options: &crate::run::RunOptions) -> anyhow::Result<TrainSummary> {
    let path = dir.join(CHECKPOINT).join("state.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {} (is {} a training's output folder?)", path.display(), dir.display()))?;
    let state: TrainState = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let mut loaded = LoadedScene { scene: state.scene, file: state.scene_file, source: String::new() };
    loaded.apply_overrides(overrides)?;
    loaded.scene.outputs.dir = dir.to_path_buf();
    if state.step >= loaded.scene.iterations {
        bail!("the training in {} is finished ({} of {} steps): pass --set iterations=N with N > {} to go on", dir.display(), state.step, loaded.scene.iterations, state.step);
    }
    train(&loaded, options, true)
}

/// What `faceforge train` prints.
pub fn summary_text(s: &TrainSummary) -> String {
    let h = &s.held_out;
    let mut text = format!("{}: {} steps × {} frames in {:.1} s, peak memory {}; weights {}\n", s.scene, s.steps, s.frames_per_step, s.seconds, crate::run::megabytes(s.peak_memory_mb), s.weights.display());
    if let Some(e) = &s.epoch {
        text.push_str(&format!("{}\n", epochs_text(e)));
    }
    if let (Some(first), Some(last)) = (s.held_out_real.first(), s.held_out_real.last()) {
        text.push_str(&format!("held-out real frames ({}), 2D NME against their landmarks: {}\n", last.frames, real_text(first, last)));
    }
    if h.frames > 0 {
        text.push_str(&format!(
            "held out ({} synthetic frames), 2D NME (mean of yaw-bin means): network landmarks {}, reconstruction {}, mean face {}\n",
            h.frames,
            pct(h.nme_network),
            pct(h.nme_reconstruction),
            pct(Some(h.nme_mean_face))
        ));
    }
    for b in &h.by_yaw {
        text.push_str(&format!("  yaw {:>8} ({:3} frames): network {:>8}, reconstruction {:>8}, mean face {:>8}, pose {}\n", b.bin, b.frames, pct(b.nme_network), pct(b.nme_reconstruction), pct(Some(b.nme_mean_face)), b.pose_error_deg.map_or("–".into(), |d| format!("{d:.2}°"))));
    }
    if let (Some(v), Some(n)) = (&h.per_vertex_mm, h.nme_3d) {
        text.push_str(&format!("  shape: per-vertex {:.3} ± {:.3} mm, 3D NME {n:.2} % (mean face {:.3} mm, {:.2} %); pose {}\n", v.mean, v.std, h.mean_face_per_vertex_mm, h.mean_face_nme_3d, h.pose_error_deg.map_or("–".into(), |p| format!("{:.2}° ± {:.2}°", p.mean, p.std))));
    }
    if let (Some(a), Some(mean)) = (&h.albedo_255, h.mean_albedo_255) {
        text.push_str(&format!("  albedo: RMS {:.2} ± {:.2} /255 (mean albedo {mean:.2})\n", a.mean, a.std));
    }
    if h.with_true_pose.is_some() {
        text.push_str(&format!("  with the true pose {}, identity {}, expression {}\n", pct(h.with_true_pose), pct(h.with_true_identity), pct(h.with_true_expression)));
    }
    text.push_str(&format!("report: {}\n", s.out_dir.join("report.html").display()));
    text
}
