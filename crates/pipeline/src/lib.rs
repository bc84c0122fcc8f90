//! Diffusion sampling for bitsearch: noise schedules, reproducible seeded noise, and samplers
//! that drive a denoising network from pure noise to a finished sample (with PTQD's correction of
//! a quantized network's noise estimate where its folder carries one).

pub mod denoiser;
pub mod diffusers;
mod error;
pub mod image;
pub mod noise;
pub mod ptqd;
pub mod sampler;
pub mod schedule;
pub mod sessions;
pub mod workload;

pub use error::PipelineError;
