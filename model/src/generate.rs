//! The procedural morphable model on MediaPipe's canonical face: the canonical mesh in
//! millimetres, subdivided (modified butterfly) to the preset's size with the 468 canonical
//! vertices kept as vertices 0–467, and identity, expression and albedo bases made orthonormal by
//! Gram–Schmidt from candidate deformation fields (semantic ones first, then seeded local ones),
//! with σ decreasing with the component index.

use crate::canonical;
use crate::face::{bump, smoothstep, Anatomy};
use crate::rng::SplitMix64;
use crate::subdivide::{self, Mesh};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Mesh size presets: subdivision levels of the canonical mesh (468 vertices, 898 triangles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// One level: 1,833 vertices, for tests.
    Tiny,
    /// Two levels: 7,257 vertices.
    Default,
    /// Three levels: 28,881 vertices and 57,472 triangles, about the BFM front face's size, for
    /// benchmarks.
    Bfm,
}

impl Preset {
    /// How many times the canonical mesh is subdivided.
    pub fn levels(self) -> usize {
        match self {
            Preset::Tiny => 1,
            Preset::Default => 2,
            Preset::Bfm => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Default => "default",
            Preset::Bfm => "bfm",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Preset::Tiny, Preset::Default, Preset::Bfm].into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// What to generate. The same spec gives the same bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    pub preset: Preset,
    pub seed: u64,
    /// Identity components (BFM: 199, Deng et al.: 80).
    pub n_id: usize,
    /// Expression components (FaceWarehouse/3DDFA: 29, Deng et al.: 64).
    pub n_exp: usize,
    /// Albedo components (BFM: 199, Deng et al.: 80).
    pub n_tex: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self { preset: Preset::Default, seed: 0, n_id: 80, n_exp: 64, n_tex: 80 }
    }
}

/// The generated arrays, in the layout of the native file (see `file.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelArrays {
    pub preset: String,
    pub seed: u64,
    /// xyz per vertex, mm.
    pub mean_shape: Vec<f32>,
    /// Component-major: component k is `[k*3N .. (k+1)*3N]`, unit norm.
    pub id_basis: Vec<f32>,
    pub id_sigma: Vec<f32>,
    pub exp_basis: Vec<f32>,
    pub exp_sigma: Vec<f32>,
    /// rgb per vertex, linear, in [0, 1].
    pub mean_albedo: Vec<f32>,
    pub albedo_basis: Vec<f32>,
    pub albedo_sigma: Vec<f32>,
    /// Counter-clockwise seen from +z (the camera).
    pub triangles: Vec<u32>,
    /// uv per vertex in [0, 1]², v up (OBJ convention).
    pub uv: Vec<f32>,
    /// The 68 iBUG landmark vertices.
    pub landmarks: Vec<u32>,
    /// The vertices of FaceMesh's 468 points, in FaceMesh's order (empty when the model has no
    /// dense correspondence, e.g. an imported BFM).
    pub dense_landmarks: Vec<u32>,
    /// Vertex i's mirror image across the x = 0 plane.
    pub mirror: Vec<u32>,
    /// `face::REGION_*` per vertex.
    pub regions: Vec<u32>,
}

/// The subdivided canonical mesh with its mirror map and the vertex made on each base edge.
pub struct FaceMesh {
    pub mesh: Mesh,
    pub mirror: Vec<u32>,
    /// Base edge (min, max) → the vertex the first subdivision made on it.
    pub base_edges: HashMap<(u32, u32), u32>,
    /// The canonical mesh's triangles (over vertices 0–467).
    pub base_triangles: Vec<[u32; 3]>,
}

