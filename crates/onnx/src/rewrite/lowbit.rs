//! Low-bit storage of a model: weights as integer (or E4M3) codes with their scales, turned back
//! into float weights by DequantizeLinear (kept low-bit in memory) or by Cast and Mul (folded by
//! ONNX Runtime at session start); the opset such models need, and the node lookups the other
//! stored forms share.

use crate::builder::{Attr, node_proto};
use crate::error::{OnnxError, Result};
use crate::graph::GraphView;
use crate::model::Model;
use crate::pb;
use crate::tensor::{Codes, DataType, tensor_from_codes, tensor_from_f32, tensor_from_i64};
use ndarray::{ArrayD, IxDyn};

/// The opset low-bit models are written at: packed int4 and blocked scales need it.
pub const LOWBIT_OPSET: i64 = 21;
/// The opset of models holding int2 weights (ONNX 1.20).
pub const INT2_OPSET: i64 = 25;
/// The IR version each of those opsets requires: INT4 came with IR 10, INT2 with IR 13.
const fn ir_version(opset: i64) -> i64 {
    if opset >= INT2_OPSET { 13 } else { 10 }
}
/// Ops whose definition changed between the opsets a model may have and [`INT2_OPSET`], with
/// the opset of the change: a model using one below that opset cannot simply be relabelled.
/// Opsets 22 to 25 otherwise only widened type lists (bfloat16, float4, float8e8m0, int2) and
/// added ops.
const CHANGED_OPS: [(&str, i64); 12] = [
    ("ReduceL1", 18),
    ("ReduceL2", 18),
    ("ReduceLogSum", 18),
    ("ReduceLogSumExp", 18),
    ("ReduceMax", 18),
    ("ReduceMean", 18),
    ("ReduceMin", 18),
    ("ReduceProd", 18),
    ("ReduceSumSquare", 18),
    ("Split", 18),
    ("GroupNormalization", 21),
    ("Attention", 24),
];

/// The model's default-domain opset.
pub fn default_opset(model: &Model) -> i64 {
    model.proto.opset_import.iter().find(|o| o.domain().is_empty()).map_or(0, |o| o.version())
}

/// Relabels the model to `target` (a low-bit opset) when it is older. Every op the model uses
/// must mean the same at both opsets; otherwise the error names the op.
pub fn raise_opset(model: &mut Model, target: i64) -> Result<()> {
    let current = default_opset(model);
    if current >= target {
        return Ok(());
    }
    for node in &model.graph().node {
        if let Some((op, changed)) = CHANGED_OPS
            .iter()
            .find(|(op, v)| node.op_type() == *op && current < *v && *v <= target && !sized_split(node, current))
        {
            return Err(OnnxError::Graph(format!(
                "the model is opset {current} and uses {op}, whose definition changed in opset {changed}; \
                 low-bit storage needs opset {target}: re-export the model at opset {target}"
            )));
        }
    }
    for opset in &mut model.proto.opset_import {
        if opset.domain().is_empty() {
            opset.version = Some(target);
        }
    }
    if model.proto.ir_version() < ir_version(target) {
        model.proto.ir_version = Some(ir_version(target));
    }
    Ok(())
}

/// A Split given its sizes as an input (opset 13 on, as PyTorch exports `chunk`) means the same
/// at opset 18, which only added `num_outputs` for the split without sizes.
fn sized_split(node: &pb::NodeProto, opset: i64) -> bool {
    node.op_type() == "Split" && opset >= 13 && node.input.get(1).is_some_and(|sizes| !sizes.is_empty())
}

/// A quantized weight: codes in the weight's shape and the scale of each output channel
/// (`[C]`) or of each group of a channel's values in row-major order (`[C, groups]`).
#[derive(Debug, Clone, Copy)]
pub struct WeightCodes<'a> {
    pub codes: CodeArray<'a>,
    pub scales: &'a ArrayD<f32>,
    /// The output-channel axis of the weight.
    pub axis: usize,
    pub group_size: Option<usize>,
}

