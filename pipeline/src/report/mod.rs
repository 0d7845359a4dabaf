//! Reports people want to look at: a Markdown summary and a self-contained HTML page per run
//! (and per sweep, its variants side by side). Plots are inline SVG (`svg.rs`), images inline
//! PNG data; the page opens offline and links nowhere outside its folder.

pub mod overlay;
pub mod svg;
pub mod viewer;
pub mod views;

use crate::eval::metrics::{ced, RunMetrics, Spread, YAW_BINS};
use crate::io::outputs::png_bytes;
use crate::report::svg::{colormap, colour_bar, escape, BarPlot, LinePlot, Series};
use base64::Engine;
use faceforge_components::Pose;
use faceforge_kernels::normals::Adjacency;
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::{normals, Backend};
use faceforge_model::MorphableModel;
use faceforge_systems::render::{render_batch, RenderBatch};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The loss terms of every iteration, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossHistory(pub Vec<BTreeMap<String, f32>>);

impl LossHistory {
    /// One curve per term, and their sum as `total` first.
    pub fn series(&self) -> Vec<Series> {
        let mut terms: BTreeMap<&str, Vec<(f32, f32)>> = BTreeMap::new();
        let mut total = Vec::new();
        for (it, step) in self.0.iter().enumerate() {
            if step.is_empty() {
                continue;
            }
            total.push((it as f32, step.values().sum::<f32>()));
            for (name, value) in step {
                terms.entry(name).or_default().push((it as f32, *value));
            }
        }
        if total.is_empty() {
            return Vec::new();
        }
        std::iter::once(Series { name: "total".into(), points: total }).chain(terms.into_iter().map(|(name, points)| Series { name: name.to_string(), points })).collect()
    }

    /// `iteration,total,<term>…` lines.
    pub fn csv(&self) -> String {
        let names: std::collections::BTreeSet<&String> = self.0.iter().flat_map(|s| s.keys()).collect();
        let mut out = format!("iteration,total{}\n", names.iter().map(|n| format!(",{n}")).collect::<String>());
        for (it, step) in self.0.iter().enumerate() {
            let _ = write!(out, "{it},{}", step.values().sum::<f32>());
            for n in &names {
                let _ = write!(out, ",{}", step.get(*n).map_or(String::new(), |v| v.to_string()));
            }
            out.push('\n');
        }
        out
    }
}

/// A frame's pictures for the report, as PNG bytes.
#[derive(Clone, Debug, Default)]
pub struct FrameImages {
    pub name: String,
    pub input: Option<Vec<u8>>,
    pub overlay: Option<Vec<u8>>,
    /// |render − input| per pixel on the face, as a colour map.
    pub error: Option<Vec<u8>>,
}

/// Frames shown as image strips; more would make the page heavy without saying more.
pub const MAX_FRAME_STRIPS: usize = 12;
/// The photometric error that saturates the error map (of 1).
const ERROR_MAP_MAX: f32 = 0.25;

/// The photometric error |render − input| (mean over channels) on the face, as a colour map over
/// the darkened input.
pub fn error_map(input: &[f32], render: &[f32], mask: &[f32]) -> Vec<f32> {
    mask.iter()
        .enumerate()
        .flat_map(|(p, &m)| {
            if m > 0.0 {
                let e = (0..3).map(|c| (render[3 * p + c].clamp(0.0, 1.0) - input[3 * p + c]).abs()).sum::<f32>() / 3.0;
                colormap(e / ERROR_MAP_MAX)
            } else {
                let grey = 0.25 * (input[3 * p] + input[3 * p + 1] + input[3 * p + 2]) / 3.0;
                [grey; 3]
            }
        })
        .collect()
}

