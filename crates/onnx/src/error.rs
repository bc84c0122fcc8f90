//! Errors of the ONNX stage. Each names the file or tensor it is about, so a message reads
//! like a trail a user can follow.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not an ONNX model: {reason}", path.display())]
    NotOnnx { path: PathBuf, reason: String },
    #[error("{}: external data of tensor '{tensor}': {reason}", path.display())]
    ExternalData { path: PathBuf, tensor: String, reason: String },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },
    #[error("graph: {0}")]
    Graph(String),
}

pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
