//! The edits behind quantization corrections: a model run beside a second one on the same
//! inputs (PTQD compares a quantized denoiser with the float one on every step's input), a layer
//! run beside a copy of itself whose weight is replaced by a weight change (bias correction
//! measures the mean output shift that change causes), a constant added to a layer's bias, and
//! MixDQ's BOS-aware text embedding (the first token row of a cross-attention K/V projection's
//! input kept out of activation quantization).

use super::lowbit::{LOWBIT_OPSET, default_opset, node_index, node_input, raise_opset};
use super::qdq::{ActivationParams, qdq_pair};
use crate::builder::{Attr, node_proto};
use crate::error::{OnnxError, Result};
use crate::graph::GraphView;
use crate::model::Model;
use crate::pb;
use crate::tensor::{DataType, tensor_from_f32, tensor_from_i64, tensor_to_f32};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashSet;

/// The token axis of a text embedding `[batch, tokens, width]`.
pub const TOKEN_AXIS: i64 = bitsearch_types::TOKEN_AXIS as i64;

/// Ops whose input 2 is a per-output-channel bias.
const BIAS_OPS: [&str; 3] = ["Conv", "ConvTranspose", "Gemm"];

/// The values [`side_by_side`] adds: identities of both models' first outputs and of the shared
/// graph inputs, so a session can return them beside its own outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideBySide {
    pub main: String,
    pub side: String,
    /// `(graph input, its identity)`, in the main model's input order.
    pub inputs: Vec<(String, String)>,
}

/// One model computing `main` and, on the same graph inputs, `side`: every name of `side` but
/// its graph inputs gets `prefix`. `main`'s outputs are unchanged. Both must be at one default
/// opset, or `main` must be liftable to `side`'s low-bit opset; graphs with subgraphs are refused.
pub fn side_by_side(main: &Model, side: &Model, prefix: &str) -> Result<(Model, SideBySide)> {
    let (main_opset, side_opset) = (default_opset(main), default_opset(side));
    let mut merged = main.clone();
    if main_opset != side_opset {
        if side_opset < LOWBIT_OPSET.max(main_opset) {
            return Err(OnnxError::Graph(format!(
                "cannot run an opset {side_opset} graph beside an opset {main_opset} one"
            )));
        }
        raise_opset(&mut merged, side_opset)?;
    }
    if side
        .graph()
        .node
        .iter()
        .chain(&main.graph().node)
        .any(|n| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()))
    {
        return Err(OnnxError::Graph("graphs with subgraphs (If, Loop, Scan) cannot be paired".into()));
    }
    let inputs: HashSet<&str> = main.graph().input.iter().map(|v| v.name()).collect();
    let side_graph = side.graph();
    let initializers: HashSet<&str> = side_graph.initializer.iter().map(|t| t.name()).collect();
    if let Some(v) = side_graph.input.iter().find(|v| !inputs.contains(v.name()) && !initializers.contains(v.name())) {
        return Err(OnnxError::Graph(format!("'{}' is an input of the second graph only", v.name())));
    }
    let rename = |name: &str| -> String {
        if name.is_empty() || (inputs.contains(name) && !initializers.contains(name)) {
            name.to_string()
        } else {
            format!("{prefix}{name}")
        }
    };
    for domain in &side.proto.opset_import {
        if !merged.proto.opset_import.iter().any(|o| o.domain() == domain.domain()) {
            merged.proto.opset_import.push(domain.clone());
        }
    }
    let main_out = main.graph().output.first().map(|o| o.name().to_string()).unwrap_or_default();
    let side_out = side_graph.output.first().map(|o| rename(o.name())).unwrap_or_default();
    let input_names: Vec<String> = main.graph().input.iter().map(|v| v.name().to_string()).collect();
    let graph = merged.graph_mut();
    for node in &side_graph.node {
        let mut node = node.clone();
        node.name = Some(format!("{prefix}{}", node.name()));
        node.input.iter_mut().for_each(|i| *i = rename(i));
        node.output.iter_mut().for_each(|o| *o = rename(o));
        graph.node.push(node);
    }
    for tensor in &side_graph.initializer {
        let mut tensor = tensor.clone();
        tensor.name = Some(rename(tensor.name()));
        graph.initializer.push(tensor);
    }
    let mut identity = |value: &str, name: String| {
        graph.node.push(node_proto(&name, "Identity", &[value], vec![name.clone()], &[]));
        name
    };
    let exposed = SideBySide {
        main: identity(&main_out, format!("{prefix}out/main")),
        side: identity(&side_out, format!("{prefix}out/side")),
        inputs: input_names.iter().map(|i| (i.clone(), identity(i, format!("{prefix}in/{i}")))).collect(),
    };
    Ok((merged, exposed))
}

