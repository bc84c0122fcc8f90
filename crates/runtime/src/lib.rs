//! The only bitsearch crate that talks to ONNX Runtime. It loads the shared library from a
//! path (never downloads one), picks the device, and wraps sessions so that chosen weights can
//! be replaced on every run without rebuilding the session — sensitivity analysis runs
//! thousands of probes against one session.
//!
//! ```no_run
//! use bitsearch_runtime::{Device, Session, SessionOptions};
//! let model = bitsearch_onnx::Model::load("model.onnx")?;
//! let options = SessionOptions { device: Device::Auto, ..Default::default() };
//! let mut session = Session::new(&model, &options)?;
//! let x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 4]));
//! let outputs = session.run(&[("x", x.view())], &[])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod device;
mod error;
mod library;
mod session;
mod shapes;
mod shared;

pub use device::{ActiveDevice, Device};
pub use error::{Result, RuntimeError};
pub use library::{init, library_path};
pub use session::{InputSpec, Session, SessionOptions, declared_inputs};
pub use shapes::{MAX_INPUT_BYTES, input_bytes, layers_with_costs, measure_shapes};