/// The canonical mesh in millimetres, subdivided `levels` times.
pub fn face_mesh(levels: usize) -> FaceMesh {
    let base = canonical::mesh();
    let scale = canonical::scale_mm(&base.positions);
    let mut mesh = Mesh {
        positions: base.positions.iter().map(|p| p.map(|c| c * scale)).collect(),
        uv: base.uv,
        triangles: base.triangles.clone(),
    };
    // The canonical mesh is exactly symmetric: each vertex's mirror is the vertex at (−x, y, z).
    let mut mirror: Vec<u32> = mesh
        .positions
        .iter()
        .map(|p| {
            let d = |q: &[f64; 3]| (q[0] + p[0]).powi(2) + (q[1] - p[1]).powi(2) + (q[2] - p[2]).powi(2);
            (0..mesh.positions.len()).min_by(|&a, &b| d(&mesh.positions[a]).total_cmp(&d(&mesh.positions[b]))).expect("vertices") as u32
        })
        .collect();
    let mut base_edges = HashMap::new();
    for level in 0..levels {
        let coarse = mesh.positions.len();
        let s = subdivide::subdivide(&mesh);
        let made: HashMap<(u32, u32), u32> =
            s.parents.iter().enumerate().map(|(i, &[a, b])| ((a.min(b), a.max(b)), (coarse + i) as u32)).collect();
        // The mirror of the vertex on edge (a, b) is the vertex on the mirrored edge.
        for &[a, b] in &s.parents {
            let (ma, mb) = (mirror[a as usize], mirror[b as usize]);
            mirror.push(made[&(ma.min(mb), ma.max(mb))]);
        }
        if level == 0 {
            base_edges = made;
        }
        mesh = s.mesh;
    }
    FaceMesh { mesh, mirror, base_edges, base_triangles: base.triangles }
}

/// Uniform random points (x, y) on a triangle mesh's surface: a triangle drawn by its area, a
/// point drawn uniformly in it.
pub struct Surface {
    triangles: Vec<[[f64; 3]; 3]>,
    /// Running sums of the triangles' areas.
    cumulative: Vec<f64>,
}