/// Adds beside layer `node_name` a copy of it that reads `delta` in place of its weight input
/// `weight` and has no bias, so that its output is the change that replacing the weight by
/// `weight + delta` makes to the layer's output (all these layers are linear in their weight).
/// Convolutions are averaged over their spatial positions in the graph to keep the value small.
/// Returns the value to read and the axis of its output channels.
pub fn weight_delta_branch(
    model: &mut Model,
    node_name: &str,
    weight: &str,
    prefix: &str,
    delta: &ArrayD<f32>,
) -> Result<(String, usize)> {
    let node = find_node(model, node_name)?.clone();
    let op = node.op_type().to_string();
    let delta_name = format!("{prefix}/delta");
    let mut copy = node.clone();
    copy.name = Some(format!("{prefix}/branch"));
    let slot = copy
        .input
        .iter()
        .position(|i| i == weight)
        .ok_or_else(|| OnnxError::Graph(format!("node '{node_name}' does not read the weight '{weight}'")))?;
    copy.input[slot].clone_from(&delta_name);
    if BIAS_OPS.contains(&op.as_str()) {
        copy.input.truncate(2);
    }
    let raw = format!("{prefix}/branch_out");
    copy.output = vec![raw.clone()];
    let graph = model.graph_mut();
    graph.initializer.push(tensor_from_f32(&delta_name, delta, DataType::F32));
    graph.node.push(copy);
    if op == "Conv" || op == "ConvTranspose" {
        let pooled = format!("{prefix}/pooled");
        graph.node.push(node_proto(&pooled, "GlobalAveragePool", &[&raw], vec![pooled.clone()], &[]));
        return Ok((pooled, 1));
    }
    Ok((raw, usize::MAX))
}

/// Adds `delta` (one value per output channel) to the output of layer `node_name`: folded into
/// the bias of a Conv or Gemm (a new initializer `{prefix}/bias` replacing the old one; a missing
/// bias is created), otherwise an Add behind the layer that every reader of its output then reads.
pub fn add_to_bias(model: &mut Model, node_name: &str, prefix: &str, delta: &[f32]) -> Result<()> {
    let position = node_index(model, node_name)?;
    let node = &model.graph().node[position];
    let bias_name = format!("{prefix}/bias");
    let vector = |values: Vec<f32>| {
        ArrayD::from_shape_vec(IxDyn(&[values.len()]), values).map_err(|e| OnnxError::Graph(e.to_string()))
    };
    if BIAS_OPS.contains(&node.op_type()) {
        let old = node.input.get(2).filter(|b| !b.is_empty()).cloned();
        let values = match &old {
            Some(name) => {
                let init = GraphView::new(model.graph())
                    .initializer(name)
                    .ok_or_else(|| OnnxError::Graph(format!("the bias '{name}' of '{node_name}' is not constant")))?;
                let bias = tensor_to_f32(init)?;
                if bias.len() != delta.len() {
                    return Err(OnnxError::Graph(format!(
                        "bias '{name}' has {} values for {} output channels",
                        bias.len(),
                        delta.len()
                    )));
                }
                bias.iter().zip(delta).map(|(b, d)| b + d).collect()
            }
            None => delta.to_vec(),
        };
        let tensor = tensor_from_f32(&bias_name, &vector(values)?, DataType::F32);
        let graph = model.graph_mut();
        graph.initializer.push(tensor);
        let node = &mut graph.node[position];
        node.input.resize(2, String::new());
        node.input.push(bias_name);
        // The replaced bias goes unless another node reads it, so it is not stored for nothing.
        if let Some(old) = old.filter(|o| !graph.node.iter().any(|n| n.input.contains(o))) {
            graph.initializer.retain(|t| t.name() != old);
            graph.input.retain(|v| v.name() != old);
        }
        return Ok(());
    }
    let graph = model.graph_mut();
    let output = graph.node[position].output[0].clone();
    let raw = format!("{prefix}/unbiased");
    graph.node[position].output[0].clone_from(&raw);
    graph.initializer.push(tensor_from_f32(&bias_name, &vector(delta.to_vec())?, DataType::F32));
    let add = node_proto(&format!("{prefix}/add"), "Add", &[&raw, &bias_name], vec![output], &[]);
    graph.node.insert(position + 1, add);
    Ok(())
}

