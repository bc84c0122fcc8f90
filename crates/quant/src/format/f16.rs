//! Float16 weights: every value rounded to the nearest float16, no scales.

use super::{WeightCodec, stored_bytes};
use crate::QuantError;
use ndarray::{ArrayD, ArrayViewD};

/// The codec of [`bitsearch_types::WeightFormat::F16`]; its stored form holds the rounded
/// values as the f32 they stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct F16Codec;

impl WeightCodec for F16Codec {
    type Stored = ArrayD<f32>;

    fn quantize(&self, w: ArrayViewD<f32>, _axis: usize) -> Result<ArrayD<f32>, QuantError> {
        Ok(w.mapv(|v| half::f16::from_f32(v).to_f32()))
    }

    fn dequantize(&self, stored: &ArrayD<f32>) -> ArrayD<f32> {
        stored.clone()
    }

    fn stored_bytes(&self, stored: &ArrayD<f32>) -> u64 {
        stored_bytes(stored.len(), 16, 0)
    }
}
