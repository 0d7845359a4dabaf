//! The face's shape in millimetres, as analytic functions the generator samples: the outline of
//! the front face, the relief (a height field z(x, y) towards the camera), the 68 iBUG landmark
//! anchors, the regions and the mean albedo.
//!
//! Axes: x to the image right (the subject's left), y up, z towards the camera. Everything is
//! mirror-symmetric in x: features are written in |x| so the mean face is exactly symmetric.

/// Top of the forehead, widest row of the outline, lowest point of the chin (mm).
pub const Y_TOP: f64 = 100.0;
pub const Y_WIDEST: f64 = 15.0;
pub const Y_CHIN: f64 = -92.0;
/// Half-width of the face at its widest row (mm).
pub const HALF_WIDTH: f64 = 72.0;

/// Half-width of the face outline at height y (0 outside [Y_CHIN, Y_TOP]): an egg, an ellipse
/// above the widest row and a longer one below it for the jaw and chin.
pub fn half_width(y: f64) -> f64 {
    let t = if y >= Y_WIDEST {
        (y - Y_WIDEST) / (Y_TOP - Y_WIDEST)
    } else {
        (Y_WIDEST - y) / (Y_WIDEST - Y_CHIN)
    };
    if t >= 1.0 {
        0.0
    } else {
        HALF_WIDTH * (1.0 - t * t).sqrt()
    }
}

/// exp(-½((dx/sx)² + (dy/sy)²)).
pub fn bump(dx: f64, dy: f64, sx: f64, sy: f64) -> f64 {
    (-0.5 * ((dx / sx).powi(2) + (dy / sy).powi(2))).exp()
}

