//! MGCNet's covisible map C_s, 1.0 or 0.0 per target pixel; not differentiable. Native only.
//!
//! - `map`, the paper's (its §3.2): the vertices that reach pixels in both views (z-buffer
//!   visibility in each), every triangle that touches one of them, and the target pixels where
//!   those triangles are the drawn surface. It spills about a triangle ring past occlusions.
//! - `by_depth`, per pixel: the surface point a target pixel shows (its triangle and
//!   barycentrics), moved into the source camera, is covisible when it lands inside the source
//!   image and the source's z-buffer at its pixel or one of the 8 around it is within
//!   `tolerance` of its depth, or shows a triangle sharing a vertex with its own.

use crate::rasterize::Raster;

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
            // The pixel and its 8 neighbours: on a steep surface the depth changes by more than
            // the tolerance within one pixel.
            let (x0, y0) = (u as usize, v as usize);
            let seen = (y0.saturating_sub(1)..(y0 + 2).min(h)).flat_map(|y| (x0.saturating_sub(1)..(x0 + 2).min(w)).map(move |x| y * w + x)).any(|j| {
                let shown = source.tri[j];
                shown != 0 && ((source.depth[j] - p[2]).abs() <= tolerance || triangles[3 * (shown as usize - 1)..3 * shown as usize].iter().any(|v| tri.contains(v)))
            });
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
