//! Where the ops run: the native CPU twins, or a cubecl runtime on a device. `Auto` takes a real
//! GPU adapter when the machine has one and the native CPU path otherwise, since Mesa's CPU
//! Vulkan driver runs the kernels correctly but 5–10× slower than plain Rust.

use cubecl::client::Client;
use cubecl::wgpu::{wgpu, AutoGraphicsApi, RuntimeOptions, WgpuDevice, WgpuRuntime};
use cubecl_runtime::runtime::Runtime;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// What a scene asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BackendChoice {
    /// A real GPU adapter if there is one, else the native CPU twins.
    #[default]
    Auto,
    /// The native CPU twins.
    Cpu,
    /// cubecl on wgpu, even on a CPU device (Mesa's lavapipe).
    Wgpu,
    /// cubecl on CUDA (the `cuda` cargo feature).
    Cuda,
}

/// The device an op runs on.
#[derive(Clone)]
pub enum Backend {
    /// The native Rust twins.
    Cpu,
    /// A cubecl runtime (wgpu, or cuda with the `cuda` feature) and its client.
    Gpu { client: Client, info: DeviceInfo },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Cpu => write!(f, "Cpu"),
            Backend::Gpu { info, .. } => write!(f, "Gpu({})", info.name),
        }
    }
}

/// What the run got, printed at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub runtime: &'static str,
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `Cpu`, …
    pub kind: String,
    pub is_cpu_device: bool,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {} ({}{})", self.runtime, self.name, self.kind, if self.is_cpu_device { ", a CPU device" } else { "" })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the wgpu runtime found no usable adapter: {0}. On Debian, `apt-get install mesa-vulkan-drivers` gives a CPU Vulkan device")]
    NoWgpuAdapter(String),
    #[error("this faceforge was built without CUDA; rebuild with `--features cuda` or choose backend Wgpu or Cpu")]
    NoCuda,
}

impl Backend {
    /// The backend a choice resolves to on this machine.
    pub fn select(choice: BackendChoice) -> Result<Backend, BackendError> {
        match choice {
            BackendChoice::Cpu => Ok(Backend::Cpu),
            BackendChoice::Wgpu => wgpu_backend(),
            BackendChoice::Cuda => cuda_backend(),
            BackendChoice::Auto => {
                if has_real_gpu() {
                    wgpu_backend()
                } else {
                    Ok(Backend::Cpu)
                }
            }
        }
    }

    /// The wgpu runtime, on whatever adapter it finds (lavapipe on a machine without a GPU).
    pub fn wgpu() -> Result<Backend, BackendError> {
        wgpu_backend()
    }

    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => "native CPU (plain Rust twins of the kernels)".to_string(),
            Backend::Gpu { info, .. } => info.to_string(),
        }
    }
}

/// Whether any wgpu adapter that is not a CPU device exists (looked for once per process).
pub fn has_real_gpu() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(find_real_gpu)
}

fn find_real_gpu() -> bool {
    // Only the primary APIs: probing OpenGL through EGL prints driver errors on headless machines.
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(descriptor);
    let adapters = cubecl::future::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters.iter().any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

/// The wgpu device the kernels run on, set up once per process. burn's networks wrap this same
/// device (`burn::tensor::Device::new`), so the network and the kernels share one client and one
/// memory pool.
pub fn wgpu_device() -> Result<(WgpuDevice, DeviceInfo), BackendError> {
    static WGPU: OnceLock<Result<(WgpuDevice, DeviceInfo), String>> = OnceLock::new();
    WGPU.get_or_init(|| {
            let setup = cubecl::wgpu::try_init_setup::<AutoGraphicsApi>(&WgpuDevice::default(), RuntimeOptions::default())
                .map_err(|e| format!("{e:?}"))?;
            let adapter = setup.adapter.get_info();
            let info = DeviceInfo {
                runtime: "wgpu",
                name: format!("{} via {:?}", adapter.name, adapter.backend),
                kind: format!("{:?}", adapter.device_type),
                is_cpu_device: adapter.device_type == wgpu::DeviceType::Cpu,
            };
            let device = cubecl::wgpu::try_init_device(setup, RuntimeOptions::default()).map_err(|e| format!("{e:?}"))?;
            Ok((device, info))
        })
        .clone()
        .map_err(BackendError::NoWgpuAdapter)
}

/// Every request shares the one device's client.
fn wgpu_backend() -> Result<Backend, BackendError> {
    let (device, info) = wgpu_device()?;
    Ok(Backend::Gpu { client: <WgpuRuntime as Runtime>::client(&device), info })
}

#[cfg(feature = "cuda")]
fn cuda_backend() -> Result<Backend, BackendError> {
    let device = cubecl::cuda::CudaDevice::default();
    let info = DeviceInfo { runtime: "cuda", name: format!("{device:?}"), kind: "DiscreteGpu".into(), is_cpu_device: false };
    Ok(Backend::Gpu { client: cubecl::cuda::CudaRuntime::client(&device), info })
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend() -> Result<Backend, BackendError> {
    Err(BackendError::NoCuda)
}
