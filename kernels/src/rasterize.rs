//! rasterize: z-buffer, triangle id, perspective-correct barycentrics and coverage for a batch of
//! projected meshes (the output of `project`: [u, v, depth, inv_w] per vertex). Not
//! differentiable, as in the papers' renderers: gradients reach the vertices through the
//! barycentrics (`interpolate`) and through texture sampling (`sample`).
//!
//! Per pixel (px, py), centre p = (px + ½, py + ½): screen-space weights wᵢ from the edge
//! functions; covered when all wᵢ ≥ 0; perspective-correct bᵢ = wᵢ qᵢ / Σ wⱼ qⱼ with qᵢ = inv_w;
//! depth = Σ bᵢ dᵢ. The nearest surface wins, and equal depths go to the lower triangle id, so
//! the result does not depend on the order triangles are visited. Triangles with a vertex behind
//! a pinhole camera (inv_w = 0) or with no area are dropped; off-screen parts are not drawn.
//!
//! Both twins share the host-side binning: triangles are listed per 8×8 tile they may touch.

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Tile edge in pixels for the binning.
pub const TILE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RasterShape {
    pub batch: usize,
    pub width: usize,
    pub height: usize,
}

impl RasterShape {
    pub fn pixels(&self) -> usize {
        self.width * self.height
    }

    fn tiles_x(&self) -> usize {
        self.width.div_ceil(TILE)
    }

    fn tiles(&self) -> usize {
        self.tiles_x() * self.height.div_ceil(TILE)
    }
}

/// The rasterizer's output, per item and pixel (row-major, B × H × W).
#[derive(Clone, Debug, PartialEq)]
pub struct Raster {
    pub shape: RasterShape,
    /// Triangle id + 1; 0 where nothing covers the pixel.
    pub tri: Vec<u32>,
    /// Depth of the visible surface (`f32::MAX` where empty).
    pub depth: Vec<f32>,
    /// Perspective-correct barycentrics (b₀, b₁) per pixel; b₂ = 1 − b₀ − b₁.
    pub bary: Vec<f32>,
}

impl Raster {
    pub fn covered(&self, i: usize) -> bool {
        self.tri[i] != 0
    }

    /// The coverage mask as 0/1 floats, for the whole batch.
    pub fn mask(&self) -> Vec<f32> {
        mask_of(&self.tri)
    }

    /// The coverage mask of one item.
    pub fn item_mask(&self, item: usize) -> Vec<f32> {
        let p = self.shape.pixels();
        mask_of(&self.tri[item * p..(item + 1) * p])
    }
}

fn mask_of(tri: &[u32]) -> Vec<f32> {
    tri.iter().map(|&t| if t != 0 { 1.0 } else { 0.0 }).collect()
}

/// Triangles per (item, tile), as CSR: `ids[offsets[k]..offsets[k + 1]]` for k = item · tiles + tile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bins {
    pub offsets: Vec<u32>,
    pub ids: Vec<u32>,
}

/// Whether a triangle can be drawn, and its pixel bounding box (inclusive, clamped to the image).
fn pixel_box(shape: RasterShape, v: [&[f32]; 3]) -> Option<[usize; 4]> {
    if v.iter().any(|p| p[3] <= 0.0 || !p[0].is_finite() || !p[1].is_finite()) {
        return None;
    }
    let area = (v[1][0] - v[0][0]) * (v[2][1] - v[0][1]) - (v[2][0] - v[0][0]) * (v[1][1] - v[0][1]);
    if area.abs() < 1e-12 {
        return None;
    }
    let (min_x, max_x) = (v[0][0].min(v[1][0]).min(v[2][0]), v[0][0].max(v[1][0]).max(v[2][0]));
    let (min_y, max_y) = (v[0][1].min(v[1][1]).min(v[2][1]), v[0][1].max(v[1][1]).max(v[2][1]));
    // Pixel centres px + ½ inside [min, max].
    let (x0, x1) = ((min_x - 0.5).ceil().max(0.0), (max_x - 0.5).floor().min(shape.width as f32 - 1.0));
    let (y0, y1) = ((min_y - 0.5).ceil().max(0.0), (max_y - 0.5).floor().min(shape.height as f32 - 1.0));
    if x0 > x1 || y0 > y1 {
        return None;
    }
    Some([x0 as usize, x1 as usize, y0 as usize, y1 as usize])
}

