//! shade: Lambertian spherical-harmonics lighting per vertex, 3 bands: colour_c = albedo_c ·
//! Σ_k l_{c,k} H_k(n), with 27 coefficients (9 per RGB channel, MGCNet) or 9 shared by all
//! channels (mono, CEST).
//!
//! H_k is the irradiance basis: the real SH Y_k convolved with the clamped cosine (Â₀ = π,
//! Â₁ = 2π/3, Â₂ = π/4, Ramamoorthi & Hanrahan 2001) and divided by π·Y₀₀ so that l = (1, 0, …)
//! is white ambient light (colour = albedo). In the order (0; y, z, x; xy, yz, 3z²−1, xz, x²−y²):
//! H = (1; k₁y, k₁z, k₁x; k₂xy, k₂yz, k₃(3z²−1), k₂xz, k₄(x²−y²)) with k₁ = 2/√3, k₂ = √15/4,
//! k₃ = √5/8, k₄ = √15/8.
//!
//! Adjoint: d albedo_c = g_c Σ_k l_{c,k} H_k; d l_{c,k} = Σ_vertices g_c albedo_c H_k (summed over
//! channels when mono); d n = Σ_c g_c albedo_c Σ_k l_{c,k} ∇H_k(n). Normals are taken as given
//! (unit); the gradient through their normalisation belongs to the normals' adjoint.

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;

pub const K1: f32 = 1.154_700_5; // 2/√3
pub const K2: f32 = 0.968_245_8; // √15/4
pub const K3: f32 = 0.279_508_5; // √5/8
pub const K4: f32 = 0.484_122_9; // √15/8

/// RGB (27 coefficients, channel-major) or mono (9, shared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lighting {
    Rgb,
    Mono,
}

impl Lighting {
    pub fn coefficients(self) -> usize {
        match self {
            Lighting::Rgb => 27,
            Lighting::Mono => 9,
        }
    }
}

/// The 9 basis values at a unit normal.
pub fn basis(n: [f32; 3]) -> [f32; 9] {
    let [x, y, z] = n;
    [1.0, K1 * y, K1 * z, K1 * x, K2 * x * y, K2 * y * z, K3 * (3.0 * z * z - 1.0), K2 * x * z, K4 * (x * x - y * y)]
}

/// ∇H_k(n) for the 9 basis functions.
pub fn basis_gradient(n: [f32; 3]) -> [[f32; 3]; 9] {
    let [x, y, z] = n;
    [
        [0.0, 0.0, 0.0],
        [0.0, K1, 0.0],
        [0.0, 0.0, K1],
        [K1, 0.0, 0.0],
        [K2 * y, K2 * x, 0.0],
        [0.0, K2 * z, K2 * y],
        [0.0, 0.0, 6.0 * K3 * z],
        [K2 * z, 0.0, K2 * x],
        [2.0 * K4 * x, -2.0 * K4 * y, 0.0],
    ]
}

/// Sizes: `batch` items of `vertices` vertices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadeShape {
    pub batch: usize,
    pub vertices: usize,
    pub lighting: Lighting,
}

impl ShadeShape {
    fn check(&self, normals: &[f32], albedo: &[f32], sh: &[f32]) {
        let n = self.batch * self.vertices * 3;
        assert_eq!(normals.len(), n, "shade: normals length");
        assert_eq!(albedo.len(), n, "shade: albedo length");
        assert_eq!(sh.len(), self.batch * self.lighting.coefficients(), "shade: SH length");
    }

    /// The coefficients lighting channel c of item b.
    fn channel<'a>(&self, sh: &'a [f32], b: usize, c: usize) -> &'a [f32] {
        let at = b * self.lighting.coefficients() + if self.lighting == Lighting::Rgb { 9 * c } else { 0 };
        &sh[at..at + 9]
    }
}

fn vec3(a: &[f32], i: usize) -> [f32; 3] {
    [a[3 * i], a[3 * i + 1], a[3 * i + 2]]
}

