//! Real frames for `faceforge train`: a folder's or a video's frames, decoded once into a
//! memory-mapped frame cache beside the data (landmarks from `.pts` files or the detector, as fit
//! mode finds them), cut into items of `group` consecutive frames of one subject. A seeded share
//! of the items is held out; the rest are taken `batch` items a step in a seeded shuffle per
//! epoch. The order is a function of the seed and the step alone, so a resumed training sees the
//! batches an uninterrupted one would. A loader task on bevy_tasks' IO pool reads the next steps'
//! batches from the map ahead of the training, through a bounded channel.

use crate::io::frame_cache::FrameCache;
use crate::io::inputs::{FolderSpec, LoadedFrame, Skipped};
use anyhow::bail;
use faceforge_model::{MorphableModel, SplitMix64};
use serde::{Deserialize, Serialize};

/// Where a set's frames are: a frame cache (a training), or memory (tests of the shuffle).
enum Frames {
    Cached(FrameCache),
    Memory(Vec<LoadedFrame>),
}

/// Held-out frames go in blocks of this many consecutive frames of a subject: 12 is tiled by
/// groups of 1, 2, 3 (MVF-Net's triplets) and 4 (CEST's clips), and keeps a clip's held-out
/// frames apart from most of their near-duplicate neighbours.
const BLOCK: usize = 12;
/// The held-out draw's seed: the same for every training.
const HELD_OUT_SEED: u64 = 0x4E1D_0001;

/// Steps whose batches the loader reads ahead of the training.
const AHEAD: usize = 2;

/// A data set of real frames, split into training and held-out items.
pub struct RealSet {
    frames: Frames,
    pub skipped: Vec<Skipped>,
    /// Each item's frames (indices into `frames`): `group` consecutive frames of one subject.
    items: Vec<Vec<usize>>,
    /// Items trained on, and items held out (indices into `items`).
    train: Vec<usize>,
    held_out: Vec<usize>,
    seed: u64,
    /// `mean_training_landmarks`, once computed.
    mean_landmarks: std::sync::OnceLock<Vec<[f32; 2]>>,
}

/// Where a step's batch starts in the epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochPosition {
    pub epoch: u64,
    /// Items of this epoch taken before the step.
    pub position: usize,
    pub items: usize,
}

/// A seeded permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = (rng.uniform() * (i + 1) as f64) as usize;
        order.swap(i, j.min(i));
    }
    order
}

/// The seed of epoch `epoch`'s shuffle.
fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

impl RealSet {
    /// A folder's frames (a video's through `VideoSpec::folder`) from their frame cache, built
    /// first when there is none for these inputs, and split.
    pub fn load(spec: &FolderSpec, model: &MorphableModel, group: u32, held_out: u32, seed: u64) -> anyhow::Result<Self> {
        let cache = FrameCache::open_or_build(spec, model)?;
        let skipped = cache.skipped().to_vec();
        Self::split(Frames::Cached(cache), group, held_out, seed).map_err(|e| anyhow::anyhow!("{}: {e}", spec.path.display())).map(|set| Self { skipped, ..set })
    }

    /// Splits frames held in memory.
    pub fn from_frames(frames: Vec<LoadedFrame>, group: u32, held_out: u32, seed: u64) -> anyhow::Result<Self> {
        Self::split(Frames::Memory(frames), group, held_out, seed)
    }

    /// Held-out frames, then items of `group` consecutive frames of a subject (in the order
    /// loaded: by subject, then name). The frames are cut into blocks of `BLOCK` consecutive
    /// frames of a subject; blocks are held out in a draw with a fixed seed until `held_out`
    /// frames are, so every training on the same data holds out the same frames whatever its
    /// group (1, 2, 3, 4, 6 or 12) and its seed: a chain of trainings never trains on an earlier
    /// one's held-out frames.
    fn split(frames: Frames, group: u32, held_out: u32, seed: u64) -> anyhow::Result<Self> {
        let group = group.max(1) as usize;
        if !BLOCK.is_multiple_of(group) {
            bail!("learn.group is {group}: groups of 1, 2, 3, 4, 6 or 12 frames (they tile the held-out blocks of {BLOCK})");
        }
        let count = frames.len();
        let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        while start < count {
            let end = (start..count).find(|&i| frames.subject(i) != frames.subject(start)).unwrap_or(count);
            if end - start < group {
                tracing::warn!("subject {} has {} frames, fewer than the group of {group}: left out", frames.subject(start), end - start);
            }
            blocks.extend((start..end).step_by(BLOCK).map(|b| b..(b + BLOCK).min(end)));
            start = end;
        }
        let mut out = vec![false; blocks.len()];
        let mut taken = 0;
        for b in permutation(blocks.len(), HELD_OUT_SEED) {
            if taken >= held_out as usize {
                break;
            }
            out[b] = true;
            taken += blocks[b].len();
        }
        // Whole groups of consecutive frames in each block; a remainder is left out.
        let (mut items, mut train, mut held) = (Vec::new(), Vec::new(), Vec::new());
        for (block, &is_out) in blocks.iter().zip(&out) {
            for g in block.clone().collect::<Vec<_>>().chunks_exact(group) {
                if is_out { &mut held } else { &mut train }.push(items.len());
                items.push(g.to_vec());
            }
        }
        if train.is_empty() {
            bail!("{count} frames, {taken} of them held out ({held_out} asked for, in blocks of up to {BLOCK}): no group of {group} left to train on");
        }
        Ok(Self { frames, skipped: Vec::new(), items, train, held_out: held, seed, mean_landmarks: std::sync::OnceLock::new() })
    }

