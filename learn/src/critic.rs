//! 2DASL's self-critic (`002_…` §1, §2): an encoder of 6 conv layers, each followed by ReLU and
//! 2 × 2 max pooling, maps an image to its latent z; 4 FC layers (512, 1024, 1024, 1) score the
//! pair [z, α]: high for an image with its true parameters, low for one with a regressor's.
//!
//! α here is 58 of the 62 parameters in standard units (`params62::standard_units`): the two
//! weak-perspective rows [f·R | t], identity and expression. The third pose row is the cross
//! product of the first two over the scale: it adds no information, so the critic does not read
//! it and its gradient needs no cross-product adjoint.

use burn::module::Module;
use crate::network::{conv, linear, Init};
use burn::nn::conv::Conv2d;
use burn::nn::Linear;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use faceforge_components::{Coeffs, Pose};
use crate::params62::{self, Params62};
use faceforge_model::MorphableModel;

/// The critic's reading of α: 8 pose numbers, then identity and expression.
pub const POSE_NUMBERS: usize = 8;

/// Channels of the 6 conv layers.
const CHANNELS: [usize; 6] = [16, 32, 64, 64, 128, 128];
/// The paper's FC widths.
const FC: [usize; 3] = [512, 1024, 1024];

#[derive(Module, Debug)]
pub struct Critic {
    convs: Vec<Conv2d>,
    fc: Vec<Linear>,
}

/// He initialisation always: with burn's default six conv layers leave z near zero and the
/// critic blind to the image (its loss stuck at ln 4).
const INIT: Init = Init::He;

/// The side of the encoder's output for an `input`-pixel crop (six floor-halvings).
fn latent_side(input: usize) -> usize {
    (0..6).fold(input, |s, _| s / 2).max(1)
}

impl Critic {
    pub fn new(input: usize, alpha: usize, device: &Device) -> Self {
        let mut from = 3;
        let convs = CHANNELS
            .iter()
            .map(|&to| {
                let c = conv([from, to], 1, INIT, device);
                from = to;
                c
            })
            .collect();
        let z = CHANNELS[5] * latent_side(input).pow(2);
        let widths = [z + alpha, FC[0], FC[1], FC[2], 1];
        let fc = widths.windows(2).map(|w| linear(w[0], w[1], INIT, device)).collect();
        Self { convs, fc }
    }

    /// z of RGB images (B, 3, S, S) in [0, 1].
    pub fn latent(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images.sub_scalar(0.5);
        for conv in &self.convs {
            let [_, _, h, _] = x.dims();
            x = relu(conv.forward(x));
            if h >= 2 {
                x = max_pool2d(x, MaxPoolOptions::new([2, 2]));
            }
        }
        let [b, c, h, w] = x.dims();
        x.reshape([b, c * h * w])
    }

    /// The logit of D([z, α]) per row: (B, 1).
    pub fn score(&self, z: Tensor<2>, alpha: Tensor<2>) -> Tensor<2> {
        let last = self.fc.len() - 1;
        self.fc.iter().enumerate().fold(Tensor::cat(vec![z, alpha], 1), |x, (i, fc)| if i < last { relu(fc.forward(x)) } else { fc.forward(x) })
    }
}

/// −log D for true pairs and −log(1 − D) for predicted ones (the critic's side of L_sc), each
/// averaged over its rows: softplus(−logit) and softplus(logit).
pub fn discriminator_loss(real_logits: Tensor<2>, fake_logits: Tensor<2>) -> Tensor<1> {
    let real = softplus(real_logits.neg(), 1.0).mean();
    let fake = softplus(fake_logits, 1.0).mean();
    real.add(fake)
}

/// The units the critic reads α in: `params62::standard_units` without the third pose row.
#[derive(Clone, Debug)]
pub struct AlphaScale {
    factor: Vec<f32>,
    offset: Vec<f32>,
}

/// The 62 parameters' entries the critic reads: the two weak-perspective rows, then the
/// coefficients.
fn read(v: &[f32]) -> Vec<f32> {
    v[..POSE_NUMBERS].iter().chain(&v[params62::POSE..]).copied().collect()
}

impl AlphaScale {
    pub fn new(model: &MorphableModel, size: usize) -> Result<Self, String> {
        let (factor, offset) = params62::standard_units(model, size)?;
        Ok(Self { factor: read(&factor), offset: read(&offset) })
    }

    /// The critic's α of a weak pose and coefficients.
    pub fn alpha(&self, pose: &Pose, coeffs: &Coeffs) -> Result<Vec<f32>, String> {
        let raw = read(&Params62::from_pose_and_coeffs(pose, coeffs)?.to_vec());
        Ok(raw.iter().zip(&self.factor).zip(&self.offset).map(|((v, f), o)| (v - o) * f).collect())
    }

    /// A gradient with respect to the critic's α → (dL/dT, dL/d identity, dL/d expression).
    pub fn backward(&self, grad: &[f32]) -> ([[f32; 4]; 2], Vec<f32>, Vec<f32>) {
        let g: Vec<f32> = grad.iter().zip(&self.factor).map(|(g, f)| g * f).collect();
        let t = [std::array::from_fn(|k| g[k]), std::array::from_fn(|k| g[4 + k])];
        (t, g[POSE_NUMBERS..POSE_NUMBERS + params62::SHAPE].to_vec(), g[POSE_NUMBERS + params62::SHAPE..].to_vec())
    }

    pub fn len(&self) -> usize {
        self.factor.len()
    }

    pub fn is_empty(&self) -> bool {
        self.factor.is_empty()
    }
}