impl Surface {
    pub fn new(positions: &[[f64; 3]], triangles: &[[u32; 3]]) -> Self {
        let triangles: Vec<[[f64; 3]; 3]> = triangles.iter().map(|t| t.map(|v| positions[v as usize])).collect();
        let mut total = 0.0;
        let cumulative = triangles
            .iter()
            .map(|[a, b, c]| {
                let (e, f) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
                let n = [e[1] * f[2] - e[2] * f[1], e[2] * f[0] - e[0] * f[2], e[0] * f[1] - e[1] * f[0]];
                total += 0.5 * (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
                total
            })
            .collect();
        Self { triangles, cumulative }
    }

    pub fn point(&self, rng: &mut SplitMix64) -> [f64; 2] {
        let target = rng.uniform() * self.cumulative[self.cumulative.len() - 1];
        let [a, b, c] = self.triangles[self.cumulative.partition_point(|&s| s < target).min(self.triangles.len() - 1)];
        let (mut u, mut v) = (rng.uniform(), rng.uniform());
        if u + v > 1.0 {
            (u, v) = (1.0 - u, 1.0 - v);
        }
        [a[0] + u * (b[0] - a[0]) + v * (c[0] - a[0]), a[1] + u * (b[1] - a[1]) + v * (c[1] - a[1])]
    }
}

/// The 68 iBUG vertices: FaceMesh's vertex where the table names one, and where it names two
/// (their midpoint) the vertex subdivision made on the edge between them.
fn place_landmarks(face: &FaceMesh) -> Vec<u32> {
    canonical::IBUG_FROM_FACEMESH
        .iter()
        .map(|idx| match *idx {
            [a, b] => *face.base_edges.get(&((*a).min(*b) as u32, (*a).max(*b) as u32)).unwrap_or(&(*a as u32)),
            _ => idx[0] as u32,
        })
        .collect()
}

/// A per-vertex field of 3-vectors, flattened.
fn field(positions: &[[f64; 3]], f: impl Fn(f64, f64, f64) -> [f64; 3]) -> Vec<f64> {
    positions.iter().flat_map(|p| f(p[0], p[1], p[2])).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Orthonormalises candidates in order (modified Gram–Schmidt, twice, for f64 accuracy), skipping
/// those nearly in the span of the ones before, until `n` vectors are found.
fn orthonormalize(candidates: impl Iterator<Item = Vec<f64>>, n: usize) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(n);
    for mut v in candidates {
        if basis.len() == n {
            break;
        }
        let original = dot(&v, &v).sqrt();
        if original == 0.0 {
            continue;
        }
        for _ in 0..2 {
            for b in &basis {
                let c = dot(&v, b);
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
            }
        }
        let norm = dot(&v, &v).sqrt();
        if norm < 1e-3 * original {
            continue;
        }
        v.iter_mut().for_each(|x| *x /= norm);
        basis.push(v);
    }
    assert_eq!(basis.len(), n, "the candidate stream ended early");
    basis
}

fn sign(x: f64) -> f64 {
    if x < 0.0 { -1.0 } else if x > 0.0 { 1.0 } else { 0.0 }
}

/// Identity: global proportions and each feature's size and place, then seeded local bumps.
fn identity_candidates<'a>(p: &'a [[f64; 3]], a: &'a Anatomy, surface: &'a Surface, rng: &mut SplitMix64) -> impl Iterator<Item = Vec<f64>> + 'a {
    let smooth = |t: f64| t.clamp(0.0, 1.0);
    let [ex, ey] = a.eye;
    let [bx, by] = a.brow_centre;
    let (tip, my, chin) = (a.nose_tip[1], a.mouth_y, a.chin_y);
    let bridge = tip + 0.7 * (a.bridge_y - tip);
    let semantic: Vec<Vec<f64>> = vec![
        field(p, |x, _, _| [x, 0.0, 0.0]),
        field(p, |_, y, _| [0.0, y, 0.0]),
        field(p, |_, _, z| [0.0, 0.0, z - a.mean_z]),
        // Nose: protrusion, width, bridge.
        field(p, |x, y, _| [0.0, 0.0, bump(x, y - tip - 10.0, 9.0, 18.0)]),
        field(p, |x, y, _| [x * bump(x, y - tip + 3.0, 16.0, 10.0) / 10.0, 0.0, 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x, y - bridge, 6.0, 10.0)]),
        // Eyes: spacing, height, socket depth; the brow ridge.
        field(p, |x, y, _| [sign(x) * bump(x.abs() - ex, y - ey, 14.0, 10.0), 0.0, 0.0]),
        field(p, |x, y, _| [0.0, bump(x.abs() - ex, y - ey, 14.0, 10.0), 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x.abs() - ex, y - ey - 1.0, 13.0, 9.0)]),
        field(p, |x, y, _| [0.0, 0.0, bump(x.abs() - bx, y - by, 18.0, 6.0)]),
        // Mouth: width, lip fullness, height.
        field(p, |x, y, _| [x * bump(x, y - my, 25.0, 10.0) / 20.0, 0.0, 0.0]),
        field(p, |x, y, _| [0.0, 0.0, bump(x, y - my, 18.0, 8.0)]),
        field(p, |x, y, _| [0.0, bump(x, y - my, 25.0, 12.0), 0.0]),
        // Chin protrusion and length, jaw width.
        field(p, |x, y, _| [0.0, 0.0, bump(x, y - chin - 20.0, 18.0, 14.0)]),
        field(p, |_, y, _| [0.0, -smooth((my - 9.0 - y) / 40.0), 0.0]),
        field(p, |x, y, _| [x / 70.0 * smooth((tip - 10.0 - y) / 60.0), 0.0, 0.0]),
        // Cheek fullness, cheekbones, temples.
        field(p, |x, y, _| [0.0, 0.0, bump(x.abs() - 40.0, y - tip + 10.0, 18.0, 20.0)]),
        field(p, |x, y, _| {
            let b = bump(x.abs() - 50.0, y - tip - 15.0, 12.0, 9.0);
            [sign(x) * b, 0.0, b]
        }),
        field(p, |x, y, _| [sign(x) * bump(x.abs() - a.half_width + 10.0, y - by, 10.0, 20.0), 0.0, 0.0]),
        // Forehead slope; asymmetry.
        field(p, |_, y, _| [0.0, 0.0, smooth((y - by) / 50.0) * (y - by) / 50.0]),
        field(p, |x, y, _| [0.0, 0.0, x / 70.0 * bump(x, y, 60.0, 80.0)]),
    ];
    semantic.into_iter().chain(local_bumps(p, a, surface, rng, BumpPlacement::Anywhere))
}

