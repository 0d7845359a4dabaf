//! PGN's closed-form pose (Eq. 3–4) and its adjoint: the affine T minimising ‖T·[X;1] − X_UV‖²
//! over the landmarks, T = X_UV [X;1]ᵀ ([X;1][X;1]ᵀ)⁻¹.
//!
//! Only the two image rows of T are solved: least squares separates by rows, so the rows for x
//! and y depend only on the targets' x and y, and a weak-perspective pose keeps just those two
//! (its depth axis follows from them). The solve is 68 × 4, so it runs natively in f64 on every
//! backend; a kernel launch would cost more than the arithmetic.

/// Why the closed form has no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoseFitError {
    #[error("{0} landmarks: the closed-form pose needs at least 4 (and the same count of model and target points)")]
    TooFew(usize),
    #[error("the model landmarks are (nearly) coplanar: [X;1][X;1]ᵀ is singular (relative volume {0:.2e})")]
    Coplanar(f64),
    #[error("a landmark is not finite")]
    NotFinite,
}

/// The solved pose with what its adjoint needs.
#[derive(Debug, Clone)]
pub struct PoseFit {
    /// The two image rows of T.
    pub t: [[f64; 4]; 2],
    /// ([X;1][X;1]ᵀ)⁻¹.
    gram_inv: [[f64; 4]; 4],
}

/// Relative volume of the centred landmark cloud below which it counts as flat.
const FLAT: f64 = 1e-9;

fn homogeneous(x: &[f32; 3]) -> [f64; 4] {
    [x[0] as f64, x[1] as f64, x[2] as f64, 1.0]
}

/// Solves T from model landmarks `x` and their image targets `y` (pixels).
pub fn solve(x: &[[f32; 3]], y: &[[f32; 2]]) -> Result<PoseFit, PoseFitError> {
    if x.len() != y.len() || x.len() < 4 {
        return Err(PoseFitError::TooFew(x.len().min(y.len())));
    }
    if x.iter().flatten().chain(y.iter().flatten()).any(|v| !v.is_finite()) {
        return Err(PoseFitError::NotFinite);
    }
    // Flatness of the centred cloud: det(C) against (tr C / 3)³, scale free.
    let n = x.len() as f64;
    let mean: [f64; 3] = std::array::from_fn(|c| x.iter().map(|p| p[c] as f64).sum::<f64>() / n);
    let mut cov = [[0.0f64; 3]; 3];
    for p in x {
        let d: [f64; 3] = std::array::from_fn(|c| p[c] as f64 - mean[c]);
        for i in 0..3 {
            for j in 0..3 {
                cov[i][j] += d[i] * d[j];
            }
        }
    }
    let det = cov[0][0] * (cov[1][1] * cov[2][2] - cov[1][2] * cov[2][1]) - cov[0][1] * (cov[1][0] * cov[2][2] - cov[1][2] * cov[2][0])
        + cov[0][2] * (cov[1][0] * cov[2][1] - cov[1][1] * cov[2][0]);
    let trace = (cov[0][0] + cov[1][1] + cov[2][2]) / 3.0;
    let volume = if trace > 0.0 { det / trace.powi(3) } else { 0.0 };
    if volume < FLAT {
        return Err(PoseFitError::Coplanar(volume));
    }

    let mut gram = [[0.0f64; 4]; 4];
    let mut cross = [[0.0f64; 4]; 2];
    for (p, q) in x.iter().zip(y) {
        let a = homogeneous(p);
        for i in 0..4 {
            for j in 0..4 {
                gram[i][j] += a[i] * a[j];
            }
            cross[0][i] += q[0] as f64 * a[i];
            cross[1][i] += q[1] as f64 * a[i];
        }
    }
    let gram_inv = invert4(gram).ok_or(PoseFitError::Coplanar(volume))?;
    let t = std::array::from_fn(|r| std::array::from_fn(|j| (0..4).map(|k| cross[r][k] * gram_inv[k][j]).sum()));
    Ok(PoseFit { t, gram_inv })
}

impl PoseFit {
    /// The rows as f32, the layout of `Pose::WeakPerspective`.
    pub fn rows(&self) -> [[f32; 4]; 2] {
        self.t.map(|r| r.map(|v| v as f32))
    }

