//! The `Learner` resource: the network, its optimiser (burn's Adam), and what passes between the
//! forward pass (`encode`) and the backward pass (`encode_backward`) of one schedule run.

use crate::network::{Heads, Network, NetworkSpec, Outputs, Readout, Trained};
use bevy_ecs::prelude::*;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use faceforge_model::MorphableModel;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file beside the weights that says which network and model they belong to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    pub network: NetworkSpec,
    pub n_landmarks: usize,
    pub n_id: usize,
    pub n_exp: usize,
    /// The model the network was trained for (its origin string).
    pub model: String,
    /// Whether the network regresses the pose itself (the joint baseline of PGN's Fig. 1).
    pub pose_head: bool,
    /// Albedo and SH lighting heads (MGCNet).
    #[serde(default)]
    pub appearance: bool,
    /// The expression fused per subject (MVF-Net).
    #[serde(default)]
    pub shared_expression: bool,
    /// 2DASL's self-critic.
    #[serde(default)]
    pub critic: bool,
    /// CEST's conditional chain, and its mono lighting.
    #[serde(default)]
    pub conditional: bool,
    #[serde(default)]
    pub mono_lighting: bool,
}

impl WeightsInfo {
    pub fn heads(&self) -> Heads {
        Heads { pose: self.pose_head, appearance: self.appearance, shared_expression: self.shared_expression, critic: self.critic, conditional: self.conditional, mono_lighting: self.mono_lighting }
    }
}

/// A float tensor's values, flattened.
pub(crate) fn flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("a float tensor")
}

/// Moves every parameter to a device by value: new leaf tensors with the same ids (burn's
/// `to_device` records the move in the autodiff graph, and `fork` would draw a parameter not yet
/// initialised on the destination, with that device's generator).
struct MoveTo(Device);

impl ModuleMapper for MoveTo {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let device = self.0.clone();
        param.map(|t| {
            let moved = Tensor::from_data(t.to_data(), &device);
            if t.is_require_grad() { moved.require_grad() } else { moved }
        })
    }
}

/// The outputs of the last forward pass, kept (with their autodiff graph) for the backward.
pub(crate) struct Pending {
    pub entities: Vec<Entity>,
    pub outputs: Outputs,
}

#[derive(Resource)]
pub struct Learner {
    pub info: WeightsInfo,
    pub net: Network,
    pub readout: Readout,
    pub optimizer: ModuleOptimizer,
    pub trained: Trained,
    pub learning_rate: f64,
    /// false: forward passes only (inference, evaluation); nothing is kept for a backward.
    pub training: bool,
    pub device: Device,
    /// Behind a mutex only because burn's gradient maps are `Send` but not `Sync`, which a
    /// bevy resource must be; only the learner's own systems touch them, one at a time.
    pub(crate) pending: std::sync::Mutex<Option<Pending>>,
    pub(crate) grads: std::sync::Mutex<Option<GradientsParams>>,
    /// Surrogate terms other systems add to this step's backward pass: 2DASL's second pass
    /// through the regressor, the critic's own loss.
    pub(crate) extra: std::sync::Mutex<Vec<Tensor<1>>>,
    /// Optimiser steps taken.
    pub steps: u64,
}

/// A learner's failure, naming the file where there is one.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("{0}")]
    Spec(String),
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> LearnError {
    LearnError::File { file: path.display().to_string(), message: message.to_string() }
}

impl Learner {
    /// How many numbers the network's weights hold (every part, trained or not).
    pub fn parameter_count(&self) -> usize {
        self.net.num_params()
    }

    /// A fresh network for `model`, on burn's CPU backend (flex) with autodiff.
    pub fn new(spec: &NetworkSpec, model: &MorphableModel, heads: Heads) -> Result<Self, LearnError> {
        Self::new_on(spec, model, heads, Device::flex().autodiff())
    }

