//! PGN's networks (`000_…` §1) as one burn module: a shared convolutional encoder (PRN-like,
//! reduced to plain strided convolutions), the PGN decoder that writes a UV position map of the
//! 68 landmarks (x, y, z) — or the paper's alternative FC head that regresses them directly —
//! and the identity and expression heads (one conv layer, average pooling, three FC layers).
//! Multi-frame input: the identity head sees the encoder features averaged over a subject's
//! frames (feature fusion), expression and landmarks stay per frame.
//!
//! Optional heads (`Heads`) make the other papers' regressors from the same parts: a pose head
//! (PGN's Fig. 1 joint baseline; MVF-Net's per-view pose; MGCNet's camera), albedo and 27-RGB
//! SH lighting heads (MGCNet's γ and θ), and the expression fused over a subject's frames like
//! the identity (MVF-Net: one identity and expression per triplet of views; it concatenates the
//! three views' features where this averages them, so any number of views fits).

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use faceforge_model::MorphableModel;
use serde::{Deserialize, Serialize};

/// How the landmarks leave the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LandmarkHead {
    /// PGN proper: a decoder writes a UV position map; each landmark is read at its UV
    /// coordinates (bilinear).
    #[default]
    UvMap,
    /// The paper's cheaper alternative: FC layers regress the 68 × 3 numbers directly.
    Fc,
}

/// The network's shape. Saved beside the weights so `infer` rebuilds the same network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// Input crop size in pixels (a multiple of 16; 64–256).
    pub input: usize,
    /// Channels of the first encoder stage; each of the four strided stages doubles them.
    pub width: usize,
    pub landmarks: LandmarkHead,
    /// Width of the heads' FC layers.
    pub hidden: usize,
    /// Seed of the initial weights.
    pub seed: u64,
    /// A fourth input channel, 2DASL's facial landmark map (+1 at the frame's 2D landmarks, −1
    /// elsewhere).
    pub landmark_map: bool,
    /// How the weights start.
    pub init: Init,
}

/// How a network's weights start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Init {
    /// burn's default (PyTorch's: Kaiming-uniform with gain 1/√3), which shrinks the signal about
    /// 1.5× per layer (8.7× over the encoder's five, by the test below): the heads first see
    /// nearly constant features, and training sits on a plateau for hundreds of steps before the
    /// pose depends on the image.
    #[default]
    Burn,
    /// He (Kaiming-normal, gain √2): the signal keeps its scale through the ReLU layers.
    He,
}

impl Init {
    pub fn initializer(self) -> Option<Initializer> {
        match self {
            Init::Burn => None,
            Init::He => Some(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: false }),
        }
    }
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self { input: 64, width: 16, landmarks: LandmarkHead::UvMap, hidden: 128, seed: 1, landmark_map: false, init: Init::Burn }
    }
}

impl NetworkSpec {
    pub fn check(&self) -> Result<(), String> {
        if !self.input.is_multiple_of(16) || !(32..=256).contains(&self.input) {
            return Err(format!("network.input must be a multiple of 16 between 32 and 256, not {}", self.input));
        }
        if self.width == 0 || self.hidden == 0 {
            return Err("network.width and network.hidden must be at least 1".into());
        }
        Ok(())
    }

    /// Channels of the input: RGB, and the landmark map when asked for.
    pub fn channels(&self) -> usize {
        if self.landmark_map { 4 } else { 3 }
    }

    /// Channels of the encoder's output.
    fn features(&self) -> usize {
        8 * self.width
    }

    /// Side of the encoder's output grid.
    fn grid(&self) -> usize {
        self.input / 16
    }

    /// Side of the UV position map (fine enough that no two landmarks share a texel).
    pub fn uv_size(&self) -> usize {
        self.input / 2
    }
}

