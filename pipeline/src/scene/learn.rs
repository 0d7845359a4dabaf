//! The `learn` section of a scene: the network and what a training's steps update. It lives with
//! the scene (not with the trainer that reads it), so the scene depends on no runner.

use faceforge_learn::{NetworkSpec, Trained};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `learn` section of a scene.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnSpec {
    pub network: NetworkSpec,
    /// Which parts the steps update (PGN's step 1: `Guidance`; steps 2 and 3: `Heads`).
    pub trained: Trained,
    /// The network regresses the pose itself (the joint baseline of PGN's Fig. 1; MVF-Net's and
    /// MGCNet's per-view pose).
    pub pose_head: bool,
    /// Albedo and 27 RGB SH lighting heads (MGCNet).
    pub appearance: bool,
    /// The expression fused over a subject's frames like the identity (MVF-Net's triplets).
    pub shared_expression: bool,
    /// 2DASL's self-critic, trained beside the regressor.
    pub critic: bool,
    /// CEST's conditional chain (viewpoint → shape on the aligned crop → reflectance from the
    /// unwrapped texture → light), run by `encode_conditional`.
    pub conditional: bool,
    /// One set of 9 SH coefficients for all colours (CEST).
    pub mono_lighting: bool,
    /// Weights to start from (a previous step's `weights.bpk`); fresh weights when absent.
    pub init: Option<PathBuf>,
    /// Adam's learning rate (PGN: 1e-4), halved every `halve_every` steps (0: never).
    pub learning_rate: f64,
    pub halve_every: u32,
    /// The share of each batch's frames trained with 2D annotations only (their 3D ones
    /// dropped), as PGN mixes 300W-LP with in-the-wild images in step 1.
    pub two_d_fraction: f32,
    /// Subjects of the held-out set the network is measured on at the end. With `Folder` or
    /// `Video` data: frames of the data set kept out of training, in blocks of up to 12
    /// consecutive frames of a subject drawn with a fixed seed, so every training on the same
    /// data holds out the same frames.
    pub held_out: u32,
    /// With `Folder` or `Video` data: the items each step takes from the data set, in a seeded
    /// shuffle per epoch.
    pub batch: u32,
    /// With `Folder` or `Video` data: frames per item. 1 takes frames one by one; 2 or 4 take
    /// consecutive frames of one subject (a clip's or a multi-view set's), the multi-frame
    /// groups of PGN's step 3, MGCNet, MVF-Net and CEST.
    pub group: u32,
    /// With `Folder` or `Video` data: synthetic faces mixed into every step, carrying the 3D
    /// landmark supervision (300W-LP's role) beside the real frames' 2D landmarks (the
    /// in-the-wild role), as PGN's step 1 mixes them. The ratio is `batch × group` real frames
    /// to this spec's `subjects × frames` synthetic ones per step.
    pub synthetic: Option<crate::io::synth::SynthSpec>,
    /// Where the networks run: `Auto` takes a real GPU adapter through wgpu (the device the
    /// kernels use) and burn's flex CPU backend otherwise; `Gpu` takes wgpu even on a CPU
    /// device (Mesa's lavapipe).
    pub device: faceforge_learn::DeviceChoice,
}

impl Default for LearnSpec {
    fn default() -> Self {
        Self { network: NetworkSpec::default(), trained: Trained::Guidance, pose_head: false, appearance: false, shared_expression: false, critic: false, conditional: false, mono_lighting: false, init: None, learning_rate: 1e-4, halve_every: 0, two_d_fraction: 0.0, held_out: 16, batch: 8, group: 1, synthetic: None, device: faceforge_learn::DeviceChoice::Auto }
    }
}

impl LearnSpec {
    /// The learning rate at `step`.
    pub fn heads(&self) -> faceforge_learn::Heads {
        faceforge_learn::Heads { pose: self.pose_head, appearance: self.appearance, shared_expression: self.shared_expression, critic: self.critic, conditional: self.conditional, mono_lighting: self.mono_lighting }
    }

    pub fn rate(&self, step: u32) -> f64 {
        let halvings = step.checked_div(self.halve_every).unwrap_or(0);
        self.learning_rate * 0.5f64.powi(halvings as i32)
    }
}
