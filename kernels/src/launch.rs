//! Shared launch helpers for the cubecl kernels.

use cubecl::prelude::*;

/// Threads per cube for one-dimensional element-wise kernels.
pub const THREADS: u32 = 256;

/// A launch grid covering `n` threads of `THREADS` each; the cubes spread over two dimensions
/// when one would exceed the 65 535 limit. Kernels check `ABSOLUTE_POS` against their length.
pub fn grid_1d(n: usize) -> (CubeCount, CubeDim) {
    let cubes = n.div_ceil(THREADS as usize).max(1) as u32;
    let count = if cubes <= 65_535 {
        CubeCount::Static(cubes, 1, 1)
    } else {
        CubeCount::Static(65_535, cubes.div_ceil(65_535), 1)
    };
    (count, CubeDim::new_1d(THREADS))
}

/// Uploads f32s to the device.
pub fn upload(client: &cubecl::client::Client, data: &[f32]) -> cubecl::server::Handle {
    client.create_from_slice(f32::as_bytes(data))
}

/// Reads f32s back from the device.
pub fn download(client: &cubecl::client::Client, handle: cubecl::server::Handle) -> Vec<f32> {
    let bytes = client.read_one(handle).expect("reading a device buffer back");
    f32::from_bytes(&bytes).to_vec()
}
