//! `faceforge eval`: measures a folder of results against a folder of ground truth and writes
//! `metrics.json`, `report.md` and `report.html`.
//!
//! The truth is what `faceforge synth` writes (`NAME.ron` with the coefficients, pose and exact
//! landmarks, `NAME.png`); the results are per-frame files of faceforge's layout, from faceforge
//! or any method that outputs the model's topology: `NAME.obj` (required, model space, mm),
//! `NAME.pts` (the 68 landmarks in the image) and `NAME.json` (a `pose`), both optional. A frame
//! of the truth without a result is listed as missing, not silently dropped.

pub mod alignment;
pub mod metrics;
pub mod stability;

use crate::eval::metrics::{measure_frame, Prediction, RunMetrics, Truth};
use crate::io::outputs::{parse_obj_vertices, parse_pts};
use crate::report::{heat_map_max, heat_map_png, run_html, run_markdown, FrameImages, LossHistory, RunReport, MAX_FRAME_STRIPS};
use crate::io::synth::SynthTruth;
use anyhow::{bail, Context};
use faceforge_components::{Frame, Pose};
use faceforge_kernels::Backend;
use faceforge_systems::reconstruct::decode_batch;
use faceforge_model::{atomic_write, MorphableModel};
use std::path::{Path, PathBuf};

/// What `eval` found and measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: RunMetrics,
    /// Truth frames with no `NAME.obj` among the results.
    pub missing: Vec<String>,
    pub files: Vec<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The frames of a truth folder: the stems of its `NAME.ron` files, sorted.
fn truth_frames(truth: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(truth)
        .with_context(|| format!("reading the truth folder {}", truth.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("{} holds no ground truth (NAME.ron files, as `faceforge synth` writes them)", truth.display());
    }
    Ok(names)
}

/// Measures `results` against `truth` with `model`, writes the metrics and the report into `out`.
pub fn evaluate(model: &MorphableModel, results: &Path, truth: &Path, out: &Path) -> anyhow::Result<Evaluation> {
    let (mut frames, mut vertex_errors, mut missing, mut strips) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for name in truth_frames(truth)? {
        let truth_file = truth.join(format!("{name}.ron"));
        let known: SynthTruth = ron::from_str(&read(&truth_file)?).map_err(|e| anyhow::anyhow!("{}:{}:{}: {}", truth_file.display(), e.span.start.line, e.span.start.col, e.code))?;
        let mesh_file = results.join(format!("{name}.obj"));
        if !mesh_file.exists() {
            missing.push(name);
            continue;
        }
        let shape = parse_obj_vertices(&mesh_file.display().to_string(), &read(&mesh_file)?)?;
        if shape.len() != 3 * model.n_vertices() {
            bail!("{} has {} vertices but the model ({}) has {}: evaluate with the model the results were made with (--model)", mesh_file.display(), shape.len() / 3, model.origin(), model.n_vertices());
        }
        let frame = Frame { subject: bevy_ecs::entity::Entity::PLACEHOLDER, subject_id: 0, index: 0, name: name.clone() };
        let (true_shape, _) = decode_batch(&Backend::Cpu, model, None, &[(&frame, &known.coeffs)], false)
            .map_err(|e| anyhow::anyhow!("{}: {e} (model {})", truth_file.display(), model.origin()))?;
        let pts_file = results.join(format!("{name}.pts"));
        let landmarks = if pts_file.exists() { Some(parse_pts(&pts_file.display().to_string(), &read(&pts_file)?)?) } else { None };
        if let Some(l) = landmarks.as_ref().filter(|l| l.len() != known.landmarks_2d_exact.len()) {
            bail!("{} has {} landmarks, the truth {} has {}", pts_file.display(), l.len(), truth_file.display(), known.landmarks_2d_exact.len());
        }
        let json_file = results.join(format!("{name}.json"));
        let pose: Option<Pose> = if json_file.exists() {
            let record: serde_json::Value = serde_json::from_str(&read(&json_file)?).with_context(|| format!("parsing {}", json_file.display()))?;
            record.get("pose").filter(|p| !p.is_null()).map(|p| serde_json::from_value(p.clone())).transpose().with_context(|| format!("{}: the `pose` field", json_file.display()))?
        } else {
            None
        };
        let predicted = Prediction { shape: &shape, landmarks_2d: landmarks, pose: pose.as_ref() };
        let exact = Truth { shape: &true_shape, landmarks_2d: Some(known.landmarks_2d_exact.clone()), pose: Some(&known.pose) };
        let (metrics, errors) = measure_frame(model, &name, &predicted, &exact, model.mean_shape());
        frames.push(metrics);
        vertex_errors.push(errors);
        if strips.len() < MAX_FRAME_STRIPS {
            let bytes = |path: PathBuf| std::fs::read(path).ok();
            strips.push(FrameImages { input: bytes(truth.join(format!("{name}.png"))), overlay: bytes(results.join(format!("{name}_overlay.png"))), error: None, name });
        }
    }
    if frames.is_empty() {
        bail!("none of the {} truth frames has a result (NAME.obj) in {}", missing.len(), results.display());
    }
    let metrics = RunMetrics::from_frames(frames, &vertex_errors);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let max = heat_map_max(&metrics.vertex_errors_mm);
    let mut facts = vec![
        ("results".to_string(), results.display().to_string()),
        ("ground truth".to_string(), truth.display().to_string()),
        ("model".to_string(), format!("{} ({} vertices)", model.origin(), model.n_vertices())),
        ("frames measured".to_string(), metrics.frames.len().to_string()),
    ];
    if !missing.is_empty() {
        facts.push(("missing results".to_string(), format!("{}: {}", missing.len(), missing.join(", "))));
    }
    let report = RunReport {
        title: format!("evaluation of {}", results.display()),
        facts,
        metrics: Some(&metrics),
        losses: &LossHistory::default(),
        images: &strips,
        heat_map: Some((heat_map_png(model, &metrics.vertex_errors_mm, max, 256), max)),
        graph: None,
        clips: &[],
        viewers: Vec::new(),
        plots: Vec::new(),
    };
    let mut files = Vec::new();
    for (name, text) in [("metrics.json", serde_json::to_string_pretty(&metrics)?), ("report.md", run_markdown(&report)), ("report.html", run_html(&report))] {
        let path = out.join(name);
        atomic_write(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    Ok(Evaluation { metrics, missing, files })
}
