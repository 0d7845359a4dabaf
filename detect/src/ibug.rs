//! The 68 iBUG (300-W / dlib) points from FaceMesh's 468, by the table the model uses too
//! (`faceforge_model::canonical::IBUG_FROM_FACEMESH`, Peizhi Yan's `mediapipe2dlib`, MIT): one
//! FaceMesh index per iBUG point, or two whose midpoint it is. Its jaw points (0–16) lie on the
//! face surface rather than on the visible outline, so the fit trusts them less (docs/io.md).

pub use faceforge_model::canonical::{IBUG_FROM_FACEMESH as FROM_FACEMESH, IBUG_JAW as JAW};

/// The 68 iBUG points of 468 FaceMesh points (x, y of each; z is dropped).
pub fn from_facemesh(points: &[[f32; 3]]) -> Vec<[f32; 2]> {
    FROM_FACEMESH
        .iter()
        .map(|indices| {
            let n = indices.len() as f32;
            let sum = indices.iter().fold([0.0f32; 2], |s, &i| [s[0] + points[i][0], s[1] + points[i][1]]);
            [sum[0] / n, sum[1] / n]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_maps_to_facemesh_vertices_and_pairs_average() {
        assert!(FROM_FACEMESH.iter().flat_map(|i| i.iter()).all(|&i| i < crate::facemesh::POINTS));
        let points: Vec<[f32; 3]> = (0..crate::facemesh::POINTS).map(|i| [i as f32, 2.0 * i as f32, 0.0]).collect();
        let ibug = from_facemesh(&points);
        assert_eq!(ibug.len(), 68);
        assert_eq!(ibug[8], [152.0, 304.0]);
        assert_eq!(ibug[27], [(168.0 + 6.0) / 2.0, 174.0]);
    }
}
