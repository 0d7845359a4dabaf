//! MGCNet's occlusion-aware view synthesis (Eq. 2), its geometric half: each target pixel
//! (u, v) with rendered depth D is back-projected, X_t = D · ((u − c_x)/f_x, (v − c_y)/f_y, 1),
//! moved into the source camera, X_s = R X_t + t (the relative pose, target camera → source
//! camera), and projected with the source intrinsics: (u_s, v_s) = (f_x x_s/z_s + c_x,
//! f_y y_s/z_s + c_y). Sampling the source image (and depth) there is the `sample` op; the
//! covisible map says where the result means anything.
//!
//! Adjoint from g = (∂L/∂u_s, ∂L/∂v_s): g_X = g_u (f_x/z, 0, −f_x x/z²) + g_v (0, f_y/z, −f_y y/z²);
//! ∂L/∂D = g_X · R r (r the pixel's ray), ∂L/∂R_ij = g_X,i X_t,j, ∂L/∂t = g_X.
//! Native only for now.

/// Pinhole intrinsics (f_x, f_y, c_x, c_y).
pub type Intrinsics = [f32; 4];

fn ray(k: Intrinsics, u: f32, v: f32) -> [f32; 3] {
    [(u - k[2]) / k[0], (v - k[3]) / k[1], 1.0]
}

fn rotate(r: &[f32; 9], x: [f32; 3]) -> [f32; 3] {
    std::array::from_fn(|i| r[3 * i] * x[0] + r[3 * i + 1] * x[1] + r[3 * i + 2] * x[2])
}

/// The source pixel (2 floats, pixel centres at +½ as everywhere) of every target pixel, row-major;
/// pixels without depth (`depth ≥ f32::MAX / 2`, nothing drawn) map to (−1, −1), outside any image.
pub fn coordinates(depth: &[f32], width: usize, k_target: Intrinsics, k_source: Intrinsics, r: &[f32; 9], t: [f32; 3]) -> Vec<f32> {
    depth
        .iter()
        .enumerate()
        .flat_map(|(i, &d)| {
            if d >= f32::MAX / 2.0 {
                return [-1.0, -1.0];
            }
            let (u, v) = ((i % width) as f32 + 0.5, (i / width) as f32 + 0.5);
            let x_t = ray(k_target, u, v).map(|c| c * d);
            let x_s = rotate(r, x_t);
            let x_s = [x_s[0] + t[0], x_s[1] + t[1], x_s[2] + t[2]];
            if x_s[2] <= crate::project::NEAR {
                return [-1.0, -1.0];
            }
            [k_source[0] * x_s[0] / x_s[2] + k_source[2], k_source[1] * x_s[1] / x_s[2] + k_source[3]]
        })
        .collect()
}

/// The adjoint of `coordinates`: gradients with respect to the target depth (per pixel), the
/// relative rotation (row-major) and the translation, from gradients on the source pixels.
pub fn coordinates_backward(depth: &[f32], width: usize, k_target: Intrinsics, k_source: Intrinsics, r: &[f32; 9], t: [f32; 3], grad: &[f32]) -> (Vec<f32>, [f32; 9], [f32; 3]) {
    let mut g_depth = vec![0.0; depth.len()];
    let (mut g_r, mut g_t) = ([0.0f64; 9], [0.0f64; 3]);
    for (i, &d) in depth.iter().enumerate() {
        if d >= f32::MAX / 2.0 {
            continue;
        }
        let (u, v) = ((i % width) as f32 + 0.5, (i / width) as f32 + 0.5);
        let dir = ray(k_target, u, v);
        let x_t = dir.map(|c| c * d);
        let moved = rotate(r, x_t);
        let x_s = [moved[0] + t[0], moved[1] + t[1], moved[2] + t[2]];
        if x_s[2] <= crate::project::NEAR {
            continue;
        }
        let (gu, gv) = (grad[2 * i], grad[2 * i + 1]);
        let z = x_s[2];
        let g_x = [gu * k_source[0] / z, gv * k_source[1] / z, -(gu * k_source[0] * x_s[0] + gv * k_source[1] * x_s[1]) / (z * z)];
        let along = rotate(r, dir);
        g_depth[i] = g_x[0] * along[0] + g_x[1] * along[1] + g_x[2] * along[2];
        for a in 0..3 {
            for b in 0..3 {
                g_r[3 * a + b] += (g_x[a] * x_t[b]) as f64;
            }
            g_t[a] += g_x[a] as f64;
        }
    }
    (g_depth, g_r.map(|v| v as f32), g_t.map(|v| v as f32))
}

