//! Quantizers applied to the weights of a model: one layer's weight quantized (the codes the
//! apply stage stores) or fake-quantized (a sensitivity probe's override), or a copy of the
//! model with every layer's weight fake-quantized at one bit-width (the uniform baseline of a
//! plan).

use crate::fp8::Fp8Weight;
use crate::{QuantError, QuantizedWeight, SPLIT_BITS, WeightQuantizer, outlier_split_bits};
use bitsearch_onnx::{Model, OnnxError, rewrite, tensor_to_f32};
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{Layer, WeightForm};
use ndarray::ArrayD;
use std::collections::HashMap;

/// Why a model's weights could not be quantized; names the layer.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("layer '{layer}': {source}")]
    Quant { layer: String, source: QuantError },
    #[error("layer '{layer}': {message}")]
    Form { layer: String, message: String },
    #[error("layer '{layer}' has no weight to quantize")]
    NoWeight { layer: String },
    #[error("layer '{layer}': weight '{weight}' is not an initializer")]
    NotInitializer { layer: String, weight: String },
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// The integer codes and scales of `layer`'s weight in the integer `form` with `scheme` (scales
/// along the layer's output channels, per group when the form or scheme has a group size),
/// with MPQ-DM's outlier split at a mean of its bits when the form is split.
pub fn quantized_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    form: WeightForm,
) -> Result<QuantizedWeight, ApplyError> {
    let bits = form.bits;
    let quantizer = WeightQuantizer::new(&form.scheme(scheme), bits, layer.channel_axis.unwrap_or(0));
    let values = weight_values(model, layer)?;
    let quant_error = |source| ApplyError::Quant { layer: layer.name.clone(), source };
    if !form.split {
        return quantizer.quantize(values.view()).map_err(quant_error);
    }
    if !SPLIT_BITS.contains(&bits) {
        return Err(quant_error(QuantError::Bits { bits, min: SPLIT_BITS[0], max: SPLIT_BITS[SPLIT_BITS.len() - 1] }));
    }
    let channel_bits = outlier_split_bits(values.view(), quantizer.granularity.axis(), bits).map_err(quant_error)?;
    quantizer.quantize_mixed(values.view(), &channel_bits).map_err(quant_error)
}

/// What a layer's weight is stored as in one [`WeightForm`].
#[derive(Debug, Clone, PartialEq)]
pub enum StoredWeight {
    /// Integer codes and scales.
    Codes(QuantizedWeight),
    /// E4M3 codes and per-channel scales.
    Fp8(Fp8Weight),
    /// The values rounded to float16 (held here as the f32 they stand for).
    Half(ArrayD<f32>),
}

impl StoredWeight {
    /// The weight the stored form gives back.
    pub fn dequantize(&self) -> ArrayD<f32> {
        match self {
            StoredWeight::Codes(q) => q.dequantize(),
            StoredWeight::Fp8(q) => q.dequantize(),
            StoredWeight::Half(values) => values.clone(),
        }
    }

    /// Bytes of the stored tensors: the codes in their container ([`WeightForm::container_bits`]),
    /// plus an f32 per scale.
    pub fn bytes(&self, form: WeightForm) -> u64 {
        let (values, scales) = match self {
            StoredWeight::Codes(q) => (q.codes.len(), q.scales.len()),
            StoredWeight::Fp8(q) => (q.codes.len(), q.scales.len()),
            StoredWeight::Half(values) => (values.len(), 0),
        };
        (values as u64 * form.container_bits()).div_ceil(8) + (scales * size_of::<f32>()) as u64
    }
}

/// `layer`'s weight stored in `form`: float16, E4M3 or [`quantized_weight`]'s integer codes.
pub fn stored_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    form: WeightForm,
) -> Result<StoredWeight, ApplyError> {
    form.check().map_err(|message| ApplyError::Form { layer: layer.name.clone(), message })?;
    if form.half() {
        return Ok(StoredWeight::Half(weight_values(model, layer)?.mapv(|v| half::f16::from_f32(v).to_f32())));
    }
    if form.fp8 {
        let values = weight_values(model, layer)?;
        return Fp8Weight::quantize(values.view(), layer.channel_axis.unwrap_or(0))
            .map(StoredWeight::Fp8)
            .map_err(|source| ApplyError::Quant { layer: layer.name.clone(), source });
    }
    quantized_weight(model, layer, scheme, form).map(StoredWeight::Codes)
}

/// The float values of `layer`'s weight initializer.
fn weight_values(model: &Model, layer: &Layer) -> Result<ArrayD<f32>, ApplyError> {
    let name = layer.weight.as_deref().ok_or_else(|| ApplyError::NoWeight { layer: layer.name.clone() })?;
    // A scan, not a GraphView: every weight of a model is quantized one call at a time, and a
    // view indexes the whole graph.
    let tensor = model
        .graph()
        .initializer
        .iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| ApplyError::NotInitializer { layer: layer.name.clone(), weight: name.to_string() })?;
    Ok(tensor_to_f32(tensor)?)
}

/// The fake-quantized values of `layer`'s weight in `form` with `scheme` (what a probe feeds to
/// ONNX Runtime), and the bytes its stored form takes ([`StoredWeight::bytes`]).
pub fn fake_quantized_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    form: WeightForm,
) -> Result<(ArrayD<f32>, u64), ApplyError> {
    let stored = stored_weight(model, layer, scheme, form)?;
    let bytes = stored.bytes(form);
    Ok((stored.dequantize(), bytes))
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
            quantized.insert(name.clone(), fake_quantized_weight(model, layer, scheme, WeightForm::plain(bits))?.0);
        }
    }
    let mut copy = model.clone();
    rewrite::replace_initializers(&mut copy, &quantized);
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clipping, Granularity};
    use ndarray::{Array, IxDyn};

    #[test]
    fn stored_bytes_count_the_container_and_the_scales() {
        // A conv [8, 4, 3, 3]: 288 values, 36 per channel.
        let w = Array::from_shape_fn(IxDyn(&[8, 4, 3, 3]), |i| (i[0] * 36 + i[1] * 9 + i[2] * 3 + i[3]) as f32 - 100.0);
        let quantize = |bits, granularity| {
            let q = WeightQuantizer { bits, granularity, clipping: Clipping::MinMax };
            StoredWeight::Codes(q.quantize(w.view()).unwrap())
        };
        let per_channel = Granularity::PerChannel { axis: 0 };
        // 2 bits pack four codes per byte, 3 and 4 bits two; 5 bits takes a byte.
        assert_eq!(quantize(2, per_channel).bytes(WeightForm::plain(2)), 72 + 8 * 4);
        for bits in [3, 4] {
            assert_eq!(quantize(bits, per_channel).bytes(WeightForm::plain(bits)), 144 + 8 * 4);
        }
        assert_eq!(quantize(5, per_channel).bytes(WeightForm::plain(5)), 288 + 8 * 4);
        // Groups of 8: 5 per channel (8, 8, 8, 8, 4).
        let grouped = WeightForm { group: Some(8), ..WeightForm::plain(3) };
        let stored = quantize(3, Granularity::PerGroup { axis: 0, group_size: 8 });
        assert_eq!(stored.bytes(grouped), 144 + 8 * 5 * 4);
        let fp8 = StoredWeight::Fp8(Fp8Weight::quantize(w.view(), 0).unwrap());
        assert_eq!(fp8.bytes(WeightForm { fp8: true, ..WeightForm::plain(8) }), 288 + 8 * 4);
        assert_eq!(StoredWeight::Half(w.clone()).bytes(WeightForm::plain(16)), 576);
    }
}
