//! `faceforge sweep`: an ablation as variants of one scene's graph. A sweep file names a base
//! scene and, per variant, the systems it removes and adds, the losses it uses and any other
//! overrides; each variant runs to the end and the table (mean and std of per-vertex, depth and
//! scan error, 3D and 2D NME, pose and landmark error) is written as Markdown, JSON and a
//! side-by-side HTML report. A sweep over a training scene (one with a `learn` section) trains
//! each variant's network and tabulates it on its held-out frames (NME by yaw bin, pose and
//! shape error), as the learn-mode papers' ablations do.

use crate::eval::metrics::RunMetrics;
use crate::report::{sweep_html, sweep_markdown_table, LossHistory, VariantReport};
use crate::run::run;
use crate::scene::{LoadedScene, SceneError, SystemSpec};
use anyhow::Context;
use faceforge_model::atomic_write;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    #[serde(default)]
    pub name: String,
    /// The scene every variant starts from, relative to the sweep file.
    pub base: PathBuf,
    /// Overrides (`path=value`) for every variant, applied first.
    #[serde(default)]
    pub set: Vec<String>,
    /// Where the table and each variant's outputs go (`<out>/<variant>/`).
    pub out: PathBuf,
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Systems of the base graph to drop, by name.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Systems to add, as in a scene.
    #[serde(default)]
    pub add: Vec<SystemSpec>,
    /// The variant's losses and weights (replacing the base's), when given.
    #[serde(default)]
    pub losses: Option<BTreeMap<String, f32>>,
    /// More overrides, applied last.
    #[serde(default)]
    pub set: Vec<String>,
}

/// One row of the ablation table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub variant: String,
    /// Everything measured (the mean face's errors on the same frames included).
    pub metrics: RunMetrics,
    /// The final loss terms.
    pub losses: BTreeMap<String, f32>,
    pub seconds: f64,
    #[serde(skip)]
    pub loss_history: LossHistory,
    /// The variant's output folder's name under the sweep's.
    pub folder: String,
}

/// One row of a training sweep: the variant's network on the held-out frames.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingRow {
    pub variant: String,
    pub held_out: crate::run::train::HeldOut,
    pub losses: BTreeMap<String, f32>,
    pub seconds: f64,
    pub folder: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub sweep: String,
    pub base: String,
    pub rows: Vec<Row>,
    /// The rows of a training sweep (then `rows` is empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trainings: Vec<TrainingRow>,
    /// Where the table, the report and the variants' outputs are.
    pub out: PathBuf,
}

fn slug(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    s.split('_').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("_")
}

/// Reads a sweep file (errors name the file, line and column).
pub fn load(path: &Path) -> Result<Sweep, SceneError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SceneError { file: file.clone(), position: None, message: format!("cannot read the sweep: {e}") })?;
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES)
        .from_str(&text)
        .map_err(|e| SceneError { file, position: Some((e.span.start.line, e.span.start.col)), message: e.code.to_string() })
}

/// The scene of one variant: the base with the sweep's and the variant's changes.
pub fn variant_scene(base: &LoadedScene, sweep: &Sweep, variant: &Variant, extra: &[String]) -> Result<LoadedScene, SceneError> {
    let mut scene = base.clone();
    scene.apply_overrides(&sweep.set)?;
    for name in &variant.remove {
        let before = scene.scene.systems.len();
        scene.scene.systems.retain(|s| &s.name != name);
        if scene.scene.systems.len() == before {
            return Err(SceneError { file: base.file.clone(), position: None, message: format!("variant `{}` removes `{name}`, which the base scene does not have", variant.name) });
        }
    }
    scene.scene.systems.extend(variant.add.iter().cloned());
    if let Some(losses) = &variant.losses {
        scene.scene.losses = losses.clone();
    }
    scene.apply_overrides(&variant.set)?;
    scene.apply_overrides(extra)?;
    scene.scene.name = format!("{} / {}", base.name(), variant.name);
    scene.scene.outputs.dir = sweep.out.join(slug(&variant.name));
    Ok(scene)
}

/// Whether a file holds a sweep (a top-level `Sweep(`) rather than a scene.
pub fn is_sweep(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.lines().any(|l| l.starts_with("Sweep(")))
}

/// Checks every variant's graph without running it; returns the variants' names and graphs.
pub fn check(path: &Path, extra: &[String]) -> Result<Vec<(String, crate::scene::graph::Plan)>, SceneError> {
    let sweep = load(path)?;
    let base = LoadedScene::load(&path.parent().unwrap_or(Path::new(".")).join(&sweep.base))?;
    let extra: Vec<String> = extra.iter().filter(|o| !o.starts_with("sweep.")).cloned().collect();
    let mut names = Vec::new();
    for variant in &sweep.variants {
        let scene = variant_scene(&base, &sweep, variant, &extra)?;
        let plan = crate::scene::graph::plan(&scene).map_err(|e| SceneError { message: format!("variant `{}`: {}", variant.name, e.message), ..e })?;
        crate::scene::graph::build_schedule(&scene, &plan).map_err(|e| SceneError { message: format!("variant `{}`: {}", variant.name, e.message), ..e })?;
        names.push((variant.name.clone(), plan));
    }
    Ok(names)
}

