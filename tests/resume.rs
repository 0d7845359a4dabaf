//! Checkpoints: a run stopped halfway and resumed ends where an uninterrupted run ends; an output
//! folder holding a previous run is refused unless overwriting is asked for.

use faceforge::run::{resume, run_with, Interrupted, RunOptions};
use faceforge_e2e::quickstart_into;
use std::path::Path;

fn coefficients(dir: &Path, frame: &str) -> Vec<f64> {
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{frame}.json"))).unwrap()).unwrap();
    let c = &record["coefficients"];
    ["id", "exp", "tex"].iter().flat_map(|k| c[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap())).collect()
}

#[test]
fn stopped_and_resumed_ends_where_an_uninterrupted_run_ends() {
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The quickstart pipeline (shared identity, PGN, swaps, census/semantic/flow, Adam with its
    // halving schedule) for 60 iterations, checkpoints every 7.
    let scene = |dir: &Path| {
        let mut s = quickstart_into(dir);
        s.apply_overrides(&["outputs.checkpoint_every=7".to_string(), "iterations=60".to_string()]).unwrap();
        s
    };
    let options = RunOptions { progress: false, overwrite: false, ..Default::default() };
    let whole = run_with(&scene(straight.path()), &options).unwrap();

    let err = run_with(&scene(split.path()), &RunOptions { stop_after: Some(33), ..options.clone() }).unwrap_err();
    let stopped = err.downcast_ref::<Interrupted>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!((stopped.iteration, stopped.of), (33, 60));
    assert!(!split.path().join("run.json").exists(), "a stopped run writes no results");
    let resumed = resume(split.path(), &[], &options).unwrap();

    assert_eq!(resumed.loss_history.0.len(), 60);
    for (a, b) in whole.loss_history.0.iter().zip(&resumed.loss_history.0) {
        for (k, v) in a {
            assert!((v - b[k]).abs() <= 1e-5 * v.abs().max(1.0), "{k}: {v} vs {}", b[k]);
        }
    }
    for frame in ["s000_f000", "s000_f001"] {
        let (a, b) = (coefficients(straight.path(), frame), coefficients(split.path(), frame));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f64, f64::max);
        assert!(worst < 1e-5, "{frame}: coefficients differ by {worst}");
    }
    let (ma, mb) = (whole.metrics.unwrap(), resumed.metrics.unwrap());
    assert!((ma.per_vertex_mm.mean - mb.per_vertex_mm.mean).abs() < 1e-5);
    // A finished run resumes only to go further.
    let err = format!("{:#}", resume(split.path(), &[], &options).unwrap_err());
    assert!(err.contains("is finished (60 of 60 iterations)"), "{err}");
    let longer = resume(split.path(), &["iterations=65".to_string()], &options).unwrap();
    assert_eq!(longer.loss_history.0.len(), 65);
    // Another model than the run's: refused, naming the checkpoint's sizes and the model.
    let err = format!("{:#}", resume(split.path(), &["iterations=70".to_string(), "model.Procedural.n_id=10".to_string()], &options).unwrap_err());
    assert!(err.contains("identity coefficients but the model <generated> has 10"), "{err}");
}

#[test]
fn a_folder_with_a_previous_run_is_refused_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let mut scene = quickstart_into(dir.path());
    scene.apply_overrides(&["iterations=2".to_string()]).unwrap();
    let options = RunOptions { progress: false, overwrite: false, ..Default::default() };
    // An empty folder is fine.
    run_with(&scene, &options).unwrap();
    let err = format!("{:#}", run_with(&scene, &options).unwrap_err());
    assert!(err.contains("holds a previous run (run.json)") && err.contains("--force") && err.contains("--resume"), "{err}");
    run_with(&scene, &RunOptions { overwrite: true, ..options.clone() }).unwrap();
    // A folder with someone else's files is not written into either.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), "mine").unwrap();
    let mut scene = quickstart_into(other.path());
    scene.apply_overrides(&["iterations=2".to_string()]).unwrap();
    let err = format!("{:#}", run_with(&scene, &options).unwrap_err());
    assert!(err.contains("is not empty (1 entries)") && err.contains("--force"), "{err}");
}