/// Native forward: B × N × 3 colours.
pub fn forward_cpu(s: ShadeShape, normals: &[f32], albedo: &[f32], sh: &[f32]) -> Vec<f32> {
    s.check(normals, albedo, sh);
    let mut out = vec![0.0; albedo.len()];
    for i in 0..s.batch * s.vertices {
        let h = basis(vec3(normals, i));
        for c in 0..3 {
            let l = s.channel(sh, i / s.vertices, c);
            out[3 * i + c] = albedo[3 * i + c] * (0..9).map(|k| l[k] * h[k]).sum::<f32>();
        }
    }
    out
}

/// Native adjoint: (d normals, d albedo, d sh).
pub fn backward_cpu(s: ShadeShape, normals: &[f32], albedo: &[f32], sh: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(normals, albedo, sh);
    let (mut gn, mut ga, mut gl) = (vec![0.0; normals.len()], vec![0.0; albedo.len()], vec![0.0; sh.len()]);
    for i in 0..s.batch * s.vertices {
        let b = i / s.vertices;
        let n = vec3(normals, i);
        let (h, dh) = (basis(n), basis_gradient(n));
        for c in 0..3 {
            let l = s.channel(sh, b, c);
            let g = grad_out[3 * i + c];
            ga[3 * i + c] = g * (0..9).map(|k| l[k] * h[k]).sum::<f32>();
            let ga_c = g * albedo[3 * i + c];
            let at = b * s.lighting.coefficients() + if s.lighting == Lighting::Rgb { 9 * c } else { 0 };
            for k in 0..9 {
                gl[at + k] += ga_c * h[k];
                for d in 0..3 {
                    gn[3 * i + d] += ga_c * l[k] * dh[k][d];
                }
            }
        }
    }
    (gn, ga, gl)
}

/// H_k(n) for k given at run time (the literals are K1 … K4).
#[cube]
fn basis_at(k: usize, x: f32, y: f32, z: f32) -> f32 {
    let mut h = 1.0f32;
    if k == 1 {
        h = 1.154_700_5f32 * y;
    } else if k == 2 {
        h = 1.154_700_5f32 * z;
    } else if k == 3 {
        h = 1.154_700_5f32 * x;
    } else if k == 4 {
        h = 0.968_245_8f32 * x * y;
    } else if k == 5 {
        h = 0.968_245_8f32 * y * z;
    } else if k == 6 {
        h = 0.279_508_5f32 * (3.0f32 * z * z - 1.0f32);
    } else if k == 7 {
        h = 0.968_245_8f32 * x * z;
    } else if k == 8 {
        h = 0.484_122_9f32 * (x * x - y * y);
    }
    h
}

/// Forward and the per-vertex adjoint: one thread per (item, vertex).
#[cube(launch_unchecked)]
fn shade_vertex_kernel(
    normals: &[f32],
    albedo: &[f32],
    sh: &[f32],
    grad_out: &[f32],
    out: &mut [f32],
    grad_normals: &mut [f32],
    vertices: usize,
    coefficients: usize,
    backward: u32,
) {
    let i = ABSOLUTE_POS;
    if i < normals.len() / 3 {
        let b = i / vertices;
        let x = normals[3 * i];
        let y = normals[3 * i + 1];
        let z = normals[3 * i + 2];
        let mut gx = 0.0f32;
        let mut gy = 0.0f32;
        let mut gz = 0.0f32;
        for c in 0..3usize {
            let mut at = b * coefficients;
            if coefficients == 27 {
                at += 9 * c;
            }
            let mut shading = 0.0f32;
            for k in 0..9usize {
                shading += sh[at + k] * basis_at(k, x, y, z);
            }
            if backward == 1u32 {
                let g = grad_out[3 * i + c];
                // d albedo goes to `out`.
                out[3 * i + c] = g * shading;
                let ga = g * albedo[3 * i + c];
                gx += ga * (sh[at + 3] * 1.154_700_5f32 + sh[at + 4] * 0.968_245_8f32 * y + sh[at + 7] * 0.968_245_8f32 * z + sh[at + 8] * 2.0f32 * 0.484_122_9f32 * x);
                gy += ga * (sh[at + 1] * 1.154_700_5f32 + sh[at + 4] * 0.968_245_8f32 * x + sh[at + 5] * 0.968_245_8f32 * z - sh[at + 8] * 2.0f32 * 0.484_122_9f32 * y);
                gz += ga * (sh[at + 2] * 1.154_700_5f32 + sh[at + 5] * 0.968_245_8f32 * y + sh[at + 6] * 6.0f32 * 0.279_508_5f32 * z + sh[at + 7] * 0.968_245_8f32 * x);
            } else {
                out[3 * i + c] = albedo[3 * i + c] * shading;
            }
        }
        if backward == 1u32 {
            grad_normals[3 * i] = gx;
            grad_normals[3 * i + 1] = gy;
            grad_normals[3 * i + 2] = gz;
        }
    }
}

