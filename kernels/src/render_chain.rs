//! The differentiable render chain — decode → project → rasterize → interpolate → sample, and
//! their adjoints back to the coefficients and cameras — run two ways over the same ops:
//! - `per_op`: each op from host slices to a host vector, as the systems call them; on a device
//!   every op moves its inputs up and its outputs down;
//! - `RenderChain`: on device buffers end to end. The model's bases, the mesh, the frames and
//!   the upstream gradients go up once when the chain is made; per iteration the coefficients
//!   and cameras go up once and the gradients come down in one read. The rasterizer bins on the
//!   device and the interpolation's adjoint finds its pixels there, so nothing else crosses.
//!
//! Not an op of its own: the composition of five, for the chained path and the tests and
//! benchmarks that compare it with the per-op one. One iteration renders each item's per-vertex
//! albedo (the image) and samples the item's frame at its projected vertices (PGN's texture
//! sampling, Eq. 2); the upstream gradients of both are given.

use crate::backend::Backend;
use crate::decode::{self, DecodeShape, DeviceBases};
use crate::interpolate::{self, DeviceMesh};
use crate::launch::{download, upload};
use crate::project::{self, CameraModel};
use crate::rasterize::{self, DeviceRaster, Raster, RasterShape};
use crate::sample::{self, SampleShape};
use cubecl::client::Client;
use cubecl::prelude::*;
use cubecl::server::Handle;

/// A morphable model's arrays, as the chain reads them.
#[derive(Clone, Copy, Debug)]
pub struct ChainModel<'a> {
    pub n_vertices: usize,
    pub triangles: &'a [u32],
    pub mean_shape: &'a [f32],
    pub id_basis: &'a [f32],
    pub exp_basis: &'a [f32],
    pub mean_albedo: &'a [f32],
    pub albedo_basis: &'a [f32],
}

impl ChainModel<'_> {
    fn len(&self) -> usize {
        3 * self.n_vertices
    }

    /// (identity, expression, albedo) components.
    fn components(&self) -> (usize, usize, usize) {
        let len = self.len();
        (self.id_basis.len() / len, self.exp_basis.len() / len, self.albedo_basis.len() / len)
    }

    fn shapes(&self, batch: usize) -> [DecodeShape; 3] {
        decode::model_shapes(batch, self.len(), self.components())
    }

    /// Its bases on a device.
    pub fn upload_bases(&self, client: &Client) -> DeviceBases {
        DeviceBases::upload(client, self.mean_shape, self.id_basis, self.exp_basis, self.mean_albedo, self.albedo_basis)
    }
}

/// What an iteration is drawn against: the image size and camera model, each item's frame
/// (B × H × W × 3) and the upstream gradients of the image (B × H × W × 3) and of the sampled
/// colours (B × N × 3).
#[derive(Clone, Debug)]
pub struct ChainFrames {
    pub shape: RasterShape,
    pub camera: CameraModel,
    pub frames: Vec<f32>,
    pub grad_image: Vec<f32>,
    pub grad_sampled: Vec<f32>,
}

/// One iteration's inputs, stacked over the batch.
#[derive(Clone, Copy, Debug)]
pub struct ChainInputs<'a> {
    pub id: &'a [f32],
    pub exp: &'a [f32],
    pub tex: &'a [f32],
    pub cameras: &'a [f32],
}

/// The gradients an iteration gives, and (when asked) what it drew.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChainOutputs {
    pub grad_id: Vec<f32>,
    pub grad_exp: Vec<f32>,
    pub grad_tex: Vec<f32>,
    pub grad_cameras: Vec<f32>,
    /// The image (B × H × W × 3) and the sampled colours (B × N × 3); empty unless asked for.
    pub image: Vec<f32>,
    pub sampled: Vec<f32>,
}

