//! MGCNet's facial epipolar loss (Eq. 5): with the relative pose x_s = R x_t + t from the target
//! camera to the source camera, E = [t]× R, and F = K_s⁻ᵀ E K_t⁻¹ on pixel coordinates, each
//! landmark pair (p_t, p_s) is scored by the distance from p_s to the epipolar line F p_t:
//! |p_sᵀ F p_t| / √((F p_t)₁² + (F p_t)₂²) pixels, averaged over the landmarks.
//!
//! The paper prints it one-sided and without the absolute value while calling it symmetric;
//! this follows the public code (one-sided, absolute, fundamental matrix on pixels; papers.md).
//! Native only: 68 points are no work for a device. Computed in f64.
//!
//! Adjoint: with l = F p_t, n = p_sᵀ l, m = √(l₁² + l₂²), ∂d/∂l = sgn(n) p_s / m − |n| (l₁, l₂, 0) / m³;
//! ∂d/∂F = ∂d/∂l p_tᵀ; ∂d/∂E = K_s⁻¹ ∂d/∂F K_t⁻ᵀ; ∂d/∂R = [t]×ᵀ ∂d/∂E; and with M = ∂d/∂E Rᵀ,
//! ∂d/∂t = (M₃₂ − M₂₃, M₁₃ − M₃₁, M₂₁ − M₁₂).

type M3 = [[f64; 3]; 3];

/// Pinhole intrinsics (fx, fy, cx, cy) as K⁻¹.
fn k_inverse(k: [f64; 4]) -> M3 {
    let [fx, fy, cx, cy] = k;
    [[1.0 / fx, 0.0, -cx / fx], [0.0, 1.0 / fy, -cy / fy], [0.0, 0.0, 1.0]]
}

