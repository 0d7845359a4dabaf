//! faceforge's morphable model: a procedural face model on MediaPipe's canonical face mesh,
//! generated from a seed (no real 3DMM may be shipped), its native `.ffm` file, and the
//! `MorphableModel` view the pipeline reads.

pub mod canonical;
pub mod face;
pub mod file;
pub mod generate;
pub mod model;
pub mod rng;
pub mod subdivide;

pub use file::{atomic_write, Dims, ModelError, ModelErrorKind};
pub use generate::{generate, ModelArrays, ModelSpec, Preset};
pub use model::{map_file, MorphableModel};
pub use rng::SplitMix64;
