//! MGCNet's covisible map C_s, 1.0 or 0.0 per target pixel; not differentiable. Native only.
//!
//! - `map`, the paper's (its §3.2): the vertices that reach pixels in both views (z-buffer
//!   visibility in each), every triangle that touches one of them, and the target pixels where
//!   those triangles are the drawn surface. It spills about a triangle ring past occlusions.
//! - `by_depth`, per pixel: the surface point a target pixel shows (its triangle and
//!   barycentrics), moved into the source camera, is covisible when it lands inside the source
//!   image and nothing nearer by more than `tolerance` lies on the ray through it among the
//!   triangles the source draws in the 5 × 5 pixels around it (exact ray–triangle tests,
//!   so steep surfaces are judged at the point, not at pixel centres); at a silhouette, where
//!   none of them holds the point, when one of them shares a vertex with its own triangle.

use crate::rasterize::Raster;

/// How many pixels around the point's source pixel the candidate occluders come from.
const REACH: usize = 2;

/// The covisible map in the target view from both views' per-vertex visibility (1/0), the
/// triangles, and the target raster's triangle ids (id + 1, 0 where empty).
pub fn map(visible_target: &[f32], visible_source: &[f32], triangles: &[u32], target_tri: &[u32]) -> Vec<f32> {
    let covisible_triangle: Vec<bool> = triangles.chunks(3).map(|t| t.iter().any(|&v| visible_target[v as usize] > 0.0 && visible_source[v as usize] > 0.0)).collect();
    target_tri.iter().map(|&t| if t != 0 && covisible_triangle[t as usize - 1] { 1.0 } else { 0.0 }).collect()
}

/// The per-pixel covisible map of a pinhole pair: `positions` the mesh (model space), each
/// raster drawn by its camera (`[f_x, f_y, c_x, c_y, R (9), t (3)]`, as `project` takes them).
pub fn by_depth(positions: &[f32], triangles: &[u32], target: &Raster, source: &Raster, source_camera: &[f32], tolerance: f32) -> Vec<f32> {
    let (w, h) = (source.shape.width, source.shape.height);
    let c = source_camera;
    (0..target.tri.len())
        .map(|i| {
            let t = target.tri[i];
            if t == 0 {
                return 0.0;
            }
            let tri = &triangles[3 * (t as usize - 1)..3 * t as usize];
            let (b0, b1) = (target.bary[2 * i], target.bary[2 * i + 1]);
            let weights = [b0, b1, 1.0 - b0 - b1];
            let x: [f32; 3] = std::array::from_fn(|k| (0..3).map(|j| weights[j] * positions[3 * tri[j] as usize + k]).sum());
            let p: [f32; 3] = std::array::from_fn(|r| c[4 + 3 * r] * x[0] + c[5 + 3 * r] * x[1] + c[6 + 3 * r] * x[2] + c[13 + r]);
            if p[2] <= crate::project::NEAR {
                return 0.0;
            }
            let (u, v) = (c[0] * p[0] / p[2] + c[2], c[1] * p[1] / p[2] + c[3]);
            if u < 0.0 || v < 0.0 || u >= w as f32 || v >= h as f32 {
                return 0.0;
            }
            // The triangles drawn in the 5 × 5 pixels around it are the surface near (u, v):
            // the nearest of them whose footprint holds (u, v), intersected exactly along the
            // ray through (u, v), must be (within `tolerance`) the point itself.
            let (x0, y0) = (u as usize, v as usize);
            let mut shown: Vec<u32> = (y0.saturating_sub(REACH)..(y0 + REACH + 1).min(h)).flat_map(|y| (x0.saturating_sub(REACH)..(x0 + REACH + 1).min(w)).map(move |x| y * w + x)).map(|j| source.tri[j]).filter(|&t| t != 0).collect();
            shown.sort_unstable();
            shown.dedup();
            let ray = [(u - c[2]) / c[0], (v - c[3]) / c[1], 1.0];
            let corner = |v: u32| -> [f32; 3] {
                let x = &positions[3 * v as usize..3 * v as usize + 3];
                std::array::from_fn(|r| c[4 + 3 * r] * x[0] + c[5 + 3 * r] * x[1] + c[6 + 3 * r] * x[2] + c[13 + r])
            };
            let nearest = shown
                .iter()
                .filter_map(|&s| {
                    let t3 = &triangles[3 * (s as usize - 1)..3 * s as usize];
                    let [a, b, cc] = [corner(t3[0]), corner(t3[1]), corner(t3[2])];
                    let (e1, e2) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [cc[0] - a[0], cc[1] - a[1], cc[2] - a[2]]);
                    let pv = [ray[1] * e2[2] - ray[2] * e2[1], ray[2] * e2[0] - ray[0] * e2[2], ray[0] * e2[1] - ray[1] * e2[0]];
                    let det = e1[0] * pv[0] + e1[1] * pv[1] + e1[2] * pv[2];
                    if det.abs() < 1e-12 {
                        return None;
                    }
                    let tv = [-a[0], -a[1], -a[2]];
                    let bu = (tv[0] * pv[0] + tv[1] * pv[1] + tv[2] * pv[2]) / det;
                    let qv = [tv[1] * e1[2] - tv[2] * e1[1], tv[2] * e1[0] - tv[0] * e1[2], tv[0] * e1[1] - tv[1] * e1[0]];
                    let bv = (ray[0] * qv[0] + ray[1] * qv[1] + ray[2] * qv[2]) / det;
                    // The ray has z = 1, so the distance along it is the depth.
                    let depth = (e2[0] * qv[0] + e2[1] * qv[1] + e2[2] * qv[2]) / det;
                    (bu >= -1e-4 && bv >= -1e-4 && bu + bv <= 1.0 + 1e-4 && depth > 0.0).then_some(depth)
                })
                .fold(f32::MAX, f32::min);
            let seen = if nearest < f32::MAX {
                p[2] <= nearest + tolerance
            } else {
                // No drawn triangle holds (u, v) (a silhouette): the point's own surface shown nearby.
                shown.iter().any(|&s| triangles[3 * (s as usize - 1)..3 * s as usize].iter().any(|v| tri.contains(v)))
            };
            if seen { 1.0 } else { 0.0 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::map;

    #[test]
    fn a_pixel_is_covisible_when_its_triangle_touches_a_vertex_seen_twice() {
        // Triangles (0 1 2) and (2 3 4); vertex 2 seen by both views, 0 and 1 only by the target.
        let triangles = [0, 1, 2, 2, 3, 4, 5, 6, 7];
        let target = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
        let source = [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        // Pixels showing: nothing, triangle 0, triangle 1, triangle 2.
        assert_eq!(map(&target, &source, &triangles, &[0, 1, 2, 3]), vec![0.0, 1.0, 1.0, 0.0]);
    }
}
