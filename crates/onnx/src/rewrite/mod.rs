//! Every edit bitsearch makes to a graph, in one place: initializers exposed as inputs that a
//! run may override, extra outputs, initializers replaced by new values, switchable fake
//! quantizers in front of layers, (in [`lowbit`], [`nbits`], [`half`], [`branch`] and [`qdq`]) the
//! low-bit storage of a quantized model, (in [`correct`]) the graphs and bias edits of quantization
//! corrections, and (in [`cut`]) the part of a graph below some layers, fed what crosses into
//! it. Each returns an edited copy or edits the given model; none changes what the unedited
//! parts compute.

mod branch;
mod correct;
mod cut;
mod half;
mod lowbit;
mod nbits;
mod qdq;

pub use branch::add_low_rank_branch;
pub use correct::{
    SideBySide, TOKEN_AXIS, add_to_bias, quantize_input_keeping_first_row, side_by_side, weight_delta_branch,
};
pub use cut::{Cut, crossing, cut_below, element_types};
pub use half::store_half;
pub use lowbit::{
    CodeArray, Dequantize, LOWBIT_OPSET, WeightCodes, default_opset, name_nodes, raise_opset, store_weight,
    strip_node_metadata,
};
pub use nbits::{MS_DOMAIN, nbits_block, store_matmul_nbits};
pub use qdq::{ActivationParams, quantize_input, quantize_output, store_bias};

use crate::builder::{Attr, Dim, node_proto, value_info};
use crate::error::{OnnxError, Result};
use crate::graph::GraphView;
use crate::model::Model;
use crate::pb;
use crate::tensor::{DataType, tensor_from_f32};
use bitsearch_types::Layer;
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

/// IR version from which initializers need not be graph inputs, so an input may default to one.
const MIN_IR_FOR_OVERRIDES: i64 = 4;
/// Opset where Round exists and Clip takes its bounds as inputs.
const MIN_FAKE_QUANT_OPSET: i64 = 11;
/// TensorProto element type of bool, Cast's target for the switch.
const BOOL: i64 = 9;

/// Element type and shape of each initializer exposed by [`expose_initializers`].
pub type Exposed = HashMap<String, (DataType, Vec<usize>)>;

/// Makes the initializers `names` graph inputs that default to their stored values, so a run
/// may feed replacements and a run without one computes exactly what the model did.
pub fn expose_initializers(model: &mut Model, names: &[String]) -> Result<Exposed> {
    if model.proto.ir_version() < MIN_IR_FOR_OVERRIDES {
        model.proto.ir_version = Some(MIN_IR_FOR_OVERRIDES);
    }
    let graph = model.graph_mut();
    let mut exposed = HashMap::new();
    for name in names {
        let tensor = graph.initializer.iter().find(|t| t.name() == name).ok_or_else(|| {
            OnnxError::Graph(format!("'{name}' is not an initializer, so it cannot be made overridable"))
        })?;
        let dtype = DataType::from_onnx(tensor.data_type()).ok_or_else(|| OnnxError::Tensor {
            name: name.clone(),
            reason: "has an element type bitsearch cannot feed".into(),
        })?;
        let shape: Vec<usize> = tensor.dims.iter().map(|&d| d.max(0) as usize).collect();
        if !graph.input.iter().any(|v| v.name() == name) {
            let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d)).collect();
            graph.input.push(value_info(name, dtype, &dims));
        }
        exposed.insert(name.clone(), (dtype, shape));
    }
    Ok(exposed)
}

/// Adds the values `names` as graph outputs (after the existing ones) and returns, for each,
/// the graph output that carries it. A graph input or initializer is returned through an
/// Identity (`{name}/bitsearch_output`): ONNX Runtime hands a graph input back as the caller's
/// own buffer, which is gone once the run's inputs are dropped.
pub fn add_outputs(model: &mut Model, names: &[String]) -> Vec<String> {
    let graph = model.graph_mut();
    let mut carriers = Vec::new();
    for name in names {
        let fed = graph.input.iter().any(|v| v.name() == name) || graph.initializer.iter().any(|t| t.name() == name);
        let carrier = if fed { format!("{name}/bitsearch_output") } else { name.clone() };
        if fed && !graph.node.iter().any(|n| n.output.contains(&carrier)) {
            graph.node.push(node_proto(&carrier, "Identity", &[name], vec![carrier.clone()], &[]));
        }
        if !graph.output.iter().any(|v| v.name() == carrier) {
            // ONNX Runtime infers the type of an output declared by name only.
            graph.output.push(pb::ValueInfoProto { name: Some(carrier.clone()), ..Default::default() });
        }
        carriers.push(carrier);
    }
    carriers
}

