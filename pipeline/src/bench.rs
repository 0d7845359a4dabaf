//! `faceforge bench render`: milliseconds per frame of the differentiable render chain —
//! decode → project → rasterize → interpolate → sample, forward and forward + backward — on the
//! native CPU twins and on the wgpu runtime in the same run, with their ratio. Decode uses the
//! model's bases kept on the device, as the reconstruct systems do; the other ops move their
//! inputs and outputs at each call.

use faceforge_kernels::interpolate;
use faceforge_kernels::project::{self, CameraModel};
use faceforge_kernels::rasterize::{self, RasterShape};
use faceforge_kernels::sample::{self, SampleShape};
use faceforge_kernels::Backend;
use faceforge_components::Pose;
use faceforge_model::{MorphableModel, SplitMix64};
use faceforge_systems::reconstruct::{decode_adjoint, decode_stacked, DeviceModel};
use std::sync::Arc;
use std::time::Instant;

/// One timed configuration.
#[derive(Debug, Clone)]
pub struct Timing {
    pub backend: String,
    pub batch: usize,
    pub backward: bool,
    /// Milliseconds per frame over the repeats: min, median, max.
    pub per_frame_ms: [f64; 3],
    /// Per-op milliseconds per frame of the median repeat.
    pub breakdown: Breakdown,
}

/// Inputs for one batch: coefficients and weak-perspective cameras at random yaws.
struct Batch {
    id: Vec<f32>,
    exp: Vec<f32>,
    tex: Vec<f32>,
    cameras: Vec<f32>,
}

fn make_batch(model: &MorphableModel, batch: usize, size: usize, seed: u64) -> Batch {
    let mut rng = SplitMix64::new(seed);
    let mut draw = |sigma: &[f32]| -> Vec<f32> { (0..batch).flat_map(|_| rng.scaled_normals(sigma, 1.0)).collect() };
    let (id, exp, tex) = (draw(model.id_sigma()), draw(model.exp_sigma()), draw(model.albedo_sigma()));
    let mut rng = SplitMix64::new(seed + 1);
    let cameras = (0..batch)
        .flat_map(|_| {
            let yaw = rng.range(-60.0, 60.0) as f32;
            let f = 0.6 * size as f32 / 144.0;
            Pose::weak_from_angles(yaw, 0.0, 0.0, f, [size as f32 / 2.0, size as f32 / 2.0]).camera().1
        })
        .collect();
    Batch { id, exp, tex, cameras }
}

