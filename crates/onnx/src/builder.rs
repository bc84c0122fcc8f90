//! Building ONNX graphs in code: the tiny models tests make for themselves, and the rewrites
//! later stages apply. Values are referred to by name; each node's output is named after it.
//!
//! ```
//! use bitsearch_onnx::builder::{Attr, Dim, GraphBuilder};
//! use bitsearch_onnx::DataType;
//! let mut b = GraphBuilder::new("double");
//! let x = b.input("x", DataType::F32, &[Dim::sym("batch"), Dim::Fixed(3)]);
//! let two = b.initializer("two", ndarray::arr1(&[2.0f32]).into_dyn());
//! let y = b.node("mul", "Mul", &[&x, &two], &[]);
//! b.output(&y, DataType::F32, &[Dim::sym("batch"), Dim::Fixed(3)]);
//! let model = b.build();
//! assert_eq!(model.graph().node.len(), 1);
//! ```

use crate::model::Model;
use crate::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_shape_proto, type_proto,
};
use crate::tensor::{DataType, tensor_from_f32, tensor_from_i64};
use ndarray::ArrayD;

/// One dimension of a declared input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

impl Dim {
    pub fn sym(name: &str) -> Self {
        Self::Symbolic(name.to_string())
    }
}

/// A node attribute.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
    Str(&'static str, String),
}

/// Accumulates inputs, initializers and nodes, then becomes a [`Model`].
#[derive(Debug)]
pub struct GraphBuilder {
    graph: GraphProto,
    opset: i64,
}

/// ONNX Runtime 1.20+ supports it and it has every op bitsearch's fixtures use.
pub const DEFAULT_OPSET: i64 = 17;

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self { graph: GraphProto { name: Some(name.to_string()), ..Default::default() }, opset: DEFAULT_OPSET }
    }

    pub fn with_opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }

    pub fn input(&mut self, name: &str, dtype: DataType, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, dtype, dims));
        name.to_string()
    }

    pub fn output(&mut self, name: &str, dtype: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, dtype, dims));
    }

    /// An f32 constant (weight, bias, scale).
    pub fn initializer(&mut self, name: &str, values: ArrayD<f32>) -> String {
        self.initializer_typed(name, &values, DataType::F32)
    }

    pub fn initializer_typed(&mut self, name: &str, values: &ArrayD<f32>, dtype: DataType) -> String {
        self.graph.initializer.push(tensor_from_f32(name, values, dtype));
        name.to_string()
    }

    /// A 1-D int64 constant, as Reshape, Slice and Unsqueeze operands need.
    pub fn int64s(&mut self, name: &str, values: &[i64]) -> String {
        self.graph.initializer.push(tensor_from_i64(name, &[values.len()], values));
        name.to_string()
    }

    /// Adds a node with one output, named like the node, and returns that output's name.
    pub fn node(&mut self, name: &str, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        self.push(name, op, inputs, vec![name.to_string()], attrs);
        name.to_string()
    }

    /// Adds a node with `outputs` outputs, named `{name}:{k}`.
    pub fn node_multi(&mut self, name: &str, op: &str, inputs: &[&str], outputs: usize, attrs: &[Attr]) -> Vec<String> {
        let names: Vec<String> = (0..outputs).map(|k| format!("{name}:{k}")).collect();
        self.push(name, op, inputs, names.clone(), attrs);
        names
    }

    fn push(&mut self, name: &str, op: &str, inputs: &[&str], outputs: Vec<String>, attrs: &[Attr]) {
        self.graph.node.push(node_proto(name, op, inputs, outputs, attrs));
    }

    pub fn build(self) -> Model {
        Model::new(ModelProto {
            ir_version: Some(8),
            producer_name: Some("bitsearch".to_string()),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            graph: Some(self.graph),
            ..Default::default()
        })
    }
}

/// A node of `op` reading `inputs` and writing `outputs`.
pub(crate) fn node_proto(name: &str, op: &str, inputs: &[&str], outputs: Vec<String>, attrs: &[Attr]) -> NodeProto {
    NodeProto {
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs,
        attribute: attrs.iter().map(attribute).collect(),
        ..Default::default()
    }
}

/// The declaration of a tensor value: name, element type and dimensions.
pub fn value_info(name: &str, dtype: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v as i64),
                Dim::Symbolic(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.to_onnx()),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attribute(attr: &Attr) -> AttributeProto {
    let (name, mut a) = match attr {
        Attr::Int(n, v) => {
            (n, AttributeProto { i: Some(*v), r#type: Some(AttributeType::Int as i32), ..Default::default() })
        }
        Attr::Ints(n, v) => {
            (n, AttributeProto { ints: v.clone(), r#type: Some(AttributeType::Ints as i32), ..Default::default() })
        }
        Attr::Float(n, v) => {
            (n, AttributeProto { f: Some(*v), r#type: Some(AttributeType::Float as i32), ..Default::default() })
        }
        Attr::Str(n, v) => (
            n,
            AttributeProto {
                s: Some(v.clone().into_bytes()),
                r#type: Some(AttributeType::String as i32),
                ..Default::default()
            },
        ),
    };
    a.name = Some(name.to_string());
    a
}
