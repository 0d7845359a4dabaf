//! interpolate: per-vertex attributes (colour, normal, depth, UV, …; C channels) to pixels through
//! the perspective-correct barycentrics of the visible triangle: a = Σᵢ bᵢ aᵢ.
//!
//! The barycentrics are recomputed here from the projected vertices and the rasterizer's
//! triangle ids, so the op is a differentiable function of both the attributes and the vertex
//! positions with visibility held fixed (the rasterizer itself is not differentiable).
//!
//! Adjoint, per covered pixel with upstream gradient g (C channels):
//! - d aᵢ += bᵢ g;
//! - d bᵢ = aᵢ · g; with bᵢ = wᵢqᵢ/S, S = Σ wⱼqⱼ: d wⱼ = (qⱼ/S)(d bⱼ − Σᵢ bᵢ d bᵢ) and
//!   d qⱼ = (wⱼ/S)(d bⱼ − Σᵢ bᵢ d bᵢ);
//! - wⱼ = Eⱼ/A (edge function over area); with G = Σⱼ wⱼ d wⱼ, for corner k (indices mod 3):
//!   d x_k = ((d w_{k+2} − G)(y_{k+1} − p_y) − (d w_{k+1} − G)(y_{k+2} − p_y)) / A,
//!   d y_k = ((d w_{k+1} − G)(x_{k+2} − p_x) − (d w_{k+2} − G)(x_{k+1} − p_x)) / A.
//!
//! The result d projected ([d u, d v, 0, d inv_w] per vertex) feeds `project`'s adjoint.
//! On the device the adjoint gathers per vertex (vertex → triangles → the pixels each covers),
//! so no atomics are needed; the host lists the pixels per triangle from the triangle ids.

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use crate::normals::Adjacency;
use crate::rasterize::{corners, perspective, screen_weights, RasterShape};
use cubecl::prelude::*;
use cubecl::server::Handle;

fn check(shape: RasterShape, projected: &[f32], n: usize, tri: &[u32], attr: &[f32], channels: usize) {
    assert_eq!(projected.len(), shape.batch * n * 4, "interpolate: projected length");
    assert_eq!(tri.len(), shape.batch * shape.pixels(), "interpolate: triangle id length");
    assert_eq!(attr.len(), shape.batch * n * channels, "interpolate: attribute length");
}

