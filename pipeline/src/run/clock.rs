//! Where a run's time goes, by stage, for `faceforge bench video`: decode (waiting for ffmpeg's
//! frames, cropping them), detect, landmarks, fit (the iterations) and write (outputs, summary,
//! report). Process-wide counters: the benchmark runs one variant at a time and takes them after
//! each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Decode,
    Detect,
    Landmarks,
    Fit,
    Write,
}

pub const STAGES: [Stage; 5] = [Stage::Decode, Stage::Detect, Stage::Landmarks, Stage::Fit, Stage::Write];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Detect => "detect",
            Stage::Landmarks => "landmarks",
            Stage::Fit => "fit",
            Stage::Write => "write",
        }
    }
}

static NANOS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

pub fn add(stage: Stage, spent: Duration) {
    NANOS[stage as usize].fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
}

/// Runs `f`, counting its time to `stage`.
pub fn time<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    add(stage, started.elapsed());
    out
}

/// Each stage's seconds since the last `take`, and the counters set back to zero.
pub fn take() -> Vec<(Stage, f64)> {
    STAGES.iter().map(|&s| (s, NANOS[s as usize].swap(0, Ordering::Relaxed) as f64 * 1e-9)).collect()
}
