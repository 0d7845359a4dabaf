//! Sharded runs (`--shard I/N`, `faceforge merge`) on a real folder of PNG + `.pts` files
//! (written by `faceforge synth`, with their ground truth), holding five loose images and a
//! three-frame clip sub-folder. The tests check four things:
//! - the shards partition the subjects, and the clip is never split;
//! - two shards merged equal one process: every per-frame file is the same bytes, and the
//!   metrics agree within 1e-6;
//! - a shard killed mid-way and started again ends with the same files as one never killed;
//! - a merge with a shard missing says which one.

use faceforge::io::synth::{generate, write, SynthPreset, SynthSpec};
use faceforge::run::shard::Shard;
use faceforge::run::{run_with, Interrupted, RunOptions};
use faceforge_e2e::scene;
use faceforge_kernels::Backend;
use faceforge_model::{MorphableModel, ModelSpec, Preset};
use std::path::{Path, PathBuf};

const ITERATIONS: u32 = 40;

fn folder_scene(images: &Path, out: &Path) -> faceforge::LoadedScene {
    scene(
        &format!(
            r#"Scene(
            data: Folder(path: {images:?}, size: 96),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [(name: "share_identity"), (name: "pgn", settings: (camera: ScaledRotation)), (name: "reconstruct", settings: (albedo: true)), (name: "vertex_normals"), (name: "render")],
            losses: {{"landmark": 1.0, "regulariser": 1.0}},
            iterations: {ITERATIONS},
            outputs: (dir: {out:?}, meshes: [Obj], coefficients: true, images: true, landmarks: true, checkpoint_every: 10),
        )"#,
            images = images.display().to_string(),
            out = out.display().to_string()
        ),
        "shards.ron",
    )
}

/// Five loose synthetic faces and a clip of three frames (a sub-folder), with `.pts` and truth.
fn synthetic_folder(dir: &Path) {
    let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
    let spec = |subjects, frames, seed| SynthSpec { preset: SynthPreset::AflwLike, subjects, frames, size: 96, seed, landmark_noise: 0.5, ..SynthSpec::default() };
    write(dir, &generate(&model, &Backend::Cpu, &spec(5, 1, 3))).unwrap();
    write(&dir.join("clip"), &generate(&model, &Backend::Cpu, &spec(1, 3, 4))).unwrap();
}

fn sharded(index: u32, count: u32) -> RunOptions {
    RunOptions { shard: Some(Shard::new(index, count).unwrap()), ..RunOptions::default() }
}

/// The per-frame outputs of a folder (what a subject's fit writes), by name.
fn frame_files(dir: &Path) -> Vec<String> {
    let summary = ["manifest.json", "run.json", "metrics.json", "report.html", "report.md", "losses.csv"];
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).filter(|n| !summary.contains(&n.as_str())).collect();
    names.sort();
    names
}

fn assert_same_files(a: &Path, b: &Path, names: &[String]) {
    for name in names {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).map_err(|e| format!("{}: {e}", b.join(name).display())).unwrap());
        assert!(x == y, "{name} differs between {} and {}", a.display(), b.display());
    }
}

/// Every number of two JSON values, side by side, with where it is.
fn numbers(a: &serde_json::Value, b: &serde_json::Value, at: &str, out: &mut Vec<(String, f64, f64)>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (k, v) in x {
                numbers(v, &y[k], &format!("{at}.{k}"), out);
            }
        }
        (serde_json::Value::Array(x), serde_json::Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                numbers(v, w, &format!("{at}[{i}]"), out);
            }
        }
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => out.push((at.to_string(), x.as_f64().unwrap(), y.as_f64().unwrap())),
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn shards_partition_a_folders_subjects_and_never_split_a_clip() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_folder(&dir.path().join("images"));
    let loaded = folder_scene(&dir.path().join("images"), &dir.path().join("out"));
    let spec = faceforge::run::subjects::folder_of(&loaded.scene.data).unwrap();
    let names = |shard: Shard| -> Vec<(String, usize)> {
        let manifest = faceforge::run::subjects::manifest(&loaded, &spec, shard).unwrap();
        manifest.mine().map(|(_, s)| (s.name.clone(), s.inputs.len())).collect()
    };
    let all = names(Shard::WHOLE);
    assert_eq!(all.len(), 6, "five images and a clip: {all:?}");
    assert!(all.contains(&("clip".to_string(), 3)), "the clip is one subject of three frames: {all:?}");
    for count in [1, 2, 3, 7] {
        let mut seen: Vec<(String, usize)> = (0..count).flat_map(|i| names(Shard::new(i, count).unwrap())).collect();
        seen.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(seen, expected, "{count} shards: every subject exactly once, whole");
    }
}