pub(crate) fn corners<'a>(projected: &'a [f32], triangles: &[u32], item_base: usize, t: usize) -> [&'a [f32]; 3] {
    let at = |k: usize| {
        let v = item_base + triangles[3 * t + k] as usize;
        &projected[4 * v..4 * v + 4]
    };
    [at(0), at(1), at(2)]
}

/// Lists each drawable triangle in every tile its bounding box touches, in increasing id order.
pub fn bin_triangles(shape: RasterShape, projected: &[f32], triangles: &[u32], n_vertices: usize) -> Bins {
    let (tiles, tiles_x) = (shape.tiles(), shape.tiles_x());
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); shape.batch * tiles];
    for b in 0..shape.batch {
        for t in 0..triangles.len() / 3 {
            if let Some([x0, x1, y0, y1]) = pixel_box(shape, corners(projected, triangles, b * n_vertices, t)) {
                for ty in y0 / TILE..=y1 / TILE {
                    for tx in x0 / TILE..=x1 / TILE {
                        lists[b * tiles + ty * tiles_x + tx].push(t as u32);
                    }
                }
            }
        }
    }
    let mut offsets = Vec::with_capacity(lists.len() + 1);
    offsets.push(0u32);
    let mut ids = Vec::new();
    for l in lists {
        ids.extend(l);
        offsets.push(ids.len() as u32);
    }
    Bins { offsets, ids }
}

/// Screen-space weights wᵢ of the pixel centre (px, py) (edge functions over the signed area),
/// and the area; shared by every op that recomputes barycentrics.
#[inline]
pub(crate) fn screen_weights(v: [&[f32]; 3], px: f32, py: f32) -> ([f32; 3], f32) {
    let area = (v[1][0] - v[0][0]) * (v[2][1] - v[0][1]) - (v[2][0] - v[0][0]) * (v[1][1] - v[0][1]);
    let w0 = ((v[1][0] - px) * (v[2][1] - py) - (v[2][0] - px) * (v[1][1] - py)) / area;
    let w1 = ((v[2][0] - px) * (v[0][1] - py) - (v[0][0] - px) * (v[2][1] - py)) / area;
    let w2 = ((v[0][0] - px) * (v[1][1] - py) - (v[1][0] - px) * (v[0][1] - py)) / area;
    ([w0, w1, w2], area)
}

/// Perspective-correct barycentrics bᵢ = wᵢ qᵢ / Σ wⱼ qⱼ, and that sum.
#[inline]
pub(crate) fn perspective(v: [&[f32]; 3], w: [f32; 3]) -> ([f32; 3], f32) {
    let (q0, q1, q2) = (w[0] * v[0][3], w[1] * v[1][3], w[2] * v[2][3]);
    let s = q0 + q1 + q2;
    ([q0 / s, q1 / s, q2 / s], s)
}

/// The per-pixel test both twins perform: Some((depth, b₀, b₁)) when the centre is covered.
#[inline]
fn cover(v: [&[f32]; 3], px: f32, py: f32) -> Option<(f32, f32, f32)> {
    let (w, _) = screen_weights(v, px, py);
    if w[0] < 0.0 || w[1] < 0.0 || w[2] < 0.0 {
        return None;
    }
    let (b, _) = perspective(v, w);
    Some((b[0] * v[0][2] + b[1] * v[1][2] + b[2] * v[2][2], b[0], b[1]))
}

/// Native twin: scan-converts each triangle over its bounding box; items in parallel.
pub fn forward_cpu(shape: RasterShape, projected: &[f32], triangles: &[u32], n_vertices: usize) -> Raster {
    assert_eq!(projected.len(), shape.batch * n_vertices * 4, "rasterize: projected length");
    let p = shape.pixels();
    let items = crate::parallel::map(shape.batch, |b| {
        let (mut tri, mut depth, mut bary) = (vec![0u32; p], vec![f32::MAX; p], vec![0.0f32; 2 * p]);
        for t in 0..triangles.len() / 3 {
            let v = corners(projected, triangles, b * n_vertices, t);
            let Some([x0, x1, y0, y1]) = pixel_box(shape, v) else { continue };
            for py in y0..=y1 {
                for px in x0..=x1 {
                    if let Some((d, b0, b1)) = cover(v, px as f32 + 0.5, py as f32 + 0.5) {
                        let i = py * shape.width + px;
                        let id = t as u32 + 1;
                        if d < depth[i] || (d == depth[i] && id < tri[i]) {
                            (tri[i], depth[i], bary[2 * i], bary[2 * i + 1]) = (id, d, b0, b1);
                        }
                    }
                }
            }
        }
        (tri, depth, bary)
    });
    let mut raster = Raster { shape, tri: Vec::with_capacity(shape.batch * p), depth: Vec::with_capacity(shape.batch * p), bary: Vec::with_capacity(2 * shape.batch * p) };
    for (tri, depth, bary) in items {
        raster.tri.extend(tri);
        raster.depth.extend(depth);
        raster.bary.extend(bary);
    }
    raster
}