/// Times the ops of `per_op` (the benchmark's breakdown); `()` times nothing.
pub trait OpTimer {
    fn time<T>(&mut self, op: &'static str, f: impl FnOnce() -> T) -> T;
}

impl OpTimer for () {
    fn time<T>(&mut self, _op: &'static str, f: impl FnOnce() -> T) -> T {
        f()
    }
}

fn sample_shape(model: &ChainModel, frames: &ChainFrames) -> SampleShape {
    let s = frames.shape;
    SampleShape { batch: s.batch, width: s.width, height: s.height, channels: 3, points: model.n_vertices }
}

/// One iteration op by op on `backend`; decode reads `bases` when given (on a device), each
/// other op moves its inputs and outputs.
pub fn per_op(backend: &Backend, bases: Option<&DeviceBases>, m: &ChainModel, frames: &ChainFrames, inputs: &ChainInputs, with_images: bool, t: &mut impl OpTimer) -> ChainOutputs {
    let (n, shape) = (m.n_vertices, frames.shape);
    let shapes = m.shapes(shape.batch);
    let [shape_id, shape_exp, shape_tex] = shapes;
    let (positions, albedo) = t.time("decode", || match (backend, bases) {
        (Backend::Gpu { client, .. }, Some(d)) => {
            let (positions, albedo) = d.forward(client, shapes, &upload(client, inputs.id), &upload(client, inputs.exp), Some(&upload(client, inputs.tex)));
            (download(client, positions), download(client, albedo.expect("albedo asked for")))
        }
        _ => {
            let with_id = decode::forward(backend, shape_id, m.mean_shape, m.id_basis, inputs.id);
            (decode::forward(backend, shape_exp, &with_id, m.exp_basis, inputs.exp), decode::forward(backend, shape_tex, m.mean_albedo, m.albedo_basis, inputs.tex))
        }
    });
    let projected = t.time("project", || project::forward(backend, frames.camera, &positions, inputs.cameras, n));
    let raster = t.time("rasterize", || rasterize::forward(backend, shape, &projected, m.triangles, n));
    let image = t.time("interpolate", || interpolate::forward(backend, shape, &projected, m.triangles, n, &raster.tri, &albedo, 3));
    let uv: Vec<f32> = projected.chunks(4).flat_map(|p| [p[0], p[1]]).collect();
    let sample_shape = sample_shape(m, frames);
    let sampled = t.time("sample", || sample::forward(backend, sample_shape, &frames.frames, &uv));

    let grad_uv = t.time("sample ᵀ", || sample::backward(backend, sample_shape, &frames.frames, &uv, &frames.grad_sampled));
    let (grad_albedo, mut grad_projected) = t.time("interpolate ᵀ", || interpolate::backward(backend, shape, &projected, m.triangles, n, &raster.tri, &albedo, 3, &frames.grad_image));
    for (i, g) in grad_uv.chunks(2).enumerate() {
        grad_projected[4 * i] += g[0];
        grad_projected[4 * i + 1] += g[1];
    }
    let (grad_positions, grad_cameras) = t.time("project ᵀ", || project::backward(backend, frames.camera, &positions, inputs.cameras, &grad_projected, n));
    let (grad_id, grad_exp, grad_tex) = t.time("decode ᵀ", || match (backend, bases) {
        (Backend::Gpu { client, .. }, Some(d)) => {
            let (id, exp, tex) = d.backward(client, shapes, &upload(client, &grad_positions), Some(&upload(client, &grad_albedo)));
            (download(client, id), download(client, exp), download(client, tex.expect("albedo gradient given")))
        }
        _ => (
            decode::backward(backend, shape_id, m.id_basis, &grad_positions),
            decode::backward(backend, shape_exp, m.exp_basis, &grad_positions),
            decode::backward(backend, shape_tex, m.albedo_basis, &grad_albedo),
        ),
    });
    let (image, sampled) = if with_images { (image, sampled) } else { (Vec::new(), Vec::new()) };
    ChainOutputs { grad_id, grad_exp, grad_tex, grad_cameras, image, sampled }
}

/// project → rasterize → interpolate's outputs, left on the device.
#[derive(Debug)]
pub struct DeviceDrawing {
    pub projected: Handle,
    pub raster: DeviceRaster,
    pub image: Handle,
}

/// project → rasterize → interpolate on device buffers (`n` vertices an item, per-vertex
/// colours of `channels`).
pub fn draw_device(client: &Client, shape: RasterShape, camera: CameraModel, triangles: &Handle, n_triangles: usize, n: usize, positions: &Handle, cameras: &Handle, colours: &Handle, channels: usize, capacity: usize) -> DeviceDrawing {
    let projected = project::forward_device(client, camera, positions, cameras, shape.batch, n);
    let raster = rasterize::forward_device(client, shape, &projected, triangles, n_triangles, n, capacity);
    let image = interpolate::forward_device(client, shape, triangles, n_triangles, n, &projected, &raster.tri, colours, channels);
    DeviceDrawing { projected, raster, image }
}

/// A drawing read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawing {
    pub raster: Raster,
    pub projected: Vec<f32>,
    pub image: Vec<f32>,
}

