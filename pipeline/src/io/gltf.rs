//! A clip as one glTF 2.0 binary (`.glb`): the clip's identity mesh (the mean plus its fitted
//! identity, metres, the model's UVs) with its texture, the expression basis as morph targets,
//! and an animation of the morph weights and the head's rotation and translation at the clip's
//! frame rate. Blender, three.js and every glTF viewer play it.
//!
//! Morph targets: the expression components, all of them up to `MAX_TARGETS` (the built-in
//! models have 64: 5.6 MB of targets at the default size), else the 64 whose fitted coefficients
//! vary most over the clip (an imported BFM's 100); a target is the component's basis column
//! (mm → m), its weight the fitted coefficient, so a player reproduces the fitted shapes exactly
//! in those components.
//!
//! The head: the fitted pose's rotation as a quaternion (the model is y-up and faces +z, as glTF
//! wants), its translation from the image centre in millimetres at the face (pixels divided by
//! the pose's scale), y up. A weak-perspective fit has no depth, so z stays 0.

use anyhow::{bail, Context};
use faceforge_components::{Crop, Pose};
use faceforge_model::MorphableModel;
use serde_json::{json, Value};

/// Morph targets written at most.
pub const MAX_TARGETS: usize = 64;

/// One frame of the animation.
#[derive(Clone, Debug)]
pub struct AnimationFrame {
    pub seconds: f32,
    /// The frame's expression coefficients.
    pub exp: Vec<f32>,
    pub pose: Pose,
    /// The frame's crop of the video, when it is one (poses are in crop pixels).
    pub crop: Option<Crop>,
}

/// What a clip's `.glb` holds.
pub struct ClipGltf<'a> {
    pub name: &'a str,
    /// The clip's identity coefficients.
    pub identity: &'a [f32],
    pub frames: &'a [AnimationFrame],
    /// The texture PNG for the identity mesh (the model's UV atlas), if any.
    pub texture_png: Option<&'a [u8]>,
}

/// The expression components with the largest spread of the fitted coefficients over the clip.
pub fn chosen_targets(frames: &[AnimationFrame], n_exp: usize) -> Vec<usize> {
    let count = frames.len().max(1) as f32;
    let spread = |k: usize| {
        let mean = frames.iter().map(|f| f.exp[k]).sum::<f32>() / count;
        frames.iter().map(|f| (f.exp[k] - mean).powi(2)).sum::<f32>() / count + mean * mean * 1e-3
    };
    let mut order: Vec<usize> = (0..n_exp).collect();
    order.sort_by(|&a, &b| spread(b).total_cmp(&spread(a)));
    order.truncate(MAX_TARGETS.min(n_exp));
    order.sort_unstable();
    order
}

/// A unit quaternion (x, y, z, w) from a row-major rotation matrix.
pub fn quaternion(r: &[f32; 9]) -> [f32; 4] {
    let trace = r[0] + r[4] + r[8];
    let q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [(r[7] - r[5]) / s, (r[2] - r[6]) / s, (r[3] - r[1]) / s, 0.25 * s]
    } else if r[0] > r[4] && r[0] > r[8] {
        let s = (1.0 + r[0] - r[4] - r[8]).sqrt() * 2.0;
        [0.25 * s, (r[1] + r[3]) / s, (r[2] + r[6]) / s, (r[7] - r[5]) / s]
    } else if r[4] > r[8] {
        let s = (1.0 + r[4] - r[0] - r[8]).sqrt() * 2.0;
        [(r[1] + r[3]) / s, 0.25 * s, (r[5] + r[7]) / s, (r[2] - r[6]) / s]
    } else {
        let s = (1.0 + r[8] - r[0] - r[4]).sqrt() * 2.0;
        [(r[2] + r[6]) / s, (r[5] + r[7]) / s, 0.25 * s, (r[3] - r[1]) / s]
    };
    let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
    q.map(|v| v / n)
}