/// One thread per (item, pixel): the nearest of the triangles binned to its tile.
#[allow(clippy::manual_div_ceil)]
#[cube(launch_unchecked)]
fn rasterize_kernel(
    projected: &[f32],
    triangles: &[u32],
    bin_offsets: &[u32],
    bin_ids: &[u32],
    tri: &mut [u32],
    depth: &mut [f32],
    bary: &mut [f32],
    width: usize,
    height: usize,
    n_vertices: usize,
    n_triangles: usize,
    capacity: usize,
) {
    let pos = ABSOLUTE_POS;
    if pos < tri.len() {
        let pixels = width * height;
        let b = pos / pixels;
        let p = pos % pixels;
        let px = p % width;
        let py = p / width;
        let tiles_x = (width + 7) / 8;
        let tiles = tiles_x * ((height + 7) / 8);
        let bin = b * tiles + (py / 8) * tiles_x + px / 8;
        let cx = px as f32 + 0.5f32;
        let cy = py as f32 + 0.5f32;
        let base = b * n_vertices;
        let mut best_id = 0u32;
        let mut best_depth = 3.402_823_5e38f32;
        let mut best_b0 = 0.0f32;
        let mut best_b1 = 0.0f32;
        // The host's bins are CSR (capacity 0); the device's hold up to `capacity` ids per bin
        // and their counts, and a bin that overflowed is drawn from every triangle.
        let mut start = 0usize;
        let mut end = n_triangles;
        let mut listed = true;
        if capacity == 0 {
            start = bin_offsets[bin] as usize;
            end = bin_offsets[bin + 1] as usize;
        } else {
            let count = bin_offsets[bin] as usize;
            if count <= capacity {
                start = bin * capacity;
                end = start + count;
            } else {
                listed = false;
            }
        }
        for j in start..end {
            let mut t = j;
            if listed {
                t = bin_ids[j] as usize;
            }
            let i0 = 4 * (base + triangles[3 * t] as usize);
            let i1 = 4 * (base + triangles[3 * t + 1] as usize);
            let i2 = 4 * (base + triangles[3 * t + 2] as usize);
            let x0 = projected[i0];
            let y0 = projected[i0 + 1];
            let x1 = projected[i1];
            let y1 = projected[i1 + 1];
            let x2 = projected[i2];
            let y2 = projected[i2 + 1];
            let area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
            let w0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) / area;
            let w1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) / area;
            let w2 = ((x0 - cx) * (y1 - cy) - (x1 - cx) * (y0 - cy)) / area;
            let drawable = drawable_triangle(x0, y0, x1, y1, x2, y2, projected[i0 + 3], projected[i1 + 3], projected[i2 + 3]);
            if drawable && w0 >= 0.0f32 && w1 >= 0.0f32 && w2 >= 0.0f32 {
                let q0 = w0 * projected[i0 + 3];
                let q1 = w1 * projected[i1 + 3];
                let q2 = w2 * projected[i2 + 3];
                let s = q0 + q1 + q2;
                let b0 = q0 / s;
                let b1 = q1 / s;
                let b2 = q2 / s;
                let d = b0 * projected[i0 + 2] + b1 * projected[i1 + 2] + b2 * projected[i2 + 2];
                let id = t as u32 + 1u32;
                if d < best_depth || (d == best_depth && id < best_id) {
                    best_id = id;
                    best_depth = d;
                    best_b0 = b0;
                    best_b1 = b1;
                }
            }
        }
        tri[pos] = best_id;
        depth[pos] = best_depth;
        bary[2 * pos] = best_b0;
        bary[2 * pos + 1] = best_b1;
    }
}

