//! Device choice. `auto` uses the CUDA provider when the loaded ONNX Runtime has it and it
//! starts, and the CPU otherwise; the choice is logged so a run never silently changes device.

use crate::error::{Result, RuntimeError};
pub use bitsearch_types::generation::Device;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::SessionBuilder;
use std::fmt;

/// What a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveDevice {
    Cpu,
    Cuda,
}

impl fmt::Display for ActiveDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// Whether the loaded library was built with the CUDA provider.
fn cuda_available() -> bool {
    ep::CUDA::is_available().unwrap_or(false)
}

/// Builds a session for `device`, falling back from CUDA to CPU only when `device` is Auto.
pub(crate) fn build<T>(
    device: Device,
    make_builder: impl Fn() -> Result<SessionBuilder>,
    commit: impl Fn(SessionBuilder) -> Result<T>,
) -> Result<(T, ActiveDevice)> {
    let with_cuda = || -> Result<T> {
        let builder = make_builder()?
            .with_execution_providers([ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| RuntimeError::Device(format!("cannot register the CUDA provider: {e}")))?;
        commit(builder)
    };
    match device {
        Device::Cpu => Ok((commit(make_builder()?)?, ActiveDevice::Cpu)),
        Device::Cuda if !cuda_available() => Err(RuntimeError::Device(
            "--device cuda: the loaded ONNX Runtime has no CUDA provider (install it with `make setup GPU=1`)".into(),
        )),
        Device::Cuda => Ok((with_cuda()?, ActiveDevice::Cuda)),
        Device::Auto if !cuda_available() => {
            log::info!("device: cpu (the loaded ONNX Runtime has no CUDA provider)");
            Ok((commit(make_builder()?)?, ActiveDevice::Cpu))
        }
        Device::Auto => match with_cuda() {
            Ok(session) => {
                log::info!("device: cuda");
                Ok((session, ActiveDevice::Cuda))
            }
            Err(e) => {
                log::warn!("device: cpu (the CUDA provider failed to start: {e})");
                Ok((commit(make_builder()?)?, ActiveDevice::Cpu))
            }
        },
    }
}