/// Adds a graph output carrying the shape of each of `names` (a `Shape` node's int64 values);
/// returns those outputs. Unlike exposing the values themselves, the run then holds no more
/// memory than a plain one, provided each `Shape` runs right after its value is made. ONNX
/// Runtime's default order walks back from the nodes nobody reads, the last of them in the
/// node list first: the `Shape` nodes are appended in the reverse of the order their values are
/// made. (Appended in that order, they kept every measured value alive to the end: 8.7 GB
/// against 4.5 GB for SD 1.5's UNet at a 64×64 latent.)
pub fn add_shape_outputs(model: &mut Model, names: &[String]) -> Vec<String> {
    let graph = model.graph_mut();
    let carriers: Vec<String> = names.iter().map(|name| format!("{name}/bitsearch_shape")).collect();
    let mut added: Vec<(Option<usize>, &String, &String)> = Vec::new();
    for (name, carrier) in names.iter().zip(&carriers) {
        let exists =
            graph.node.iter().any(|n| n.output.contains(carrier)) || added.iter().any(|(_, _, c)| *c == carrier);
        if !exists {
            added.push((graph.node.iter().position(|n| n.output.contains(name)), name, carrier));
        }
    }
    added.sort();
    for (_, name, carrier) in added.into_iter().rev() {
        graph.node.push(node_proto(carrier, "Shape", &[name], vec![carrier.clone()], &[]));
        graph.output.push(pb::ValueInfoProto { name: Some(carrier.clone()), ..Default::default() });
    }
    carriers
}

/// Replaces the values of initializers, keeping each one's element type.
pub fn replace_initializers(model: &mut Model, values: &HashMap<String, ArrayD<f32>>) {
    for init in &mut model.graph_mut().initializer {
        if let Some(new) = values.get(init.name()) {
            let dtype = DataType::from_onnx(init.data_type()).unwrap_or(DataType::F32);
            *init = tensor_from_f32(init.name(), new, dtype);
        }
    }
}

/// One fake-quantized activation: the input tensor and the names of its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeQuantPoint {
    /// Index of the layer in the caller's layer list.
    pub layer: usize,
    /// The activation it quantizes.
    pub tensor: String,
    pub scale: String,
    pub zero_point: String,
    pub qmax: String,
    /// 1 switches the quantizer on, 0 passes the activation through unchanged.
    pub on: String,
    /// The first token row (MixDQ's BOS) passes through in float; its range is not calibrated.
    pub first_row_float: bool,
}

impl FakeQuantPoint {
    /// The initializers a run overrides to set and switch the quantizer.
    pub fn parameters(&self) -> [&str; 4] {
        [&self.scale, &self.zero_point, &self.qmax, &self.on]
    }
}