    /// A fresh network on `device`. The weights are drawn on flex whatever the device and then
    /// moved, so one seed gives the same network on the CPU and on a GPU.
    pub fn new_on(spec: &NetworkSpec, model: &MorphableModel, heads: Heads, device: Device) -> Result<Self, LearnError> {
        spec.check().map_err(LearnError::Spec)?;
        if heads.conditional && !(heads.pose && heads.appearance) {
            return Err(LearnError::Spec("CEST's conditional chain estimates the viewpoint, shape, reflectance and light: it needs pose_head and appearance".into()));
        }
        if heads.conditional && spec.landmark_map {
            return Err(LearnError::Spec("CEST's conditional chain reads RGB images: network.landmark_map is 2DASL's".into()));
        }
        let info = WeightsInfo {
            network: spec.clone(),
            n_landmarks: model.landmarks().len(),
            n_id: model.n_id(),
            n_exp: model.n_exp(),
            model: model.origin().to_string(),
            pose_head: heads.pose,
            appearance: heads.appearance,
            shared_expression: heads.shared_expression,
            critic: heads.critic,
            conditional: heads.conditional,
            mono_lighting: heads.mono_lighting,
        };
        let flex = Device::flex().autodiff();
        let mut net = Network::new(spec, info.n_landmarks, (info.n_id, info.n_exp, model.n_albedo()), heads, &flex);
        if device != flex {
            net = net.map(&mut MoveTo(device.clone()));
        }
        Ok(Self {
            readout: Readout::new(spec, model, &device),
            info,
            net,
            optimizer: AdamConfig::new().init(),
            trained: Trained::Guidance,
            learning_rate: 1e-4,
            training: true,
            device,
            pending: Default::default(),
            grads: Default::default(),
            extra: Default::default(),
            steps: 0,
        })
    }

    /// Weights (`NAME.bpk`, burn's record) and their `NAME.json` beside them.
    pub fn save_weights(&self, path: &Path) -> Result<(), LearnError> {
        self.net.clone().save_file(path).map_err(|e| file_error(path, e))?;
        let info = path.with_extension("json");
        let text = serde_json::to_string_pretty(&self.info).map_err(|e| file_error(&info, e))?;
        faceforge_model::atomic_write(&info, text.as_bytes()).map_err(|e| file_error(&info, e))
    }

    /// A learner whose network is read from `path` (and its `.json`), checked against `model`.
    pub fn load(path: &Path, model: &MorphableModel) -> Result<Self, LearnError> {
        Self::load_on(path, model, Device::flex().autodiff())
    }

    /// As `load`, on `device`.
    pub fn load_on(path: &Path, model: &MorphableModel, device: Device) -> Result<Self, LearnError> {
        let info_path = path.with_extension("json");
        let text = std::fs::read_to_string(&info_path).map_err(|e| file_error(&info_path, format!("{e} (the network description written beside the weights)")))?;
        let info: WeightsInfo = serde_json::from_str(&text).map_err(|e| file_error(&info_path, e))?;
        if (info.n_landmarks, info.n_id, info.n_exp) != (model.landmarks().len(), model.n_id(), model.n_exp()) {
            return Err(file_error(
                path,
                format!(
                    "trained for {} landmarks, {} identity, {} expression coefficients ({}); the model {} has {}, {}, {}",
                    info.n_landmarks,
                    info.n_id,
                    info.n_exp,
                    info.model,
                    model.origin(),
                    model.landmarks().len(),
                    model.n_id(),
                    model.n_exp()
                ),
            ));
        }
        let mut learner = Self::new_on(&info.network, model, info.heads(), device)?;
        learner.net = learner.net.clone().try_load_file(path).map_err(|e| file_error(path, e))?;
        learner.info = info;
        Ok(learner)
    }

    /// The optimiser's state (Adam's moments and step), for checkpoints.
    pub fn optimizer_bytes(&self) -> Result<Vec<u8>, LearnError> {
        self.optimizer.into_bytes().map(|b| b.to_vec()).map_err(|e| LearnError::Spec(format!("saving the optimiser state: {e}")))
    }

