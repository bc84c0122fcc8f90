//! Layer discovery: every quantizable point of a graph, one small handler per op family, and
//! its role from [`roles`]. Costs that need activation shapes are filled by [`fill_macs`] once
//! a runtime has measured them.

mod macs;
mod roles;

use crate::error::{OnnxError, Result};
use crate::graph::{GraphView, NodeAttrs};
use crate::model::Model;
use crate::tensor::dims;
use bitsearch_types::{Component, Layer, LayerKind};

pub use macs::fill_macs;

/// Lists the quantizable layers of `model`, the `component` of a pipeline, in graph order, with
/// roles and parameter counts. MACs stay `None` until [`fill_macs`] is given measured shapes.
pub fn discover_layers(model: &Model, component: Component) -> Result<Vec<Layer>> {
    let view = GraphView::new(model.graph());
    let roles = roles::infer(&view);
    let mut layers = Vec::new();
    for (i, node) in view.nodes().iter().enumerate() {
        let Some(site) = site(&view, i)? else { continue };
        let role = roles
            .get(&i)
            .copied()
            .ok_or_else(|| OnnxError::Graph(format!("no role for node {}", view.node_name(i))))?;
        layers.push(Layer {
            component,
            name: view.node_name(i).to_string(),
            op: node.op_type().to_string(),
            kind: site.kind,
            role,
            // An empty product is 1: activation products must count no parameters.
            params: if site.weight.is_some() { site.weight_shape.iter().product::<usize>() as u64 } else { 0 },
            weight: site.weight,
            weight_shape: site.weight_shape,
            channel_axis: site.channel_axis,
            macs: None,
            inputs: site.inputs,
            output: node.output.first().cloned().unwrap_or_default(),
        });
    }
    Ok(layers)
}

/// What makes a node quantizable, before roles are known.
pub(crate) struct Site {
    pub kind: LayerKind,
    pub weight: Option<String>,
    pub weight_shape: Vec<usize>,
    pub channel_axis: Option<usize>,
    pub inputs: Vec<String>,
}

/// The handler for node `i`'s op family, or None when the node is not a quantizable point.
pub(crate) fn site(view: &GraphView<'_>, i: usize) -> Result<Option<Site>> {
    let node = view.node(i);
    let input = |k: usize| node.input.get(k).map(String::as_str).unwrap_or("");
    let weight_site = |channel_axis: usize| -> Result<Option<Site>> {
        let Some(w) = view.initializer(input(1)).filter(|_| view.is_static(input(1))) else { return Ok(None) };
        if view.is_static(input(0)) {
            return Ok(None);
        }
        Ok(Some(Site {
            kind: LayerKind::Weight,
            weight: Some(input(1).to_string()),
            weight_shape: dims(w)?,
            channel_axis: Some(channel_axis),
            inputs: vec![input(0).to_string()],
        }))
    };
    match node.op_type() {
        // Conv weights are [C_out, C_in/g, k...]; ConvTranspose weights are [C_in, C_out/g, k...].
        "Conv" => weight_site(0),
        "ConvTranspose" => weight_site(1),
        "Gemm" => weight_site(if node.attr_int("transB").unwrap_or(0) == 1 { 0 } else { 1 }),
        "MatMul" | "Einsum" if node.input.len() == 2 && !view.is_static(input(0)) && !view.is_static(input(1)) => {
            Ok(Some(Site {
                kind: LayerKind::ActMatMul,
                weight: None,
                weight_shape: vec![],
                channel_axis: None,
                inputs: node.input.clone(),
            }))
        }
        "MatMul" => {
            let rank = view.initializer(input(1)).map_or(0, |w| w.dims.len());
            if rank < 2 { Ok(None) } else { weight_site(rank - 1) }
        }
        _ => Ok(None),
    }
}
