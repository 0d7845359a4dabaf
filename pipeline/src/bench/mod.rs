//! `faceforge bench render`: milliseconds per frame of one iteration of the differentiable
//! render chain — decode → project → rasterize → interpolate → sample and their adjoints back to
//! the coefficients — on the native CPU twins, on the wgpu runtime op by op (each op moves its
//! inputs and outputs; decode reads the model's bases kept on the device, as the reconstruct
//! systems do), and on the wgpu runtime chained on device buffers (one upload of the
//! coefficients, one read of the gradients), in the same run, with their ratios.

pub mod peer;
pub mod video;

use faceforge_kernels::project::CameraModel;
use faceforge_kernels::rasterize::RasterShape;
use faceforge_kernels::render_chain::{per_op, ChainFrames, ChainInputs, ChainModel, OpTimer, RenderChain};
use faceforge_kernels::Backend;
use faceforge_components::Pose;
use faceforge_model::{MorphableModel, SplitMix64};
use faceforge_systems::reconstruct::decode_stacked;
use anyhow::Context;
use std::sync::Arc;
use std::time::Instant;

/// One timed configuration.
#[derive(Debug, Clone)]
pub struct Timing {
    pub backend: String,
    /// "per op" or "chained".
    pub mode: &'static str,
    pub batch: usize,
    /// Milliseconds per frame over the repeats: min, median, max.
    pub per_frame_ms: [f64; 3],
    /// Per-op milliseconds per frame of the median repeat (per-op runs).
    pub breakdown: Breakdown,
}

/// One iteration's inputs: coefficients and weak-perspective cameras at random yaws, frames of
/// a smooth pattern, upstream gradients of ones-order noise.
struct Batch {
    coeffs: [Vec<f32>; 4],
    frames: ChainFrames,
}

fn make_batch(model: &MorphableModel, batch: usize, size: usize, seed: u64) -> Batch {
    let mut rng = SplitMix64::new(seed);
    let mut draw = |sigma: &[f32]| -> Vec<f32> { (0..batch).flat_map(|_| rng.scaled_normals(sigma, 1.0)).collect() };
    let (id, exp, tex) = (draw(model.id_sigma()), draw(model.exp_sigma()), draw(model.albedo_sigma()));
    let mut rng = SplitMix64::new(seed + 1);
    let cameras = (0..batch)
        .flat_map(|_| {
            let yaw = rng.range(-60.0, 60.0) as f32;
            let f = 0.6 * size as f32 / crate::io::synth::FACE_WIDTH_MM;
            Pose::weak_from_angles(yaw, 0.0, 0.0, f, [size as f32 / 2.0, size as f32 / 2.0]).camera().1
        })
        .collect();
    let pixels = batch * size * size * 3;
    let mut noise = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.range(-1.0, 1.0) as f32).collect() };
    let frames = ChainFrames {
        shape: RasterShape { batch, width: size, height: size },
        camera: CameraModel::WeakPerspective,
        frames: (0..pixels).map(|i| 0.5 + 0.4 * ((i % 251) as f32 * 0.17).sin()).collect(),
        grad_image: noise(pixels),
        grad_sampled: noise(batch * model.n_vertices() * 3),
    };
    Batch { coeffs: [id, exp, tex, cameras], frames }
}

fn chain_model(m: &MorphableModel) -> ChainModel<'_> {
    ChainModel {
        n_vertices: m.n_vertices(),
        triangles: m.triangles(),
        mean_shape: m.mean_shape(),
        id_basis: m.id_basis(),
        exp_basis: m.exp_basis(),
        mean_albedo: m.mean_albedo(),
        albedo_basis: m.albedo_basis(),
    }
}