/// The three corners of triangle `t` starting at corner `k`, as (vertex index, projected row).
fn rotated<'a>(projected: &'a [f32], triangles: &[u32], base: usize, t: usize, k: usize) -> ([usize; 3], [&'a [f32]; 3]) {
    let ids = [0, 1, 2].map(|j| base + triangles[3 * t + (k + j) % 3] as usize);
    (ids, ids.map(|v| &projected[4 * v..4 * v + 4]))
}

/// Native forward: B × P × C.
pub fn forward_cpu(shape: RasterShape, projected: &[f32], triangles: &[u32], n: usize, tri: &[u32], attr: &[f32], channels: usize) -> Vec<f32> {
    check(shape, projected, n, tri, attr, channels);
    let mut out = vec![0.0; tri.len() * channels];
    for (i, &t) in tri.iter().enumerate() {
        if t == 0 {
            continue;
        }
        let (b, p) = (i / shape.pixels(), i % shape.pixels());
        let v = corners(projected, triangles, b * n, t as usize - 1);
        let (w, _) = screen_weights(v, (p % shape.width) as f32 + 0.5, (p / shape.width) as f32 + 0.5);
        let (bary, _) = perspective(v, w);
        for k in 0..3 {
            let vk = b * n + triangles[3 * (t as usize - 1) + k] as usize;
            for c in 0..channels {
                out[i * channels + c] += bary[k] * attr[vk * channels + c];
            }
        }
    }
    out
}

/// The adjoint of one covered pixel seen from corner 0 of a rotated triangle: (d x, d y, d q) of
/// that corner and its barycentric b₀ (for the attribute gradient).
#[inline]
fn corner_adjoint(v: [&[f32]; 3], attrs: [&[f32]; 3], g: &[f32], px: f32, py: f32) -> ([f32; 3], f32) {
    let (w, area) = screen_weights(v, px, py);
    let (b, s) = perspective(v, w);
    let gb = attrs.map(|a| a.iter().zip(g).map(|(x, y)| x * y).sum::<f32>());
    let gbb = b[0] * gb[0] + b[1] * gb[1] + b[2] * gb[2];
    let gw = [0, 1, 2].map(|j| v[j][3] / s * (gb[j] - gbb));
    let big_g = w[0] * gw[0] + w[1] * gw[1] + w[2] * gw[2];
    let gx = ((gw[2] - big_g) * (v[1][1] - py) - (gw[1] - big_g) * (v[2][1] - py)) / area;
    let gy = ((gw[1] - big_g) * (v[2][0] - px) - (gw[2] - big_g) * (v[1][0] - px)) / area;
    let gq = w[0] / s * (gb[0] - gbb);
    ([gx, gy, gq], b[0])
}

/// Native adjoint: (d attributes B × N × C, d projected B × N × 4); items in parallel.
pub fn backward_cpu(
    shape: RasterShape,
    projected: &[f32],
    triangles: &[u32],
    n: usize,
    tri: &[u32],
    attr: &[f32],
    channels: usize,
    grad_out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    check(shape, projected, n, tri, attr, channels);
    assert_eq!(grad_out.len(), tri.len() * channels, "interpolate backward: grad length");
    let pixels = shape.pixels();
    let items = crate::parallel::map(shape.batch, |b| {
        // Gradients of this item's vertices, indexed from the item's first vertex.
        let (mut g_attr, mut g_proj) = (vec![0.0f32; n * channels], vec![0.0f32; n * 4]);
        for p in 0..pixels {
            let (i, t) = (b * pixels + p, tri[b * pixels + p]);
            if t == 0 {
                continue;
            }
            let (px, py) = ((p % shape.width) as f32 + 0.5, (p / shape.width) as f32 + 0.5);
            let g = &grad_out[i * channels..(i + 1) * channels];
            for k in 0..3 {
                let (ids, v) = rotated(projected, triangles, b * n, t as usize - 1, k);
                let attrs = ids.map(|id| &attr[id * channels..(id + 1) * channels]);
                let (d, b0) = corner_adjoint(v, attrs, g, px, py);
                let local = ids[0] - b * n;
                for c in 0..channels {
                    g_attr[local * channels + c] += b0 * g[c];
                }
                g_proj[4 * local] += d[0];
                g_proj[4 * local + 1] += d[1];
                g_proj[4 * local + 3] += d[2];
            }
        }
        (g_attr, g_proj)
    });
    let (mut g_attr, mut g_proj) = (Vec::with_capacity(attr.len()), Vec::with_capacity(projected.len()));
    for (a, p) in items {
        g_attr.extend(a);
        g_proj.extend(p);
    }
    (g_attr, g_proj)
}

/// Pixels per (item, triangle), as CSR over k = item · T + triangle.
pub fn pixels_per_triangle(shape: RasterShape, n_triangles: usize, tri: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![0u32; shape.batch * n_triangles + 1];
    for (i, &t) in tri.iter().enumerate() {
        if t != 0 {
            counts[(i / shape.pixels()) * n_triangles + t as usize] += 1;
        }
    }
    for k in 0..shape.batch * n_triangles {
        counts[k + 1] += counts[k];
    }
    let mut cursor = counts.clone();
    let mut pixels = vec![0u32; *counts.last().unwrap_or(&0) as usize];
    for (i, &t) in tri.iter().enumerate() {
        if t != 0 {
            let k = (i / shape.pixels()) * n_triangles + t as usize - 1;
            pixels[cursor[k] as usize] = (i % shape.pixels()) as u32;
            cursor[k] += 1;
        }
    }
    (counts, pixels)
}

/// One thread per (item, pixel): Σ bᵢ aᵢ.
#[cube(launch_unchecked)]
fn interpolate_forward_kernel(projected: &[f32], triangles: &[u32], tri: &[u32], attr: &[f32], out: &mut [f32], width: usize, pixels: usize, n: usize, channels: usize) {
    let i = ABSOLUTE_POS;
    if i < tri.len() {
        let t = tri[i];
        for c in 0..channels {
            out[i * channels + c] = 0.0f32;
        }
        if t != 0u32 {
            let tt = (t - 1u32) as usize;
            let base = (i / pixels) * n;
            let p = i % pixels;
            let px = (p % width) as f32 + 0.5f32;
            let py = (p / width) as f32 + 0.5f32;
            let v0 = base + triangles[3 * tt] as usize;
            let v1 = base + triangles[3 * tt + 1] as usize;
            let v2 = base + triangles[3 * tt + 2] as usize;
            let x0 = projected[4 * v0];
            let y0 = projected[4 * v0 + 1];
            let x1 = projected[4 * v1];
            let y1 = projected[4 * v1 + 1];
            let x2 = projected[4 * v2];
            let y2 = projected[4 * v2 + 1];
            let area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
            let q0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area * projected[4 * v0 + 3];
            let q1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area * projected[4 * v1 + 3];
            let q2 = ((x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)) / area * projected[4 * v2 + 3];
            let s = q0 + q1 + q2;
            for c in 0..channels {
                out[i * channels + c] = q0 / s * attr[v0 * channels + c] + q1 / s * attr[v1 * channels + c] + q2 / s * attr[v2 * channels + c];
            }
        }
    }
}

/// One thread per (item, vertex): gathers the adjoint over the pixels of its triangles.
#[cube(launch_unchecked)]
fn interpolate_backward_kernel(
    projected: &[f32],
    triangles: &[u32],
    adjacency_offsets: &[u32],
    adjacency: &[u32],
    pixel_offsets: &[u32],
    pixel_list: &[u32],
    tri: &[u32],
    attr: &[f32],
    grad_out: &[f32],
    grad_attr: &mut [f32],
    grad_projected: &mut [f32],
    width: usize,
    pixels: usize,
    n: usize,
    n_triangles: usize,
    channels: usize,
    boxed: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos < projected.len() / 4 {
        let b = pos / n;
        let v = pos % n;
        let base = b * n;
        for c in 0..channels {
            grad_attr[pos * channels + c] = 0.0f32;
        }
        let mut gx = 0.0f32;
        let mut gy = 0.0f32;
        let mut gq = 0.0f32;
        for j in adjacency_offsets[v] as usize..adjacency_offsets[v + 1] as usize {
            let t = adjacency[j] as usize;
            // Rotate the triangle so that this vertex is corner 0.
            let mut k = 0usize;
            if triangles[3 * t + 1] as usize == v {
                k = 1;
            }
            if triangles[3 * t + 2] as usize == v {
                k = 2;
            }
            let v0 = base + v;
            let v1 = base + triangles[3 * t + (k + 1) % 3] as usize;
            let v2 = base + triangles[3 * t + (k + 2) % 3] as usize;
            let x0 = projected[4 * v0];
            let y0 = projected[4 * v0 + 1];
            let x1 = projected[4 * v1];
            let y1 = projected[4 * v1 + 1];
            let x2 = projected[4 * v2];
            let y2 = projected[4 * v2 + 1];
            let qv0 = projected[4 * v0 + 3];
            let qv1 = projected[4 * v1 + 3];
            let qv2 = projected[4 * v2 + 3];
            let area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
            // The triangle's pixels: the host's list (boxed 0), or on the device, the pixels of
            // its bounding box (one pixel wider each way) whose triangle id is its own — the same
            // pixels in the same increasing order.
            let list = b * n_triangles + t;
            let mut start = 0usize;
            let mut end = 0usize;
            let mut box_x0 = 0usize;
            let mut box_y0 = 0usize;
            let mut box_w = 1usize;
            if boxed == 0u32 {
                start = pixel_offsets[list] as usize;
                end = pixel_offsets[list + 1] as usize;
            } else {
                let height = pixels / width;
                let big = 3.402_823_5e38f32;
                let finite = f32::abs(x0) <= big && f32::abs(y0) <= big && f32::abs(x1) <= big && f32::abs(y1) <= big && f32::abs(x2) <= big && f32::abs(y2) <= big;
                if finite && qv0 > 0.0f32 && qv1 > 0.0f32 && qv2 > 0.0f32 {
                    let lo_x = f32::ceil(f32::min(x0, f32::min(x1, x2)) - 0.5f32) - 1.0f32;
                    let hi_x = f32::floor(f32::max(x0, f32::max(x1, x2)) - 0.5f32) + 1.0f32;
                    let lo_y = f32::ceil(f32::min(y0, f32::min(y1, y2)) - 0.5f32) - 1.0f32;
                    let hi_y = f32::floor(f32::max(y0, f32::max(y1, y2)) - 0.5f32) + 1.0f32;
                    if hi_x >= 0.0f32 && hi_y >= 0.0f32 && lo_x <= (width - 1) as f32 && lo_y <= (height - 1) as f32 {
                        box_x0 = f32::max(lo_x, 0.0f32) as usize;
                        box_y0 = f32::max(lo_y, 0.0f32) as usize;
                        let box_x1 = f32::min(hi_x, (width - 1) as f32) as usize;
                        let box_y1 = f32::min(hi_y, (height - 1) as f32) as usize;
                        box_w = box_x1 - box_x0 + 1;
                        end = box_w * (box_y1 - box_y0 + 1);
                    }
                }
            }
            for m in start..end {
                let p = if boxed == 0u32 { pixel_list[m] as usize } else { (box_y0 + m / box_w) * width + box_x0 + m % box_w };
                let hit = boxed == 0u32 || tri[b * pixels + p] == (t + 1) as u32;
                if hit {
                let i = b * pixels + p;
                let px = (p % width) as f32 + 0.5f32;
                let py = (p / width) as f32 + 0.5f32;
                let w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area;
                let w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area;
                let w2 = ((x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)) / area;
                let q0 = w0 * qv0;
                let q1 = w1 * qv1;
                let q2 = w2 * qv2;
                let s = q0 + q1 + q2;
                let b0 = q0 / s;
                let b1 = q1 / s;
                let b2 = q2 / s;
                let mut gb0 = 0.0f32;
                let mut gb1 = 0.0f32;
                let mut gb2 = 0.0f32;
                for c in 0..channels {
                    let g = grad_out[i * channels + c];
                    gb0 += attr[v0 * channels + c] * g;
                    gb1 += attr[v1 * channels + c] * g;
                    gb2 += attr[v2 * channels + c] * g;
                    grad_attr[pos * channels + c] += b0 * g;
                }
                let gbb = b0 * gb0 + b1 * gb1 + b2 * gb2;
                let gw0 = qv0 / s * (gb0 - gbb);
                let gw1 = qv1 / s * (gb1 - gbb);
                let gw2 = qv2 / s * (gb2 - gbb);
                let big_g = w0 * gw0 + w1 * gw1 + w2 * gw2;
                gx += ((gw2 - big_g) * (y1 - py) - (gw1 - big_g) * (y2 - py)) / area;
                gy += ((gw1 - big_g) * (x2 - px) - (gw2 - big_g) * (x1 - px)) / area;
                gq += w0 / s * (gb0 - gbb);
                }
            }
        }
        grad_projected[4 * pos] = gx;
        grad_projected[4 * pos + 1] = gy;
        grad_projected[4 * pos + 2] = 0.0f32;
        grad_projected[4 * pos + 3] = gq;
    }
}

/// Forward on whichever backend.
pub fn forward(backend: &Backend, shape: RasterShape, projected: &[f32], triangles: &[u32], n: usize, tri: &[u32], attr: &[f32], channels: usize) -> Vec<f32> {
    match backend {
        Backend::Cpu => forward_cpu(shape, projected, triangles, n, tri, attr, channels),
        Backend::Gpu { client, .. } => {
            check(shape, projected, n, tri, attr, channels);
            let u32s = |d: &[u32]| client.create_from_slice(u32::as_bytes(d));
            let (projected, attr) = (upload(client, projected), upload(client, attr));
            download(client, forward_device(client, shape, &u32s(triangles), triangles.len() / 3, n, &projected, &u32s(tri), &attr, channels))
        }
    }
}

/// Adjoint on whichever backend: (d attributes, d projected).
pub fn backward(
    backend: &Backend,
    shape: RasterShape,
    projected: &[f32],
    triangles: &[u32],
    n: usize,
    tri: &[u32],
    attr: &[f32],
    channels: usize,
    grad_out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    match backend {
        Backend::Cpu => backward_cpu(shape, projected, triangles, n, tri, attr, channels, grad_out),
        Backend::Gpu { client, .. } => {
            check(shape, projected, n, tri, attr, channels);
            assert_eq!(grad_out.len(), tri.len() * channels, "interpolate backward: grad length");
            let mesh = DeviceMesh::upload(client, n, triangles);
            let (pixel_offsets, mut pixel_list) = pixels_per_triangle(shape, mesh.n_triangles, tri);
            if pixel_list.is_empty() {
                pixel_list.push(0);
            }
            let u32s = |d: &[u32]| client.create_from_slice(u32::as_bytes(d));
            let listed = Pixels::Listed { offsets: (u32s(&pixel_offsets), pixel_offsets.len()), list: (u32s(&pixel_list), pixel_list.len()) };
            let (projected, tri, attr, grad_out) = (upload(client, projected), u32s(tri), upload(client, attr), upload(client, grad_out));
            let (g_attr, g_proj) = launch_backward(client, shape, &mesh, &projected, &tri, &attr, channels, &grad_out, listed);
            (download(client, g_attr), download(client, g_proj))
        }
    }
}

/// What the device functions need of the mesh, uploaded once: its triangles, and which
/// triangles each vertex belongs to (the adjoint's gather).
#[derive(Debug)]
pub struct DeviceMesh {
    pub n_vertices: usize,
    pub n_triangles: usize,
    pub triangles: Handle,
    adjacency_offsets: Handle,
    adjacency: Handle,
    adjacency_len: usize,
}

impl DeviceMesh {
    pub fn upload(client: &cubecl::client::Client, n_vertices: usize, triangles: &[u32]) -> Self {
        let adjacency = Adjacency::new(n_vertices, triangles);
        let u32s = |d: &[u32]| client.create_from_slice(u32::as_bytes(d));
        Self {
            n_vertices,
            n_triangles: triangles.len() / 3,
            triangles: u32s(triangles),
            adjacency_offsets: u32s(&adjacency.offsets),
            adjacency_len: adjacency.triangles_of.len().max(1),
            adjacency: u32s(if adjacency.triangles_of.is_empty() { &[0] } else { &adjacency.triangles_of }),
        }
    }
}

/// Device forward on handles already on the device (`n` vertices and `n_triangles` triangles
/// an item): B × P × C.
pub fn forward_device(client: &cubecl::client::Client, shape: RasterShape, triangles: &Handle, n_triangles: usize, n: usize, projected: &Handle, tri: &Handle, attr: &Handle, channels: usize) -> Handle {
    let pixels = shape.batch * shape.pixels();
    let out = client.empty(pixels * channels * 4);
    let (count, dim) = grid_1d(pixels);
    #[allow(unsafe_code)]
    // SAFETY: triangle ids come from the rasterizer over these triangles; indices are bounded
    // by the shape.
    unsafe {
        interpolate_forward_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(projected.clone(), shape.batch * n * 4),
            BufferArg::from_raw_parts(triangles.clone(), 3 * n_triangles),
            BufferArg::from_raw_parts(tri.clone(), pixels),
            BufferArg::from_raw_parts(attr.clone(), shape.batch * n * channels),
            BufferArg::from_raw_parts(out.clone(), pixels * channels),
            shape.width,
            shape.pixels(),
            n,
            channels,
        );
    }
    out
}