    pub fn restore_optimizer(&mut self, bytes: Vec<u8>) -> Result<(), LearnError> {
        let fresh = AdamConfig::new().init();
        self.optimizer = fresh.from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| LearnError::Spec(format!("restoring the optimiser state: {e}")))?;
        Ok(())
    }

    /// Sets what the next steps train (and whether they train at all). The frozen parts stop
    /// requiring gradients, so burn records no graph for them: a frozen encoder's forward pass
    /// then costs no memory for a backward that never comes.
    pub fn configure(&mut self, trained: Trained, training: bool) {
        self.trained = trained;
        self.training = training;
        let learns = |part_trained: bool| training && part_trained;
        let landmarks = learns(trained != Trained::Heads);
        let heads = learns(trained != Trained::Guidance);
        let net = &mut self.net;
        net.encoder = net.encoder.clone().set_require_grad(landmarks);
        net.uv = net.uv.clone().map(|m| m.set_require_grad(landmarks));
        net.fc_landmarks = net.fc_landmarks.clone().map(|m| m.set_require_grad(landmarks));
        net.identity = net.identity.clone().set_require_grad(heads);
        net.expression = net.expression.clone().set_require_grad(heads);
        net.pose = net.pose.clone().map(|m| m.set_require_grad(heads));
        net.albedo = net.albedo.clone().map(|m| m.set_require_grad(heads));
        net.lighting = net.lighting.clone().map(|m| m.set_require_grad(heads));
        for encoder in [&mut net.shape_encoder, &mut net.reflectance_encoder, &mut net.lighting_encoder] {
            *encoder = encoder.clone().map(|m| m.set_require_grad(heads));
        }
        // The critic learns whenever the regressor does.
        net.critic = net.critic.clone().map(|m| m.set_require_grad(training));
    }

    /// Every float parameter of the network, flattened, in the module's visiting order.
    pub fn parameters(&self) -> Vec<Vec<f32>> {
        struct Collect(Vec<Vec<f32>>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(flat(param.val()));
            }
        }
        let mut c = Collect(Vec::new());
        self.net.visit(&mut c);
        c.0
    }

    /// The gradients the last `encode_backward` computed (not yet applied), per parameter in the
    /// order of `parameters`; `None` for a parameter without one (frozen, or no step pending).
    pub fn pending_gradients(&self) -> Vec<Option<Vec<f32>>> {
        struct Collect<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.1.push(self.0.get::<D>(param.id).map(flat));
            }
        }
        let guard = self.grads.lock().expect("not poisoned");
        let Some(grads) = guard.as_ref() else { return Vec::new() };
        let mut c = Collect(grads, Vec::new());
        self.net.visit(&mut c);
        c.1
    }

    /// Adds `by` to entry `entry` of parameter `index` (in the order of `parameters`): the
    /// finite-difference checks of the surrogate path move one weight at a time.
    pub fn nudge(&mut self, index: usize, entry: usize, by: f32) {
        struct Nudge {
            index: usize,
            entry: usize,
            by: f32,
            seen: usize,
        }
        impl ModuleMapper for Nudge {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let hit = self.seen == self.index;
                self.seen += 1;
                if !hit {
                    return param;
                }
                let (entry, by) = (self.entry, self.by);
                param.map(|t| {
                    let (shape, device) = (t.shape(), t.device());
                    let mut values = flat(t.clone());
                    values[entry] += by;
                    let moved = Tensor::from_data(TensorData::new(values, shape), &device);
                    if t.is_require_grad() { moved.require_grad() } else { moved }
                })
            }
        }
        self.net = self.net.clone().map(&mut Nudge { index, entry, by, seen: 0 });
    }

    /// Adds a term to this step's backward pass (a scalar whose gradient is the one wanted).
    pub fn add_surrogate(&self, term: Tensor<1>) {
        if term.is_tracked() {
            self.extra.lock().expect("not poisoned").push(term);
        }
    }

    /// One burn backward pass over `parts` and the surrogates added since the last; keeps the
    /// parameters' gradients for `step`.
    pub fn backward(&mut self, parts: Vec<Tensor<1>>) {
        let extra = std::mem::take(self.extra.get_mut().expect("not poisoned"));
        let tracked = parts.into_iter().chain(extra).filter(|p| p.is_tracked());
        let Some(surrogate) = tracked.reduce(|a, b| a.add(b)) else { return };
        let grads = GradientsParams::from_grads(surrogate.backward(), &self.net);
        *self.grads.get_mut().expect("not poisoned") = Some(grads);
    }

    /// Applies the gradients of the last backward pass (Adam), if there were any.
    pub fn step(&mut self) {
        if let Some(grads) = self.grads.get_mut().expect("not poisoned").take() {
            let net = self.net.clone();
            self.net = self.optimizer.step(self.learning_rate, net, grads);
            self.steps += 1;
        }
    }
}
