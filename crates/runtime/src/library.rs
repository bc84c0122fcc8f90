//! Finding and loading the ONNX Runtime shared library. `make setup` unpacks it from the PyPI
//! wheel into `.local/onnxruntime/lib/`; a user can point anywhere with `ORT_DYLIB_PATH`.

use crate::error::{Result, RuntimeError};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where `make setup` puts the library, relative to the project root.
const PROJECT_LOCAL: &str = ".local/onnxruntime/lib/libonnxruntime.so";

static ENVIRONMENT: OnceLock<std::result::Result<(PathBuf, ort::environment::Environment), String>> = OnceLock::new();

/// The library path to use: `ORT_DYLIB_PATH`, else the project-local copy found from the
/// current directory or the executable's folder upwards.
pub fn library_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(RuntimeError::Library(format!("ORT_DYLIB_PATH={} is not a file", path.display())))
        };
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    starts
        .iter()
        .flatten()
        .flat_map(|start| start.ancestors().map(|dir| dir.join(PROJECT_LOCAL)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            RuntimeError::Library(format!(
                "not found: set ORT_DYLIB_PATH to libonnxruntime.so, or run `make setup` to install it into {PROJECT_LOCAL}"
            ))
        })
}

/// Loads the library once per process and returns the environment sessions are created in.
pub fn init() -> Result<&'static ort::environment::Environment> {
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        let env = load(&path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        log::debug!("ONNX Runtime loaded from {}", path.display());
        Ok((path, env))
    });
    match loaded {
        Ok((_, env)) => Ok(env),
        Err(message) => Err(RuntimeError::Library(message.clone())),
    }
}

fn load(path: &Path) -> std::result::Result<ort::environment::Environment, String> {
    let builder = ort::init_from(path).map_err(|e| e.to_string())?;
    builder.with_name("bitsearch").build().map_err(|e| e.to_string())
}