/// Where the seeded local deformations go.
#[derive(Clone, Copy)]
enum BumpPlacement {
    Anywhere,
    /// Mouth, eyes, brows and jaw: where expressions move the face.
    Expressive,
}

/// An endless stream of seeded smooth local deformations, half of them mirror-symmetric.
/// `Anywhere` centres them at a uniform random point of the face. `Expressive` ones near the
/// mouth and eyes stay on one side of the lips or lids: a motion of the lower lip never drags
/// the upper.
fn local_bumps<'a>(p: &'a [[f64; 3]], a: &'a Anatomy, surface: &'a Surface, rng: &mut SplitMix64, placement: BumpPlacement) -> impl Iterator<Item = Vec<f64>> + 'a {
    let mut rng = SplitMix64::new(rng.next_u64());
    std::iter::from_fn(move || {
        let (cx, cy, s) = match placement {
            BumpPlacement::Anywhere => {
                let c = surface.point(&mut rng);
                (c[0], c[1], rng.range(8.0, 30.0))
            }
            BumpPlacement::Expressive => {
                let places = [(0.0, a.mouth_y, 14.0), (a.eye[0], a.eye[1], 8.0), (a.brow_centre[0], a.brow_centre[1], 10.0), (20.0, a.chin_y + 27.0, 18.0)];
                let (x, y, spread) = places[(rng.next_u64() % places.len() as u64) as usize];
                let side = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                (side * x + rng.range(-spread, spread), y + rng.range(-spread, spread) * 0.6, rng.range(5.0, 14.0))
            }
        };
        let (sx, sy) = (s * rng.range(0.6, 1.4), s * rng.range(0.6, 1.4));
        let direction = [rng.normal() * 0.5, rng.normal() * 0.5, rng.normal() + 0.5];
        let symmetric = rng.uniform() < 0.5;
        // Which side of the mouth line or the eye line the centre is on, if it is near one.
        let near_mouth = (cy - a.mouth_y).abs() < 25.0 && cx.abs() < a.mouth_corner_x + 15.0;
        let near_eye = (cy - a.eye[1]).abs() < 12.0 && (cx.abs() - a.eye[0]).abs() < 20.0;
        let lower = cy < if near_mouth { a.mouth_line(cx) } else { a.eye_line(cx) };
        Some(field(p, |x, y, _| {
            let mut w = if symmetric { bump(x.abs() - cx.abs(), y - cy, sx, sy) } else { bump(x - cx, y - cy, sx, sy) };
            if matches!(placement, BumpPlacement::Expressive) {
                let side = if near_mouth {
                    a.below_mouth(x, y)
                } else if near_eye {
                    1.0 - a.above_eye_line(x, y)
                } else {
                    0.5
                };
                if near_mouth || near_eye {
                    w *= if lower { side } else { 1.0 - side };
                }
            }
            let dx = if symmetric { direction[0] * sign(x) } else { direction[0] };
            [w * dx, w * direction[1], w * direction[2]]
        }))
    })
}

