//! Video files in, through the system's `ffmpeg` (Debian's `ffmpeg` package): `ffprobe` gives the
//! frame size and rate, and `ffmpeg` decodes to raw RGB on a pipe (`-f rawvideo -pix_fmt
//! rgb24`). A thread reads the pipe and sends the frames through a bounded `crossbeam` channel,
//! so only a few decoded frames exist at a time whatever the clip's length.

use anyhow::{bail, Context};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// File extensions read as video.
pub const VIDEO_EXTENSIONS: [&str; 6] = ["mp4", "mov", "mkv", "avi", "webm", "m4v"];

/// Decoded frames waiting in the channel: enough to keep the consumer busy, few enough to keep
/// memory flat.
const IN_FLIGHT: usize = 8;

pub fn is_video(path: &Path) -> bool {
    path.is_file() && path.extension().and_then(|e| e.to_str()).is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// What `ffprobe` says of a clip's video stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// The decoded frames' size (after the stream's rotation, which ffmpeg applies).
    pub width: u32,
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
    /// The stream's frame count, when the container records it.
    pub frames: Option<u64>,
}

/// Which frames of a clip to read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameSelection {
    /// Every N-th frame (1: all).
    pub every: u32,
    /// At most this many frames (after `every`); 0: all.
    pub max_frames: u32,
}

impl Default for FrameSelection {
    fn default() -> Self {
        Self { every: 1, max_frames: 0 }
    }
}

/// One decoded frame: its index in the clip (before `every`) and its time.
#[derive(Clone, Debug)]
pub struct VideoFrame {
    pub index: u64,
    pub seconds: f64,
    pub image: RgbImage,
}

fn tool(name: &str) -> Command {
    let mut command = Command::new(name);
    command.stdin(Stdio::null());
    command
}

/// The error for a missing `ffmpeg`/`ffprobe`, naming the package.
fn missing(name: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("`{name}` is not installed: video input needs Debian's `ffmpeg` package (apt-get install ffmpeg)")
    } else {
        anyhow::anyhow!("running `{name}`: {e}")
    }
}

/// "30000/1001" → 29.97.
fn rate(text: &str) -> Option<f64> {
    let (n, d) = text.split_once('/').unwrap_or((text, "1"));
    let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

/// The clip's frame size, rate and count, from `ffprobe`.
pub fn probe(path: &Path) -> anyhow::Result<VideoInfo> {
    let output = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate,avg_frame_rate,nb_frames:stream_side_data=rotation", "-of", "json"])
        .arg(path)
        .output()
        .map_err(|e| missing("ffprobe", e))?;
    if !output.status.success() {
        bail!("{}: ffprobe cannot read it: {}", path.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| format!("{}: ffprobe's answer", path.display()))?;
    let stream = json["streams"].get(0).with_context(|| format!("{}: no video stream", path.display()))?;
    let size = |key: &str| stream[key].as_u64().filter(|v| *v > 0).with_context(|| format!("{}: ffprobe gives no {key}", path.display()));
    let (mut width, mut height) = (size("width")? as u32, size("height")? as u32);
    // A phone's portrait clip is stored landscape with a rotation that ffmpeg applies.
    let rotation = stream["side_data_list"].as_array().into_iter().flatten().find_map(|s| s["rotation"].as_f64()).unwrap_or(0.0);
    if (rotation.abs() - 90.0).abs() < 1.0 || (rotation.abs() - 270.0).abs() < 1.0 {
        std::mem::swap(&mut width, &mut height);
    }
    let fps = [stream["avg_frame_rate"].as_str(), stream["r_frame_rate"].as_str()]
        .into_iter()
        .flatten()
        .find_map(rate)
        .with_context(|| format!("{}: ffprobe gives no frame rate", path.display()))?;
    let frames = stream["nb_frames"].as_str().and_then(|n| n.parse().ok());
    Ok(VideoInfo { width, height, fps, frames })
}

/// Starts decoding the selected frames of a clip: its info, and the channel the frames arrive on
/// in order (an `Err` ends it: the decoder failed mid-way).
pub fn decode(path: &Path, selection: FrameSelection) -> anyhow::Result<(VideoInfo, crossbeam_channel::Receiver<anyhow::Result<VideoFrame>>)> {
    if selection.every == 0 {
        bail!("video: `every` must be at least 1");
    }
    let info = probe(path)?;
    let mut command = tool("ffmpeg");
    command.args(["-v", "error", "-nostdin", "-i"]).arg(path);
    command.args(["-vf", &format!("select=not(mod(n\\,{}))", selection.every), "-fps_mode", "passthrough"]);
    if selection.max_frames > 0 {
        command.args(["-frames:v", &selection.max_frames.to_string()]);
    }
    command.args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| missing("ffmpeg", e))?;
    let mut stdout = child.stdout.take().context("ffmpeg: no output pipe")?;
    let (sender, receiver) = crossbeam_channel::bounded(IN_FLIGHT);
    let (width, height, fps, every) = (info.width, info.height, info.fps, selection.every as u64);
    let file: PathBuf = path.to_path_buf();
    std::thread::spawn(move || {
        let bytes = width as usize * height as usize * 3;
        let mut k = 0u64;
        loop {
            let mut buffer = vec![0u8; bytes];
            match read_frame(&mut stdout, &mut buffer) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let _ = sender.send(Err(anyhow::anyhow!("{}: reading ffmpeg's frames: {e}", file.display())));
                    break;
                }
            }
            let index = k * every;
            let image = RgbImage::from_raw(width, height, buffer).expect("the buffer holds one frame");
            if sender.send(Ok(VideoFrame { index, seconds: index as f64 / fps, image })).is_err() {
                break; // the consumer stopped
            }
            k += 1;
        }
        drop(stdout);
        if let Ok(out) = child.wait_with_output()
            && !out.status.success()
        {
            let _ = sender.send(Err(anyhow::anyhow!("{}: ffmpeg failed: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim())));
        }
    });
    Ok((info, receiver))
}

/// Fills `buffer` with one frame: false at a clean end of the stream, an error on a cut frame.
fn read_frame(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("a frame cut after {filled} of {} bytes", buffer.len()))),
            n => filled += n,
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_read_as_ffprobe_writes_them() {
        assert_eq!(rate("25/1"), Some(25.0));
        assert!((rate("30000/1001").unwrap() - 29.97).abs() < 1e-3);
        assert_eq!(rate("0/0"), None);
    }
}
