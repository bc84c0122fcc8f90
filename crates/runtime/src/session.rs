//! Sessions over a [`Model`] held in memory. Weights named in
//! [`SessionOptions::overridable`] become overridable initializers (graph inputs that keep
//! their stored value as default), so one session serves every probe: a run may replace them,
//! and the next run without a replacement uses the stored values again, bit for bit.

use crate::device::{self, ActiveDevice, Device};
use crate::error::{Result, RuntimeError};
use crate::shared::SharedWeights;
use bitsearch_onnx::{DataType, ExternalData, Model, declared_elem_type, declared_shape, declared_symbols, rewrite};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, TensorElementType, TensorRef};

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub device: Device,
    /// Initializers that `run` may replace.
    pub overridable: Vec<String>,
    /// Values returned after the graph outputs (to measure shapes or capture activations).
    pub extra_outputs: Vec<String>,
    /// Intra-op threads; None leaves ONNX Runtime's default of one per core.
    pub threads: Option<usize>,
    /// Load a quantized folder without checking its files against its manifest's sha256s
    /// (`--no-verify`, for very large files).
    pub unverified: bool,
}

impl SessionOptions {
    /// The sessions a workload asks for: its device, threads and file checks.
    pub fn for_workload(spec: &bitsearch_types::generation::WorkloadSpec) -> Self {
        Self { device: spec.device, threads: spec.threads, unverified: spec.unverified, ..Default::default() }
    }
}

/// A graph input as the model declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DataType,
    /// Fixed dimensions, None where the model leaves them symbolic.
    pub shape: Vec<Option<usize>>,
    /// The name of each symbolic dimension ("batch", "height"), None for fixed ones.
    pub symbols: Vec<Option<String>>,
}

/// Past this much weight data the model goes to ONNX Runtime through a file with external
/// data: protobuf messages cannot exceed 2 GiB.
const IN_MEMORY_LIMIT_BYTES: usize = 1 << 30;

/// Overridable weights: name → stored element type and shape.
type Overridable = rewrite::Exposed;