/// A source view synthesised into the target view (Eq. 2, both halves): per target pixel, the
/// source pixel it lands on, the source colour there (Ĩ), and D̃, the source's depth map read
/// there, back-projected in the source camera and moved into the target camera (its z), so D̃
/// and the target's depth D are depths along the same rays. (The paper leaves open how D̃ is
/// formed; this choice makes D̃ = D wherever the source sees the same surface.) `valid` is 1
/// where all of it is defined: the target pixel drawn, in front of the source camera, and all
/// four bilinear taps inside the source image and on its drawn surface.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Synthesis {
    pub coords: Vec<f32>,
    pub rgb: Vec<f32>,
    pub depth: Vec<f32>,
    pub valid: Vec<f32>,
}

/// The two views of a pair, both `width` × `height`: the target's rendered depth, the source's
/// image (rgb) and rendered depth, and both intrinsics.
#[derive(Clone, Copy, Debug)]
pub struct Pair<'a> {
    pub width: usize,
    pub height: usize,
    pub target_depth: &'a [f32],
    pub source_rgb: &'a [f32],
    pub source_depth: &'a [f32],
    pub k_target: Intrinsics,
    pub k_source: Intrinsics,
}

/// The bilinear taps at (u, v): (pixel index, weight, ∂weight/∂u, ∂weight/∂v), or None when a
/// tap falls outside the image.
fn bilinear(u: f32, v: f32, width: usize, height: usize) -> Option<[(usize, f32, f32, f32); 4]> {
    let (x, y) = (u - 0.5, v - 0.5);
    let (x0, y0) = (x.floor(), y.floor());
    if x0 < 0.0 || y0 < 0.0 || x0 + 1.0 >= width as f32 || y0 + 1.0 >= height as f32 {
        return None;
    }
    let (fx, fy) = (x - x0, y - y0);
    let i = y0 as usize * width + x0 as usize;
    Some([
        (i, (1.0 - fx) * (1.0 - fy), -(1.0 - fy), -(1.0 - fx)),
        (i + 1, fx * (1.0 - fy), 1.0 - fy, -fx),
        (i + width, (1.0 - fx) * fy, -fy, 1.0 - fx),
        (i + width + 1, fx * fy, fy, fx),
    ])
}

/// What one valid pixel reads: its taps and the sampled source depth.
struct Read {
    taps: [(usize, f32, f32, f32); 4],
    u: f32,
    v: f32,
    z: f32,
}

fn read(pair: &Pair, coords: &[f32], i: usize) -> Option<Read> {
    let (u, v) = (coords[2 * i], coords[2 * i + 1]);
    let taps = bilinear(u, v, pair.width, pair.height)?;
    if taps.iter().any(|t| pair.source_depth[t.0] >= f32::MAX / 2.0) {
        return None;
    }
    Some(Read { taps, u, v, z: taps.iter().map(|t| t.1 * pair.source_depth[t.0]).sum() })
}

/// Ĩ, D̃ and where they are defined, for the relative pose (R, t) target camera → source camera.
pub fn synthesise(pair: &Pair, r: &[f32; 9], t: [f32; 3]) -> Synthesis {
    let pixels = pair.width * pair.height;
    let coords = coordinates(pair.target_depth, pair.width, pair.k_target, pair.k_source, r, t);
    let mut out = Synthesis { rgb: vec![0.0; 3 * pixels], depth: vec![0.0; pixels], valid: vec![0.0; pixels], coords: Vec::new() };
    for i in 0..pixels {
        let Some(at) = read(pair, &coords, i) else { continue };
        for c in 0..3 {
            out.rgb[3 * i + c] = at.taps.iter().map(|t| t.1 * pair.source_rgb[3 * t.0 + c]).sum();
        }
        let x = ray(pair.k_source, at.u, at.v).map(|d| d * at.z);
        out.depth[i] = (0..3).map(|j| r[3 * j + 2] * (x[j] - t[j])).sum();
        out.valid[i] = 1.0;
    }
    out.coords = coords;
    out
}

