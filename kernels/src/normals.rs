//! vertex normals: each vertex's normal is the normalised sum of the (area-weighted, unnormalised)
//! normals of the triangles around it, n_t = (b − a) × (c − a) for a counter-clockwise triangle.
//! Both twins gather over a vertex → triangles adjacency (CSR), so the kernel needs no atomics.
//!
//! Adjoint, with m_v = Σ_{t∋v} f_t and n_v = m_v/|m_v|: d m_v = (I − n_v n_vᵀ) d n_v / |m_v|;
//! each triangle gathers d f_t = Σ_{v∈t} d m_v, and since f = (b − a) × (c − a),
//! d a = (b − c) × d f, d b = (c − a) × d f, d c = (a − b) × d f. Both twins gather per vertex
//! over its triangles (the device in two passes: d m per vertex, then the positions).

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

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// d m_v = (I − n nᵀ) d n / |m| for every vertex of one mesh.
fn grad_unnormalised(p: &[f32], triangles: &[u32], adjacency: &Adjacency, g: &[f32], n_vertices: usize) -> Vec<[f32; 3]> {
    let faces: Vec<[f32; 3]> = triangles.chunks(3).map(|t| face_normal(p, t)).collect();
    (0..n_vertices)
        .map(|v| {
            let mut m = [0.0f32; 3];
            for &t in &adjacency.triangles_of[adjacency.offsets[v] as usize..adjacency.offsets[v + 1] as usize] {
                let f = faces[t as usize];
                m = [m[0] + f[0], m[1] + f[1], m[2] + f[2]];
            }
            let norm = (m[0] * m[0] + m[1] * m[1] + m[2] * m[2]).sqrt().max(1e-20);
            let nv = [m[0] / norm, m[1] / norm, m[2] / norm];
            let gv = [g[3 * v], g[3 * v + 1], g[3 * v + 2]];
            let along = nv[0] * gv[0] + nv[1] * gv[1] + nv[2] * gv[2];
            [0, 1, 2].map(|k| (gv[k] - along * nv[k]) / norm)
        })
        .collect()
}

/// Native adjoint: d normals (B × 3N) → d positions (B × 3N).
pub fn backward_cpu(positions: &[f32], triangles: &[u32], adjacency: &Adjacency, grad_normals: &[f32], n_vertices: usize) -> Vec<f32> {
    let len = 3 * n_vertices;
    let items = crate::parallel::map(positions.len() / len, |b| {
        let (p, g) = (&positions[b * len..(b + 1) * len], &grad_normals[b * len..(b + 1) * len]);
        let dm = grad_unnormalised(p, triangles, adjacency, g, n_vertices);
        let at = |v: u32| [p[3 * v as usize], p[3 * v as usize + 1], p[3 * v as usize + 2]];
        let mut out = vec![0.0f32; len];
        for v in 0..n_vertices {
            let mut acc = [0.0f32; 3];
            for &t in &adjacency.triangles_of[adjacency.offsets[v] as usize..adjacency.offsets[v + 1] as usize] {
                let tri = &triangles[3 * t as usize..3 * t as usize + 3];
                let df = [0, 1, 2].map(|k| dm[tri[0] as usize][k] + dm[tri[1] as usize][k] + dm[tri[2] as usize][k]);
                // This vertex is corner k; the gradient is (next − previous) × d f.
                let k = tri.iter().position(|&u| u as usize == v).expect("adjacency lists the vertex's triangles");
                let d = cross(sub(at(tri[(k + 1) % 3]), at(tri[(k + 2) % 3])), df);
                acc = [acc[0] + d[0], acc[1] + d[1], acc[2] + d[2]];
            }
            out[3 * v..3 * v + 3].copy_from_slice(&acc);
        }
        out
    });
    items.concat()
}

/// Adjoint pass 1, one thread per (item, vertex): d m_v = (I − n nᵀ) d n / |m|.
#[cube(launch_unchecked)]
fn normals_grad_m_kernel(positions: &[f32], triangles: &[u32], offsets: &[u32], triangles_of: &[u32], grad_normals: &[f32], grad_m: &mut [f32], n_vertices: usize) {
    let pos = ABSOLUTE_POS;
    if pos < grad_m.len() / 3 {
        let base = (pos / n_vertices) * 3 * n_vertices;
        let v = pos % n_vertices;
        let mut mx = 0.0f32;
        let mut my = 0.0f32;
        let mut mz = 0.0f32;
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
            mx += e1y * e2z - e1z * e2y;
            my += e1z * e2x - e1x * e2z;
            mz += e1x * e2y - e1y * e2x;
        }
        let norm = f32::max(f32::sqrt(mx * mx + my * my + mz * mz), 1e-20f32);
        let nx = mx / norm;
        let ny = my / norm;
        let nz = mz / norm;
        let gx = grad_normals[3 * pos];
        let gy = grad_normals[3 * pos + 1];
        let gz = grad_normals[3 * pos + 2];
        let along = nx * gx + ny * gy + nz * gz;
        grad_m[3 * pos] = (gx - along * nx) / norm;
        grad_m[3 * pos + 1] = (gy - along * ny) / norm;
        grad_m[3 * pos + 2] = (gz - along * nz) / norm;
    }
}