/// The codes of a weight and the element type they are stored as.
#[derive(Debug, Clone, Copy)]
pub enum CodeArray<'a> {
    /// Four codes per byte (codes within −2..=1); the model is raised to [`INT2_OPSET`].
    Int2(&'a ArrayD<i8>),
    /// Two codes per byte (codes within −8..=7).
    Int4(&'a ArrayD<i8>),
    Int8(&'a ArrayD<i8>),
    /// FLOAT8E4M3FN bit patterns.
    E4m3(&'a ArrayD<u8>),
}

impl CodeArray<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            CodeArray::Int2(c) | CodeArray::Int4(c) | CodeArray::Int8(c) => c.shape(),
            CodeArray::E4m3(c) => c.shape(),
        }
    }

    /// The least opset whose DequantizeLinear and Cast read this element type.
    fn opset(&self) -> i64 {
        if matches!(self, CodeArray::Int2(_)) { INT2_OPSET } else { LOWBIT_OPSET }
    }

    /// The codes as the initializer `name` of shape `dims` (as many elements as the weight).
    fn tensor(&self, name: &str, dims: &[usize]) -> pb::TensorProto {
        match self {
            CodeArray::Int2(c) => tensor_from_codes(name, dims, Codes::Int2(&c.iter().copied().collect::<Vec<_>>())),
            CodeArray::Int4(c) => tensor_from_codes(name, dims, Codes::Int4(&c.iter().copied().collect::<Vec<_>>())),
            CodeArray::Int8(c) => tensor_from_codes(name, dims, Codes::Int8(&c.iter().copied().collect::<Vec<_>>())),
            CodeArray::E4m3(c) => {
                tensor_from_codes(name, dims, Codes::Float8E4m3(&c.iter().copied().collect::<Vec<_>>()))
            }
        }
    }
}

/// How stored codes become the float weight the layer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dequantize {
    /// A DequantizeLinear node, which ONNX Runtime keeps: weights stay low-bit in memory.
    Linear,
    /// Cast to float and Mul by the scales, which ONNX Runtime folds into a float weight.
    CastMul,
}

