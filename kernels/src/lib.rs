//! faceforge's ops. Each op is one file with its forward and its adjoint, written twice side by
//! side over the same host-side types: a `#[cube]` kernel for the GPU runtimes, and a plain Rust
//! twin that is both the fast `cpu` backend and the oracle the kernel is tested against.

pub mod backend;
pub mod census;
pub mod covisible;
pub mod decode;
pub mod dense;
pub mod depth_consistency;
pub mod epipolar;
pub mod features;
pub mod flow;
pub mod interpolate;
pub mod launch;
pub mod luminance;
pub mod normals;
pub mod parallel;
pub mod pgn;
pub mod pixel_consistency;
pub mod project;
pub mod rasterize;
pub mod reduce;
pub mod relative_pose;
pub mod render_chain;
pub mod sample;
pub mod shade;
pub mod view_synthesis;
pub mod visibility;
#[doc(hidden)]
pub mod testing;

pub use backend::{Backend, BackendChoice, BackendError, DeviceInfo};
/// The device client and buffer handle types, for callers that keep data on the device.
pub use cubecl::client::Client;
pub use cubecl::server::Handle;