/// A Slice node `name` (writing the value `name`) taking the first token row of `value` along
/// [`TOKEN_AXIS`] (`first`), or every other row, with its index initializers.
pub(super) fn token_rows(value: &str, name: &str, first: bool) -> (pb::NodeProto, Vec<pb::TensorProto>) {
    let (start, end) = if first { (0, 1) } else { (1, i64::MAX) };
    let part = |p: &str| format!("{name}/{p}");
    let initializers = vec![
        tensor_from_i64(&part("start"), &[1], &[start]),
        tensor_from_i64(&part("end"), &[1], &[end]),
        tensor_from_i64(&part("axis"), &[1], &[TOKEN_AXIS]),
    ];
    let inputs = [value, &part("start"), &part("end"), &part("axis")];
    (node_proto(name, "Slice", &inputs, vec![name.to_string()], &[]), initializers)
}

/// MixDQ's BOS-aware quantization of input `slot` of the MatMul `node_name` (a cross-attention
/// K/V projection of the text embedding): the first token row goes through a float copy of the
/// node, the other rows through a uint8 quantize-dequantize pair into the node itself (the form
/// integer kernels take), and the two outputs are joined along the token axis. The node's own
/// output becomes `{prefix}/rest_out`, so output quantization then leaves the first row float.
pub fn quantize_input_keeping_first_row(
    model: &mut Model,
    node_name: &str,
    slot: usize,
    prefix: &str,
    q: ActivationParams,
) -> Result<()> {
    let (position, tensor) = node_input(model, node_name, slot)?;
    let graph = model.graph_mut();
    let node = graph.node[position].clone();
    if node.op_type() != "MatMul" {
        return Err(OnnxError::Graph(format!(
            "'{node_name}' is a {}, not a MatMul of the text embedding",
            node.op_type()
        )));
    }
    let (first, rest) = (format!("{prefix}/first"), format!("{prefix}/rest_in"));
    let (first_node, mut initializers) = token_rows(&tensor, &first, true);
    let (rest_node, rest_initializers) = token_rows(&tensor, &rest, false);
    let (qdq_nodes, qdq_initializers, rest_dq) = qdq_pair(&rest, &format!("{prefix}/rest"), q);
    let nodes: Vec<pb::NodeProto> = [first_node, rest_node].into_iter().chain(qdq_nodes).collect();
    initializers.extend(rest_initializers.into_iter().chain(qdq_initializers));
    let mut float_copy = node.clone();
    float_copy.name = Some(format!("{prefix}/first_row"));
    float_copy.input[slot].clone_from(&first);
    let first_out = format!("{prefix}/first_out");
    float_copy.output = vec![first_out.clone()];
    let output = node.output[0].clone();
    let rest_out = format!("{prefix}/rest_out");
    let concat = node_proto(
        &format!("{prefix}/join"),
        "Concat",
        &[&first_out, &rest_out],
        vec![output],
        &[Attr::Int("axis", TOKEN_AXIS)],
    );
    let target = &mut graph.node[position];
    target.input[slot] = rest_dq;
    target.output[0] = rest_out;
    graph.node.insert(position + 1, concat);
    graph.node.insert(position + 1, float_copy);
    graph.node.splice(position..position, nodes);
    graph.initializer.extend(initializers);
    Ok(())
}