/// Replaces the initializer `name` with `w`'s codes and scales (initializers `{prefix}/codes`,
/// `{prefix}/scale`) and a node at the front of the graph computing `name` from them, so every
/// reader of the weight is unchanged. The model's opset is raised to the one the codes' element
/// type needs.
pub fn store_weight(model: &mut Model, name: &str, prefix: &str, w: WeightCodes<'_>, form: Dequantize) -> Result<()> {
    let graph_error = |reason: String| OnnxError::Graph(format!("weight '{name}': {reason}"));
    raise_opset(model, w.codes.opset())?;
    let original = take_initializer(model, name)?;
    if w.codes.shape() != original.dims.iter().map(|&d| d as usize).collect::<Vec<_>>().as_slice() {
        return Err(graph_error(format!("codes of shape {:?} do not fit the weight", w.codes.shape())));
    }
    let shape = w.codes.shape().to_vec();
    let float = DataType::from_onnx(original.data_type()).unwrap_or(DataType::F32);
    let (codes_name, scale_name) = (format!("{prefix}/codes"), format!("{prefix}/scale"));
    let pack = |dims: &[usize]| w.codes.tensor(&codes_name, dims);
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    match (w.group_size, form) {
        (None, Dequantize::Linear) => {
            initializers.push(pack(&shape));
            initializers.push(tensor_from_f32(&scale_name, w.scales, float));
            nodes.push(node_proto(
                &format!("{prefix}/dequantize"),
                "DequantizeLinear",
                &[&codes_name, &scale_name],
                vec![name.to_string()],
                &[Attr::Int("axis", w.axis as i64)],
            ));
        }
        (None, Dequantize::CastMul) => {
            // Scales shaped to broadcast along the channel axis.
            let mut dims = vec![1; shape.len()];
            dims[w.axis] = shape[w.axis];
            let scales = w.scales.to_shape(IxDyn(&dims)).map_err(|e| graph_error(e.to_string()))?.to_owned();
            initializers.push(pack(&shape));
            initializers.push(tensor_from_f32(&scale_name, &scales, float));
            let cast = format!("{prefix}/cast");
            nodes.push(node_proto(
                &cast,
                "Cast",
                &[&codes_name],
                vec![cast.clone()],
                &[Attr::Int("to", float.to_onnx() as i64)],
            ));
            nodes.push(node_proto(
                &format!("{prefix}/scale_mul"),
                "Mul",
                &[&cast, &scale_name],
                vec![name.to_string()],
                &[],
            ));
        }
        (Some(group), Dequantize::Linear) => {
            // DequantizeLinear blocks one axis: the channel's values are laid along it.
            let (dims, block_axis, scales) = blocked_layout(&shape, w.axis, w.scales).ok_or_else(|| {
                graph_error(format!(
                    "per-group scales need the channel axis first or a 2-D weight (shape {shape:?}, axis {})",
                    w.axis
                ))
            })?;
            initializers.push(pack(&dims));
            initializers.push(tensor_from_f32(&scale_name, &scales, float));
            let attrs = [Attr::Int("axis", block_axis as i64), Attr::Int("block_size", group as i64)];
            let blocked = if dims == shape { name.to_string() } else { format!("{prefix}/blocked") };
            nodes.push(node_proto(
                &format!("{prefix}/dequantize"),
                "DequantizeLinear",
                &[&codes_name, &scale_name],
                vec![blocked.clone()],
                &attrs,
            ));
            if dims != shape {
                let target = format!("{prefix}/shape");
                let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                initializers.push(tensor_from_i64(&target, &[dims.len()], &dims));
                nodes.push(node_proto(
                    &format!("{prefix}/reshape"),
                    "Reshape",
                    &[&blocked, &target],
                    vec![name.to_string()],
                    &[],
                ));
            }
        }
        (Some(_), Dequantize::CastMul) => {
            return Err(graph_error(
                "per-group scales are stored with DequantizeLinear only (use lowbit storage)".into(),
            ));
        }
    }
    let graph = model.graph_mut();
    graph.initializer.extend(initializers);
    graph.node.splice(0..0, nodes);
    Ok(())
}

/// The codes' shape, the blocked axis and the scales laid out for DequantizeLinear's blocked
/// form: channel axis first → `[C, inner]` blocked on axis 1; a 2-D weight with channels on
/// axis 1 (MatMul, Gemm without transB) → unchanged, blocked on axis 0, scales transposed.
fn blocked_layout(shape: &[usize], axis: usize, scales: &ArrayD<f32>) -> Option<(Vec<usize>, usize, ArrayD<f32>)> {
    match (axis, shape.len()) {
        (0, _) => Some((vec![shape[0], shape[1..].iter().product()], 1, scales.clone())),
        (1, 2) => Some((shape.to_vec(), 0, scales.t().to_owned())),
        _ => None,
    }
}

/// Removes and returns the initializer `name` (and its graph-input entry, which older IR
/// versions list).
pub(super) fn take_initializer(model: &mut Model, name: &str) -> Result<pb::TensorProto> {
    let graph = model.graph_mut();
    let position = graph
        .initializer
        .iter()
        .position(|t| t.name() == name)
        .ok_or_else(|| OnnxError::Graph(format!("'{name}' is not an initializer of the model")))?;
    graph.input.retain(|v| v.name() != name);
    Ok(graph.initializer.remove(position))
}

/// Gives every node the name [`GraphView::node_name`] shows for it, so that inserting nodes
/// (which shifts the positions generated names are made of) cannot rename a layer.
pub fn name_nodes(model: &mut Model) {
    let names: Vec<String> = {
        let view = GraphView::new(model.graph());
        (0..view.nodes().len()).map(|i| view.node_name(i).to_string()).collect()
    };
    for (node, name) in model.graph_mut().node.iter_mut().zip(names) {
        node.name = Some(name);
    }
}