fn smoothstep(t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Eye centres at (±EYE_X, EYE_Y); the mouth line at MOUTH_Y; the nose tip at (0, NOSE_TIP_Y).
pub const EYE_X: f64 = 33.0;
pub const EYE_Y: f64 = 37.0;
pub const MOUTH_Y: f64 = -36.0;
pub const NOSE_TIP_Y: f64 = 0.0;

/// The relief of the mean face: a head-shaped cap plus the facial features.
pub fn relief(x: f64, y: f64) -> f64 {
    let ax = x.abs();
    // The head: an ellipsoid cap, steep at the outline so the sides turn away from the camera.
    let cap = 75.0 * (1.0 - (x / 80.0).powi(2) - ((y - 10.0) / 150.0).powi(2)).max(0.0).sqrt();

    // Nose: a ridge from the bridge to the tip, widening towards the tip, then the tip's bulb,
    // the wings (alae) and the nostrils.
    let ridge_height = if y >= 42.0 {
        8.0 * bump(0.0, y - 42.0, 1.0, 6.0)
    } else if y >= NOSE_TIP_Y {
        8.0 + 16.0 * smoothstep((42.0 - y) / 42.0)
    } else {
        24.0 * bump(0.0, y - NOSE_TIP_Y, 1.0, 5.0)
    };
    let ridge_width = 5.0 + 4.0 * smoothstep((42.0 - y) / 42.0);
    let nose = ridge_height * bump(x, 0.0, ridge_width, 1.0)
        + 5.0 * bump(x, y - 1.0, 6.0, 5.0)
        + 7.0 * bump(ax - 12.0, y + 5.0, 4.5, 5.0)
        - 3.0 * bump(ax - 6.0, y + 10.0, 2.5, 1.8);

    // Eyes: sockets, the eyeballs under the lids, the brow ridge, the glabella.
    let eyes = -13.0 * bump(ax - EYE_X, y - EYE_Y - 1.0, 15.0, 10.0)
        + 7.0 * bump(ax - EYE_X, y - EYE_Y, 10.0, 5.5)
        + 5.0 * bump(ax - EYE_X, y - 53.0, 18.0, 5.0)
        + 3.0 * bump(x, y - 47.0, 9.0, 7.0)
        - 3.0 * bump(ax - 62.0, y - 45.0, 8.0, 15.0);

    // Cheekbones, cheeks and the nasolabial folds.
    let cheeks = 6.0 * bump(ax - 48.0, y - 15.0, 13.0, 9.0) + 4.0 * bump(ax - 38.0, y + 15.0, 15.0, 15.0)
        - 1.5 * bump(ax - 24.0, y + 18.0, 3.0, 10.0);

    // Lips, the mouth line and its corners, the philtrum.
    let mouth = 5.0 * bump(x, y - MOUTH_Y - 5.0, 17.0, 4.0) + 5.5 * bump(x, y - MOUTH_Y + 6.0, 15.0, 4.5)
        - 4.0 * bump(x, y - MOUTH_Y, 23.0, 1.3)
        - 2.0 * bump(ax - 25.0, y - MOUTH_Y, 3.0, 3.0)
        - 1.2 * bump(x, y + 21.0, 2.5, 5.0);

    // The chin and the fold above it.
    let chin = 7.0 * bump(x, y + 70.0, 14.0, 10.0) - 3.0 * bump(x, y + 53.0, 15.0, 4.0);

    cap + nose + eyes + cheeks + mouth + chin
}

/// Region labels, as PGN's weight mask W uses them (eyes, nose and mouth weigh 5).
pub const REGION_SKIN: u32 = 0;
pub const REGION_EYE: u32 = 1;
pub const REGION_NOSE: u32 = 2;
pub const REGION_MOUTH: u32 = 3;

pub fn region(x: f64, y: f64) -> u32 {
    let ax = x.abs();
    if ((ax - EYE_X) / 17.0).powi(2) + ((y - EYE_Y) / 10.0).powi(2) <= 1.0 {
        REGION_EYE
    } else if ((x / 31.0).powi(2) + ((y - MOUTH_Y) / 15.0).powi(2)) <= 1.0 {
        REGION_MOUTH
    } else if (-15.0..=40.0).contains(&y) && ax <= 8.0 + 10.0 * smoothstep((40.0 - y) / 45.0) {
        REGION_NOSE
    } else {
        REGION_SKIN
    }
}

/// The mean albedo (linear RGB in [0, 1]) before the seeded mottling: skin, lips, brows,
/// sclera and iris, nostrils, a little redness on the cheeks.
pub fn base_albedo(x: f64, y: f64) -> [f64; 3] {
    let ax = x.abs();
    let mut c = [0.74, 0.55, 0.45];
    let mut mix = |target: [f64; 3], w: f64| {
        for k in 0..3 {
            c[k] += (target[k] - c[k]) * w.clamp(0.0, 1.0);
        }
    };
    mix([0.80, 0.50, 0.45], 0.5 * bump(ax - 40.0, y + 8.0, 12.0, 10.0));
    // Lips: inside the band between the outer lip contour and the mouth line.
    let lip = bump(x, y - MOUTH_Y, 22.0, 7.0).powf(0.5) * smoothstep((24.0 - ax) / 4.0);
    mix([0.62, 0.28, 0.28], 1.5 * lip - 0.3);
    mix([0.30, 0.15, 0.13], bump(x, y - MOUTH_Y, 22.0, 0.9));
    // Brows: a dark band with a soft edge.
    mix([0.22, 0.15, 0.11], 1.6 * bump(ax - 33.0, y - 54.0, 14.0, 3.0) - 0.2);
    // Eyes: sclera in the lid opening, iris, the lash line.
    let opening = ((ax - EYE_X) / 14.0).powi(2) + ((y - EYE_Y) / 4.5).powi(2);
    if opening <= 1.0 {
        mix([0.86, 0.83, 0.80], 1.0);
        let iris = ((ax - EYE_X).powi(2) + (y - EYE_Y).powi(2)).sqrt();
        mix([0.24, 0.17, 0.12], smoothstep((6.0 - iris) / 1.5));
    }
    mix([0.20, 0.13, 0.10], 0.7 * bump(ax - EYE_X, y - EYE_Y - 4.5, 14.0, 1.0));
    // Nostrils.
    mix([0.28, 0.16, 0.14], bump(ax - 6.0, y + 10.0, 2.5, 1.8));
    c
}

/// How many iBUG landmarks there are.
pub const N_LANDMARKS: usize = 68;

/// The landmarks on the subject's right (image left, x < 0) and on the midline, with their
/// mirror partner on the other side (`None` on the midline). The jaw (0–16) is placed on the
/// outline by arc length in `jaw_anchors`; these are the rest.
pub const INNER_ANCHORS: &[(usize, f64, f64, Option<usize>)] = &[
    // Brows, outer to inner; 22–26 mirror them.
    (17, -58.0, 50.0, Some(26)),
    (18, -48.0, 54.0, Some(25)),
    (19, -37.0, 56.0, Some(24)),
    (20, -26.0, 55.0, Some(23)),
    (21, -15.0, 53.0, Some(22)),
    // Nose bridge to tip, on the midline.
    (27, 0.0, 37.0, None),
    (28, 0.0, 25.0, None),
    (29, 0.0, 13.0, None),
    (30, 0.0, NOSE_TIP_Y, None),
    // Nose base.
    (31, -13.0, -10.0, Some(35)),
    (32, -7.0, -11.0, Some(34)),
    (33, 0.0, -12.0, None),
    // Right eye: outer corner, upper lid, inner corner, lower lid; the left eye mirrors it.
    (36, -48.0, EYE_Y, Some(45)),
    (37, -40.0, EYE_Y + 4.0, Some(44)),
    (38, -27.0, EYE_Y + 4.0, Some(43)),
    (39, -18.0, EYE_Y, Some(42)),
    (40, -27.0, EYE_Y - 4.0, Some(47)),
    (41, -40.0, EYE_Y - 4.0, Some(46)),
    // Outer lip contour.
    (48, -25.0, MOUTH_Y, Some(54)),
    (49, -16.0, MOUTH_Y + 6.0, Some(53)),
    (50, -6.0, MOUTH_Y + 8.0, Some(52)),
    (51, 0.0, MOUTH_Y + 7.0, None),
    (59, -16.0, MOUTH_Y - 7.0, Some(55)),
    (58, -6.0, MOUTH_Y - 10.0, Some(56)),
    (57, 0.0, MOUTH_Y - 11.0, None),
    // Inner lip contour.
    (60, -20.0, MOUTH_Y, Some(64)),
    (61, -8.0, MOUTH_Y + 2.0, Some(63)),
    (62, 0.0, MOUTH_Y + 2.0, None),
    (67, -8.0, MOUTH_Y - 2.0, Some(65)),
    (66, 0.0, MOUTH_Y - 2.0, None),
];

/// The jaw contour 0–8 (image left to chin) at equal arc length along the outline from the
/// height of the eyes' outer corners down to the chin, pulled `inset` mm inside the outline;
/// 9–16 mirror 7–0.
pub fn jaw_anchors(inset: f64) -> [(f64, f64); 9] {
    let steps = 2000;
    let y_start = EYE_Y - 5.0;
    let point = |i: usize| {
        let y = y_start + (Y_CHIN - y_start) * i as f64 / steps as f64;
        (-(half_width(y) - inset).max(0.0), y)
    };
    let mut cumulative = vec![0.0];
    for i in 1..=steps {
        let (a, b) = (point(i - 1), point(i));
        let d = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
        cumulative.push(cumulative[i - 1] + d);
    }
    let total = cumulative[steps];
    let mut out = [(0.0, 0.0); 9];
    let mut i = 0;
    for (k, slot) in out.iter_mut().enumerate() {
        let target = total * k as f64 / 8.0;
        while i < steps && cumulative[i] < target {
            i += 1;
        }
        *slot = point(i);
    }
    out[8] = (0.0, Y_CHIN + inset);
    out
}
