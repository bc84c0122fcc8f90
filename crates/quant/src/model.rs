//! Quantizers applied to the weights of a model: one layer's weight quantized (the codes the
//! apply stage stores) or fake-quantized (a sensitivity probe's override), or a copy of the
//! model with every layer's weight fake-quantized at one bit-width (the uniform baseline of a
//! plan).

use crate::{QuantError, QuantizedWeight, SPLIT_BITS, WeightQuantizer, outlier_split_bits};
use bitsearch_onnx::{GraphView, Model, OnnxError, rewrite, tensor_to_f32};
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{HALF_BITS, Layer};
use ndarray::ArrayD;
use std::collections::HashMap;

/// Why a model's weights could not be quantized; names the layer.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("layer '{layer}': {source}")]
    Quant { layer: String, source: QuantError },
    #[error("layer '{layer}' has no weight to quantize")]
    NoWeight { layer: String },
    #[error("layer '{layer}': weight '{weight}' is not an initializer")]
    NotInitializer { layer: String, weight: String },
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// The integer codes and scales of `layer`'s weight at `bits` with `scheme` (scales along the
/// layer's output channels), or with MPQ-DM's outlier split at a mean of `bits` when `split`:
/// what a probe simulates and what the apply stage stores.
pub fn quantized_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    bits: u8,
    split: bool,
) -> Result<QuantizedWeight, ApplyError> {
    let quantizer = WeightQuantizer::new(scheme, bits, layer.channel_axis.unwrap_or(0));
    let values = weight_values(model, layer)?;
    let quant_error = |source| ApplyError::Quant { layer: layer.name.clone(), source };
    if !split {
        return quantizer.quantize(values.view()).map_err(quant_error);
    }
    if !SPLIT_BITS.contains(&bits) {
        return Err(quant_error(QuantError::Bits { bits, min: SPLIT_BITS[0], max: SPLIT_BITS[SPLIT_BITS.len() - 1] }));
    }
    let channel_bits = outlier_split_bits(values.view(), quantizer.granularity.axis(), bits).map_err(quant_error)?;
    quantizer.quantize_mixed(values.view(), &channel_bits).map_err(quant_error)
}

/// What a layer's weight is stored as at one plan width.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredWeight {
    /// Integer codes and scales.
    Codes(QuantizedWeight),
    /// The values rounded to float16 (held here as the f32 they stand for).
    Half(ArrayD<f32>),
}

impl StoredWeight {
    /// The weight the stored form gives back.
    pub fn dequantize(&self) -> ArrayD<f32> {
        match self {
            StoredWeight::Codes(q) => q.dequantize(),
            StoredWeight::Half(values) => values.clone(),
        }
    }
}

/// `layer`'s weight at `bits`: [`HALF_BITS`] rounds it to float16, any other width gives
/// [`quantized_weight`]'s codes.
pub fn stored_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    bits: u8,
    split: bool,
) -> Result<StoredWeight, ApplyError> {
    if bits != HALF_BITS {
        return quantized_weight(model, layer, scheme, bits, split).map(StoredWeight::Codes);
    }
    Ok(StoredWeight::Half(weight_values(model, layer)?.mapv(|v| half::f16::from_f32(v).to_f32())))
}

/// The float values of `layer`'s weight initializer.
fn weight_values(model: &Model, layer: &Layer) -> Result<ArrayD<f32>, ApplyError> {
    let name = layer.weight.as_deref().ok_or_else(|| ApplyError::NoWeight { layer: layer.name.clone() })?;
    let view = GraphView::new(model.graph());
    let tensor = view
        .initializer(name)
        .ok_or_else(|| ApplyError::NotInitializer { layer: layer.name.clone(), weight: name.to_string() })?;
    Ok(tensor_to_f32(tensor)?)
}

/// The fake-quantized values of `layer`'s weight at `bits` (split as [`quantized_weight`];
/// float16 at [`HALF_BITS`]) with `scheme`, and the bytes its stored form takes (codes plus
/// scales, a split keeping the mean; two per value in float16).
pub fn fake_quantized_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    bits: u8,
    split: bool,
) -> Result<(ArrayD<f32>, u64), ApplyError> {
    let quant_error = |source| ApplyError::Quant { layer: layer.name.clone(), source };
    match stored_weight(model, layer, scheme, bits, split)? {
        StoredWeight::Half(values) => {
            let bytes = (values.len() * 2) as u64;
            Ok((values, bytes))
        }
        StoredWeight::Codes(q) => {
            let quantizer = WeightQuantizer::new(scheme, bits, layer.channel_axis.unwrap_or(0));
            let bytes = quantizer.storage_bits(q.codes.shape()).map_err(quant_error)?.div_ceil(8);
            Ok((q.dequantize(), bytes))
        }
    }
}

/// A copy of `model` whose every weight layer among `layers` holds its weight fake-quantized
/// at `bits` with `scheme`.
pub fn fake_quantize_weights(
    model: &Model,
    layers: &[Layer],
    bits: u8,
    scheme: &WeightScheme,
) -> Result<Model, ApplyError> {
    let mut quantized = HashMap::new();
    for layer in layers {
        if let Some(name) = &layer.weight {
            quantized.insert(name.clone(), fake_quantized_weight(model, layer, scheme, bits, false)?.0);
        }
    }
    let mut copy = model.clone();
    rewrite::replace_initializers(&mut copy, &quantized);
    Ok(copy)
}