/// Expression: action-unit-like local motions of the jaw, lips, eyes and brows, each side on its
/// own where faces move them so, then seeded local motions in the same regions. Motions of one
/// lip or lid are cut at the mouth line or the eye line, so the other stays where it is.
fn expression_candidates<'a>(p: &'a [[f64; 3]], a: &'a Anatomy, surface: &'a Surface, rng: &mut SplitMix64) -> impl Iterator<Item = Vec<f64>> + 'a {
    let [ex, ey] = a.eye;
    let [bx, by] = a.brow_centre;
    let (tip, my, chin, cx) = (a.nose_tip[1], a.mouth_y, a.chin_y, a.mouth_corner_x);
    let jaw = move |x: f64, y: f64| a.below_mouth(x, y) * bump(x, 0.0, 45.0, 1.0) * (0.6 + 0.4 * smoothstep((my - y) / 25.0));
    let mouth = move |x: f64, y: f64| bump(x, y - my, 22.0, 12.0);
    let corner = move |x: f64, y: f64, side: f64| bump(x - side * cx, y - my, 10.0, 9.0);
    let upper_lid = move |x: f64, y: f64, side: f64, dy: f64, sy: f64| a.above_eye_line(x, y) * bump(x - side * ex, y - ey - dy, 11.0, sy);
    let lower_lid = move |x: f64, y: f64, side: f64| (1.0 - a.above_eye_line(x, y)) * bump(x - side * ex, y - ey + 3.5, 11.0, 4.0);
    let brow = move |x: f64, y: f64, side: f64, centre: f64| bump(x - side * centre, y - by, 14.0, 8.0);
    let mut semantic: Vec<Vec<f64>> = vec![
        // Jaw open: the lower lip, chin and jaw drop and swing back; the upper lip stays.
        field(p, |x, y, _| {
            let w = jaw(x, y);
            [0.0, -w, -0.4 * w]
        }),
        // Pucker, upper-lip raise, lower-lip depress, lip press, mouth sideways, jaw sideways.
        field(p, |x, y, _| [-x / 22.0 * mouth(x, y), 0.0, mouth(x, y)]),
        field(p, |x, y, _| {
            let w = (1.0 - a.below_mouth(x, y)) * bump(x, y - my - 6.0, 15.0, 4.0);
            [0.0, w, 0.3 * w]
        }),
        field(p, |x, y, _| [0.0, -a.below_mouth(x, y) * bump(x, y - my + 8.0, 15.0, 5.0), 0.0]),
        field(p, |x, y, _| [0.0, 0.0, -bump(x, y - my, 20.0, 6.0)]),
        field(p, |x, y, _| [mouth(x, y), 0.0, 0.0]),
        field(p, |x, y, _| [jaw(x, y), 0.0, 0.0]),
        // Chin raise, lip funnel, frown, nose wrinkle, nostril flare.
        field(p, |x, y, _| {
            let w = a.below_mouth(x, y) * bump(x, y - chin - 22.0, 16.0, 10.0);
            [0.0, w, 0.3 * w]
        }),
        field(p, |x, y, _| [-x / 15.0 * bump(x, y - my, 15.0, 8.0), 0.0, 0.6 * bump(x, y - my, 15.0, 8.0)]),
        field(p, |x, y, _| {
            let w = bump(x.abs() - 15.0, y - by + 4.0, 10.0, 6.0);
            [-sign(x) * 0.5 * w, -w, 0.0]
        }),
        field(p, |x, y, _| [0.0, bump(x.abs() - 12.0, y - tip - 15.0, 8.0, 8.0), 0.0]),
        field(p, |x, y, _| [sign(x) * bump(x.abs() - 12.0, y - tip + 5.0, 5.0, 5.0), 0.0, 0.0]),
    ];
    for side in [-1.0, 1.0] {
        semantic.extend([
            // Smile: the corner goes up and out.
            field(p, |x, y, _| [side * 0.6 * corner(x, y, side), 0.8 * corner(x, y, side), -0.2 * corner(x, y, side)]),
            // Stretch, and the corner pulled down.
            field(p, |x, y, _| [side * corner(x, y, side), 0.0, 0.0]),
            field(p, |x, y, _| [0.0, -corner(x, y, side), 0.0]),
            // Dimple.
            field(p, |x, y, _| [0.0, 0.0, -bump(x - side * (cx + 4.0), y - my, 4.0, 4.0)]),
            // Eye closed (the upper lid down onto the lower), squint (the lower lid up), wide.
            field(p, |x, y, _| [0.0, -upper_lid(x, y, side, 2.0, 6.0), 0.2 * upper_lid(x, y, side, 2.0, 6.0)]),
            field(p, |x, y, _| [0.0, lower_lid(x, y, side), 0.0]),
            field(p, |x, y, _| [0.0, upper_lid(x, y, side, 6.0, 5.0), 0.0]),
            // Brow raised (whole, inner).
            field(p, |x, y, _| [0.0, brow(x, y, side, bx), 0.0]),
            field(p, |x, y, _| [0.0, brow(x, y, side, bx - 15.0), 0.0]),
            // Cheek puffed, cheek raised.
            field(p, |x, y, _| {
                let w = bump(x - side * 40.0, y - my - 16.0, 14.0, 14.0);
                [side * 0.3 * w, 0.0, w]
            }),
            field(p, |x, y, _| [0.0, bump(x - side * 40.0, y - tip - 15.0, 14.0, 10.0), 0.0]),
        ]);
    }
    semantic.into_iter().chain(local_bumps(p, a, surface, rng, BumpPlacement::Expressive))
}

