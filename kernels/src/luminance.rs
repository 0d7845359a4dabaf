//! rgb → luminance (Rec. 601 weights), the grey image the census, flow and feature ops compare,
//! and its adjoint.

pub const WEIGHTS: [f32; 3] = [0.299, 0.587, 0.114];

/// One grey value per rgb pixel.
pub fn forward(rgb: &[f32]) -> Vec<f32> {
    rgb.chunks_exact(3).map(|p| WEIGHTS[0] * p[0] + WEIGHTS[1] * p[1] + WEIGHTS[2] * p[2]).collect()
}

/// d grey → d rgb.
pub fn backward(grad_grey: &[f32]) -> Vec<f32> {
    grad_grey.iter().flat_map(|g| WEIGHTS.map(|w| w * g)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn white_is_one_and_the_adjoint_is_the_transpose() {
        assert!((super::forward(&[1.0, 1.0, 1.0])[0] - 1.0).abs() < 1e-6);
        let (x, g) = ([0.2, 0.5, 0.9, 0.1, 0.3, 0.7], [0.4, -1.3]);
        let lhs: f32 = super::forward(&x).iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f32 = super::backward(&g).iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-6);
    }
}
