//! Errors of the sensitivity stage; each names the file, field or layer it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SensitivityError {
    /// A configuration value is wrong: names the field and what was expected.
    #[error("{field}: {message}")]
    Config { field: String, message: String },
    /// A results file (journal or Parquet table) cannot be read, written or used.
    #[error("{}: {message}", path.display())]
    Table { path: PathBuf, message: String },
    #[error(transparent)]
    Record(#[from] bitsearch_records::RecordError),
    #[error(transparent)]
    Onnx(#[from] bitsearch_onnx::OnnxError),
    #[error(transparent)]
    Runtime(#[from] bitsearch_runtime::RuntimeError),
    #[error(transparent)]
    Pipeline(#[from] bitsearch_pipeline::PipelineError),
    #[error(transparent)]
    Apply(#[from] bitsearch_quant::ApplyError),
    /// The thread quantizing a window's weights ended before the window's last weight.
    #[error("the weight quantizer thread stopped early (it panicked)")]
    QuantizerStopped,
}

impl SensitivityError {
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config { field: field.into(), message: message.into() }
    }

    pub(crate) fn table(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Table { path: path.into(), message: message.into() }
    }
}

pub type Result<T, E = SensitivityError> = std::result::Result<T, E>;
