//! A generation workload: the whole generation — sampler, denoiser and (for diffusers folders)
//! text encoder and VAE — on a fixed list of items (condition or prompt × seed) cut into
//! batches, opened from a small [`WorkloadSpec`]. Stages that compare runs (sensitivity probes,
//! evaluation of a quantized model) swap the denoiser's session and decide, step by step, what
//! each denoiser evaluation does through a [`StepControl`].

mod denoiser;
mod diffusers;
pub mod moments;
pub mod shift;

pub use bitsearch_types::generation::{Pairing, WorkloadSpec, prompt_lines};
pub use denoiser::DenoiserWorkload;
pub use diffusers::{DiffusersWorkload, image_size};

use crate::error::PipelineError;
use crate::sampler::{SampleError, SamplerSettings};
use crate::sessions::DenoiserSessions;
use bitsearch_onnx::Model;
use bitsearch_runtime::{ActiveDevice, SessionOptions};
use ndarray::{ArrayD, ArrayViewD};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Runs the denoiser once on the current step's inputs, with `overrides` replacing overridable
/// initializers; returns the prediction, then the session's extra outputs.
pub type Evaluate<'a> =
    dyn FnMut(&[(&str, ArrayViewD<'_, f32>)]) -> std::result::Result<Vec<ArrayD<f32>>, SampleError> + 'a;

/// Decides what each denoiser evaluation of a run does.
pub trait StepControl {
    /// Step `step` of batch `batch`: returns the prediction the sampler continues with, usually
    /// by calling `evaluate` (it may instead return a stored one).
    fn step(
        &mut self,
        batch: usize,
        step: usize,
        evaluate: &mut Evaluate<'_>,
    ) -> std::result::Result<ArrayD<f32>, SampleError>;

    /// Which of the models last loaded ([`Workload::load_steps`]) evaluates step `step` of
    /// batch `batch`; None leaves it to the models' per-step assignment.
    fn model(&self, _batch: usize, _step: usize) -> Option<usize> {
        None
    }
}

/// Runs the denoiser as it is at every step: plain generation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unchanged;

impl StepControl for Unchanged {
    fn step(
        &mut self,
        _: usize,
        _: usize,
        evaluate: &mut Evaluate<'_>,
    ) -> std::result::Result<ArrayD<f32>, SampleError> {
        evaluate(&[])?.into_iter().next().ok_or_else(|| SampleError::Denoiser("the denoiser returned nothing".into()))
    }
}

/// Runs the network unchanged and hands each step's extra outputs (the values the session was
/// asked to return beside the prediction) to the closure, with the step.
struct Observe<F>(F);

impl<F: FnMut(usize, usize, &[ArrayD<f32>])> StepControl for Observe<F> {
    fn step(
        &mut self,
        batch: usize,
        step: usize,
        evaluate: &mut Evaluate<'_>,
    ) -> std::result::Result<ArrayD<f32>, SampleError> {
        let mut outputs = evaluate(&[])?;
        if outputs.is_empty() {
            return Err(SampleError::Denoiser(format!("step {step}: the denoiser returned nothing")));
        }
        (self.0)(batch, step, &outputs[1..]);
        Ok(outputs.swap_remove(0))
    }
}

pub trait Workload: std::fmt::Debug {
    /// The denoiser graph whose layers are probed, with its weights, read from disk (the
    /// workload itself keeps only its sessions).
    fn model(&self) -> Result<Model>;
    /// `denoiser` or `diffusers`.
    fn kind(&self) -> &'static str;
    /// One description per item, in batch order.
    fn items(&self) -> &[String];
    fn batches(&self) -> usize;
    fn steps(&self) -> usize;
    fn sampler(&self) -> String;
    /// The sampler settings the items run with (those of the first batch).
    fn settings(&self) -> Result<SamplerSettings>;
    fn device(&self) -> ActiveDevice;
    /// Rebuilds the denoiser's session from `model` (the denoiser or an edited copy of it).
    fn load(&mut self, model: &Model, options: &SessionOptions) -> Result<()> {
        self.load_steps(std::slice::from_ref(model), Vec::new(), options)
    }
    /// Rebuilds the denoiser as one session per model, `by_step[s]` running step `s` (a
    /// step-aware plan simulated in float).
    fn load_steps(&mut self, models: &[Model], by_step: Vec<usize>, options: &SessionOptions) -> Result<()> {
        self.install(DenoiserSessions::from_models(models, by_step, options)?)
    }
    /// Replaces the denoiser's sessions with ones built from the denoiser or edited copies of it.
    fn install(&mut self, sessions: DenoiserSessions) -> Result<()>;
    /// Generates batch `batch`; returns the final images `[items, ...]`.
    fn run(&mut self, batch: usize, control: &mut dyn StepControl) -> Result<ArrayD<f32>>;
}

/// Opens `path` as a diffusers/optimum folder, a single denoiser file, or a folder `quantize`
/// wrote for one (its manifest beside the models).
pub fn open(path: &Path, spec: &WorkloadSpec) -> Result<Box<dyn Workload>> {
    spec.validate()?;
    check_model_path(path)?;
    if !path.is_dir() || path.join(bitsearch_records::MANIFEST_FILE).is_file() {
        Ok(Box::new(DenoiserWorkload::open(path, spec)?))
    } else if path.join("model_index.json").is_file() {
        Ok(Box::new(DiffusersWorkload::open(path, spec)?))
    } else {
        // A folder holding a denoiser alone (`unet/` or `transformer/`, no pipeline around it).
        Ok(Box::new(DenoiserWorkload::open(&denoiser_file(path), spec)?))
    }
}

/// Loads `model` returning `tensors` beside the prediction, runs every batch, and hands each
/// step's value of each tensor to `f(tensor, batch, step, value)`: the calibration passes of
/// activation ranges and corrections, and the values a cut graph is fed.
pub fn observe(
    workload: &mut dyn Workload,
    model: &Model,
    tensors: &[String],
    options: &SessionOptions,
    f: impl FnMut(&str, usize, usize, ArrayViewD<'_, f32>),
) -> Result<()> {
    observe_steps(workload, std::slice::from_ref(model), Vec::new(), tensors, options, f)
}

/// [`observe`] with one model per step, `by_step[s]` running step `s` (as [`Workload::load_steps`]).
pub fn observe_steps(
    workload: &mut dyn Workload,
    models: &[Model],
    by_step: Vec<usize>,
    tensors: &[String],
    options: &SessionOptions,
    mut f: impl FnMut(&str, usize, usize, ArrayViewD<'_, f32>),
) -> Result<()> {
    let options = SessionOptions { extra_outputs: tensors.to_vec(), ..options.clone() };
    workload.load_steps(models, by_step, &options)?;
    let mut control = Observe(|batch: usize, step: usize, outputs: &[ArrayD<f32>]| {
        for (tensor, values) in tensors.iter().zip(outputs) {
            f(tensor, batch, step, values.view());
        }
    });
    for b in 0..workload.batches() {
        workload.run(b, &mut control)?;
    }
    Ok(())
}

/// Refuses a model path that does not exist or is a `quantize` output left unfinished.
pub fn check_model_path(path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(PipelineError::file(path, "cannot read: no such file or folder"));
    }
    if bitsearch_types::is_staging_folder(path) {
        return Err(PipelineError::file(
            path,
            "is the unfinished output of a quantize that was stopped (its folder is renamed to drop the dot and \
             .partial once complete): quantize again",
        ));
    }
    Ok(())
}

/// The denoiser file of `path`: the file itself, or `unet/model.onnx` in a diffusers folder.
pub fn denoiser_file(path: &Path) -> PathBuf {
    if !path.is_dir() {
        return path.to_path_buf();
    }
    // diffusers names a DiT's denoiser `transformer/`.
    let transformer = path.join("transformer").join("model.onnx");
    if transformer.is_file() && !path.join("unet").is_dir() {
        transformer
    } else {
        path.join("unet").join("model.onnx")
    }
}

/// Sizes for a denoiser's symbolic input dimensions: those `given`, then the spatial ones (the
/// last two of a 4-D input) from `sample_size` in the `config.json` beside the file. `inputs`
/// holds each input's dimension names (None where fixed); a name given that none of them has
/// is refused, listing those they have. Returns the sizes and the spatial dimensions that
/// neither gives.
pub fn config_dims(
    model_file: &Path,
    inputs: &[Vec<Option<String>>],
    given: impl IntoIterator<Item = (String, usize)>,
) -> Result<(HashMap<String, usize>, Vec<String>)> {
    let mut dims: HashMap<String, usize> = given.into_iter().collect();
    let mut symbols: Vec<&str> = inputs.iter().flatten().flatten().map(String::as_str).collect();
    symbols.sort_unstable();
    symbols.dedup();
    let mut unknown: Vec<&String> = dims.keys().filter(|name| !symbols.contains(&name.as_str())).collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        let known = if symbols.is_empty() {
            "it has none".to_string()
        } else {
            format!("its symbolic dimensions: {}", symbols.join(", "))
        };
        return Err(PipelineError::file(
            model_file,
            format!("--dim {name}: the model has no symbolic dimension of that name ({known})"),
        ));
    }
    let sample_size = crate::diffusers::unet_sample_size(&model_file.with_file_name("config.json"))?;
    let mut missing = Vec::new();
    for symbols in inputs.iter().filter(|s| s.len() == 4) {
        for (axis, symbol) in symbols.iter().enumerate().skip(2) {
            let Some(symbol) = symbol.as_ref().filter(|s| !dims.contains_key(*s)) else { continue };
            match sample_size {
                Some((height, width)) => drop(dims.insert(symbol.clone(), if axis == 2 { height } else { width })),
                None if !missing.contains(symbol) => missing.push(symbol.clone()),
                None => {}
            }
        }
    }
    Ok((dims, missing))
}

/// [`config_dims`] for a run that measures the model once (`inspect`): the other symbolic
/// dimensions (batch, sequence) run at 1, and a spatial one that nothing sizes is refused by
/// name before anything runs: a UNet cannot run at 1×1.
pub fn measuring_dims(model_file: &Path, model: &Model, given: &[(String, usize)]) -> Result<HashMap<String, usize>> {
    let inputs: Vec<_> = model.graph().input.iter().map(bitsearch_onnx::declared_symbols).collect();
    let (dims, missing) = config_dims(model_file, &inputs, given.iter().cloned())?;
    if missing.is_empty() {
        return Ok(dims);
    }
    let flags: Vec<String> = missing.iter().map(|m| format!("--dim {m}=SIZE")).collect();
    Err(PipelineError::file(
        model_file,
        format!(
            "the spatial dimensions {} are symbolic and no config.json with sample_size lies beside the model: give \
             them as {} (latent pixels, e.g. 64 for SD 1.5 at 512×512)",
            missing.join(", "),
            flags.join(" ")
        ),
    ))
}

/// Items cut into batches of at most `batch`.
fn batch_ranges(items: usize, batch: usize) -> Vec<std::ops::Range<usize>> {
    (0..items).step_by(batch).map(|start| start..(start + batch).min(items)).collect()
}