/// Milliseconds spent in each op during one pass.
#[derive(Debug, Clone, Default)]
pub struct Breakdown(pub Vec<(&'static str, f64)>);

impl OpTimer for Breakdown {
    fn time<T>(&mut self, op: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0.push((op, start.elapsed().as_secs_f64() * 1e3));
        out
    }
}

/// One warm-up (kernel compilation on a device), then `repeats` timed passes: per-frame ms
/// (min, median, max) and the median pass's breakdown.
fn time_passes(repeats: usize, batch: usize, mut pass: impl FnMut(&mut Breakdown)) -> ([f64; 3], Breakdown) {
    pass(&mut Breakdown::default());
    let mut runs: Vec<(f64, Breakdown)> = (0..repeats)
        .map(|_| {
            let mut breakdown = Breakdown::default();
            let start = Instant::now();
            pass(&mut breakdown);
            breakdown.0.iter_mut().for_each(|(_, ms)| *ms /= batch as f64);
            (start.elapsed().as_secs_f64() * 1e3 / batch as f64, breakdown)
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ms = [runs[0].0, runs[runs.len() / 2].0, runs[runs.len() - 1].0];
    (ms, runs.swap_remove(runs.len() / 2).1)
}

/// Times an iteration for each backend and batch size: op by op, and on a device also chained.
pub fn render(model: &Arc<MorphableModel>, backends: &[Backend], batches: &[usize], size: usize, repeats: usize) -> Vec<Timing> {
    let m = chain_model(model);
    let mut out = Vec::new();
    for backend in backends {
        let client = match backend {
            Backend::Gpu { client, .. } => Some(client),
            Backend::Cpu => None,
        };
        let bases = client.map(|c| m.upload_bases(c));
        for &batch in batches {
            let b = make_batch(model, batch, size, 7);
            let [id, exp, tex, cameras] = &b.coeffs;
            let inputs = ChainInputs { id, exp, tex, cameras };
            let (per_frame_ms, breakdown) = time_passes(repeats, batch, |t| {
                std::hint::black_box(per_op(backend, bases.as_ref(), &m, &b.frames, &inputs, false, t));
            });
            out.push(Timing { backend: backend.describe(), mode: "per op", batch, per_frame_ms, breakdown });
            if let Some(client) = client {
                let chain = RenderChain::new(client, &m, &b.frames);
                let (per_frame_ms, _) = time_passes(repeats, batch, |_| {
                    std::hint::black_box(chain.iterate(&inputs, false));
                });
                out.push(Timing { backend: backend.describe(), mode: "chained", batch, per_frame_ms, breakdown: Breakdown::default() });
            }
        }
    }
    out
}

/// A Markdown table with each row's median against the native CPU's and against the same
/// device op by op, for the same batch.
pub fn table(timings: &[Timing]) -> String {
    let mut s = String::from("| backend | mode | batch | ms/frame min | median | max | × native CPU | × per op |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    let ratio = |t: &Timing, base: Option<&Timing>| base.map_or("–".to_string(), |b| format!("{:.2}", t.per_frame_ms[1] / b.per_frame_ms[1]));
    for t in timings {
        let native = timings.iter().find(|b| b.backend.starts_with("native") && b.batch == t.batch);
        let per_op = timings.iter().find(|b| b.backend == t.backend && b.mode == "per op" && b.batch == t.batch);
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            t.backend,
            t.mode,
            t.batch,
            t.per_frame_ms[0],
            t.per_frame_ms[1],
            t.per_frame_ms[2],
            ratio(t, native),
            ratio(t, per_op)
        ));
    }
    s.push_str("\nWhere the median per-op iteration spends its time (ms per frame):\n\n");
    for t in timings.iter().filter(|t| !t.breakdown.0.is_empty()) {
        let parts: Vec<String> = t.breakdown.0.iter().map(|(op, ms)| format!("{op} {ms:.2}")).collect();
        s.push_str(&format!("- {}, batch {}: {}\n", t.backend, t.batch, parts.join(", ")));
    }
    s
}

/// Runs `f` once to warm up, then `repeats` times: ms (min, median, max).
pub(crate) fn timed(repeats: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<[f64; 3]> {
    let mut samples = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(spread(samples))
}

/// min, median, max of some samples.
pub(crate) fn spread(mut samples: Vec<f64>) -> [f64; 3] {
    samples.sort_by(f64::total_cmp);
    [samples[0], samples[samples.len() / 2], samples[samples.len() - 1]]
}

/// One row of a timing table: what, min / median / max, and the ratio of its median to a
/// baseline's measured in the same run.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub ms: [f64; 3],
    pub baseline: Option<(String, f64)>,
}

/// Rows as Markdown.
pub fn rows_table(unit: &str, rows: &[Row]) -> String {
    let mut s = format!("| case | {unit} min | median | max | × baseline (same run) |\n| --- | ---: | ---: | ---: | --- |\n");
    for r in rows {
        let ratio = r.baseline.as_ref().map_or("–".to_string(), |(name, b)| format!("{:.2} × {name}", r.ms[1] / b));
        s.push_str(&format!("| {} | {:.3} | {:.3} | {:.3} | {ratio} |\n", r.case, r.ms[0], r.ms[1], r.ms[2]));
    }
    s
}

/// `faceforge bench decode`: ms per frame of decoding a batch as one product over the batch
/// (the basis read once) against one matrix–vector product per frame (the basis read per frame),
/// native CPU.
pub fn decode(model: &MorphableModel, batches: &[usize], repeats: usize) -> Vec<Row> {
    let backend = Backend::Cpu;
    let mut rows = Vec::new();
    for &batch in batches {
        // Only the coefficients are read (the frames of an 8-pixel image are tiny).
        let [id, exp, _, _] = &make_batch(model, batch, 8, 3).coeffs;
        let (k_id, k_exp) = (model.n_id(), model.n_exp());
        let time = |f: &dyn Fn()| -> [f64; 3] {
            f();
            spread((0..repeats).map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3 / batch as f64
            }).collect())
        };
        let per_frame = time(&|| {
            for i in 0..batch {
                std::hint::black_box(decode_stacked(&backend, model, None, 1, &id[i * k_id..(i + 1) * k_id], &exp[i * k_exp..(i + 1) * k_exp], None));
            }
        });
        let batched = time(&|| {
            std::hint::black_box(decode_stacked(&backend, model, None, batch, id, exp, None));
        });
        let name = format!("frame by frame, batch {batch}");
        rows.push(Row { case: name.clone(), ms: per_frame, baseline: None });
        rows.push(Row { case: format!("one product over the batch, batch {batch}"), ms: batched, baseline: Some((name, per_frame[1])) });
    }
    rows
}

/// `faceforge bench fit`: ms per iteration of a PGN fit (the quickstart's graph: 2 frames,
/// shared identity, swaps, every loss) at each model size, against the landmark-only fit of
/// the same frames in the same run.
pub fn fit(scene: &crate::LoadedScene, presets: &[&str], repeats: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for preset in presets {
        let time_scene = |landmarks_only: bool| -> anyhow::Result<[f64; 3]> {
            let mut s = scene.clone();
            let model = faceforge_model::Preset::parse(preset).with_context(|| format!("unknown preset `{preset}`; presets: tiny, default, bfm"))?;
            s.apply_overrides(&[format!("model.Procedural.preset={model:?}"), "backend=Cpu".to_string()])?;
            if landmarks_only {
                // The "L_l + L_r" row of the ablation: no image terms, so the graph drops the
                // texture swap (no swap images are written either).
                s.scene.losses.retain(|name, _| name == "landmark" || name == "regulariser");
                s.scene.outputs.images = false;
            }
            let mut prepared = crate::run::prepare(&s)?;
            // Two warm-up iterations (first-iteration set-up: shared identity, device caches).
            crate::run::iterate(&mut prepared, 2, false)?;
            timed(repeats, || crate::run::iterate(&mut prepared, 1, false).map(|_| ()))
        };
        let landmarks = time_scene(true)?;
        let full = time_scene(false)?;
        let name = format!("landmark + regulariser, {preset}");
        rows.push(Row { case: name.clone(), ms: landmarks, baseline: None });
        rows.push(Row { case: format!("full loss (census, semantic, flow), {preset}"), ms: full, baseline: Some((name, landmarks[1])) });
    }
    Ok(rows)
}

/// `faceforge bench train`: ms per training step of a learn scene at each input size (its batch,
/// its graph, burn's backward and Adam), against the forward pass alone (network and graph, no
/// backward) on the same batch, and on each further device against the first device's step, in
/// the same run.
pub fn train_step(scene: &crate::LoadedScene, sizes: &[usize], devices: &[faceforge_learn::DeviceChoice], repeats: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &size in sizes {
        let mut first_step: Option<(String, f64)> = None;
        for &device in devices {
            let mut s = scene.clone();
            s.apply_overrides(&[format!("data.Synthetic.size={size}"), format!("learn.network.input={size}"), format!("learn.device={device:?}")])?;
            let mut session = crate::run::train::Session::new(&s, None)?;
            let on = faceforge_learn::LearnDevice::select(device)?.describe();
            let frames = session.feed(0)?;
            let trained = session.world.resource::<faceforge_learn::Learner>().trained;
            let mut time = |training: bool| -> anyhow::Result<[f64; 3]> {
                session.world.resource_mut::<faceforge_learn::Learner>().configure(trained, training);
                session.run(0)?; // warm-up
                timed(repeats, || session.run(0).map(|_| ()))
            };
            let forward = time(false)?;
            let step = time(true)?;
            let name = format!("forward only, {size}², {frames} frames, {on}");
            let step_name = format!("training step, {size}², {frames} frames, {on}");
            rows.push(Row { case: name.clone(), ms: forward, baseline: None });
            rows.push(Row { case: step_name.clone(), ms: step, baseline: Some(first_step.clone().unwrap_or((name, forward[1]))) });
            first_step.get_or_insert((step_name, step[1]));
        }
    }
    Ok(rows)
}

/// `faceforge bench infer`: images per second of `faceforge infer` on a folder of `images`
/// synthetic faces (AFLW-like, with `.pts`) at the network's input size, a fresh network of
/// `spec` (speed does not depend on training), one frame at a time as the baseline against
/// `batch` at a time, in the same run. Writes everything infer writes (OBJ + texture, …).
pub fn infer(spec: &faceforge_learn::NetworkSpec, images: u32, batch: usize) -> anyhow::Result<Vec<Row>> {
    let root = tempfile_dir()?;
    let model_source = crate::scene::ModelSource::default();
    let model = crate::run::load_model(&model_source)?;
    let synth = crate::io::synth::SynthSpec { subjects: images, frames: 1, size: spec.input, seed: 1, ..crate::io::synth::SynthSpec::default() };
    crate::io::synth::write(&root.join("images"), &crate::io::synth::generate(&model, &Backend::Cpu, &synth))?;
    faceforge_learn::Learner::new(spec, &model, faceforge_learn::Heads::default())?.save_weights(&root.join("weights.bpk"))?;
    let mut rows = Vec::new();
    let mut baseline = None;
    for b in [1, batch] {
        let out = root.join(format!("out_{b}"));
        let result = crate::run::infer::infer(&model_source, &root.join("weights.bpk"), &root.join("images"), None, &out, false, b, faceforge_learn::DeviceChoice::Cpu, None)?;
        let ms = 1e3 * result.seconds / result.frames.max(1) as f64;
        let case = format!("batch {b}: {} images in {:.2} s, {:.1} images/s", result.frames, result.seconds, 1e3 / ms);
        rows.push(Row { case, ms: [ms; 3], baseline: baseline.clone() });
        baseline.get_or_insert((format!("batch {b}"), ms));
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(rows)
}

/// The machine, for the record: CPU model and core count.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string())).unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `faceforge bench run`: a whole run of a clip scene (data, iterations, outputs, report) at
/// the scene's frame count and at a tenth of it: frames per second, seconds, and the process's
/// peak memory after each, the smaller run as the baseline (how the cost scales with frames).
pub fn run_clip(scene: &crate::LoadedScene, frames: u32) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut baseline = None;
    for count in [(frames / 10).max(1), frames] {
        let out = tempfile_dir()?;
        let mut s = scene.clone();
        s.apply_overrides(&[format!("data.Synthetic.frames={count}"), format!("outputs.dir={:?}", out.display().to_string())])?;
        let summary = crate::run::run(&s, false)?;
        let _ = std::fs::remove_dir_all(&out);
        let fps = summary.frames as f64 / summary.seconds;
        let case = format!("{} frames: {:.2} s, {:.1} frames/s, peak memory {:.0} MB", summary.frames, summary.seconds, fps, summary.peak_memory_mb.unwrap_or(f64::NAN));
        // The table's numbers are milliseconds per frame, the inverse of the frame rate.
        let ms = 1e3 / fps;
        rows.push(Row { case: case.clone(), ms: [ms; 3], baseline: baseline.clone() });
        baseline.get_or_insert((format!("{} frames", summary.frames), ms));
    }
    Ok(rows)
}

/// A fresh folder under the system's temporary directory.
pub fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("faceforge-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `faceforge bench detect`: the detector and the landmarker on a photo resized to 640 × 480
/// and at its own size, ms per image, against the built-in reconstruct fit that follows them
/// (its iterations on the same photo, native CPU).
pub fn detect(image: &std::path::Path, repeats: usize) -> anyhow::Result<Vec<Row>> {
    let photo = crate::io::inputs::decode_image(image).with_context(|| format!("reading {}", image.display()))?;
    let detector = faceforge_detect::shared()?;
    let options = crate::run::reconstruct::ReconstructOptions { inputs: vec![image.to_path_buf()], overrides: vec!["backend=Cpu".into()], ..Default::default() };
    let scene = crate::run::reconstruct::scene(&options)?;
    let iterations = scene.scene.iterations;
    let mut prepared = crate::run::prepare(&scene)?;
    let fit = timed(1, || crate::run::iterate(&mut prepared, iterations, false).map(|_| ()))?;
    let fit_name = format!("the fit: {iterations} iterations of scenes/reconstruct.ron");
    let mut rows = vec![Row { case: fit_name.clone(), ms: fit, baseline: None }];
    let small = image::imageops::resize(&photo, 640, 480, image::imageops::FilterType::Triangle);
    for (size, picture) in [("640×480".to_string(), &small), (format!("{}×{}", photo.width(), photo.height()), &photo)] {
        let found = detector.detect(picture, 0.5)?;
        let first = found.first().with_context(|| format!("no face in {} at {size}", image.display()))?;
        let roi = faceforge_detect::facemesh::roi_from_detection(first);
        let detect = timed(repeats, || detector.detect(picture, 0.5).map(|_| ()))?;
        let landmarks = timed(repeats, || detector.landmarks(picture, &roi).map(|_| ()))?;
        let both = timed(repeats, || detector.faces(picture, &faceforge_detect::DetectOptions::default()).map(|_| ()))?;
        rows.push(Row { case: format!("detector, {size}"), ms: detect, baseline: None });
        rows.push(Row { case: format!("landmarker, {size}"), ms: landmarks, baseline: None });
        rows.push(Row { case: format!("detector + landmarker, {size}"), ms: both, baseline: Some((fit_name.clone(), fit[1])) });
    }
    Ok(rows)
}
