//! MGCNet's covisible map C_s (its §3.2): the vertices that reach pixels in both views (z-buffer
//! visibility in each), every triangle that touches one of them, and the target pixels where
//! those triangles are the drawn surface. 1.0 or 0.0 per target pixel; not differentiable.
//! Native only: one pass over the target's pixels after the per-vertex tests.

/// The covisible map in the target view from both views' per-vertex visibility (1/0), the
/// triangles, and the target raster's triangle ids (id + 1, 0 where empty).
pub fn map(visible_target: &[f32], visible_source: &[f32], triangles: &[u32], target_tri: &[u32]) -> Vec<f32> {
    let covisible_triangle: Vec<bool> = triangles.chunks(3).map(|t| t.iter().any(|&v| visible_target[v as usize] > 0.0 && visible_source[v as usize] > 0.0)).collect();
    target_tri.iter().map(|&t| if t != 0 && covisible_triangle[t as usize - 1] { 1.0 } else { 0.0 }).collect()
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