/// Drops what exporters attach to nodes for people (doc strings, metadata such as source stack
/// traces): nothing ONNX Runtime computes with, and on exported UNets often several MB.
pub fn strip_node_metadata(model: &mut Model) {
    for node in &mut model.graph_mut().node {
        node.doc_string = None;
        node.metadata_props.clear();
    }
}

/// The position of node `node_name` and the value it reads at input `slot`.
pub(super) fn node_input(model: &Model, node_name: &str, slot: usize) -> Result<(usize, String)> {
    let node = node_index(model, node_name)?;
    let tensor = model.graph().node[node]
        .input
        .get(slot)
        .cloned()
        .ok_or_else(|| OnnxError::Graph(format!("node '{node_name}' has no input {slot}")))?;
    Ok((node, tensor))
}

pub(super) fn node_index(model: &Model, node_name: &str) -> Result<usize> {
    let view = GraphView::new(model.graph());
    (0..view.nodes().len())
        .find(|&i| view.node_name(i) == node_name)
        .ok_or_else(|| OnnxError::Graph(format!("'{node_name}' is not a node of the graph")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Dim, GraphBuilder};
    use crate::pb::tensor_proto::DataType as PbType;
    use crate::rewrite::{ActivationParams, quantize_input, quantize_output, store_bias};

    /// y = x · W with W [2, 3] (channels on axis 1), at `opset`.
    fn matmul(opset: i64) -> Model {
        let mut b = GraphBuilder::new("mm").with_opset(opset);
        let x = b.input("x", DataType::F32, &[Dim::Fixed(1), Dim::Fixed(2)]);
        let w = b.initializer("w", ndarray::arr2(&[[1.0f32, -2.0, 0.5], [0.25, 3.0, -1.0]]).into_dyn());
        let y = b.node("mm", "MatMul", &[&x, &w], &[]);
        b.output(&y, DataType::F32, &[Dim::Fixed(1), Dim::Fixed(3)]);
        b.build()
    }

    fn codes() -> (ArrayD<i8>, ArrayD<f32>) {
        (ndarray::arr2(&[[7i8, -7, 1], [2, 7, -2]]).into_dyn(), ndarray::arr1(&[0.14f32, 0.43, 0.14]).into_dyn())
    }

    #[test]
    fn a_stored_weight_is_computed_under_its_own_name_from_packed_codes() {
        let mut model = matmul(17);
        let (c, scales) = codes();
        let w = WeightCodes { codes: CodeArray::Int4(&c), scales: &scales, axis: 1, group_size: None };
        store_weight(&mut model, "w", "w/w4", w, Dequantize::Linear).unwrap();
        let graph = model.graph();
        assert!(graph.initializer.iter().all(|t| t.name() != "w"));
        let codes = graph.initializer.iter().find(|t| t.name() == "w/w4/codes").unwrap();
        assert_eq!((codes.data_type(), codes.raw_data.as_ref().map(|r| r.len())), (PbType::Int4 as i32, Some(3)));
        let dq = &graph.node[0];
        assert_eq!((dq.op_type(), dq.output[0].as_str()), ("DequantizeLinear", "w"));
        assert_eq!(GraphView::new(graph).producer("w"), Some(0));

        // Cast + Mul: the scales broadcast along the channel axis.
        let mut model = matmul(17);
        store_weight(&mut model, "w", "w/w4", WeightCodes { codes: CodeArray::Int8(&c), ..w }, Dequantize::CastMul)
            .unwrap();
        let scale = model.graph().initializer.iter().find(|t| t.name() == "w/w4/scale").unwrap();
        assert_eq!(scale.dims, vec![1, 3]);
        assert_eq!(model.graph().node[1].op_type(), "Mul");
    }

    #[test]
    fn per_group_scales_are_blocked_along_the_input_axis() {
        let mut model = matmul(21);
        let (c, _) = codes();
        // Channels on axis 1, one group of 2 values each: scales [3, 1] transposed to [1, 3].
        let scales = ndarray::arr2(&[[0.1f32], [0.2], [0.3]]).into_dyn();
        let w = WeightCodes { codes: CodeArray::Int8(&c), scales: &scales, axis: 1, group_size: Some(2) };
        store_weight(&mut model, "w", "w/w8", w, Dequantize::Linear).unwrap();
        let scale = model.graph().initializer.iter().find(|t| t.name() == "w/w8/scale").unwrap();
        assert_eq!(scale.dims, vec![1, 3]);
        let message = store_weight(&mut matmul(21), "w", "p", w, Dequantize::CastMul).unwrap_err().to_string();
        assert!(message.contains("lowbit"), "{message}");
    }

    #[test]
    fn the_opset_is_raised_unless_an_op_changed_meaning() {
        let mut model = matmul(17);
        raise_opset(&mut model, LOWBIT_OPSET).unwrap();
        assert_eq!((default_opset(&model), model.proto.ir_version()), (LOWBIT_OPSET, 10));
        raise_opset(&mut model, INT2_OPSET).unwrap();
        assert_eq!((default_opset(&model), model.proto.ir_version()), (INT2_OPSET, 13));
        let mut reduce = matmul(17);
        let node = node_proto("mean", "ReduceMean", &["mm"], vec!["m".into()], &[]);
        reduce.graph_mut().node.push(node);
        let message = raise_opset(&mut reduce, LOWBIT_OPSET).unwrap_err().to_string();
        assert!(message.contains("ReduceMean") && message.contains("opset 18"), "{message}");
        // A Split with its sizes as an input keeps its meaning; one without them does not.
        let split = |inputs: &[&str]| {
            let mut model = matmul(17);
            model.graph_mut().node.push(node_proto("split", "Split", inputs, vec!["a".into(), "b".into()], &[]));
            raise_opset(&mut model, LOWBIT_OPSET)
        };
        assert!(split(&["mm", "sizes"]).is_ok());
        let message = split(&["mm"]).unwrap_err().to_string();
        assert!(message.contains("Split") && message.contains("opset 18"), "{message}");
    }

    #[test]
    fn activation_pairs_feed_their_node_and_biases_take_the_product_scale() {
        let mut b = GraphBuilder::new("gemm");
        let x = b.input("x", DataType::F32, &[Dim::Fixed(1), Dim::Fixed(2)]);
        let w = b.initializer("w", ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]).into_dyn());
        let bias = b.initializer("b", ndarray::arr1(&[0.5f32, -0.25]).into_dyn());
        let y = b.node("g", "Gemm", &[&x, &w, &bias], &[]);
        let z = b.node("relu", "Relu", &[&y], &[]);
        b.output(&z, DataType::F32, &[Dim::Fixed(1), Dim::Fixed(2)]);
        let mut model = b.build();
        let q = ActivationParams { scale: 0.5, zero_point: 3 };
        quantize_input(&mut model, "g", 0, "g/in", q).unwrap();
        quantize_output(&mut model, "g", "g/out", q).unwrap();
        store_bias(&mut model, "b", "b/a8", 0.5, &[0.25, 0.0]).unwrap();
        let view = GraphView::new(model.graph());
        let gemm = view.nodes().iter().find(|n| n.name() == "g").unwrap();
        assert_eq!(gemm.input[0], "g/in/dq");
        let relu = view.nodes().iter().find(|n| n.name() == "relu").unwrap();
        assert_eq!(relu.input[0], "g/out/dq");
        let codes = view.initializer("b/a8/codes").unwrap();
        // 0.5 / (0.5·0.25) = 4; a zero weight scale keeps the input scale: −0.25 / 0.5 = −0.5 → −1 (away from 0).
        let raw = codes.raw_data.as_ref().unwrap();
        assert_eq!(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]), 4);
        assert_eq!(i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]), -1);
    }
}
