//! Runtime errors: the library could not be found or loaded, a session could not be built,
//! or inputs did not match what the model declares.

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library: {0}")]
    Library(String),
    #[error("{0}")]
    Device(String),
    #[error("cannot create an ONNX Runtime session for {model}: {message}")]
    Session { model: String, message: String },
    #[error("input '{name}': {message}")]
    Input { name: String, message: String },
    #[error("ONNX Runtime failed while running {model}: {message}")]
    Run { model: String, message: String },
    #[error(transparent)]
    Onnx(#[from] bitsearch_onnx::OnnxError),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
