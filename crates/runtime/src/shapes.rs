//! Measuring activation shapes by running the model once: exact for every op ONNX Runtime
//! supports, where a static shape inference would need a rule per op.

use crate::device::Device;
use crate::error::{Result, RuntimeError};
use crate::session::{InputSpec, Session, SessionOptions, declared_inputs};
use bitsearch_onnx::{Model, discover_layers, fill_macs, rewrite};
use bitsearch_types::{Component, Layer};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

/// Most bytes of float32 inputs bitsearch makes for one network run: a diffusion UNet's take
/// under a megabyte per item, and ONNX Runtime's activations are many times its inputs, so
/// past this the run would not fit in memory.
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

/// The bytes of a float32 tensor of `shape`, None past [`MAX_INPUT_BYTES`].
pub fn input_bytes(shape: &[usize]) -> Option<u64> {
    shape.iter().try_fold(4u64, |n, &d| n.checked_mul(d as u64)).filter(|&b| b <= MAX_INPUT_BYTES)
}

/// Runs `model` once on CPU and returns the shape of every value in `values`. Symbolic input
/// dimensions take their size from `dims` (by dimension name), else 1. Float inputs are filled
/// with ones (a zero sigma or timestep can turn log-based embeddings into NaN), integer inputs
/// with zeros. Inputs past [`MAX_INPUT_BYTES`] together are refused, naming the input and its
/// dimensions, before anything is allocated.
pub fn measure_shapes(
    model: &Model,
    dims: &HashMap<String, usize>,
    values: &[String],
) -> Result<HashMap<String, Vec<usize>>> {
    let inputs = declared_inputs(model)?;
    let shapes: Vec<Vec<usize>> = inputs
        .iter()
        .map(|spec| {
            spec.shape
                .iter()
                .zip(&spec.symbols)
                .map(|(d, symbol)| d.or_else(|| symbol.as_ref().and_then(|s| dims.get(s).copied())).unwrap_or(1))
                .collect()
        })
        .collect();
    let mut total = 0u64;
    for (spec, shape) in inputs.iter().zip(&shapes) {
        total = input_bytes(shape)
            .and_then(|b| total.checked_add(b))
            .filter(|&t| t <= MAX_INPUT_BYTES)
            .ok_or_else(|| too_large(spec, shape))?;
    }
    let mut probe = model.clone();
    let carriers = rewrite::add_shape_outputs(&mut probe, values);
    let mut session = Session::new(&probe, &SessionOptions { device: Device::Cpu, ..Default::default() })?;
    let arrays: Vec<(&str, ArrayD<f32>)> = inputs
        .iter()
        .zip(&shapes)
        .map(|(spec, shape)| {
            let fill = if spec.dtype.is_float() { 1.0 } else { 0.0 };
            (spec.name.as_str(), ArrayD::from_elem(IxDyn(shape), fill))
        })
        .collect();
    let feeds: Vec<(&str, _)> = arrays.iter().map(|(n, a)| (*n, a.view())).collect();
    let outputs = session.run(&feeds, &[])?;
    let by_name: HashMap<&str, &ArrayD<f32>> = session.outputs().iter().map(String::as_str).zip(&outputs).collect();
    // Shapes come back as float: exact, since dimensions stay far below 2^24.
    let shape = |carrier: &String| by_name.get(carrier.as_str()).map(|s| s.iter().map(|&d| d as usize).collect());
    Ok(values.iter().zip(&carriers).filter_map(|(value, carrier)| Some((value.clone(), shape(carrier)?))).collect())
}

/// The refusal of an input of `shape` that takes the measuring run past its bound.
fn too_large(spec: &InputSpec, shape: &[usize]) -> RuntimeError {
    let described: Vec<String> = shape
        .iter()
        .zip(&spec.symbols)
        .map(|(size, symbol)| symbol.as_ref().map_or_else(|| size.to_string(), |s| format!("{s}={size}")))
        .collect();
    let named: Vec<String> = spec.symbols.iter().flatten().map(|s| format!("--dim {s}")).collect();
    let fix = if named.is_empty() {
        "the model declares these sizes".to_string()
    } else {
        format!("lower {}", named.join(" or "))
    };
    RuntimeError::Input {
        name: spec.name.clone(),
        message: format!(
            "[{}] takes the inputs of one run past {MAX_INPUT_BYTES} bytes of float32; {fix}",
            described.join(", ")
        ),
    }
}

/// Discovers the layers of `model`, the `component` of a pipeline, and fills their MACs from
/// shapes measured at the input size `dims` gives (see [`measure_shapes`]).
pub fn layers_with_costs(model: &Model, component: Component, dims: &HashMap<String, usize>) -> Result<Vec<Layer>> {
    let mut layers = discover_layers(model, component)?;
    let mut values: Vec<String> = layers.iter().flat_map(|l| l.inputs.iter().chain([&l.output]).cloned()).collect();
    values.sort();
    values.dedup();
    let shapes = measure_shapes(model, dims, &values)?;
    fill_macs(model, &mut layers, &shapes)?;
    Ok(layers)
}
