//! vertex normals: each vertex's normal is the normalised sum of the (area-weighted, unnormalised)
//! normals of the triangles around it, n_t = (b − a) × (c − a) for a counter-clockwise triangle.
//! Both twins gather over a vertex → triangles adjacency (CSR), so the kernel needs no atomics.
//!
//! Forward only for now: the adjoint to the positions joins with the shading op that consumes it.

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;

/// For each vertex, the triangles that use it: `triangles_of[offsets[v]..offsets[v + 1]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjacency {
    pub offsets: Vec<u32>,
    pub triangles_of: Vec<u32>,
}

impl Adjacency {
    pub fn new(n_vertices: usize, triangles: &[u32]) -> Self {
        let mut counts = vec![0u32; n_vertices + 1];
        for &v in triangles {
            counts[v as usize + 1] += 1;
        }
        for v in 0..n_vertices {
            counts[v + 1] += counts[v];
        }
        let offsets = counts.clone();
        let mut cursor = counts;
        let mut triangles_of = vec![0u32; triangles.len()];
        for (t, tri) in triangles.chunks(3).enumerate() {
            for &v in tri {
                triangles_of[cursor[v as usize] as usize] = t as u32;
                cursor[v as usize] += 1;
            }
        }
        Self { offsets, triangles_of }
    }
}

fn face_normal(p: &[f32], tri: &[u32]) -> [f32; 3] {
    let at = |v: u32| [p[3 * v as usize], p[3 * v as usize + 1], p[3 * v as usize + 2]];
    let (a, b, c) = (at(tri[0]), at(tri[1]), at(tri[2]));
    let (e1, e2) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
    [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]]
}

/// Native twin: one mesh at a time (`positions` is 3N for each item of the batch).
pub fn forward_cpu(positions: &[f32], triangles: &[u32], adjacency: &Adjacency, n_vertices: usize) -> Vec<f32> {
    let len = 3 * n_vertices;
    let mut out = vec![0.0; positions.len()];
    for (p, o) in positions.chunks(len).zip(out.chunks_mut(len)) {
        let faces: Vec<[f32; 3]> = triangles.chunks(3).map(|t| face_normal(p, t)).collect();
        for v in 0..n_vertices {
            let mut n = [0.0f32; 3];
            for &t in &adjacency.triangles_of[adjacency.offsets[v] as usize..adjacency.offsets[v + 1] as usize] {
                let f = faces[t as usize];
                n = [n[0] + f[0], n[1] + f[1], n[2] + f[2]];
            }
            let norm = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt().max(1e-20);
            o[3 * v..3 * v + 3].copy_from_slice(&[n[0] / norm, n[1] / norm, n[2] / norm]);
        }
    }
    out
}

/// One thread per (item, vertex): sums its triangles' normals.
#[cube(launch_unchecked)]
fn normals_kernel(
    positions: &[f32],
    triangles: &[u32],
    offsets: &[u32],
    triangles_of: &[u32],
    out: &mut [f32],
    n_vertices: usize,
) {
    let pos = ABSOLUTE_POS;
    let batch = positions.len() / (3 * n_vertices);
    if pos < batch * n_vertices {
        let item = pos / n_vertices;
        let v = pos % n_vertices;
        let base = item * 3 * n_vertices;
        let mut nx = 0.0f32;
        let mut ny = 0.0f32;
        let mut nz = 0.0f32;
        for j in offsets[v] as usize..offsets[v + 1] as usize {
            let t = triangles_of[j] as usize;
            let a = base + 3 * triangles[3 * t] as usize;
            let b = base + 3 * triangles[3 * t + 1] as usize;
            let c = base + 3 * triangles[3 * t + 2] as usize;
            let e1x = positions[b] - positions[a];
            let e1y = positions[b + 1] - positions[a + 1];
            let e1z = positions[b + 2] - positions[a + 2];
            let e2x = positions[c] - positions[a];
            let e2y = positions[c + 1] - positions[a + 1];
            let e2z = positions[c + 2] - positions[a + 2];
            nx += e1y * e2z - e1z * e2y;
            ny += e1z * e2x - e1x * e2z;
            nz += e1x * e2y - e1y * e2x;
        }
        let norm = f32::max(f32::sqrt(nx * nx + ny * ny + nz * nz), 1e-20f32);
        out[base + 3 * v] = nx / norm;
        out[base + 3 * v + 1] = ny / norm;
        out[base + 3 * v + 2] = nz / norm;
    }
}

