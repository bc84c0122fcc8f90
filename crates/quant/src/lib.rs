//! The quantizers of bitsearch, shared by the sensitivity analysis (fake quantization inside
//! probes) and the apply step (writing real low-bit models): symmetric per-channel or per-group
//! weight quantization with optional MSE-searched clipping, asymmetric per-tensor activation
//! quantization over calibrated (optionally per-step) ranges, and MPQ-DM's kurtosis-driven
//! per-channel bit allocation. Pure arithmetic on `ndarray` arrays, applied to a model's weight
//! initializers by [`fake_quantize_weights`]; no runtime involved. The quantizer a config or a
//! plan describes ([`bitsearch_types::QuantizerSpec`]) becomes one with [`WeightQuantizer::new`].
//!
//! ```
//! use bitsearch_quant::{Clipping, Granularity, WeightQuantizer};
//! use ndarray::array;
//!
//! let w = array![[1.0f32, -0.5, 0.25], [0.0, 0.2, -0.4]].into_dyn();
//! let q = WeightQuantizer { bits: 4, granularity: Granularity::PerChannel { axis: 0 }, clipping: Clipping::MinMax };
//! let fq = q.fake_quantize(w.view())?;
//! // Row 0: scale 1/7, so -0.5 is code -3.5, rounded away from zero to -4.
//! assert!((fq[[0, 1]] + 4.0 / 7.0).abs() < 1e-6);
//! assert_eq!(fq.shape(), w.shape());
//! # Ok::<(), bitsearch_quant::QuantError>(())
//! ```

mod activation;
mod clip;
mod error;
mod format;
mod gptq;
mod kurtosis;
mod model;
mod weight;

pub use activation::{ActQuantizer, ActRange, StepRanges, range_key, without_first_row};
pub use error::QuantError;
pub use format::{
    E4M3_MAX, E4m3Codec, F16Codec, Fp8Weight, IntCodec, LowRank, StoredWeight, WeightCodec, round_e4m3, stored_bytes,
};
pub use gptq::{Hessian, Pads, Unfold, gptq};
pub use kurtosis::{SPLIT_BITS, channel_bits, channel_kurtosis, outlier_split_bits, split_channels};
pub use model::{ApplyError, fake_quantize_weights, fake_quantized_weight, stored_weight};
pub use weight::{Clipping, Granularity, QuantizedWeight, WeightQuantizer};
