//! 2DASL's facial landmark map (FLM, `002_…` §1): the fourth input channel beside RGB, +1 at each
//! landmark's pixel and −1 elsewhere. Pixel (x, y) covers [x, x + 1) × [y, y + 1) (centres at
//! i + ½, as everywhere in faceforge), so a landmark at (u, v) marks pixel (⌊u⌋, ⌊v⌋); landmarks
//! outside the image mark nothing.

/// The FLM of `points` (pixels) for a `width` × `height` image, row-major.
pub fn landmark_map(points: &[[f32; 2]], width: usize, height: usize) -> Vec<f32> {
    let mut map = vec![-1.0; width * height];
    for p in points {
        if p[0].is_finite() && p[1].is_finite() && p[0] >= 0.0 && p[1] >= 0.0 && p[0] < width as f32 && p[1] < height as f32 {
            map[p[1] as usize * width + p[0] as usize] = 1.0;
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::landmark_map;

    #[test]
    fn each_landmark_marks_its_own_pixel_and_nothing_else() {
        // (2.5, 1.5) is the centre of pixel (2, 1); (0.0, 0.0) the corner of pixel (0, 0);
        // (3.99, 2.01) lies in pixel (3, 2); the last two are outside a 4 × 3 image.
        let points = [[2.5, 1.5], [0.0, 0.0], [3.99, 2.01], [4.0, 1.0], [-0.01, 2.0]];
        let map = landmark_map(&points, 4, 3);
        let marked: Vec<usize> = (0..12).filter(|&i| map[i] == 1.0).collect();
        assert_eq!(marked, vec![0, 6, 11]);
        assert!(map.iter().all(|v| *v == 1.0 || *v == -1.0));
        assert_eq!(map.iter().filter(|v| **v == -1.0).count(), 9);
    }
}