/// `draw_device` from host slices: the inputs go up once, the five outputs come down in one
/// read (what the render system does on a device).
pub fn draw(client: &Client, shape: RasterShape, camera: CameraModel, triangles: &[u32], n: usize, positions: &[f32], cameras: &[f32], colours: &[f32]) -> Drawing {
    let n_triangles = triangles.len() / 3;
    let channels = colours.len() / (shape.batch * n).max(1);
    let (positions, cameras, colours) = (upload(client, positions), upload(client, cameras), upload(client, colours));
    let triangles = client.create_from_slice(u32::as_bytes(triangles));
    let d = draw_device(client, shape, camera, &triangles, n_triangles, n, &positions, &cameras, &colours, channels, rasterize::bin_capacity(shape, n_triangles));
    let read = client.read(vec![d.raster.tri, d.raster.depth, d.raster.bary, d.projected, d.image]).expect("reading the drawing back");
    let floats = |i: usize| f32::from_bytes(&read[i]).to_vec();
    Drawing { raster: Raster { shape, tri: u32::from_bytes(&read[0]).to_vec(), depth: floats(1), bary: floats(2) }, projected: floats(3), image: floats(4) }
}

/// The chain on device buffers: what stays on the device across iterations.
pub struct RenderChain {
    client: Client,
    n_vertices: usize,
    shapes: [DecodeShape; 3],
    bases: DeviceBases,
    mesh: DeviceMesh,
    raster: RasterShape,
    camera: CameraModel,
    sample: SampleShape,
    frames: Handle,
    grad_image: Handle,
    grad_sampled: Handle,
    capacity: usize,
}

impl RenderChain {
    /// Uploads the model, the mesh, the frames and the upstream gradients.
    pub fn new(client: &Client, m: &ChainModel, frames: &ChainFrames) -> Self {
        Self::with_bin_capacity(client, m, frames, rasterize::bin_capacity(frames.shape, m.triangles.len() / 3))
    }

    /// `new` with the rasterizer's bins holding at most `capacity` triangles (tests: overflow).
    pub fn with_bin_capacity(client: &Client, m: &ChainModel, frames: &ChainFrames, capacity: usize) -> Self {
        Self {
            client: client.clone(),
            n_vertices: m.n_vertices,
            shapes: m.shapes(frames.shape.batch),
            bases: m.upload_bases(client),
            mesh: DeviceMesh::upload(client, m.n_vertices, m.triangles),
            raster: frames.shape,
            camera: frames.camera,
            sample: sample_shape(m, frames),
            frames: upload(client, &frames.frames),
            grad_image: upload(client, &frames.grad_image),
            grad_sampled: upload(client, &frames.grad_sampled),
            capacity,
        }
    }