#[test]
fn two_shards_merged_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    synthetic_folder(&images);
    let one = dir.path().join("one");
    let single = run_with(&folder_scene(&images, &one), &RunOptions::default()).unwrap();
    assert_eq!((single.frames, single.skipped.len()), (8, 0));

    let run = dir.path().join("sharded");
    for i in 0..2 {
        run_with(&folder_scene(&images, &run), &sharded(i, 2)).unwrap();
    }
    // The clip's three frames are all in one shard's folder.
    let holders: Vec<u32> = (0..2).filter(|&i| Shard::new(i, 2).unwrap().folder(&run).join("clip_s000_f000.obj").exists()).collect();
    assert_eq!(holders.len(), 1);
    let clip_shard = Shard::new(holders[0], 2).unwrap().folder(&run);
    assert!((0..3).all(|f| clip_shard.join(format!("clip_s000_f{f:03}.obj")).exists()), "the clip was split");

    let merged = faceforge::run::merge::merge(std::slice::from_ref(&run), None).unwrap();
    assert_eq!(merged.out_dir, run);
    let facts = merged.merged.as_ref().unwrap();
    assert!(facts.complete() && facts.shards.len() == 2, "{facts:?}");
    assert_eq!(merged.frames, 8);

    // Per frame: the same bytes (coefficients, pose, meshes, landmarks, images).
    let files = frame_files(&one);
    assert!(files.len() >= 8 * 6, "{files:?}");
    assert_eq!(frame_files(&run), files, "the merged folder holds the same per-frame files");
    assert_same_files(&one, &run, &files);
    // The metrics over all frames, from the records, as one process computes them.
    let mut pairs = Vec::new();
    numbers(&json(one.join("metrics.json")), &json(run.join("metrics.json")), "metrics", &mut pairs);
    assert!(pairs.len() > 100, "{} numbers", pairs.len());
    for (at, a, b) in &pairs {
        assert!((a - b).abs() <= 1e-6, "{at}: one process {a}, merged {b}");
    }
    assert_eq!(std::fs::read_to_string(one.join("losses.csv")).unwrap(), std::fs::read_to_string(run.join("losses.csv")).unwrap(), "the loss curve");
    let run_json = json(run.join("run.json"));
    assert_eq!(run_json["merged"]["shards"].as_array().unwrap().len(), 2);
    assert_eq!(run_json["merged"]["missing_shards"], serde_json::json!([]));
    // The report's time and memory are the shards' (each shard's run.json), not the merge's own.
    assert!(facts.shards.iter().all(|s| s.seconds > 0.0 && s.peak_memory_mb.is_some_and(|mb| mb > 0.0)), "{facts:?}");
    assert!(std::fs::read_to_string(run.join("report.md")).unwrap().contains("s fitting in the shards"));

    // A shard missing: the merge says which, and still writes what it has.
    let partial = dir.path().join("partial");
    let only_first = faceforge::run::merge::merge(&[Shard::new(0, 2).unwrap().folder(&run)], Some(&partial)).unwrap();
    let facts = only_first.merged.unwrap();
    assert_eq!(facts.missing_shards, vec![1]);
    assert!(!facts.complete());
    assert!(json(partial.join("run.json"))["merged"]["missing_shards"] == serde_json::json!([1]));
    assert!(std::fs::read_to_string(partial.join("report.md")).unwrap().contains("missing shards 1"));
}

#[test]
fn a_shard_killed_mid_way_and_started_again_ends_with_the_files_of_one_never_killed() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    synthetic_folder(&images);
    let whole = dir.path().join("never_killed");
    run_with(&folder_scene(&images, &whole), &sharded(1, 2)).unwrap();

    let killed = dir.path().join("killed");
    let scene = folder_scene(&images, &killed);
    // Stopped 15 iterations into its second subject (a checkpoint at 10 and at the stop).
    let stop = RunOptions { stop_after: Some(ITERATIONS + 15), ..sharded(1, 2) };
    let err = run_with(&scene, &stop).unwrap_err();
    let interrupted = err.downcast_ref::<Interrupted>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(interrupted.iteration, 15);
    let folder = Shard::new(1, 2).unwrap().folder(&killed);
    let records = folder.join("records");
    let subject = interrupted.subject.clone().unwrap();
    assert!(records.join(format!("{subject}.checkpoint.json")).exists() && !records.join(format!("{subject}.json")).exists());
    assert!(!folder.join("run.json").exists(), "no summary before the shard is done");
    // Started again with the same command: the first subject is kept, the second goes on.
    run_with(&scene, &sharded(1, 2)).unwrap();
    let never = Shard::new(1, 2).unwrap().folder(&whole);
    let files = frame_files(&never);
    assert_eq!(frame_files(&folder), files);
    assert_same_files(&never, &folder, &files);
    assert!(!records.join(format!("{subject}.checkpoint.json")).exists(), "the checkpoint goes once the subject is done");
    for entry in std::fs::read_dir(never.join("records")).unwrap() {
        let name = entry.unwrap().file_name();
        if name.to_string_lossy().ends_with(".json") {
            let (mut a, mut b) = (json(never.join("records").join(&name)), json(records.join(&name)));
            // How long a subject took is the one thing a restart changes.
            a["seconds"] = serde_json::Value::Null;
            b["seconds"] = serde_json::Value::Null;
            assert_eq!(a, b, "{name:?}");
        }
    }
    let mut pairs = Vec::new();
    numbers(&json(never.join("metrics.json")), &json(folder.join("metrics.json")), "metrics", &mut pairs);
    assert!(pairs.iter().all(|(_, a, b)| a == b));
    // Started once more, the finished shard changes nothing and says so.
    let again = run_with(&scene, &sharded(1, 2)).unwrap();
    assert_eq!(again.frames, 3, "s000, s002 and s004");
    // Another scene into the same shard folder is refused, naming it.
    let mut other = folder_scene(&images, &killed);
    other.scene.iterations = 7;
    let err = format!("{:#}", run_with(&other, &sharded(1, 2)).unwrap_err());
    assert!(err.contains("another run") && err.contains("--force"), "{err}");
}