    /// Frames decoded to load it (0 when its frame cache was there already).
    pub fn decoded(&self) -> usize {
        match &self.frames {
            Frames::Cached(c) => c.decoded,
            Frames::Memory(_) => 0,
        }
    }

    /// Frames in the data set.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.len() == 0
    }

    /// Items trained on.
    pub fn training_items(&self) -> usize {
        self.train.len()
    }

    /// Where step `step` (of `batch` items each) starts.
    pub fn position(&self, step: u32, batch: u32) -> EpochPosition {
        let taken = step as u64 * batch as u64;
        let n = self.train.len() as u64;
        EpochPosition { epoch: taken / n, position: (taken % n) as usize, items: n as usize }
    }

    /// Step `step`'s frames: `batch` items, the epoch's shuffle continuing into the next epoch's
    /// when it runs out. Each item's frames carry a subject of their own (`SUBJECT/ITEM`), so an
    /// item is a multi-frame group and two items of one clip are not fused.
    pub fn batch(&self, step: u32, batch: u32) -> anyhow::Result<Vec<LoadedFrame>> {
        if batch as usize > self.train.len() {
            bail!("a batch of {batch} items, but {} items to train on: a batch would hold an item twice", self.train.len());
        }
        let start = self.position(step, batch);
        let n = self.train.len();
        let mut order = (start.epoch, permutation(n, epoch_seed(self.seed, start.epoch)));
        let mut frames = Vec::new();
        for k in 0..batch as usize {
            let at = start.position + k;
            let epoch = start.epoch + (at / n) as u64;
            if epoch != order.0 {
                order = (epoch, permutation(n, epoch_seed(self.seed, epoch)));
            }
            let item = self.train[order.1[at % n]];
            frames.extend(self.item_frames(item));
        }
        Ok(frames)
    }

    /// The held-out items' frames.
    pub fn held_out(&self) -> Vec<LoadedFrame> {
        self.held_out.iter().flat_map(|&i| self.item_frames(i)).collect()
    }

    /// The training frames' mean landmarks, over those with `n` of them (the image-ignoring
    /// baseline of the held-out measurement): read once, at the first measurement.
    pub fn mean_training_landmarks(&self, n: usize) -> &[[f32; 2]] {
        self.mean_landmarks.get_or_init(|| {
            let (mut mean, mut count) = (vec![[0.0f32; 2]; n], 0usize);
            for f in self.train.iter().flat_map(|&i| &self.items[i]) {
                let landmarks = self.frames.landmarks(*f);
                if landmarks.len() == n {
                    mean.iter_mut().zip(&landmarks).for_each(|(m, p)| *m = [m[0] + p[0], m[1] + p[1]]);
                    count += 1;
                }
            }
            mean.iter().map(|m| [m[0] / count.max(1) as f32, m[1] / count.max(1) as f32]).collect()
        })
    }

    fn item_frames(&self, item: usize) -> Vec<LoadedFrame> {
        self.items[item].iter().map(|&f| self.frames.frame(f)).map(|f| LoadedFrame { subject: format!("{}/{item}", f.subject), ..f }).collect()
    }

    /// Steps `from..to`'s batches, read by a task on bevy_tasks' IO pool at most `AHEAD` steps
    /// ahead of the receiver (a bounded channel). The task stops when the receiver is dropped.
    pub fn load_ahead(self: &std::sync::Arc<Self>, from: u32, to: u32, batch: u32) -> crossbeam_channel::Receiver<anyhow::Result<Vec<LoadedFrame>>> {
        let (sender, receiver) = crossbeam_channel::bounded(AHEAD);
        let set = self.clone();
        bevy_tasks::IoTaskPool::get_or_init(bevy_tasks::TaskPool::default)
            .spawn(async move {
                for step in from..to {
                    if sender.send(set.batch(step, batch)).is_err() {
                        break;
                    }
                }
            })
            .detach();
        receiver
    }
}

impl Frames {
    fn len(&self) -> usize {
        match self {
            Frames::Cached(c) => c.len(),
            Frames::Memory(v) => v.len(),
        }
    }

    fn subject(&self, i: usize) -> &str {
        match self {
            Frames::Cached(c) => c.subject(i),
            Frames::Memory(v) => &v[i].subject,
        }
    }

