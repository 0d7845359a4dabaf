//! faceforge: reconstruct 3D faces from images, multi-view sets and clips as a dataflow pipeline
//! on an ECS. This crate holds the scene schema, the graph builder, the data sources (synthetic,
//! image folders), the runner with its checkpoints, the outputs (meshes, textures, landmarks),
//! the papers' metrics and the reports, the model importers (MAT, HDF5), the benchmarks and the
//! `faceforge` command line.

pub mod alignment;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod detect;
pub mod eval;
pub mod graph;
pub mod hdf5;
pub mod import;
pub mod infer;
pub mod inputs;
pub mod mat;
pub mod metrics;
pub mod peer;
pub mod reconstruct;
pub mod outputs;
pub mod overlay;
pub mod report;
pub mod run;
pub mod scene;
pub mod svg;
pub mod sweep;
pub mod synth;
pub mod train;
pub mod views;

pub use scene::{LoadedScene, Scene, SceneError};
