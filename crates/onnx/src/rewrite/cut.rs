//! The part of a graph below some nodes: what a change to those nodes (or to some initializers)
//! can influence, as a graph of its own whose other inputs are the values that cross the cut.
//! A sensitivity probe changes one layer, so it only needs to recompute what lies below it,
//! fed the full-precision values at the cut.

use crate::graph::{GraphView, declared_elem_type};
use crate::model::Model;
use crate::pb::{self, attribute_proto::AttributeType, type_proto};
use crate::tensor::DataType;
use std::collections::{HashMap, HashSet};

/// A graph cut below some nodes.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The nodes below the cut, the initializers they read, every input of the original graph
    /// (so that a caller feeds it as it fed the whole graph) and the values crossing the cut
    /// as further inputs.
    pub model: Model,
    /// The values crossing the cut, in graph order: what a run of `model` is fed beside the
    /// original inputs.
    pub fed: Vec<String>,
}

/// Which nodes lie below `nodes` and `tensors` (node names and initializer names), which
/// values cross into them, and the element types of the graph's values. A value crossing the cut is fed when its element type can be fed
/// (float or integer tensors); otherwise (booleans, types the graph leaves unknown) its
/// producer moves below the cut too. None when a graph output does not depend on the nodes
/// (the cut would not compute it) or the graph has subgraphs (If, Loop, Scan), whose outer
/// values this analysis does not follow.
fn below<'g>(view: &GraphView<'g>, nodes: &[&str], tensors: &[&str]) -> Option<Below<'g>> {
    let graph = view.graph;
    if graph
        .node
        .iter()
        .any(|n| n.attribute.iter().any(|a| matches!(a.r#type(), AttributeType::Graph | AttributeType::Graphs)))
    {
        return None;
    }
    let nodes: HashSet<&str> = nodes.iter().copied().collect();
    let mut influenced: HashSet<&str> = tensors.iter().copied().collect();
    let mut inside = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate() {
        if nodes.contains(view.node_name(i)) || node.input.iter().any(|t| influenced.contains(t.as_str())) {
            inside[i] = true;
            influenced.extend(node.output.iter().map(String::as_str));
        }
    }
    if graph.output.iter().any(|o| !influenced.contains(o.name())) {
        return None;
    }
    let types = element_types(graph);
    let fed_inputs: HashSet<&str> = view.fed_inputs().map(|v| v.name()).collect();
    let mut crossing: HashSet<&str> = HashSet::new();
    let mut pending: Vec<usize> = (0..inside.len()).filter(|&i| inside[i]).collect();
    while let Some(i) = pending.pop() {
        for input in &view.node(i).input {
            let input = input.as_str();
            if input.is_empty() || fed_inputs.contains(input) || crossing.contains(input) {
                continue;
            }
            match view.producer(input) {
                // An initializer (or a value nothing produces): it stays in the graph.
                None => {}
                Some(p) if inside[p] => {}
                Some(p) => {
                    if types.contains_key(input) {
                        crossing.insert(input);
                    } else {
                        inside[p] = true;
                        pending.push(p);
                    }
                }
            }
        }
    }
    // Graph order, for a cut that reads the same however it was found.
    let mut fed = Vec::new();
    for node in graph.node.iter().zip(&inside).filter(|(_, inside)| **inside).map(|(n, _)| n) {
        for input in &node.input {
            if crossing.remove(input.as_str()) {
                fed.push(input.clone());
            }
        }
    }
    Some(Below { inside, fed, types })
}

/// What [`below`] found.
struct Below<'g> {
    /// Per node of the graph: whether it lies below the cut.
    inside: Vec<bool>,
    fed: Vec<String>,
    types: HashMap<&'g str, DataType>,
}

/// The values that cross the cut below `nodes` and `tensors` (see [`cut_below`]), without
/// building the cut graph: what a caller must keep from a run of the whole graph.
pub fn crossing(model: &Model, nodes: &[&str], tensors: &[&str]) -> Option<Vec<String>> {
    below(&GraphView::new(model.graph()), nodes, tensors).map(|b| b.fed)
}

/// The graph below the nodes named `nodes` and the initializers `tensors`: every node that
/// depends on them, fed the values that cross into it from above. Run on those values it
/// computes the graph's outputs exactly as the whole graph does. None where no such cut exists
/// (see [`below`]).
pub fn cut_below(model: &Model, nodes: &[&str], tensors: &[&str]) -> Option<Cut> {
    let graph = model.graph();
    let view = GraphView::new(graph);
    let Below { inside, fed, types } = below(&view, nodes, tensors)?;
    let kept: Vec<pb::NodeProto> =
        graph.node.iter().zip(&inside).filter(|(_, inside)| **inside).map(|(n, _)| n.clone()).collect();
    let read: HashSet<&str> = kept.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let produced: HashSet<&str> = kept.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    let initializers: Vec<pb::TensorProto> =
        graph.initializer.iter().filter(|t| read.contains(t.name())).cloned().collect();
    let is_initializer: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let mut inputs: Vec<pb::ValueInfoProto> =
        graph.input.iter().filter(|v| !is_initializer.contains(v.name()) || read.contains(v.name())).cloned().collect();
    inputs.extend(fed.iter().map(|name| typed(name, types[name.as_str()])));
    // What crosses the cut is produced above it, so its value info goes with the producers.
    let value_info = graph.value_info.iter().filter(|v| produced.contains(v.name())).cloned().collect();
    let mut proto = model.proto.clone();
    let cut = proto.graph.get_or_insert_with(Default::default);
    cut.node = kept;
    cut.initializer = initializers;
    cut.input = inputs;
    cut.value_info = value_info;
    Some(Cut { model: model.derived(proto), fed })
}

/// A value of element type `dtype` and any shape.
fn typed(name: &str, dtype: DataType) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.to_onnx()),
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The element type of every value whose type follows from the graph, where bitsearch can feed
/// it: declared types first, then each node's output from its op (shape ops give int64, Cast
/// its target, comparisons booleans, which are left out) or else from its first input, as
/// the arithmetic, layout and convolution ops of a denoiser all do.
pub fn element_types(graph: &pb::GraphProto) -> HashMap<&str, DataType> {
    let mut types: HashMap<&str, Option<DataType>> = HashMap::new();
    let declared = graph.input.iter().chain(&graph.value_info).chain(&graph.output);
    for value in declared {
        if let Some(code) = declared_elem_type(value) {
            types.insert(value.name(), DataType::from_onnx(code));
        }
    }
    for tensor in &graph.initializer {
        types.insert(tensor.name(), DataType::from_onnx(tensor.data_type()));
    }
    for node in &graph.node {
        let input = |slot: usize| node.input.get(slot).and_then(|n| types.get(n.as_str()).copied().flatten());
        let attr_int = |name: &str| node.attribute.iter().find(|a| a.name() == name).map(|a| a.i());
        let standard = node.domain().is_empty() || node.domain() == "ai.onnx";
        let output = match node.op_type() {
            _ if !standard => None,
            "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" => Some(DataType::I64),
            "Cast" => attr_int("to").and_then(|code| DataType::from_onnx(code as i32)),
            "CastLike" | "Where" | "DequantizeLinear" => input(1),
            "Constant" => {
                node.attribute.iter().find_map(|a| a.t.as_ref()).and_then(|t| DataType::from_onnx(t.data_type()))
            }
            "ConstantOfShape" => node
                .attribute
                .iter()
                .find_map(|a| a.t.as_ref())
                .map_or(Some(DataType::F32), |t| DataType::from_onnx(t.data_type())),
            "Equal"
            | "Less"
            | "LessOrEqual"
            | "Greater"
            | "GreaterOrEqual"
            | "Not"
            | "And"
            | "Or"
            | "Xor"
            | "IsNaN"
            | "IsInf"
            | "QuantizeLinear"
            | "DynamicQuantizeLinear"
            | "MatMulInteger"
            | "ConvInteger" => None,
            _ => input(0),
        };
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            types.entry(out.as_str()).or_insert(output);
        }
    }
    types.into_iter().filter_map(|(name, dtype)| Some((name, dtype?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Dim, GraphBuilder};

    /// `a = x·w1`, `b = a + w2`, then `y = reshape(b, shape(a)) · a`, with a boolean mask of
    /// `a > 0` choosing between `y` and `a` at the end.
    fn skipping() -> Model {
        let mut b = GraphBuilder::new("skipping");
        let x = b.input("x", DataType::F32, &[Dim::sym("batch"), Dim::Fixed(4)]);
        let w1 = b.initializer("w1", ndarray::arr1(&[1.0f32, 2.0, 3.0, 4.0]).into_dyn());
        let w2 = b.initializer("w2", ndarray::arr1(&[0.5f32; 4]).into_dyn());
        let zero = b.initializer("zero", ndarray::arr0(0.0f32).into_dyn());
        let a = b.node("a", "Mul", &[&x, &w1], &[]);
        let mask = b.node("mask", "Greater", &[&a, &zero], &[]);
        let shape = b.node("shape", "Shape", &[&a], &[]);
        let sum = b.node("b", "Add", &[&a, &w2], &[]);
        let r = b.node("r", "Reshape", &[&sum, &shape], &[]);
        let y = b.node("y", "Mul", &[&r, &a], &[]);
        let out = b.node("out", "Where", &[&mask, &y, &a], &[]);
        b.output(&out, DataType::F32, &[Dim::sym("batch"), Dim::Fixed(4)]);
        b.build()
    }

    #[test]
    fn the_cut_keeps_what_depends_on_the_layer_and_feeds_what_crosses() {
        let model = skipping();
        let cut = cut_below(&model, &["b"], &[]).unwrap();
        let names: Vec<&str> = cut.model.graph().node.iter().map(|n| n.name()).collect();
        // The boolean mask cannot be fed, so its producer moves below the cut.
        assert_eq!(names, ["mask", "b", "r", "y", "out"]);
        assert_eq!(cut.fed, ["a", "shape"]);
        let inputs: Vec<&str> = cut.model.graph().input.iter().map(|v| v.name()).collect();
        assert_eq!(inputs, ["x", "a", "shape"], "the original input stays declared");
        let shape = cut.model.graph().input.iter().find(|v| v.name() == "shape").unwrap();
        assert_eq!(declared_elem_type(shape), Some(DataType::I64.to_onnx()));
        let kept: Vec<&str> = cut.model.graph().initializer.iter().map(|t| t.name()).collect();
        assert_eq!(kept, ["w2", "zero"], "w1 is above the cut");
        assert_eq!(crossing(&model, &["b"], &[]).unwrap(), cut.fed);
    }

    #[test]
    fn an_initializer_seeds_the_cut_and_an_output_it_misses_refuses_it() {
        let model = skipping();
        let cut = cut_below(&model, &[], &["w2"]).unwrap();
        assert_eq!(cut.model.graph().node.len(), 5);
        let everything = cut_below(&model, &["a"], &[]).unwrap();
        assert!(everything.fed.is_empty() && everything.model.graph().node.len() == 7);
        let mut two_outputs = model.clone();
        two_outputs.graph_mut().output.push(pb::ValueInfoProto { name: Some("shape".into()), ..Default::default() });
        assert!(cut_below(&two_outputs, &["b"], &[]).is_none());
    }
}
