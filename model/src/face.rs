//! The face's anatomy, read off the canonical mesh's landmarks (millimetres): where the eyes,
//! brows, nose, mouth and chin are, the lip and eyelid lines that expressions must not cross,
//! the eye / nose / mouth regions and the mean albedo.
//!
//! Axes: x to the image right (the subject's left), y up, z towards the camera. The canonical
//! mesh is exactly mirror-symmetric, so everything here is written in |x| and stays symmetric.

use crate::canonical::{self, Contours};

/// exp(-½((dx/sx)² + (dy/sy)²)).
pub fn bump(dx: f64, dy: f64, sx: f64, sy: f64) -> f64 {
    (-0.5 * ((dx / sx).powi(2) + (dy / sy).powi(2))).exp()
}

pub fn smoothstep(t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Region labels, as PGN's weight mask W uses them (eyes, nose and mouth weigh 5).
pub const REGION_SKIN: u32 = 0;
pub const REGION_EYE: u32 = 1;
pub const REGION_NOSE: u32 = 2;
pub const REGION_MOUTH: u32 = 3;

/// How many iBUG landmarks there are.
pub const N_LANDMARKS: usize = 68;

/// A polyline or polygon in the (x, y) plane.
type Line = Vec<[f64; 2]>;

/// The anatomy of the (scaled) canonical mesh. Eye and brow quantities are the subject's left
/// side (x > 0); features are evaluated at |x|.
#[derive(Clone, Debug)]
pub struct Anatomy {
    /// Centre of the left eye's opening.
    pub eye: [f64; 2],
    /// The left eye's lid contours (lower, upper), inner corner to outer corner.
    pub lids: [Line; 2],
    /// Centre of the left brow's band.
    pub brow_centre: [f64; 2],
    /// Inner lip contours (lower, upper), corner to corner (left to right).
    pub inner_lips: [Line; 2],
    /// Closed outlines (first point repeated): the left eye's opening, the left brow's band, the
    /// lips' outer contour, the gap between the lips.
    pub opening: Line,
    pub brow_band: Line,
    pub lips: Line,
    pub mouth_gap: Line,
    /// The mouth line's height at the midline and the mouth corners' |x|.
    pub mouth_y: f64,
    pub mouth_corner_x: f64,
    /// The nose: tip, the bridge's height (nasion), the base (subnasale) and the wings' |x|.
    pub nose_tip: [f64; 2],
    pub bridge_y: f64,
    pub nose_base_y: f64,
    pub ala_x: f64,
    /// The chin's lowest point, the widest |x|.
    pub chin_y: f64,
    pub half_width: f64,
    /// The depth (z) of the face's front on average.
    pub mean_z: f64,
}

fn xy(p: &[[f64; 3]], indices: &[usize]) -> Line {
    indices.iter().map(|&i| [p[i][0], p[i][1]]).collect()
}

/// The same polyline ordered by x (ascending).
fn by_x(mut l: Line) -> Line {
    l.sort_by(|a, b| a[0].total_cmp(&b[0]));
    l
}

/// y of an x-monotone polyline at x, held at its ends beyond them.
pub fn y_at(line: &[[f64; 2]], x: f64) -> f64 {
    if x <= line[0][0] {
        return line[0][1];
    }
    for w in line.windows(2) {
        if x <= w[1][0] {
            let t = (x - w[0][0]) / (w[1][0] - w[0][0]).max(1e-12);
            return w[0][1] + t * (w[1][1] - w[0][1]);
        }
    }
    line[line.len() - 1][1]
}

/// Whether (x, y) lies inside a closed polygon (even–odd rule).
pub fn inside(polygon: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let n = polygon.len();
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[(i + 1) % n]);
        if (a[1] > y) != (b[1] > y) && x < a[0] + (y - a[1]) / (b[1] - a[1]) * (b[0] - a[0]) {
            inside = !inside;
        }
    }
    inside
}