/// The heads a network has beside PGN's identity, expression and landmark heads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Heads {
    /// The pose regressed (yaw, pitch, roll, log scale, image position of the origin).
    pub pose: bool,
    /// Albedo coefficients and 27 RGB SH lighting coefficients regressed per frame.
    pub appearance: bool,
    /// The expression fused over each subject's frames, like the identity.
    pub shared_expression: bool,
    /// 2DASL's self-critic beside the regressor (trained against it; unused at inference).
    pub critic: bool,
    /// CEST's conditional chain (`conditional`): the viewpoint from the image, the shape from
    /// the canonically aligned crop, the reflectance from the unwrapped texture, the light from
    /// the image, texture and reflectance — each with an encoder of its own. Needs `pose` and
    /// `appearance`.
    pub conditional: bool,
    /// One set of 9 SH coefficients for all three colours (CEST), not 27.
    pub mono_lighting: bool,
}

/// CEST's lighting estimator reads the image, the unwrapped texture and the reflectance drawn in
/// UV: 3 × 3 channels.
pub const CEST_LIGHTING_INPUT: usize = 9;

/// The SH lighting head's output is added to white ambient light of this level.
pub const AMBIENT: f32 = 0.8;

/// A 3 × 3 convolution, padded to keep the size at stride 1.
pub(crate) fn conv(channels: [usize; 2], stride: usize, init: Init, device: &Device) -> Conv2d {
    let config = Conv2dConfig::new(channels, [3, 3]).with_stride([stride, stride]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
    match init.initializer() {
        Some(i) => config.with_initializer(i),
        None => config,
    }
    .init(device)
}

pub(crate) fn linear(inputs: usize, outputs: usize, init: Init, device: &Device) -> Linear {
    let config = LinearConfig::new(inputs, outputs);
    match init.initializer() {
        Some(i) => config.with_initializer(i),
        None => config,
    }
    .init(device)
}

/// The shared encoder: a stride-1 stem and four stride-2 stages (input/16 on each side).
#[derive(Module, Debug)]
pub struct Encoder {
    stem: Conv2d,
    stages: Vec<Conv2d>,
}

impl Encoder {
    fn new(spec: &NetworkSpec, channels: usize, device: &Device) -> Self {
        let w = spec.width;
        let stages = (0..4).map(|k| conv([w << k, w << (k + 1).min(3)], 2, spec.init, device)).collect();
        Self { stem: conv([channels, w], 1, spec.init, device), stages }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = relu(self.stem.forward(images));
        for stage in &self.stages {
            x = relu(stage.forward(x));
        }
        x
    }
}

/// The PGN decoder: three transposed convolutions (input/2 on each side) and a 3-channel
/// convolution, the UV position map.
#[derive(Module, Debug)]
pub struct UvDecoder {
    up: Vec<ConvTranspose2d>,
    out: Conv2d,
}

impl UvDecoder {
    fn new(spec: &NetworkSpec, device: &Device) -> Self {
        let f = spec.features();
        let up = [(f, f / 2), (f / 2, f / 4), (f / 4, f / 8)]
            .iter()
            .map(|&(i, o)| ConvTranspose2dConfig::new([i, o], [4, 4]).with_stride([2, 2]).with_padding([1, 1]).init(device))
            .collect();
        Self { up, out: conv([f / 8, 3], 1, spec.init, device) }
    }

    fn forward(&self, features: Tensor<4>) -> Tensor<4> {
        let mut x = features;
        for up in &self.up {
            x = relu(up.forward(x));
        }
        self.out.forward(x)
    }
}

/// Three FC layers after a conv layer and average pooling: PGN's identity / expression
/// regressor; also (without the conv) the FC landmark head.
#[derive(Module, Debug)]
pub struct Head {
    conv: Option<Conv2d>,
    fc: Vec<Linear>,
}

impl Head {
    fn new(conv_channels: Option<usize>, inputs: usize, hidden: usize, outputs: usize, init: Init, device: &Device) -> Self {
        // The output layer keeps burn's small start either way, so the predictions begin near
        // their offsets (the mean face, the centred pose).
        let fc = [(inputs, hidden, init), (hidden, hidden, init), (hidden, outputs, Init::Burn)].iter().map(|&(i, o, init)| linear(i, o, init, device)).collect();
        Self { conv: conv_channels.map(|c| conv([c, c], 1, init, device)), fc }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.fc.len() - 1;
        self.fc.iter().enumerate().fold(x, |x, (i, fc)| if i < last { relu(fc.forward(x)) } else { fc.forward(x) })
    }

    /// Conv, global average pooling, the FC layers.
    fn forward_pooled(&self, features: Tensor<4>) -> Tensor<2> {
        let x = match &self.conv {
            Some(c) => relu(c.forward(features)),
            None => features,
        };
        let [b, c, h, w] = x.dims();
        self.forward(x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]))
    }
}