/// Runs every variant and writes `<out>/table.md` and `<out>/table.json`. `extra` overrides
/// apply to every variant last (e.g. a smaller size for a quick look).
pub fn sweep(path: &Path, extra: &[String], show_progress: bool) -> anyhow::Result<Table> {
    let mut sweep = load(path)?;
    let base_path = path.parent().unwrap_or(Path::new(".")).join(&sweep.base);
    let base = LoadedScene::load(&base_path)?;
    // Sweep-level `out=…` overrides.
    for o in extra {
        if let Some(dir) = o.strip_prefix("sweep.out=") {
            sweep.out = PathBuf::from(dir.trim_matches('"'));
        }
    }
    let extra: Vec<String> = extra.iter().filter(|o| !o.starts_with("sweep.")).cloned().collect();
    let mut rows = Vec::new();
    let mut trainings = Vec::new();
    for variant in &sweep.variants {
        let scene = variant_scene(&base, &sweep, variant, &extra)?;
        tracing::info!("variant {}", variant.name);
        if scene.scene.learn.is_some() {
            let options = crate::run::RunOptions { progress: show_progress, overwrite: true, ..Default::default() };
            let summary = crate::run::train::train(&scene, &options, false).with_context(|| format!("variant `{}`", variant.name))?;
            trainings.push(TrainingRow { variant: variant.name.clone(), held_out: summary.held_out, losses: summary.losses, seconds: summary.seconds, folder: slug(&variant.name) });
            continue;
        }
        let summary = run(&scene, show_progress).with_context(|| format!("variant `{}`", variant.name))?;
        let metrics = summary.metrics.with_context(|| format!("variant `{}` has no metrics: the data needs ground truth", variant.name))?;
        rows.push(Row {
            variant: variant.name.clone(),
            metrics,
            losses: summary.losses,
            seconds: summary.seconds,
            loss_history: summary.loss_history,
            folder: slug(&variant.name),
        });
    }
    let table = Table {
        sweep: if sweep.name.is_empty() { path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default() } else { sweep.name.clone() },
        base: base_path.display().to_string(),
        rows,
        trainings,
        out: sweep.out.clone(),
    };
    std::fs::create_dir_all(&sweep.out).with_context(|| format!("creating {}", sweep.out.display()))?;
    atomic_write(&sweep.out.join("table.json"), serde_json::to_string_pretty(&table)?.as_bytes())?;
    atomic_write(&sweep.out.join("table.md"), markdown(&table).as_bytes())?;
    if table.trainings.is_empty() {
        atomic_write(&sweep.out.join("report.html"), sweep_html(&table.sweep, &table.base, &variant_reports(&table)).as_bytes())?;
    }
    Ok(table)
}

fn variant_reports(t: &Table) -> Vec<VariantReport<'_>> {
    t.rows.iter().map(|r| VariantReport { name: r.variant.clone(), metrics: &r.metrics, losses: &r.loss_history, seconds: r.seconds, link: format!("{}/report.html", r.folder) }).collect()
}

/// The table as Markdown.
pub fn markdown(t: &Table) -> String {
    if !t.trainings.is_empty() {
        return training_markdown(t);
    }
    format!("# {}\n\nBase scene: `{}`. Errors against the synthetic ground truth, mean ± std over frames.\n\n{}", t.sweep, t.base, sweep_markdown_table(&variant_reports(t)))
}

/// A training sweep's table: each variant's network on its held-out frames.
fn training_markdown(t: &Table) -> String {
    let pct = |v: Option<f32>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
    let mut out = format!(
        "# {}\n\nBase scene: `{}`. Each variant's network trained, then measured on held-out synthetic frames: 2D NME (%) of the model's landmarks under the predicted pose by yaw bin and their mean, pose error, per-vertex shape error after rigid alignment. Reports: `<variant>/report.html`.\n\n",
        t.sweep, t.base
    );
    let bins: Vec<String> = t.trainings.first().map(|r| r.held_out.by_yaw.iter().map(|b| b.bin.clone()).collect()).unwrap_or_default();
    // The reflectance column when the networks predict an albedo (CEST).
    let albedo = t.trainings.iter().any(|r| r.held_out.albedo_255.is_some());
    let albedo_header = if albedo { " albedo (/255) |" } else { "" };
    out.push_str(&format!("| variant | {} | NME mean | pose error (°) | per-vertex (mm) |{albedo_header} time (s) |\n", bins.iter().map(|b| format!("NME {b}")).collect::<Vec<_>>().join(" | ")));
    out.push_str(&format!("|---|{}---|---|---|{}---|\n", "---|".repeat(bins.len()), if albedo { "---|" } else { "" }));
    for r in &t.trainings {
        let h = &r.held_out;
        let by_bin: Vec<String> = h.by_yaw.iter().map(|b| pct(b.nme_reconstruction)).collect();
        let pose = h.pose_error_deg.as_ref().map_or("–".into(), |p| format!("{:.2}", p.mean));
        let shape = h.per_vertex_mm.as_ref().map_or("–".into(), |p| format!("{:.3}", p.mean));
        let reflectance = if albedo { format!(" {} |", h.albedo_255.as_ref().map_or("–".into(), |a| format!("{:.2}", a.mean))) } else { String::new() };
        out.push_str(&format!("| {} | {} | {} | {pose} | {shape} |{reflectance} {:.0} |\n", r.variant, by_bin.join(" | "), pct(h.nme_reconstruction), r.seconds));
    }
    if let Some(first) = t.trainings.first() {
        let h = &first.held_out;
        let by_bin: Vec<String> = h.by_yaw.iter().map(|b| pct(Some(b.nme_mean_face))).collect();
        let reflectance = if albedo { format!(" {} |", h.mean_albedo_255.map_or("–".into(), |a| format!("{a:.2}"))) } else { String::new() };
        out.push_str(&format!("| mean face | {} | {} | – | {:.3} |{reflectance} – |\n", by_bin.join(" | "), pct(Some(h.nme_mean_face)), h.mean_face_per_vertex_mm));
    }
    out
}