    /// Adjoint to the model landmarks: dL/dT (2 × 4) → dL/dX (one xyz per landmark), with the
    /// targets held fixed. For A = [X;1], G = A Aᵀ, R = X_UV − T A:
    /// dL/dA = G⁻¹ T̄ᵀ R − Tᵀ T̄ G⁻¹ A (the rows of X; the row of ones has no gradient).
    pub fn backward(&self, x: &[[f32; 3]], y: &[[f32; 2]], grad_t: &[[f32; 4]; 2]) -> Vec<[f32; 3]> {
        let g = |r: usize, c: usize| grad_t[r][c] as f64;
        // M1 = G⁻¹ T̄ᵀ (4 × 2); M2 = Tᵀ T̄ G⁻¹ (4 × 4).
        let m1: [[f64; 2]; 4] = std::array::from_fn(|i| std::array::from_fn(|r| (0..4).map(|k| self.gram_inv[i][k] * g(r, k)).sum()));
        let tt_g: [[f64; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| (0..2).map(|r| self.t[r][i] * g(r, j)).sum()));
        let m2: [[f64; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| (0..4).map(|k| tt_g[i][k] * self.gram_inv[k][j]).sum()));
        x.iter()
            .zip(y)
            .map(|(p, q)| {
                let a = homogeneous(p);
                let fitted: [f64; 2] = std::array::from_fn(|r| (0..4).map(|k| self.t[r][k] * a[k]).sum());
                let residual = [q[0] as f64 - fitted[0], q[1] as f64 - fitted[1]];
                std::array::from_fn(|i| (m1[i][0] * residual[0] + m1[i][1] * residual[1] - (0..4).map(|k| m2[i][k] * a[k]).sum::<f64>()) as f32)
            })
            .collect()
    }
}

/// A number with its derivatives along the six entries of a 2 × 3 block (forward-mode
/// differentiation of `scaled_rotation`). The product and quotient rules look odd to clippy.
#[derive(Clone, Copy, Debug)]
struct Dual {
    v: f64,
    d: [f64; 6],
}

impl Dual {
    fn constant(v: f64) -> Self {
        Self { v, d: [0.0; 6] }
    }
    fn sqrt(self) -> Self {
        let r = self.v.sqrt();
        Self { v: r, d: self.d.map(|x| x / (2.0 * r)) }
    }
}

impl std::ops::Add for Dual {
    type Output = Dual;
    fn add(self, o: Dual) -> Dual {
        Dual { v: self.v + o.v, d: std::array::from_fn(|k| self.d[k] + o.d[k]) }
    }
}

impl std::ops::Sub for Dual {
    type Output = Dual;
    fn sub(self, o: Dual) -> Dual {
        Dual { v: self.v - o.v, d: std::array::from_fn(|k| self.d[k] - o.d[k]) }
    }
}

#[allow(clippy::suspicious_arithmetic_impl)]
impl std::ops::Mul for Dual {
    type Output = Dual;
    fn mul(self, o: Dual) -> Dual {
        Dual { v: self.v * o.v, d: std::array::from_fn(|k| self.d[k] * o.v + self.v * o.d[k]) }
    }
}

#[allow(clippy::suspicious_arithmetic_impl)]
impl std::ops::Div for Dual {
    type Output = Dual;
    fn div(self, o: Dual) -> Dual {
        Dual { v: self.v / o.v, d: std::array::from_fn(|k| (self.d[k] * o.v - self.v * o.d[k]) / (o.v * o.v)) }
    }
}

