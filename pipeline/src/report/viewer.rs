//! A clip's `.glb` played in the browser, offline: `NAME_viewer.html` loads three.js (vendored,
//! `pipeline/assets/three/`, written to `viewer/` in the output folder) as classic scripts and
//! the clip's glTF from `NAME_glb.js` (the `.glb` as base64: a page opened from `file://` may run
//! scripts beside it but not fetch files). It plays the animation, turning slowly, and says in
//! its `#status` what it loaded (vertices, morph targets, keyframes), or the error.

use anyhow::Context;
use base64::Engine as _;
use faceforge_model::atomic_write;
use std::path::{Path, PathBuf};

const THREE: &[u8] = include_bytes!("../../assets/three/three.min.js");
const GLTF_LOADER: &[u8] = include_bytes!("../../assets/three/GLTFLoader.js");
const THREE_LICENSE: &[u8] = include_bytes!("../../assets/three/LICENSE");

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>NAME</title>
<style>body{margin:0;font-family:sans-serif;background:#202428;color:#ddd}#status{position:absolute;left:12px;top:8px}canvas{display:block}</style>
<script src="viewer/three.min.js"></script>
<script src="viewer/GLTFLoader.js"></script>
<script src="NAME_glb.js"></script>
</head><body><p id="status">loading NAME.glb…</p>
<script>
const status = document.getElementById('status');
const bytes = Uint8Array.from(atob(FACEFORGE_GLB), c => c.charCodeAt(0));
new THREE.GLTFLoader().parse(bytes.buffer, '', gltf => {
  let vertices = 0, targets = 0;
  gltf.scene.traverse(o => { if (o.isMesh) { vertices += o.geometry.attributes.position.count; targets += (o.geometry.morphAttributes.position || []).length; } });
  const clip = gltf.animations[0];
  const keyframes = clip ? clip.tracks[0].times.length : 0;
  status.textContent = `NAME: loaded ${vertices} vertices, ${targets} morph targets, ${keyframes} keyframes, ${clip ? clip.duration.toFixed(2) : 0} s`;
  document.title = status.textContent;
  let renderer;
  try { renderer = new THREE.WebGLRenderer({antialias: true}); } catch (e) { status.textContent += ' (no WebGL here: nothing drawn)'; return; }
  renderer.outputEncoding = THREE.sRGBEncoding;
  renderer.setClearColor(0x303438);
  renderer.setSize(window.innerWidth, window.innerHeight);
  document.body.appendChild(renderer.domElement);
  const scene = new THREE.Scene();
  scene.add(new THREE.HemisphereLight(0xffffff, 0x606060, 1.2));
  const light = new THREE.DirectionalLight(0xffffff, 0.6); light.position.set(0.3, 0.5, 1); scene.add(light);
  const pivot = new THREE.Group(); pivot.add(gltf.scene); scene.add(pivot);
  const box = new THREE.Box3().setFromObject(gltf.scene), centre = box.getCenter(new THREE.Vector3());
  const camera = new THREE.PerspectiveCamera(30, window.innerWidth / window.innerHeight, 0.01, 10);
  camera.position.set(centre.x, centre.y, centre.z + 2.2 * box.getSize(new THREE.Vector3()).length());
  camera.lookAt(centre);
  const mixer = new THREE.AnimationMixer(gltf.scene);
  if (clip) mixer.clipAction(clip).play();
  const clock = new THREE.Clock();
  renderer.setAnimationLoop(() => { const dt = clock.getDelta(); mixer.update(dt); pivot.rotation.y = 0.3 * Math.sin(clock.elapsedTime * 0.5); renderer.render(scene, camera); });
}, error => { status.textContent = 'NAME: cannot load: ' + error; document.title = status.textContent; });
</script></body></html>
"#;

/// Writes `viewer/` (three.js and its licence) and, for the clip `name`, `NAME_glb.js` and
/// `NAME_viewer.html`; returns the files written.
pub fn write_viewer(dir: &Path, name: &str, glb: &[u8]) -> anyhow::Result<Vec<PathBuf>> {
    let script = format!("const FACEFORGE_GLB = \"{}\";\n", base64::engine::general_purpose::STANDARD.encode(glb));
    let page = PAGE.replace("NAME", name);
    let files: [(PathBuf, &[u8]); 5] = [
        (dir.join("viewer/three.min.js"), THREE),
        (dir.join("viewer/GLTFLoader.js"), GLTF_LOADER),
        (dir.join("viewer/LICENSE-three.txt"), THREE_LICENSE),
        (dir.join(format!("{name}_glb.js")), script.as_bytes()),
        (dir.join(format!("{name}_viewer.html")), page.as_bytes()),
    ];
    std::fs::create_dir_all(dir.join("viewer")).with_context(|| format!("creating {}", dir.join("viewer").display()))?;
    for (path, bytes) in &files {
        atomic_write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}
