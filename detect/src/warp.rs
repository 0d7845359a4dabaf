//! A rotated rectangle of an image resampled into a model's input tensor, as MediaPipe's
//! `ImageToTensorCalculator` does it on the CPU: the rectangle's corners map onto the tensor's
//! corners (not its pixel centres), OpenCV's `warpPerspective` samples bilinearly with
//! coordinates in 1/32 pixel and 15-bit weights, rounds to 8 bits, and only then the value is
//! scaled into the model's range. Matching each step, down to the last bits of the transform,
//! keeps the landmarks within thousandths of a pixel of MediaPipe's own graph.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// A rectangle in image pixels, turned by `rotation` radians (clockwise on screen, y down) about
/// its centre: MediaPipe's `RotatedRect`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RotatedRect {
    pub center: [f32; 2],
    pub width: f32,
    pub height: f32,
    pub rotation: f32,
}

impl RotatedRect {
    /// The image point that tensor coordinate (u, v) ∈ [0, 1]² shows: (0, 0) is the rectangle's
    /// top-left corner, u runs along its (rotated) width.
    pub fn point(&self, u: f32, v: f32) -> [f32; 2] {
        let (s, c) = self.rotation.sin_cos();
        let (x, y) = ((u - 0.5) * self.width, (v - 0.5) * self.height);
        [self.center[0] + c * x - s * y, self.center[1] + s * x + c * y]
    }
}

/// What lies outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Border {
    /// Black (the detector's letterbox).
    Zero,
    /// The nearest edge pixel (the landmarker's crop).
    Replicate,
}

/// OpenCV's INTER_BITS: sub-pixel positions in 1/32.
const TAB: i64 = 32;

/// The rectangle's corners as OpenCV's `boxPoints` computes them (in f32): bottom-left,
/// top-left, top-right, bottom-right for an unturned rectangle.
fn box_points(r: &RotatedRect) -> [[f32; 2]; 4] {
    let degrees = ((r.rotation * 180.0) as f64 / std::f64::consts::PI) as f32;
    let radians = degrees as f64 * std::f64::consts::PI / 180.0;
    let (b, a) = (radians.cos() as f32 * 0.5, radians.sin() as f32 * 0.5);
    let [cx, cy] = r.center;
    let p0 = [cx - a * r.height - b * r.width, cy + b * r.height - a * r.width];
    let p1 = [cx + a * r.height - b * r.width, cy - b * r.height - a * r.width];
    [p0, p1, [2.0 * cx - p0[0], 2.0 * cy - p0[1]], [2.0 * cx - p1[0], 2.0 * cy - p1[1]]]
}

/// OpenCV's `hal::LU` (Gaussian elimination with partial pivoting) solving `a x = b` in place.
fn lu_solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> [f64; N] {
    for i in 0..N {
        let k = (i..N).fold(i, |k, j| if a[j][i].abs() > a[k][i].abs() { j } else { k });
        if k != i {
            a.swap(i, k);
            b.swap(i, k);
        }
        let d = -1.0 / a[i][i];
        for j in i + 1..N {
            let alpha = a[j][i] * d;
            for c in i + 1..N {
                a[j][c] += alpha * a[i][c];
            }
            b[j] += alpha * b[i];
        }
        a[i][i] = -d;
    }
    for i in (0..N).rev() {
        let mut s = b[i];
        for c in i + 1..N {
            s -= a[i][c] * b[c];
        }
        b[i] = s * a[i][i];
    }
    b
}

