//! FaceMesh's landmark model, as MediaPipe's face landmark graph runs it: a square crop
//! (1.5 × the detection box's longer side, turned so the eyes are level) resampled into
//! 192 × 192 with replicated edges and RGB in [0, 1]; 468 points (x, y in crop pixels, z in the
//! same scale) turned and scaled back into the image, and the face-presence score.

use crate::blazeface::Detection;
use crate::warp::{self, Border, RotatedRect};
use image::RgbImage;

pub const INPUT: usize = 192;
pub const POINTS: usize = 468;
/// The crop's side as a multiple of the detection box's longer side.
const CROP_SCALE: f32 = 1.5;

/// Rotation that levels the line from `from` to `to` (radians, MediaPipe's sign: positive turns
/// the crop clockwise on screen).
fn level(from: [f32; 2], to: [f32; 2]) -> f32 {
    let angle = -(-(to[1] - from[1])).atan2(to[0] - from[0]);
    // Normalised into [-π, π).
    angle - 2.0 * std::f32::consts::PI * ((angle + std::f32::consts::PI) / (2.0 * std::f32::consts::PI)).floor()
}

/// The landmark crop for a detection: centred on its box, the box's longer side × 1.5, turned
/// by the angle of the eye keypoints (right eye → left eye).
pub fn roi_from_detection(d: &Detection) -> RotatedRect {
    let side = d.bbox[2].max(d.bbox[3]) * CROP_SCALE;
    RotatedRect { center: [d.bbox[0] + d.bbox[2] / 2.0, d.bbox[1] + d.bbox[3] / 2.0], width: side, height: side, rotation: level(d.keypoints[0], d.keypoints[1]) }
}

/// The landmark crop for the next video frame from this frame's 468 points (MediaPipe's tracking
/// mode, `face_landmarks_to_roi`): centred on the points' bounding box, its longer side × 1.5,
/// turned by the line between the outer eye corners (points 33 → 263).
pub fn roi_from_landmarks(points: &[[f32; 3]]) -> RotatedRect {
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for p in points {
        for c in 0..2 {
            lo[c] = lo[c].min(p[c]);
            hi[c] = hi[c].max(p[c]);
        }
    }
    let side = (hi[0] - lo[0]).max(hi[1] - lo[1]) * CROP_SCALE;
    let rotation = level([points[33][0], points[33][1]], [points[263][0], points[263][1]]);
    RotatedRect { center: [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0], width: side, height: side, rotation }
}

/// The landmarker's input tensor for a crop, NHWC.
pub fn input(image: &RgbImage, roi: &RotatedRect) -> Vec<f32> {
    warp::to_tensor(image, roi, (INPUT, INPUT), Border::Replicate, (0.0, 1.0))
}

/// The model's 468 × (x, y, z) crop-pixel outputs back in the image: x, y in pixels, z in the
/// same pixel scale (negative towards the camera), as MediaPipe's landmark projection.
pub fn project(raw: &[f32], roi: &RotatedRect) -> Vec<[f32; 3]> {
    raw.chunks_exact(3)
        .map(|p| {
            let [x, y] = roi.point(p[0] / INPUT as f32, p[1] / INPUT as f32);
            [x, y, p[2] / INPUT as f32 * roi.width]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eyes_on_a_line_falling_to_the_right_turn_the_crop_clockwise() {
        assert_eq!(level([0.0, 0.0], [10.0, 0.0]), 0.0);
        // The subject's left eye 10 px right and 10 px lower: +45°.
        assert!((level([0.0, 0.0], [10.0, 10.0]) - std::f32::consts::FRAC_PI_4).abs() < 1e-6);
        assert!((level([0.0, 0.0], [-10.0, 0.0]).abs() - std::f32::consts::PI).abs() < 1e-6);
    }

    #[test]
    fn the_crop_is_square_on_the_box_and_points_map_back_through_it() {
        let d = Detection { score: 1.0, bbox: [100.0, 50.0, 80.0, 60.0], keypoints: [[120.0, 70.0], [160.0, 70.0], [0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]] };
        let roi = roi_from_detection(&d);
        assert_eq!(roi, RotatedRect { center: [140.0, 80.0], width: 120.0, height: 120.0, rotation: 0.0 });
        // The crop's centre and its corner.
        let p = project(&[96.0, 96.0, 19.2, 0.0, 0.0, 0.0], &roi);
        assert_eq!(p[0], [140.0, 80.0, 12.0]);
        assert_eq!(p[1], [80.0, 20.0, 0.0]);
    }
}