/// Distance from (x, y) to a polyline.
pub fn distance(line: &[[f64; 2]], x: f64, y: f64) -> f64 {
    line.windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let t = (((x - a[0]) * dx + (y - a[1]) * dy) / (dx * dx + dy * dy).max(1e-12)).clamp(0.0, 1.0);
            ((x - a[0] - t * dx).powi(2) + (y - a[1] - t * dy).powi(2)).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The polygon as a polyline that returns to its start.
fn closed(polygon: &[[f64; 2]]) -> Line {
    polygon.iter().chain(polygon.first()).copied().collect()
}

/// Whether (x, y) lies inside a closed outline or within `margin` of it.
fn near(outline: &[[f64; 2]], x: f64, y: f64, margin: f64) -> bool {
    inside(outline, x, y) || distance(outline, x, y) <= margin
}

/// How wide the albedo's edges are (mm).
pub const EDGE_MM: f64 = 2.0;

/// 1 deep inside a closed outline, 0 far outside, ½ on it, over `EDGE_MM` across it.
fn soft_inside(outline: &[[f64; 2]], x: f64, y: f64) -> f64 {
    let t = smoothstep(0.5 + distance(outline, x, y) / EDGE_MM);
    if inside(outline, x, y) { t } else { 1.0 - t }
}

/// A closed polygon from two corner-to-corner chains (the second reversed).
fn ring(lower: &[[f64; 2]], upper: &[[f64; 2]]) -> Line {
    lower.iter().chain(upper.iter().rev()).copied().collect()
}

impl Anatomy {
    /// Reads the anatomy off the canonical mesh's positions (in mm).
    pub fn new(p: &[[f64; 3]]) -> Self {
        let Contours { lips_outer, lips_inner, eyes, brows, oval: _ } = canonical::contours();
        let lids = [by_x(xy(p, &eyes[1][0])), by_x(xy(p, &eyes[1][1]))];
        let opening = ring(&lids[0], &lids[1]);
        let eye = opening.iter().fold([0.0, 0.0], |s, q| [s[0] + q[0], s[1] + q[1]]).map(|s| s / opening.len() as f64);
        let band = ring(&by_x(xy(p, &brows[1][0])), &by_x(xy(p, &brows[1][1])));
        let brow_centre = band.iter().fold([0.0, 0.0], |s, q| [s[0] + q[0], s[1] + q[1]]).map(|s| s / band.len() as f64);
        let inner_lips = [by_x(xy(p, &lips_inner[0])), by_x(xy(p, &lips_inner[1]))];
        let lips = ring(&by_x(xy(p, &lips_outer[0])), &by_x(xy(p, &lips_outer[1])));
        let mouth_y = (y_at(&inner_lips[0], 0.0) + y_at(&inner_lips[1], 0.0)) / 2.0;
        let ibug = |k: usize| {
            let idx = canonical::IBUG_FROM_FACEMESH[k];
            let n = idx.len() as f64;
            idx.iter().fold([0.0, 0.0], |s, &i| [s[0] + p[i][0] / n, s[1] + p[i][1] / n])
        };
        let front: Vec<&[f64; 3]> = p.iter().filter(|q| q[0].abs() < 40.0).collect();
        Self {
            eye,
            opening: closed(&opening),
            brow_band: closed(&band),
            lips: closed(&lips),
            mouth_gap: closed(&ring(&inner_lips[0], &inner_lips[1])),
            lids,
            brow_centre,
            mouth_y,
            mouth_corner_x: p[291][0].abs(),
            inner_lips,
            nose_tip: ibug(30),
            bridge_y: p[168][1],
            nose_base_y: p[2][1],
            ala_x: ibug(35)[0].abs().max(p[98][0].abs()),
            chin_y: p[152][1],
            half_width: p.iter().map(|q| q[0].abs()).fold(0.0, f64::max),
            mean_z: front.iter().map(|q| q[2]).sum::<f64>() / front.len() as f64,
        }
    }

    /// The mouth line: halfway between the inner lips, held at the corners beyond them.
    pub fn mouth_line(&self, x: f64) -> f64 {
        (y_at(&self.inner_lips[0], x) + y_at(&self.inner_lips[1], x)) / 2.0
    }

    /// 1 on the lower lip, chin and jaw, 0 on the upper lip and above: a step across the mouth
    /// line that is sharp between the lips (so a jaw motion never drags the upper lip) and widens
    /// beyond the corners into the cheeks.
    pub fn below_mouth(&self, x: f64, y: f64) -> f64 {
        let beyond = (x.abs() - self.mouth_corner_x).max(0.0);
        let width = 2.0 + 0.6 * beyond;
        smoothstep(0.5 + (self.mouth_line(x) - y) / (2.0 * width))
    }

    /// The eye line at |x|: halfway between the lids, held at the corners.
    pub fn eye_line(&self, x: f64) -> f64 {
        (y_at(&self.lids[0], x.abs()) + y_at(&self.lids[1], x.abs())) / 2.0
    }

    /// 1 on the upper lid, 0 on the lower lid: the same sharp step across the eye line.
    pub fn above_eye_line(&self, x: f64, y: f64) -> f64 {
        let beyond = (x.abs() - self.lids[0][self.lids[0].len() - 1][0]).max(0.0) + (self.lids[0][0][0] - x.abs()).max(0.0);
        let width = 1.5 + 0.6 * beyond;
        smoothstep(0.5 + (y - self.eye_line(x)) / (2.0 * width))
    }

    /// Region label of a point of the face.
    pub fn region(&self, x: f64, y: f64) -> u32 {
        let ax = x.abs();
        if near(&self.opening, ax, y, 5.0) {
            REGION_EYE
        } else if near(&self.lips, x, y, 5.0) {
            REGION_MOUTH
        } else if (self.nose_base_y - 3.0..=self.bridge_y).contains(&y) && {
            let t = ((self.bridge_y - y) / (self.bridge_y - self.nose_base_y)).clamp(0.0, 1.0);
            ax <= 6.0 + (self.ala_x + 3.0 - 6.0) * smoothstep(t / 0.8)
        } {
            REGION_NOSE
        } else {
            REGION_SKIN
        }
    }

    /// The mean albedo (linear RGB in [0, 1]) before the seeded mottling: skin, lips, the dark of
    /// the mouth between the lips, brows, sclera and iris in the lid opening, the lash line,
    /// nostrils, a little redness on the cheeks. Symmetric: it reads |x|. Every edge is soft over
    /// `EDGE_MM`: a renderer samples a face 165 mm wide at 130–270 px (0.6–1.3 mm per pixel),
    /// and a sharper edge would alias, and make bilinear sampling error large at every edge.
    pub fn base_albedo(&self, x: f64, y: f64) -> [f64; 3] {
        let ax = x.abs();
        let mut c = [0.74, 0.55, 0.45];
        let mut mix = |target: [f64; 3], w: f64| {
            for k in 0..3 {
                c[k] += (target[k] - c[k]) * w.clamp(0.0, 1.0);
            }
        };
        mix([0.80, 0.50, 0.45], 0.5 * bump(ax - self.eye[0] - 5.0, y - self.nose_tip[1] + 5.0, 12.0, 10.0));
        // Lips: inside the outer contour; between them the dark of the mouth.
        mix([0.62, 0.28, 0.28], soft_inside(&self.lips, x, y));
        mix([0.30, 0.15, 0.13], 0.9 * soft_inside(&self.mouth_gap, x, y));
        // Brows: a dark band with a soft edge.
        mix([0.22, 0.15, 0.11], 0.85 * soft_inside(&self.brow_band, ax, y));
        // Eyes: sclera in the lid opening, the iris, the lash line along the upper lid.
        let in_opening = soft_inside(&self.opening, ax, y);
        mix([0.86, 0.83, 0.80], in_opening);
        let iris = ((ax - self.eye[0]).powi(2) + (y - self.eye[1]).powi(2)).sqrt();
        mix([0.24, 0.17, 0.12], in_opening * smoothstep(0.5 + (5.5 - iris) / EDGE_MM));
        mix([0.20, 0.13, 0.10], 0.8 * (1.0 - smoothstep(distance(&self.lids[1], ax, y) / EDGE_MM)));
        // Nostrils, under the tip beside the columella.
        mix([0.28, 0.16, 0.14], bump(ax - 0.45 * self.ala_x, y - self.nose_base_y - 2.0, 2.5, 1.6));
        c
    }
}