/// The whole network.
#[derive(Module, Debug)]
pub struct Network {
    pub encoder: Encoder,
    pub uv: Option<UvDecoder>,
    pub fc_landmarks: Option<Head>,
    pub identity: Head,
    pub expression: Head,
    /// The joint baseline of PGN's Fig. 1 regresses the pose too (yaw, pitch, roll, log scale,
    /// translation); PGN gets it in closed form instead.
    pub pose: Option<Head>,
    pub albedo: Option<Head>,
    pub lighting: Option<Head>,
    /// Whether the expression head sees the subject-fused features (a flag, not a weight).
    pub shared_expression: bool,
    pub critic: Option<crate::critic::Critic>,
    /// CEST's shape, reflectance and lighting encoders (the viewpoint's is `encoder`).
    pub shape_encoder: Option<Encoder>,
    pub reflectance_encoder: Option<Encoder>,
    pub lighting_encoder: Option<Encoder>,
    /// The lighting head gives 9 coefficients, the same for red, green and blue.
    pub mono_lighting: bool,
}

/// What one forward pass predicts for a batch of B frames.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// X_UV: (B, 68, 3), pixels of the input crop (x, y) and depth in the same unit.
    pub landmarks: Tensor<3>,
    /// (B, n_id), in the model's units (σ-scaled).
    pub identity: Tensor<2>,
    /// (B, n_exp).
    pub expression: Tensor<2>,
    /// (B, 6): yaw, pitch, roll (radians), log scale (pixels per model unit), translation
    /// (pixels), when the network has a pose head.
    pub pose: Option<Tensor<2>>,
    /// (B, n_albedo), σ-scaled, with the appearance heads.
    pub albedo: Option<Tensor<2>>,
    /// (B, 27) SH coefficients, with the appearance heads.
    pub lighting: Option<Tensor<2>>,
}