/// The head's rotation (quaternion) and translation (m) in a frame, in glTF's y-up axes.
fn head_transform(pose: &Pose, crop: Option<&Crop>) -> ([f32; 4], [f32; 3]) {
    match pose {
        Pose::WeakPerspective { t } => {
            let (r, scale) = faceforge_kernels::pgn::rotation_and_scale(t, true);
            // Pixels of the video: a crop's pixels scale by 1/crop.scale and shift by its offset.
            let (zoom, offset, centre) = match crop {
                Some(c) => (c.scale, c.offset, [c.original_size[0] as f32 / 2.0, c.original_size[1] as f32 / 2.0]),
                None => (1.0, [0.0; 2], [t[0][3], t[1][3]]),
            };
            let mm_per_pixel = zoom / scale;
            let at = [t[0][3] / zoom + offset[0], t[1][3] / zoom + offset[1]];
            (quaternion(&r), [(at[0] - centre[0]) * mm_per_pixel / 1000.0, -(at[1] - centre[1]) * mm_per_pixel / 1000.0, 0.0])
        }
        Pose::Pinhole { r, t, .. } => {
            // The camera looks down +z with y down; glTF's looks down −z with y up.
            let flip = [1.0, -1.0, -1.0];
            let turned: [f32; 9] = std::array::from_fn(|k| flip[k / 3] * r[k] * flip[k % 3]);
            (quaternion(&turned), [t[0] / 1000.0, -t[1] / 1000.0, -t[2] / 1000.0])
        }
    }
}

/// The binary chunk, its buffer views and the accessors on them, as they are appended.
#[derive(Default)]
struct Buffers {
    bin: Vec<u8>,
    views: Vec<Value>,
    accessors: Vec<Value>,
}

impl Buffers {
    /// `bytes` as a buffer view (4-byte aligned); its index.
    fn view(&mut self, bytes: &[u8], target: Option<u32>) -> usize {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let mut v = json!({"buffer": 0, "byteOffset": self.bin.len(), "byteLength": bytes.len()});
        if let Some(t) = target {
            v["target"] = json!(t);
        }
        self.bin.extend_from_slice(bytes);
        self.views.push(v);
        self.views.len() - 1
    }

    /// Floats as an accessor of `kind` (`width` per element), with bounds when asked; its index.
    fn floats(&mut self, values: &[f32], kind: &str, width: usize, target: Option<u32>, with_bounds: bool) -> usize {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = self.view(&bytes, target);
        let mut a = json!({"bufferView": view, "componentType": 5126, "count": values.len() / width, "type": kind});
        if with_bounds {
            let (mut lo, mut hi) = (vec![f32::MAX; width], vec![f32::MIN; width]);
            for chunk in values.chunks(width) {
                for c in 0..width {
                    lo[c] = lo[c].min(chunk[c]);
                    hi[c] = hi[c].max(chunk[c]);
                }
            }
            (a["min"], a["max"]) = (json!(lo), json!(hi));
        }
        self.accessors.push(a);
        self.accessors.len() - 1
    }

    /// Triangle indices as an accessor; its index.
    fn indices(&mut self, values: &[u32]) -> usize {
        let bytes: Vec<u8> = values.iter().flat_map(|i| i.to_le_bytes()).collect();
        let view = self.view(&bytes, Some(34963));
        self.accessors.push(json!({"bufferView": view, "componentType": 5125, "count": values.len(), "type": "SCALAR"}));
        self.accessors.len() - 1
    }
}