/// The scaled rotation nearest to the 2 × 3 block M of T (least squares): s·Q with
/// Q = (M Mᵀ)^(-1/2) M the polar factor with orthonormal rows and s the mean singular value.
/// For a 2 × 2 C = M Mᵀ with δ = √det C this is ((tr C + 2δ) / 2) · (C + δ I)⁻¹ · M.
fn scaled_rotation(m: [[Dual; 3]; 2]) -> [[Dual; 3]; 2] {
    let dot = |a: &[Dual; 3], b: &[Dual; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let (c00, c01, c11) = (dot(&m[0], &m[0]), dot(&m[0], &m[1]), dot(&m[1], &m[1]));
    let delta = (c00 * c11 - c01 * c01).sqrt();
    let two = Dual::constant(2.0);
    let (a, b, d) = (c00 + delta, c01, c11 + delta);
    let det = a * d - b * b;
    let factor = (c00 + c11 + two * delta) / two / det;
    // (C + δI)⁻¹ = [[d, −b], [−b, a]] / det.
    std::array::from_fn(|r| {
        std::array::from_fn(|j| {
            let mixed = if r == 0 { d * m[0][j] - b * m[1][j] } else { a * m[1][j] - b * m[0][j] };
            factor * mixed
        })
    })
}

/// T with its 2 × 3 block replaced by the nearest scaled rotation, and the Jacobian of the
/// block (6 × 6, row-major over the entries (r, j) → 3r + j).
fn scaled_rotation_with_jacobian(t: &[[f64; 4]; 2]) -> ([[f64; 4]; 2], [[f64; 6]; 6]) {
    let m: [[Dual; 3]; 2] = std::array::from_fn(|r| {
        std::array::from_fn(|j| {
            let mut d = [0.0; 6];
            d[3 * r + j] = 1.0;
            Dual { v: t[r][j], d }
        })
    });
    let p = scaled_rotation(m);
    let out = std::array::from_fn(|r| [p[r][0].v, p[r][1].v, p[r][2].v, t[r][3]]);
    (out, std::array::from_fn(|o| p[o / 3][o % 3].d))
}

impl PoseFit {
    /// The fit with T replaced by its nearest scaled rotation (a weak-perspective camera proper;
    /// the paper's T is the unconstrained affine).
    pub fn scaled_rotation(&self) -> [[f64; 4]; 2] {
        scaled_rotation_with_jacobian(&self.t).0
    }

    /// dL/d(scaled-rotation T) → dL/d(affine T): the adjoint of `scaled_rotation`.
    pub fn scaled_rotation_backward(&self, grad: &[[f32; 4]; 2]) -> [[f32; 4]; 2] {
        let (_, jacobian) = scaled_rotation_with_jacobian(&self.t);
        std::array::from_fn(|r| {
            std::array::from_fn(|j| if j == 3 { grad[r][3] } else { (0..6).map(|o| jacobian[o][3 * r + j] * grad[o / 3][o % 3] as f64).sum::<f64>() as f32 })
        })
    }
}

/// Gauss–Jordan inverse with partial pivoting; None when singular.
pub(crate) fn invert4(m: [[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut a = m;
    let mut inv: [[f64; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 1.0 } else { 0.0 }));
    let scale = m.iter().flatten().fold(0.0f64, |s, v| s.max(v.abs()));
    for col in 0..4 {
        let pivot = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= 1e-14 * scale {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..4 {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for i in 0..4 {
            if i != col {
                let f = a[i][col];
                for j in 0..4 {
                    a[i][j] -= f * a[col][j];
                    inv[i][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

/// The scaled rotation hidden in an affine weak-perspective T: the rows' nearest pair of
/// orthonormal vectors (polar decomposition of the 2 × 3 block), the third row their cross
/// product, and the mean row length as the scale. `image_v_down` undoes the image's v flip.
pub fn rotation_and_scale(t: &[[f32; 4]; 2], image_v_down: bool) -> ([f32; 9], f32) {
    let a = [t[0][0] as f64, t[0][1] as f64, t[0][2] as f64];
    let sign = if image_v_down { -1.0 } else { 1.0 };
    let b = [sign * t[1][0] as f64, sign * t[1][1] as f64, sign * t[1][2] as f64];
    let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let scale = 0.5 * (norm(a) + norm(b));
    // Symmetric orthonormalisation: rotate a and b apart equally until they are perpendicular.
    let (ua, ub) = (a.map(|v| v / norm(a)), b.map(|v| v / norm(b)));
    let sum = [ua[0] + ub[0], ua[1] + ub[1], ua[2] + ub[2]];
    let diff = [ua[0] - ub[0], ua[1] - ub[1], ua[2] - ub[2]];
    let (s, d) = (sum.map(|v| v / norm(sum)), diff.map(|v| v / norm(diff)));
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let r0 = [h * (s[0] + d[0]), h * (s[1] + d[1]), h * (s[2] + d[2])];
    let r1 = [h * (s[0] - d[0]), h * (s[1] - d[1]), h * (s[2] - d[2])];
    let r2 = [r0[1] * r1[2] - r0[2] * r1[1], r0[2] * r1[0] - r0[0] * r1[2], r0[0] * r1[1] - r0[1] * r1[0]];
    let r = [r0, r1, r2];
    (std::array::from_fn(|k| r[k / 3][k % 3] as f32), scale as f32)
}

/// The geodesic angle between two rotations (degrees): acos((tr(Aᵀ B) − 1) / 2).
pub fn rotation_angle_between(a: &[f32; 9], b: &[f32; 9]) -> f32 {
    let trace: f64 = (0..9).map(|k| a[k] as f64 * b[k] as f64).sum();
    ((trace - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::rotation_ypr;
    use crate::testing::random;

    fn cloud(n: usize, seed: u64) -> Vec<[f32; 3]> {
        random(3 * n, seed).chunks(3).map(|c| [60.0 * c[0], 70.0 * c[1], 30.0 * c[2]]).collect()
    }

    fn apply(t: &[[f32; 4]; 2], x: &[[f32; 3]]) -> Vec<[f32; 2]> {
        x.iter().map(|p| std::array::from_fn(|r| t[r][0] * p[0] + t[r][1] * p[1] + t[r][2] * p[2] + t[r][3])).collect()
    }

    #[test]
    fn recovers_a_scaled_rotation_exactly() {
        let x = cloud(68, 1);
        let r = rotation_ypr(0.6, -0.2, 0.1);
        let f = 0.93;
        let truth = [[f * r[0], f * r[1], f * r[2], 112.0], [-f * r[3], -f * r[4], -f * r[5], 108.0]];
        let fit = solve(&x, &apply(&truth, &x)).unwrap();
        let worst = (0..2).flat_map(|i| (0..4).map(move |j| (i, j))).map(|(i, j)| ((fit.t[i][j] - truth[i][j] as f64) / 112.0).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "relative error {worst}");
        let (rot, scale) = rotation_and_scale(&fit.rows(), true);
        assert!(rotation_angle_between(&rot, &r) < 1e-3, "{}", rotation_angle_between(&rot, &r));
        assert!((scale - f).abs() < 1e-5);
    }

    #[test]
    fn coplanar_and_too_few_landmarks_are_errors() {
        let flat: Vec<[f32; 3]> = cloud(68, 2).into_iter().map(|p| [p[0], p[1], 0.5 * p[0] - 0.25 * p[1] + 3.0]).collect();
        let y = vec![[0.0, 0.0]; 68];
        assert!(matches!(solve(&flat, &y), Err(PoseFitError::Coplanar(_))));
        assert!(matches!(solve(&cloud(3, 3), &y[..3]), Err(PoseFitError::TooFew(3))));
        let mut bad = cloud(68, 4);
        bad[5][1] = f32::NAN;
        assert_eq!(solve(&bad, &y).unwrap_err(), PoseFitError::NotFinite);
    }

    #[test]
    fn nearest_scaled_rotation_keeps_a_rotation_and_its_adjoint_matches_differences() {
        let r = rotation_ypr(0.5, 0.2, -0.1);
        let f = 1.3;
        let x = cloud(20, 7);
        let exact = [[f * r[0], f * r[1], f * r[2], 100.0], [-f * r[3], -f * r[4], -f * r[5], 90.0]];
        let fit = solve(&x, &apply(&exact, &x)).unwrap();
        let kept = fit.scaled_rotation();
        assert!((0..2).all(|i| (0..4).all(|j| (kept[i][j] - exact[i][j] as f64).abs() < 1e-4)), "{kept:?}");
        // A sheared, anisotropic T: rows orthonormal times one scale afterwards.
        let sheared = [[1.2f64, 0.3, -0.2, 5.0], [0.1, -0.8, 0.4, 7.0]];
        let (p, _) = scaled_rotation_with_jacobian(&sheared);
        let dot = |a: usize, b: usize| (0..3).map(|k| p[a][k] * p[b][k]).sum::<f64>();
        assert!(dot(0, 1).abs() < 1e-12 && (dot(0, 0) - dot(1, 1)).abs() < 1e-12);
        let grad: [[f32; 4]; 2] = [[0.4, -0.3, 0.9, 0.1], [-0.6, 0.2, 0.5, -0.2]];
        let fit = PoseFit { t: sheared, gram_inv: [[0.0; 4]; 4] };
        let analytic = fit.scaled_rotation_backward(&grad);
        let loss = |t: &[[f64; 4]; 2]| -> f64 {
            let (p, _) = scaled_rotation_with_jacobian(t);
            (0..2).flat_map(|i| (0..4).map(move |j| (i, j))).map(|(i, j)| p[i][j] * grad[i][j] as f64).sum()
        };
        for i in 0..2 {
            for j in 0..4 {
                let h = 1e-6;
                let (mut up, mut down) = (sheared, sheared);
                up[i][j] += h;
                down[i][j] -= h;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
                assert!((numeric - analytic[i][j] as f64).abs() < 1e-5, "({i}, {j}): {numeric} vs {}", analytic[i][j]);
            }
        }
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let x = cloud(20, 5);
        let y: Vec<[f32; 2]> = random(40, 6).chunks(2).map(|c| [100.0 * c[0], 100.0 * c[1]]).collect();
        let grad_t: [[f32; 4]; 2] = [[0.3, -0.7, 0.2, 0.01], [0.5, 0.1, -0.4, -0.02]];
        let loss = |x: &[[f32; 3]]| -> f64 {
            let t = solve(x, &y).unwrap().t;
            (0..2).flat_map(|i| (0..4).map(move |j| (i, j))).map(|(i, j)| t[i][j] * grad_t[i][j] as f64).sum()
        };
        let analytic = solve(&x, &y).unwrap().backward(&x, &y, &grad_t);
        let mut worst = 0.0f64;
        for l in 0..x.len() {
            for c in 0..3 {
                let h = 1e-2;
                let (mut up, mut down) = (x.clone(), x.clone());
                up[l][c] += h;
                down[l][c] -= h;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * h as f64);
                worst = worst.max((numeric - analytic[l][c] as f64).abs() / (numeric.abs() + 1e-3));
            }
        }
        assert!(worst < 1e-2, "worst relative error {worst}");
    }
}
