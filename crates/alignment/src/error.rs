//! Errors of alignment scoring; each names the file or prompt at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AlignmentError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A prompt the classifier's vocabulary cannot describe.
    #[error("prompt {prompt:?}: {message}")]
    Prompt { prompt: String, message: String },
    #[error("{0}")]
    Images(String),
    #[error(transparent)]
    Pipeline(#[from] bitsearch_pipeline::PipelineError),
    #[error(transparent)]
    Runtime(#[from] bitsearch_runtime::RuntimeError),
    #[error(transparent)]
    Onnx(#[from] bitsearch_onnx::OnnxError),
}

impl AlignmentError {
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::File { path: path.into(), message: message.into() }
    }
}
