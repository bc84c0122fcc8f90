//! uint8 quantize-dequantize pairs on activations, and int32 biases at the scale integer
//! kernels accumulate at: the QDQ form ONNX Runtime's CPU provider fuses into integer kernels.

use super::lowbit::{node_index, node_input, take_initializer};
use crate::builder::{Attr, node_proto};
use crate::error::{OnnxError, Result};
use crate::model::Model;
use crate::pb;
use crate::tensor::{Codes, DataType, tensor_from_codes, tensor_from_f32, tensor_to_f32};
use ndarray::{ArrayD, IxDyn};

/// Asymmetric uint8 quantization of one activation tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationParams {
    pub scale: f32,
    pub zero_point: u8,
}

/// The quantize-dequantize pair of `tensor`: initializers `{prefix}/scale`, `{prefix}/zero_point`
/// and nodes writing `{prefix}/dq`.
pub(super) fn qdq_pair(
    tensor: &str,
    prefix: &str,
    q: ActivationParams,
) -> (Vec<pb::NodeProto>, Vec<pb::TensorProto>, String) {
    let (scale, zero) = (format!("{prefix}/scale"), format!("{prefix}/zero_point"));
    let (quantized, out) = (format!("{prefix}/q"), format!("{prefix}/dq"));
    let initializers = vec![
        tensor_from_f32(&scale, &ArrayD::from_elem(IxDyn(&[]), q.scale), DataType::F32),
        tensor_from_codes(&zero, &[], Codes::Uint8(&[q.zero_point])),
    ];
    let nodes = vec![
        node_proto(&quantized, "QuantizeLinear", &[tensor, &scale, &zero], vec![quantized.clone()], &[]),
        node_proto(&out, "DequantizeLinear", &[&quantized, &scale, &zero], vec![out.clone()], &[]),
    ];
    (nodes, initializers, out)
}

/// Puts a uint8 quantize-dequantize pair in front of input `slot` of node `node_name`; only that
/// node reads the quantized value.
pub fn quantize_input(
    model: &mut Model,
    node_name: &str,
    slot: usize,
    prefix: &str,
    q: ActivationParams,
) -> Result<()> {
    let (node, tensor) = node_input(model, node_name, slot)?;
    let graph = model.graph_mut();
    let (nodes, initializers, out) = qdq_pair(&tensor, prefix, q);
    graph.node[node].input[slot] = out;
    graph.node.splice(node..node, nodes);
    graph.initializer.extend(initializers);
    Ok(())
}

/// Puts a uint8 quantize-dequantize pair behind the first output of node `node_name`; every
/// reader of that output reads the dequantized value. Graph outputs are left in float.
pub fn quantize_output(model: &mut Model, node_name: &str, prefix: &str, q: ActivationParams) -> Result<()> {
    let node = node_index(model, node_name)?;
    let graph = model.graph_mut();
    let tensor = graph.node[node].output[0].clone();
    if graph.output.iter().any(|o| o.name() == tensor) {
        return Ok(());
    }
    let (nodes, initializers, out) = qdq_pair(&tensor, prefix, q);
    for other in &mut graph.node {
        for input in other.input.iter_mut().filter(|i| **i == tensor) {
            input.clone_from(&out);
        }
    }
    graph.node.splice(node + 1..node + 1, nodes);
    graph.initializer.extend(initializers);
    Ok(())
}

/// Replaces the bias initializer `name` (one value per output channel) with int32 codes at
/// scale `input_scale · weight_scales[c]` (the scale QLinearConv and QGemm accumulate at) and a
/// DequantizeLinear node. A channel whose weight scale is 0 keeps its bias at the input scale.
pub fn store_bias(model: &mut Model, name: &str, prefix: &str, input_scale: f32, weight_scales: &[f32]) -> Result<()> {
    let original = take_initializer(model, name)?;
    let bias = tensor_to_f32(&original)?;
    if bias.len() != weight_scales.len() {
        return Err(OnnxError::Graph(format!(
            "bias '{name}' has {} values for {} output channels",
            bias.len(),
            weight_scales.len()
        )));
    }
    let scales: Vec<f32> = weight_scales.iter().map(|&s| input_scale * if s > 0.0 { s } else { 1.0 }).collect();
    let codes: Vec<i32> = bias
        .iter()
        .zip(&scales)
        .map(|(&b, &s)| if s > 0.0 { (b / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32 } else { 0 })
        .collect();
    let (codes_name, scale_name) = (format!("{prefix}/codes"), format!("{prefix}/scale"));
    let scales = ArrayD::from_shape_vec(IxDyn(&[scales.len()]), scales).map_err(|e| OnnxError::Graph(e.to_string()))?;
    let graph = model.graph_mut();
    graph.initializer.push(tensor_from_codes(&codes_name, &[codes.len()], Codes::Int32(&codes)));
    graph.initializer.push(tensor_from_f32(&scale_name, &scales, DataType::F32));
    let node = node_proto(
        &format!("{prefix}/dequantize"),
        "DequantizeLinear",
        &[&codes_name, &scale_name],
        vec![name.to_string()],
        &[Attr::Int("axis", 0)],
    );
    graph.node.insert(0, node);
    Ok(())
}
