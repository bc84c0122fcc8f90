//! Fake quantization in the graph. Weights are simple: the quantize-dequantize round trip of an
//! initializer ([`weight`]), for one layer in a probe or for all of them ([`quantize_weights`]).
//!
//! Activation probes need the layer's *input* quantized, which no session option can do: the
//! graph gets a switchable fake quantizer in front of the layer,
//! `y = Where(on, (clip(round(x / s) + z, 0, qmax) − z) · s, x)`, whose parameters are
//! initializers (switched off by default) that a probe overrides step by step. Round is ONNX's
//! ties-to-even, as in [`bitsearch_quant::ActQuantizer`].

use crate::config::SensitivityConfig;
use crate::error::{Result, SensitivityError};
use bitsearch_onnx::pb::{self, NodeProto};
use bitsearch_onnx::{DataType, GraphView, Model, tensor_from_f32, tensor_to_f32};
use bitsearch_quant::WeightQuantizer;
use bitsearch_types::Layer;
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

/// Opset where Round exists and Clip takes its bounds as inputs.
const MIN_OPSET: i64 = 11;
/// TensorProto element type of bool, Cast's target for the switch.
const BOOL: i64 = 9;

/// One fake-quantized activation: the input tensor and the names of its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeQuantPoint {
    /// Index of the layer in the run's layer list.
    pub layer: usize,
    /// The activation it quantizes.
    pub tensor: String,
    pub scale: String,
    pub zero_point: String,
    pub qmax: String,
    /// 1 switches the quantizer on, 0 passes the activation through unchanged.
    pub on: String,
}

impl FakeQuantPoint {
    /// The initializers a probe overrides.
    pub fn parameters(&self) -> [&str; 4] {
        [&self.scale, &self.zero_point, &self.qmax, &self.on]
    }
}

/// The fake-quantized values of `layer`'s weight initializer `name`, and the bytes its
/// quantized form would take.
pub fn weight(model: &Model, layer: &Layer, name: &str, quantizer: &WeightQuantizer) -> Result<(ArrayD<f32>, u64)> {
    let quant_error = |source| SensitivityError::Quant { layer: layer.name.clone(), source };
    let view = GraphView::new(model.graph());
    let tensor = view.initializer(name).ok_or_else(|| {
        SensitivityError::config("layers", format!("layer '{}': weight '{name}' is not an initializer", layer.name))
    })?;
    let values = tensor_to_f32(tensor)?;
    let fq = quantizer.fake_quantize(values.view()).map_err(quant_error)?;
    let bytes = quantizer.storage_bits(values.shape()).map_err(quant_error)?.div_ceil(8);
    Ok((fq, bytes))
}

/// A copy of `model` whose every weight layer among `layers` holds its weight fake-quantized at
/// `bits` with `config`'s quantizer: the uniform-precision model, as a baseline for plans.
pub fn quantize_weights(model: &Model, layers: &[Layer], bits: u8, config: &SensitivityConfig) -> Result<Model> {
    let mut quantized = HashMap::new();
    for layer in layers {
        if let Some(name) = &layer.weight {
            let quantizer = config.weight_quantizer(bits, layer.channel_axis.unwrap_or(0));
            quantized.insert(name.clone(), weight(model, layer, name, &quantizer)?.0);
        }
    }
    let mut copy = model.clone();
    for init in &mut copy.graph_mut().initializer {
        if let Some(values) = quantized.get(init.name()) {
            let dtype = DataType::from_onnx(init.data_type()).unwrap_or(DataType::F32);
            *init = tensor_from_f32(init.name(), values, dtype);
        }
    }
    Ok(copy)
}

