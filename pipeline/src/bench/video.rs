//! `faceforge bench video`: `faceforge reconstruct CLIP.mp4` on a synthetic clip that the
//! benchmark renders and encodes with ffmpeg (a face moving smoothly, in a 640×480 frame), in two
//! variants: the fast clip fit (scenes/reconstruct_clip_landmarks.ron: the landmark and temporal
//! terms) and the built-in one (scenes/reconstruct_clip.ron: with the census term over
//! neighbouring frames). Frames per second, and each stage's share of the time: decode, detect,
//! landmarks, fit, write (the outputs, with the render they need).

use crate::run::clock;
use crate::run::reconstruct::{reconstruct, ReconstructOptions};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The clip: `frames` frames of the `ClipLike` synthetic face (`default` model) rendered at the
/// frame's height and centred in a `width` × `height` H.264 mp4 at 25 fps.
pub fn make_clip(dir: &Path, frames: u32, width: u32, height: u32) -> anyhow::Result<PathBuf> {
    if width < height {
        bail!("bench video: the frame must be at least as wide as it is high (got {width}×{height})");
    }
    let pictures = dir.join("frames");
    let exe = std::env::current_exe().context("finding the faceforge binary")?;
    let status = Command::new(exe)
        .stdout(std::process::Stdio::null())
        .args(["synth", "clip-like", "--subjects", "1", "--noise", "0", "--frames", &frames.to_string(), "--size", &height.to_string(), "--out"])
        .arg(&pictures)
        .status()
        .context("running faceforge synth")?;
    if !status.success() {
        bail!("faceforge synth failed ({status})");
    }
    let clip = dir.join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "25", "-i"])
        .arg(pictures.join("s000_f%03d.png"))
        .args(["-vf", &format!("pad={width}:{height}:{}:0:gray", (width - height) / 2), "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .map_err(|e| anyhow::anyhow!("running ffmpeg (Debian's `ffmpeg` package): {e}"))?;
    if !status.success() {
        bail!("ffmpeg could not encode the clip ({status})");
    }
    std::fs::remove_dir_all(&pictures).ok();
    Ok(clip)
}

/// One variant's run: frames, seconds, peak memory, and each stage's seconds.
pub struct VideoRun {
    pub variant: String,
    pub frames: usize,
    pub seconds: f64,
    pub peak_memory_mb: Option<f64>,
    pub stages: Vec<(clock::Stage, f64)>,
}

/// The two variants: the fast clip fit (landmark, regulariser and temporal terms) and the
/// built-in one (with the census over neighbouring frames), as (name, scene file, its text).
pub const VARIANTS: [(&str, &str, &str); 2] = [
    ("landmark + temporal", "reconstruct_clip_landmarks.ron", include_str!("../../../scenes/reconstruct_clip_landmarks.ron")),
    ("+ census on Neighbours(1)", "reconstruct_clip.ron", crate::run::reconstruct::BUILT_IN_CLIP_SCENE),
];

/// Reconstructs `clip` once per variant (name, scene file, its text), with the same overrides.
pub fn run(clip: &Path, out: &Path, variants: &[(&str, &str, &str)], overrides: &[String]) -> anyhow::Result<Vec<VideoRun>> {
    let mut runs = Vec::new();
    for (k, (variant, file, text)) in variants.iter().enumerate() {
        let scene = out.join(file);
        std::fs::write(&scene, text).with_context(|| format!("writing {}", scene.display()))?;
        clock::take();
        let options = ReconstructOptions {
            inputs: vec![clip.to_path_buf()],
            out: Some(out.join(format!("variant{k}"))),
            scene: Some(scene),
            overrides: overrides.to_vec(),
            run: crate::run::RunOptions { overwrite: true, no_checkpoints: true, ..Default::default() },
            ..Default::default()
        };
        let summary = reconstruct(&options)?;
        runs.push(VideoRun { variant: variant.to_string(), frames: summary.frames, seconds: summary.seconds, peak_memory_mb: summary.peak_memory_mb, stages: clock::take() });
    }
    Ok(runs)
}

/// The table: per variant, frames per second, and each stage's share of the run.
pub fn table(runs: &[VideoRun]) -> String {
    let mut s = String::from("| variant | frames | s | frames/s | × first (same run) |");
    for stage in clock::STAGES {
        s.push_str(&format!(" {} |", stage.name()));
    }
    s.push_str(" peak memory |\n| --- | ---: | ---: | ---: | ---: |");
    s.push_str(&" ---: |".repeat(clock::STAGES.len() + 1));
    s.push('\n');
    let first = runs.first().map_or(f64::NAN, |r| r.frames as f64 / r.seconds);
    for r in runs {
        let fps = r.frames as f64 / r.seconds;
        s.push_str(&format!("| {} | {} | {:.1} | {:.2} | {:.2} |", r.variant, r.frames, r.seconds, fps, fps / first));
        let total: f64 = r.stages.iter().map(|(_, t)| t).sum::<f64>().max(1e-9);
        for (_, t) in &r.stages {
            s.push_str(&format!(" {:.0} % ({t:.1} s) |", 100.0 * t / total));
        }
        s.push_str(&format!(" {} |\n", crate::run::megabytes(r.peak_memory_mb)));
    }
    s
}
