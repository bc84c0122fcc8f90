//! Plain data that flows between bitsearch's stages: what a quantizable layer is, the role the
//! graph analysis gave it, and what it costs. No heavy dependencies, so the solver and the
//! reports can read these without linking ONNX Runtime or protobuf.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod atomic;
mod layer;

pub use atomic::{sha256_file, write_atomically};
pub use layer::{Layer, LayerKind, MetricGroup, Role};