/// Albedo (rgb per vertex): skin tone, its gradients, lips, brows, redness, dark circles, then
/// seeded blotches from a few millimetres to a few centimetres, mostly along melanin's colour;
/// three in four blotches come as a mirror pair, as skin is mostly symmetric.
fn albedo_candidates<'a>(p: &'a [[f64; 3]], a: &'a Anatomy, surface: &'a Surface, rng: &mut SplitMix64) -> impl Iterator<Item = Vec<f64>> + 'a {
    let [ex, ey] = a.eye;
    let [bx, by] = a.brow_centre;
    let (tip, my) = (a.nose_tip[1], a.mouth_y);
    let semantic: Vec<Vec<f64>> = vec![
        field(p, |_, _, _| [1.0, 0.8, 0.65]),
        field(p, |_, _, _| [1.0, 0.0, 0.0]),
        field(p, |_, _, _| [0.0, 1.0, 0.0]),
        field(p, |_, _, _| [0.0, 0.0, 1.0]),
        field(p, |_, y, _| [y / 100.0, y / 100.0, y / 100.0]),
        field(p, |x, y, _| {
            let w = bump(x, y - my, 22.0, 7.0);
            [w, -0.5 * w, -0.5 * w]
        }),
        field(p, |x, y, _| {
            let w = bump(x.abs() - bx, y - by, 14.0, 3.0);
            [w, w, w]
        }),
        field(p, |x, y, _| {
            let w = bump(x.abs() - ex - 5.0, y - tip + 5.0, 12.0, 10.0);
            [w, -0.3 * w, -0.3 * w]
        }),
        field(p, |x, y, _| {
            let w = bump(x.abs() - ex, y - ey + 9.0, 12.0, 4.0);
            [w, w * 0.9, w * 1.1]
        }),
        field(p, |x, _, _| [x / 70.0, x / 70.0, x / 70.0]),
    ];
    let mut rng = SplitMix64::new(rng.next_u64());
    let blotches = std::iter::from_fn(move || {
        let c = surface.point(&mut rng);
        let (cx, cy, r) = (c[0], c[1], rng.range(2.0, 25.0));
        let colour = [1.0 + 0.2 * rng.normal(), 0.8 + 0.2 * rng.normal(), 0.6 + 0.2 * rng.normal()];
        let symmetric = rng.uniform() < 0.75;
        Some(field(p, move |x, y, _| {
            let b = if symmetric { bump(x.abs() - cx.abs(), y - cy, r, r) } else { bump(x - cx, y - cy, r, r) };
            [b * colour[0], b * colour[1], b * colour[2]]
        }))
    });
    semantic.into_iter().chain(blotches)
}

