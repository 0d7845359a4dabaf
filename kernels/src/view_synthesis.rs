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
}
