//! The `faceforge` binary killed (SIGKILL, no chance to clean up) in the middle of a run, then
//! `faceforge run --resume OUT`: the result equals an uninterrupted run's; and a second `run`
//! into the same folder is refused without `--force`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_faceforge");

fn quickstart_args(out: &Path) -> Vec<String> {
    let scene = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes/quickstart.ron");
    let mut args = vec!["run".to_string(), scene.display().to_string(), "--quiet".to_string()];
    for set in ["model.Procedural.preset=Tiny", "backend=Cpu", "data.Synthetic.size=64", "iterations=150", "outputs.checkpoint_every=5", "outputs.meshes=[]", "outputs.images=false"] {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    args.extend(["--set".to_string(), format!("outputs.dir={:?}", out.display().to_string())]);
    args
}

fn coefficients(dir: &Path) -> Vec<f64> {
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("s000_f001.json")).unwrap()).unwrap();
    ["id", "exp", "tex"].iter().flat_map(|k| record["coefficients"][k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>()).collect()
}

fn checkpoint_iteration(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("checkpoint.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["iteration"].as_u64()
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let (straight, killed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let status = Command::new(EXE).args(quickstart_args(straight.path())).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());

    let mut child = Command::new(EXE).args(quickstart_args(killed.path())).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint_iteration(killed.path()).is_none_or(|i| i < 20) {
        assert!(Instant::now() < deadline, "no checkpoint at iteration 20 within two minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at = checkpoint_iteration(killed.path()).unwrap();
    assert!(at < 150 && !killed.path().join("run.json").exists(), "killed at iteration {at}, before the end");

    let output = Command::new(EXE).args(["run", "--quiet", "--resume", &killed.path().display().to_string()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (a, b) = (coefficients(straight.path()), coefficients(killed.path()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f64, f64::max);
    assert!(worst < 1e-5, "resumed from iteration {at}: coefficients differ by {worst}");

    // The folder now holds a finished run: a new run into it is refused without --force.
    let output = Command::new(EXE).args(quickstart_args(killed.path())).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("holds a previous run") && stderr.contains("--force"), "{stderr}");
}
