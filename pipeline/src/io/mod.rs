//! Data in and results out: photos and image folders with their landmarks, synthetic faces with
//! exact ground truth, the importers of the morphable models users own (MAT, HDF5), and what a run
//! writes per frame (meshes, textures, landmarks).

pub mod frame_cache;
pub mod hdf5;
pub mod import;
pub mod inputs;
pub mod mat;
pub mod outputs;
pub mod synth;
pub mod gltf;
pub mod video;
