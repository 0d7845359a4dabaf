//! faceforge: reconstruct 3D faces from images, multi-view sets and clips as a dataflow pipeline
//! on an ECS. This crate is the product around the stages (`faceforge_systems`):
//! - `scene/`: the scene schema, the graph it derives (adjoints, unused stages, the step), sweeps;
//! - `run/`: the runners (`run`, `train`, `infer`, `reconstruct`, `detect`), feeding the World,
//!   checkpoints;
//! - `io/`: data in (photos and folders, synthetic faces, model importers: MAT, HDF5) and
//!   results out (meshes, textures, landmarks);
//! - `eval/`: the papers' metrics, rigid alignment, `faceforge eval`;
//! - `report/`: Markdown and HTML reports with their SVG plots and pictures;
//! - `bench/`: the benchmarks and the peer comparison.
//!
//! The `faceforge` command line is `main.rs`.

pub mod bench;
pub mod eval;
pub mod io;
pub mod report;
pub mod run;
pub mod scene;

pub use scene::{LoadedScene, Scene, SceneError};