/// Normals of a batch of meshes on whichever backend.
pub fn forward(backend: &Backend, positions: &[f32], triangles: &[u32], adjacency: &Adjacency, n_vertices: usize) -> Vec<f32> {
    match backend {
        Backend::Cpu => forward_cpu(positions, triangles, adjacency, n_vertices),
        Backend::Gpu { client, .. } => {
            let u32s = |d: &[u32]| client.create_from_slice(u32::as_bytes(d));
            let (p, t) = (upload(client, positions), u32s(triangles));
            let (o, a) = (u32s(&adjacency.offsets), u32s(&adjacency.triangles_of));
            let out = client.empty(size_of_val(positions));
            let (count, dim) = grid_1d(positions.len() / 3);
            #[allow(unsafe_code)]
            // SAFETY: indices come from a checked model (triangles < N) and the adjacency built
            // from it; the thread index is bounded by the batch size.
            unsafe {
                normals_kernel::launch_unchecked(
                    client,
                    count,
                    dim,
                    BufferArg::from_raw_parts(p, positions.len()),
                    BufferArg::from_raw_parts(t, triangles.len()),
                    BufferArg::from_raw_parts(o, adjacency.offsets.len()),
                    BufferArg::from_raw_parts(a, adjacency.triangles_of.len()),
                    BufferArg::from_raw_parts(out.clone(), positions.len()),
                    n_vertices,
                );
            }
            download(client, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random, wgpu_backend};

    /// A bumpy grid: z = f(x, y) with counter-clockwise triangles, and its analytic normals.
    fn height_field(n: usize) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let f = |x: f32, y: f32| 0.3 * (1.3 * x).sin() * (0.7 * y).cos();
        let (fx, fy) = (|x: f32, y: f32| 0.39 * (1.3 * x).cos() * (0.7 * y).cos(), |x: f32, y: f32| -0.21 * (1.3 * x).sin() * (0.7 * y).sin());
        let h = 4.0 / n as f32;
        let (mut p, mut analytic) = (Vec::new(), Vec::new());
        for j in 0..=n {
            for i in 0..=n {
                let (x, y) = (i as f32 * h - 2.0, j as f32 * h - 2.0);
                p.extend([x, y, f(x, y)]);
                let g = [-fx(x, y), -fy(x, y), 1.0];
                let norm = (g[0] * g[0] + g[1] * g[1] + 1.0).sqrt();
                analytic.extend(g.map(|c| c / norm));
            }
        }
        let mut t = Vec::new();
        let idx = |i: usize, j: usize| (j * (n + 1) + i) as u32;
        for j in 0..n {
            for i in 0..n {
                t.extend([idx(i, j), idx(i + 1, j), idx(i + 1, j + 1), idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)]);
            }
        }
        (p, t, analytic)
    }

    #[test]
    fn native_normals_approach_the_surface_normal() {
        let (p, t, analytic) = height_field(80);
        let nv = p.len() / 3;
        let normals = forward_cpu(&p, &t, &Adjacency::new(nv, &t), nv);
        // Interior vertices of a fine grid: within 0.5° of the analytic normal.
        let row = 81;
        for v in 0..nv {
            let (i, j) = (v % row, v / row);
            if i == 0 || j == 0 || i == row - 1 || j == row - 1 {
                continue;
            }
            let dot: f32 = (0..3).map(|k| normals[3 * v + k] * analytic[3 * v + k]).sum();
            assert!(dot > 0.5f32.to_radians().cos(), "vertex {v}: {}° off", dot.min(1.0).acos().to_degrees());
        }
    }

    #[test]
    fn wgpu_kernel_matches_its_native_twin_on_a_batch() {
        let (p, t, _) = height_field(30);
        let nv = p.len() / 3;
        let jitter = random(p.len(), 9);
        let batch: Vec<f32> = p.iter().chain(p.iter()).zip(jitter.iter().chain(jitter.iter().rev())).map(|(a, j)| a + 0.05 * j).collect();
        let adjacency = Adjacency::new(nv, &t);
        let native = forward_cpu(&batch, &t, &adjacency, nv);
        assert_close(&forward(&wgpu_backend(), &batch, &t, &adjacency, nv), &native, 1e-5);
    }
}
