//! The `faceforge` binary as a user runs it: model export / info / obj, check, run, and the
//! errors a damaged file or a bad scene gives (non-zero exit, the file named, no panic).

use std::path::Path;
use std::process::{Command, Output};

fn faceforge(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faceforge")).args(args).current_dir(cwd).env("RUST_LOG", "warn").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn model_export_info_and_obj() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = faceforge(&["model", "export", "--preset", "tiny", "--seed", "3", "m.ffm"], d);
    assert!(o.status.success(), "{}", text(&o));
    let o = faceforge(&["model", "info", "m.ffm"], d);
    let info = text(&o);
    assert!(o.status.success() && info.contains("preset tiny, seed 3") && info.contains("80 identity, 64 expression, 80 albedo"), "{info}");
    let o = faceforge(&["model", "obj", "m.ffm", "mean.obj"], d);
    assert!(o.status.success(), "{}", text(&o));
    let obj = std::fs::read_to_string(d.join("mean.obj")).unwrap();
    let vertices = obj.lines().filter(|l| l.starts_with("v ")).count();
    assert!(info.contains(&format!("{vertices} vertices")), "{info}");

    // A flipped byte: a clear error naming the file, exit code 1, no panic.
    let mut bytes = std::fs::read(d.join("m.ffm")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(d.join("bad.ffm"), bytes).unwrap();
    let o = faceforge(&["model", "info", "bad.ffm"], d);
    let shown = text(&o);
    assert_eq!(o.status.code(), Some(1), "{shown}");
    assert!(shown.contains("bad.ffm") && shown.contains("checksum") && !shown.contains("panicked"), "{shown}");
}

#[test]
fn check_and_run_a_scene_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scene = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes/quickstart.ron");
    let scene = scene.to_str().unwrap();
    let o = faceforge(&["check", scene], d);
    assert!(o.status.success() && text(&o).contains("ok"), "{}", text(&o));
    let o = faceforge(
        &["run", scene, "--quiet", "--set", "model.Procedural.preset=Tiny", "--set", "outputs.dir=\"out\"", "--set", "data.Synthetic.frames=3", "--set", "data.Synthetic.size=48", "--set", "iterations=3"],
        d,
    );
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    assert!(d.join("out/s000_f002.obj").exists() && d.join("out/run.json").exists(), "--set data.Synthetic.frames=3 was applied");
    // The per-frame pose and error table.
    assert!(shown.contains("s000_f002") && shown.contains("per-vertex") && shown.contains("mean face"), "{shown}");

    std::fs::write(d.join("bad.ron"), "Scene(\n  data: Sampled(),\n  systems: [],\n  outputs: (dir: \"x\", meshs: [Obj]),\n)\n").unwrap();
    let o = faceforge(&["check", "bad.ron"], d);
    let shown = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(shown.contains("bad.ron:4:") && shown.contains("meshs"), "{shown}");
}

/// `check --graph` prints the derived graph stage by stage: the quickstart's adjoints come after
/// its losses in reverse stage order (each the adjoint of a forward system listed earlier in
/// the opposite order), then the step; `check` alone names what it dropped and why.
#[test]
fn check_graph_lists_the_quickstart_adjoints_in_reverse_stage_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = faceforge(&["check", "--graph", "scenes/quickstart.ron"], &root);
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    let line_of = |needle: &str| shown.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in:\n{shown}"));
    let forward = ["share_identity ", "pgn ", "reconstruct ", "sample_texture ", "swap_visible_texture ", "render_swapped "];
    let adjoints: Vec<usize> = forward.iter().rev().map(|f| line_of(&format!("[adjoint of {}]", f.trim()))).collect();
    assert!(adjoints.windows(2).all(|w| w[0] < w[1]), "adjoints in reverse stage order: {adjoints:?}\n{shown}");
    let forwards: Vec<usize> = forward.iter().map(|f| line_of(&format!("  {f}"))).collect();
    assert!(forwards.windows(2).all(|w| w[0] < w[1]) && forwards.last() < adjoints.first(), "{shown}");
    assert!(line_of("[loss]") < adjoints[0] && adjoints.last() < Some(&line_of("  adam ")), "{shown}");
    assert!(shown.contains("reads Grad<VertexColors>, Mesh, Pose, Image  →  writes Grad<Mesh>, Grad<Pose>  [adjoint of sample_texture]"), "{shown}");

    let o = faceforge(&["check", "scenes/cest.ron", "--set", r#"losses={"landmark": 1.0, "regulariser": 1.0}"#], &root);
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    assert!(shown.contains("dropped render_reflectance: nothing reads ReflectanceRenders"), "{shown}");
    assert!(shown.contains("note: `Illumination` (set by lighting) reaches no weighted loss"), "{shown}");
}
