//! One level of modified butterfly subdivision (Zorin, Schröder & Sweldens 1996): every triangle
//! becomes four, existing vertices stay where they are (the scheme interpolates, so the 468
//! canonical vertices keep their places and indices at every level) and each edge gets a new
//! vertex placed by a stencil over its neighbourhood, which rounds the facets off.
//!
//! Stencils, for the edge (a, b):
//! - both ends interior with six neighbours: the 8-point butterfly, ½(a + b) + ⅛(c + d)
//!   − 1⁄16(e₁ + e₂ + e₃ + e₄) (c, d the opposite vertices, e the wings);
//! - an interior end with another valence K: ¾·a + Σⱼ sⱼ·nⱼ over its ring from b (K = 3: 5⁄12,
//!   −1⁄12, −1⁄12; K = 4: ⅜, 0, −⅛, 0; K ≥ 5: sⱼ = (¼ + cos 2πj/K + ½ cos 4πj/K)/K), averaged when
//!   both ends are such;
//! - a boundary edge: the 4-point rule −1⁄16, 9⁄16, 9⁄16, −1⁄16 along the boundary;
//! - an interior edge between two boundary vertices: Loop's ⅜, ⅜, ⅛, ⅛.
//!
//! UVs of a new vertex are the mean of the edge's ends (a stencil could fold the texture map).

use std::collections::HashMap;

/// A triangle mesh with per-vertex UVs.
#[derive(Clone, Debug)]
pub struct Mesh {
    pub positions: Vec<[f64; 3]>,
    pub uv: Vec<[f64; 2]>,
    /// Counter-clockwise seen from outside (+z on the face's front).
    pub triangles: Vec<[u32; 3]>,
}

/// What one level adds: the finer mesh, and for each of its vertices past the coarse count the
/// coarse edge it was made on.
pub struct Subdivided {
    pub mesh: Mesh,
    pub parents: Vec<[u32; 2]>,
}