/// Milliseconds spent in each op during one pass.
#[derive(Debug, Clone, Default)]
pub struct Breakdown(pub Vec<(&'static str, f64)>);

impl Breakdown {
    fn time<T>(&mut self, op: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0.push((op, start.elapsed().as_secs_f64() * 1e3));
        out
    }
}

/// One pass of the chain; with `backward`, the adjoints back to the coefficients too.
fn pass(backend: &Backend, model: &MorphableModel, device: Option<&DeviceModel>, b: &Batch, batch: usize, size: usize, backward: bool, t: &mut Breakdown) -> f32 {
    let n = model.n_vertices();
    let triangles = model.triangles();
    let (positions, colours) = t.time("decode", || {
        let (positions, colours) = decode_stacked(backend, model, device, batch, &b.id, &b.exp, Some(&b.tex));
        (positions, colours.expect("albedo asked for"))
    });
    let projected = t.time("project", || project::forward(backend, CameraModel::WeakPerspective, &positions, &b.cameras, n));
    let raster_shape = RasterShape { batch, width: size, height: size };
    let raster = t.time("rasterize", || rasterize::forward(backend, raster_shape, &projected, triangles, n));
    let image = t.time("interpolate", || interpolate::forward(backend, raster_shape, &projected, triangles, n, &raster.tri, &colours, 3));
    let uv: Vec<f32> = projected.chunks(4).flat_map(|p| [p[0], p[1]]).collect();
    let sample_shape = SampleShape { batch, width: size, height: size, channels: 3, points: n };
    let sampled = t.time("sample", || sample::forward(backend, sample_shape, &image, &uv));
    if !backward {
        return sampled[0] + image[image.len() / 2];
    }
    // Seed: d/d sampled = 1, d/d image = 1 (any gradient exercises the same work).
    let grad_uv = t.time("sample ᵀ", || sample::backward(backend, sample_shape, &image, &uv, &vec![1.0; sampled.len()]));
    let (grad_colours, mut grad_projected) = t.time("interpolate ᵀ", || {
        interpolate::backward(backend, raster_shape, &projected, triangles, n, &raster.tri, &colours, 3, &vec![1.0; image.len()])
    });
    for (i, g) in grad_uv.chunks(2).enumerate() {
        grad_projected[4 * i] += g[0];
        grad_projected[4 * i + 1] += g[1];
    }
    let (grad_positions, _grad_cameras) =
        t.time("project ᵀ", || project::backward(backend, CameraModel::WeakPerspective, &positions, &b.cameras, &grad_projected, n));
    t.time("decode ᵀ", || {
        let (g_id, g_exp, g_tex) = decode_adjoint(backend, model, device, batch, &grad_positions, Some(&grad_colours));
        g_exp[0] + g_id[0] + g_tex[0]
    })
}

/// Times the chain for each backend and batch size.
pub fn render(model: &Arc<MorphableModel>, backends: &[Backend], batches: &[usize], size: usize, repeats: usize) -> Vec<Timing> {
    let mut out = Vec::new();
    for backend in backends {
        // On a device the model's bases are uploaded once, as the reconstruct systems keep them.
        let mut slot = None;
        let device = DeviceModel::refresh(&mut slot, backend, model);
        for &batch in batches {
            let inputs = make_batch(model, batch, size, 7);
            for backward in [false, true] {
                // One warm-up pass (kernel compilation on a device), then the timed repeats.
                std::hint::black_box(pass(backend, model, device, &inputs, batch, size, backward, &mut Breakdown::default()));
                let mut runs: Vec<(f64, Breakdown)> = (0..repeats)
                    .map(|_| {
                        let mut breakdown = Breakdown::default();
                        let start = Instant::now();
                        std::hint::black_box(pass(backend, model, device, &inputs, batch, size, backward, &mut breakdown));
                        breakdown.0.iter_mut().for_each(|(_, ms)| *ms /= batch as f64);
                        (start.elapsed().as_secs_f64() * 1e3 / batch as f64, breakdown)
                    })
                    .collect();
                runs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let per_frame_ms = [runs[0].0, runs[runs.len() / 2].0, runs[runs.len() - 1].0];
                let breakdown = runs.swap_remove(runs.len() / 2).1;
                out.push(Timing { backend: backend.describe(), batch, backward, per_frame_ms, breakdown });
            }
        }
    }
    out
}

/// A Markdown table with the ratio of each row's median to the native CPU's for the same case.
pub fn table(timings: &[Timing]) -> String {
    let mut s = String::from("| backend | batch | pass | ms/frame min | median | max | × native CPU |\n| --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for t in timings {
        let baseline = timings.iter().find(|b| b.backend.starts_with("native") && b.batch == t.batch && b.backward == t.backward);
        let ratio = baseline.map_or("–".to_string(), |b| format!("{:.2}", t.per_frame_ms[1] / b.per_frame_ms[1]));
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |\n",
            t.backend,
            t.batch,
            if t.backward { "forward + backward" } else { "forward" },
            t.per_frame_ms[0],
            t.per_frame_ms[1],
            t.per_frame_ms[2],
            ratio
        ));
    }
    s.push_str("\nWhere the median forward + backward pass spends its time (ms per frame):\n\n");
    for t in timings.iter().filter(|t| t.backward) {
        let parts: Vec<String> = t.breakdown.0.iter().map(|(op, ms)| format!("{op} {ms:.2}")).collect();
        s.push_str(&format!("- {}, batch {}: {}\n", t.backend, t.batch, parts.join(", ")));
    }
    s
}
