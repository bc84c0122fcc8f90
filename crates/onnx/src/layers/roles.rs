//! Roles from wiring alone. Each value carries the set of graph inputs it depends on (the noisy
//! sample, a text sequence, vector conditions such as timesteps); attention is found as an
//! activation product feeding a Softmax (scores) or consuming one (values); projections are
//! classified by which attention operand they reach through shape-only ops.

use super::site;
use crate::graph::{GraphView, declared_shape};
use bitsearch_types::{LayerKind, Role};
use std::collections::{HashMap, HashSet};

/// Bit set of the graph inputs a value depends on.
type Deps = u8;
const SAMPLE: Deps = 1;
const SEQUENCE: Deps = 2;
const VECTOR: Deps = 4;

/// Ops that move or rescale data without mixing it with other activations.
const TRANSPARENT: [&str; 15] = [
    "Reshape",
    "Transpose",
    "Split",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Cast",
    "Gather",
    "Expand",
    "Mul",
    "Div",
    "Add",
    "Sub",
];

/// Element-wise ops that may sit between the two linears of a feed-forward block (GELU as Erf
/// arithmetic, SiLU as Sigmoid·x, GEGLU as a split and a product).
const ACTIVATION: [&str; 22] = [
    "Gelu",
    "Erf",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Mish",
    "Elu",
    "Selu",
    "Mul",
    "Add",
    "Div",
    "Sub",
    "Pow",
    "Sqrt",
    "Split",
    "Slice",
    "Identity",
    "Cast",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operand {
    Query,
    Key,
    Value,
}

struct Attention {
    /// Node index of the scores product (QK^T), if this product is one.
    scores: HashSet<usize>,
    /// Node index of the values product (AV) → its V operand slot.
    values: HashMap<usize, usize>,
}

pub(crate) fn infer(view: &GraphView<'_>) -> HashMap<usize, Role> {
    let deps = dependencies(view);
    let dep = |value: &str| deps.get(value).copied().unwrap_or(0);
    let attention = find_attention(view);
    let is_cross = |node: usize, slot: usize| {
        let d = dep(&view.node(node).input[slot]);
        d & SEQUENCE != 0 && d & SAMPLE == 0
    };
    let sites: HashMap<usize, super::Site> =
        (0..view.nodes().len()).filter_map(|i| site(view, i).ok().flatten().map(|s| (i, s))).collect();
    let feed_forward = feed_forward_layers(view, &sites);

    let mut roles = HashMap::new();
    for (&i, s) in &sites {
        let node = view.node(i);
        let output = node.output.first().map(String::as_str).unwrap_or("");
        let role = if s.kind == LayerKind::ActMatMul {
            if attention.scores.contains(&i) {
                if is_cross(i, 1) { Role::CrossAttnScores } else { Role::AttnScores }
            } else if let Some(&v) = attention.values.get(&i) {
                if is_cross(i, v) { Role::CrossAttnValues } else { Role::AttnValues }
            } else {
                Role::ActMatMul
            }
        } else {
            let input_deps = dep(&s.inputs[0]);
            // Which attention operands this projection feeds, and whether that attention is cross.
            let mut reached = Vec::new();
            for (n, slot) in reach_forward(view, output) {
                if attention.scores.contains(&n) {
                    reached.push((if slot == 0 { Operand::Query } else { Operand::Key }, is_cross(n, 1)));
                } else if attention.values.get(&n) == Some(&slot) {
                    reached.push((Operand::Value, is_cross(n, slot)));
                }
            }
            let cross = reached.iter().any(|&(_, c)| c);
            let only = |op| !reached.is_empty() && reached.iter().all(|&(o, _)| o == op);
            let origin = reach_backward(view, &s.inputs[0]);
            if input_deps & SAMPLE == 0 {
                match (only(Operand::Key), only(Operand::Value), input_deps & SEQUENCE != 0) {
                    (true, _, true) => Role::CrossAttnK,
                    (_, true, true) => Role::CrossAttnV,
                    (false, false, true) if !reached.is_empty() => Role::CrossAttnK,
                    _ => Role::Embedding,
                }
            } else if only(Operand::Query) {
                if cross { Role::CrossAttnQ } else { Role::AttnQ }
            } else if only(Operand::Key) {
                Role::AttnK
            } else if only(Operand::Value) {
                Role::AttnV
            } else if !reached.is_empty() {
                Role::AttnQkv
            } else if let Some((o, v)) = origin.and_then(|o| attention.values.get(&o).map(|&v| (o, v))) {
                if is_cross(o, v) { Role::CrossAttnOut } else { Role::AttnOut }
            } else if feed_forward.contains(&i) {
                Role::FeedForward
            } else if matches!(node.op_type(), "Conv" | "ConvTranspose") {
                Role::Conv
            } else {
                Role::Linear
            }
        };
        roles.insert(i, role);
    }
    roles
}

/// Which graph inputs each value depends on. The input with the highest rank is the noisy
/// sample; other rank-3 inputs are token sequences (text-encoder output); the rest are vector
/// conditions (timestep, sigma, class or difficulty labels, pooled embeddings).
fn dependencies<'g>(view: &GraphView<'g>) -> HashMap<&'g str, Deps> {
    let inputs: Vec<_> = view.fed_inputs().collect();
    let rank = |v: &crate::pb::ValueInfoProto| declared_shape(v).map_or(0, |s| s.len());
    let known_elements = |v: &crate::pb::ValueInfoProto| {
        // Saturating: a declared shape is not trusted to fit, and only the ranking matters.
        declared_shape(v).map_or(0, |s| s.iter().fold(1usize, |n, d| n.saturating_mul(d.unwrap_or(1))))
    };
    let sample = inputs.iter().max_by_key(|v| (rank(v), known_elements(v))).map(|v| v.name());
    let mut deps: HashMap<&str, Deps> = inputs
        .iter()
        .map(|v| {
            let class = if Some(v.name()) == sample {
                SAMPLE
            } else if rank(v) == 3 {
                SEQUENCE
            } else {
                VECTOR
            };
            (v.name(), class)
        })
        .collect();
    for node in view.nodes() {
        let d = node
            .input
            .iter()
            .filter(|i| !view.is_static(i))
            .fold(0, |acc, i| acc | deps.get(i.as_str()).copied().unwrap_or(0));
        for out in &node.output {
            if !view.is_static(out) {
                deps.insert(out.as_str(), d);
            }
        }
    }
    deps
}

