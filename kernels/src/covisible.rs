//! MGCNet's covisible map C_s, 1.0 or 0.0 per target pixel; not differentiable. Native only.
//!
//! - `map`, the paper's (its §3.2): the vertices that reach pixels in both views (z-buffer
//!   visibility in each), every triangle that touches one of them, and the target pixels where
//!   those triangles are the drawn surface. It spills about a triangle ring past occlusions.
//! - `by_depth`, per pixel: the surface point a target pixel shows (its triangle and
//!   barycentrics), moved into the source camera, is covisible when it lands inside the source
//!   image and nothing nearer by more than `tolerance` lies on the ray through it: exact
//!   ray–triangle tests against every triangle whose projected box covers that source pixel
//!   (binned once per call). An earlier version took the candidates from the source raster
//!   (the triangles drawn in the 5 × 5 pixels around the point): at 60° its grazing, steep far
//!   cheek has triangles no pixel centre falls in, and its IoU against ray casting was 0.973.

use crate::rasterize::Raster;

/// The triangles (id + 1) whose projected bounding box, grown by a pixel, covers each pixel
/// of a `w` × `h` image; `corners` are the vertices in camera space.
fn bin_triangles(corners: &[[f32; 3]], triangles: &[u32], camera: &[f32], w: usize, h: usize) -> Vec<Vec<u32>> {
    let mut bins = vec![Vec::new(); w * h];
    for (t, tri) in triangles.chunks(3).enumerate() {
        let p = [corners[tri[0] as usize], corners[tri[1] as usize], corners[tri[2] as usize]];
        if p.iter().any(|q| q[2] <= crate::project::NEAR) {
            continue;
        }
        let uv = p.map(|q| [camera[0] * q[0] / q[2] + camera[2], camera[1] * q[1] / q[2] + camera[3]]);
        let lo = |c: usize| (uv.iter().map(|q| q[c]).fold(f32::MAX, f32::min) - 1.0).floor().max(0.0) as usize;
        let hi = |c: usize, n: usize| ((uv.iter().map(|q| q[c]).fold(f32::MIN, f32::max) + 1.0).ceil().max(0.0) as usize).min(n);
        for y in lo(1)..hi(1, h) {
            for x in lo(0)..hi(0, w) {
                bins[y * w + x].push(t as u32 + 1);
            }
        }
    }
    bins
}

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
    let corners: Vec<[f32; 3]> = positions.chunks(3).map(|x| std::array::from_fn(|r| c[4 + 3 * r] * x[0] + c[5 + 3 * r] * x[1] + c[6 + 3 * r] * x[2] + c[13 + r])).collect();
    let bins = bin_triangles(&corners, triangles, c, w, h);
    (0..target.tri.len())
        .map(|i| {
            let t = target.tri[i];
            if t == 0 {
                return 0.0;
            }
            let tri = &triangles[3 * (t as usize - 1)..3 * t as usize];
            let (b0, b1) = (target.bary[2 * i], target.bary[2 * i + 1]);
            let weights = [b0, b1, 1.0 - b0 - b1];
            let p: [f32; 3] = std::array::from_fn(|k| (0..3).map(|j| weights[j] * corners[tri[j] as usize][k]).sum());
            if p[2] <= crate::project::NEAR {
                return 0.0;
            }
            let (u, v) = (c[0] * p[0] / p[2] + c[2], c[1] * p[1] / p[2] + c[3]);
            if u < 0.0 || v < 0.0 || u >= w as f32 || v >= h as f32 {
                return 0.0;
            }
            // The nearest surface along the ray through (u, v) must be (within `tolerance`) the
            // point itself.
            let ray = [(u - c[2]) / c[0], (v - c[3]) / c[1], 1.0];
            let nearest = bins[v as usize * w + u as usize]
                .iter()
                .filter_map(|&s| {
                    let t3 = &triangles[3 * (s as usize - 1)..3 * s as usize];
                    let [a, b, cc] = [corners[t3[0] as usize], corners[t3[1] as usize], corners[t3[2] as usize]];
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
            // No hit at all only where f32 misses the point's own triangle at an edge: seen.
            if nearest == f32::MAX || p[2] <= nearest + tolerance { 1.0 } else { 0.0 }
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
