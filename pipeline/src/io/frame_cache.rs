//! A training's frames, decoded once into a memory-mapped file beside the data
//! (`.faceforge-cache/KEY.frames`): each frame's crop (f32 RGB) and landmarks as a fixed-size
//! record, then an index of names, subjects and crops. Epochs and later trainings read the crops
//! from the map instead of decoding, cropping and detecting again, and the process holds only the
//! index and the pages it touches, so memory stays flat in the data set's size.
//!
//! The key in the name covers everything the crops depend on: the folder spec, and each input's
//! path, size and modification time (and its `.pts` file's). A CRC-32 of everything after the
//! header is checked when the file is opened; a file that fails it (or is truncated, or from
//! another version) is rebuilt.

use crate::io::inputs::{self, FolderSpec, LoadedFrame, Skipped};
use anyhow::{bail, Context};
use faceforge_components::Crop;
use faceforge_model::MorphableModel;
use serde::{Deserialize, Serialize};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FFFRAME1";
/// magic, records' start, index start, index length (u64 each), CRC-32 (u32), padding.
const HEADER: usize = 40;
const FOLDER: &str = ".faceforge-cache";

/// One frame's entry in the index.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    name: String,
    subject: String,
    source: PathBuf,
    /// Landmarks stored (0: the image was used whole).
    landmarks: u32,
    crop: Crop,
    seconds: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct Index {
    key: String,
    size: usize,
    /// Landmark slots per record.
    landmarks: usize,
    frames: Vec<Entry>,
    skipped: Vec<Skipped>,
}

/// An open frame cache.
pub struct FrameCache {
    pub path: PathBuf,
    map: memmap2::Mmap,
    /// The same file, for reads that should not stay in the process's resident set.
    file: std::fs::File,
    index: Index,
    records: usize,
    /// Frames decoded to build it when it was opened (0: it was there already).
    pub decoded: usize,
}

impl std::fmt::Debug for FrameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameCache({}, {} frames)", self.path.display(), self.len())
    }
}

/// The cache's key: what the crops depend on, hashed (two CRC-32s of one description).
fn key(spec: &FolderSpec, listed: &[inputs::Listed], model: &MorphableModel) -> anyhow::Result<String> {
    let stamp = |p: &Path| -> String {
        std::fs::metadata(p).map_or("-".into(), |m| format!("{}:{:?}", m.len(), m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos())))
    };
    let mut text = format!("v1 {} landmarks {}\n", serde_json::to_string(spec)?, model.landmarks().len());
    for l in listed {
        let pts = inputs::pts_path(spec, &l.image);
        text.push_str(&format!("{} {} {} {} {}\n", l.subject, l.image.display(), stamp(&l.image), pts.display(), stamp(&pts)));
    }
    let crc = |seed: u32| {
        let mut h = crc32fast::Hasher::new_with_initial(seed);
        h.update(text.as_bytes());
        h.finalize()
    };
    Ok(format!("{:08x}{:08x}", crc(0), crc(0x5EED_F00D)))
}

/// Where a data set's caches go: in the folder, or beside the file.
fn folder_of(spec: &FolderSpec) -> PathBuf {
    if spec.path.is_dir() { spec.path.join(FOLDER) } else { spec.path.parent().unwrap_or(Path::new(".")).join(FOLDER) }
}

impl FrameCache {
    /// The data set's cache: opened when one with its key is there and whole, else built (the
    /// frames decoded, cropped and their landmarks found once, one at a time).
    pub fn open_or_build(spec: &FolderSpec, model: &MorphableModel) -> anyhow::Result<Self> {
        let listed = inputs::list(spec)?;
        let key = key(spec, &listed, model)?;
        let dir = folder_of(spec);
        let path = dir.join(format!("{key}.frames"));
        if path.exists() {
            match Self::open(&path, &key) {
                Ok(cache) => {
                    tracing::info!("frame cache {}: {} frames, decoded before", path.display(), cache.len());
                    return Ok(cache);
                }
                Err(e) => tracing::warn!("frame cache {} is not usable ({e:#}): building it again", path.display()),
            }
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {} (the frame cache beside the data)", dir.display()))?;
        let decoded = build(spec, &listed, model, &key, &path)?;
        // Just written and synced whole: its header, index and key are checked, not read twice
        // for the checksum.
        Ok(Self { decoded, ..Self::map(&path, &key, false)? })
    }

    /// Maps a cache file and checks its header, its checksum and its key.
    pub fn open(path: &Path, key: &str) -> anyhow::Result<Self> {
        Self::map(path, key, true)
    }

    fn map(path: &Path, key: &str, check_crc: bool) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let map = faceforge_model::map_file(&file).with_context(|| format!("mapping {}", path.display()))?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            bail!("{}: not a frame cache of this version", path.display());
        }
        let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes")) as usize;
        let (records, index_at, index_len) = (word(8), word(16), word(24));
        let crc = u32::from_le_bytes(map[32..36].try_into().expect("4 bytes"));
        if records != HEADER || index_at.checked_add(index_len) != Some(map.len()) {
            bail!("{}: truncated or damaged (its header does not match its length)", path.display());
        }
        if check_crc && checksum(&file, map.len()).with_context(|| format!("reading {}", path.display()))? != crc {
            bail!("{}: checksum mismatch", path.display());
        }
        let index: Index = serde_json::from_slice(&map[index_at..]).with_context(|| format!("{}: reading the index", path.display()))?;
        if index.key != key {
            bail!("{}: built for other inputs", path.display());
        }
        let cache = Self { path: path.to_path_buf(), map, file, index, records, decoded: 0 };
        if cache.records + cache.len() * cache.record_bytes() != index_at {
            bail!("{}: the records do not fill the file", path.display());
        }
        Ok(cache)
    }

    pub fn len(&self) -> usize {
        self.index.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.frames.is_empty()
    }

    /// What the build skipped (unreadable images, no face).
    pub fn skipped(&self) -> &[Skipped] {
        &self.index.skipped
    }

    pub fn subject(&self, i: usize) -> &str {
        &self.index.frames[i].subject
    }

    fn record_bytes(&self) -> usize {
        4 * (self.index.size * self.index.size * 3 + 2 * self.index.landmarks)
    }

    /// Frame `i`'s landmarks (crop pixels). Read from the file, not the map: a baseline over
    /// every frame's landmarks then leaves no mapped page resident.
    pub fn landmarks(&self, i: usize) -> Vec<[f32; 2]> {
        use std::os::unix::fs::FileExt;
        let at = self.records + i * self.record_bytes() + 4 * self.index.size * self.index.size * 3;
        let mut bytes = vec![0u8; 8 * self.index.frames[i].landmarks as usize];
        self.file.read_exact_at(&mut bytes, at as u64).expect("the frame cache was checked whole when opened");
        bytes.chunks_exact(8).map(|b| [f32::from_le_bytes(b[..4].try_into().expect("4 bytes")), f32::from_le_bytes(b[4..].try_into().expect("4 bytes"))]).collect()
    }

    /// Frame `i`, read from the map.
    pub fn frame(&self, i: usize) -> LoadedFrame {
        let e = &self.index.frames[i];
        let start = self.records + i * self.record_bytes();
        let rgb: Vec<f32> = self.map[start..start + 4 * self.index.size * self.index.size * 3].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
        LoadedFrame { name: e.name.clone(), subject: e.subject.clone(), source: e.source.clone(), rgb, size: self.index.size, landmarks: self.landmarks(i), dense: None, crop: e.crop.clone(), seconds: e.seconds, truth: None }
    }
}