    /// One iteration: the inputs go up, every op and adjoint runs on the device, the gradients
    /// (and, when asked, the image and the sampled colours) come down in one read.
    pub fn iterate(&self, inputs: &ChainInputs, with_images: bool) -> ChainOutputs {
        let (c, d, n, batch) = (&self.client, &self.bases, self.n_vertices, self.raster.batch);
        let (id, exp, tex, cameras) = (upload(c, inputs.id), upload(c, inputs.exp), upload(c, inputs.tex), upload(c, inputs.cameras));

        let (positions, albedo) = d.forward(c, self.shapes, &id, &exp, Some(&tex));
        let albedo = albedo.expect("albedo asked for");
        let DeviceDrawing { projected, raster, image } = draw_device(c, self.raster, self.camera, &self.mesh.triangles, self.mesh.n_triangles, n, &positions, &cameras, &albedo, 3, self.capacity);
        let sampled = sample::forward_device(c, self.sample, &self.frames, &projected, 4);

        let (grad_albedo, grad_projected) = interpolate::backward_device(c, self.raster, &self.mesh, &projected, &raster.tri, &albedo, 3, &self.grad_image);
        sample::backward_accumulate_device(c, self.sample, &self.frames, &projected, 4, &self.grad_sampled, &grad_projected);
        let (grad_positions, grad_cameras) = project::backward_device(c, self.camera, &positions, &cameras, &grad_projected, batch, n);
        let (grad_id, grad_exp, grad_tex) = d.backward(c, self.shapes, &grad_positions, Some(&grad_albedo));
        let grad_tex = grad_tex.expect("albedo gradient given");

        let mut wanted = vec![grad_id, grad_exp, grad_tex, grad_cameras];
        if with_images {
            wanted.extend([image, sampled]);
        }
        let mut read = c.read(wanted).expect("reading the chain's results back").into_iter().map(|bytes| f32::from_bytes(&bytes).to_vec());
        let mut next = || read.next().unwrap_or_default();
        ChainOutputs { grad_id: next(), grad_exp: next(), grad_tex: next(), grad_cameras: next(), image: next(), sampled: next() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::weak_params;
    use crate::testing::{assert_close, random, test_mesh, wgpu_backend};

    const W: usize = 48;
    const H: usize = 40;
    const BATCH: usize = 2;

    /// A test mesh as a model with 4 identity, 3 expression and 5 albedo components, two weak
    /// perspective views of it, smooth frames and random upstream gradients.
    struct Case {
        triangles: Vec<u32>,
        arrays: [Vec<f32>; 5],
        n: usize,
        frames: ChainFrames,
        coeffs: [Vec<f32>; 4],
    }

    fn case() -> Case {
        let (mesh, triangles) = test_mesh(16, 6, 3);
        let n = mesh.len() / 3;
        let len = 3 * n;
        let small = |k: usize, seed: u64, scale: f32| random(k * len, seed).into_iter().map(|x| x * scale).collect::<Vec<_>>();
        let mean_albedo = random(len, 4).into_iter().map(|x| 0.5 + 0.3 * x).collect();
        let arrays = [mesh, small(4, 1, 0.02), small(3, 2, 0.02), mean_albedo, small(5, 3, 0.05)];
        let shape = RasterShape { batch: BATCH, width: W, height: H };
        let frames = (0..BATCH * H * W * 3).map(|i| 0.5 + 0.4 * ((i % 97) as f32 * 0.21).sin()).collect();
        let camera = |s: f32, yaw: f32| weak_params([[s * yaw.cos(), 0.0, s * yaw.sin(), W as f32 / 2.0], [0.0, -s, 0.0, H as f32 / 2.0]]);
        let cameras: Vec<f32> = [camera(14.0, 0.3), camera(12.0, -0.5)].concat();
        let frames = ChainFrames {
            shape,
            camera: CameraModel::WeakPerspective,
            frames,
            grad_image: random(BATCH * H * W * 3, 5),
            grad_sampled: random(BATCH * n * 3, 6),
        };
        let coeffs = [random(BATCH * 4, 7), random(BATCH * 3, 8), random(BATCH * 5, 9), cameras];
        Case { triangles, arrays, n, frames, coeffs }
    }

    impl Case {
        fn model(&self) -> ChainModel<'_> {
            let [mean_shape, id_basis, exp_basis, mean_albedo, albedo_basis] = &self.arrays;
            ChainModel { n_vertices: self.n, triangles: &self.triangles, mean_shape, id_basis, exp_basis, mean_albedo, albedo_basis }
        }

        fn inputs(&self) -> ChainInputs<'_> {
            let [id, exp, tex, cameras] = &self.coeffs;
            ChainInputs { id, exp, tex, cameras }
        }
    }