/// The tensor → image map MediaPipe's converter ends up with: OpenCV's
/// `getPerspectiveTransform` from the rectangle's corners to the tensor's, inverted by OpenCV's
/// 3 × 3 cofactor formula, each step in OpenCV's arithmetic. Its last bits decide how ties
/// round in the 1/32-pixel positions (a letterbox of 910 × 1137 rounds them up, 485 × 485
/// down), which moves MediaPipe's boxes by up to 0.1 px.
fn tensor_to_image(rect: &RotatedRect, size: (usize, usize)) -> [f64; 9] {
    let src = box_points(rect);
    let (w, h) = (size.0 as f32, size.1 as f32);
    let dst = [[0.0, h], [0.0, 0.0], [w, 0.0], [w, h]];
    let mut a = [[0.0f64; 8]; 8];
    let mut b = [0.0f64; 8];
    for i in 0..4 {
        let ([sx, sy], [dx, dy]) = (src[i], dst[i]);
        a[i][0] = sx as f64;
        a[i][1] = sy as f64;
        a[i][2] = 1.0;
        a[i + 4][3] = sx as f64;
        a[i + 4][4] = sy as f64;
        a[i + 4][5] = 1.0;
        a[i][6] = (-sx * dx) as f64;
        a[i][7] = (-sy * dx) as f64;
        a[i + 4][6] = (-sx * dy) as f64;
        a[i + 4][7] = (-sy * dy) as f64;
        b[i] = dx as f64;
        b[i + 4] = dy as f64;
    }
    let x = lu_solve(a, b);
    let m = [x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], 1.0];
    let at = |r: usize, c: usize| m[3 * r + c];
    let det = at(0, 0) * (at(1, 1) * at(2, 2) - at(1, 2) * at(2, 1)) - at(0, 1) * (at(1, 0) * at(2, 2) - at(1, 2) * at(2, 0)) + at(0, 2) * (at(1, 0) * at(2, 1) - at(1, 1) * at(2, 0));
    let d = 1.0 / det;
    [
        (at(1, 1) * at(2, 2) - at(1, 2) * at(2, 1)) * d,
        (at(0, 2) * at(2, 1) - at(0, 1) * at(2, 2)) * d,
        (at(0, 1) * at(1, 2) - at(0, 2) * at(1, 1)) * d,
        (at(1, 2) * at(2, 0) - at(1, 0) * at(2, 2)) * d,
        (at(0, 0) * at(2, 2) - at(0, 2) * at(2, 0)) * d,
        (at(0, 2) * at(1, 0) - at(0, 0) * at(1, 2)) * d,
        (at(1, 0) * at(2, 1) - at(1, 1) * at(2, 0)) * d,
        (at(0, 1) * at(2, 0) - at(0, 0) * at(2, 1)) * d,
        (at(0, 0) * at(1, 1) - at(0, 1) * at(1, 0)) * d,
    ]
}