/// Device adjoint on handles already on the device: (d attributes, d projected). Each vertex
/// finds its triangles' pixels by scanning their bounding boxes for their ids, so nothing is
/// listed on the host.
pub fn backward_device(client: &cubecl::client::Client, shape: RasterShape, mesh: &DeviceMesh, projected: &Handle, tri: &Handle, attr: &Handle, channels: usize, grad_out: &Handle) -> (Handle, Handle) {
    launch_backward(client, shape, mesh, projected, tri, attr, channels, grad_out, Pixels::Boxed)
}

/// Where the adjoint finds each triangle's pixels: the host's lists (CSR over item · T +
/// triangle, each handle with its length), or the triangle's box scanned for its id.
enum Pixels {
    Listed { offsets: (Handle, usize), list: (Handle, usize) },
    Boxed,
}

fn launch_backward(client: &cubecl::client::Client, shape: RasterShape, mesh: &DeviceMesh, projected: &Handle, tri: &Handle, attr: &Handle, channels: usize, grad_out: &Handle, pixels: Pixels) -> (Handle, Handle) {
    let (n_pixels, n) = (shape.batch * shape.pixels(), mesh.n_vertices);
    let (g_attr, g_proj) = (client.empty(shape.batch * n * channels * 4), client.empty(shape.batch * n * 16));
    let (boxed, (offsets, offsets_len), (list, list_len)) = match pixels {
        Pixels::Listed { offsets, list } => (0, offsets, list),
        Pixels::Boxed => {
            let unused = client.create_from_slice(u32::as_bytes(&[0u32]));
            (1, (unused.clone(), 1), (unused, 1))
        }
    };
    let (count, dim) = grid_1d(shape.batch * n);
    #[allow(unsafe_code)]
    // SAFETY: the adjacency and the pixel lists are built from the same triangles and ids; box
    // pixels are clamped to the image.
    unsafe {
        interpolate_backward_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(projected.clone(), shape.batch * n * 4),
            BufferArg::from_raw_parts(mesh.triangles.clone(), 3 * mesh.n_triangles),
            BufferArg::from_raw_parts(mesh.adjacency_offsets.clone(), n + 1),
            BufferArg::from_raw_parts(mesh.adjacency.clone(), mesh.adjacency_len),
            BufferArg::from_raw_parts(offsets, offsets_len),
            BufferArg::from_raw_parts(list, list_len),
            BufferArg::from_raw_parts(tri.clone(), n_pixels),
            BufferArg::from_raw_parts(attr.clone(), shape.batch * n * channels),
            BufferArg::from_raw_parts(grad_out.clone(), n_pixels * channels),
            BufferArg::from_raw_parts(g_attr.clone(), shape.batch * n * channels),
            BufferArg::from_raw_parts(g_proj.clone(), shape.batch * n * 4),
            shape.width,
            shape.pixels(),
            n,
            mesh.n_triangles,
            channels,
            boxed,
        );
    }
    (g_attr, g_proj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{self, pinhole_params, CameraModel};
    use crate::rasterize;
    use crate::testing::{assert_close, random, rotation, test_mesh, wgpu_backend};

    const W: usize = 64;
    const H: usize = 56;

    /// A pinhole view of the test mesh, rasterized: (shape, projected, triangles, n, tri, camera-space positions).
    fn scene() -> (RasterShape, Vec<f32>, Vec<u32>, usize, Vec<u32>, Vec<f32>) {
        let (mesh, triangles) = test_mesh(16, 6, 5);
        let n = mesh.len() / 3;
        let r = rotation(0.6, 0.25);
        let flipped: Vec<f32> = (0..9).map(|i| if i / 3 == 0 { r[i] } else { -r[i] }).collect();
        let cameras = pinhole_params([110.0, 110.0, 32.0, 28.0], flipped.clone().try_into().unwrap(), [0.0, 0.0, 300.0]);
        let projected = project::forward_cpu(CameraModel::Pinhole, &mesh, &cameras, n);
        let shape = RasterShape { batch: 1, width: W, height: H };
        let raster = rasterize::forward_cpu(shape, &projected, &triangles, n);
        let camera_space: Vec<f32> = mesh
            .chunks(3)
            .flat_map(|x| [0, 1, 2].map(|row| (0..3).map(|k| flipped[3 * row + k] * x[k]).sum::<f32>() + if row == 2 { 300.0 } else { 0.0 }))
            .collect();
        (shape, projected, triangles, n, raster.tri, camera_space)
    }

    #[test]
    fn interpolated_camera_space_points_project_back_to_their_pixel() {
        let (shape, projected, triangles, n, tri, xc) = scene();
        let points = forward_cpu(shape, &projected, &triangles, n, &tri, &xc, 3);
        let mut covered = 0;
        for (p, &t) in tri.iter().enumerate() {
            if t == 0 {
                continue;
            }
            covered += 1;
            let x = &points[3 * p..3 * p + 3];
            // Perspective-correct: the interpolated 3D point lies on the pixel's ray.
            let (u, v) = (110.0 * x[0] / x[2] + 32.0, 110.0 * x[1] / x[2] + 28.0);
            let (cu, cv) = ((p % W) as f32 + 0.5, (p / W) as f32 + 0.5);
            assert!((u - cu).abs() < 1e-3 && (v - cv).abs() < 1e-3, "pixel {p}: the point projects to ({u}, {v})");
        }
        assert!(covered > W * H / 3);
    }

    #[test]
    fn adjoint_matches_central_differences_for_attributes_and_vertices() {
        let (shape, projected, triangles, n, tri, _) = scene();
        let channels = 3;
        let attr = random(n * channels, 11);
        let weights = random(tri.len() * channels, 12);
        let loss = |proj: &[f32], a: &[f32]| -> f64 {
            forward_cpu(shape, proj, &triangles, n, &tri, a, channels).iter().zip(&weights).map(|(x, w)| *x as f64 * *w as f64).sum()
        };
        let (g_attr, g_proj) = backward_cpu(shape, &projected, &triangles, n, &tri, &attr, channels, &weights);
        let floor = |g: &[f32]| 1e-2 * g.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
        let (attr_floor, proj_floor) = (floor(&g_attr), floor(&g_proj));
        let mut checked = 0;
        for v in (0..n).step_by(5) {
            // x, y in pixels; inv_w relative to its size.
            for (k, h) in [(0usize, 2e-3f32), (1, 2e-3), (3, 1e-2 * projected[4 * v + 3])] {
                let j = 4 * v + k;
                let (mut plus, mut minus) = (projected.clone(), projected.clone());
                plus[j] += h;
                minus[j] -= h;
                let numeric = (loss(&plus, &attr) - loss(&minus, &attr)) / (plus[j] as f64 - minus[j] as f64);
                let analytic = g_proj[j] as f64;
                let rel = (analytic - numeric).abs() / numeric.abs().max(analytic.abs()).max(proj_floor);
                assert!(rel < 1e-2, "vertex {v} channel {k}: analytic {analytic} vs numeric {numeric}");
                checked += 1;
            }
            for c in 0..channels {
                let j = v * channels + c;
                let (mut plus, mut minus) = (attr.clone(), attr.clone());
                plus[j] += 1e-2;
                minus[j] -= 1e-2;
                let numeric = (loss(&projected, &plus) - loss(&projected, &minus)) / (plus[j] as f64 - minus[j] as f64);
                let analytic = g_attr[j] as f64;
                let rel = (analytic - numeric).abs() / numeric.abs().max(analytic.abs()).max(attr_floor);
                assert!(rel < 1e-2, "attribute {j}: analytic {analytic} vs numeric {numeric}");
            }
        }
        assert!(checked > 100 && g_proj.iter().any(|g| g.abs() > 0.0));
    }

    #[test]
    fn a_batch_is_its_items_side_by_side() {
        let (shape, projected, triangles, n, tri, _) = scene();
        let attr = random(n * 2, 15);
        let g = random(tri.len() * 2, 16);
        let (one_a, one_p) = backward_cpu(shape, &projected, &triangles, n, &tri, &attr, 2, &g);
        fn twice<T: Copy>(x: &[T]) -> Vec<T> {
            x.iter().chain(x.iter()).copied().collect()
        }
        let two = RasterShape { batch: 2, ..shape };
        let (a, p) = backward_cpu(two, &twice(&projected), &triangles, n, &twice(&tri), &twice(&attr), 2, &twice(&g));
        assert_eq!((a, p), (twice(&one_a), twice(&one_p)));
        let out = forward_cpu(two, &twice(&projected), &triangles, n, &twice(&tri), &twice(&attr), 2);
        assert_eq!(out, twice(&forward_cpu(shape, &projected, &triangles, n, &tri, &attr, 2)));
    }

    #[test]
    fn wgpu_kernels_match_their_native_twins() {
        let (shape, projected, triangles, n, tri, _) = scene();
        let backend = wgpu_backend();
        let attr = random(n * 4, 13);
        let native = forward_cpu(shape, &projected, &triangles, n, &tri, &attr, 4);
        assert_close(&forward(&backend, shape, &projected, &triangles, n, &tri, &attr, 4), &native, 1e-5);
        let g = random(tri.len() * 4, 14);
        let (ga, gp) = backward(&backend, shape, &projected, &triangles, n, &tri, &attr, 4, &g);
        let (ea, ep) = backward_cpu(shape, &projected, &triangles, n, &tri, &attr, 4, &g);
        assert_close(&ga, &ea, 1e-5);
        // Vertex gradients sum ~10 pixel terms of opposite signs: compare to their scale.
        let scale = ep.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (i, (a, b)) in gp.iter().zip(&ep).enumerate() {
            assert!((a - b).abs() <= 1e-5 * scale.max(1.0), "projected gradient {i}: {a} vs {b}");
        }
    }
}