/// d sh: one thread per (item, coefficient), summing over the item's vertices.
#[cube(launch_unchecked)]
fn shade_sh_kernel(normals: &[f32], albedo: &[f32], grad_out: &[f32], grad_sh: &mut [f32], vertices: usize, coefficients: usize) {
    let pos = ABSOLUTE_POS;
    if pos < grad_sh.len() {
        let b = pos / coefficients;
        let j = pos % coefficients;
        let k = j % 9;
        let channel = j / 9;
        let mut acc = 0.0f32;
        for v in 0..vertices {
            let i = b * vertices + v;
            let h = basis_at(k, normals[3 * i], normals[3 * i + 1], normals[3 * i + 2]);
            if coefficients == 27 {
                acc += grad_out[3 * i + channel] * albedo[3 * i + channel] * h;
            } else {
                for c in 0..3usize {
                    acc += grad_out[3 * i + c] * albedo[3 * i + c] * h;
                }
            }
        }
        grad_sh[pos] = acc;
    }
}

/// Forward on whichever backend.
pub fn forward(backend: &Backend, s: ShadeShape, normals: &[f32], albedo: &[f32], sh: &[f32]) -> Vec<f32> {
    s.check(normals, albedo, sh);
    let Backend::Gpu { client, .. } = backend else { return forward_cpu(s, normals, albedo, sh) };
    let out = client.empty(albedo.len() * 4);
    let (count, dim) = grid_1d(s.batch * s.vertices);
    #[allow(unsafe_code)]
    // SAFETY: indices follow the checked shape.
    unsafe {
        shade_vertex_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(upload(client, normals), normals.len()),
            BufferArg::from_raw_parts(upload(client, albedo), albedo.len()),
            BufferArg::from_raw_parts(upload(client, sh), sh.len()),
            BufferArg::from_raw_parts(upload(client, &[0.0]), 1),
            BufferArg::from_raw_parts(out.clone(), albedo.len()),
            BufferArg::from_raw_parts(client.empty(4), 1),
            s.vertices,
            s.lighting.coefficients(),
            0,
        );
    }
    download(client, out)
}