/// The mean face coloured by a per-vertex error (mm), drawn from the front and at 60° yaw side
/// by side, lit from the camera; PNG bytes.
pub fn heat_map_png(model: &MorphableModel, errors: &[f32], max: f32, size: usize) -> Vec<u8> {
    let positions = model.mean_shape();
    let n = model.n_vertices();
    let normals = normals::forward_cpu(positions, model.triangles(), &Adjacency::new(n, model.triangles()), n);
    let mut out = vec![1.0f32; 3 * 2 * size * size];
    for (view, yaw) in [0.0f32, 60.0].into_iter().enumerate() {
        let pose = Pose::weak_from_angles(yaw, 0.0, 0.0, size as f32 / 210.0, [size as f32 / 2.0, size as f32 / 2.0]);
        let r = faceforge_kernels::project::rotation_ypr(yaw.to_radians(), 0.0, 0.0);
        // The camera looks along −z of the turned head: light along the view.
        let colors: Vec<f32> = (0..n)
            .flat_map(|v| {
                let nz = r[6] * normals[3 * v] + r[7] * normals[3 * v + 1] + r[8] * normals[3 * v + 2];
                colormap(errors.get(v).copied().unwrap_or(0.0) / max).map(|c| c * (0.35 + 0.65 * nz.max(0.0)))
            })
            .collect();
        let (camera_model, camera) = pose.camera();
        let drawn = render_batch(&Backend::Cpu, model.triangles(), n, RasterShape { batch: 1, width: size, height: size }, &RenderBatch { positions, colors: &colors, camera_model, cameras: &camera });
        for y in 0..size {
            for x in 0..size {
                let p = y * size + x;
                if drawn.raster.covered(p) {
                    out[3 * (y * 2 * size + view * size + x)..][..3].copy_from_slice(&drawn.color[3 * p..3 * p + 3]);
                }
            }
        }
    }
    png_bytes(&out, 2 * size, size)
}

