//! Multiply-accumulates per forward pass, from the activation shapes a runtime measured.

use crate::error::{OnnxError, Result};
use crate::graph::{GraphView, NodeAttrs};
use crate::model::Model;
use bitsearch_types::Layer;
use std::collections::HashMap;

/// Sets `layer.macs` for every layer from `shapes` (value name → dimensions at the model's
/// input size, as measured by running it once).
pub fn fill_macs(model: &Model, layers: &mut [Layer], shapes: &HashMap<String, Vec<usize>>) -> Result<()> {
    let view = GraphView::new(model.graph());
    for layer in layers.iter_mut() {
        let shape = |value: &str| {
            shapes
                .get(value)
                .map(Vec::as_slice)
                .ok_or_else(|| OnnxError::Graph(format!("layer {}: no measured shape for value '{value}'", layer.name)))
        };
        let out = shape(&layer.output)?;
        let elements = |s: &[usize]| s.iter().product::<usize>() as u64;
        let macs = match layer.op.as_str() {
            // Each output element sums over C_in/g · k… products.
            "Conv" => elements(out) * elements(&layer.weight_shape[1..]),
            // Each input element scatters into C_out/g · k… outputs.
            "ConvTranspose" => elements(shape(&layer.inputs[0])?) * elements(&layer.weight_shape[1..]),
            "Gemm" | "MatMul" => {
                let k = match layer.channel_axis {
                    Some(axis) => {
                        layer.weight_shape.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &d)| d).product()
                    }
                    None => shape(&layer.inputs[0])?.last().copied().unwrap_or(1),
                };
                elements(out) * k as u64
            }
            "Einsum" => {
                let node = view
                    .producer(&layer.output)
                    .map(|i| view.node(i))
                    .ok_or_else(|| OnnxError::Graph(format!("layer {}: node not found", layer.name)))?;
                let equation = node
                    .attr_str("equation")
                    .ok_or_else(|| OnnxError::Graph(format!("layer {}: Einsum without equation", layer.name)))?;
                let operands = layer.inputs.iter().map(|i| shape(i)).collect::<Result<Vec<_>>>()?;
                einsum_macs(equation, &operands)
                    .map_err(|e| OnnxError::Graph(format!("layer {}: equation '{equation}': {e}", layer.name)))?
            }
            other => return Err(OnnxError::Graph(format!("layer {}: no MAC rule for op {other}", layer.name))),
        };
        layer.macs = Some(macs);
    }
    Ok(())
}

/// An Einsum performs one multiply-add per point of the joint index space of its operands.
fn einsum_macs(equation: &str, operands: &[&[usize]]) -> Result<u64, String> {
    let lhs = equation.split("->").next().unwrap_or("").replace(' ', "");
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != operands.len() {
        return Err(format!("{} operand terms for {} inputs", terms.len(), operands.len()));
    }
    let mut sizes: HashMap<String, usize> = HashMap::new();
    for (term, shape) in terms.iter().zip(operands) {
        let letters: Vec<char> = term.replace("...", "").chars().collect();
        let ellipsis = shape.len().checked_sub(letters.len()).ok_or("more letters than dimensions")?;
        let mut dims = shape.iter();
        for part in term.split("...").enumerate().flat_map(|(k, p)| {
            // The ellipsis sits between the first and second part; its dims get keys "…0", "…1".
            let leading = if k == 1 { (0..ellipsis).map(|e| format!("…{e}")).collect() } else { vec![] };
            leading.into_iter().chain(p.chars().map(String::from))
        }) {
            let size = *dims.next().ok_or("operand rank does not match its term")?;
            let known = sizes.entry(part.clone()).or_insert(size);
            if *known != size && size != 1 && *known != 1 {
                return Err(format!("index {part} has sizes {known} and {size}"));
            }
            *known = (*known).max(size);
        }
    }
    Ok(sizes.values().map(|&s| s as u64).product())
}

#[cfg(test)]
mod tests {
    use super::einsum_macs;

    #[test]
    fn einsum_counts_the_joint_index_space() {
        // Attention scores: b=2, c=8, t=s=16 → 2·8·16·16.
        assert_eq!(einsum_macs("bct,bcs->bts", &[&[2, 8, 16], &[2, 8, 16]]), Ok(2 * 8 * 16 * 16));
        assert_eq!(einsum_macs("...ij,...jk->...ik", &[&[3, 4, 5], &[3, 5, 6]]), Ok(3 * 4 * 5 * 6));
        assert!(einsum_macs("ij,jk->ik", &[&[4, 5], &[6, 7]]).is_err());
        assert!(einsum_macs("ij->i", &[&[4, 5], &[5]]).is_err());
    }
}
