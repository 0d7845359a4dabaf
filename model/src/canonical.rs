//! MediaPipe's canonical face mesh, the base of faceforge's model: 468 vertices (exactly the
//! points MediaPipe's FaceMesh landmarker predicts, in the same order), 898 triangles and UVs,
//! Apache-2.0, from the npm package `@mediapipe/face_mesh` 0.4.1657299874 (data/PROVENANCE.md).
//! Also the package's contour lists (lips, eyes, brows, face oval) and the 468 → 68 iBUG table
//! the detector uses, so model and detector agree on every landmark.

/// How many points FaceMesh predicts, and how many vertices the canonical mesh has.
pub const POINTS: usize = 468;
/// How many triangles the canonical mesh has.
const TRIANGLES: usize = 898;

/// The mesh as extracted (MediaPipe's units, about a centimetre; y up, z towards the camera).
const OBJ: &str = include_str!("../data/canonical_face.obj");
const CONTOURS: &str = include_str!("../data/canonical_face_contours.txt");

/// The distance between the outer eye corners (FaceMesh 33 and 263) the mesh is scaled to: adult
/// outer canthal widths are 85–100 mm (about 90 for women, 95 for men); 95 mm sits in the range
/// the issue names and gives a bizygomatic-like width of 165 mm at the ears' level.
pub const OUTER_EYE_CORNERS_MM: f64 = 95.0;
pub const OUTER_EYE_CORNERS: [usize; 2] = [33, 263];

/// The canonical mesh: positions in MediaPipe's units, UVs (v up, flipped from MediaPipe's),
/// counter-clockwise triangles.
pub struct CanonicalMesh {
    pub positions: Vec<[f64; 3]>,
    pub uv: Vec<[f64; 2]>,
    pub triangles: Vec<[u32; 3]>,
}

/// Parses the committed OBJ (only `v`, `vt` and `f` lines with v/vt pairs equal, as written by
/// `tools/extract_canonical.py`).
pub fn mesh() -> CanonicalMesh {
    let mut m = CanonicalMesh { positions: Vec::new(), uv: Vec::new(), triangles: Vec::new() };
    for line in OBJ.lines() {
        let mut words = line.split_whitespace();
        let numbers = |words: std::str::SplitWhitespace| -> Vec<f64> { words.map(|w| w.parse().expect("canonical_face.obj: a number")).collect() };
        match words.next() {
            Some("v") => {
                let v = numbers(words);
                m.positions.push([v[0], v[1], v[2]]);
            }
            Some("vt") => {
                // MediaPipe's v runs down the texture (the forehead at 0.11, the chin at 0.95);
                // faceforge's runs up, as OBJ's does.
                let v = numbers(words);
                m.uv.push([v[0], 1.0 - v[1]]);
            }
            Some("f") => {
                let corner = |w: &str| w.split('/').next().and_then(|i| i.parse::<u32>().ok()).expect("canonical_face.obj: an index") - 1;
                let c: Vec<u32> = words.map(corner).collect();
                m.triangles.push([c[0], c[1], c[2]]);
            }
            _ => {}
        }
    }
    assert_eq!((m.positions.len(), m.uv.len(), m.triangles.len()), (POINTS, POINTS, TRIANGLES), "canonical_face.obj");
    m
}

/// Millimetres per MediaPipe unit: the outer eye corners `OUTER_EYE_CORNERS_MM` apart.
pub fn scale_mm(positions: &[[f64; 3]]) -> f64 {
    let [a, b] = OUTER_EYE_CORNERS.map(|i| positions[i]);
    let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
    OUTER_EYE_CORNERS_MM / d
}

/// A named chain of FaceMesh indices from the package's FACEMESH_* lists.
pub fn contour(name: &str) -> Vec<usize> {
    CONTOURS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.map(|w| w.parse().expect("canonical_face_contours.txt: an index")).collect())
        })
        .unwrap_or_else(|| panic!("canonical_face_contours.txt has no chain `{name}`"))
}

/// Closed loops and lines of the face, as FaceMesh indices (the subject's right is x < 0).
pub struct Contours {
    /// Outer lip contour: lower then upper, each from corner 61 to corner 291.
    pub lips_outer: [Vec<usize>; 2],
    /// Inner lip contour: lower then upper, each from corner 78 to corner 308.
    pub lips_inner: [Vec<usize>; 2],
    /// Per eye (right = image left, then left): lower lid then upper lid, corner to corner.
    pub eyes: [[Vec<usize>; 2]; 2],
    /// Per brow (right, left): lower edge then upper edge.
    pub brows: [[Vec<usize>; 2]; 2],
    /// The face's outline, a closed loop (first index repeated).
    pub oval: Vec<usize>,
}

pub fn contours() -> Contours {
    Contours {
        lips_outer: [contour("lips_0"), contour("lips_1")],
        lips_inner: [contour("lips_2"), contour("lips_3")],
        eyes: [[contour("right_eye_0"), contour("right_eye_1")], [contour("left_eye_0"), contour("left_eye_1")]],
        brows: [[contour("right_eyebrow_0"), contour("right_eyebrow_1")], [contour("left_eyebrow_0"), contour("left_eyebrow_1")]],
        oval: contour("face_oval_0"),
    }
}

/// The nose, as FaceMesh indices around it: bridge, the sides of the nose down to the wings, the
/// base under the tip (from MediaPipe's canonical mesh: 168 nasion, 193/417 the bridge's sides,
/// 129/358 and 98/327 the wings, 2 the subnasale).
pub const NOSE_OUTLINE: [usize; 12] = [168, 417, 351, 399, 358, 327, 2, 98, 129, 174, 122, 193];

/// The 68 iBUG (300-W / dlib) points from FaceMesh's 468: Peizhi Yan's table in
/// `mediapipe2dlib` (github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks, MIT licence, © 2024 Peizhi
/// Yan): one FaceMesh index per iBUG point, or two whose midpoint it is. Its interior points
/// (17–67) agree with a 68-point detector to a pixel or two; its jaw points (0–16) lie on the face
/// surface rather than on the visible outline, so the fit trusts them less (docs/io.md).
pub const IBUG_FROM_FACEMESH: [&[usize]; 68] = [
    // jaw 0–16
    &[127], &[234], &[93], &[132, 58], &[58, 172], &[136], &[150], &[176], &[152], &[400], &[379], &[365], &[397, 288], &[361], &[323], &[454], &[356],
    // right brow 17–21, left brow 22–26
    &[70], &[63], &[105], &[66], &[107], &[336], &[296], &[334], &[293], &[300],
    // nose bridge 27–30, nostrils 31–35
    &[168, 6], &[197, 195], &[5], &[4], &[75], &[97], &[2], &[326], &[305],
    // right eye 36–41, left eye 42–47
    &[33], &[160], &[158], &[133], &[153], &[144], &[362], &[385], &[387], &[263], &[373], &[380],
    // outer lips 48–59
    &[61], &[39], &[37], &[0], &[267], &[269], &[291], &[321], &[314], &[17], &[84], &[91],
    // inner lips 60–67
    &[78], &[82], &[13], &[312], &[308], &[317], &[14], &[87],
];

/// The iBUG jaw (face outline) points, 0–16.
pub const IBUG_JAW: std::ops::Range<usize> = 0..17;
