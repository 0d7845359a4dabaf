//! 2DASL's 62-parameter vector (`002_…` §1, after 3DDFA): 12 pose numbers, 40 shape and 10
//! expression coefficients. papers.md leaves the pose layout open (f + Π + t does not add up to
//! 12 with a 3-D t); we take 3DDFA's: the 3 × 4 matrix [f·R | t], row-major. Its first two rows
//! are faceforge's weak-perspective T (`Pose::WeakPerspective`); the third row (the depth axis
//! a × b / f, t_z) only orders depth.

use faceforge_components::{Coeffs, Pose};
use faceforge_model::MorphableModel;

pub const POSE: usize = 12;
pub const SHAPE: usize = 40;
pub const EXPRESSION: usize = 10;
pub const LEN: usize = POSE + SHAPE + EXPRESSION;

/// Each entry's unit: 3DDFA whitens its 62 targets before the loss; faceforge uses fixed scales
/// instead of dataset statistics — the pose rows' rotation part in the reference scale (pixels
/// per model unit that make the mean face span 60 % of an `size`-pixel crop, the pose head's
/// starting scale), their translation in crop sizes from the crop's centre, the coefficients in
/// σ. Returns (factor, offset): standard = (value − offset) · factor.
pub fn standard_units(model: &MorphableModel, size: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
    if model.n_id() != SHAPE || model.n_exp() != EXPRESSION {
        return Err(format!("2DASL's model has {SHAPE} shape and {EXPRESSION} expression components; this one has {} and {}", model.n_id(), model.n_exp()));
    }
    let reference = crate::network::reference_scale(model, size);
    let mut factor = Vec::with_capacity(LEN);
    let mut offset = Vec::with_capacity(LEN);
    for row in 0..3 {
        factor.extend([1.0 / reference; 3]);
        factor.push(1.0 / size as f32);
        offset.extend([0.0, 0.0, 0.0, if row < 2 { 0.5 * size as f32 } else { 0.0 }]);
    }
    factor.extend(model.id_sigma().iter().chain(model.exp_sigma()).map(|s| 1.0 / s.max(1e-12)));
    offset.resize(LEN, 0.0);
    Ok((factor, offset))
}

/// The 62 numbers, split.
#[derive(Clone, Debug, PartialEq)]
pub struct Params62 {
    /// [f·R | t], 3 × 4 row-major.
    pub pose: [f32; POSE],
    pub shape: [f32; SHAPE],
    pub expression: [f32; EXPRESSION],
}

impl Params62 {
    pub fn to_vec(&self) -> Vec<f32> {
        self.pose.iter().chain(&self.shape).chain(&self.expression).copied().collect()
    }

    pub fn from_slice(v: &[f32]) -> Result<Self, String> {
        if v.len() != LEN {
            return Err(format!("a 2DASL parameter vector has {LEN} numbers, not {}", v.len()));
        }
        Ok(Self {
            pose: v[..POSE].try_into().expect("12"),
            shape: v[POSE..POSE + SHAPE].try_into().expect("40"),
            expression: v[POSE + SHAPE..].try_into().expect("10"),
        })
    }

    /// From a weak-perspective pose and coefficients of a 40-shape, 10-expression model; the
    /// third pose row is the cross product of the first two over the scale (−f·r₃ with
    /// faceforge's v-down rows: `project`'s depth axis) and t_z = 0.
    pub fn from_pose_and_coeffs(pose: &Pose, coeffs: &Coeffs) -> Result<Self, String> {
        let Pose::WeakPerspective { t } = pose else { return Err("2DASL's camera is weak perspective; the pose is a pinhole".into()) };
        if coeffs.id.len() != SHAPE || coeffs.exp.len() != EXPRESSION {
            return Err(format!("2DASL's model has {SHAPE} shape and {EXPRESSION} expression components; these coefficients have {} and {}", coeffs.id.len(), coeffs.exp.len()));
        }
        let (a, b) = ([t[0][0], t[0][1], t[0][2]], [t[1][0], t[1][1], t[1][2]]);
        let scale = (a.iter().map(|x| x * x).sum::<f32>()).sqrt();
        let c = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]].map(|x| x / scale.max(1e-12));
        let mut pose = [0.0; POSE];
        pose[..4].copy_from_slice(&t[0]);
        pose[4..8].copy_from_slice(&t[1]);
        pose[8..11].copy_from_slice(&c);
        Ok(Self { pose, shape: coeffs.id.as_slice().try_into().expect("40"), expression: coeffs.exp.as_slice().try_into().expect("10") })
    }

    /// faceforge's pose (the first two rows) and coefficients (no albedo: 2DASL has none).
    pub fn pose_and_coeffs(&self) -> (Pose, Coeffs) {
        let row = |r: usize| -> [f32; 4] { self.pose[4 * r..4 * r + 4].try_into().expect("4") };
        (Pose::WeakPerspective { t: [row(0), row(1)] }, Coeffs { id: self.shape.to_vec(), exp: self.expression.to_vec(), tex: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_62_numbers_round_trip_exactly() {
        let v: Vec<f32> = (0..LEN).map(|i| (i as f32 * 0.731).sin() * 10f32.powi(i as i32 % 5 - 2)).collect();
        let p = Params62::from_slice(&v).unwrap();
        assert_eq!(p.to_vec(), v);
        let (pose, coeffs) = p.pose_and_coeffs();
        let back = Params62::from_pose_and_coeffs(&pose, &coeffs).unwrap();
        // The two pose rows and the coefficients are bit for bit the same.
        assert_eq!((back.pose[..8].to_vec(), back.shape, back.expression), (v[..8].to_vec(), p.shape, p.expression));
        assert!(Params62::from_slice(&v[..61]).unwrap_err().contains("62 numbers, not 61"));
    }

    #[test]
    fn from_a_faceforge_pose_the_third_row_is_the_scaled_depth_axis() {
        // f = 2, R = a 30° yaw: rows a = f r₁, b = −f r₂ (v down), so a × b / f = −f r₃.
        let pose = Pose::weak_from_angles(30.0, 0.0, 0.0, 2.0, [60.0, 50.0]);
        let coeffs = Coeffs { id: vec![0.5; SHAPE], exp: vec![-0.25; EXPRESSION], tex: vec![] };
        let p = Params62::from_pose_and_coeffs(&pose, &coeffs).unwrap();
        let third = [p.pose[8], p.pose[9], p.pose[10]];
        let norm = third.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 2.0).abs() < 1e-5, "|third row| = {norm}, the scale");
        let dot = |r: usize| (0..3).map(|k| p.pose[4 * r + k] * third[k]).sum::<f32>();
        assert!(dot(0).abs() < 1e-4 && dot(1).abs() < 1e-4, "orthogonal to the first two rows");
        assert_eq!(p.pose_and_coeffs(), (pose, Coeffs { tex: vec![], ..coeffs.clone() }));
        let wrong = Coeffs { id: vec![0.0; 80], ..coeffs };
        assert!(Params62::from_pose_and_coeffs(&p.pose_and_coeffs().0, &wrong).unwrap_err().contains("40 shape"));
    }
}
