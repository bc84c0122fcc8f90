//! A low-rank branch beside a layer (SVDQuant): `y = layer(x) + (x·Rᵀ)·Lᵀ`, with the factors
//! stored in float16 and cast back at session start. The layer's own weight then holds only the
//! residual. The down projection is a copy of the layer with `R` as its weight (so a Conv keeps
//! its kernel, strides and pads), the up projection a 1×1 Conv or a MatMul by `L`.

use super::lowbit::node_index;
use crate::builder::{Attr, node_proto};
use crate::error::{OnnxError, Result};
use crate::graph::GraphView;
use crate::model::Model;
use crate::tensor::{DataType, tensor_from_f32};
use ndarray::{Array2, ArrayD, IxDyn};

/// Adds the branch `left · right` beside layer `node_name`, whose weight initializer `weight`
/// has its output channels on `axis`: `left` is `[outputs, rank]`, `down` is `right` laid out
/// as the layer's weight with `rank` output channels on `axis` (the down projection's kernel).
/// Conv (ungrouped), Gemm and MatMul with the weight as second input take one; any other layer
/// is refused.
pub fn add_low_rank_branch(
    model: &mut Model,
    node_name: &str,
    weight: &str,
    axis: usize,
    prefix: &str,
    (left, down_weight): (&Array2<f32>, &ArrayD<f32>),
) -> Result<()> {
    let position = node_index(model, node_name)?;
    let node = model.graph().node[position].clone();
    let refuse = |why: &str| OnnxError::Graph(format!("layer '{node_name}': no low-rank branch, {why}"));
    let shape: Vec<usize> = GraphView::new(model.graph())
        .initializer(weight)
        .ok_or_else(|| refuse(&format!("its weight '{weight}' is not an initializer")))?
        .dims
        .iter()
        .map(|&d| d.max(0) as usize)
        .collect();
    let (outputs, rank) = left.dim();
    let mut down_shape = shape.clone();
    if let Some(d) = down_shape.get_mut(axis) {
        *d = rank;
    }
    if shape.get(axis) != Some(&outputs) || down_weight.shape() != down_shape {
        let factors = format!("{:?}·{:?}", left.dim(), down_weight.shape());
        return Err(refuse(&format!("factors {factors} do not make its weight {shape:?} on axis {axis}")));
    }
    let op = node.op_type();
    let group = node.attribute.iter().find(|a| a.name() == "group").map_or(1, |a| a.i());
    let conv = match op {
        "Conv" if group == 1 => true,
        "Gemm" | "MatMul" => false,
        _ => return Err(refuse(&format!("{op} (groups {group}) takes none"))),
    };
    if node.input.get(1) != Some(&weight.to_string()) {
        return Err(refuse("its weight is not its second input"));
    }
    let [output] = node.output.as_slice() else {
        return Err(refuse("it has more than one output"));
    };

    // `left` as a 1×1 Conv kernel `[outputs, rank, 1, …]` or a MatMul operand `[rank, outputs]`.
    let up_weight = if conv {
        let mut dims = vec![outputs, rank];
        dims.resize(shape.len(), 1);
        left.clone().into_shape_with_order(IxDyn(&dims)).map_err(|e| OnnxError::Graph(e.to_string()))?
    } else {
        left.t().as_standard_layout().into_owned().into_dyn()
    };

    let name = |part: &str| format!("{prefix}/lr/{part}");
    let main = name("main");
    let mut down = node.clone();
    down.name = Some(name("down"));
    down.input = vec![node.input[0].clone(), name("right")];
    down.output = vec![name("down_out")];
    let up_op = if conv { "Conv" } else { "MatMul" };
    let up = node_proto(&name("up"), up_op, &[&name("down_out"), &name("left")], vec![name("up_out")], &[]);
    let add = node_proto(&name("add"), "Add", &[&main, &name("up_out")], vec![output.clone()], &[]);
    let float = DataType::F32.to_onnx() as i64;
    let cast = |factor: &str| {
        node_proto(
            &name(&format!("{factor}/cast")),
            "Cast",
            &[&name(&format!("{factor}/half"))],
            vec![name(factor)],
            &[Attr::Int("to", float)],
        )
    };
    let graph = model.graph_mut();
    graph.node[position].output = vec![main];
    graph.node.splice(position + 1..position + 1, [down, up, add]);
    graph.node.splice(0..0, [cast("right"), cast("left")]);
    graph.initializer.push(tensor_from_f32(&name("right/half"), down_weight, DataType::F16));
    graph.initializer.push(tensor_from_f32(&name("left/half"), &up_weight, DataType::F16));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Dim, GraphBuilder};
    use ndarray::array;

    #[test]
    fn the_branch_adds_its_product_to_a_matmul_and_refuses_what_it_cannot_carry() {
        let mut g = GraphBuilder::new("linear");
        let x = g.input("x", DataType::F32, &[Dim::Fixed(2), Dim::Fixed(3)]);
        let w = g.initializer("w", array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]].into_dyn());
        let y = g.node("mm", "MatMul", &[&x, &w], &[]);
        g.output(&y, DataType::F32, &[Dim::Fixed(2), Dim::Fixed(2)]);
        let mut model = g.build();
        let node = "mm";
        // W is [in 3, out 2]: channels on axis 1; L·R = [[1, 0, 2], [0, 0, 0]] per output, R
        // laid out as a [3, 1] weight.
        let (left, right) = (array![[1.0f32], [0.0]], array![[1.0f32], [0.0], [2.0]].into_dyn());
        assert!(add_low_rank_branch(&mut model, node, "w", 0, "p", (&left, &right)).is_err());
        add_low_rank_branch(&mut model, node, "w", 1, "p", (&left, &right)).unwrap();
        let ops: Vec<&str> = model.graph().node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Cast", "Cast", "MatMul", "MatMul", "MatMul", "Add"]);
        assert_eq!(model.graph().node.last().unwrap().output, [y]);
        let up = model.graph().initializer.iter().find(|t| t.name() == "p/lr/left/half").unwrap();
        assert_eq!(up.dims, [1, 2]);
        assert!(add_low_rank_branch(&mut model, node, "x", 1, "q", (&left, &right)).is_err());
    }
}
