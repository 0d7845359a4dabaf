//! What a run writes per frame: meshes (OBJ with UVs and per-vertex colours, binary PLY),
//! coefficients with 3D landmarks (JSON), images (PNG) and 2D landmarks (iBUG `.pts`). Every file
//! is written atomically. The readers of `.pts` and OBJ vertices (for `faceforge eval`) are
//! here too; their errors name the file and the line.

use faceforge_model::{atomic_write, MorphableModel};
use std::fmt::Write as _;
use image::ImageEncoder as _;
use std::path::Path;

/// A mesh to write: positions, optionally per-vertex colours in [0, 1], and optionally the
/// file name of an MTL (beside the OBJ) whose material `face` carries the texture.
pub struct MeshView<'a> {
    pub positions: &'a [f32],
    pub colors: Option<&'a [f32]>,
    pub material: Option<&'a str>,
}

/// The MTL of a textured face: material `face`, the texture as its diffuse map.
pub fn mtl_text(texture_file: &str) -> String {
    format!("# faceforge material\nnewmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture_file}\n")
}

/// Wavefront OBJ: `v x y z [r g b]`, `vt u v`, `f a/a b/b c/c` (1-based, counter-clockwise), with
/// `mtllib` / `usemtl face` when textured.
pub fn obj_text(model: &MorphableModel, mesh: &MeshView) -> String {
    let n = mesh.positions.len() / 3;
    let mut s = String::with_capacity(n * 64 + model.n_triangles() * 32);
    let _ = writeln!(s, "# faceforge mesh: {n} vertices, {} triangles", model.n_triangles());
    if let Some(mtl) = mesh.material {
        let _ = writeln!(s, "mtllib {mtl}");
    }
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
    if mesh.material.is_some() {
        let _ = writeln!(s, "usemtl face");
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

/// A coordinate as `.pts` files write it: three decimals when they hold it exactly, else the
/// shortest text that reads back as the same f32, so a `.pts` file round-trips bit for bit (a
/// synthetic folder's landmarks equal the ones drawn in memory).
fn pts_number(v: f32) -> String {
    let three = format!("{v:.3}");
    if three.parse::<f32>() == Ok(v) { three } else { format!("{v}") }
}

/// iBUG `.pts` text (300-W's format).
pub fn pts_text(points: &[[f32; 2]]) -> String {
    let mut s = format!("version: 1\nn_points:  {}\n{{\n", points.len());
    for p in points {
        s.push_str(&format!("{} {}\n", pts_number(p[0]), pts_number(p[1])));
    }
    s.push_str("}\n");
    s
}

/// A reader's error: the file, the line (1-based) and what is wrong there.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Reads an iBUG `.pts` file: `version: 1`, `n_points: N`, `{`, N lines of `x y`, `}`.
pub fn parse_pts(file: &str, text: &str) -> Result<Vec<[f32; 2]>, ParseError> {
    Ok(parse_pts_lines(file, text)?.into_iter().map(|(p, _)| p).collect())
}

/// `parse_pts`, each point with its line (1-based), for errors about a point's value.
pub fn parse_pts_lines(file: &str, text: &str) -> Result<Vec<([f32; 2], usize)>, ParseError> {
    let fail = |line: usize, message: String| ParseError { file: file.to_string(), line, message };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
    let mut declared = None;
    for (at, line) in lines.by_ref() {
        if line == "{" {
            break;
        }
        if let Some(n) = line.strip_prefix("n_points:") {
            declared = Some(n.trim().parse::<usize>().map_err(|_| fail(at, format!("`{line}`: n_points must be a count")))?);
        } else if !line.starts_with("version:") {
            return Err(fail(at, format!("`{line}`: expected `version:`, `n_points:` or `{{`")));
        }
    }
    let declared = declared.ok_or_else(|| fail(1, "no `n_points:` header before `{`".into()))?;
    let mut points = Vec::with_capacity(declared.min(1024));
    for (at, line) in lines.by_ref() {
        if line == "}" {
            if points.len() != declared {
                return Err(fail(at, format!("{} points, but the header says n_points: {declared}", points.len())));
            }
            return Ok(points);
        }
        let xy: Vec<f32> = line.split_whitespace().map(|v| v.parse::<f32>()).collect::<Result<_, _>>().map_err(|_| fail(at, format!("`{line}` is not two numbers")))?;
        match xy[..] {
            [x, y] if x.is_finite() && y.is_finite() => points.push(([x, y], at)),
            _ => return Err(fail(at, format!("`{line}`: expected two finite numbers `x y`"))),
        }
    }
    Err(fail(text.lines().count(), "the point list is not closed by `}`".into()))
}

/// The vertex positions (`v x y z [r g b]` lines) of an OBJ file.
pub fn parse_obj_vertices(file: &str, text: &str) -> Result<Vec<f32>, ParseError> {
    let mut positions = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("v ") else { continue };
        let values: Vec<f32> = rest.split_whitespace().take(3).map(|v| v.parse::<f32>()).collect::<Result<_, _>>().map_err(|e| ParseError { file: file.to_string(), line: i + 1, message: format!("vertex `{line}`: {e}") })?;
        if values.len() != 3 || values.iter().any(|v| !v.is_finite()) {
            return Err(ParseError { file: file.to_string(), line: i + 1, message: format!("vertex `{line}` needs three finite coordinates") });
        }
        positions.extend(values);
    }
    Ok(positions)
}

/// An 8-bit RGB PNG of an rgb image in [0, 1].
pub fn png_bytes(rgb: &[f32], width: usize, height: usize) -> Vec<u8> {
    let bytes = rgb8(rgb);
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&bytes, width as u32, height as u32, image::ExtendedColorType::Rgb8)
        .expect("encoding a PNG in memory");
    out
}

