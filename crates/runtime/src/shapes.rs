//! Measuring activation shapes by running the model once: exact for every op ONNX Runtime
//! supports, where a static shape inference would need a rule per op.

use crate::device::Device;
use crate::error::Result;
use crate::session::{Session, SessionOptions};
use bitsearch_onnx::{Model, discover_layers, fill_macs, rewrite};
use bitsearch_types::{Component, Layer};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

/// Runs `model` once on CPU and returns the shape of every value in `values`. Symbolic input
/// dimensions take their size from `dims` (by dimension name), else 1. Float inputs are filled
/// with ones (a zero sigma or timestep can turn log-based embeddings into NaN), integer inputs
/// with zeros.
pub fn measure_shapes(
    model: &Model,
    dims: &HashMap<String, usize>,
    values: &[String],
) -> Result<HashMap<String, Vec<usize>>> {
    let mut probe = model.clone();
    let carriers = rewrite::add_shape_outputs(&mut probe, values);
    let mut session = Session::new(&probe, &SessionOptions { device: Device::Cpu, ..Default::default() })?;
    let arrays: Vec<(String, ArrayD<f32>)> = session
        .inputs()
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .zip(&spec.symbols)
                .map(|(d, symbol)| d.or_else(|| symbol.as_ref().and_then(|s| dims.get(s).copied())).unwrap_or(1))
                .collect();
            let fill = if spec.dtype.is_float() { 1.0 } else { 0.0 };
            (spec.name.clone(), ArrayD::from_elem(IxDyn(&shape), fill))
        })
        .collect();
    let feeds: Vec<(&str, _)> = arrays.iter().map(|(n, a)| (n.as_str(), a.view())).collect();
    let outputs = session.run(&feeds, &[])?;
    let by_name: HashMap<&str, &ArrayD<f32>> = session.outputs().iter().map(String::as_str).zip(&outputs).collect();
    // Shapes come back as float: exact, since dimensions stay far below 2^24.
    let shape = |carrier: &String| by_name.get(carrier.as_str()).map(|s| s.iter().map(|&d| d as usize).collect());
    Ok(values.iter().zip(&carriers).filter_map(|(value, carrier)| Some((value.clone(), shape(carrier)?))).collect())
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