/// The `.glb` bytes of a clip.
pub fn clip_glb(model: &MorphableModel, clip: &ClipGltf) -> anyhow::Result<Vec<u8>> {
    if clip.frames.is_empty() {
        bail!("{}: a clip without frames has no animation", clip.name);
    }
    let n = model.n_vertices();
    let mut b = Buffers::default();
    // The identity mesh, in metres.
    let mut shape = model.mean_shape().to_vec();
    for (k, &alpha) in clip.identity.iter().enumerate().take(model.n_id()) {
        for (s, basis) in shape.iter_mut().zip(&model.id_basis()[k * 3 * n..(k + 1) * 3 * n]) {
            *s += alpha * basis;
        }
    }
    let positions: Vec<f32> = shape.iter().map(|v| v / 1000.0).collect();
    let position = b.floats(&positions, "VEC3", 3, Some(34962), true);
    // glTF's UVs start at the top left.
    let uvs: Vec<f32> = model.uv().chunks(2).flat_map(|uv| [uv[0], 1.0 - uv[1]]).collect();
    let uv = b.floats(&uvs, "VEC2", 2, Some(34962), false);
    let indices = b.indices(model.triangles());
    // The morph targets and their names.
    let chosen = chosen_targets(clip.frames, model.n_exp());
    let targets: Vec<Value> = chosen
        .iter()
        .map(|&k| {
            let column: Vec<f32> = model.exp_basis()[k * 3 * n..(k + 1) * 3 * n].iter().map(|v| v / 1000.0).collect();
            json!({"POSITION": b.floats(&column, "VEC3", 3, Some(34962), true)})
        })
        .collect();
    let names: Vec<String> = chosen.iter().map(|k| format!("expression {k}")).collect();
    // The animation: one keyframe per frame.
    let times: Vec<f32> = clip.frames.iter().map(|f| f.seconds).collect();
    let time = b.floats(&times, "SCALAR", 1, None, true);
    let weights: Vec<f32> = clip.frames.iter().flat_map(|f| chosen.iter().map(|&k| f.exp[k])).collect();
    let weight = b.floats(&weights, "SCALAR", 1, None, false);
    let (rotations, translations): (Vec<[f32; 4]>, Vec<[f32; 3]>) = clip.frames.iter().map(|f| head_transform(&f.pose, f.crop.as_ref())).unzip();
    let rotation = b.floats(&rotations.concat(), "VEC4", 4, None, false);
    let translation = b.floats(&translations.concat(), "VEC3", 3, None, false);

    let mut primitive = json!({"attributes": {"POSITION": position, "TEXCOORD_0": uv}, "indices": indices, "mode": 4, "targets": targets});
    let mut gltf = json!({
        "asset": {"version": "2.0", "generator": "faceforge"},
        "scene": 0,
        "scenes": [{"name": clip.name, "nodes": [0]}],
        "nodes": [{"name": "head", "mesh": 0, "rotation": rotations[0], "translation": translations[0]}],
        "meshes": [{"name": "face", "primitives": [], "weights": chosen.iter().map(|&k| clip.frames[0].exp[k]).collect::<Vec<_>>(), "extras": {"targetNames": names}}],
        "animations": [{
            "name": clip.name,
            "samplers": [
                {"input": time, "output": weight, "interpolation": "LINEAR"},
                {"input": time, "output": rotation, "interpolation": "LINEAR"},
                {"input": time, "output": translation, "interpolation": "LINEAR"},
            ],
            "channels": [
                {"sampler": 0, "target": {"node": 0, "path": "weights"}},
                {"sampler": 1, "target": {"node": 0, "path": "rotation"}},
                {"sampler": 2, "target": {"node": 0, "path": "translation"}},
            ],
        }],
    });
    if let Some(png) = clip.texture_png {
        let image = b.view(png, None);
        gltf["images"] = json!([{"bufferView": image, "mimeType": "image/png"}]);
        gltf["samplers"] = json!([{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]);
        gltf["textures"] = json!([{"sampler": 0, "source": 0}]);
        gltf["materials"] = json!([{"name": "skin", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 0.9}}]);
        primitive["material"] = json!(0);
    }
    gltf["meshes"][0]["primitives"] = json!([primitive]);
    let Buffers { mut bin, views, accessors } = b;
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    gltf["buffers"] = json!([{"byteLength": bin.len()}]);
    gltf["bufferViews"] = json!(views);
    gltf["accessors"] = json!(accessors);
    let mut text = serde_json::to_vec(&gltf)?;
    while !text.len().is_multiple_of(4) {
        text.push(b' ');
    }
    let total = 12 + 8 + text.len() + 8 + bin.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&text);
    out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    out.extend_from_slice(b"BIN\0");
    out.extend_from_slice(&bin);
    Ok(out)
}

/// A `.glb` read back: its JSON and its binary chunk.
pub fn read_glb(bytes: &[u8]) -> anyhow::Result<(Value, Vec<u8>)> {
    let u32_at = |at: usize| -> anyhow::Result<u32> { Ok(u32::from_le_bytes(bytes.get(at..at + 4).context("the file ends early")?.try_into()?)) };
    if bytes.get(0..4) != Some(b"glTF") || u32_at(4)? != 2 || u32_at(8)? as usize != bytes.len() {
        bail!("not a glTF 2.0 binary of this length");
    }
    let json_len = u32_at(12)? as usize;
    if bytes.get(16..20) != Some(b"JSON") {
        bail!("the first chunk is not JSON");
    }
    let json: Value = serde_json::from_slice(bytes.get(20..20 + json_len).context("the JSON chunk runs past the end")?)?;
    let at = 20 + json_len;
    let bin_len = u32_at(at)? as usize;
    if bytes.get(at + 4..at + 8) != Some(b"BIN\0") {
        bail!("the second chunk is not BIN");
    }
    let bin = bytes.get(at + 8..at + 8 + bin_len).context("the BIN chunk runs past the end")?.to_vec();
    Ok((json, bin))
}