impl Network {
    pub fn new(spec: &NetworkSpec, n_landmarks: usize, sizes: (usize, usize, usize), heads: Heads, device: &Device) -> Self {
        let (n_id, n_exp, n_albedo) = sizes;
        // burn's generator is global: hold it while seeding and drawing, so networks built at
        // once on other threads (tests) cannot take draws from this one's sequence.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _init = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        device.seed(spec.seed);
        let f = spec.features();
        let landmarks_fc = spec.landmarks == LandmarkHead::Fc;
        let net = Self {
            encoder: Encoder::new(spec, spec.channels(), device),
            uv: (!landmarks_fc).then(|| UvDecoder::new(spec, device)),
            fc_landmarks: landmarks_fc.then(|| Head::new(None, f * spec.grid() * spec.grid(), 2 * spec.hidden, 3 * n_landmarks, spec.init, device)),
            identity: Head::new(Some(f), f, spec.hidden, n_id, spec.init, device),
            expression: Head::new(Some(f), f, spec.hidden, n_exp, spec.init, device),
            pose: heads.pose.then(|| Head::new(Some(f), f, spec.hidden, 6, spec.init, device)),
            albedo: heads.appearance.then(|| Head::new(Some(f), f, spec.hidden, n_albedo, spec.init, device)),
            lighting: heads.appearance.then(|| Head::new(Some(f), f, spec.hidden, if heads.mono_lighting { 9 } else { 27 }, spec.init, device)),
            shared_expression: heads.shared_expression,
            critic: heads.critic.then(|| crate::critic::Critic::new(spec.input, crate::critic::POSE_NUMBERS + n_id + n_exp, device)),
            shape_encoder: heads.conditional.then(|| Encoder::new(spec, 3, device)),
            reflectance_encoder: heads.conditional.then(|| Encoder::new(spec, 3, device)),
            lighting_encoder: heads.conditional.then(|| Encoder::new(spec, CEST_LIGHTING_INPUT, device)),
            mono_lighting: heads.mono_lighting,
        };
        // burn initialises parameters lazily, at their first use: draw them all now, under
        // the lock, so the weights depend on the seed alone.
        struct Draw;
        impl ModuleVisitor for Draw {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        net.visit(&mut Draw);
        net
    }
}

/// The scale (pixels per model unit) at which the mean face spans 60 % of a `size`-pixel crop:
/// the pose head's starting point and the canonical view's scale.
pub fn reference_scale(model: &MorphableModel, size: usize) -> f32 {
    let xs = model.mean_shape().chunks(3).map(|p| p[0]);
    let width = xs.clone().fold(f32::MIN, f32::max) - xs.fold(f32::MAX, f32::min);
    0.6 * size as f32 / width.max(1e-6)
}

/// The constants a forward pass needs besides the weights: how to read the landmarks off the UV
/// map, and the model's σ.
#[derive(Clone, Debug)]
pub struct Readout {
    pub input: usize,
    /// (U², L): bilinear weights of each landmark's UV position in the map.
    uv_weights: Tensor<2>,
    id_sigma: Tensor<1>,
    exp_sigma: Tensor<1>,
    albedo_sigma: Tensor<1>,
    /// Added to the lighting head's output: white ambient light.
    lighting_offset: Tensor<1>,
    /// Added to the pose head's output: zero angles, the scale that makes the mean face span
    /// about 60 % of the crop, the crop's centre.
    pose_offset: Tensor<1>,
    n_landmarks: usize,
    /// The model's albedo size (without appearance heads the network predicts no albedo: zeros,
    /// as PGN).
    pub n_albedo: usize,
}

impl Readout {
    pub fn new(spec: &NetworkSpec, model: &MorphableModel, device: &Device) -> Self {
        let u = spec.uv_size();
        let landmarks = model.landmarks();
        let mut weights = vec![0.0f32; u * u * landmarks.len()];
        let uvs = model.uv();
        for (l, &v) in landmarks.iter().enumerate() {
            // Texel centres at (i + 0.5) / U; v grows downwards in the map as in images.
            let (x, y) = (uvs[2 * v as usize] * u as f32 - 0.5, (1.0 - uvs[2 * v as usize + 1]) * u as f32 - 0.5);
            let (x0, y0) = (x.floor().clamp(0.0, (u - 1) as f32), y.floor().clamp(0.0, (u - 1) as f32));
            let (fx, fy) = ((x - x0).clamp(0.0, 1.0), (y - y0).clamp(0.0, 1.0));
            let (x0, y0) = (x0 as usize, y0 as usize);
            let (x1, y1) = ((x0 + 1).min(u - 1), (y0 + 1).min(u - 1));
            for (xx, yy, w) in [(x0, y0, (1.0 - fx) * (1.0 - fy)), (x1, y0, fx * (1.0 - fy)), (x0, y1, (1.0 - fx) * fy), (x1, y1, fx * fy)] {
                weights[(yy * u + xx) * landmarks.len() + l] += w;
            }
        }
        let tensor1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        let half = spec.input as f32 / 2.0;
        let pose_offset = [0.0, 0.0, 0.0, reference_scale(model, spec.input).ln(), half, half];
        Self {
            input: spec.input,
            uv_weights: Tensor::from_data(TensorData::new(weights, [u * u, landmarks.len()]), device),
            id_sigma: tensor1(model.id_sigma()),
            exp_sigma: tensor1(model.exp_sigma()),
            albedo_sigma: tensor1(model.albedo_sigma()),
            lighting_offset: tensor1(&(0..27).map(|k| if k % 9 == 0 { AMBIENT } else { 0.0 }).collect::<Vec<_>>()),
            pose_offset: tensor1(&pose_offset),
            n_albedo: model.n_albedo(),
            n_landmarks: landmarks.len(),
        }
    }
}

/// Which parts of the network a training step updates; the others run detached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trained {
    /// PGN's step 1: encoder and landmark head, from the landmark targets.
    #[default]
    Guidance,
    /// Steps 2 and 3: the identity and expression heads; encoder and PGN frozen.
    Heads,
    /// Everything at once (the joint-regression baseline of PGN's Fig. 1 study).
    All,
}