/// Adjoint pass 2, one thread per (item, vertex): Σ over its triangles of (next − prev) × d f.
#[cube(launch_unchecked)]
fn normals_grad_positions_kernel(positions: &[f32], triangles: &[u32], offsets: &[u32], triangles_of: &[u32], grad_m: &[f32], out: &mut [f32], n_vertices: usize) {
    let pos = ABSOLUTE_POS;
    if pos < out.len() / 3 {
        let base = (pos / n_vertices) * 3 * n_vertices;
        let v = pos % n_vertices;
        let mut ax = 0.0f32;
        let mut ay = 0.0f32;
        let mut az = 0.0f32;
        for j in offsets[v] as usize..offsets[v + 1] as usize {
            let t = triangles_of[j] as usize;
            let mut k = 0usize;
            if triangles[3 * t + 1] as usize == v {
                k = 1;
            }
            if triangles[3 * t + 2] as usize == v {
                k = 2;
            }
            let u0 = base + 3 * triangles[3 * t] as usize;
            let u1 = base + 3 * triangles[3 * t + 1] as usize;
            let u2 = base + 3 * triangles[3 * t + 2] as usize;
            let dfx = grad_m[u0] + grad_m[u1] + grad_m[u2];
            let dfy = grad_m[u0 + 1] + grad_m[u1 + 1] + grad_m[u2 + 1];
            let dfz = grad_m[u0 + 2] + grad_m[u1 + 2] + grad_m[u2 + 2];
            let next = base + 3 * triangles[3 * t + (k + 1) % 3] as usize;
            let prev = base + 3 * triangles[3 * t + (k + 2) % 3] as usize;
            let wx = positions[next] - positions[prev];
            let wy = positions[next + 1] - positions[prev + 1];
            let wz = positions[next + 2] - positions[prev + 2];
            ax += wy * dfz - wz * dfy;
            ay += wz * dfx - wx * dfz;
            az += wx * dfy - wy * dfx;
        }
        out[3 * pos] = ax;
        out[3 * pos + 1] = ay;
        out[3 * pos + 2] = az;
    }
}

/// Adjoint on whichever backend: d normals → d positions.
pub fn backward(backend: &Backend, positions: &[f32], triangles: &[u32], adjacency: &Adjacency, grad_normals: &[f32], n_vertices: usize) -> Vec<f32> {
    let Backend::Gpu { client, .. } = backend else { return backward_cpu(positions, triangles, adjacency, grad_normals, n_vertices) };
    let u32s = |d: &[u32]| client.create_from_slice(u32::as_bytes(d));
    let (p, t) = (upload(client, positions), u32s(triangles));
    let (o, a) = (u32s(&adjacency.offsets), u32s(&adjacency.triangles_of));
    let (grad_m, out) = (client.empty(size_of_val(positions)), client.empty(size_of_val(positions)));
    let (count, dim) = grid_1d(positions.len() / 3);
    #[allow(unsafe_code)]
    // SAFETY: the lengths are those the handles were created with.
    let buffer = |h: &cubecl::server::Handle, len: usize| unsafe { BufferArg::from_raw_parts(h.clone(), len) };
    #[allow(unsafe_code)]
    // SAFETY: indices come from a checked model and the adjacency built from it.
    unsafe {
        normals_grad_m_kernel::launch_unchecked(
            client,
            count.clone(),
            dim,
            buffer(&p, positions.len()),
            buffer(&t, triangles.len()),
            buffer(&o, adjacency.offsets.len()),
            buffer(&a, adjacency.triangles_of.len()),
            BufferArg::from_raw_parts(upload(client, grad_normals), grad_normals.len()),
            buffer(&grad_m, positions.len()),
            n_vertices,
        );
        normals_grad_positions_kernel::launch_unchecked(
            client,
            count,
            dim,
            buffer(&p, positions.len()),
            buffer(&t, triangles.len()),
            buffer(&o, adjacency.offsets.len()),
            buffer(&a, adjacency.triangles_of.len()),
            buffer(&grad_m, positions.len()),
            buffer(&out, positions.len()),
            n_vertices,
        );
    }
    download(client, out)
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
    fn adjoint_matches_central_differences() {
        let (p, t, _) = height_field(6);
        let nv = p.len() / 3;
        let p: Vec<f32> = p.iter().zip(random(p.len(), 17)).map(|(a, j)| a + 0.1 * j).collect();
        let adjacency = Adjacency::new(nv, &t);
        let w = random(p.len(), 18);
        let analytic = backward_cpu(&p, &t, &adjacency, &w, nv);
        let loss = |q: &[f32]| -> f64 { forward_cpu(q, &t, &adjacency, nv).iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum() };
        for j in 0..p.len() {
            let (mut plus, mut minus) = (p.clone(), p.clone());
            plus[j] += 1e-3;
            minus[j] -= 1e-3;
            let numeric = (loss(&plus) - loss(&minus)) / (plus[j] as f64 - minus[j] as f64);
            let rel = (analytic[j] as f64 - numeric).abs() / numeric.abs().max(analytic[j].abs() as f64).max(1e-2);
            assert!(rel < 1e-2, "coordinate {j}: analytic {} vs numeric {numeric}", analytic[j]);
        }
    }

    #[test]
    fn wgpu_adjoint_matches_its_native_twin_on_a_batch() {
        let (p, t, _) = height_field(12);
        let nv = p.len() / 3;
        let batch: Vec<f32> = p.iter().chain(p.iter()).zip(random(2 * p.len(), 19)).map(|(a, j)| a + 0.05 * j).collect();
        let adjacency = Adjacency::new(nv, &t);
        let g = random(batch.len(), 20);
        assert_close(&backward(&wgpu_backend(), &batch, &t, &adjacency, &g, nv), &backward_cpu(&batch, &t, &adjacency, &g, nv), 1e-4);
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
