//! Quantizers applied to the weights of a model: one layer's weight quantized (the codes the
//! apply stage stores) or fake-quantized (a sensitivity probe's override), or a copy of the
//! model with every layer's weight fake-quantized at one bit-width (the uniform baseline of a
//! plan).

use crate::{Hessian, QuantError, StoredWeight};
use bitsearch_onnx::{Model, OnnxError, rewrite, tensor_to_f32};
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{Layer, WeightFormat};
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

/// `layer`'s weight stored in `format` by the format's codec ([`StoredWeight::quantize`]), scales
/// along the layer's output channels; `hessian`, the second moment of its input, for GPTQ.
pub fn stored_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    format: WeightFormat,
    hessian: Option<&Hessian>,
) -> Result<StoredWeight, ApplyError> {
    format.check().map_err(|message| ApplyError::Form { layer: layer.name.clone(), message })?;
    let values = weight_values(model, layer)?;
    StoredWeight::quantize(format, scheme, values.view(), layer.channel_axis.unwrap_or(0), hessian)
        .map_err(|source| ApplyError::Quant { layer: layer.name.clone(), source })
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

/// The fake-quantized values of `layer`'s weight in `format` with `scheme` (what a probe feeds to
/// ONNX Runtime), and the bytes its stored form takes ([`StoredWeight::bytes`]).
pub fn fake_quantized_weight(
    model: &Model,
    layer: &Layer,
    scheme: &WeightScheme,
    format: WeightFormat,
    hessian: Option<&Hessian>,
) -> Result<(ArrayD<f32>, u64), ApplyError> {
    let stored = stored_weight(model, layer, scheme, format, hessian)?;
    let bytes = stored.bytes(format);
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
            quantized
                .insert(name.clone(), fake_quantized_weight(model, layer, scheme, WeightFormat::int(bits), None)?.0);
        }
    }
    let mut copy = model.clone();
    rewrite::replace_initializers(&mut copy, &quantized);
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clipping, Fp8Weight, Granularity, WeightQuantizer};
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
        assert_eq!(quantize(2, per_channel).bytes(WeightFormat::int(2)), 72 + 8 * 4);
        for bits in [3, 4] {
            assert_eq!(quantize(bits, per_channel).bytes(WeightFormat::int(bits)), 144 + 8 * 4);
        }
        assert_eq!(quantize(5, per_channel).bytes(WeightFormat::int(5)), 288 + 8 * 4);
        // Groups of 8: 5 per channel (8, 8, 8, 8, 4).
        let grouped = WeightFormat::Int {
            bits: 3,
            split: false,
            group: Some(8),
            rounding: bitsearch_types::Rounding::Nearest,
            rank: None,
        };
        let stored = quantize(3, Granularity::PerGroup { axis: 0, group_size: 8 });
        assert_eq!(stored.bytes(grouped), 144 + 8 * 5 * 4);
        let fp8 = StoredWeight::Fp8(Fp8Weight::quantize(w.view(), 0).unwrap());
        assert_eq!(fp8.bytes(WeightFormat::E4M3), 288 + 8 * 4);
        assert_eq!(StoredWeight::Half(w.clone()).bytes(WeightFormat::F16), 576);
    }
}