/// Rasterizes on whichever backend.
pub fn forward(backend: &Backend, shape: RasterShape, projected: &[f32], triangles: &[u32], n_vertices: usize) -> Raster {
    match backend {
        Backend::Cpu => forward_cpu(shape, projected, triangles, n_vertices),
        Backend::Gpu { client, .. } => {
            assert_eq!(projected.len(), shape.batch * n_vertices * 4, "rasterize: projected length");
            let bins = bin_triangles(shape, projected, triangles, n_vertices);
            let u32s = |d: &[u32]| client.create_from_slice(u32::as_bytes(d));
            // The bin list may be empty; a buffer needs at least one element.
            let ids = if bins.ids.is_empty() { vec![0] } else { bins.ids };
            let bins = ((u32s(&bins.offsets), bins.offsets.len()), (u32s(&ids), ids.len()));
            launch_raster(client, shape, &upload(client, projected), &u32s(triangles), triangles.len() / 3, n_vertices, bins, 0).download(client, shape)
        }
    }
}

/// `pixel_box`'s test that a triangle can be drawn, on the device: every corner in front of
/// the camera and finite, and a non-zero area.
#[cube]
fn drawable_triangle(x0: f32, y0: f32, x1: f32, y1: f32, x2: f32, y2: f32, q0: f32, q1: f32, q2: f32) -> bool {
    let big = 3.402_823_5e38f32;
    let finite = f32::abs(x0) <= big && f32::abs(y0) <= big && f32::abs(x1) <= big && f32::abs(y1) <= big && f32::abs(x2) <= big && f32::abs(y2) <= big;
    let area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
    finite && q0 > 0.0f32 && q1 > 0.0f32 && q2 > 0.0f32 && f32::abs(area) >= 1e-12f32
}

/// Zeroes the device bins' counts before they are filled.
#[cube(launch_unchecked)]
fn clear_kernel(counts: &mut [u32]) {
    if ABSOLUTE_POS < counts.len() {
        counts[ABSOLUTE_POS] = 0u32;
    }
}

/// The device's binning, one thread per (item, triangle): a drawable triangle adds its id to
/// every tile its pixel box touches — up to `capacity` ids a tile, counting them all. The ids
/// land in any order; the rasterizer's result does not depend on it (nearest, then lowest id).
#[allow(clippy::manual_div_ceil)]
#[cube(launch_unchecked)]
fn bin_kernel(projected: &[f32], triangles: &[u32], counts: &mut [Atomic<u32>], ids: &mut [u32], width: usize, height: usize, n_vertices: usize, n_triangles: usize, capacity: usize, batch: usize) {
    let pos = ABSOLUTE_POS;
    if pos < batch * n_triangles {
        let b = pos / n_triangles;
        let t = pos % n_triangles;
        let tiles_x = (width + 7) / 8;
        let tiles = tiles_x * ((height + 7) / 8);
        let base = b * n_vertices;
        let i0 = 4 * (base + triangles[3 * t] as usize);
        let i1 = 4 * (base + triangles[3 * t + 1] as usize);
        let i2 = 4 * (base + triangles[3 * t + 2] as usize);
        let (x0, y0, x1, y1, x2, y2) = (projected[i0], projected[i0 + 1], projected[i1], projected[i1 + 1], projected[i2], projected[i2 + 1]);
        if drawable_triangle(x0, y0, x1, y1, x2, y2, projected[i0 + 3], projected[i1 + 3], projected[i2 + 3]) {
            // Pixel centres px + ½ inside [min, max], clamped to the image (as `pixel_box`).
            let bx0 = f32::max(f32::ceil(f32::min(x0, f32::min(x1, x2)) - 0.5f32), 0.0f32);
            let bx1 = f32::min(f32::floor(f32::max(x0, f32::max(x1, x2)) - 0.5f32), (width - 1) as f32);
            let by0 = f32::max(f32::ceil(f32::min(y0, f32::min(y1, y2)) - 0.5f32), 0.0f32);
            let by1 = f32::min(f32::floor(f32::max(y0, f32::max(y1, y2)) - 0.5f32), (height - 1) as f32);
            if bx0 <= bx1 && by0 <= by1 {
                for ty in (by0 as usize) / 8..(by1 as usize) / 8 + 1 {
                    for tx in (bx0 as usize) / 8..(bx1 as usize) / 8 + 1 {
                        let slot = b * tiles + ty * tiles_x + tx;
                        let k = counts[slot].fetch_add(1u32) as usize;
                        if k < capacity {
                            ids[slot * capacity + k] = t as u32;
                        }
                    }
                }
            }
        }
    }
}