/// The heat map's scale: the 95th percentile of the errors, so one bad vertex does not wash the
/// map out.
pub fn heat_map_max(errors: &[f32]) -> f32 {
    let mut sorted: Vec<f32> = errors.iter().copied().filter(|e| e.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    sorted.get((sorted.len() as f32 * 0.95) as usize).copied().unwrap_or(1.0).max(1e-3)
}

fn data_uri(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

fn spread(s: Spread) -> String {
    format!("{:.3} ± {:.3}", s.mean, s.std)
}

fn opt(v: Option<f32>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// Everything a run's report shows.
pub struct RunReport<'a> {
    pub title: String,
    /// (what, value) lines: scene, backend, model, frames, time…
    pub facts: Vec<(String, String)>,
    pub metrics: Option<&'a RunMetrics>,
    pub losses: &'a LossHistory,
    pub images: &'a [FrameImages],
    /// The per-vertex error heat map (PNG) and its scale (mm).
    pub heat_map: Option<(Vec<u8>, f32)>,
    /// The derived graph, drawn (SVG).
    pub graph: Option<String>,
    /// Each clip's stability (subjects of three frames or more).
    pub clips: &'a [crate::eval::stability::ClipStability],
    /// The clips' animated-glTF viewer pages (file names in the output folder).
    pub viewers: Vec<String>,
    /// More curves, drawn after the losses (a training's held-out measures over its steps).
    pub plots: Vec<LinePlot>,
}

/// The accuracy table's rows: (metric, fit, mean face).
fn accuracy_rows(m: &RunMetrics) -> Vec<(&'static str, String, String)> {
    vec![
        ("2D landmark NME (%), mean of the yaw-bin means", opt(m.nme_2d_mean_of_bins, 3), "".into()),
        ("2D landmark NME (%), over frames", spread(m.nme_2d), "".into()),
        ("landmark error (px)", spread(m.landmarks_px), "".into()),
        ("dense 3D NME (%), outer interocular", spread(m.nme_3d), spread(m.mean_face_nme_3d)),
        ("per-vertex error (mm)", spread(m.per_vertex_mm), spread(m.mean_face_per_vertex_mm)),
        ("depth error (mm)", spread(m.depth_mm), spread(m.mean_face_depth_mm)),
        ("point-to-plane RMSE (mm), 95 mm crop, ICP", spread(m.scan_rmse_mm), spread(m.mean_face_scan_rmse_mm)),
        ("mean point-to-plane distance (mm)", spread(m.scan_mean_mm), "".into()),
        ("point-to-point MAE (mm)", spread(m.scan_mae_mm), "".into()),
        ("pose error (°)", spread(m.pose_deg), "".into()),
    ]
}

fn yaw_label(range: [f32; 2]) -> String {
    format!("{:.0}–{:.0}°", range[0], range[1])
}

/// The Markdown summary of a run.
pub fn run_markdown(r: &RunReport) -> String {
    let mut s = format!("# {}\n\n", r.title);
    for (k, v) in &r.facts {
        let _ = writeln!(s, "- {k}: {v}");
    }
    if let Some(m) = r.metrics {
        s.push_str("\n## Accuracy against the ground truth (mean ± std over frames)\n\n| metric | fit | mean face |\n|---|---|---|\n");
        for (name, fit, base) in accuracy_rows(m) {
            let _ = writeln!(s, "| {name} | {fit} | {base} |");
        }
        s.push_str("\n## By yaw bin (|true yaw|)\n\n| yaw | frames | 2D NME (%) | 3D NME (%) | pose error (°) |\n|---|---|---|---|---|\n");
        for b in &m.by_yaw {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} |", yaw_label(b.yaw_deg), b.frames, opt(b.nme_2d, 3), opt(b.nme_3d, 3), opt(b.pose_deg, 2));
        }
        let _ = writeln!(s, "| mean of bin means | | {} | {} | |", opt(m.nme_2d_mean_of_bins, 3), opt(m.nme_3d_mean_of_bins, 3));
        s.push_str("\n## Frames\n\n| frame | |yaw| (°) | 2D NME (%) | 3D NME (%) | per-vertex (mm) | scan RMSE (mm) | pose (°) |\n|---|---|---|---|---|---|---|\n");
        for f in &m.frames {
            let _ = writeln!(s, "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {} |", f.frame, opt(f.yaw(), 1), opt(f.nme_2d, 3), f.nme_3d, f.per_vertex_mm, f.scan.rmse_mm, opt(f.pose_deg, 2));
        }
    }
    if !r.clips.is_empty() {
        s.push_str("\n## Clips (jitter: RMS second difference of the landmarks over time, % of the interocular distance)\n\n| clip | frames | jitter, detector (%) | jitter, fit (%) | jitter, vertices (mm) | error to the truth (%) |\n|---|---|---|---|---|---|\n");
        for c in r.clips {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} |", c.subject, c.frames, opt(c.jitter_detector, 3), opt(c.jitter_fit, 3), opt(c.jitter_vertices_mm, 3), opt(c.error_to_truth, 3));
        }
    }
    if let Some(last) = r.losses.0.last().filter(|l| !l.is_empty()) {
        let terms: Vec<String> = last.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        let _ = writeln!(s, "\nFinal loss {:.4}: {}. Every iteration's terms are in `losses.csv`; the plots are in `report.html`.", last.values().sum::<f32>(), terms.join(", "));
    }
    s
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1260px;margin:24px auto;padding:0 16px;color:#222}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}.plots{display:flex;flex-wrap:wrap;gap:12px}\
.strip{display:flex;gap:6px;align-items:flex-start;margin:6px 0}.strip img{width:180px;image-rendering:pixelated;border:1px solid #ccc}\
.strip .name{width:110px;font-size:13px}.facts td{text-align:left}figure{margin:0}figcaption{font-size:12px;color:#555}";

fn html_page(title: &str, body: &str) -> String {
    format!("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>\n{body}</body></html>\n", t = escape(title))
}

fn html_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr>");
    for row in rows {
        s.push_str("<tr>");
        for cell in row {
            let _ = write!(s, "<td>{}</td>", escape(cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>\n");
    s
}

fn loss_plot(title: &str, series: Vec<Series>) -> String {
    LinePlot { title: title.into(), x_label: "iteration".into(), y_label: "loss (weighted)".into(), log_y: true, series, ..Default::default() }.svg()
}

fn ced_plot(title: &str, x_label: &str, curves: Vec<(String, Vec<f32>)>) -> String {
    let series = curves.into_iter().map(|(name, errors)| Series { name, points: std::iter::once((0.0, 0.0)).chain(ced(&errors).into_iter().map(|(e, f)| (e, 100.0 * f))).collect() }).collect();
    LinePlot { title: title.into(), x_label: x_label.into(), y_label: "frames with smaller error (%)".into(), steps: true, y_range: Some((0.0, 100.0)), series, ..Default::default() }.svg()
}

/// A clip's head angles and jitter over its frames.
fn clip_plots(c: &crate::eval::stability::ClipStability) -> String {
    let over_frames = |name: &str, value: &dyn Fn(&crate::eval::stability::ClipFrame) -> Option<f32>| Series {
        name: name.into(),
        points: c.per_frame.iter().enumerate().filter_map(|(t, f)| value(f).map(|v| (t as f32, v))).collect(),
    };
    let angles = ["yaw", "pitch", "roll"].iter().enumerate().map(|(a, name)| over_frames(name, &|f| f.ypr_deg.map(|d| d[a]))).collect();
    let jitter = vec![over_frames("fit", &|f| f.jitter_fit), over_frames("detector", &|f| f.jitter_detector)];
    let title = |what: &str| format!("{}: {what}", c.subject);
    LinePlot { title: title("head angles"), x_label: "frame".into(), y_label: "degrees".into(), series: angles, ..Default::default() }.svg()
        + &LinePlot { title: title("jitter"), x_label: "frame".into(), y_label: "|Δ² landmarks| (% interocular)".into(), series: jitter, ..Default::default() }.svg()
}

fn yaw_plot(m: &RunMetrics) -> String {
    BarPlot {
        title: "error by yaw bin".into(),
        y_label: "NME (%) / pose error (°)".into(),
        categories: YAW_BINS.iter().map(|b| yaw_label(*b)).collect(),
        series: vec![
            ("2D NME (%)".into(), m.by_yaw.iter().map(|b| b.nme_2d).collect()),
            ("3D NME (%)".into(), m.by_yaw.iter().map(|b| b.nme_3d).collect()),
            ("pose error (°)".into(), m.by_yaw.iter().map(|b| b.pose_deg).collect()),
        ],
    }
    .svg()
}

/// The self-contained HTML page of a run.
pub fn run_html(r: &RunReport) -> String {
    let mut body = String::new();
    let facts: Vec<Vec<String>> = r.facts.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
    body.push_str(&html_table(&["run", ""], &facts).replace("<table>", "<table class=\"facts\">"));
    if let Some(m) = r.metrics {
        body.push_str("<h2>Accuracy against the ground truth</h2><p>Mean ± std over frames; the mean face is the model's mean shape, aligned the same way: what a fit starts from.</p>");
        let rows: Vec<Vec<String>> = accuracy_rows(m).into_iter().map(|(a, b, c)| vec![a.to_string(), b, c]).collect();
        body.push_str(&html_table(&["metric", "fit", "mean face"], &rows));
        body.push_str("<h2>By yaw bin</h2>");
        let mut rows: Vec<Vec<String>> = m.by_yaw.iter().map(|b| vec![yaw_label(b.yaw_deg), b.frames.to_string(), opt(b.nme_2d, 3), opt(b.nme_3d, 3), opt(b.pose_deg, 2), opt(b.per_vertex_mm, 3)]).collect();
        rows.push(vec!["mean of bin means".into(), String::new(), opt(m.nme_2d_mean_of_bins, 3), opt(m.nme_3d_mean_of_bins, 3), String::new(), String::new()]);
        body.push_str(&html_table(&["|yaw|", "frames", "2D NME (%)", "3D NME (%)", "pose error (°)", "per-vertex (mm)"], &rows));
        body.push_str("<div class=\"plots\">");
        body.push_str(&yaw_plot(m));
        body.push_str("</div>");
    }
    let series = r.losses.series();
    if !series.is_empty() {
        body.push_str("<h2>Loss curves</h2><div class=\"plots\">");
        body.push_str(&loss_plot("loss per term", series));
        for plot in &r.plots {
            body.push_str(&plot.svg());
        }
        body.push_str("</div>");
    }
    if let Some(m) = r.metrics {
        body.push_str("<h2>Cumulative error distributions</h2><div class=\"plots\">");
        let column = |f: &dyn Fn(&crate::eval::metrics::FrameMetrics) -> Option<f32>| m.frames.iter().filter_map(f).collect::<Vec<f32>>();
        if m.frames.iter().any(|f| f.nme_2d.is_some()) {
            body.push_str(&ced_plot("CED, 2D landmarks", "NME (%)", vec![("fit".into(), column(&|f| f.nme_2d))]));
        }
        body.push_str(&ced_plot("CED, dense 3D", "NME (%)", vec![("fit".into(), column(&|f| Some(f.nme_3d))), ("mean face".into(), column(&|f| Some(f.mean_face.nme_3d)))]));
        body.push_str(&ced_plot("CED, point-to-plane RMSE (95 mm crop)", "RMSE (mm)", vec![("fit".into(), column(&|f| Some(f.scan.rmse_mm))), ("mean face".into(), column(&|f| Some(f.mean_face.scan_rmse_mm)))]));
        body.push_str("</div>");
    }
    if let Some((png, max)) = &r.heat_map {
        let _ = write!(body, "<h2>Per-vertex error</h2><figure><img alt=\"per-vertex error heat map\" src=\"{}\"><figcaption>Mean per-vertex error over the frames after rigid alignment, on the mean face (front and 60°).</figcaption></figure>{}", data_uri(png), colour_bar(*max, "mm"));
    }
    if !r.images.is_empty() {
        let _ = write!(body, "<h2>Frames</h2><p>Input, fit drawn over it with its landmarks, and the photometric error on the face (scale 0 to {ERROR_MAP_MAX}): against another frame's texture drawn at this pose when the scene swaps textures (what PGN's losses compare), else against the render.</p>");
        for f in r.images.iter().take(MAX_FRAME_STRIPS) {
            let _ = write!(body, "<div class=\"strip\"><div class=\"name\">{}</div>", escape(&f.name));
            for (what, png) in [("input", &f.input), ("overlay", &f.overlay), ("error", &f.error)] {
                if let Some(png) = png {
                    let _ = write!(body, "<img alt=\"{what}\" src=\"{}\">", data_uri(png));
                }
            }
            body.push_str("</div>");
        }
        body.push_str(&colour_bar(ERROR_MAP_MAX, "photometric error"));
    }
    if !r.clips.is_empty() {
        body.push_str("<h2>Clips</h2><p>Jitter: the RMS over frames and landmarks of the second difference over time of the 2D landmarks in the video's pixels, in % of the outer interocular distance; for the vertices, of the fitted shape (mm). Error to the truth: RMS landmark distance to the true trajectory (synthetic clips).</p>");
        let rows: Vec<Vec<String>> = r
            .clips
            .iter()
            .map(|c| vec![escape(&c.subject), c.frames.to_string(), opt(c.jitter_detector, 3), opt(c.jitter_fit, 3), opt(c.jitter_vertices_mm, 3), opt(c.error_to_truth, 3)])
            .collect();
        body.push_str(&html_table(&["clip", "frames", "jitter, detector (%)", "jitter, fit (%)", "jitter, vertices (mm)", "error to the truth (%)"], &rows));
        for v in &r.viewers {
            let _ = write!(body, "<p>Animated glTF: <a href=\"{0}\">{0}</a> (plays offline; the <code>.glb</code> beside it opens in Blender or any glTF viewer).</p>", escape(v));
        }
        for c in r.clips.iter().take(MAX_FRAME_STRIPS) {
            let _ = write!(body, "<div class=\"plots\">{}</div>", clip_plots(c));
        }
    }
    if let Some(graph) = &r.graph {
        body.push_str("<h2>Graph</h2><p>The systems this run ran, a row per stage: the scene's forward systems, the weighted losses, the adjoints the graph derived and the step; dashed, those it dropped because nothing read what they write. Hover for what each reads and writes.</p>");
        let _ = write!(body, "<div class=\"graph\" style=\"overflow-x: auto\">{graph}</div>");
    }
    if let Some(m) = r.metrics {
        body.push_str("<h2>Per frame</h2>");
        let rows: Vec<Vec<String>> = m
            .frames
            .iter()
            .map(|f| vec![f.frame.clone(), opt(f.yaw(), 1), opt(f.nme_2d, 3), format!("{:.3}", f.nme_3d), format!("{:.3}", f.per_vertex_mm), format!("{:.3}", f.scan.rmse_mm), opt(f.pose_deg, 2)])
            .collect();
        body.push_str(&html_table(&["frame", "|yaw| (°)", "2D NME (%)", "3D NME (%)", "per-vertex (mm)", "scan RMSE (mm)", "pose error (°)"], &rows));
    }
    html_page(&r.title, &body)
}

/// One variant of a sweep, for the side-by-side report.
pub struct VariantReport<'a> {
    pub name: String,
    pub metrics: &'a RunMetrics,
    pub losses: &'a LossHistory,
    pub seconds: f64,
    /// The variant's own report, relative to the sweep's folder.
    pub link: String,
}

/// The ablation table's columns: (header, value of a variant).
type Column = (&'static str, fn(&RunMetrics) -> String);

fn sweep_columns() -> Vec<Column> {
    vec![
        ("per-vertex (mm)", |m| spread(m.per_vertex_mm)),
        ("depth (mm)", |m| spread(m.depth_mm)),
        ("3D NME (%)", |m| spread(m.nme_3d)),
        ("scan RMSE (mm)", |m| spread(m.scan_rmse_mm)),
        ("2D NME (%), mean of bins", |m| opt(m.nme_2d_mean_of_bins, 3)),
        ("pose (°)", |m| spread(m.pose_deg)),
        ("landmarks (px)", |m| spread(m.landmarks_px)),
        ("albedo (/255)", |m| m.albedo_255.map_or("–".into(), spread)),
    ]
}

/// The ablation table as Markdown rows (header included), with the mean face first.
pub fn sweep_markdown_table(variants: &[VariantReport]) -> String {
    let columns = sweep_columns();
    let mut s = format!("| variant | {} | time (s) |\n|---|{}---|\n", columns.iter().map(|c| c.0).collect::<Vec<_>>().join(" | "), "---|".repeat(columns.len()));
    if let Some(first) = variants.first() {
        let m = first.metrics;
        let mean_albedo = m.mean_albedo_255.map_or(String::new(), spread);
        let _ = writeln!(s, "| mean face (start) | {} | {} | {} | {} | | | | {mean_albedo} | |", spread(m.mean_face_per_vertex_mm), spread(m.mean_face_depth_mm), spread(m.mean_face_nme_3d), spread(m.mean_face_scan_rmse_mm));
    }
    for v in variants {
        let _ = writeln!(s, "| {} | {} | {:.1} |", v.name, columns.iter().map(|c| (c.1)(v.metrics)).collect::<Vec<_>>().join(" | "), v.seconds);
    }
    s
}

/// The HTML page of a sweep: the ablation table, its metrics as bars, CED and loss curves of
/// every variant on shared axes, and links to each variant's own report.
pub fn sweep_html(title: &str, base: &str, variants: &[VariantReport]) -> String {
    let mut body = format!("<p>Base scene <code>{}</code>. Errors against the synthetic ground truth, mean ± std over frames.</p>", escape(base));
    let columns = sweep_columns();
    let mut rows = Vec::new();
    if let Some(first) = variants.first() {
        let m = first.metrics;
        rows.push([vec!["mean face (start)".to_string(), spread(m.mean_face_per_vertex_mm), spread(m.mean_face_depth_mm), spread(m.mean_face_nme_3d), spread(m.mean_face_scan_rmse_mm)], vec![String::new(); 3], vec![m.mean_albedo_255.map_or(String::new(), spread), String::new()]].concat());
    }
    for v in variants {
        rows.push(std::iter::once(v.name.clone()).chain(columns.iter().map(|c| (c.1)(v.metrics))).chain(std::iter::once(format!("{:.1}", v.seconds))).collect());
    }
    let head: Vec<&str> = std::iter::once("variant").chain(columns.iter().map(|c| c.0)).chain(std::iter::once("time (s)")).collect();
    body.push_str("<h2>Ablation table</h2>");
    body.push_str(&html_table(&head, &rows));
    body.push_str("<p>Each variant's own report: ");
    body.push_str(&variants.iter().map(|v| format!("<a href=\"{}\">{}</a>", escape(&v.link), escape(&v.name))).collect::<Vec<_>>().join(" · "));
    body.push_str("</p><h2>Side by side</h2><div class=\"plots\">");
    let bars = |title: &str, label: &str, f: fn(&RunMetrics) -> f32| BarPlot { title: title.into(), y_label: label.into(), categories: variants.iter().map(|v| v.name.clone()).collect(), series: vec![(title.into(), variants.iter().map(|v| Some(f(v.metrics))).collect())] }.svg();
    body.push_str(&bars("per-vertex error", "mm", |m| m.per_vertex_mm.mean));
    body.push_str(&bars("pose error", "degrees", |m| m.pose_deg.mean));
    body.push_str(&ced_plot("CED, per-vertex error", "per-vertex error (mm)", variants.iter().map(|v| (v.name.clone(), v.metrics.frames.iter().map(|f| f.per_vertex_mm).collect())).collect()));
    body.push_str(&BarPlot {
        title: "2D NME by yaw bin".into(),
        y_label: "NME (%)".into(),
        categories: YAW_BINS.iter().map(|b| yaw_label(*b)).collect(),
        series: variants.iter().map(|v| (v.name.clone(), v.metrics.by_yaw.iter().map(|b| b.nme_2d).collect())).collect(),
    }
    .svg());
    let totals: Vec<Series> = variants.iter().filter_map(|v| v.losses.series().into_iter().next().map(|total| Series { name: v.name.clone(), points: total.points })).collect();
    if !totals.is_empty() {
        body.push_str(&loss_plot("total loss", totals));
    }
    body.push_str("</div>");
    html_page(title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_history_has_a_total_and_a_csv_row_per_iteration() {
        let step = |a: f32, b: f32| BTreeMap::from([("landmark".to_string(), a), ("regulariser".to_string(), b)]);
        let history = LossHistory(vec![step(4.0, 1.0), step(2.0, 0.5)]);
        let series = history.series();
        assert_eq!(series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["total", "landmark", "regulariser"]);
        assert_eq!(series[0].points, vec![(0.0, 5.0), (1.0, 2.5)]);
        assert_eq!(history.csv(), "iteration,total,landmark,regulariser\n0,5,4,1\n1,2.5,2,0.5\n");
    }

    #[test]
    fn the_error_map_is_dark_off_the_face_and_saturates_at_the_scale() {
        let input = [0.5, 0.5, 0.5, 0.2, 0.2, 0.2];
        let render = [0.5 + ERROR_MAP_MAX, 0.5 + ERROR_MAP_MAX, 0.5 + ERROR_MAP_MAX, 0.9, 0.9, 0.9];
        let map = error_map(&input, &render, &[1.0, 0.0]);
        assert_eq!(&map[..3], &colormap(1.0));
        assert!(map[3..].iter().all(|v| (v - 0.05).abs() < 1e-6));
    }
}
