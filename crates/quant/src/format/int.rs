//! Integer weight codes: [`WeightQuantizer`]'s symmetric codes at one width, or MPQ-DM's
//! outlier split of a mean width over the output channels.

use super::{WeightCodec, stored_bytes};
use crate::{QuantError, QuantizedWeight, SPLIT_BITS, WeightQuantizer, outlier_split_bits};
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{Rounding, WeightFormat};
use ndarray::{ArrayD, ArrayViewD};

/// The codec of [`WeightFormat::Int`]: codes in their container
/// ([`WeightFormat::container_bits`]) and an f32 per scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntCodec {
    pub bits: u8,
    pub split: bool,
    /// Clipping and granularity, the format's own group size applied.
    pub scheme: WeightScheme,
}

impl IntCodec {
    fn format(&self) -> WeightFormat {
        WeightFormat::Int {
            bits: self.bits,
            split: self.split,
            group: self.scheme.group_size,
            rounding: Rounding::Nearest,
            rank: None,
        }
    }
}

impl WeightCodec for IntCodec {
    type Stored = QuantizedWeight;

    fn quantize(&self, w: ArrayViewD<f32>, axis: usize) -> Result<QuantizedWeight, QuantError> {
        let quantizer = WeightQuantizer::new(&self.scheme, self.bits, axis);
        if !self.split {
            return quantizer.quantize(w);
        }
        if !SPLIT_BITS.contains(&self.bits) {
            return Err(QuantError::Bits {
                bits: self.bits,
                min: SPLIT_BITS[0],
                max: SPLIT_BITS[SPLIT_BITS.len() - 1],
            });
        }
        let channel_bits = outlier_split_bits(w.view(), quantizer.granularity.axis(), self.bits)?;
        quantizer.quantize_mixed(w, &channel_bits)
    }

    fn dequantize(&self, stored: &QuantizedWeight) -> ArrayD<f32> {
        stored.dequantize()
    }

    fn stored_bytes(&self, stored: &QuantizedWeight) -> u64 {
        stored_bytes(stored.codes.len(), self.format().container_bits(), stored.scales.len())
    }
}
