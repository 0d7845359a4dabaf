//! Splitting a run over machines: `--shard I/N`. A folder's subjects (a loose image, a
//! sub-folder's clip or multi-view set, a video file) are listed by name in a manifest, and shard
//! I takes the subjects at positions I, I + N, I + 2N, …: a subject is never split, and every
//! shard gets a like share of any order the names have. Each shard writes its own folder,
//! `OUT/shard-I-of-N`, with `manifest.json`; `faceforge merge OUT` joins them (docs/scaling.md).

use crate::scene::{LoadedScene, Scene};
use anyhow::{bail, Context};
use faceforge_model::atomic_write;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest a run over a folder writes into its output folder.
pub const FILE: &str = "manifest.json";
const VERSION: u32 = 1;

/// Shard `index` of `count` (counted from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The whole run, in one process.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> anyhow::Result<Self> {
        if count == 0 || index >= count {
            bail!("shard {index}/{count}: the index counts from 0 and must be below the number of shards");
        }
        Ok(Self { index, count })
    }

    /// `I/N`, as `--shard` takes it.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (i, n) = text.split_once('/').with_context(|| format!("--shard {text}: write it I/N (e.g. 3/16, counted from 0)"))?;
        let number = |s: &str, what: &str| s.trim().parse::<u32>().with_context(|| format!("--shard {text}: the {what} `{s}` is not a whole number"));
        Self::new(number(i, "index")?, number(n, "number of shards")?)
    }

    /// The shard from `--shard`, else from the cluster's environment: Slurm's
    /// `SLURM_ARRAY_TASK_ID` (with `--shards N`, else `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes
    /// Indexed Job's `JOB_COMPLETION_INDEX` with `--shards N`. `None`: not sharded.
    pub fn from_args(flag: Option<&str>, shards: Option<u32>, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        if let Some(text) = flag {
            let shard = Self::parse(text)?;
            if shards.is_some_and(|n| n != shard.count) {
                bail!("--shard {text} and --shards {} disagree on the number of shards", shards.unwrap_or_default());
            }
            return Ok(Some(shard));
        }
        let read = |name: &str| -> anyhow::Result<Option<u32>> {
            env(name).map(|v| v.trim().parse::<u32>().with_context(|| format!("the environment's {name}={v} is not a whole number"))).transpose()
        };
        if let Some(index) = read("SLURM_ARRAY_TASK_ID")? {
            // A resubmitted single index (`--array=5`) has a task count of 1: `--shards` says
            // how many there are.
            let count = match shards {
                Some(n) => n,
                None => read("SLURM_ARRAY_TASK_COUNT")?.context("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: pass --shards N")?,
            };
            return Self::new(index, count).map(Some).with_context(|| format!("SLURM_ARRAY_TASK_ID={index} with {count} shards"));
        }
        if let Some(index) = read("JOB_COMPLETION_INDEX")? {
            let count = shards.context("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): pass --shards N, the job's completions")?;
            return Self::new(index, count).map(Some).with_context(|| format!("JOB_COMPLETION_INDEX={index} with {count} shards"));
        }
        if let Some(n) = shards {
            bail!("--shards {n} without a shard index: pass --shard I/{n}, or run as a Slurm array task or Kubernetes Indexed Job");
        }
        Ok(None)
    }

    /// Whether this shard takes the subject at `position` of the manifest.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count as usize == self.index as usize
    }

    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// The shard's folder inside the run's: `shard-03-of-16` (the index as wide as the largest).
    pub fn folder(&self, run: &Path) -> PathBuf {
        if self.is_whole() {
            return run.to_path_buf();
        }
        let width = (self.count - 1).to_string().len();
        run.join(format!("shard-{:0width$}-of-{}", self.index, self.count))
    }
}

/// One subject of the manifest: its name and its inputs (images, or a video file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestSubject {
    pub name: String,
    pub inputs: Vec<PathBuf>,
}

/// What a run over a folder fits, in order, and which part of it this folder holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub scene_file: String,
    /// The scene, with the whole run's output folder (a shard's is inside it).
    pub scene: Scene,
    pub shard: Shard,
    /// Every subject of the data, sorted by name (all shards', not only this one's).
    pub subjects: Vec<ManifestSubject>,
}

impl Manifest {
    pub fn new(loaded: &LoadedScene, shard: Shard, subjects: Vec<ManifestSubject>) -> Self {
        Self { version: VERSION, scene_file: loaded.file.clone(), scene: loaded.scene.clone(), shard, subjects }
    }

    /// This shard's subjects, with their positions in the manifest.
    pub fn mine(&self) -> impl Iterator<Item = (usize, &ManifestSubject)> {
        self.subjects.iter().enumerate().filter(|(p, _)| self.shard.takes(*p))
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(FILE);
        atomic_write(&path, serde_json::to_string_pretty(self)?.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }
}

/// Reads `dir/manifest.json`.
pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}: is {} the output folder of a run over a folder?", path.display(), dir.display()))?;
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| format!("{}: not a faceforge manifest", path.display()))?;
    if manifest.version != VERSION {
        bail!("{}: manifest version {} (this faceforge reads version {VERSION})", path.display(), manifest.version);
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_subjects_for_1_2_3_and_7_shards() {
        // 20 subjects: each lands in exactly one shard, the shards differ in size by at most one,
        // and a shard's subjects keep the manifest's order.
        for count in [1u32, 2, 3, 7] {
            let mut owner = vec![None; 20];
            for index in 0..count {
                let shard = Shard::new(index, count).unwrap();
                let mine: Vec<usize> = (0..20).filter(|&p| shard.takes(p)).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]));
                assert!(mine.len().abs_diff(20 / count as usize) <= 1, "{count} shards: shard {index} has {}", mine.len());
                for p in mine {
                    assert_eq!(owner[p].replace(index), None, "subject {p} in two shards of {count}");
                }
            }
            assert!(owner.iter().all(Option::is_some), "{count} shards leave a subject out: {owner:?}");
        }
    }

    #[test]
    fn the_shard_comes_from_the_flag_or_the_cluster() {
        let none = |_: &str| None;
        assert_eq!(Shard::from_args(Some("2/7"), None, &none).unwrap(), Some(Shard { index: 2, count: 7 }));
        assert_eq!(Shard::from_args(None, None, &none).unwrap(), None);
        for bad in ["7/7", "1", "a/3", "0/0"] {
            assert!(Shard::from_args(Some(bad), None, &none).is_err(), "{bad}");
        }
        let slurm = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("3".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("1".to_string()),
            _ => None,
        };
        // A resubmitted index: the array has one task, --shards says how many shards there are.
        assert_eq!(Shard::from_args(None, Some(4), &slurm).unwrap(), Some(Shard { index: 3, count: 4 }));
        assert!(Shard::from_args(None, None, &slurm).is_err(), "index 3 of a 1-task array");
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "5".to_string());
        assert_eq!(Shard::from_args(None, Some(8), &k8s).unwrap(), Some(Shard { index: 5, count: 8 }));
        assert!(Shard::from_args(None, None, &k8s).is_err(), "an Indexed Job needs --shards");
        assert_eq!(Shard { index: 3, count: 16 }.folder(Path::new("out")), PathBuf::from("out/shard-03-of-16"));
        assert_eq!(Shard::WHOLE.folder(Path::new("out")), PathBuf::from("out"));
    }
}