/// The `size.0 × size.1` tensor (HWC, row-major) of `rect`, with 8-bit values mapped linearly
/// onto `range` (0 → range.0, 255 → range.1).
pub fn to_tensor(image: &RgbImage, rect: &RotatedRect, size: (usize, usize), border: Border, range: (f32, f32)) -> Vec<f32> {
    let (out_w, out_h) = size;
    let (w, h) = (image.width() as i64, image.height() as i64);
    let pixels = image.as_raw();
    let m = tensor_to_image(rect, size);
    let scale = (range.1 - range.0) / 255.0;
    let fetch = |x: i64, y: i64, c: usize| -> i64 {
        let inside = x >= 0 && y >= 0 && x < w && y < h;
        match border {
            Border::Zero if !inside => 0,
            _ => pixels[3 * (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize + c] as i64,
        }
    };
    let mut out = vec![0.0f32; out_w * out_h * 3];
    // OpenCV's warpPerspective walks blocks of 64 × 16 pixels and starts each row of a block
    // from the block's left edge: the same sums in the same order give the same last bits.
    let block_h = 16.min(out_h);
    let block_w = (1024 / block_h).min(out_w);
    let block_h = (1024 / block_w).min(out_h);
    for by in (0..out_h).step_by(block_h) {
        for bx in (0..out_w).step_by(block_w) {
            for y in by..(by + block_h).min(out_h) {
                let x0 = m[0] * bx as f64 + m[1] * y as f64 + m[2];
                let y0 = m[3] * bx as f64 + m[4] * y as f64 + m[5];
                let w0 = m[6] * bx as f64 + m[7] * y as f64 + m[8];
                for x in bx..(bx + block_w).min(out_w) {
                    let dx = (x - bx) as f64;
                    let ww = w0 + m[6] * dx;
                    let ww = if ww != 0.0 { TAB as f64 / ww } else { 0.0 };
                    // Fixed point: integer pixel and a 1/32 fraction (cvRound: ties to even).
                    let fx = ((x0 + m[0] * dx) * ww).round_ties_even() as i64;
                    let fy = ((y0 + m[3] * dx) * ww).round_ties_even() as i64;
                    let (ix, iy, ax, ay) = (fx.div_euclid(TAB), fy.div_euclid(TAB), fx.rem_euclid(TAB), fy.rem_euclid(TAB));
                    // Weights (32 - a)(32 - b)·32 etc. sum to 2^15 exactly.
                    let weights = [(TAB - ax) * (TAB - ay) * 32, ax * (TAB - ay) * 32, (TAB - ax) * ay * 32, ax * ay * 32];
                    for c in 0..3 {
                        let sum = weights[0] * fetch(ix, iy, c) + weights[1] * fetch(ix + 1, iy, c) + weights[2] * fetch(ix, iy + 1, c) + weights[3] * fetch(ix + 1, iy + 1, c);
                        let value = ((sum + (1 << 14)) >> 15).clamp(0, 255);
                        out[3 * (y * out_w + x) + c] = value as f32 * scale + range.0;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 10) as u8, (y * 10) as u8, 100]))
    }

    #[test]
    fn corners_map_to_corners_and_pixels_sample_at_integer_steps() {
        // A 16 × 16 rectangle at the image's top-left into 8 × 8: output pixel i shows the source
        // at 2i (corner-to-corner), not at 2i + ½ (centre-to-centre).
        let image = ramp(20, 20);
        let rect = RotatedRect { center: [8.0, 8.0], width: 16.0, height: 16.0, rotation: 0.0 };
        let t = to_tensor(&image, &rect, (8, 8), Border::Zero, (0.0, 255.0));
        for i in 0..8 {
            assert_eq!(t[3 * i], (20 * i) as f32, "x of pixel {i}");
            assert_eq!(t[3 * 8 * i + 1], (20 * i) as f32, "y of row {i}");
        }
    }

    #[test]
    fn borders_are_black_or_replicated() {
        let image = ramp(4, 4);
        let rect = RotatedRect { center: [2.0, 2.0], width: 8.0, height: 8.0, rotation: 0.0 };
        let zero = to_tensor(&image, &rect, (4, 4), Border::Zero, (-1.0, 1.0));
        let replicate = to_tensor(&image, &rect, (4, 4), Border::Replicate, (-1.0, 1.0));
        // Output pixel 0 samples (-2, -2): outside.
        assert_eq!(&zero[..3], &[-1.0, -1.0, -1.0]);
        assert_eq!(&replicate[..2], &[-1.0, -1.0]);
        assert!((replicate[2] - (100.0 / 127.5 - 1.0)).abs() < 1e-6, "blue 100 replicated: {}", replicate[2]);
    }

    #[test]
    fn a_quarter_turn_reads_the_image_sideways() {
        // Turned by 90°, the tensor's x axis runs down the image: tensor (x, 0) shows column 3.
        let image = ramp(7, 7);
        let rect = RotatedRect { center: [3.5, 3.5], width: 7.0, height: 7.0, rotation: std::f32::consts::FRAC_PI_2 };
        let t = to_tensor(&image, &rect, (7, 7), Border::Replicate, (0.0, 255.0));
        for x in 0..7 {
            assert_eq!(t[3 * x + 1], (10 * x) as f32, "image row under tensor x = {x}");
            assert_eq!(t[3 * x], 60.0, "image column 6 (the rotated top edge)");
        }
    }
}
