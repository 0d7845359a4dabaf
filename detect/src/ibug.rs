//! The 68 iBUG (300-W / dlib) points from FaceMesh's 468.
//!
//! The correspondence is Peizhi Yan's table in `mediapipe2dlib` (github.com/PeizhiYan/
//! Mediapipe_2_Dlib_Landmarks, MIT licence, © 2024 Peizhi Yan): one FaceMesh index per iBUG
//! point, or two whose midpoint it is. Its interior points (17–67) agree with a 68-point
//! detector to a pixel or two; its jaw points (0–16) lie on the face surface rather than on the
//! visible outline, so the fit trusts them less (docs/io.md).

/// For each iBUG point 0–67, the FaceMesh vertices it is the mean of.
pub const FROM_FACEMESH: [&[usize]; 68] = [
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

/// The jaw (face outline) points, 0–16.
pub const JAW: std::ops::Range<usize> = 0..17;

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
