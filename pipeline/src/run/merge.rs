//! `faceforge merge`: one output folder from the folders of a sharded run's shards. The
//! per-frame files are linked into it (hard links, so no second copy on one file system). The
//! summary is computed from the shards' per-subject records exactly as one process computes its
//! own: `metrics.json` over all frames, the report, `losses.csv`. `run.json` lists every shard,
//! every skipped input, and the shards and subjects that are missing.

use crate::run::shard::{self, Manifest};
use crate::run::subjects::{read_record, record_path, summarize, SubjectRecord};
use crate::run::{load_model, megabytes, RunSummary};
use crate::scene::graph::{plan, svg};
use crate::scene::LoadedScene;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a merge joined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    pub shards: Vec<MergedShard>,
    /// Shards with no folder among those merged.
    pub missing_shards: Vec<u32>,
    /// Subjects of the merged shards without a record: their shard stopped before finishing them.
    pub missing_subjects: Vec<String>,
}

/// One shard of a merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedShard {
    pub index: u32,
    pub dir: PathBuf,
    /// The shard's subjects, and how many of them it finished.
    pub subjects: usize,
    pub done: usize,
    pub frames: usize,
    pub skipped: usize,
    /// Seconds its subjects took to fit and write (summed over restarts).
    pub seconds: f64,
    /// The peak memory its last process reported in its `run.json` (none when it never ended).
    #[serde(default)]
    pub peak_memory_mb: Option<f64>,
}

impl Merged {
    /// Every shard there and finished.
    pub fn complete(&self) -> bool {
        self.missing_shards.is_empty() && self.missing_subjects.is_empty()
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        let count = self.shards.len() + self.missing_shards.len();
        let mut text = format!("{} of {count} shards", self.shards.len());
        if !self.missing_shards.is_empty() {
            text.push_str(&format!("; missing shards {}", self.missing_shards.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")));
        }
        if !self.missing_subjects.is_empty() {
            text.push_str(&format!("; {} subjects not finished ({})", self.missing_subjects.len(), self.missing_subjects.iter().take(10).cloned().collect::<Vec<_>>().join(", ")));
        }
        text
    }

    /// The report's time: the shards' fitting, not the merge's own seconds.
    pub fn time(&self, merging: f64) -> String {
        let fitting: f64 = self.shards.iter().map(|s| s.seconds).sum();
        format!("{fitting:.1} s fitting in the shards (their subjects' times summed); {merging:.1} s merging")
    }

    /// The report's peak memory: the largest shard's, then the merge's own.
    pub fn peak_memory(&self, merging: Option<f64>) -> String {
        let largest = self.shards.iter().filter_map(|s| s.peak_memory_mb).reduce(f64::max);
        format!("{} in the largest shard; {} merging", megabytes(largest), megabytes(merging))
    }
}

/// The peak memory a shard's process wrote into its `run.json`.
fn shard_peak_memory(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get("peak_memory_mb")?.as_f64()
}

/// The shard folders named: a shard's folder itself, or a run's folder holding `shard-*`.
fn shard_folders(dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in dirs {
        if dir.join(shard::FILE).exists() && shard::read(dir).is_ok_and(|m| !m.shard.is_whole()) {
            found.push(dir.clone());
            continue;
        }
        let mut inside: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-")) && p.join(shard::FILE).exists())
            .collect();
        if inside.is_empty() {
            bail!("{} is neither a shard's folder (with a manifest.json of a sharded run) nor a folder holding shard-* folders", dir.display());
        }
        inside.sort();
        found.extend(inside);
    }
    Ok(found)
}

/// A per-frame file of a shard, in the merged folder: a hard link, or a copy across file systems.
fn link(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if to.exists() {
        std::fs::remove_file(to).with_context(|| format!("replacing {}", to.display()))?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Merges the shards in `dirs` (shard folders, or run folders holding them) into `out`
/// (default: the folder holding the shards).
pub fn merge(dirs: &[PathBuf], out: Option<&Path>) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let folders = shard_folders(dirs)?;
    let manifests: Vec<Manifest> = folders.iter().map(|d| shard::read(d)).collect::<anyhow::Result<_>>()?;
    let first = &manifests[0];
    for (dir, m) in folders.iter().zip(&manifests).skip(1) {
        if m.shard.count != first.shard.count || m.subjects != first.subjects || m.scene != first.scene {
            bail!("{} is a shard of another run than {} (its scene, data or number of shards differ)", dir.display(), folders[0].display());
        }
    }
    let mut indices: Vec<u32> = manifests.iter().map(|m| m.shard.index).collect();
    indices.sort_unstable();
    if let Some(w) = indices.windows(2).find(|w| w[0] == w[1]) {
        bail!("shard {} of {} is named twice", w[0], first.shard.count);
    }
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => {
            let parents: Vec<&Path> = folders.iter().filter_map(|d| d.parent()).collect();
            match parents.first() {
                Some(p) if parents.iter().all(|q| q == p) => p.to_path_buf(),
                _ => bail!("the shards are in different folders: name the merged folder with --out"),
            }
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let (mut records, mut shards, mut missing_subjects) = (Vec::<(PathBuf, SubjectRecord)>::new(), Vec::new(), Vec::new());
    for (dir, manifest) in folders.iter().zip(&manifests) {
        let mut shard = MergedShard { index: manifest.shard.index, dir: dir.clone(), subjects: 0, done: 0, frames: 0, skipped: 0, seconds: 0.0, peak_memory_mb: shard_peak_memory(dir) };
        for (_, subject) in manifest.mine() {
            shard.subjects += 1;
            let path = record_path(dir, &subject.name);
            if !path.exists() {
                missing_subjects.push(subject.name.clone());
                continue;
            }
            let record = read_record(&path)?;
            for file in &record.files {
                link(&dir.join(file), &out.join(file))?;
            }
            shard.done += 1;
            shard.frames += record.frames;
            shard.skipped += record.skipped.len();
            shard.seconds += record.seconds;
            records.push((dir.clone(), record));
        }
        shards.push(shard);
    }
    let missing_shards: Vec<u32> = (0..first.shard.count).filter(|i| !indices.contains(i)).collect();
    let merged = Merged { shards, missing_shards, missing_subjects };
    if !merged.complete() {
        tracing::warn!("incomplete: {}", merged.describe());
    }

    let mut loaded = LoadedScene { scene: first.scene.clone(), file: first.scene_file.clone(), source: String::new() };
    loaded.scene.outputs.dir = out.clone();
    let model = load_model(&loaded.scene.model)?;
    // The merged folder reads as one process's run: its manifest is the whole run's.
    Manifest { shard: shard::Shard::WHOLE, ..first.clone() }.save(&out)?;
    let backend = std::fs::read_to_string(folders[0].join("run.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).and_then(|v| v["backend"].as_str().map(str::to_string));
    let backend = format!("{} (merged from {} shards)", backend.unwrap_or_else(|| "?".into()), folders.len());
    let pairs: Vec<(&Path, &SubjectRecord)> = records.iter().map(|(d, r)| (d.as_path(), r)).collect();
    summarize(&loaded, &model, &pairs, backend, svg(&plan(&loaded)?), None, Some(merged), started)
}
