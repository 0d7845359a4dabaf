//! MGCNet's scale-corrected dense depth consistency (Eq. 4): with the covisible map C, the
//! target's rendered depth D and the source depth synthesised into the target view D̃,
//! S = Σ D C / Σ D̃ C and L = Σ C |S D̃ − D| / Σ C. The scale S absorbs the depth scale a crop
//! or a weak camera leaves undetermined, so L(c D̃) = L(D̃) for every c > 0.
//!
//! Adjoint, with g_i = C_i sgn(S D̃_i − D_i) / Σ C and G = Σ g_j D̃_j:
//! ∂L/∂D̃_i = S g_i − G S C_i / Σ D̃ C, ∂L/∂D_i = −g_i + G C_i / Σ D̃ C.
//! Native only for now (one pass over the pixels, no neighbourhood).

/// The loss; zero when nothing is covisible.
pub fn forward(depth: &[f32], synthesised: &[f32], covisible: &[f32]) -> f32 {
    backward(depth, synthesised, covisible).0
}

/// The loss and its gradients with respect to the synthesised depth and the target depth.
pub fn backward(depth: &[f32], synthesised: &[f32], covisible: &[f32]) -> (f32, Vec<f32>, Vec<f32>) {
    let n = depth.len();
    let sum = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>();
    let count = sum(&|i| covisible[i] as f64);
    let weighted_synth = sum(&|i| synthesised[i] as f64 * covisible[i] as f64);
    if count <= 0.0 || weighted_synth == 0.0 {
        return (0.0, vec![0.0; n], vec![0.0; n]);
    }
    let scale = sum(&|i| depth[i] as f64 * covisible[i] as f64) / weighted_synth;
    let residual = |i: usize| scale * synthesised[i] as f64 - depth[i] as f64;
    let value = sum(&|i| covisible[i] as f64 * residual(i).abs()) / count;
    let g: Vec<f64> = (0..n).map(|i| covisible[i] as f64 * residual(i).signum() * (residual(i) != 0.0) as u8 as f64 / count).collect();
    let big_g = sum(&|i| g[i] * synthesised[i] as f64);
    let d_synth = (0..n).map(|i| (scale * g[i] - big_g * scale * covisible[i] as f64 / weighted_synth) as f32).collect();
    let d_depth = (0..n).map(|i| (-g[i] + big_g * covisible[i] as f64 / weighted_synth) as f32).collect();
    (value as f32, d_synth, d_depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::worst_against_central_differences;

    fn maps() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let depth: Vec<f32> = (0..64).map(|i| 500.0 + 20.0 * ((i as f32) * 0.37).sin()).collect();
        let synthesised: Vec<f32> = depth.iter().enumerate().map(|(i, d)| 0.8 * d + 3.0 * ((i as f32) * 1.3).cos()).collect();
        let covisible: Vec<f32> = (0..64).map(|i| if i % 7 == 3 { 0.0 } else { 1.0 }).collect();
        (depth, synthesised, covisible)
    }

    #[test]
    fn unchanged_when_the_synthesised_depth_is_scaled() {
        let (depth, synthesised, covisible) = maps();
        let base = forward(&depth, &synthesised, &covisible);
        assert!(base > 0.1);
        for c in [0.01f32, 0.5, 2.0, 7.3, 1000.0] {
            let scaled: Vec<f32> = synthesised.iter().map(|d| c * d).collect();
            let loss = forward(&depth, &scaled, &covisible);
            assert!((loss - base).abs() <= 1e-5 * base, "c = {c}: {loss} vs {base}");
        }
        // A synthesised depth that is the target's up to scale costs nothing.
        let exact: Vec<f32> = depth.iter().map(|d| d / 3.0).collect();
        assert!(forward(&depth, &exact, &covisible) < 1e-4);
        // Outside the covisible map nothing counts.
        let mut elsewhere = synthesised.clone();
        elsewhere[3] += 100.0;
        assert_eq!(forward(&depth, &elsewhere, &covisible), base);
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let (depth, synthesised, covisible) = maps();
        let (_, d_synth, d_depth) = backward(&depth, &synthesised, &covisible);
        let worst = worst_against_central_differences(|x| forward(&depth, x, &covisible), &synthesised, &d_synth, 1, 1e-2, 1e-4);
        assert!(worst < 1e-2, "synthesised: {worst}");
        let worst = worst_against_central_differences(|x| forward(x, &synthesised, &covisible), &depth, &d_depth, 1, 1e-2, 1e-4);
        assert!(worst < 1e-2, "depth: {worst}");
    }
}