pub struct Session {
    inner: ort::session::Session,
    label: String,
    inputs: Vec<InputSpec>,
    /// What the caller sees: the graph outputs, then the requested extra outputs.
    outputs: Vec<String>,
    /// The graph output that carries each of `outputs`.
    fetch: Vec<String>,
    overridable: Overridable,
    device: ActiveDevice,
    /// The weights ONNX Runtime reads in place; they must outlive `inner`.
    _shared: SharedWeights,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("model", &self.label).field("device", &self.device).finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(model: &Model, options: &SessionOptions) -> Result<Self> {
        // Before anything asks ONNX Runtime a question (the device choice does).
        crate::library::init()?;
        let label = label_of(model);
        let inputs = declared_inputs(model)?;
        let (prepared, overridable, carriers) = prepare(model, options)?;
        let (prepared, shared) = share_weights(prepared)?;
        let session_error = |message: String| RuntimeError::Session { model: label.clone(), message };
        let make_builder = || shared.apply(builder(options, &label)?).map_err(|e| session_error(e.to_string()));
        // Kept alive until the session is built: large models are read from it.
        let spill = tempfile::tempdir().map_err(|e| session_error(format!("temporary folder: {e}")))?;
        let spill_path = spill.path().join("model.onnx");
        let large = prepared.tensor_bytes() > IN_MEMORY_LIMIT_BYTES;
        if large {
            prepared.save(&spill_path, ExternalData::Always { min_bytes: 1024 })?;
        }
        let bytes = if large { Vec::new() } else { prepared.to_bytes() };
        let commit = |mut builder: ort::session::builder::SessionBuilder| {
            let session =
                if large { builder.commit_from_file(&spill_path) } else { builder.commit_from_memory(&bytes) };
            session.map_err(|e| session_error(e.to_string()))
        };
        let (inner, device) = device::build(options.device, make_builder, commit)?;
        let declared: Vec<String> = model.graph().output.iter().map(|o| o.name().to_string()).collect();
        let outputs = declared.iter().chain(&options.extra_outputs).cloned().collect();
        let fetch = declared.into_iter().chain(carriers).collect();
        Ok(Self { inner, label, inputs, outputs, fetch, overridable, device, _shared: shared })
    }

    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// Graph outputs in order, then the requested extra outputs.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    pub fn device(&self) -> ActiveDevice {
        self.device
    }

    /// Runs the model. Inputs are f32 and converted to each input's declared type (token ids
    /// included: they are exact in f32). `overrides` replace overridable weights for this run,
    /// or feed declared inputs that `inputs` leaves out.
    /// Returns every output as f32, in [`Session::outputs`] order.
    pub fn run(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        overrides: &[(&str, ArrayViewD<'_, f32>)],
    ) -> Result<Vec<ArrayD<f32>>> {
        let feeds = self.feeds(inputs, overrides)?;
        let label = &self.label;
        let run_error = |e: ort::Error| RuntimeError::Run { model: label.clone(), message: e.to_string() };
        let outputs = self.inner.run(feeds).map_err(run_error)?;
        self.outputs
            .iter()
            .zip(&self.fetch)
            .map(|(name, carrier)| {
                to_f32(&outputs[carrier.as_str()]).map_err(|message| RuntimeError::Run {
                    model: label.clone(),
                    message: format!("output '{name}': {message}"),
                })
            })
            .collect()
    }

    fn feeds<'v>(
        &self,
        inputs: &[(&str, ArrayViewD<'v, f32>)],
        overrides: &[(&str, ArrayViewD<'v, f32>)],
    ) -> Result<Vec<(String, SessionInputValue<'v>)>> {
        let input_error = |name: &str, message: String| RuntimeError::Input { name: name.to_string(), message };
        let mut feeds = Vec::with_capacity(inputs.len() + overrides.len());
        for (name, values) in inputs {
            let spec = self.inputs.iter().find(|s| s.name == *name).ok_or_else(|| {
                let expected: Vec<_> = self.inputs.iter().map(|s| s.name.as_str()).collect();
                input_error(name, format!("the model has no such input (it expects: {})", expected.join(", ")))
            })?;
            check_shape(&spec.shape, values.shape()).map_err(|m| input_error(name, m))?;
            feeds.push((name.to_string(), to_input(spec.dtype, values).map_err(|m| input_error(name, m))?));
        }
        // An override may also feed an input the caller's network does not know of (the values
        // crossing into a cut graph).
        let given = |s: &&InputSpec| inputs.iter().chain(overrides).any(|(n, _)| *n == s.name);
        if let Some(missing) = self.inputs.iter().find(|s| !given(s)) {
            return Err(input_error(&missing.name, "missing: the model needs a value for it".into()));
        }
        for (name, values) in overrides {
            if let Some(spec) = self.inputs.iter().find(|s| s.name == *name && !inputs.iter().any(|(n, _)| n == name)) {
                feeds.push((name.to_string(), to_input(spec.dtype, values).map_err(|m| input_error(name, m))?));
                continue;
            }
            let (dtype, shape) = self.overridable.get(*name).ok_or_else(|| {
                input_error(
                    name,
                    "is not an overridable weight of this session (list it in SessionOptions::overridable)".into(),
                )
            })?;
            if values.shape() != shape.as_slice() {
                return Err(input_error(
                    name,
                    format!("override has shape {:?}, the weight has {:?}", values.shape(), shape),
                ));
            }
            feeds.push((name.to_string(), to_input(*dtype, values).map_err(|m| input_error(name, m))?));
        }
        Ok(feeds)
    }
}

/// A session builder with the options' thread count.
fn builder(options: &SessionOptions, label: &str) -> Result<ort::session::builder::SessionBuilder> {
    let session_error = |message: String| RuntimeError::Session { model: label.to_string(), message };
    let builder = ort::session::Session::builder(crate::library::init()?).map_err(|e| session_error(e.to_string()))?;
    match options.threads {
        Some(n) => builder.with_intra_threads(n).map_err(|e| session_error(e.to_string())),
        None => Ok(builder),
    }
}

/// How errors name a model: its file, else its graph.
fn label_of(model: &Model) -> String {
    model.path().map_or_else(|| model.graph().name().to_string(), |p| p.display().to_string())
}

/// The inputs a session of `model` takes (those that are not initializers), read from the graph
/// alone: what callers check before paying for a session.
pub fn declared_inputs(model: &Model) -> Result<Vec<InputSpec>> {
    let initializers: std::collections::HashSet<&str> = model.graph().initializer.iter().map(|t| t.name()).collect();
    model
        .graph()
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name()))
        .map(|v| {
            let dtype = declared_elem_type(v).and_then(DataType::from_onnx).ok_or_else(|| RuntimeError::Session {
                model: label_of(model),
                message: format!("input '{}' has an element type bitsearch cannot feed", v.name()),
            })?;
            Ok(InputSpec {
                name: v.name().to_string(),
                dtype,
                shape: declared_shape(v).unwrap_or_default(),
                symbols: declared_symbols(v),
            })
        })
        .collect()
}

/// The model with its file-backed weights shared rather than copied; unchanged when what is
/// left inline would still pass the in-memory limit (the spilled file could not point into
/// the weights' own folder).
fn share_weights(prepared: Model) -> Result<(Model, SharedWeights)> {
    let mut lean = prepared.clone();
    let shared = SharedWeights::take(&mut lean)?;
    Ok(if lean.tensor_bytes() > IN_MEMORY_LIMIT_BYTES { (prepared, SharedWeights::default()) } else { (lean, shared) })
}

/// Copies the model, exposes the overridable weights as inputs and the extra values as outputs;
/// returns it with the overridable weights and the graph output carrying each extra value.
fn prepare(model: &Model, options: &SessionOptions) -> Result<(Model, Overridable, Vec<String>)> {
    let mut prepared = model.clone();
    let overridable = rewrite::expose_initializers(&mut prepared, &options.overridable)?;
    let carriers = rewrite::add_outputs(&mut prepared, &options.extra_outputs);
    Ok((prepared, overridable, carriers))
}

fn check_shape(declared: &[Option<usize>], given: &[usize]) -> std::result::Result<(), String> {
    let fits = declared.is_empty()
        || (declared.len() == given.len() && declared.iter().zip(given).all(|(d, g)| d.is_none_or(|d| d == *g)));
    if fits {
        return Ok(());
    }
    let dims: Vec<String> = declared.iter().map(|d| d.map_or("?".to_string(), |d| d.to_string())).collect();
    Err(format!("shape {given:?} does not match the declared [{}]", dims.join(", ")))
}

/// `values` as an input of element type `dtype`: f32 in standard layout is lent to ONNX Runtime
/// as it is (a cut's fed values are megabytes, and converting them cost a sixth of a probe),
/// anything else converted into a tensor of its own.
fn to_input<'v>(dtype: DataType, values: &ArrayViewD<'v, f32>) -> std::result::Result<SessionInputValue<'v>, String> {
    if dtype == DataType::F32 && values.is_standard_layout() {
        return TensorRef::from_array_view(values.clone()).map(Into::into).map_err(|e| e.to_string());
    }
    to_value(dtype, values).map(Into::into)
}