/// Checks what glTF 2.0 requires of the parts this writer uses: every index in range, buffer views
/// inside the buffer, accessors inside their views with the byte size their type needs, POSITION
/// accessors with bounds, morph targets matching the mesh's weights, animation samplers with as
/// many outputs as keyframes per target. Returns (vertices, targets, keyframes).
pub fn validate(json: &Value, bin: &[u8]) -> anyhow::Result<(usize, usize, usize)> {
    let list = |key: &str| json[key].as_array().cloned().unwrap_or_default();
    let (views, accessors) = (list("bufferViews"), list("accessors"));
    let buffer_len = json["buffers"][0]["byteLength"].as_u64().context("buffers[0].byteLength")? as usize;
    if buffer_len != bin.len() {
        bail!("buffers[0].byteLength {buffer_len} but the BIN chunk holds {}", bin.len());
    }
    for (i, v) in views.iter().enumerate() {
        let (offset, length) = (v["byteOffset"].as_u64().unwrap_or(0) as usize, v["byteLength"].as_u64().context("byteLength")? as usize);
        if offset + length > buffer_len {
            bail!("bufferViews[{i}] ends at {} past the buffer's {buffer_len} bytes", offset + length);
        }
    }
    let width = |kind: &str| match kind {
        "SCALAR" => 1,
        "VEC2" => 2,
        "VEC3" => 3,
        "VEC4" => 4,
        _ => 0,
    };
    for (i, a) in accessors.iter().enumerate() {
        let view = views.get(a["bufferView"].as_u64().context("bufferView")? as usize).with_context(|| format!("accessors[{i}].bufferView out of range"))?;
        let size = match a["componentType"].as_u64() {
            Some(5126) | Some(5125) => 4,
            other => bail!("accessors[{i}]: componentType {other:?} not written here"),
        };
        let needed = a["count"].as_u64().context("count")? as usize * width(a["type"].as_str().unwrap_or("")) * size;
        if needed == 0 || needed > view["byteLength"].as_u64().unwrap_or(0) as usize {
            bail!("accessors[{i}] needs {needed} bytes, its view holds {}", view["byteLength"]);
        }
    }
    let primitive = &json["meshes"][0]["primitives"][0];
    let position = &accessors[primitive["attributes"]["POSITION"].as_u64().context("POSITION")? as usize];
    if position["min"].is_null() || position["max"].is_null() {
        bail!("POSITION needs min and max");
    }
    let vertices = position["count"].as_u64().unwrap_or(0) as usize;
    let targets = primitive["targets"].as_array().map_or(0, Vec::len);
    if json["meshes"][0]["weights"].as_array().map_or(0, Vec::len) != targets {
        bail!("the mesh's default weights and its targets differ in number");
    }
    for (t, target) in primitive["targets"].as_array().into_iter().flatten().enumerate() {
        let a = &accessors[target["POSITION"].as_u64().context("target POSITION")? as usize];
        if a["count"].as_u64() != Some(vertices as u64) || a["min"].is_null() {
            bail!("morph target {t} has {} positions without bounds, the mesh {vertices}", a["count"]);
        }
    }
    let indices = &accessors[primitive["indices"].as_u64().context("indices")? as usize];
    let index_view = &views[indices["bufferView"].as_u64().unwrap_or(0) as usize];
    let start = index_view["byteOffset"].as_u64().unwrap_or(0) as usize;
    let count = indices["count"].as_u64().unwrap_or(0) as usize;
    if bin[start..start + 4 * count].chunks(4).any(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize >= vertices) {
        bail!("an index points past the {vertices} vertices");
    }
    let animation = &json["animations"][0];
    let keyframes = accessors[animation["samplers"][0]["input"].as_u64().context("sampler input")? as usize]["count"].as_u64().unwrap_or(0) as usize;
    for (s, sampler) in animation["samplers"].as_array().into_iter().flatten().enumerate() {
        let output = &accessors[sampler["output"].as_u64().context("sampler output")? as usize];
        let per_key = if output["type"] == "SCALAR" { targets.max(1) } else { 1 };
        if output["count"].as_u64() != Some((keyframes * per_key) as u64) {
            bail!("animation sampler {s}: {} outputs for {keyframes} keyframes", output["count"]);
        }
    }
    Ok((vertices, targets, keyframes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternions_of_known_rotations() {
        let q = quaternion(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(q, [0.0, 0.0, 0.0, 1.0]);
        // 90° about y: x → −z.
        let q = quaternion(&[0.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0]);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((q[1] - h).abs() < 1e-6 && (q[3] - h).abs() < 1e-6 && q[0].abs() < 1e-6 && q[2].abs() < 1e-6, "{q:?}");
        // 180° about x (the trace is −1).
        let q = quaternion(&[1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0]);
        assert!((q[0].abs() - 1.0).abs() < 1e-6, "{q:?}");
    }
}
