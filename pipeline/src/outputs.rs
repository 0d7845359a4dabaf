//! What a run writes per frame: meshes (OBJ with UVs and per-vertex colours, binary PLY) and
//! coefficients with 3D landmarks (JSON). Every file is written atomically.

use faceforge_model::{atomic_write, MorphableModel};
use std::fmt::Write as _;
use std::path::Path;

/// A mesh to write: positions, and optionally per-vertex colours in [0, 1].
pub struct MeshView<'a> {
    pub positions: &'a [f32],
    pub colors: Option<&'a [f32]>,
}

/// Wavefront OBJ: `v x y z [r g b]`, `vt u v`, `f a/a b/b c/c` (1-based, counter-clockwise).
pub fn obj_text(model: &MorphableModel, mesh: &MeshView) -> String {
    let n = mesh.positions.len() / 3;
    let mut s = String::with_capacity(n * 64 + model.n_triangles() * 32);
    let _ = writeln!(s, "# faceforge mesh: {n} vertices, {} triangles", model.n_triangles());
    for v in 0..n {
        let p = &mesh.positions[3 * v..3 * v + 3];
        match mesh.colors {
            Some(c) => {
                let c = &c[3 * v..3 * v + 3];
                let _ = writeln!(s, "v {} {} {} {:.4} {:.4} {:.4}", p[0], p[1], p[2], c[0].clamp(0.0, 1.0), c[1].clamp(0.0, 1.0), c[2].clamp(0.0, 1.0));
            }
            None => {
                let _ = writeln!(s, "v {} {} {}", p[0], p[1], p[2]);
            }
        }
    }
    for uv in model.uv().chunks(2) {
        let _ = writeln!(s, "vt {} {}", uv[0], uv[1]);
    }
    for t in model.triangles().chunks(3) {
        let (a, b, c) = (t[0] + 1, t[1] + 1, t[2] + 1);
        let _ = writeln!(s, "f {a}/{a} {b}/{b} {c}/{c}");
    }
    s
}

/// Binary little-endian PLY with float xyz, uchar rgb and the triangle list.
pub fn ply_bytes(model: &MorphableModel, mesh: &MeshView) -> Vec<u8> {
    let n = mesh.positions.len() / 3;
    let header = format!(
        "ply\nformat binary_little_endian 1.0\ncomment faceforge mesh\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nelement face {}\nproperty list uchar int vertex_indices\nend_header\n",
        model.n_triangles()
    );
    let mut out = header.into_bytes();
    let grey = [0.7f32; 3];
    for v in 0..n {
        for c in &mesh.positions[3 * v..3 * v + 3] {
            out.extend_from_slice(&c.to_le_bytes());
        }
        let rgb = mesh.colors.map_or(&grey[..], |c| &c[3 * v..3 * v + 3]);
        out.extend(rgb.iter().map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8));
    }
    for t in model.triangles().chunks(3) {
        out.push(3);
        for i in t {
            out.extend_from_slice(&(*i as i32).to_le_bytes());
        }
    }
    out
}

pub fn write_obj(path: &Path, model: &MorphableModel, mesh: &MeshView) -> std::io::Result<()> {
    atomic_write(path, obj_text(model, mesh).as_bytes())
}

pub fn write_ply(path: &Path, model: &MorphableModel, mesh: &MeshView) -> std::io::Result<()> {
    atomic_write(path, &ply_bytes(model, mesh))
}

/// The landmark vertices' positions.
pub fn landmarks_3d(model: &MorphableModel, positions: &[f32]) -> Vec<[f32; 3]> {
    model.landmarks().iter().map(|&v| {
        let i = 3 * v as usize;
        [positions[i], positions[i + 1], positions[i + 2]]
    }).collect()
}

/// The landmarks of a drawn face: the landmark vertices' projected (u, v).
pub fn landmarks_2d(model: &MorphableModel, projected: &[f32]) -> Vec<[f32; 2]> {
    model.landmarks().iter().map(|&v| [projected[4 * v as usize], projected[4 * v as usize + 1]]).collect()
}

/// The input image with the drawn face blended over it (70 %) and the landmarks as green dots.
pub fn overlay(image: &[f32], width: usize, height: usize, color: &[f32], mask: &[f32], landmarks: &[[f32; 2]]) -> Vec<f32> {
    let mut out = image.to_vec();
    for p in 0..width * height {
        if mask[p] > 0.0 {
            for c in 0..3 {
                out[3 * p + c] = 0.3 * image[3 * p + c] + 0.7 * color[3 * p + c].clamp(0.0, 1.0);
            }
        }
    }
    for l in landmarks {
        let (x, y) = (l[0].floor() as i64, l[1].floor() as i64);
        for (dx, dy) in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)] {
            let (px, py) = (x + dx, y + dy);
            if px >= 0 && py >= 0 && (px as usize) < width && (py as usize) < height {
                out[3 * (py as usize * width + px as usize)..][..3].copy_from_slice(&[0.1, 1.0, 0.2]);
            }
        }
    }
    out
}
