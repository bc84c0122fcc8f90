//! Errors of the report stage.

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Record(#[from] bitsearch_records::RecordError),
    /// A figure could not be drawn or written.
    #[error("{figure}: {message}")]
    Figure { figure: String, message: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

impl ReportError {
    pub(crate) fn figure(figure: &str, e: impl std::fmt::Display) -> Self {
        Self::Figure { figure: figure.to_string(), message: e.to_string() }
    }

    pub(crate) fn file(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::File { path: path.display().to_string(), message: e.to_string() }
    }
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;
