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
mod bias;
pub mod config;
mod control;
mod cut;
mod error;
pub mod journal;
mod plain;
pub mod probes;
mod resume;
mod run;
mod score;
mod selection;
mod summary;
mod weights;
mod window;

pub use config::SensitivityConfig;
pub use cut::CacheStats;
pub use error::{Result, SensitivityError};
pub use journal::{Journal, journal_path};
pub use plain::PLAIN_EVERY;
pub use resume::{Existing, run_to_table};
pub use run::SensitivityRun;
pub use summary::{Phases, Progress, Silent, Summary};
