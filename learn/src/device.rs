//! Where the networks run (`learn.device`): burn's `flex` CPU backend, or burn's cubecl backend
//! on the very wgpu device faceforge's kernels use — `Device::new` wraps the kernels' device, so
//! the network and the render kernels share one client and one memory pool (a second device
//! built by burn itself would get its own id and pool).

use burn::tensor::Device;
use faceforge_kernels::backend::{has_real_gpu, wgpu_device};
use faceforge_kernels::DeviceInfo;
use serde::{Deserialize, Serialize};

/// What a scene asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// A real GPU adapter through wgpu if the machine has one, else flex.
    #[default]
    Auto,
    /// burn's flex CPU backend.
    Cpu,
    /// burn on wgpu, even on a CPU device (Mesa's lavapipe).
    Gpu,
}

impl DeviceChoice {
    /// `auto`, `cpu` or `gpu` (any case), as a command line gives it.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            _ => Err(format!("unknown device `{text}`: auto, cpu or gpu")),
        }
    }
}

/// The device a choice resolved to, with autodiff, and what it is.
#[derive(Clone, Debug)]
pub struct LearnDevice {
    pub device: Device,
    /// The wgpu adapter, when on the GPU.
    pub gpu: Option<DeviceInfo>,
}

impl LearnDevice {
    pub fn cpu() -> Self {
        Self { device: Device::flex().autodiff(), gpu: None }
    }

    /// What a choice resolves to on this machine.
    pub fn select(choice: DeviceChoice) -> Result<Self, faceforge_kernels::BackendError> {
        match choice {
            DeviceChoice::Cpu => Ok(Self::cpu()),
            DeviceChoice::Gpu => Self::wgpu(),
            DeviceChoice::Auto if has_real_gpu() => Self::wgpu(),
            DeviceChoice::Auto => Ok(Self::cpu()),
        }
    }

    fn wgpu() -> Result<Self, faceforge_kernels::BackendError> {
        let (device, info) = wgpu_device()?;
        Ok(Self { device: Device::new(device).autodiff(), gpu: Some(info) })
    }

    pub fn describe(&self) -> String {
        match &self.gpu {
            None => "burn flex (CPU)".to_string(),
            Some(info) => format!("burn {info}"),
        }
    }
}