/// A copy of `model` with a fake quantizer on every activation input of `layers` (pairs of
/// run index and layer), each in front of that layer only.
pub fn insert(model: &Model, layers: &[(usize, &Layer)]) -> Result<(Model, Vec<FakeQuantPoint>)> {
    let opset = model.proto.opset_import.iter().find(|o| o.domain().is_empty()).map_or(0, |o| o.version());
    if opset < MIN_OPSET {
        return Err(SensitivityError::config(
            "a_bits",
            format!("activation probes need ONNX opset {MIN_OPSET} or later; the model uses opset {opset}"),
        ));
    }
    let view = GraphView::new(model.graph());
    let node_of: HashMap<&str, usize> = (0..view.nodes().len()).map(|i| (view.node_name(i), i)).collect();
    let mut inserts: Vec<(usize, Vec<NodeProto>)> = Vec::new();
    let mut rewires: Vec<(usize, usize, String)> = Vec::new();
    let mut initializers = Vec::new();
    let mut points = Vec::new();
    for &(index, layer) in layers {
        let node = *node_of.get(layer.name.as_str()).ok_or_else(|| {
            SensitivityError::config("layers", format!("layer '{}' is not a node of the graph", layer.name))
        })?;
        for tensor in &layer.inputs {
            let prefix = format!("bitsearch_fq/{}/{tensor}", layer.name);
            let name = |part: &str| format!("{prefix}/{part}");
            let point = FakeQuantPoint {
                layer: index,
                tensor: tensor.clone(),
                scale: name("scale"),
                zero_point: name("zero_point"),
                qmax: name("qmax"),
                on: name("on"),
            };
            for (param, value) in
                [(&point.scale, 1.0), (&point.zero_point, 0.0), (&point.qmax, 255.0), (&point.on, 0.0)]
            {
                initializers.push(tensor_from_f32(param, &ArrayD::from_elem(IxDyn(&[]), value), DataType::F32));
            }
            let qmin = name("qmin");
            initializers.push(tensor_from_f32(&qmin, &ArrayD::from_elem(IxDyn(&[]), 0.0), DataType::F32));
            let op = |part: &str, op_type: &str, inputs: &[&str], attribute: Vec<pb::AttributeProto>| NodeProto {
                name: Some(name(part)),
                op_type: Some(op_type.to_string()),
                input: inputs.iter().map(|s| s.to_string()).collect(),
                output: vec![name(part)],
                attribute,
                ..Default::default()
            };
            let cast_to = pb::AttributeProto {
                name: Some("to".into()),
                r#type: Some(pb::attribute_proto::AttributeType::Int as i32),
                i: Some(BOOL),
                ..Default::default()
            };
            let nodes = vec![
                op("div", "Div", &[tensor, &point.scale], vec![]),
                op("round", "Round", &[&name("div")], vec![]),
                op("shift", "Add", &[&name("round"), &point.zero_point], vec![]),
                op("clip", "Clip", &[&name("shift"), &qmin, &point.qmax], vec![]),
                op("unshift", "Sub", &[&name("clip"), &point.zero_point], vec![]),
                op("dequant", "Mul", &[&name("unshift"), &point.scale], vec![]),
                op("switch", "Cast", &[&point.on], vec![cast_to]),
                op("out", "Where", &[&name("switch"), &name("dequant"), tensor], vec![]),
            ];
            let slot = view.node(node).input.iter().position(|i| i == tensor).ok_or_else(|| {
                SensitivityError::config("layers", format!("layer '{}' does not read '{tensor}'", layer.name))
            })?;
            rewires.push((node, slot, name("out")));
            inserts.push((node, nodes));
            points.push(point);
        }
    }
    let mut edited = model.clone();
    let graph = edited.graph_mut();
    for (node, slot, input) in rewires {
        graph.node[node].input[slot] = input;
    }
    // Insert from the back so earlier positions stay valid; nodes stay topologically sorted.
    inserts.sort_by_key(|(node, _)| std::cmp::Reverse(*node));
    for (node, nodes) in inserts {
        graph.node.splice(node..node, nodes);
    }
    graph.initializer.extend(initializers);
    Ok((edited, points))
}
