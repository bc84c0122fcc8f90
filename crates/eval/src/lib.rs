//! The evaluation stage: the same items through the full-precision reference and through each
//! candidate — a `quantize` output, a plan simulated in float, or any other ONNX model of the
//! same interface — and what that costs, all measured:
//!
//! - fidelity: SQNR of the denoiser output over every step (each run on its own trajectory),
//!   SSIM, PSNR and MSE of the final images, non-finite values, and for pipelines that ship an
//!   attribute classifier the whole-caption accuracy;
//! - cost: bytes on disk, resident memory added by opening the model ([`opening_memory`], in a
//!   fresh process), session start time, and
//!   the median latency of a denoiser call and of a whole generation.
//!
//! Nothing is predicted here; a plan's predictions are copied beside the measurements.

mod candidate;
mod captions;
mod fidelity;
mod items;
mod measure;

pub use candidate::{Candidate, manifest_of};
pub use fidelity::ItemErrors;
pub use items::{CALIBRATION_ITEMS, HELD_OUT_SEED, calibration, fresh, held_out};

use bitsearch_pipeline::workload::{self, Unchanged, Workload, WorkloadSpec};
use bitsearch_records::{Cost, EVAL_FORMAT, EvalRecord, EvalRun};
use bitsearch_runtime::SessionOptions;
use candidate::{describe, model_bytes};
use captions::Captions;
use fidelity::{compare, item_errors};
use measure::{Run, resident_bytes, run_all};
use ndarray::ArrayD;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Pipeline(#[from] bitsearch_pipeline::PipelineError),
    #[error(transparent)]
    Quantize(#[from] bitsearch_quantize::QuantizeError),
    #[error(transparent)]
    Records(#[from] bitsearch_records::RecordError),
    #[error(transparent)]
    Alignment(#[from] bitsearch_alignment::AlignmentError),
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The items (held-out conditions or prompts and seeds) and the sampler.
    pub spec: WorkloadSpec,
    /// Timed repetitions of the whole item set; the first one's outputs are compared.
    pub repeats: usize,
    /// How the items relate to the sensitivity and calibration items, for the record.
    pub held_out: String,
}

/// Everything an evaluation produced.
#[derive(Debug)]
pub struct Evaluation {
    pub run: EvalRun,
    pub records: Vec<EvalRecord>,
    /// Final images of every item: the reference's, then each candidate's.
    pub reference_images: ArrayD<f32>,
    pub candidate_images: Vec<ArrayD<f32>>,
}

/// What a long evaluation tells its user.
pub trait Progress {
    fn stage(&mut self, message: &str);
}

/// Evaluates every candidate against `reference` on the items of `options`.
pub fn evaluate(
    reference: &Path,
    candidates: &[Candidate],
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Evaluation> {
    // Every candidate's records are read before the reference's minutes of work.
    for candidate in candidates {
        match candidate {
            Candidate::Simulated(plan) => bitsearch_quantize::check_simulation(plan)?,
            Candidate::Model(_) => {
                describe(candidate)?;
            }
        }
    }
    progress.stage(&format!("reference {}", reference.display()));
    let mut fp = Reference::open(reference, options)?;
    let mut records = Vec::new();
    let mut candidate_images = Vec::new();
    for (i, candidate) in candidates.iter().enumerate() {
        progress.stage(&format!("candidate {}/{}: {}", i + 1, candidates.len(), describe(candidate)?.0));
        let measurement = fp.measure(candidate, options.repeats)?;
        records.push(measurement.record);
        candidate_images.push(measurement.images);
    }
    Ok(Evaluation { run: fp.run, records, reference_images: fp.outputs.images, candidate_images })
}

/// The full-precision model's outputs on the items, against which candidates are measured one
/// at a time. Its session is closed once it has run, so a candidate never shares the process
/// with the float weights (one copy of the weights at a time, as everywhere).
pub struct Reference {
    path: PathBuf,
    spec: WorkloadSpec,
    outputs: Run,
    cost: Cost,
    captions: Option<Captions>,
    caption: Option<f64>,
    /// The items and sampler every record shares.
    pub run: EvalRun,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference").field("path", &self.path).field("run", &self.run).finish_non_exhaustive()
    }
}

impl Reference {
    /// Opens `path`, runs it on the items of `options` (a warm-up and `options.repeats` timed
    /// passes) and closes it.
    pub fn open(path: &Path, options: &EvalOptions) -> Result<Self> {
        let (mut workload, mut cost) = open(path, &options.spec, None)?;
        cost.file_bytes = model_bytes(path)?;
        let outputs = run_all(workload.as_mut(), options.repeats)?;
        cost.call_ms = outputs.call_ms;
        cost.image_ms = outputs.image_ms;
        let run = EvalRun {
            format: EVAL_FORMAT,
            reference: path.display().to_string(),
            device: workload.device().to_string(),
            sampler: workload.sampler(),
            steps: workload.steps(),
            items: workload.items().to_vec(),
            held_out: options.held_out.clone(),
        };
        let mut captions = Captions::open(path, &options.spec)?;
        let caption = captions.as_mut().map(|c| c.accuracy(&outputs.images)).transpose()?;
        Ok(Self { path: path.to_path_buf(), spec: options.spec.clone(), outputs, cost, captions, caption, run })
    }

    /// Runs `candidate` on the same items: its record (fidelity, and with `repeats` > 0 its
    /// latency beside the reference's), its final images and each item's errors.
    pub fn measure(&mut self, candidate: &Candidate, repeats: usize) -> Result<Measurement> {
        let (label, kind, predicted) = describe(candidate)?;
        let path = match candidate {
            Candidate::Model(path) | Candidate::Simulated(path) => path.clone(),
        };
        let (mut candidate_workload, mut cost) = match candidate {
            Candidate::Model(path) => open(path, &self.spec, None)?,
            Candidate::Simulated(plan) => open(&self.path, &self.spec, Some(plan))?,
        };
        if candidate_workload.items() != self.run.items.as_slice() || candidate_workload.steps() != self.run.steps {
            return Err(EvalError::Mismatch(format!(
                "{}: runs {} items in {} steps, the reference {} in {}",
                path.display(),
                candidate_workload.items().len(),
                candidate_workload.steps(),
                self.run.items.len(),
                self.run.steps
            )));
        }
        cost.file_bytes = match candidate {
            Candidate::Model(path) => model_bytes(path)?,
            Candidate::Simulated(_) => self.cost.file_bytes,
        };
        let measured = run_all(candidate_workload.as_mut(), repeats)?;
        drop(candidate_workload);
        cost.call_ms = measured.call_ms;
        cost.image_ms = measured.image_ms;
        let mut record = compare(&self.outputs, &measured, label, &path, kind, predicted);
        if let Some(captions) = self.captions.as_mut() {
            record.caption = captions.accuracy(&measured.images)?;
        }
        record.reference_caption = self.caption.unwrap_or(f64::NAN);
        (record.cost, record.reference_cost) = (cost, self.cost);
        let errors = item_errors(&self.outputs, &measured)?;
        Ok(Measurement { record, images: measured.images, errors })
    }
}

/// A candidate measured against the reference.
#[derive(Debug)]
pub struct Measurement {
    pub record: EvalRecord,
    /// Its final images, in item order.
    pub images: ArrayD<f32>,
    pub errors: ItemErrors,
}

/// Resident memory that opening the model at `path` and generating its first batch adds to a
/// process that has loaded ONNX Runtime and nothing else: its weights are memory-mapped, so
/// they count once a run has touched them. Meaningful only in a fresh process, since memory
/// freed by earlier sessions is reused. `bitsearch eval` runs it in a child per model.
pub fn opening_memory(path: &Path, spec: &WorkloadSpec) -> Result<u64> {
    bitsearch_runtime::init().map_err(bitsearch_pipeline::PipelineError::from)?;
    let before = resident_bytes();
    let mut workload = workload::open(path, spec)?;
    workload.run(0, &mut Unchanged)?;
    let bytes = resident_bytes().saturating_sub(before);
    drop(workload);
    Ok(bytes)
}

/// Opens a workload on `path` and measures how long starting it took; with `plan`, the plan's
/// simulation replaces the denoiser.
fn open(path: &Path, spec: &WorkloadSpec, plan: Option<&PathBuf>) -> Result<(Box<dyn Workload>, Cost)> {
    let started = Instant::now();
    let mut workload = workload::open(path, spec)?;
    if let Some(plan) = plan {
        let (models, by_step) = bitsearch_quantize::simulate(path, plan)?;
        let options = SessionOptions::for_workload(spec);
        workload.load_steps(&models, by_step, &options)?;
    }
    let cost = Cost { start_seconds: started.elapsed().as_secs_f64(), ..Cost::default() };
    Ok((workload, cost))
}
