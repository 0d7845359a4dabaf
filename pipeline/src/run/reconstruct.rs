//! `faceforge reconstruct`: photos, folders or video clips in, a textured 3D face per face (per
//! frame of a clip) out. The fit graph is the built-in `scenes/reconstruct.ron` (photos) or
//! `scenes/reconstruct_clip.ron` (when an input is a video), compiled in, or the scene the user
//! names; its data source takes the inputs, so the detector finds the landmarks that have no
//! `.pts` file and tracks the face through a clip.

use crate::io::inputs::FolderSpec;
use crate::run::{run_with, RunOptions, RunSummary};
use crate::scene::{DataSpec, LoadedScene};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// The built-in fit of photos.
pub const BUILT_IN_SCENE: &str = include_str!("../../../scenes/reconstruct.ron");
/// The built-in fit of a video clip (temporal term, census over neighbouring frames).
pub const BUILT_IN_CLIP_SCENE: &str = include_str!("../../../scenes/reconstruct_clip.ron");

#[derive(Clone, Debug, Default)]
pub struct ReconstructOptions {
    pub inputs: Vec<PathBuf>,
    /// Default: `out/<first input's name>`.
    pub out: Option<PathBuf>,
    /// A scene to use instead of the built-in one (its data's folder settings are kept).
    pub scene: Option<PathBuf>,
    /// Scene overrides (`path=value`), applied last.
    pub overrides: Vec<String>,
    pub strict: bool,
    pub run: RunOptions,
}

/// `out/<name>` for an input: its file stem, or the folder's name.
pub fn default_out(input: &Path) -> PathBuf {
    let name = if input.is_dir() { input.file_name() } else { input.file_stem() };
    PathBuf::from("out").join(name.map_or_else(|| "reconstruct".into(), |n| n.to_string_lossy().into_owned()))
}

/// The scene `reconstruct` runs: the chosen fit with the inputs as its data.
pub fn scene(options: &ReconstructOptions) -> anyhow::Result<LoadedScene> {
    let (first, rest) = options.inputs.split_first().context("no input: name photos or folders")?;
    let mut loaded = match &options.scene {
        Some(path) => LoadedScene::load(path)?,
        None if options.inputs.iter().any(|p| crate::io::video::is_video(p)) => LoadedScene::from_str(BUILT_IN_CLIP_SCENE, "the built-in reconstruct_clip scene")?,
        None => LoadedScene::from_str(BUILT_IN_SCENE, "the built-in reconstruct scene")?,
    };
    let mut folder = match &loaded.scene.data {
        DataSpec::Folder(f) => f.clone(),
        DataSpec::Video(v) => v.folder(),
        _ => FolderSpec::default(),
    };
    folder.path = first.clone();
    folder.also = rest.to_vec();
    folder.strict |= options.strict;
    loaded.scene.data = DataSpec::Folder(folder);
    loaded.scene.outputs.dir = options.out.clone().unwrap_or_else(|| default_out(first));
    loaded.apply_overrides(&options.overrides)?;
    Ok(loaded)
}

pub fn reconstruct(options: &ReconstructOptions) -> anyhow::Result<RunSummary> {
    run_with(&scene(options)?, &options.run)
}

/// What `reconstruct` prints: per face the files written for it, what was skipped and why,
/// and where the report is.
pub fn summary_text(s: &RunSummary) -> String {
    let mut text = format!("reconstructed {} faces in {:.1} s on {}; {} inputs skipped\n", s.frames, s.seconds, s.backend, s.skipped.len());
    let name_of = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A face per OBJ, or per landmark file when no meshes were asked for (a clip's frames).
    let faces_by = |suffix: &str| -> Vec<String> { s.files.iter().map(name_of).filter_map(|n| n.strip_suffix(suffix).map(str::to_string)).collect() };
    let mut faces = faces_by(".obj");
    if faces.is_empty() {
        faces = faces_by(".pts");
    }
    faces.sort();
    // A file belongs to the face with the longest name it starts with (`a` and `a_2` apart).
    let owner = |file: &str| faces.iter().filter(|f| file.strip_prefix(f.as_str()).is_some_and(|rest| rest.starts_with(['.', '_']))).max_by_key(|f| f.len()).cloned();
    for face in &faces {
        let mine: Vec<String> = s.files.iter().map(name_of).filter(|n| owner(n).as_ref() == Some(face)).collect();
        text.push_str(&format!("  {face}: {}\n", mine.join(", ")));
    }
    for skipped in &s.skipped {
        text.push_str(&format!("  skipped {}: {}\n", skipped.file.display(), skipped.reason));
    }
    text.push_str(&format!("in {}; report: {}\n", s.out_dir.display(), s.out_dir.join("report.html").display()));
    text
}
