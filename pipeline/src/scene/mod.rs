//! The scene: a RON file that names the data, the model, the backend, the systems (the graph),
//! the losses and their weights, the optimiser, the iterations, the outputs and the seed.
//! Unknown keys are errors; every error names the file, line and column.

pub mod graph;
pub mod learn;
pub mod sweep;

use faceforge_kernels::BackendChoice;
use faceforge_model::ModelSpec;
use ron::extensions::Extensions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// A name for reports; the file stem when empty.
    #[serde(default)]
    pub name: String,
    /// Seeds everything random in the run (data sampling, initialisation).
    #[serde(default)]
    pub seed: u64,
    pub data: DataSpec,
    #[serde(default)]
    pub model: ModelSource,
    #[serde(default)]
    pub backend: BackendChoice,
    /// The graph's forward systems by name, with their settings. The graph derives the rest: it
    /// drops what no loss or output needs, inserts the adjoints and ends with the step.
    pub systems: Vec<SystemSpec>,
    /// Loss term name → weight (λ). Each names a `loss_<name>` system, which joins the graph; list
    /// that system under `systems` too to give it settings.
    #[serde(default)]
    pub losses: BTreeMap<String, f32>,
    /// The step after the adjoints (fit mode); absent: Adam with its defaults. Learn mode steps
    /// the network at `learn.learning_rate`.
    #[serde(default)]
    pub optimizer: Option<Optimizer>,
    /// Iterations of a fit; optimiser steps of a training.
    #[serde(default = "one")]
    pub iterations: u32,
    pub outputs: OutputSpec,
    /// Learn mode (`faceforge train`): the network and what its steps train.
    #[serde(default)]
    pub learn: Option<learn::LearnSpec>,
    /// A clip longer than this is fitted in overlapping windows of its frames, streamed from the
    /// decoder, so memory stays flat in the clip's length (`run/windows.rs`); absent: every
    /// frame at once.
    #[serde(default)]
    pub window: Option<Window>,
}

/// `window: (frames: 100, overlap: 10, iterations: 60)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Window {
    /// Frames fitted together.
    pub frames: u32,
    /// Frames a window shares with the next: fitted again there, so the motion joins smoothly
    /// (the temporal term sees across the seam); their outputs come from the later window.
    pub overlap: u32,
    /// Iterations of every window after the first, which starts from the identity and the
    /// expressions of the one before (0: the scene's `iterations`).
    pub iterations: u32,
}

impl Default for Window {
    fn default() -> Self {
        Self { frames: 100, overlap: 10, iterations: 0 }
    }
}

fn one() -> u32 {
    1
}

/// Where the frames come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataSpec {
    /// Faces drawn from the model's prior: subjects × frames, identity and albedo shared within a
    /// subject, expression per frame. Coefficients are the ground truth.
    Sampled(SampledData),
    /// Rendered synthetic frames with exact ground truth (see `synth`): images, noisy 2D
    /// landmarks and the truth; coefficients start at the model's mean.
    Synthetic(crate::io::synth::SynthSpec),
    /// Photos: an image or a folder, with landmarks from the built-in detector or from 68-point
    /// `.pts` files (see `inputs`); coefficients start at the model's mean.
    Folder(crate::io::inputs::FolderSpec),
    /// A video clip (mp4, mov, mkv, avi, webm), decoded by the system's ffmpeg: one subject, the
    /// face tracked from frame to frame; coefficients start at the model's mean.
    Video(crate::io::inputs::VideoSpec),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampledData {
    pub subjects: u32,
    pub frames: u32,
    /// Coefficient spread in units of σ.
    pub identity_scale: f32,
    pub expression_scale: f32,
    pub albedo_scale: f32,
}

impl Default for SampledData {
    fn default() -> Self {
        Self { subjects: 2, frames: 2, identity_scale: 1.0, expression_scale: 1.0, albedo_scale: 1.0 }
    }
}

/// The morphable model: generated procedurally, or a native `.ffm` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelSource {
    Procedural(ModelSpec),
    File(PathBuf),
}

impl Default for ModelSource {
    fn default() -> Self {
        ModelSource::Procedural(ModelSpec::default())
    }
}

/// One system of the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    pub name: String,
    /// The system's own settings, kept as RON text; its registry entry checks them.
    #[serde(default)]
    pub settings: Option<Box<ron::value::RawValue>>,
    /// Keep it even when no loss or output reads what it writes (the graph drops it otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

/// The optimiser step that ends a fit's iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    /// Adam on every fitted parameter (`systems/src/adam.rs`): `Adam(lr: 0.03, halve_every: 100)`.
    Adam(faceforge_systems::adam::AdamSettings),
    /// No step: the gradients are computed and left on the entities (gradient checks).
    NoStep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeshFormat {
    /// Wavefront OBJ with UVs and per-vertex colours.
    Obj,
    /// Binary little-endian PLY with per-vertex colours.
    Ply,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub dir: PathBuf,
    #[serde(default)]
    pub meshes: Vec<MeshFormat>,
    /// Coefficients and 3D landmarks per frame, as JSON.
    #[serde(default)]
    pub coefficients: bool,
    /// The rendered face (`NAME_render.png`) and, with an input image, the face drawn over it
    /// with the fitted landmarks (`NAME_overlay.png`). Needs `render`.
    #[serde(default)]
    pub images: bool,
    /// The 68 landmarks of the fitted face projected into the image, iBUG `.pts`. Needs `render`.
    #[serde(default)]
    pub landmarks: bool,
    /// Side of the texture PNG unwrapped from the image for each OBJ (with its MTL), when the
    /// frame has an image and a pose; 0: no texture.
    #[serde(default = "default_texture")]
    pub texture: usize,
    /// Per subject of two frames or more (a clip), `SUBJECT.glb`: the identity mesh with its
    /// texture, the expression basis as morph targets, the head's motion and expression as an
    /// animation at the clip's frame rate (25 fps for frames without times), and
    /// `SUBJECT_animation.csv` (pose and expression per frame).
    #[serde(default)]
    pub animation: bool,
    /// Write `checkpoint.json` every this many iterations (0: only on Ctrl-C and at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u32,
}

