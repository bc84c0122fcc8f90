//! MatMul layers written as ONNX Runtime's `MatMulNBits` (domain `com.microsoft`): the weight's
//! codes packed along K in blocks with one scale each, which its kernels (CPU, CUDA) multiply
//! without forming the float weight. ONNX Runtime fuses a blocked DequantizeLinear → MatMul into
//! the same node on its own, but only where its optimizer runs that fusion (and with int8
//! compute of the activations); writing the node makes the file say what runs.
//!
//! The node has no zero-point input: codes are stored offset by 2^(bits−1), the default zero
//! point, so `(stored − zero point) · scale` is the symmetric code times its scale. No
//! `accuracy_level` is set: activations are multiplied in the model's float type, so the layer
//! computes what DequantizeLinear → MatMul computes.

use super::lowbit::{CodeArray, WeightCodes, take_initializer};
use crate::builder::{Attr, node_proto};
use crate::error::{OnnxError, Result};
use crate::graph::GraphView;
use crate::model::Model;
use crate::pb;
use crate::tensor::{Codes, DataType, tensor_from_codes, tensor_from_f32};
use ndarray::{Array2, Axis};

/// The domain of ONNX Runtime's contrib ops, and the version of it that has MatMulNBits.
pub const MS_DOMAIN: &str = "com.microsoft";
const MS_DOMAIN_VERSION: i64 = 1;
/// Block sizes the kernels take: powers of two from 16 to 256.
const BLOCKS: std::ops::RangeInclusive<usize> = 16..=256;
/// Block of a per-channel weight: its one scale repeated over blocks of this size (or the
/// largest power of two from 16 that divides K).
const PER_CHANNEL_BLOCK: usize = 128;

/// The block size MatMulNBits would store a weight of `k` rows with: the group size when it is
/// one the kernels take and divides `k`; for per-channel scales the largest power of two up to
/// 128 that divides `k` (at least 16). None when neither fits.
pub fn nbits_block(k: usize, group_size: Option<usize>) -> Option<usize> {
    match group_size {
        Some(g) => (g.is_power_of_two() && BLOCKS.contains(&g) && k.is_multiple_of(g)).then_some(g),
        None => (4..=PER_CHANNEL_BLOCK.trailing_zeros()).rev().map(|p| 1usize << p).find(|b| k.is_multiple_of(*b)),
    }
}

/// Replaces the MatMul `node` (its input A times the initializer `weight` [K, N]) by a
/// MatMulNBits node of the same name and output over `w`'s codes. Returns false, leaving the
/// model as it was, when the layer cannot be stored so: another op, a weight of another shape
/// or read elsewhere, codes other than 2-, 4- or 8-bit integers (3-bit codes travel in the 4-bit
/// container), or a block size the kernels do not take.
pub fn store_matmul_nbits(
    model: &mut Model,
    node: &str,
    weight: &str,
    prefix: &str,
    w: WeightCodes<'_>,
) -> Result<bool> {
    let (codes, bits) = match w.codes {
        CodeArray::Int2(c) => (c, 2),
        CodeArray::Int4(c) => (c, 4),
        CodeArray::Int8(c) => (c, 8),
        CodeArray::E4m3(_) => return Ok(false),
    };
    let view = GraphView::new(model.graph());
    let Some(position) = model.graph().node.iter().position(|n| n.name() == node) else {
        return Err(OnnxError::Graph(format!("no node '{node}'")));
    };
    let matmul = &model.graph().node[position];
    let readers = model.graph().node.iter().filter(|n| n.input.iter().any(|i| i == weight)).count();
    let float = view.initializer(weight).and_then(|t| DataType::from_onnx(t.data_type()));
    let (&[k, n], Some(float @ (DataType::F32 | DataType::F16))) = (codes.shape(), float) else {
        return Ok(false);
    };
    let Some(block) = nbits_block(k, w.group_size) else {
        return Ok(false);
    };
    if matmul.op_type() != "MatMul"
        || matmul.input.get(1).map(String::as_str) != Some(weight)
        || readers != 1
        || w.axis != 1
    {
        return Ok(false);
    }
    let blocks = k / block;
    let scales: Array2<f32> = match w.group_size {
        Some(_) => w.scales.clone().into_shape_with_order((n, blocks)).map_err(|e| OnnxError::Graph(e.to_string()))?,
        None => {
            let channel = w.scales.view().into_shape_with_order((n, 1)).map_err(|e| OnnxError::Graph(e.to_string()))?;
            channel.broadcast((n, blocks)).ok_or_else(|| OnnxError::Graph("per-channel scales".into()))?.to_owned()
        }
    };
    let zero = 1i16 << (bits - 1);
    // Row n of the blob is column n of the weight, K codes offset by the zero point.
    let mut stored = Vec::with_capacity(k * n);
    for column in codes.axis_iter(Axis(1)) {
        stored.extend(column.iter().map(|&q| (i16::from(q) + zero) as u8));
    }
    let blob = pack_unsigned(&stored, bits);
    let a = matmul.input[0].clone();
    let output = matmul.output.clone();
    take_initializer(model, weight)?;
    let (blob_name, scale_name) = (format!("{prefix}/nbits"), format!("{prefix}/scale"));
    let blob_tensor = tensor_from_codes(&blob_name, &[n, blocks, block * bits / 8], Codes::Uint8(&blob));
    let attrs = [
        Attr::Int("K", k as i64),
        Attr::Int("N", n as i64),
        Attr::Int("bits", bits as i64),
        Attr::Int("block_size", block as i64),
    ];
    let mut replacement = node_proto(node, "MatMulNBits", &[&a, &blob_name, &scale_name], output, &attrs);
    replacement.domain = Some(MS_DOMAIN.to_string());
    add_domain(model);
    let graph = model.graph_mut();
    graph.initializer.push(blob_tensor);
    graph.initializer.push(tensor_from_f32(&scale_name, &scales.into_dyn(), float));
    graph.node[position] = replacement;
    Ok(true)
}

/// Codes of `bits` bits (already unsigned) packed `8 / bits` to a byte, the first in the lowest
/// bits: the layout MatMulNBits reads along K.
fn pack_unsigned(values: &[u8], bits: usize) -> Vec<u8> {
    values
        .chunks(8 / bits)
        .map(|chunk| chunk.iter().enumerate().fold(0u8, |byte, (i, &v)| byte | (v << (i * bits))))
        .collect()
}

fn add_domain(model: &mut Model) {
    if !model.proto.opset_import.iter().any(|o| o.domain() == MS_DOMAIN) {
        model
            .proto
            .opset_import
            .push(pb::OperatorSetIdProto { domain: Some(MS_DOMAIN.to_string()), version: Some(MS_DOMAIN_VERSION) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_powers_of_two_that_divide_k() {
        assert_eq!(nbits_block(1152, None), Some(128));
        assert_eq!(nbits_block(320, None), Some(64));
        assert_eq!(nbits_block(24, None), None);
        assert_eq!(nbits_block(1152, Some(64)), Some(64));
        assert_eq!(nbits_block(1152, Some(48)), None);
        assert_eq!(nbits_block(1152, Some(8)), None);
        assert_eq!(nbits_block(100, Some(32)), None);
    }

    #[test]
    fn packing_puts_the_first_code_lowest() {
        assert_eq!(pack_unsigned(&[1, 2, 15, 0], 4), vec![0x21, 0x0f]);
        assert_eq!(pack_unsigned(&[1, 2, 3, 0], 2), vec![0b00_11_10_01]);
        assert_eq!(pack_unsigned(&[200, 7], 8), vec![200, 7]);
    }
}