/// A copy of `model` with a fake quantizer on every activation input of `layers` (the caller's
/// index, the layer, and whether it keeps the first token row of its input in float), each in
/// front of that layer only: `y = Where(on, (clip(round(x / s) + z, 0, qmax) − z) · s, x)`
/// (with the first row of `x` put back along [`TOKEN_AXIS`] where asked), its parameters
/// initializers (switched off by default) that a run overrides. Round is ONNX's ties-to-even,
/// as the activation quantizer rounds.
pub fn insert_fake_quantizers(model: &Model, layers: &[(usize, &Layer, bool)]) -> Result<(Model, Vec<FakeQuantPoint>)> {
    let opset = model.proto.opset_import.iter().find(|o| o.domain().is_empty()).map_or(0, |o| o.version());
    if opset < MIN_FAKE_QUANT_OPSET {
        return Err(OnnxError::Graph(format!(
            "activation fake quantizers need ONNX opset {MIN_FAKE_QUANT_OPSET} or later; the model uses opset {opset}"
        )));
    }
    let view = GraphView::new(model.graph());
    let node_of: HashMap<&str, usize> = (0..view.nodes().len()).map(|i| (view.node_name(i), i)).collect();
    let mut inserts: Vec<(usize, Vec<pb::NodeProto>)> = Vec::new();
    let mut rewires: Vec<(usize, usize, String)> = Vec::new();
    let mut initializers = Vec::new();
    let mut points = Vec::new();
    for &(index, layer, first_row_float) in layers {
        let node = *node_of
            .get(layer.name.as_str())
            .ok_or_else(|| OnnxError::Graph(format!("layer '{}' is not a node of the graph", layer.name)))?;
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
                first_row_float,
            };
            let qmin = name("qmin");
            for (param, value) in
                [(&point.scale, 1.0), (&point.zero_point, 0.0), (&point.qmax, 255.0), (&point.on, 0.0), (&qmin, 0.0)]
            {
                initializers.push(tensor_from_f32(param, &ArrayD::from_elem(IxDyn(&[]), value), DataType::F32));
            }
            let op = |part: &str, op_type: &str, inputs: &[&str], attrs: &[Attr]| {
                node_proto(&name(part), op_type, inputs, vec![name(part)], attrs)
            };
            let mut nodes = vec![
                op("div", "Div", &[tensor, &point.scale], &[]),
                op("round", "Round", &[&name("div")], &[]),
                op("shift", "Add", &[&name("round"), &point.zero_point], &[]),
                op("clip", "Clip", &[&name("shift"), &qmin, &point.qmax], &[]),
                op("unshift", "Sub", &[&name("clip"), &point.zero_point], &[]),
                op("dequant", "Mul", &[&name("unshift"), &point.scale], &[]),
            ];
            let mut quantized = name("dequant");
            if first_row_float {
                let (first, first_initializers) = correct::token_rows(tensor, &name("first"), true);
                let (rest, rest_initializers) = correct::token_rows(&quantized, &name("rest"), false);
                nodes.extend([first, rest]);
                initializers.extend(first_initializers.into_iter().chain(rest_initializers));
                nodes.push(op("join", "Concat", &[&name("first"), &name("rest")], &[Attr::Int("axis", TOKEN_AXIS)]));
                quantized = name("join");
            }
            nodes.push(op("switch", "Cast", &[&point.on], &[Attr::Int("to", BOOL)]));
            nodes.push(op("out", "Where", &[&name("switch"), &quantized, tensor], &[]));
            let slot = view
                .node(node)
                .input
                .iter()
                .position(|i| i == tensor)
                .ok_or_else(|| OnnxError::Graph(format!("layer '{}' does not read '{tensor}'", layer.name)))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;

    fn scaled() -> Model {
        let mut b = GraphBuilder::new("scaled");
        let x = b.input("x", DataType::F32, &[Dim::Fixed(2)]);
        let w = b.initializer("w", ndarray::arr1(&[2.0f32, 3.0]).into_dyn());
        let y = b.node("mul", "Mul", &[&x, &w], &[]);
        b.output(&y, DataType::F32, &[Dim::Fixed(2)]);
        b.build()
    }

    #[test]
    fn exposed_initializers_become_inputs_with_their_type_and_shape() {
        let mut model = scaled();
        model.proto.ir_version = Some(3);
        let exposed = expose_initializers(&mut model, &["w".to_string()]).unwrap();
        assert_eq!(exposed["w"], (DataType::F32, vec![2]));
        assert!(model.graph().input.iter().any(|v| v.name() == "w"));
        assert_eq!(model.proto.ir_version(), MIN_IR_FOR_OVERRIDES);
        let message = expose_initializers(&mut model, &["x".to_string()]).unwrap_err().to_string();
        assert!(message.contains("'x' is not an initializer"), "{message}");
    }

    #[test]
    fn replaced_initializers_keep_their_name_and_type() {
        let mut model = scaled();
        let values = HashMap::from([("w".to_string(), ndarray::arr1(&[5.0f32, 7.0]).into_dyn())]);
        replace_initializers(&mut model, &values);
        let view = GraphView::new(model.graph());
        let w = crate::tensor_to_f32(view.initializer("w").unwrap()).unwrap();
        assert_eq!(w.as_slice().unwrap(), &[5.0, 7.0]);
        let carriers = add_outputs(&mut model, &["mul".to_string(), "mul".to_string(), "x".to_string()]);
        assert_eq!(carriers, vec!["mul", "mul", "x/bitsearch_output"]);
        assert_eq!(model.graph().output.len(), 2, "an output is added once, an input through an Identity");
        assert_eq!(model.graph().node.last().unwrap().op_type(), "Identity");
    }
}
