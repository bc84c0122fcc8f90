//! Diffusion sampling for bitsearch: noise schedules, reproducible seeded noise, and samplers
//! that drive a denoising network from pure noise to a finished sample.

pub mod denoiser;
mod error;
pub mod image;
pub mod noise;
pub mod sampler;
pub mod schedule;

pub use error::PipelineError;