fn to_value(dtype: DataType, values: &ArrayViewD<'_, f32>) -> std::result::Result<DynValue, String> {
    let shape = values.shape().to_vec();
    let value = match dtype {
        DataType::F32 => {
            Tensor::from_array((shape, values.iter().copied().collect::<Vec<f32>>())).map(Tensor::into_dyn)
        }
        DataType::F16 => Tensor::from_array((shape, values.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>()))
            .map(Tensor::into_dyn),
        DataType::Bf16 => Tensor::from_array((shape, values.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>()))
            .map(Tensor::into_dyn),
        DataType::F64 => {
            Tensor::from_array((shape, values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())).map(Tensor::into_dyn)
        }
        DataType::I64 => Tensor::from_array((shape, values.iter().map(|&v| v.round() as i64).collect::<Vec<_>>()))
            .map(Tensor::into_dyn),
        DataType::I32 => Tensor::from_array((shape, values.iter().map(|&v| v.round() as i32).collect::<Vec<_>>()))
            .map(Tensor::into_dyn),
    };
    value.map_err(|e| e.to_string())
}

fn to_f32(value: &DynValue) -> std::result::Result<ArrayD<f32>, String> {
    let ort::value::ValueType::Tensor { ty, .. } = value.dtype() else { return Err("is not a tensor".into()) };
    fn convert<T: ort::value::PrimitiveTensorElementType + Copy>(
        value: &DynValue,
        f: impl Fn(T) -> f32,
    ) -> std::result::Result<ArrayD<f32>, String> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        ArrayD::from_shape_vec(IxDyn(&dims), data.iter().map(|&v| f(v)).collect()).map_err(|e| e.to_string())
    }
    match ty {
        TensorElementType::Float32 => convert::<f32>(value, |v| v),
        TensorElementType::Float16 => convert::<f16>(value, f16::to_f32),
        TensorElementType::Bfloat16 => convert::<bf16>(value, bf16::to_f32),
        TensorElementType::Float64 => convert::<f64>(value, |v| v as f32),
        TensorElementType::Int64 => convert::<i64>(value, |v| v as f32),
        TensorElementType::Int32 => convert::<i32>(value, |v| v as f32),
        other => Err(format!("element type {other:?} is not numeric")),
    }
}