/// The adjoint of `synthesise` at its `coords`, over the pixels where `valid` (validity held
/// fixed), from gradients on Ĩ (rgb per pixel) and D̃ (either empty: none): gradients on the
/// target's depth map, the source's depth map, R and t.
pub fn synthesise_backward(pair: &Pair, r: &[f32; 9], t: [f32; 3], coords: &[f32], valid: &[f32], grad_rgb: &[f32], grad_depth: &[f32]) -> (Vec<f32>, Vec<f32>, [f32; 9], [f32; 3]) {
    let pixels = pair.width * pair.height;
    let (mut g_coords, mut g_source) = (vec![0.0; 2 * pixels], vec![0.0; pixels]);
    let (mut g_r, mut g_t) = ([0.0f32; 9], [0.0f32; 3]);
    for i in (0..pixels).filter(|&i| valid[i] > 0.0) {
        let Some(at) = read(pair, coords, i) else { continue };
        let dir = ray(pair.k_source, at.u, at.v);
        let gd = grad_depth.get(i).copied().unwrap_or(0.0);
        // D̃ = Σ_j R_j2 (z dir_j − t_j).
        let g_x: [f32; 3] = std::array::from_fn(|j| gd * r[3 * j + 2]);
        for j in 0..3 {
            g_r[3 * j + 2] += gd * (at.z * dir[j] - t[j]);
            g_t[j] -= g_x[j];
        }
        let g_z = g_x[0] * dir[0] + g_x[1] * dir[1] + g_x[2];
        let (mut gu, mut gv) = (g_x[0] * at.z / pair.k_source[0], g_x[1] * at.z / pair.k_source[1]);
        for &(k, w, wu, wv) in &at.taps {
            g_source[k] += g_z * w;
            let seen = g_z * pair.source_depth[k] + (0..3).map(|c| grad_rgb.get(3 * i + c).copied().unwrap_or(0.0) * pair.source_rgb[3 * k + c]).sum::<f32>();
            gu += wu * seen;
            gv += wv * seen;
        }
        (g_coords[2 * i], g_coords[2 * i + 1]) = (gu, gv);
    }
    let (g_target, d_r, d_t) = coordinates_backward(pair.target_depth, pair.width, pair.k_target, pair.k_source, r, t, &g_coords);
    (g_target, g_source, std::array::from_fn(|k| g_r[k] + d_r[k]), std::array::from_fn(|k| g_t[k] + d_t[k]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::worst_against_central_differences;

    #[test]
    fn identity_pose_maps_each_pixel_to_itself_and_the_adjoint_matches_central_differences() {
        let (w, h) = (6usize, 5usize);
        let k = [50.0, 55.0, 3.0, 2.5];
        let depth: Vec<f32> = (0..w * h).map(|i| 400.0 + 7.0 * (i as f32 * 0.9).sin()).collect();
        let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let same = coordinates(&depth, w, k, k, &identity, [0.0; 3]);
        for i in 0..w * h {
            assert!((same[2 * i] - ((i % w) as f32 + 0.5)).abs() < 1e-4 && (same[2 * i + 1] - ((i / w) as f32 + 0.5)).abs() < 1e-4);
        }
        // A turned, shifted source camera; L = Σ weights · coordinates.
        let (s, c) = 0.2f32.sin_cos();
        let r = [c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c];
        let t = [30.0, -10.0, 20.0];
        let k_s = [60.0, 58.0, 3.5, 2.0];
        let weights: Vec<f32> = (0..2 * w * h).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.1).collect();
        let loss = |d: &[f32], r: &[f32; 9], t: [f32; 3]| coordinates(d, w, k, k_s, r, t).iter().zip(&weights).map(|(a, b)| a * b).sum::<f32>();
        let (g_depth, g_r, g_t) = coordinates_backward(&depth, w, k, k_s, &r, t, &weights);
        assert!(worst_against_central_differences(|d| loss(d, &r, t), &depth, &g_depth, 1, 1e-1, 1e-3) < 1e-2);
        assert!(worst_against_central_differences(|x| loss(&depth, &x.try_into().unwrap(), t), &r, &g_r, 1, 1e-3, 1e-3) < 1e-2);
        assert!(worst_against_central_differences(|x| loss(&depth, &r, [x[0], x[1], x[2]]), &t, &g_t, 1, 1e-1, 1e-3) < 1e-2);
    }

    #[test]
    fn synthesised_depth_is_the_target_depth_where_the_source_sees_the_same_plane_and_the_adjoint_matches_central_differences() {
        let (w, h) = (12usize, 10usize);
        let k = [40.0, 40.0, 6.0, 5.0];
        // A plane z = 400 + 0.2 x seen by both cameras; the source turned 0.05 rad and shifted.
        let (s, c) = 0.05f32.sin_cos();
        let r = [c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c];
        let t = [3.0, 1.0, 2.0];
        let plane_depth = |kk: Intrinsics, rot: &[f32; 9], shift: [f32; 3], u: f32, v: f32| {
            // The source camera's ray through (u, v) meets the plane (in target coordinates).
            let d = ray(kk, u, v);
            let rt: [f32; 9] = std::array::from_fn(|q| rot[q % 3 * 3 + q / 3]);
            let back = |x: [f32; 3]| rotate(&rt, [x[0] - shift[0], x[1] - shift[1], x[2] - shift[2]]);
            let (o, e) = (back([0.0; 3]), back(d));
            let dir = [e[0] - o[0], e[1] - o[1], e[2] - o[2]];
            (400.0 + 0.2 * o[0] - o[2]) / (dir[2] - 0.2 * dir[0])
        };
        let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let target_depth: Vec<f32> = (0..w * h).map(|i| plane_depth(k, &identity, [0.0; 3], (i % w) as f32 + 0.5, (i / w) as f32 + 0.5)).collect();
        let source_depth: Vec<f32> = (0..w * h).map(|i| plane_depth(k, &r, t, (i % w) as f32 + 0.5, (i / w) as f32 + 0.5)).collect();
        let source_rgb: Vec<f32> = (0..3 * w * h).map(|i| 0.5 + 0.4 * ((i / 3) as f32 * 0.37 + (i % 3) as f32).sin()).collect();
        let pair = Pair { width: w, height: h, target_depth: &target_depth, source_rgb: &source_rgb, source_depth: &source_depth, k_target: k, k_source: k };
        let out = synthesise(&pair, &r, t);
        let valid = out.valid.iter().filter(|v| **v > 0.0).count();
        assert!(valid > w * h / 2, "{valid} valid pixels");
        // On a plane the bilinear read of the source depth is exact up to the depth's curvature
        // in the image (1/z is linear, z is not): well under a millimetre here.
        let worst = (0..w * h).filter(|&i| out.valid[i] > 0.0).map(|i| (out.depth[i] - target_depth[i]).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.05, "D̃ vs D: {worst} mm");

        // L = Σ a ⊙ Ĩ + Σ b ⊙ D̃ against the target depth, the source depth, R and t.
        let a: Vec<f32> = (0..3 * w * h).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let b: Vec<f32> = (0..w * h).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.01).collect();
        let loss = |td: &[f32], sd: &[f32], r: &[f32; 9], t: [f32; 3]| {
            let p = Pair { target_depth: td, source_depth: sd, ..pair };
            let o = synthesise(&p, r, t);
            // Validity held fixed, as the adjoint does.
            (0..w * h).filter(|&i| out.valid[i] > 0.0).map(|i| (0..3).map(|c| a[3 * i + c] * o.rgb[3 * i + c]).sum::<f32>() + b[i] * o.depth[i]).sum::<f32>()
        };
        let (g_td, g_sd, g_r, g_t) = synthesise_backward(&pair, &r, t, &out.coords, &out.valid, &a, &b);
        let checks = [
            ("target depth", worst_against_central_differences(|x| loss(x, &source_depth, &r, t), &target_depth, &g_td, 1, 1.0, 1e-2)),
            ("source depth", worst_against_central_differences(|x| loss(&target_depth, x, &r, t), &source_depth, &g_sd, 1, 1.0, 1e-2)),
            ("R", worst_against_central_differences(|x| loss(&target_depth, &source_depth, &x.try_into().unwrap(), t), &r, &g_r, 1, 1e-3, 1.0)),
            ("t", worst_against_central_differences(|x| loss(&target_depth, &source_depth, &r, [x[0], x[1], x[2]]), &t, &g_t, 1, 1e-1, 1e-1)),
        ];
        for (what, worst) in checks {
            assert!(worst < 3e-2, "{what}: {worst}");
        }
    }
}