/// σ_k = rms_k · √N, so that one σ of component k moves (or recolours) vertices by `rms_k` on
/// root-mean-square over the N vertices; rms_k falls as first / (1 + k/3), so that a face drawn
/// from the prior differs from the mean by about 1.9 × first on RMS (local components move
/// their region by several times that).
fn sigmas(n: usize, first_rms: f64, n_vertices: usize) -> Vec<f32> {
    (0..n).map(|k| (first_rms / (1.0 + k as f64 / 3.0) * (n_vertices as f64).sqrt()) as f32).collect()
}

fn flatten(basis: Vec<Vec<f64>>) -> Vec<f32> {
    basis.into_iter().flatten().map(|x| x as f32).collect()
}

/// Generates the model a spec describes.
pub fn generate(spec: &ModelSpec) -> ModelArrays {
    let face = face_mesh(spec.preset.levels());
    let p = &face.mesh.positions;
    let n = p.len();
    let anatomy = Anatomy::new(p);
    // Seeded things are placed uniformly over the canonical surface (not at its vertices, which
    // crowd around the eyes and lips), so a seed gives the same face at every preset.
    let surface = Surface::new(&p[..canonical::POINTS], &face.base_triangles);
    let mut rng = SplitMix64::new(spec.seed ^ 0xFACE_F0E6_E000_0001);

    // The mean albedo carries fine mottling so that photometric and census losses have texture:
    // three in four spots come as a mirror pair (the same spot at ±x), the rest alone and fainter.
    let mut mottling = SplitMix64::new(rng.next_u64());
    let spots: Vec<(f64, f64, f64, f64, bool)> = (0..400)
        .map(|_| {
            let c = surface.point(&mut mottling);
            let (cx, cy, r) = (c[0], c[1], mottling.range(1.5, 6.0));
            let symmetric = mottling.uniform() < 0.75;
            let amplitude = mottling.range(-0.05, 0.05) * if symmetric { 1.0 } else { 0.5 };
            (cx, cy, r, amplitude, symmetric)
        })
        .collect();
    let mean_albedo = p
        .iter()
        .flat_map(|q| {
            let base = anatomy.base_albedo(q[0], q[1]);
            let d: f64 = spots
                .iter()
                .map(|&(cx, cy, r, a, symmetric)| if symmetric { a * bump(q[0].abs() - cx.abs(), q[1] - cy, r, r) } else { a * bump(q[0] - cx, q[1] - cy, r, r) })
                .sum();
            [(base[0] + d).clamp(0.0, 1.0) as f32, (base[1] + 0.8 * d).clamp(0.0, 1.0) as f32, (base[2] + 0.65 * d).clamp(0.0, 1.0) as f32]
        })
        .collect();

    let id_basis = orthonormalize(identity_candidates(p, &anatomy, &surface, &mut rng), spec.n_id);
    let exp_basis = orthonormalize(expression_candidates(p, &anatomy, &surface, &mut rng), spec.n_exp);
    let albedo_basis = orthonormalize(albedo_candidates(p, &anatomy, &surface, &mut rng), spec.n_tex);

    ModelArrays {
        preset: spec.preset.name().to_string(),
        seed: spec.seed,
        mean_shape: p.iter().flat_map(|q| q.map(|c| c as f32)).collect(),
        id_basis: flatten(id_basis),
        id_sigma: sigmas(spec.n_id, 2.5, n),
        exp_basis: flatten(exp_basis),
        exp_sigma: sigmas(spec.n_exp, 1.5, n),
        mean_albedo,
        albedo_basis: flatten(albedo_basis),
        albedo_sigma: sigmas(spec.n_tex, 0.04, n),
        landmarks: place_landmarks(&face),
        dense_landmarks: (0..canonical::POINTS as u32).collect(),
        regions: p.iter().map(|q| anatomy.region(q[0], q[1])).collect(),
        uv: face.mesh.uv.iter().flat_map(|t| t.map(|c| c as f32)).collect(),
        triangles: face.mesh.triangles.iter().flatten().copied().collect(),
        mirror: face.mirror,
    }
}
