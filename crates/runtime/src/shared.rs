//! One copy of the weights per process. A tensor whose bytes are a slice of a mapped
//! external-data file goes to ONNX Runtime twice, neither time as a copy: the graph keeps a
//! reference into the file (so an optimizer that reads the value, constant folding a Cast,
//! reads the true bytes), and the session gets the mapped bytes themselves as a shared
//! initializer (`AddInitializer`), which it runs on without copying them. Every session of
//! the process then computes on the same pages.
//!
//! Graph optimizations that would rewrite shared weights into per-session copies are left
//! out for such sessions: prepacking (MLAS repacks MatMul weights) and the layout level
//! (NCHWc reorders Conv weights). Measured on a 334 MB model, three sessions held 448 MB this
//! way against 1.1 GB built from the file and 1.3 GB with those optimizations on.

use crate::error::{Result, RuntimeError};
use bitsearch_onnx::pb::TensorProto;
use bitsearch_onnx::{Model, point_at};
use bytes::Bytes;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::sys::ONNXTensorElementDataType as Ort;
use ort::value::DynValue;
use std::path::PathBuf;
use std::sync::Arc;

/// Tensors smaller than this stay inside the graph: sharing saves nothing on them.
const SHARE_MIN_BYTES: usize = 64 << 10;

/// The weights a session shares with the process rather than owning.
#[derive(Debug, Default)]
pub(crate) struct SharedWeights {
    /// The folder of the data file the graph's references point into.
    folder: Option<PathBuf>,
    values: Vec<(String, Arc<DynValue>)>,
    /// The bytes the values are read from, kept alive as long as the session.
    held: Vec<Bytes>,
}

impl SharedWeights {
    /// Turns `model`'s large file-backed initializers into references into their file and
    /// returns their values, borrowed from the mapping. Tensors of other files than the first
    /// one met, or of element types this does not map, stay inline.
    pub fn take(model: &mut Model) -> Result<Self> {
        let source = model.clone();
        let mut shared = Self::default();
        let Some(graph) = model.proto.graph.as_mut() else { return Ok(shared) };
        for t in &mut graph.initializer {
            let Some(raw) = t.raw_data.as_ref().filter(|r| r.len() >= SHARE_MIN_BYTES) else { continue };
            let Some((file, offset)) = source.file_backing(raw) else { continue };
            let (Some(folder), Some(name)) = (file.parent(), file.file_name()) else { continue };
            if shared.folder.as_deref().is_some_and(|f| f != folder) {
                continue;
            }
            let Some(value) = borrowed_value(t, raw)? else { continue };
            shared.folder = Some(folder.to_path_buf());
            shared.held.push(raw.clone());
            point_at(t, &name.to_string_lossy(), offset, raw.len());
            shared.values.push((t.name().to_string(), Arc::new(value)));
        }
        Ok(shared)
    }

    /// The builder with the shared values registered and the copying optimizations off.
    pub fn apply(&self, builder: SessionBuilder) -> ort::Result<SessionBuilder> {
        let Some(folder) = &self.folder else { return Ok(builder) };
        let mut builder = builder
            .with_config_entry("session.model_external_initializers_file_folder_path", folder.to_string_lossy())?
            .with_prepacking(false)?
            .with_optimization_level(GraphOptimizationLevel::Level2)?
            // Several sessions of a large model live at once (reference, window, next window):
            // with an arena each would keep its own peak of activations for good.
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])?;
        for (name, value) in &self.values {
            builder = builder.with_initializer(name, Arc::clone(value))?;
        }
        Ok(builder)
    }
}

/// The tensor's data as an ONNX Runtime value over `raw` itself; None for element types
/// without a fixed byte size (strings, packed sub-byte types), which stay inline.
fn borrowed_value(t: &TensorProto, raw: &Bytes) -> Result<Option<DynValue>> {
    let Some((element, size)) = element_type(t.data_type) else { return Ok(None) };
    let count = t.dims.iter().try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)));
    if count.and_then(|c| c.checked_mul(size)) != Some(raw.len()) || raw.as_ptr().align_offset(size) != 0 {
        return Ok(None);
    }
    let error = |message: String| RuntimeError::Session { model: t.name().to_string(), message };
    let info = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)
        .map_err(|e| error(e.to_string()))?;
    let mut value = std::ptr::null_mut();
    // SAFETY: `raw` is `raw.len()` readable bytes holding `count` elements of `element`,
    // aligned for it (checked above). ONNX Runtime only reads an initializer's buffer. The
    // bytes are a slice of a mapping that the session keeps alive: `Session` holds the
    // model's `Bytes` for as long as ONNX Runtime may read them.
    #[allow(unsafe_code)]
    let value = unsafe {
        let status = (ort::api().CreateTensorWithDataAsOrtValue)(
            ort::AsPointer::ptr(&info),
            raw.as_ptr().cast_mut().cast(),
            raw.len(),
            t.dims.as_ptr(),
            t.dims.len(),
            element,
            &mut value,
        );
        ort::Error::result_from_status(status).map_err(|e| error(e.to_string()))?;
        let value = std::ptr::NonNull::new(value).ok_or_else(|| error("ONNX Runtime returned no value".into()))?;
        DynValue::from_ptr(value, Some(&Allocator::default()))
    };
    Ok(Some(value))
}

fn element_type(code: Option<i32>) -> Option<(Ort, usize)> {
    Some(match code? {
        1 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, 4),
        2 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, 1),
        3 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, 1),
        4 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16, 2),
        5 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16, 2),
        6 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, 4),
        7 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 8),
        10 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, 2),
        11 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, 8),
        16 => (Ort::ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, 2),
        _ => return None,
    })
}
