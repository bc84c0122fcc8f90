//! Errors of the pipelines. Messages name the file or input at fault and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A file of a model folder is missing, unreadable or malformed.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// The request does not fit the model (missing condition, bad shape, unknown input).
    #[error("{0}")]
    Request(String),
    /// A field of a workload spec is wrong: names the field and what was expected.
    #[error("{field}: {message}")]
    Spec { field: String, message: String },
    #[error(transparent)]
    Sample(#[from] crate::sampler::SampleError),
    #[error(transparent)]
    Runtime(#[from] bitsearch_runtime::RuntimeError),
    #[error(transparent)]
    Onnx(#[from] bitsearch_onnx::OnnxError),
}

impl PipelineError {
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::File { path: path.into(), message: message.into() }
    }

    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Spec { field: field.into(), message: message.into() }
    }
}

impl From<bitsearch_types::generation::SpecError> for PipelineError {
    fn from(e: bitsearch_types::generation::SpecError) -> Self {
        Self::Spec { field: e.field, message: e.message }
    }
}