/// Adjoint on whichever backend: (d normals, d albedo, d sh).
pub fn backward(backend: &Backend, s: ShadeShape, normals: &[f32], albedo: &[f32], sh: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(normals, albedo, sh);
    let Backend::Gpu { client, .. } = backend else { return backward_cpu(s, normals, albedo, sh, grad_out) };
    let (n, a, l, g) = (upload(client, normals), upload(client, albedo), upload(client, sh), upload(client, grad_out));
    let (ga, gn, gl) = (client.empty(albedo.len() * 4), client.empty(normals.len() * 4), client.empty(sh.len() * 4));
    let (count, dim) = grid_1d(s.batch * s.vertices);
    let (count_l, dim_l) = grid_1d(sh.len());
    #[allow(unsafe_code)]
    // SAFETY: indices follow the checked shape.
    unsafe {
        shade_vertex_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(n.clone(), normals.len()),
            BufferArg::from_raw_parts(a.clone(), albedo.len()),
            BufferArg::from_raw_parts(l, sh.len()),
            BufferArg::from_raw_parts(g.clone(), grad_out.len()),
            BufferArg::from_raw_parts(ga.clone(), albedo.len()),
            BufferArg::from_raw_parts(gn.clone(), normals.len()),
            s.vertices,
            s.lighting.coefficients(),
            1,
        );
        shade_sh_kernel::launch_unchecked(
            client,
            count_l,
            dim_l,
            BufferArg::from_raw_parts(n, normals.len()),
            BufferArg::from_raw_parts(a, albedo.len()),
            BufferArg::from_raw_parts(g, grad_out.len()),
            BufferArg::from_raw_parts(gl.clone(), sh.len()),
            s.vertices,
            s.lighting.coefficients(),
        );
    }
    (download(client, gn), download(client, ga), download(client, gl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random, wgpu_backend};

    /// Unit normals on a Fibonacci sphere.
    fn sphere(n: usize) -> Vec<f32> {
        let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
        (0..n)
            .flat_map(|i| {
                let z = 1.0 - 2.0 * (i as f64 + 0.5) / n as f64;
                let r = (1.0 - z * z).sqrt();
                let phi = golden * i as f64;
                [(r * phi.cos()) as f32, (r * phi.sin()) as f32, z as f32]
            })
            .collect()
    }

    #[test]
    fn basis_constants_are_the_convolved_orthonormal_harmonics() {
        // Undo the convolution and normalisation: Y_k = H_k · π·Y₀₀ / Â_l must be orthonormal
        // over the sphere (quadrature on 40 000 Fibonacci points).
        let (pi, y00) = (std::f64::consts::PI, 0.5 / std::f64::consts::PI.sqrt());
        let a_hat = [pi, 2.0 * pi / 3.0, 2.0 * pi / 3.0, 2.0 * pi / 3.0, pi / 4.0, pi / 4.0, pi / 4.0, pi / 4.0, pi / 4.0];
        let normals = sphere(40_000);
        let mut gram = [[0.0f64; 9]; 9];
        for n in normals.chunks(3) {
            let h = basis([n[0], n[1], n[2]]);
            let y: Vec<f64> = (0..9).map(|k| h[k] as f64 * pi * y00 / a_hat[k]).collect();
            for i in 0..9 {
                for j in 0..9 {
                    gram[i][j] += y[i] * y[j] * 4.0 * pi / 40_000.0;
                }
            }
        }
        for i in 0..9 {
            for j in 0..9 {
                let target = if i == j { 1.0 } else { 0.0 };
                assert!((gram[i][j] - target).abs() < 2e-3, "⟨Y{i}, Y{j}⟩ = {}", gram[i][j]);
            }
        }
    }

    #[test]
    fn ambient_light_gives_the_albedo_and_least_squares_recovers_the_light() {
        let n = 500;
        let normals = sphere(n);
        let albedo: Vec<f32> = random(3 * n, 31).iter().map(|x| 0.5 + 0.4 * x).collect();
        let mut ambient = vec![0.0; 27];
        (0..3).for_each(|c| ambient[9 * c] = 1.0);
        let s = ShadeShape { batch: 1, vertices: n, lighting: Lighting::Rgb };
        assert_close(&forward_cpu(s, &normals, &albedo, &ambient), &albedo, 1e-6);

        // Known light → colours → per-channel least squares over the 9 basis values × albedo.
        let light: Vec<f32> = random(27, 32).iter().enumerate().map(|(j, x)| if j % 9 == 0 { 0.8 + 0.1 * x } else { 0.3 * x }).collect();
        let colours = forward_cpu(s, &normals, &albedo, &light);
        for c in 0..3 {
            let mut ata = [[0.0f64; 9]; 9];
            let mut atb = [0.0f64; 9];
            for v in 0..n {
                let h = basis([normals[3 * v], normals[3 * v + 1], normals[3 * v + 2]]);
                let row: Vec<f64> = h.iter().map(|x| *x as f64 * albedo[3 * v + c] as f64).collect();
                for i in 0..9 {
                    atb[i] += row[i] * colours[3 * v + c] as f64;
                    for j in 0..9 {
                        ata[i][j] += row[i] * row[j];
                    }
                }
            }
            let solved = solve9(ata, atb);
            for k in 0..9 {
                let truth = light[9 * c + k] as f64;
                assert!((solved[k] - truth).abs() < 1e-5 * truth.abs().max(0.1), "channel {c} coefficient {k}: {} vs {truth}", solved[k]);
            }
        }
    }

    /// Gaussian elimination with partial pivoting.
    fn solve9(mut a: [[f64; 9]; 9], mut b: [f64; 9]) -> [f64; 9] {
        for col in 0..9 {
            let pivot = (col..9).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
            a.swap(col, pivot);
            b.swap(col, pivot);
            for row in col + 1..9 {
                let f = a[row][col] / a[col][col];
                for k in col..9 {
                    a[row][k] -= f * a[col][k];
                }
                b[row] -= f * b[col];
            }
        }
        let mut x = [0.0; 9];
        for row in (0..9).rev() {
            x[row] = (b[row] - (row + 1..9).map(|k| a[row][k] * x[k]).sum::<f64>()) / a[row][row];
        }
        x
    }

    fn case(lighting: Lighting) -> (ShadeShape, Vec<f32>, Vec<f32>, Vec<f32>) {
        let s = ShadeShape { batch: 2, vertices: 60, lighting };
        let normals = sphere(120);
        let albedo: Vec<f32> = random(360, 33).iter().map(|x| 0.5 + 0.4 * x).collect();
        let sh = random(2 * lighting.coefficients(), 34);
        (s, normals, albedo, sh)
    }

    #[test]
    fn adjoints_match_central_differences() {
        for lighting in [Lighting::Rgb, Lighting::Mono] {
            let (s, normals, albedo, sh) = case(lighting);
            let w = random(360, 35);
            let (gn, ga, gl) = backward_cpu(s, &normals, &albedo, &sh, &w);
            let loss = |n: &[f32], a: &[f32], l: &[f32]| -> f64 { forward_cpu(s, n, a, l).iter().zip(&w).map(|(x, y)| *x as f64 * *y as f64).sum() };
            let h = 1e-3f32;
            let fd = |which: usize, j: usize| -> f64 {
                let mut inputs = [normals.clone(), albedo.clone(), sh.clone()];
                inputs[which][j] += h;
                let plus = loss(&inputs[0], &inputs[1], &inputs[2]);
                inputs[which][j] -= 2.0 * h;
                let minus = loss(&inputs[0], &inputs[1], &inputs[2]);
                (plus - minus) / (2.0 * h as f64)
            };
            for (which, grads) in [(0, &gn), (1, &ga), (2, &gl)] {
                for j in 0..grads.len() {
                    let numeric = fd(which, j);
                    let rel = (grads[j] as f64 - numeric).abs() / numeric.abs().max(1e-2);
                    assert!(rel < 1e-2, "{lighting:?} input {which} element {j}: analytic {} vs numeric {numeric}", grads[j]);
                }
            }
        }
    }

    #[test]
    fn wgpu_kernels_match_their_native_twins() {
        let backend = wgpu_backend();
        for lighting in [Lighting::Rgb, Lighting::Mono] {
            let (s, normals, albedo, sh) = case(lighting);
            assert_close(&forward(&backend, s, &normals, &albedo, &sh), &forward_cpu(s, &normals, &albedo, &sh), 1e-5);
            let w = random(360, 36);
            let (gn, ga, gl) = backward(&backend, s, &normals, &albedo, &sh, &w);
            let (en, ea, el) = backward_cpu(s, &normals, &albedo, &sh, &w);
            assert_close(&gn, &en, 1e-5);
            assert_close(&ga, &ea, 1e-5);
            assert_close(&gl, &el, 1e-5);
        }
    }
}
