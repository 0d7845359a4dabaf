//! BlazeFace (short range), as MediaPipe's face detection graph runs it: the image letterboxed
//! into 128 × 128 (zero borders, RGB in [-1, 1]), 896 SSD anchors, the box and six keypoints
//! decoded against them, sigmoid scores, weighted non-maximum suppression, the letterbox removed.

use crate::warp::{self, Border, RotatedRect};
use image::RgbImage;
use serde::{Deserialize, Serialize};

pub const INPUT: usize = 128;
/// Regressors per anchor: box (x, y, w, h) and six keypoints (x, y).
const COORDS: usize = 16;
const KEYPOINTS: usize = 6;
/// Logits are clipped to ±100 before the sigmoid.
const SCORE_CLIP: f32 = 100.0;
/// Boxes overlapping the best one by more than this IoU are merged into it.
const NMS_IOU: f32 = 0.3;

/// A face found by the detector, in image pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub score: f32,
    /// x, y of the top-left corner, width, height.
    pub bbox: [f32; 4],
    /// Right eye, left eye (the subject's), nose tip, mouth centre, right ear tragion, left ear
    /// tragion.
    pub keypoints: [[f32; 2]; KEYPOINTS],
}

/// The anchors' centres in [0, 1]²: stride 8 → a 16 × 16 grid with 2 anchors per cell, strides
/// 16 (three layers) → an 8 × 8 grid with 6; all of size 1 (MediaPipe's `fixed_anchor_size`).
pub fn anchors() -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(896);
    for (grid, per_cell) in [(16usize, 2usize), (8, 6)] {
        for y in 0..grid {
            for x in 0..grid {
                for _ in 0..per_cell {
                    out.push([(x as f32 + 0.5) / grid as f32, (y as f32 + 0.5) / grid as f32]);
                }
            }
        }
    }
    out
}

/// The square around the whole image (the letterbox): its side is the image's longer side.
pub fn letterbox(width: u32, height: u32) -> RotatedRect {
    let side = width.max(height) as f32;
    RotatedRect { center: [width as f32 / 2.0, height as f32 / 2.0], width: side, height: side, rotation: 0.0 }
}

/// The detector's input tensor, NHWC.
pub fn input(image: &RgbImage) -> Vec<f32> {
    warp::to_tensor(image, &letterbox(image.width(), image.height()), (INPUT, INPUT), Border::Zero, (-1.0, 1.0))
}

fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit.clamp(-SCORE_CLIP, SCORE_CLIP)).exp())
}

/// Every anchor scoring at least `min_score`, decoded into image pixels (before suppression).
pub fn decode(regressors: &[f32], logits: &[f32], anchors: &[[f32; 2]], frame: &RotatedRect, min_score: f32) -> Vec<Detection> {
    // Tensor [0, 1]² → image pixels through the letterbox square.
    let to_image = |p: [f32; 2]| [frame.center[0] + (p[0] - 0.5) * frame.width, frame.center[1] + (p[1] - 0.5) * frame.height];
    let mut out = Vec::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let score = sigmoid(logits[i]);
        if score < min_score {
            continue;
        }
        let r = &regressors[COORDS * i..COORDS * (i + 1)];
        let at = |k: usize| to_image([r[k] / INPUT as f32 + anchor[0], r[k + 1] / INPUT as f32 + anchor[1]]);
        let centre = at(0);
        let (w, h) = (r[2] / INPUT as f32 * frame.width, r[3] / INPUT as f32 * frame.height);
        let mut keypoints = [[0.0; 2]; KEYPOINTS];
        for (k, p) in keypoints.iter_mut().enumerate() {
            *p = at(4 + 2 * k);
        }
        out.push(Detection { score, bbox: [centre[0] - w / 2.0, centre[1] - h / 2.0, w, h], keypoints });
    }
    out
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

/// MediaPipe's weighted non-maximum suppression: the best remaining detection takes every
/// other one overlapping it by more than the IoU threshold, and its box and keypoints become
/// the score-weighted mean of theirs; its score stays its own.
pub fn suppress(mut detections: Vec<Detection>) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(best) = detections.first().cloned() {
        let (merged, rest): (Vec<Detection>, Vec<Detection>) = detections.into_iter().partition(|d| iou(&best.bbox, &d.bbox) > NMS_IOU);
        detections = rest;
        let total: f32 = merged.iter().map(|d| d.score).sum();
        let mut mean = Detection { score: best.score, bbox: [0.0; 4], keypoints: [[0.0; 2]; KEYPOINTS] };
        for d in &merged {
            let w = d.score / total;
            // The box is averaged as corners (MediaPipe's xmin, ymin, xmax, ymax).
            let corners = [d.bbox[0], d.bbox[1], d.bbox[0] + d.bbox[2], d.bbox[1] + d.bbox[3]];
            for c in 0..4 {
                mean.bbox[c] += w * corners[c];
            }
            for (m, p) in mean.keypoints.iter_mut().zip(&d.keypoints) {
                m[0] += w * p[0];
                m[1] += w * p[1];
            }
        }
        mean.bbox[2] -= mean.bbox[0];
        mean.bbox[3] -= mean.bbox[1];
        out.push(mean);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_896_anchors_on_two_grids() {
        let a = anchors();
        assert_eq!(a.len(), 896);
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[1], a[0]);
        assert_eq!(a[2], [1.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[895], [7.5 / 8.0, 7.5 / 8.0]);
    }

    #[test]
    fn a_regressor_decodes_against_its_anchor_through_the_letterbox() {
        // A 200 × 100 image: the letterbox is 200 × 200 centred on (100, 50).
        let frame = letterbox(200, 100);
        let anchors = [[0.5, 0.5]];
        let mut r = [0.0f32; COORDS];
        r[0] = 12.8; // +0.1 of the input → +20 px
        r[2] = 64.0; // half the input → 100 px wide
        r[3] = 32.0;
        let d = decode(&r, &[0.0], &anchors, &frame, 0.5);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].score, 0.5);
        assert_eq!(d[0].bbox, [120.0 - 50.0, 50.0 - 25.0, 100.0, 50.0]);
        assert_eq!(d[0].keypoints[0], [100.0, 50.0]);
        assert!(decode(&r, &[-0.1], &anchors, &frame, 0.5).is_empty());
    }

    #[test]
    fn overlapping_boxes_merge_weighted_by_score_and_far_ones_stay() {
        let d = |score, x: f32| Detection { score, bbox: [x, 0.0, 10.0, 10.0], keypoints: [[x, 0.0]; KEYPOINTS] };
        let out = suppress(vec![d(0.6, 2.0), d(0.9, 0.0), d(0.8, 100.0)]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        let x = (0.9 * 0.0 + 0.6 * 2.0) / 1.5;
        assert!((out[0].bbox[0] - x).abs() < 1e-6 && (out[0].bbox[2] - 10.0).abs() < 1e-6);
        assert!((out[0].keypoints[3][0] - x).abs() < 1e-6);
        assert_eq!(out[1].bbox[0], 100.0);
    }
}