/// The CRC-32 of everything after the header, read through the file in pieces rather than the
/// map, so opening a cache does not make the whole file resident in the process.
fn checksum(file: &std::fs::File, len: usize) -> std::io::Result<u32> {
    use std::os::unix::fs::FileExt;
    let mut crc = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut at = HEADER;
    while at < len {
        let n = buffer.len().min(len - at);
        file.read_exact_at(&mut buffer[..n], at as u64)?;
        crc.update(&buffer[..n]);
        at += n;
    }
    Ok(crc.finalize())
}

/// Decodes the inputs one by one into `path` (through a temporary file, renamed when whole, and
/// removed when the build fails); returns how many frames it wrote.
fn build(spec: &FolderSpec, listed: &[inputs::Listed], model: &MorphableModel, key: &str, path: &Path) -> anyhow::Result<usize> {
    // A name of this process's own: two trainings that build the same cache at once (an array
    // job) each write their own file, and the last rename wins with a whole one.
    let tmp = path.with_extension(format!("frames.tmp{}", std::process::id()));
    let built = write_cache(spec, listed, model, key, &tmp).and_then(|count| {
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(count)
    });
    if built.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    built
}

/// Writes the cache file `tmp`: header, records, index.
fn write_cache(spec: &FolderSpec, listed: &[inputs::Listed], model: &MorphableModel, key: &str, tmp: &Path) -> anyhow::Result<usize> {
    let landmarks = model.landmarks().len();
    let mut file = std::io::BufWriter::new(std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?);
    file.write_all(&[0u8; HEADER])?;
    let mut crc = crc32fast::Hasher::new();
    let mut frames = Vec::new();
    let bar = crate::run::progress_bar(true, listed.len() as u32, 0);
    bar.set_message("decoding into the frame cache");
    let mut write = |f: LoadedFrame| -> anyhow::Result<()> {
        if f.size != spec.size || !(f.landmarks.is_empty() || f.landmarks.len() == landmarks) {
            bail!("{}: a {}-pixel crop with {} landmarks, the cache holds {}-pixel crops with {landmarks}", f.source.display(), f.size, f.landmarks.len(), spec.size);
        }
        let mut bytes = Vec::with_capacity(4 * (f.rgb.len() + 2 * landmarks));
        let slots = f.landmarks.iter().flatten().copied().chain(std::iter::repeat(0.0)).take(2 * landmarks);
        for v in f.rgb.iter().copied().chain(slots) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        crc.update(&bytes);
        file.write_all(&bytes)?;
        frames.push(Entry { name: f.name, subject: f.subject, source: f.source, landmarks: f.landmarks.len() as u32, crop: f.crop, seconds: f.seconds });
        Ok(())
    };
    // Subject by subject (a clip's or a multi-view set's images together, as fit mode reads them).
    let mut skipped = Vec::new();
    for subject in listed.chunk_by(|a, b| a.subject == b.subject) {
        skipped.extend(inputs::stream_listed(spec, subject, model, &mut write)?);
        bar.inc(subject.len() as u64);
    }
    bar.finish_and_clear();
    for s in &skipped {
        tracing::warn!("skipped {}: {}", s.file.display(), s.reason);
    }
    let count = frames.len();
    let index_at = HEADER + 4 * (spec.size * spec.size * 3 + 2 * landmarks) * count;
    let index = serde_json::to_vec(&Index { key: key.to_string(), size: spec.size, landmarks, frames, skipped })?;
    crc.update(&index);
    file.write_all(&index)?;
    let mut file = file.into_inner().map_err(|e| e.into_error())?;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    for word in [HEADER, index_at, index.len()] {
        header.extend_from_slice(&(word as u64).to_le_bytes());
    }
    header.extend_from_slice(&crc.finalize().to_le_bytes());
    header.resize(HEADER, 0);
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(&header)?;
    file.sync_all()?;
    Ok(count)
}