fn mul(a: &M3, b: &M3) -> M3 {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

fn transpose(a: &M3) -> M3 {
    std::array::from_fn(|i| std::array::from_fn(|j| a[j][i]))
}

fn skew(t: [f64; 3]) -> M3 {
    [[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]]
}

fn rows(r: &[f64; 9]) -> M3 {
    std::array::from_fn(|i| std::array::from_fn(|j| r[3 * i + j]))
}

/// The fundamental matrix of the relative pose, on pixel coordinates.
pub fn fundamental(k_t: [f64; 4], k_s: [f64; 4], r: &[f64; 9], t: [f64; 3]) -> M3 {
    let e = mul(&skew(t), &rows(r));
    mul(&mul(&transpose(&k_inverse(k_s)), &e), &k_inverse(k_t))
}

/// One landmark's distance and its derivative with respect to F.
fn distance(f: &M3, pt: [f64; 2], ps: [f64; 2]) -> (f64, M3) {
    let (p, q) = ([pt[0], pt[1], 1.0], [ps[0], ps[1], 1.0]);
    let l: [f64; 3] = std::array::from_fn(|i| (0..3).map(|j| f[i][j] * p[j]).sum());
    let n = q[0] * l[0] + q[1] * l[1] + q[2] * l[2];
    let m = (l[0] * l[0] + l[1] * l[1]).sqrt().max(1e-300);
    let d_l: [f64; 3] = std::array::from_fn(|i| n.signum() * q[i] / m - if i < 2 { n.abs() * l[i] / (m * m * m) } else { 0.0 });
    (n.abs() / m, std::array::from_fn(|i| std::array::from_fn(|j| d_l[i] * p[j])))
}

/// The mean distance (pixels) from each source landmark to its target landmark's epipolar line.
pub fn forward(targets: &[[f64; 2]], sources: &[[f64; 2]], k_t: [f64; 4], k_s: [f64; 4], r: &[f64; 9], t: [f64; 3]) -> f64 {
    let f = fundamental(k_t, k_s, r, t);
    targets.iter().zip(sources).map(|(pt, ps)| distance(&f, *pt, *ps).0).sum::<f64>() / targets.len().max(1) as f64
}

/// The mean distance and its gradient with respect to the relative rotation (row-major) and
/// translation.
pub fn backward(targets: &[[f64; 2]], sources: &[[f64; 2]], k_t: [f64; 4], k_s: [f64; 4], r: &[f64; 9], t: [f64; 3]) -> (f64, [f64; 9], [f64; 3]) {
    let f = fundamental(k_t, k_s, r, t);
    let count = targets.len().max(1) as f64;
    let mut value = 0.0;
    let mut d_f = [[0.0f64; 3]; 3];
    for (pt, ps) in targets.iter().zip(sources) {
        let (d, g) = distance(&f, *pt, *ps);
        value += d / count;
        for i in 0..3 {
            for j in 0..3 {
                d_f[i][j] += g[i][j] / count;
            }
        }
    }
    // F = A E B with A = K_s⁻ᵀ, B = K_t⁻¹, so ∂/∂E = Aᵀ ∂/∂F Bᵀ.
    let d_e = mul(&mul(&k_inverse(k_s), &d_f), &transpose(&k_inverse(k_t)));
    let d_r = mul(&transpose(&skew(t)), &d_e);
    let m = mul(&d_e, &transpose(&rows(r)));
    let d_t = [m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]];
    (value, std::array::from_fn(|k| d_r[k / 3][k % 3]), d_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face-sized cloud of 68 points about 600 mm in front of the target camera, seen by a
    /// source camera turned `yaw` degrees about the cloud's centre; pixels of both.
    fn scene(yaw: f64) -> (Vec<[f64; 2]>, Vec<[f64; 2]>, [f64; 4], [f64; 9], [f64; 3]) {
        let k = [1000.0, 1000.0, 112.0, 112.0];
        let centre = [0.0, 0.0, 600.0];
        let points: Vec<[f64; 3]> = (0..68).map(|i| {
            let a = i as f64 * 0.61;
            [70.0 * a.sin() * (1.0 + 0.1 * (i % 5) as f64), 90.0 * (a * 1.3).cos(), 600.0 + 30.0 * (a * 0.7).sin()]
        }).collect();
        let (s, c) = yaw.to_radians().sin_cos();
        let r = [c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c];
        let rc: [f64; 3] = std::array::from_fn(|i| (0..3).map(|j| r[3 * i + j] * centre[j]).sum());
        let t = [centre[0] - rc[0], centre[1] - rc[1], centre[2] - rc[2]];
        let project = |x: [f64; 3]| [k[0] * x[0] / x[2] + k[2], k[1] * x[1] / x[2] + k[3]];
        let targets = points.iter().map(|&x| project(x)).collect();
        let sources = points.iter().map(|&x| project(std::array::from_fn(|i| (0..3).map(|j| r[3 * i + j] * x[j]).sum::<f64>() + t[i]))).collect();
        (targets, sources, k, r, t)
    }

    #[test]
    fn zero_at_the_truth_and_growing_with_the_rotation_error() {
        let (targets, sources, k, r, t) = scene(20.0);
        let at_truth = forward(&targets, &sources, k, k, &r, t);
        assert!(at_truth < 1e-6, "{at_truth} px at the truth");
        // The relative rotation wrong by 1…5° about the vertical axis: the loss grows each step.
        let mut last = at_truth;
        for degrees in 1..=5 {
            let (s, c) = (degrees as f64).to_radians().sin_cos();
            let extra = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]];
            let wrong = mul(&extra, &rows(&r));
            let loss = forward(&targets, &sources, k, k, &std::array::from_fn(|i| wrong[i / 3][i % 3]), t);
            assert!(loss > last, "{degrees}°: {loss} after {last}");
            last = loss;
        }
        assert!(last > 1.0, "5° off gives {last} px");
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let (targets, sources, k, r, t) = scene(25.0);
        // Away from the truth, where every |·| has a sign.
        let (s, c) = 3f64.to_radians().sin_cos();
        let r = mul(&[[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], &rows(&r));
        let r: [f64; 9] = std::array::from_fn(|i| r[i / 3][i % 3]);
        let t = [t[0] + 4.0, t[1] - 3.0, t[2] + 2.0];
        let (_, d_r, d_t) = backward(&targets, &sources, k, k, &r, t);
        let h = 1e-6;
        for i in 0..9 {
            let (mut up, mut down) = (r, r);
            up[i] += h;
            down[i] -= h;
            let numeric = (forward(&targets, &sources, k, k, &up, t) - forward(&targets, &sources, k, k, &down, t)) / (2.0 * h);
            assert!((numeric - d_r[i]).abs() <= 1e-5 * numeric.abs().max(1.0), "R[{i}]: {} vs {numeric}", d_r[i]);
        }
        for i in 0..3 {
            let (mut up, mut down) = (t, t);
            up[i] += h;
            down[i] -= h;
            let numeric = (forward(&targets, &sources, k, k, &r, up) - forward(&targets, &sources, k, k, &r, down)) / (2.0 * h);
            assert!((numeric - d_t[i]).abs() <= 1e-5 * numeric.abs().max(1e-3), "t[{i}]: {} vs {numeric}", d_t[i]);
        }
    }
}