fn default_checkpoint_every() -> u32 {
    50
}

fn default_texture() -> usize {
    512
}

/// A scene that cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneError {
    pub file: String,
    /// 1-based line and column, when the fault has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for SceneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for SceneError {}

fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(Extensions::IMPLICIT_SOME | Extensions::UNWRAP_VARIANT_NEWTYPES)
}

/// A parsed scene with the text it came from, so later checks can point into the file. Relative
/// paths in a scene (model file, output folder) are taken from the working directory.
#[derive(Clone, Debug)]
pub struct LoadedScene {
    pub scene: Scene,
    pub file: String,
    pub source: String,
}

impl LoadedScene {
    pub fn from_str(source: &str, file: &str) -> Result<Self, SceneError> {
        let scene: Scene = ron_options().from_str(source).map_err(|e| SceneError {
            file: file.to_string(),
            position: Some((e.span.start.line, e.span.start.col)),
            message: e.code.to_string(),
        })?;
        Ok(Self { scene, file: file.to_string(), source: source.to_string() })
    }

    pub fn load(path: &Path) -> Result<Self, SceneError> {
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path)
            .map_err(|e| SceneError { file: file.clone(), position: None, message: format!("cannot read the scene: {e}") })?;
        Self::from_str(&source, &file)
    }

    /// The scene's name, or the file stem.
    pub fn name(&self) -> String {
        if self.scene.name.is_empty() {
            Path::new(&self.file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            self.scene.name.clone()
        }
    }

    /// An error about a value the scene spells out: placed at the first occurrence of `needle`
    /// in the file (a quoted system name, a loss key), or unplaced if an override put it there.
    pub fn error_at(&self, needle: &str, message: String) -> SceneError {
        let position = self.source.find(needle).map(|at| {
            let before = &self.source[..at];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, col)
        });
        SceneError { file: self.file.clone(), position, message }
    }

    /// Applies `path=value` overrides (`iterations=5`, `outputs.dir="out/x"`,
    /// `data.Sampled.subjects=4`, `backend=Cpu`). The value is RON; a bare identifier is an enum
    /// variant. The scene is re-checked after each.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), SceneError> {
        for o in overrides {
            let fail = |message: String| SceneError { file: format!("--set {o}"), position: None, message };
            let (path, value) = o.split_once('=').ok_or_else(|| fail("expected path=value".into()))?;
            let value = value.trim();
            let v: ron::Value = ron_options()
                .from_str(&quote_variants(value))
                .map_err(|e| fail(format!("the value is not RON: {}", e.code)))?;
            let new_value = serde_json::to_value(v).map_err(|e| fail(e.to_string()))?;
            let mut tree = serde_json::to_value(&self.scene).map_err(|e| fail(e.to_string()))?;
            let mut at = &mut tree;
            let keys: Vec<&str> = path.trim().split('.').collect();
            for (i, key) in keys.iter().enumerate() {
                let obj = at.as_object_mut().ok_or_else(|| fail(format!("`{}` is not a struct", keys[..i].join("."))))?;
                // An enum with data is one {Variant: …} entry: naming another variant switches to
                // it (`--set model.File="m.ffm"`, `--set data.Folder.path="images"`).
                let is_variant = key.starts_with(|c: char| c.is_ascii_uppercase());
                if is_variant && obj.len() == 1 && !obj.contains_key(*key) {
                    obj.clear();
                    obj.insert(key.to_string(), serde_json::Value::Object(Default::default()));
                }
                if i + 1 == keys.len() {
                    obj.insert(key.to_string(), new_value.clone());
                    break;
                }
                let known: Vec<String> = obj.keys().cloned().collect();
                at = obj.get_mut(*key).ok_or_else(|| fail(format!("no field `{key}` here; fields: {}", known.join(", "))))?;
            }
            self.scene = serde_json::from_value(tree).map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }
}

/// Quotes the bare identifiers of an override value that name unit enum variants (`Cpu`,
/// `[Obj, Ply]`), so they survive the trip through an untyped value as strings, which serde reads
/// back as those variants. Field names (followed by `:`), `true`, `false`, `None`, and names
/// followed by `(` are left alone; set the fields of a variant with data by path instead
/// (`data.Folder.path="images"`, which also switches `data` to that variant).
fn quote_variants(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
            out.extend(&chars[start..i]);
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let keep = matches!(word.as_str(), "true" | "false" | "None" | "Some") || matches!(next, Some(':') | Some('('));
            if keep {
                out.push_str(&word);
            } else {
                out.push('"');
                out.push_str(&word);
                out.push('"');
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
