//! CEST's canonical alignment I∘v (`004_…` §1; the paper's Appendix A.1, which gives the
//! details, is not in the file): the image warped in its own plane by the weak pose's similarity
//! part — roll, scale and translation undone — so the face sits upright at the reference scale
//! (the pose head's starting scale, `network::reference_scale`) with the model's origin at the
//! crop's centre. Yaw and pitch stay: no warp of the image plane can undo them.
//!
//! With R = R_z(roll) R_x(pitch) R_y(yaw) and image rows u = f (R X)_x + t_x,
//! v = −f (R X)_y + t_y, a canonical pixel p_c (same yaw and pitch, roll 0, scale s₀, origin at
//! the centre c) shows the point the image shows at
//!   p = t + (f / s₀) [[cos r, sin r], [−sin r, cos r]] (p_c − c).

use faceforge_components::{Image, PoseParams};
use faceforge_kernels::sample::{self, SampleShape};

/// The map p_c → p of a pose: (2 × 2 matrix, row-major; offset), p = M (p_c − c) + t.
pub fn similarity(params: &PoseParams, reference_scale: f32) -> [f32; 4] {
    let k = params.log_scale.exp() / reference_scale;
    let (sin, cos) = params.angles[2].sin_cos();
    [k * cos, k * sin, -k * sin, k * cos]
}

/// The `size` × `size` canonical crop of `image` (rgb, rows from the top), bilinear, zero
/// outside the image.
pub fn canonical_crop(image: &Image, params: &PoseParams, reference_scale: f32, size: usize) -> Vec<f32> {
    let m = similarity(params, reference_scale);
    let centre = 0.5 * size as f32;
    let positions: Vec<f32> = (0..size * size)
        .flat_map(|i| {
            let (du, dv) = ((i % size) as f32 + 0.5 - centre, (i / size) as f32 + 0.5 - centre);
            [m[0] * du + m[1] * dv + params.translation[0], m[2] * du + m[3] * dv + params.translation[1]]
        })
        .collect();
    let shape = SampleShape { batch: 1, width: image.width, height: image.height, channels: 3, points: size * size };
    sample::forward_cpu(shape, &image.rgb, &positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faceforge_components::Pose;

    /// A smooth picture: what a camera would record at any point of the plane.
    fn scene(x: f32, y: f32) -> [f32; 3] {
        let a = 0.5 + 0.2 * (0.15 * x + 0.1 * y).sin() + 0.15 * (0.07 * x - 0.12 * y).cos();
        [a, 0.6 + 0.3 * (0.05 * x).sin() * (0.08 * y).cos(), 0.4 + 0.002 * (x - y)]
    }

    fn picture(size: usize, at: impl Fn(f32, f32) -> [f32; 2]) -> Image {
        let rgb = (0..size * size).flat_map(|i| { let p = at((i % size) as f32 + 0.5, (i / size) as f32 + 0.5); scene(p[0], p[1]) }).collect();
        Image { width: size, height: size, rgb }
    }

    #[test]
    fn a_rotated_image_aligned_with_its_true_pose_returns_the_canonical_crop() {
        let (size, s0) = (96, 0.5);
        let params = PoseParams { angles: [0.4, -0.1, 25f32.to_radians()], log_scale: (0.5f32 * 1.3).ln(), translation: [100.0, 94.0] };
        // The canonical crop is the picture itself; the photograph shows it rolled, scaled and
        // moved: its pixel p shows the canonical point p_c = c + M⁻¹ (p − t).
        let m = similarity(&params, s0);
        let det = m[0] * m[3] - m[1] * m[2];
        let c = 0.5 * size as f32;
        let photo = picture(200, |u, v| {
            let (du, dv) = (u - params.translation[0], v - params.translation[1]);
            [c + (m[3] * du - m[1] * dv) / det, c + (-m[2] * du + m[0] * dv) / det]
        });
        let canonical = picture(size, |u, v| [u, v]);
        let aligned = canonical_crop(&photo, &params, s0, size);
        let error = |crop: &[f32]| crop.iter().zip(&canonical.rgb).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let worst = error(&aligned);
        eprintln!("canonical crop from the rotated photograph: worst difference {:.3}/255", 255.0 * worst);
        assert!(worst < 1.0 / 255.0, "worst difference {:.2}/255", 255.0 * worst);
        // The roll the other way round does not align it.
        let wrong = PoseParams { angles: [0.4, -0.1, -25f32.to_radians()], ..params.clone() };
        assert!(error(&canonical_crop(&photo, &wrong, s0, size)) > 20.0 / 255.0);
    }

    #[test]
    fn the_similarity_carries_the_canonical_projection_to_the_posed_one() {
        // A model point seen at the pose and at the canonical pose (roll 0, scale s₀, origin at
        // the centre, same yaw and pitch): p = M (p_c − c) + t.
        let (size, s0) = (64.0f32, 0.45f32);
        let params = PoseParams { angles: [0.5, 0.2, -0.35], log_scale: 0.6f32.ln(), translation: [30.0, 36.0] };
        let canonical = PoseParams { angles: [0.5, 0.2, 0.0], log_scale: s0.ln(), translation: [size / 2.0; 2] };
        let project = |p: &PoseParams, x: [f32; 3]| {
            let Pose::WeakPerspective { t } = p.pose() else { unreachable!() };
            [0, 1].map(|r| t[r][0] * x[0] + t[r][1] * x[1] + t[r][2] * x[2] + t[r][3])
        };
        let m = similarity(&params, s0);
        for x in [[10.0, -20.0, 35.0], [-40.0, 5.0, 0.0], [0.0, 60.0, -15.0]] {
            let (p, pc) = (project(&params, x), project(&canonical, x));
            let (du, dv) = (pc[0] - size / 2.0, pc[1] - size / 2.0);
            let mapped = [m[0] * du + m[1] * dv + params.translation[0], m[2] * du + m[3] * dv + params.translation[1]];
            assert!((mapped[0] - p[0]).abs() < 1e-3 && (mapped[1] - p[1]).abs() < 1e-3, "{mapped:?} vs {p:?}");
        }
    }
}