fn find_node<'m>(model: &'m Model, name: &str) -> Result<&'m pb::NodeProto> {
    Ok(&model.graph().node[node_index(model, name)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Dim, GraphBuilder};
    use ndarray::array;

    /// y = x·W (+ b when `bias`), x [2, 3], W [3, 2].
    fn linear(op: &str) -> Model {
        let mut g = GraphBuilder::new("linear");
        let x = g.input("x", DataType::F32, &[Dim::Fixed(2), Dim::Fixed(3)]);
        let w = g.initializer("w", array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]].into_dyn());
        let y = match op {
            "Gemm" => {
                let b = g.initializer("b", array![0.5f32, -0.5].into_dyn());
                g.node("layer", "Gemm", &[&x, &w, &b], &[])
            }
            _ => g.node("layer", "MatMul", &[&x, &w], &[]),
        };
        g.output(&y, DataType::F32, &[Dim::Fixed(2), Dim::Fixed(2)]);
        g.build()
    }

    #[test]
    fn bias_is_folded_into_gemm_or_added_behind_matmul() {
        for op in ["Gemm", "MatMul"] {
            let mut m = linear(op);
            add_to_bias(&mut m, "layer", "layer/bc", &[1.0, 2.0]).unwrap();
            let g = m.graph();
            let bias = g.initializer.iter().find(|t| t.name() == "layer/bc/bias").unwrap();
            let expected = if op == "Gemm" { vec![1.5f32, 1.5] } else { vec![1.0, 2.0] };
            assert_eq!(tensor_to_f32(bias).unwrap().iter().copied().collect::<Vec<_>>(), expected, "{op}");
            // The graph output is still produced, now by the node that adds the bias.
            let out = &g.output[0].name().to_string();
            let producer = g.node.iter().find(|n| n.output.contains(out)).unwrap();
            assert_eq!(producer.op_type(), if op == "Gemm" { "Gemm" } else { "Add" });
        }
        let mut m = linear("Gemm");
        assert!(add_to_bias(&mut m, "layer", "p", &[1.0]).unwrap_err().to_string().contains("2 values for 1"));
    }

    #[test]
    fn the_delta_branch_reads_the_delta_and_drops_the_bias() {
        let mut m = linear("Gemm");
        let delta = array![[1.0f32, 1.0], [1.0, 1.0], [1.0, 1.0]].into_dyn();
        let (value, axis) = weight_delta_branch(&mut m, "layer", "w", "layer/d", &delta).unwrap();
        assert_eq!((value.as_str(), axis), ("layer/d/branch_out", usize::MAX));
        let branch = m.graph().node.iter().find(|n| n.name() == "layer/d/branch").unwrap();
        assert_eq!(branch.input, vec!["x".to_string(), "layer/d/delta".to_string()]);
        assert!(weight_delta_branch(&mut m, "layer", "nope", "q", &delta).is_err());
    }

    #[test]
    fn side_by_side_renames_the_second_graph_but_its_inputs() {
        let (merged, names) = side_by_side(&linear("MatMul"), &linear("Gemm"), "q/").unwrap();
        let g = merged.graph();
        assert_eq!(g.output.len(), 1, "the main model's outputs are unchanged");
        assert_eq!(names.inputs, vec![("x".to_string(), "q/in/x".to_string())]);
        let side = g.node.iter().find(|n| n.name() == "q/layer").unwrap();
        assert_eq!(side.input, vec!["x".to_string(), "q/w".to_string(), "q/b".to_string()]);
        assert!(g.initializer.iter().any(|t| t.name() == "q/w") && g.initializer.iter().any(|t| t.name() == "w"));
        let produced: HashSet<&str> = g.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
        assert!(produced.contains(names.main.as_str()) && produced.contains(names.side.as_str()));
    }
}
