//! `bitsearch sensitivity`: how much each layer of a diffusion denoiser suffers when it alone is
//! quantized, at each candidate bit-width and (optionally) during one group of denoising steps
//! only. Every probe is measured twice over, as MixDQ decouples them: the SQNR of the denoiser
//! output (image quality) and the SSIM of the final image (image content), plus the final
//! image's MSE and PSNR.
//!
//! A run is a full-precision reference pass, then the probes window by window (one session per
//! window of layers, whose weights are replaced per run), each probe appended durably to a
//! journal so that a killed run resumes where it stopped; the finished table is the
//! [`bitsearch_records::SensitivityTable`].

mod base;
pub mod config;
mod cut;
mod error;
pub mod journal;
pub mod probes;
mod run;
mod window;

pub use config::SensitivityConfig;
pub use cut::CacheStats;
pub use error::{Result, SensitivityError};
pub use journal::{Journal, journal_path};
pub use run::{Existing, PLAIN_EVERY, Phases, Progress, SensitivityRun, Silent, Summary, run_to_table};
