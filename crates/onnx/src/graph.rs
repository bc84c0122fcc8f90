//! A read-only view of a graph with the indexes analyses need: who produces and who consumes
//! each value, which values are constant, and typed attribute access.

use crate::pb::{GraphProto, NodeProto, TensorProto, ValueInfoProto, attribute_proto::AttributeType, type_proto};
use std::collections::{HashMap, HashSet};

/// Indexes over one graph. Nodes are addressed by their position in `graph.node`, which the
/// ONNX spec requires to be a topological order.
#[derive(Debug)]
pub struct GraphView<'g> {
    pub graph: &'g GraphProto,
    producer: HashMap<&'g str, usize>,
    consumers: HashMap<&'g str, Vec<(usize, usize)>>,
    initializers: HashMap<&'g str, &'g TensorProto>,
    static_values: HashSet<&'g str>,
    names: Vec<String>,
}

/// Ops whose output is known before the network runs once their inputs are (shape arithmetic).
const SHAPE_SOURCES: [&str; 2] = ["Shape", "Size"];

impl<'g> GraphView<'g> {
    pub fn new(graph: &'g GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(out.as_str(), i);
            }
            for (slot, input) in node.input.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                consumers.entry(input.as_str()).or_default().push((i, slot));
            }
        }
        let initializers: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name(), t)).collect();
        let fed: HashSet<&str> = graph.input.iter().map(|v| v.name()).collect();
        // An initializer that is also a graph input can be overridden at run time: not constant.
        let mut static_values: HashSet<&str> =
            initializers.keys().copied().filter(|name| !fed.contains(name)).collect();
        for node in &graph.node {
            let inputs_static = node.input.iter().all(|i| i.is_empty() || static_values.contains(i.as_str()));
            if SHAPE_SOURCES.contains(&node.op_type()) || inputs_static {
                static_values.extend(node.output.iter().map(String::as_str));
            }
        }
        Self { graph, producer, consumers, initializers, static_values, names: unique_names(graph) }
    }

    pub fn nodes(&self) -> &'g [NodeProto] {
        &self.graph.node
    }

    pub fn node(&self, i: usize) -> &'g NodeProto {
        &self.graph.node[i]
    }

    /// A name for node `i` that is unique in the graph even where the file left names empty.
    pub fn node_name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn producer(&self, value: &str) -> Option<usize> {
        self.producer.get(value).copied()
    }

    /// Every (node, input slot) reading `value`.
    pub fn consumers(&self, value: &str) -> &[(usize, usize)] {
        self.consumers.get(value).map_or(&[], Vec::as_slice)
    }

    pub fn initializer(&self, name: &str) -> Option<&'g TensorProto> {
        self.initializers.get(name).copied()
    }

    /// True for values fixed before the network runs: weights, constants, and shape arithmetic.
    pub fn is_static(&self, value: &str) -> bool {
        value.is_empty() || self.static_values.contains(value)
    }

    /// Graph inputs that the caller feeds (initializers listed as inputs are left out).
    pub fn fed_inputs(&self) -> impl Iterator<Item = &'g ValueInfoProto> + '_ {
        self.graph.input.iter().filter(|v| !self.initializers.contains_key(v.name()))
    }
}

/// Why the graph's nodes cannot run in an order where each follows the nodes it reads (a node
/// reading its own output, or a longer cycle), or None. Kahn's algorithm: every analysis walks
/// producers and consumers, and on a cycle such a walk never ends.
pub(crate) fn cycle(graph: &GraphProto) -> Option<String> {
    let nodes = &graph.node;
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        producer.extend(node.output.iter().filter(|o| !o.is_empty()).map(|o| (o.as_str(), i)));
    }
    let mut sources: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        let mut from: Vec<usize> = node.input.iter().filter_map(|v| producer.get(v.as_str()).copied()).collect();
        from.sort_unstable();
        from.dedup();
        from.iter().for_each(|&s| readers[s].push(i));
        sources.push(from);
    }
    let mut waiting: Vec<usize> = sources.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    while let Some(done) = ready.pop() {
        for &r in &readers[done] {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.push(r);
            }
        }
    }
    // A node left waiting reads another one left waiting; following such reads for as many
    // steps as there are nodes ends on a cycle.
    let mut at = waiting.iter().position(|&w| w > 0)?;
    for _ in 0..nodes.len() {
        at = sources[at].iter().copied().find(|&s| waiting[s] > 0)?;
    }
    let names = unique_names(graph);
    let node = &nodes[at];
    Some(match node.input.iter().find(|v| producer.get(v.as_str()) == Some(&at)) {
        Some(own) => format!("node '{}' ({}) reads its own output '{own}'", names[at], node.op_type()),
        None => format!(
            "node '{}' ({}) lies on a cycle: it reads its own output through other nodes",
            names[at],
            node.op_type()
        ),
    })
}

/// The declared dimensions of a tensor value, if it declares a shape.
fn declared_dims(value: &ValueInfoProto) -> Option<&[crate::pb::tensor_shape_proto::Dimension]> {
    let type_proto::Value::TensorType(tensor) = value.r#type.as_ref()?.value.as_ref()? else { return None };
    Some(&tensor.shape.as_ref()?.dim)
}

/// Rank and dimensions of a value declared in the graph (None for symbolic dimensions).
pub fn declared_shape(value: &ValueInfoProto) -> Option<Vec<Option<usize>>> {
    Some(
        declared_dims(value)?
            .iter()
            .map(|d| match d.value {
                Some(crate::pb::tensor_shape_proto::dimension::Value::DimValue(v)) => usize::try_from(v).ok(),
                _ => None,
            })
            .collect(),
    )
}

/// The names of a value's symbolic dimensions ("batch"), None for fixed or unnamed ones.
pub fn declared_symbols(value: &ValueInfoProto) -> Vec<Option<String>> {
    declared_dims(value).map_or_else(Vec::new, |dims| {
        dims.iter()
            .map(|d| match &d.value {
                Some(crate::pb::tensor_shape_proto::dimension::Value::DimParam(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    })
}

/// The element type code declared for a value (ONNX `elem_type`).
pub fn declared_elem_type(value: &ValueInfoProto) -> Option<i32> {
    match value.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(tensor) => tensor.elem_type,
        _ => None,
    }
}

/// Typed attribute access.
pub trait NodeAttrs {
    fn attr_int(&self, name: &str) -> Option<i64>;
    fn attr_ints(&self, name: &str) -> Option<&[i64]>;
    fn attr_str(&self, name: &str) -> Option<&str>;
}

impl NodeAttrs for NodeProto {
    fn attr_int(&self, name: &str) -> Option<i64> {
        self.attribute.iter().find(|a| a.name() == name && a.r#type() == AttributeType::Int).map(|a| a.i())
    }

    fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        self.attribute.iter().find(|a| a.name() == name && a.r#type() == AttributeType::Ints).map(|a| a.ints.as_slice())
    }

    fn attr_str(&self, name: &str) -> Option<&str> {
        self.attribute
            .iter()
            .find(|a| a.name() == name && a.r#type() == AttributeType::String)
            .and_then(|a| std::str::from_utf8(a.s()).ok())
    }
}

fn unique_names(graph: &GraphProto) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    graph
        .node
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let base = if node.name().is_empty() { format!("{}_{i}", node.op_type()) } else { node.name().to_string() };
            let count = seen.entry(base.clone()).or_insert(0);
            *count += 1;
            if *count == 1 { base } else { format!("{base}#{}", *count) }
        })
        .collect()
}
