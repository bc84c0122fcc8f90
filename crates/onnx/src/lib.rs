//! The ONNX stage of bitsearch: read and write ONNX protobuf models (weights in external data
//! files included), look at a graph through typed helpers, build small graphs, and discover
//! the quantizable layers with the role the wiring gives them.
//!
//! Protobuf types stay in [`pb`] and [`Model`]; the rest of bitsearch sees layers and arrays.
//!
//! ```no_run
//! let model = bitsearch_onnx::Model::load("unet.onnx")?;
//! for layer in bitsearch_onnx::discover_layers(&model)? {
//!     println!("{} {} {}", layer.name, layer.op, layer.role);
//! }
//! # Ok::<(), bitsearch_onnx::OnnxError>(())
//! ```

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod builder;
mod error;
mod graph;
mod layers;
mod model;
#[allow(clippy::all, clippy::unwrap_used)]
pub mod pb;
mod tensor;

pub use builder::GraphBuilder;
pub use error::{OnnxError, Result};
pub use graph::{GraphView, NodeAttrs, declared_elem_type, declared_shape, declared_symbols};
pub use layers::{discover_layers, fill_macs};
pub use model::{ExternalData, Model};
pub use tensor::{DataType, tensor_from_f32, tensor_to_f32};