/// Colours in [0, 1] as 8-bit values, as the PNGs are written.
pub fn rgb8(rgb: &[f32]) -> Vec<u8> {
    rgb.iter().map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// Per subject of two frames or more (a clip): `SUBJECT.glb` and its offline viewer page
/// (`SUBJECT_viewer.html`, report/viewer.rs) (io/gltf.rs; textured with
/// `textures`' image for that subject, `size`² texels) and `SUBJECT_animation.csv` (per frame: the
/// time, yaw, pitch and roll in degrees, the pose's camera parameters and the expression). Frames
/// without a time are placed at 25 fps.
pub fn write_clip_animations(
    world: &mut bevy_ecs::world::World,
    model: &MorphableModel,
    dir: &Path,
    textures: &std::collections::HashMap<u32, (f32, Vec<f32>)>,
    size: usize,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use anyhow::Context;
    use faceforge_components::{Coeffs, Crop, Frame, Pose, Subject, Timestamp};
    let names: std::collections::BTreeMap<u32, String> = world.query::<&Subject>().iter(world).map(|s| (s.id, s.name.clone())).collect();
    let mut clips: std::collections::BTreeMap<u32, Vec<(u32, String, crate::io::gltf::AnimationFrame, Vec<f32>)>> = Default::default();
    for (frame, coeffs, pose, crop, time) in world.query::<(&Frame, &Coeffs, &Pose, Option<&Crop>, Option<&Timestamp>)>().iter(world) {
        let seconds = time.map_or(frame.index as f64 / 25.0, |t| t.seconds) as f32;
        let animated = crate::io::gltf::AnimationFrame { seconds, exp: coeffs.exp.clone(), pose: pose.clone(), crop: crop.cloned() };
        clips.entry(frame.subject_id).or_default().push((frame.index, frame.name.clone(), animated, coeffs.id.clone()));
    }
    let mut files = Vec::new();
    for (subject, mut rows) in clips.into_iter().filter(|(_, rows)| rows.len() >= 2) {
        rows.sort_by_key(|r| r.0);
        let name = names.get(&subject).cloned().unwrap_or_else(|| format!("subject{subject}"));
        let frames: Vec<crate::io::gltf::AnimationFrame> = rows.iter().map(|r| r.2.clone()).collect();
        let png = textures.get(&subject).map(|(_, rgb)| png_bytes(rgb, size, size));
        let glb = crate::io::gltf::clip_glb(model, &crate::io::gltf::ClipGltf { name: &name, identity: &rows[0].3, frames: &frames, texture_png: png.as_deref() })?;
        let mut csv = String::from("frame,seconds,yaw,pitch,roll,camera");
        for k in 0..model.n_exp() {
            let _ = write!(csv, ",exp{k}");
        }
        csv.push('\n');
        for (_, frame_name, f, _) in &rows {
            let [yaw, pitch, roll] = crate::eval::metrics::ypr_deg(Some(&f.pose)).unwrap_or([f32::NAN; 3]);
            let camera: Vec<String> = f.pose.camera().1.iter().map(|v| v.to_string()).collect();
            let _ = write!(csv, "{frame_name},{},{yaw},{pitch},{roll},{}", f.seconds, camera.join(" "));
            for e in &f.exp {
                let _ = write!(csv, ",{e}");
            }
            csv.push('\n');
        }
        files.extend(crate::report::viewer::write_viewer(dir, &name, &glb)?);
        for (file, bytes) in [(format!("{name}.glb"), glb), (format!("{name}_animation.csv"), csv.into_bytes())] {
            let path = dir.join(file);
            atomic_write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pts_is_ibug_and_png_decodes_to_the_quantised_image() {
        let text = pts_text(&[[1.5, 2.25], [100.0, 0.125]]);
        assert_eq!(text, "version: 1\nn_points:  2\n{\n1.500 2.250\n100.000 0.125\n}\n");
        assert_eq!(parse_pts("a.pts", &text).unwrap(), vec![[1.5, 2.25], [100.0, 0.125]]);
        // Any f32 reads back exactly.
        let odd = [[12.345_678, 0.1], [1e-7, 63.999_996]];
        assert_eq!(parse_pts("b.pts", &pts_text(&odd)).unwrap(), odd.to_vec());

        let rgb: Vec<f32> = (0..4 * 3 * 3).map(|i| i as f32 / 35.0).collect();
        let png = png_bytes(&rgb, 4, 3);
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((back.width(), back.height()), (4, 3));
        for (got, want) in back.as_raw().iter().zip(&rgb) {
            assert_eq!(*got, (want * 255.0).round() as u8);
        }
    }

    #[test]
    fn readers_name_the_file_and_line_of_a_bad_value() {
        let bad = "version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n";
        assert_eq!(parse_pts("f.pts", bad).unwrap_err().to_string(), "f.pts:5: `3 x` is not two numbers");
        let short = "version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n";
        assert_eq!(parse_pts("f.pts", short).unwrap_err().to_string(), "f.pts:6: 2 points, but the header says n_points: 3");
        let obj = "# mesh\nv 1 2 3 0.5 0.5 0.5\nvt 0 1\nv 4 5 nan\n";
        assert_eq!(parse_obj_vertices("m.obj", obj).unwrap_err().to_string(), "m.obj:4: vertex `v 4 5 nan` needs three finite coordinates");
        assert_eq!(parse_obj_vertices("m.obj", "v 1 2 3\nv 4 5 6\nf 1 2 1\n").unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