impl Network {
    /// One forward pass over images (B, C, S, S) — RGB in [0, 1], then the landmark map if the
    /// network takes one —; `fusion` (B, B) averages each
    /// frame's features over its subject's frames for the identity head (and the expression
    /// head when it is shared).
    pub fn forward(&self, images: Tensor<4>, fusion: Tensor<2>, readout: &Readout, trained: Trained) -> Outputs {
        let [b, _, _, _] = images.dims();
        // RGB centred on 0; the landmark map is ±1 already.
        let [_, channels, _, _] = images.dims();
        let centre: Vec<f32> = (0..channels).map(|c| if c < 3 { 0.5 } else { 0.0 }).collect();
        let centre = Tensor::<1>::from_data(TensorData::new(centre, [channels]), &images.device()).reshape([1, channels, 1, 1]);
        let features = self.encoder.forward(images.sub(centre));
        // Frozen parts run detached: no gradient reaches them.
        let features = if trained == Trained::Heads { features.detach() } else { features };
        let landmark_features = features.clone();
        let landmarks = match (&self.uv, &self.fc_landmarks) {
            (Some(uv), _) => {
                let map = uv.forward(landmark_features); // (B, 3, U, U)
                let [_, c, h, w] = map.dims();
                // (B, 3, U²) × (U², L) → (B, 3, L) → (B, L, 3)
                map.reshape([b, c, h * w]).matmul(readout.uv_weights.clone().unsqueeze::<3>()).swap_dims(1, 2)
            }
            (None, Some(fc)) => {
                let [_, c, h, w] = landmark_features.dims();
                fc.forward(landmark_features.reshape([b, c * h * w])).reshape([b, readout.n_landmarks, 3])
            }
            (None, None) => unreachable!("a network has one landmark head"),
        };
        // The map holds positions in units of the crop, centred: pixels = (value + 0.5) · S for
        // x and y, value · S for depth.
        let offset = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, 0.5, 0.0], [3]), &landmarks.device());
        let landmarks = landmarks.add(offset.unsqueeze::<3>()).mul_scalar(readout.input as f32);
        let head_features = if trained == Trained::Guidance { features.detach() } else { features };
        let (identity, expression) = self.shape_of(head_features.clone(), fusion, readout);
        let pose = self.pose.as_ref().map(|_| self.pose_of(head_features.clone(), readout));
        let albedo = self.albedo.as_ref().map(|_| self.albedo_of(head_features.clone(), readout));
        let lighting = self.lighting.as_ref().map(|_| self.lighting_of(head_features, readout));
        Outputs { landmarks, identity, expression, pose, albedo, lighting }
    }

    /// Identity (fused over each subject's frames) and expression from encoder features.
    fn shape_of(&self, features: Tensor<4>, fusion: Tensor<2>, readout: &Readout) -> (Tensor<2>, Tensor<2>) {
        let [b, c, h, w] = features.dims();
        let fused = fusion.matmul(features.clone().reshape([b, c * h * w])).reshape([b, c, h, w]);
        let identity = self.identity.forward_pooled(fused.clone()).mul(readout.id_sigma.clone().unsqueeze::<2>());
        let expression_features = if self.shared_expression { fused } else { features };
        let expression = self.expression.forward_pooled(expression_features).mul(readout.exp_sigma.clone().unsqueeze::<2>());
        (identity, expression)
    }

    /// The pose head's (yaw, pitch, roll, log scale, translation in pixels).
    fn pose_of(&self, features: Tensor<4>, readout: &Readout) -> Tensor<2> {
        let head = self.pose.as_ref().expect("a pose head");
        // Translation in units of the crop, like the landmarks.
        let size = readout.input as f32;
        let pose_scale = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 1.0, size, size], [6]), &readout.pose_offset.device());
        head.forward_pooled(features).mul(pose_scale.unsqueeze::<2>()).add(readout.pose_offset.clone().unsqueeze::<2>())
    }

    fn albedo_of(&self, features: Tensor<4>, readout: &Readout) -> Tensor<2> {
        self.albedo.as_ref().expect("an albedo head").forward_pooled(features).mul(readout.albedo_sigma.clone().unsqueeze::<2>())
    }

    /// 27 SH coefficients (a mono head's 9 repeated for red, green and blue) over the ambient.
    fn lighting_of(&self, features: Tensor<4>, readout: &Readout) -> Tensor<2> {
        let out = self.lighting.as_ref().expect("a lighting head").forward_pooled(features);
        let out = if self.mono_lighting { Tensor::cat(vec![out.clone(), out.clone(), out], 1) } else { out };
        out.add(readout.lighting_offset.clone().unsqueeze::<2>())
    }

    /// CEST's f_v: the viewpoint from the RGB images.
    pub fn forward_viewpoint(&self, images: Tensor<4>, readout: &Readout) -> Tensor<2> {
        self.pose_of(self.encoder.forward(images.sub_scalar(0.5)), readout)
    }

    /// CEST's f_s: identity and expression from the canonically aligned crops.
    pub fn forward_shape(&self, aligned: Tensor<4>, fusion: Tensor<2>, readout: &Readout) -> (Tensor<2>, Tensor<2>) {
        let encoder = self.shape_encoder.as_ref().expect("a conditional network");
        self.shape_of(encoder.forward(aligned.sub_scalar(0.5)), fusion, readout)
    }

    /// CEST's f_r: the reflectance (albedo coefficients) from the unwrapped texture T.
    pub fn forward_reflectance(&self, texture: Tensor<4>, readout: &Readout) -> Tensor<2> {
        let encoder = self.reflectance_encoder.as_ref().expect("a conditional network");
        self.albedo_of(encoder.forward(texture.sub_scalar(0.5)), readout)
    }

    /// CEST's f_ℓ: the light from the image, T and the reflectance in UV (9 channels).
    pub fn forward_lighting(&self, inputs: Tensor<4>, readout: &Readout) -> Tensor<2> {
        let encoder = self.lighting_encoder.as_ref().expect("a conditional network");
        self.lighting_of(encoder.forward(inputs.sub_scalar(0.5)), readout)
    }
}