/// The rasterizer's output left on the device (row-major B × H × W, as `Raster`).
#[derive(Debug)]
pub struct DeviceRaster {
    pub tri: Handle,
    pub depth: Handle,
    pub bary: Handle,
}

/// Ids a device bin holds before its tile is drawn from every triangle instead: room for the
/// mesh spread over an eighth of the tiles, at least 1,024, at most the mesh (the bfm preset's
/// 57,472 triangles: 7,184 a tile at 64 px, 1,024 at 224 px; 29 and 51 MB of bins at batch 16).
pub fn bin_capacity(shape: RasterShape, n_triangles: usize) -> usize {
    (8 * n_triangles).div_ceil(shape.tiles()).max(1024).min(n_triangles).max(1)
}

/// Rasterizes on the device from projected vertices already there, binning there too: nothing
/// crosses to the host. Equals `forward` (the bins differ in layout, not in what they hold).
pub fn forward_device(client: &cubecl::client::Client, shape: RasterShape, projected: &Handle, triangles: &Handle, n_triangles: usize, n_vertices: usize, capacity: usize) -> DeviceRaster {
    let slots = shape.batch * shape.tiles();
    let (counts, ids) = (client.empty(slots * 4), client.empty(slots * capacity * 4));
    let n_projected = shape.batch * n_vertices * 4;
    #[allow(unsafe_code)]
    // SAFETY: vertex indices come from a checked model; a bin writes ids below its own
    // `capacity` slots; thread indices are bounded by the bin and triangle counts.
    unsafe {
        let (count, dim) = grid_1d(slots);
        clear_kernel::launch_unchecked(client, count, dim, BufferArg::from_raw_parts(counts.clone(), slots));
        let (count, dim) = grid_1d(shape.batch * n_triangles);
        bin_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(projected.clone(), n_projected),
            BufferArg::from_raw_parts(triangles.clone(), 3 * n_triangles),
            BufferArg::from_raw_parts(counts.clone(), slots),
            BufferArg::from_raw_parts(ids.clone(), slots * capacity),
            shape.width,
            shape.height,
            n_vertices,
            n_triangles,
            capacity,
            shape.batch,
        );
    }
    launch_raster(client, shape, projected, triangles, n_triangles, n_vertices, ((counts, slots), (ids, slots * capacity)), capacity)
}

/// The rasterizer's launch over given bins, each handle with its length: the host's CSR lists
/// (`capacity` 0) or the device's tiles of `capacity` ids and their counts.
fn launch_raster(client: &cubecl::client::Client, shape: RasterShape, projected: &Handle, triangles: &Handle, n_triangles: usize, n_vertices: usize, bins: ((Handle, usize), (Handle, usize)), capacity: usize) -> DeviceRaster {
    let ((offsets, offsets_len), (ids, ids_len)) = bins;
    let n = shape.batch * shape.pixels();
    let (tri, depth, bary) = (client.empty(n * 4), client.empty(n * 4), client.empty(2 * n * 4));
    let (count, dim) = grid_1d(n);
    #[allow(unsafe_code)]
    // SAFETY: vertex indices come from a checked model; bins index real triangles; the thread
    // index is bounded by the pixel count.
    unsafe {
        rasterize_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(projected.clone(), shape.batch * n_vertices * 4),
            BufferArg::from_raw_parts(triangles.clone(), 3 * n_triangles),
            BufferArg::from_raw_parts(offsets, offsets_len),
            BufferArg::from_raw_parts(ids, ids_len),
            BufferArg::from_raw_parts(tri.clone(), n),
            BufferArg::from_raw_parts(depth.clone(), n),
            BufferArg::from_raw_parts(bary.clone(), 2 * n),
            shape.width,
            shape.height,
            n_vertices,
            n_triangles,
            capacity,
        );
    }
    DeviceRaster { tri, depth, bary }
}

impl DeviceRaster {
    /// Reads the raster back (tests, and callers that need it on the host).
    pub fn download(self, client: &cubecl::client::Client, shape: RasterShape) -> Raster {
        let tri_bytes = client.read_one(self.tri).expect("reading triangle ids back");
        Raster { shape, tri: u32::from_bytes(&tri_bytes).to_vec(), depth: download(client, self.depth), bary: download(client, self.bary) }
    }
}

