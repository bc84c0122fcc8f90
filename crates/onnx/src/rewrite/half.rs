//! Float16 storage of a weight: the values in half the bytes, cast back at session start.

use super::lowbit::take_initializer;
use crate::builder::{Attr, node_proto};
use crate::error::{OnnxError, Result};
use crate::model::Model;
use crate::tensor::{DataType, tensor_from_f32};
use ndarray::ArrayD;

/// Replaces the initializer `name` with its values in float16 (`{prefix}/half`) and a Cast
/// back to its type at the front of the graph: half the bytes on disk, and ONNX Runtime folds
/// the Cast at session start, so the layer runs at float speed.
pub fn store_half(model: &mut Model, name: &str, prefix: &str, values: &ArrayD<f32>) -> Result<()> {
    let original = take_initializer(model, name)?;
    if values.shape() != original.dims.iter().map(|&d| d as usize).collect::<Vec<_>>().as_slice() {
        return Err(OnnxError::Graph(format!("weight '{name}': values of shape {:?} do not fit", values.shape())));
    }
    let float = DataType::from_onnx(original.data_type()).unwrap_or(DataType::F32);
    let half_name = format!("{prefix}/half");
    let cast = node_proto(
        &format!("{prefix}/cast"),
        "Cast",
        &[&half_name],
        vec![name.to_string()],
        &[Attr::Int("to", float.to_onnx() as i64)],
    );
    let graph = model.graph_mut();
    graph.initializer.push(tensor_from_f32(&half_name, values, DataType::F16));
    graph.node.insert(0, cast);
    Ok(())
}
