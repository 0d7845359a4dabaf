//! `faceforge detect`: the built-in detector and landmarker on photos and folders. Per face, an
//! iBUG `.pts` with the 68 points and a JSON with the box, the score, the six keypoints, the
//! crop, the presence and the 468 FaceMesh points, all in the photo's pixels. One bad input
//! never stops the rest: it is skipped and listed (`strict` makes it an error).

use crate::io::inputs::{decode_image, frame_name, list, FolderSpec, Skipped};
use crate::io::outputs::pts_text;
use anyhow::Context;
use faceforge_detect::{DetectOptions, Face};
use faceforge_model::atomic_write;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `detect` found and wrote.
#[derive(Debug, Serialize)]
pub struct DetectSummary {
    pub images: usize,
    pub faces: usize,
    pub files: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
}

#[derive(Serialize)]
struct FaceRecord<'a> {
    image: String,
    width: u32,
    height: u32,
    #[serde(flatten)]
    face: &'a Face,
    ibug68: Vec<[f32; 2]>,
}

/// Detects the faces of every image of `inputs` (files or folders, sub-folders included) and
/// writes their landmarks into `out`.
pub fn detect(inputs: &[PathBuf], out: &Path, options: &DetectOptions, strict: bool) -> anyhow::Result<DetectSummary> {
    let started = std::time::Instant::now();
    let (first, rest) = inputs.split_first().context("no input: name photos or folders")?;
    let spec = FolderSpec { path: first.clone(), also: rest.to_vec(), ..FolderSpec::default() };
    let detector = faceforge_detect::shared()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut summary = DetectSummary { images: 0, faces: 0, files: Vec::new(), skipped: Vec::new(), seconds: 0.0 };
    for listed in list(&spec)? {
        let path = listed.image.clone();
        let found = decode_image(&path)
            .map_err(|e| format!("cannot decode the image: {e}"))
            .and_then(|image| detector.faces(&image, options).map(|faces| (image, faces)).map_err(|e| format!("{e:#}")))
            .and_then(|(image, faces)| if faces.is_empty() { Err("no face found".to_string()) } else { Ok((image, faces)) });
        let (image, faces) = match found {
            Ok(found) => found,
            Err(reason) if strict => anyhow::bail!("{}: {reason}", path.display()),
            Err(reason) => {
                tracing::warn!("skipped {}: {reason}", path.display());
                summary.skipped.push(Skipped { file: path, reason });
                continue;
            }
        };
        summary.images += 1;
        let name = frame_name(&listed);
        for (k, face) in faces.iter().enumerate() {
            let stem = if faces.len() > 1 || options.max_faces > 1 { format!("{name}_face{k}") } else { name.clone() };
            let record = FaceRecord { image: path.display().to_string(), width: image.width(), height: image.height(), face, ibug68: face.ibug68() };
            for (file, bytes) in [(format!("{stem}.pts"), pts_text(&record.ibug68).into_bytes()), (format!("{stem}.json"), serde_json::to_vec_pretty(&record)?)] {
                let file = out.join(file);
                atomic_write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
                summary.files.push(file);
            }
            summary.faces += 1;
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