// The kernel hard-codes the tile edge.
const _: () = assert!(TILE == 8);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{self, pinhole_params, weak_params, CameraModel, NEAR};
    use crate::testing::{rotation, test_mesh, wgpu_backend};

    const W: usize = 96;
    const H: usize = 80;

    /// Pinhole cameras looking at the mesh from 400 mm (the model's y up and z towards the camera
    /// become the camera's y down and z forward), one shifted so part of the mesh is off-screen.
    fn pinhole_scene() -> (Vec<f32>, Vec<u32>, Vec<f32>, usize) {
        let (mesh, triangles) = test_mesh(24, 12, 3);
        let n = mesh.len() / 3;
        let mut cameras = Vec::new();
        for (yaw, shift) in [(0.5f32, 0.0f32), (-0.3, 25.0)] {
            let r = rotation(yaw, 0.2);
            let flipped: Vec<f32> = (0..9).map(|i| if i / 3 == 0 { r[i] } else { -r[i] }).collect();
            cameras.extend(pinhole_params([150.0, 150.0, 48.0 + shift, 40.0], flipped.try_into().unwrap(), [0.0, 0.0, 400.0]));
        }
        let positions: Vec<f32> = mesh.iter().chain(mesh.iter()).copied().collect();
        (positions, triangles, cameras, n)
    }

    /// The oracle: a ray through every pixel centre, intersected (Möller–Trumbore, f64) with
    /// every camera-space triangle; the nearest hit, ties to the lower id. Triangles with a
    /// vertex behind the near plane are dropped, as the rasterizer drops them.
    fn ray_cast(positions: &[f32], triangles: &[u32], cameras: &[f32], n: usize, b: usize) -> Vec<(u32, f64, f64, f64)> {
        let c: Vec<f64> = cameras[b * 16..b * 16 + 16].iter().map(|&x| x as f64).collect();
        let cam = |v: u32| -> [f64; 3] {
            let x: Vec<f64> = positions[(b * n + v as usize) * 3..(b * n + v as usize) * 3 + 3].iter().map(|&x| x as f64).collect();
            [0, 1, 2].map(|r| (0..3).map(|k| c[4 + 3 * r + k] * x[k]).sum::<f64>() + c[13 + r])
        };
        let tris: Vec<[[f64; 3]; 3]> = triangles.chunks(3).map(|t| [cam(t[0]), cam(t[1]), cam(t[2])]).collect();
        let sub = |a: [f64; 3], b: [f64; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
        let cross = |a: [f64; 3], b: [f64; 3]| [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let mut out = Vec::new();
        for py in 0..H {
            for px in 0..W {
                let d = [(px as f64 + 0.5 - c[2]) / c[0], (py as f64 + 0.5 - c[3]) / c[1], 1.0];
                let mut best = (0u32, f64::MAX, 0.0, 0.0);
                for (t, [a, bb, cc]) in tris.iter().enumerate() {
                    if a[2] <= NEAR as f64 || bb[2] <= NEAR as f64 || cc[2] <= NEAR as f64 {
                        continue;
                    }
                    let (e1, e2) = (sub(*bb, *a), sub(*cc, *a));
                    let pv = cross(d, e2);
                    let det = dot(e1, pv);
                    if det.abs() < 1e-12 {
                        continue;
                    }
                    let tv = sub([0.0; 3], *a);
                    let u = dot(tv, pv) / det;
                    let qv = cross(tv, e1);
                    let v = dot(d, qv) / det;
                    let dist = dot(e2, qv) / det;
                    if u < 0.0 || v < 0.0 || u + v > 1.0 || dist <= 0.0 {
                        continue;
                    }
                    // d has z = 1, so the distance along it is the depth z.
                    if dist < best.1 {
                        best = (t as u32 + 1, dist, 1.0 - u - v, u);
                    }
                }
                out.push(best);
            }
        }
        out
    }

    #[test]
    fn matches_brute_force_ray_casting() {
        let (positions, triangles, cameras, n) = pinhole_scene();
        let projected = project::forward_cpu(CameraModel::Pinhole, &positions, &cameras, n);
        let shape = RasterShape { batch: 2, width: W, height: H };
        let raster = forward_cpu(shape, &projected, &triangles, n);
        for b in 0..2 {
            let oracle = ray_cast(&positions, &triangles, &cameras, n, b);
            let (mut same, mut covered) = (0, 0);
            for (p, o) in oracle.iter().enumerate() {
                let i = b * W * H + p;
                covered += (o.0 != 0) as usize;
                if raster.tri[i] != o.0 {
                    continue;
                }
                same += 1;
                if o.0 != 0 {
                    let depth = raster.depth[i] as f64;
                    assert!((depth - o.1).abs() <= 1e-4 * o.1, "pixel {p}: depth {depth} vs {}", o.1);
                    assert!((raster.bary[2 * i] as f64 - o.2).abs() < 1e-4 && (raster.bary[2 * i + 1] as f64 - o.3).abs() < 1e-4, "pixel {p}: perspective-correct barycentrics");
                }
            }
            let agreement = same as f64 / (W * H) as f64;
            assert!(agreement >= 0.999, "item {b}: triangle id equal on {:.4} % of pixels", 100.0 * agreement);
            assert!(covered > W * H / 4, "item {b}: the scene covers {covered} pixels");
        }
    }

    #[test]
    fn weak_perspective_depth_is_affine_and_the_front_is_nearer() {
        let (mesh, triangles) = test_mesh(16, 0, 1);
        let n = mesh.len() / 3;
        // Frontal: u = 0.5 x + 48, v = −0.5 y + 40; the bump's top (+z) must win over the base.
        let cameras = weak_params([[0.5, 0.0, 0.0, 48.0], [0.0, -0.5, 0.0, 40.0]]);
        let projected = project::forward_cpu(CameraModel::WeakPerspective, &mesh, &cameras, n);
        let raster = forward_cpu(RasterShape { batch: 1, width: W, height: H }, &projected, &triangles, n);
        let centre = 40 * W + 48;
        assert!(raster.covered(centre));
        // At the centre the surface is at z ≈ 30 mm: depth −f·z = −15.
        assert!((raster.depth[centre] + 15.0).abs() < 0.2, "depth {}", raster.depth[centre]);
    }

    #[test]
    fn ties_go_to_the_lower_triangle_id_and_off_screen_parts_are_clipped() {
        // Triangle 0 and 1 are the same; triangle 2 lies far outside the image.
        let projected = [
            10.0, 10.0, 5.0, 1.0, 70.0, 12.0, 5.0, 1.0, 30.0, 60.0, 5.0, 1.0, //
            -500.0, -500.0, 1.0, 1.0, -400.0, -500.0, 1.0, 1.0, -450.0, -300.0, 1.0, 1.0,
        ];
        let triangles = [0, 1, 2, 0, 1, 2, 3, 4, 5];
        let shape = RasterShape { batch: 1, width: W, height: H };
        for backend in [Backend::Cpu, wgpu_backend()] {
            let raster = forward(&backend, shape, &projected, &triangles, 6);
            let ids: std::collections::BTreeSet<u32> = raster.tri.iter().copied().collect();
            assert_eq!(ids, [0, 1].into_iter().collect(), "{backend:?}: only triangle 0 is drawn");
        }
    }

    #[test]
    fn wgpu_kernel_matches_its_native_twin() {
        let (positions, triangles, cameras, n) = pinhole_scene();
        let projected = project::forward_cpu(CameraModel::Pinhole, &positions, &cameras, n);
        let shape = RasterShape { batch: 2, width: W, height: H };
        let native = forward_cpu(shape, &projected, &triangles, n);
        let gpu = forward(&wgpu_backend(), shape, &projected, &triangles, n);
        let same = native.tri.iter().zip(&gpu.tri).filter(|(a, b)| a == b).count();
        assert!(same as f64 >= 0.999 * native.tri.len() as f64, "ids equal on {same} of {}", native.tri.len());
        for i in 0..native.tri.len() {
            if native.tri[i] == gpu.tri[i] && native.tri[i] != 0 {
                assert!((native.depth[i] - gpu.depth[i]).abs() <= 1e-5 * native.depth[i].abs().max(1.0));
                assert!((native.bary[2 * i] - gpu.bary[2 * i]).abs() <= 1e-5 && (native.bary[2 * i + 1] - gpu.bary[2 * i + 1]).abs() <= 1e-5);
            }
        }
    }
}
