//! A tiny deterministic generator (SplitMix64), owned here so that the same seed gives the same
//! model bytes whatever version of a random-number crate the workspace resolves.

#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// σ_k · scale · N(0, 1) for each σ_k: coefficients drawn from a model's prior.
    pub fn scaled_normals(&mut self, sigma: &[f32], scale: f32) -> Vec<f32> {
        sigma.iter().map(|s| s * scale * self.normal() as f32).collect()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range_and_normal_has_unit_variance() {
        let mut rng = SplitMix64::new(3);
        let n = 20_000;
        let mut sum_sq = 0.0;
        for _ in 0..n {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            let z = rng.normal();
            sum_sq += z * z;
        }
        let var = sum_sq / n as f64;
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }
}