fn find_attention(view: &GraphView<'_>) -> Attention {
    let mut attention = Attention { scores: HashSet::new(), values: HashMap::new() };
    for (i, node) in view.nodes().iter().enumerate() {
        let is_product = matches!(node.op_type(), "MatMul" | "Einsum")
            && node.input.len() == 2
            && node.input.iter().all(|v| !view.is_static(v));
        if !is_product {
            continue;
        }
        let output = node.output.first().map(String::as_str).unwrap_or("");
        if reach_forward(view, output).iter().any(|&(n, _)| view.node(n).op_type() == "Softmax") {
            attention.scores.insert(i);
        }
        for slot in 0..2 {
            if reach_backward(view, &node.input[slot]).is_some_and(|p| view.node(p).op_type() == "Softmax") {
                attention.values.insert(i, 1 - slot);
            }
        }
    }
    attention
}

fn is_transparent(view: &GraphView<'_>, node: usize, through: &str) -> bool {
    let n = view.node(node);
    TRANSPARENT.contains(&n.op_type()) && n.input.iter().all(|i| i == through || view.is_static(i))
}

/// The first non-transparent consumers of `value`, with the input slot they read it through.
fn reach_forward(view: &GraphView<'_>, value: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut stack = vec![value.to_string()];
    let mut seen = HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v.clone()) {
            continue;
        }
        for &(n, slot) in view.consumers(&v) {
            if is_transparent(view, n, &v) {
                stack.extend(view.node(n).output.iter().cloned());
            } else {
                found.push((n, slot));
            }
        }
    }
    found
}

/// The first non-transparent node that `value` comes from; None in a cycle of transparent
/// nodes, which a valid (topologically ordered) graph never has.
fn reach_backward(view: &GraphView<'_>, value: &str) -> Option<usize> {
    let mut value = value.to_string();
    // Each step passes one node: more steps than nodes means the walk went round.
    for _ in 0..=view.nodes().len() {
        let p = view.producer(&value)?;
        let mut dynamic = view.node(p).input.iter().filter(|i| !view.is_static(i));
        match (dynamic.next(), dynamic.next()) {
            (Some(only), None) if is_transparent(view, p, only) => value = only.clone(),
            _ => return Some(p),
        }
    }
    None
}

/// Linear-like layers (Gemm, MatMul, 1×1 Conv) joined to another linear-like layer by
/// element-wise activation ops only: the two halves of a feed-forward block.
fn feed_forward_layers(view: &GraphView<'_>, sites: &HashMap<usize, super::Site>) -> HashSet<usize> {
    let linear_like = |i: usize| {
        sites.get(&i).is_some_and(|s| {
            s.kind == LayerKind::Weight
                && match view.node(i).op_type() {
                    "Gemm" | "MatMul" => true,
                    "Conv" => s.weight_shape.iter().skip(2).all(|&k| k == 1),
                    _ => false,
                }
        })
    };
    let mut marked = HashSet::new();
    for first in (0..view.nodes().len()).filter(|&i| linear_like(i)) {
        let mut region: HashSet<&str> = view.node(first).output.iter().map(String::as_str).collect();
        for n in first + 1..view.nodes().len() {
            let node = view.node(n);
            let mut dynamic = node.input.iter().filter(|i| !view.is_static(i)).peekable();
            if ACTIVATION.contains(&node.op_type())
                && dynamic.peek().is_some()
                && dynamic.all(|i| region.contains(i.as_str()))
            {
                region.extend(node.output.iter().map(String::as_str));
            }
        }
        for value in &region {
            for &(n, slot) in view.consumers(value) {
                if slot == 0 && n != first && linear_like(n) {
                    marked.insert(first);
                    marked.insert(n);
                }
            }
        }
    }
    marked
}
