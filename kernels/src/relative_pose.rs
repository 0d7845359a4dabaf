//! The relative pose of two pinhole cameras (MGCNet's P^rel_{t→s}). faceforge's poses map model
//! points into the camera, x = R X + t, so a point in the target camera, x_t, is in the source
//! camera at x_s = R_rel x_t + t_rel with R_rel = R_s R_tᵀ and t_rel = t_s − R_rel t_t. (The
//! paper's [R_t⁻¹ R_s | R_t⁻¹ (t_s − t_t)] is the same map for camera-to-world poses.)
//!
//! Adjoint, from (G_R, g_t) on (R_rel, t_rel): the total on R_rel is H = G_R − g_t t_tᵀ; then
//! ∂L/∂R_s = H R_t, ∂L/∂R_t = Hᵀ R_s, ∂L/∂t_s = g_t, ∂L/∂t_t = −R_relᵀ g_t. Native only: one
//! pose pair is no work for a device.

/// A row-major rotation and a translation.
pub type Rigid = ([f32; 9], [f32; 3]);

fn mul(a: &[f32; 9], b: &[f32; 9]) -> [f32; 9] {
    std::array::from_fn(|k| (0..3).map(|j| a[k / 3 * 3 + j] * b[j * 3 + k % 3]).sum())
}

fn transpose(a: &[f32; 9]) -> [f32; 9] {
    std::array::from_fn(|k| a[k % 3 * 3 + k / 3])
}

fn apply(a: &[f32; 9], x: [f32; 3]) -> [f32; 3] {
    std::array::from_fn(|i| a[3 * i] * x[0] + a[3 * i + 1] * x[1] + a[3 * i + 2] * x[2])
}

/// (R_rel, t_rel) from the target's and the source's world-to-camera poses.
pub fn forward(target: &Rigid, source: &Rigid) -> Rigid {
    let r = mul(&source.0, &transpose(&target.0));
    let moved = apply(&r, target.1);
    (r, std::array::from_fn(|i| source.1[i] - moved[i]))
}

/// Gradients on (R_t, t_t) and (R_s, t_s) from gradients on (R_rel, t_rel).
pub fn backward(target: &Rigid, source: &Rigid, grad: &Rigid) -> (Rigid, Rigid) {
    let (r, _) = forward(target, source);
    let (g_r, g_t) = grad;
    let h: [f32; 9] = std::array::from_fn(|k| g_r[k] - g_t[k / 3] * target.1[k % 3]);
    let d_source_r = mul(&h, &target.0);
    let d_target_r = mul(&transpose(&h), &source.0);
    let back = apply(&transpose(&r), *g_t);
    ((d_target_r, back.map(|v| -v)), (d_source_r, *g_t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::rotation_ypr;
    use crate::testing::worst_against_central_differences;

    #[test]
    fn maps_target_camera_points_into_the_source_camera_and_the_adjoint_matches_central_differences() {
        let target = (rotation_ypr(0.3, -0.1, 0.05), [4.0, -2.0, 600.0]);
        let source = (rotation_ypr(-0.5, 0.2, -0.1), [-6.0, 3.0, 650.0]);
        let (r, t) = forward(&target, &source);
        let point = [12.0, -30.0, 45.0];
        let rotated = apply(&target.0, point);
        let via_relative = apply(&r, std::array::from_fn(|i| rotated[i] + target.1[i]));
        let direct = apply(&source.0, point);
        for i in 0..3 {
            assert!((via_relative[i] + t[i] - direct[i] - source.1[i]).abs() < 1e-3, "axis {i}");
        }
        // L = Σ W ⊙ R_rel + w · t_rel, against every input.
        let (w_r, w_t): ([f32; 9], [f32; 3]) = (std::array::from_fn(|k| 0.3 * k as f32 - 1.0), [0.5, -0.7, 0.2]);
        let loss = |x: &[f32]| {
            let (tr, tt, sr, st) = (x[..9].try_into().unwrap(), x[9..12].try_into().unwrap(), x[12..21].try_into().unwrap(), x[21..24].try_into().unwrap());
            let (r, t) = forward(&(tr, tt), &(sr, st));
            (0..9).map(|k| w_r[k] * r[k]).sum::<f32>() + (0..3).map(|k| w_t[k] * t[k]).sum::<f32>()
        };
        let x: Vec<f32> = target.0.iter().chain(&target.1).chain(&source.0).chain(&source.1).copied().collect();
        let ((dtr, dtt), (dsr, dst)) = backward(&target, &source, &(w_r, w_t));
        let analytic: Vec<f32> = dtr.iter().chain(&dtt).chain(&dsr).chain(&dst).copied().collect();
        let worst = worst_against_central_differences(loss, &x, &analytic, 1, 1e-2, 0.1);
        assert!(worst < 1e-2, "{worst}");
    }
}
