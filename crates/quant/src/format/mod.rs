//! Weight formats as codecs: the [`WeightCodec`] trait (quantize, dequantize, stored bytes),
//! one module per format, and the one registration ([`StoredWeight::quantize`]) that maps a
//! [`WeightFormat`] to its codec. A new format is a variant of [`WeightFormat`], a module here
//! and its arm below.

mod e4m3;
mod f16;
mod int;
mod low_rank;
#[cfg(test)]
mod tests;

pub use e4m3::{E4M3_MAX, E4m3Codec, Fp8Weight, round_e4m3};
pub use f16::F16Codec;
pub use int::IntCodec;
pub use low_rank::LowRank;

use crate::{Hessian, QuantError, QuantizedWeight, gptq};
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{Rounding, WeightFormat};
use ndarray::{ArrayD, ArrayViewD};

/// A weight format's arithmetic.
pub trait WeightCodec {
    /// What the format stores for one weight (codes, scales).
    type Stored;

    /// Quantizes `w`, whose output channels lie on `axis`.
    fn quantize(&self, w: ArrayViewD<f32>, axis: usize) -> Result<Self::Stored, QuantError>;

    /// The weight `stored` gives back, in the weight's shape.
    fn dequantize(&self, stored: &Self::Stored) -> ArrayD<f32>;

    /// Bytes of the stored tensors.
    fn stored_bytes(&self, stored: &Self::Stored) -> u64;
}

/// Bytes of `values` codes of `bits` each (packed, the last byte rounded up) and an f32 per
/// scale.
pub fn stored_bytes(values: usize, bits: u64, scales: usize) -> u64 {
    (values as u64 * bits).div_ceil(8) + (scales * size_of::<f32>()) as u64
}

/// What a layer's weight is stored as in one [`WeightFormat`].
#[derive(Debug, Clone, PartialEq)]
pub enum StoredWeight {
    /// Integer codes and scales.
    Codes(QuantizedWeight),
    /// A float16 low-rank branch, and the integer codes of what it leaves.
    Branched(LowRank, QuantizedWeight),
    /// E4M3 codes and per-channel scales.
    Fp8(Fp8Weight),
    /// The values rounded to float16 (held here as the f32 they stand for).
    Half(ArrayD<f32>),
}

impl StoredWeight {
    /// `w` (output channels on `axis`) stored in `format` by its codec; integer codes take
    /// `scheme`'s clipping and granularity, the format's group size first, and GPTQ rounding
    /// the second moment `hessian` of the layer's input; a low-rank branch is taken out of `w`
    /// before its codes.
    pub fn quantize(
        format: WeightFormat,
        scheme: &WeightScheme,
        w: ArrayViewD<f32>,
        axis: usize,
        hessian: Option<&Hessian>,
    ) -> Result<Self, QuantError> {
        match format {
            WeightFormat::Int { bits, split, rounding, rank, .. } => {
                let branch = rank.map(|r| LowRank::of(w.view(), axis, usize::from(r))).transpose()?;
                let residual = branch.as_ref().map(|b| &w - &b.product(w.shape(), axis));
                let w = residual.as_ref().map_or(w, |r| r.view());
                let mut q = IntCodec { bits, split, scheme: format.scheme(scheme) }.quantize(w.view(), axis)?;
                if rounding == Rounding::Gptq {
                    let h = hessian.ok_or_else(|| QuantError::NoHessian { format: format.to_string() })?;
                    gptq(&mut q, w, h)?;
                }
                Ok(match branch {
                    Some(branch) => Self::Branched(branch, q),
                    None => Self::Codes(q),
                })
            }
            WeightFormat::E4M3 => E4m3Codec.quantize(w, axis).map(Self::Fp8),
            WeightFormat::F16 => F16Codec.quantize(w, axis).map(Self::Half),
            WeightFormat::Float => Err(QuantError::Unquantized { format: format.to_string() }),
        }
    }

    /// The weight the stored form gives back.
    pub fn dequantize(&self) -> ArrayD<f32> {
        match self {
            Self::Codes(q) => q.dequantize(),
            Self::Branched(branch, q) => {
                let residual = q.dequantize();
                branch.product(residual.shape(), q.granularity.axis()) + residual
            }
            Self::Fp8(q) => E4m3Codec.dequantize(q),
            Self::Half(values) => F16Codec.dequantize(values),
        }
    }

    /// Bytes of the stored tensors in `format`: the codes in their container
    /// ([`WeightFormat::container_bits`]), plus an f32 per scale and the branch's float16 factors.
    pub fn bytes(&self, format: WeightFormat) -> u64 {
        let codes = |q: &QuantizedWeight| stored_bytes(q.codes.len(), format.container_bits(), q.scales.len());
        match self {
            Self::Codes(q) => codes(q),
            Self::Branched(branch, q) => branch.bytes() + codes(q),
            Self::Fp8(q) => E4m3Codec.stored_bytes(q),
            Self::Half(values) => F16Codec.stored_bytes(values),
        }
    }
}