    fn every(o: &ChainOutputs) -> [(&'static str, &[f32]); 6] {
        [("d id", &o.grad_id), ("d exp", &o.grad_exp), ("d tex", &o.grad_tex), ("d cameras", &o.grad_cameras), ("image", &o.image), ("sampled", &o.sampled)]
    }

    #[test]
    fn the_chain_on_device_buffers_equals_the_ops_one_by_one_and_the_native_twins() {
        let c = case();
        let backend = wgpu_backend();
        let Backend::Gpu { client, .. } = &backend else { unreachable!() };
        let native = per_op(&Backend::Cpu, None, &c.model(), &c.frames, &c.inputs(), true, &mut ());
        let bases = c.model().upload_bases(client);
        let ops = per_op(&backend, Some(&bases), &c.model(), &c.frames, &c.inputs(), true, &mut ());
        let chain = RenderChain::new(client, &c.model(), &c.frames);
        // Bins that overflow (4 ids for tiles that hold more) draw those tiles from every triangle.
        let overflowing = RenderChain::with_bin_capacity(client, &c.model(), &c.frames, 4);
        let (chained, chained_overflow) = (chain.iterate(&c.inputs(), true), overflowing.iterate(&c.inputs(), true));
        let covered = chained.image.iter().filter(|&&v| v != 0.0).count();
        assert!(covered > W * H / 4, "the mesh covers {covered} of {} image values", BATCH * W * H * 3);
        for ((what, a), ((_, b), ((_, o), (_, x)))) in every(&chained).into_iter().zip(every(&ops).into_iter().zip(every(&chained_overflow).into_iter().zip(every(&native)))) {
            assert!(!a.is_empty() && a.iter().any(|v| *v != 0.0), "{what} is empty or zero");
            // The same kernels in the same order: the chained results equal the per-op ones.
            assert_eq!(a, b, "{what}: chained vs per op on wgpu");
            assert_eq!(a, o, "{what}: with overflowing bins");
            // Against the native twins, the ops' own tolerance.
            assert_close(a, x, 1e-3);
        }
    }

    #[test]
    fn a_drawing_chained_on_the_device_equals_the_ops_one_by_one() {
        let c = case();
        let backend = wgpu_backend();
        let Backend::Gpu { client, .. } = &backend else { unreachable!() };
        let m = c.model();
        let [shape_id, shape_exp, shape_tex] = m.shapes(BATCH);
        let with_id = decode::forward_cpu(shape_id, m.mean_shape, m.id_basis, &c.coeffs[0]);
        let positions = decode::forward_cpu(shape_exp, &with_id, m.exp_basis, &c.coeffs[1]);
        let albedo = decode::forward_cpu(shape_tex, m.mean_albedo, m.albedo_basis, &c.coeffs[2]);
        let (cameras, shape, camera) = (&c.coeffs[3], c.frames.shape, c.frames.camera);
        let drawn = draw(client, shape, camera, &c.triangles, c.n, &positions, cameras, &albedo);
        let projected = project::forward(&backend, camera, &positions, cameras, c.n);
        let raster = rasterize::forward(&backend, shape, &projected, &c.triangles, c.n);
        let image = interpolate::forward(&backend, shape, &projected, &c.triangles, c.n, &raster.tri, &albedo, 3);
        assert!(raster.tri.iter().filter(|&&t| t != 0).count() > W * H / 4, "the mesh barely shows");
        assert_eq!(drawn, Drawing { raster, projected, image });
    }
}