    fn landmarks(&self, i: usize) -> Vec<[f32; 2]> {
        match self {
            Frames::Cached(c) => c.landmarks(i),
            Frames::Memory(v) => v[i].landmarks.clone(),
        }
    }

    fn frame(&self, i: usize) -> LoadedFrame {
        match self {
            Frames::Cached(c) => c.frame(i),
            Frames::Memory(v) => v[i].clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faceforge_components::Crop;

    fn frames(subjects: &[(&str, usize)]) -> Vec<LoadedFrame> {
        subjects
            .iter()
            .flat_map(|&(s, n)| {
                (0..n).map(move |f| LoadedFrame {
                    name: format!("{s}_f{f:03}"),
                    subject: s.to_string(),
                    source: format!("{s}/{f}.png").into(),
                    rgb: vec![0.0; 3],
                    size: 1,
                    landmarks: Vec::new(),
                    dense: None,
                    crop: Crop { offset: [0.0; 2], scale: 1.0, original_size: [1, 1], source: String::new() },
                    seconds: None,
                    truth: None,
                })
            })
            .collect()
    }

    #[test]
    fn every_epoch_takes_each_training_item_once_in_a_new_order() {
        let loose: Vec<(String, usize)> = (0..13).map(|i| (format!("s{i:02}"), 1)).collect();
        let loose: Vec<(&str, usize)> = loose.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        let set = RealSet::from_frames(frames(&loose), 1, 3, 11).unwrap();
        assert_eq!(set.training_items(), 10);
        // 5 steps of 4 items: two whole epochs.
        let names: Vec<String> = (0..5).flat_map(|s| set.batch(s, 4).unwrap()).map(|f| f.name).collect();
        let (first, second) = names.split_at(10);
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        assert_eq!(sorted(first), sorted(second), "each epoch covers the training items");
        assert_eq!(sorted(first).windows(2).filter(|w| w[0] == w[1]).count(), 0, "no item twice in an epoch");
        assert_ne!(first, second, "the epochs are shuffled differently");
        // No held-out frame is ever trained on.
        let held: Vec<String> = set.held_out().into_iter().map(|f| f.name).collect();
        assert_eq!(held.len(), 3);
        assert!(held.iter().all(|h| !names.contains(h)));
        // The position is a function of the step: a resumed training's step 3 is this one's.
        assert_eq!(set.position(3, 4), EpochPosition { epoch: 1, position: 2, items: 10 });
        let again = RealSet::from_frames(frames(&loose), 1, 3, 11).unwrap();
        assert_eq!(again.batch(3, 4).unwrap().iter().map(|f| &f.name).collect::<Vec<_>>(), set.batch(3, 4).unwrap().iter().map(|f| &f.name).collect::<Vec<_>>());
    }

    #[test]
    fn groups_are_consecutive_frames_of_one_subject() {
        let set = RealSet::from_frames(frames(&[("a", 14), ("b", 4), ("c", 1)]), 2, 1, 5).unwrap();
        // Blocks a0-11, a12-13, b0-3, c0: 6 + 1 + 2 + 0 pairs. One whole block is held out.
        let held = set.held_out();
        assert!(!held.is_empty() || set.training_items() == 9);
        assert_eq!(set.training_items() + held.len() / 2, 9, "{} items, {} frames held out", set.training_items(), held.len());
        for step in 0..3 {
            let batch = set.batch(step, 3).unwrap();
            for pair in batch.chunks(2) {
                assert_eq!(pair[0].subject, pair[1].subject, "{pair:?}");
                let index = |f: &LoadedFrame| f.name[f.name.len() - 3..].parse::<u32>().unwrap();
                assert_eq!(index(&pair[1]), index(&pair[0]) + 1);
            }
        }
        assert!(RealSet::from_frames(frames(&[("a", 3)]), 4, 0, 5).is_err(), "no item at all is an error");
        assert!(set.batch(0, 10).is_err(), "a batch larger than the training items");
        assert!(RealSet::from_frames(frames(&[("a", 24)]), 3, 1, 5).is_ok(), "MVF-Net's triplets tile the blocks");
        assert!(RealSet::from_frames(frames(&[("a", 24)]), 5, 1, 5).is_err(), "groups of 5 do not");
    }

    #[test]
    fn the_same_frames_are_held_out_whatever_the_group_and_the_seed() {
        let clip = || frames(&[("clip", 48)]);
        let names = |set: &RealSet| {
            let mut v: Vec<String> = set.held_out().into_iter().map(|f| f.name).collect();
            v.sort();
            v
        };
        // 8 asked for: one block of 12 consecutive frames.
        let one = RealSet::from_frames(clip(), 1, 8, 3).unwrap();
        assert_eq!(names(&one).len(), 12);
        for (group, seed) in [(2, 4), (3, 6), (4, 5), (1, 9)] {
            assert_eq!(names(&RealSet::from_frames(clip(), group, 8, seed).unwrap()), names(&one), "group {group}, seed {seed}");
        }
    }
}
