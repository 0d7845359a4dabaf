//! MGCNet's pixel consistency (Eq. 3): the synthesised target Ĩ (the source image sampled at the
//! view-synthesis coordinates) against the target I on the covisible map C:
//! L = Σ_i C_i ‖Ĩ_i − I_i‖ / Σ_i C_i, with the per-pixel RGB norm ‖d‖ = √(Σ_c d_c² + ε), ε = 1e-6,
//! as the public code has it (the paper prints |·|). Adjoint: ∂L/∂Ĩ_i = C_i d_i / (‖d_i‖ Σ C).
//! Native only for now.

const EPSILON: f32 = 1e-6;

/// The loss and its gradient with respect to the synthesised image (rgb per pixel).
pub fn backward(synthesised: &[f32], target: &[f32], covisible: &[f32]) -> (f32, Vec<f32>) {
    let count: f32 = covisible.iter().sum();
    if count <= 0.0 {
        return (0.0, vec![0.0; synthesised.len()]);
    }
    let mut value = 0.0f64;
    let mut grad = vec![0.0; synthesised.len()];
    for (i, &c) in covisible.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        let d: [f32; 3] = std::array::from_fn(|k| synthesised[3 * i + k] - target[3 * i + k]);
        let norm = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + EPSILON).sqrt();
        value += (c * norm) as f64;
        for k in 0..3 {
            grad[3 * i + k] = c * d[k] / (norm * count);
        }
    }
    ((value / count as f64) as f32, grad)
}

pub fn forward(synthesised: &[f32], target: &[f32], covisible: &[f32]) -> f32 {
    backward(synthesised, target, covisible).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::worst_against_central_differences;

    #[test]
    fn by_hand_and_against_central_differences() {
        // Two covisible pixels off by (3, 4, 0)/100 and 0, one pixel outside C off by a lot.
        let target = [0.5f32; 9];
        let synthesised = [0.53, 0.54, 0.5, 0.5, 0.5, 0.5, 0.9, 0.1, 0.9];
        let value = forward(&synthesised, &target, &[1.0, 1.0, 0.0]);
        let by_hand = ((0.0025f32 + EPSILON).sqrt() + EPSILON.sqrt()) / 2.0;
        assert!((value - by_hand).abs() < 1e-5, "{value} vs {by_hand}");
        let image: Vec<f32> = (0..48).map(|i| ((i * 13 % 17) as f32) / 17.0).collect();
        let other: Vec<f32> = (0..48).map(|i| ((i * 5 % 11) as f32) / 11.0).collect();
        let covisible: Vec<f32> = (0..16).map(|i| (i % 3 != 0) as u8 as f32).collect();
        let (_, grad) = backward(&image, &other, &covisible);
        let worst = worst_against_central_differences(|x| forward(x, &other, &covisible), &image, &grad, 1, 1e-3, 1e-3);
        assert!(worst < 1e-2, "{worst}");
    }
}