/// The (B, B) matrix that averages each frame's row over the frames of its subject.
pub fn fusion_matrix(subjects: &[u32], device: &Device) -> Tensor<2> {
    let b = subjects.len();
    let mut m = vec![0.0f32; b * b];
    for i in 0..b {
        let same: Vec<usize> = (0..b).filter(|&j| subjects[j] == subjects[i]).collect();
        for &j in &same {
            m[i * b + j] = 1.0 / same.len() as f32;
        }
    }
    Tensor::from_data(TensorData::new(m, [b, b]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard deviation of the encoder's output for a noise image, with one init.
    fn feature_spread(init: Init) -> f32 {
        let spec = NetworkSpec { input: 32, width: 8, init, ..NetworkSpec::default() };
        let device = Device::flex();
        device.seed(3);
        let encoder = Encoder::new(&spec, 3, &device);
        let pixels: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i as f32 * 12.9898).sin() * 43758.547).fract().abs()).collect();
        let features = encoder.forward(Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, 32, 32]), &device).sub_scalar(0.5));
        let values: Vec<f32> = features.into_data().try_into_vec::<f32>().unwrap();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32).sqrt()
    }

    #[test]
    fn he_initialisation_keeps_the_encoders_signal_where_burns_default_shrinks_it() {
        let (burn, he) = (feature_spread(Init::Burn), feature_spread(Init::He));
        eprintln!("encoder output std: burn's default {burn:.5}, He {he:.5} ({:.1}×)", he / burn);
        assert!(he > 5.0 * burn, "He {he} vs burn's default {burn}");
    }
}