fn key(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

/// The mesh's connectivity: each edge's opposite vertices, each vertex's ring.
struct Topology {
    /// Edge (min, max) → the third vertex of each triangle on it (one on the boundary).
    opposite: HashMap<(u32, u32), Vec<u32>>,
    /// Vertex → (next, prev) pairs: for each triangle (v, p, q) counter-clockwise, p → q.
    turn: Vec<HashMap<u32, u32>>,
}

impl Topology {
    fn new(m: &Mesh) -> Self {
        let mut opposite: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
        let mut turn = vec![HashMap::new(); m.positions.len()];
        for t in &m.triangles {
            for k in 0..3 {
                let (a, b, c) = (t[k], t[(k + 1) % 3], t[(k + 2) % 3]);
                opposite.entry(key(a, b)).or_default().push(c);
                turn[a as usize].insert(b, c);
            }
        }
        Self { opposite, turn }
    }

    fn is_boundary_edge(&self, a: u32, b: u32) -> bool {
        self.opposite[&key(a, b)].len() == 1
    }

    /// The ring of an interior vertex in turning order starting at `from`, or None on the boundary.
    fn ring(&self, v: u32, from: u32) -> Option<Vec<u32>> {
        let turn = &self.turn[v as usize];
        let mut ring = vec![from];
        let mut at = from;
        loop {
            at = *turn.get(&at)?;
            if at == from {
                return Some(ring);
            }
            if ring.len() > turn.len() {
                return None;
            }
            ring.push(at);
        }
    }

    /// The other boundary neighbour of boundary vertex `v` (not `not`).
    fn boundary_neighbour(&self, v: u32, not: u32) -> Option<u32> {
        self.turn[v as usize].iter().flat_map(|(&p, &q)| [p, q]).find(|&n| n != not && self.is_boundary_edge(v, n))
    }

    /// The vertex across edge (a, b) from `c`.
    fn across(&self, a: u32, b: u32, c: u32) -> Option<u32> {
        self.opposite[&key(a, b)].iter().copied().find(|&x| x != c)
    }
}

fn weights_for_valence(k: usize) -> Vec<f64> {
    match k {
        3 => vec![5.0 / 12.0, -1.0 / 12.0, -1.0 / 12.0],
        4 => vec![3.0 / 8.0, 0.0, -1.0 / 8.0, 0.0],
        _ => (0..k)
            .map(|j| {
                let t = 2.0 * std::f64::consts::PI * j as f64 / k as f64;
                (0.25 + t.cos() + 0.5 * (2.0 * t).cos()) / k as f64
            })
            .collect(),
    }
}

/// The new vertex of edge (a, b) as weights over existing vertices.
fn stencil(topo: &Topology, a: u32, b: u32) -> Vec<(u32, f64)> {
    let opp = &topo.opposite[&key(a, b)];
    if opp.len() == 1 {
        let (pa, pb) = (topo.boundary_neighbour(a, b), topo.boundary_neighbour(b, a));
        return match (pa, pb) {
            (Some(pa), Some(pb)) => vec![(pa, -1.0 / 16.0), (a, 9.0 / 16.0), (b, 9.0 / 16.0), (pb, -1.0 / 16.0)],
            _ => vec![(a, 0.5), (b, 0.5)],
        };
    }
    let (ra, rb) = (topo.ring(a, b), topo.ring(b, a));
    if let (Some(ra), Some(rb)) = (&ra, &rb)
        && ra.len() == 6
        && rb.len() == 6
    {
        let (c, d) = (opp[0], opp[1]);
        let wings = [topo.across(a, c, b), topo.across(b, c, a), topo.across(a, d, b), topo.across(b, d, a)];
        if wings.iter().all(Option::is_some) {
            let mut w = vec![(a, 0.5), (b, 0.5), (c, 0.125), (d, 0.125)];
            w.extend(wings.into_iter().flatten().map(|e| (e, -1.0 / 16.0)));
            return w;
        }
    }
    let from_ring = |v: u32, ring: &[u32]| -> Vec<(u32, f64)> {
        let mut w = vec![(v, 0.75)];
        w.extend(ring.iter().copied().zip(weights_for_valence(ring.len())));
        w
    };
    let irregular = |r: &Option<Vec<u32>>| r.as_ref().is_some_and(|r| r.len() != 6);
    let ends: Vec<Vec<(u32, f64)>> = match (&ra, &rb) {
        (Some(x), Some(y)) if irregular(&ra) && irregular(&rb) => vec![from_ring(a, x), from_ring(b, y)],
        (Some(x), Some(_)) if irregular(&ra) => vec![from_ring(a, x)],
        (Some(_), Some(y)) if irregular(&rb) => vec![from_ring(b, y)],
        (Some(x), Some(y)) => vec![from_ring(a, x), from_ring(b, y)],
        (Some(x), None) => vec![from_ring(a, x)],
        (None, Some(y)) => vec![from_ring(b, y)],
        (None, None) => return vec![(a, 0.375), (b, 0.375), (opp[0], 0.125), (opp[1], 0.125)],
    };
    let n = ends.len() as f64;
    ends.into_iter().flatten().map(|(v, w)| (v, w / n)).collect()
}

/// One level of subdivision. New vertices are numbered after the old ones in the order their
/// edges are first met, triangle by triangle, so the result is deterministic.
pub fn subdivide(m: &Mesh) -> Subdivided {
    let topo = Topology::new(m);
    let mut mesh = Mesh { positions: m.positions.clone(), uv: m.uv.clone(), triangles: Vec::with_capacity(4 * m.triangles.len()) };
    let mut parents = Vec::new();
    let mut made: HashMap<(u32, u32), u32> = HashMap::new();
    let mut midpoint = |a: u32, b: u32, mesh: &mut Mesh| -> u32 {
        *made.entry(key(a, b)).or_insert_with(|| {
            let mut p = [0.0; 3];
            for (v, w) in stencil(&topo, a, b) {
                for c in 0..3 {
                    p[c] += w * m.positions[v as usize][c];
                }
            }
            let (ua, ub) = (m.uv[a as usize], m.uv[b as usize]);
            mesh.positions.push(p);
            mesh.uv.push([(ua[0] + ub[0]) / 2.0, (ua[1] + ub[1]) / 2.0]);
            parents.push([a, b]);
            (mesh.positions.len() - 1) as u32
        })
    };
    for &[a, b, c] in &m.triangles {
        let (ab, bc, ca) = (midpoint(a, b, &mut mesh), midpoint(b, c, &mut mesh), midpoint(c, a, &mut mesh));
        mesh.triangles.extend([[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]);
    }
    Subdivided { mesh, parents }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regular hexagonal patch lifted onto a plane stays on the plane: the stencils' weights
    /// sum to one and reproduce linear functions.
    #[test]
    fn stencils_reproduce_a_plane_and_keep_old_vertices() {
        let mut positions = vec![[0.0, 0.0, 1.0]];
        let mut uv = vec![[0.5, 0.5]];
        for k in 0..6 {
            let t = std::f64::consts::PI / 3.0 * k as f64;
            let (x, y) = (t.cos(), t.sin());
            positions.push([x, y, 0.3 * x - 0.2 * y + 1.0]);
            uv.push([0.5 + 0.5 * x, 0.5 + 0.5 * y]);
        }
        let triangles = (0..6).map(|k| [0, 1 + k, 1 + (k + 1) % 6]).collect();
        let m = Mesh { positions, uv, triangles };
        let s = subdivide(&m);
        assert_eq!(s.mesh.positions.len(), 7 + 12);
        assert_eq!(s.mesh.triangles.len(), 24);
        assert_eq!(&s.mesh.positions[..7], &m.positions[..]);
        for p in &s.mesh.positions {
            assert!((p[2] - (0.3 * p[0] - 0.2 * p[1] + 1.0)).abs() < 1e-12, "{p:?} left the plane");
        }
        for w in [3, 4, 5, 6, 7, 9] {
            let sum: f64 = weights_for_valence(w).iter().sum::<f64>() + 0.75;
            assert!((sum - 1.0).abs() < 1e-12, "valence {w}: weights sum to {sum}");
        }
    }
}
