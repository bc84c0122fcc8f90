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

mod measure;

use bitsearch_alignment::{AttributeClassifier, ObjectSpec, Scorer, parse_prompt};
use bitsearch_metrics::{Mse, Sqnr, count_nonfinite, ssim_per_item};
use bitsearch_pipeline::workload::{self, Pairing, Workload, WorkloadSpec};
use bitsearch_records::{Cost, EVAL_FORMAT, EvalRecord, EvalRun, Manifest, Metric, Plan};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::tree_bytes;
use measure::{Run, resident_bytes, run_all};
use ndarray::{ArrayD, Axis};
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

/// One model to measure against the reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidate {
    /// A model on disk: an ONNX file, a `quantize` output folder, or a diffusers folder.
    Model(PathBuf),
    /// A plan simulated in float: the reference with its quantized weights fake-quantized.
    Simulated(PathBuf),
}

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

/// The evaluation items: the sensitivity run's generation settings `base` with seeds that
/// neither it nor calibration (which reuses its items) used, every prompt with every seed, and
/// `prompts` (held-out prompts) in place of its prompts when given. Returns the spec and a
/// sentence saying how its items relate to the sensitivity items.
pub fn held_out(
    base: &WorkloadSpec,
    seeds: Option<Vec<u64>>,
    num_seeds: u64,
    prompts: Option<Vec<String>>,
) -> (WorkloadSpec, String) {
    let mut spec = base.clone();
    spec.pair_every_with(seeds.unwrap_or_else(|| (0..num_seeds.max(1)).map(|i| HELD_OUT_SEED + i).collect()));
    let used = base.item_seeds();
    let shared_seeds: Vec<u64> = spec.seeds.iter().copied().filter(|s| used.contains(s)).collect();
    let mut words = vec![format!("seeds {:?} (sensitivity and calibration: {}", spec.seeds, base.describe_seeds())];
    words[0].push_str(
        if shared_seeds.is_empty() { ")".into() } else { format!("; {shared_seeds:?} shared: NOT held out)") }.as_str(),
    );
    if let Some(prompts) = prompts {
        let shared = prompts.iter().filter(|p| base.prompts.contains(p)).count();
        words.push(format!(
            "{} held-out prompts ({shared} of them among the {} sensitivity prompts)",
            prompts.len(),
            base.prompts.len()
        ));
        spec.prompts = prompts;
    } else if !spec.prompts.is_empty() {
        words.push(format!("the {} sensitivity prompts", spec.prompts.len()));
    }
    if !spec.conditions.is_empty() {
        let conditions: Vec<String> = spec.conditions.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        let same = spec.conditions == base.conditions;
        words.push(format!("conditions {}{}", conditions.join(" "), if same { " as in sensitivity" } else { "" }));
    }
    (spec, words.join("; "))
}

/// Items a target search measures on unless told otherwise: the SQNR of one or two items
/// says little about the next ones.
pub const CALIBRATION_ITEMS: usize = 8;

/// The items a target search measures on: every prompt with each of `seeds` and the sensitivity
/// run's other settings `base`; else the sensitivity items themselves, under `every` pairing
/// followed by the next unused small seeds until there are at least `min_items` items (far
/// below [`HELD_OUT_SEED`], so evaluation stays held out). Returns the spec and a sentence
/// saying what they are.
pub fn calibration(base: &WorkloadSpec, seeds: Option<Vec<u64>>, min_items: usize) -> (WorkloadSpec, String) {
    let mut spec = base.clone();
    let per_seed = base.sets();
    if let Some(seeds) = seeds {
        spec.pair_every_with(seeds);
    } else if base.pairing == Pairing::Every {
        while spec.seeds.len() * per_seed < min_items {
            let next = (0..).find(|s| !spec.seeds.contains(s)).unwrap_or_default();
            spec.seeds.push(next);
        }
    }
    let words = describe_items("calibration", &spec, base);
    (spec, words)
}

/// The items a shrinkage search measures on: every prompt (or condition set) of the sensitivity
/// run `base` with each of `seeds`, else with the smallest seeds it did not use, at least two
/// and enough for `min_items` items, below [`HELD_OUT_SEED`]. A plan chosen by how well it
/// measures on the table's own items would be rewarded for trusting the table's noise. Returns
/// the spec and a sentence saying what they are.
pub fn fresh(base: &WorkloadSpec, seeds: Option<Vec<u64>>, min_items: usize) -> (WorkloadSpec, String) {
    let per_seed = base.sets().max(1);
    let seeds = seeds.unwrap_or_else(|| {
        let used = base.item_seeds();
        let wanted = min_items.div_ceil(per_seed).max(2);
        (0..HELD_OUT_SEED).filter(|s| !used.contains(s)).take(wanted).collect()
    });
    let mut spec = base.clone();
    spec.pair_every_with(seeds);
    let words = describe_items("selection", &spec, base);
    (spec, words)
}

fn describe_items(what: &str, spec: &WorkloadSpec, base: &WorkloadSpec) -> String {
    let items = spec.pairs(base.sets()).map_or(0, |p| p.len());
    format!("{what} items: seeds {} (sensitivity: {}), {items} item(s)", spec.describe_seeds(), base.describe_seeds())
}

/// First default evaluation seed: far from the small seeds sensitivity runs use.
pub const HELD_OUT_SEED: u64 = 1000;

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

/// The full-precision model, run once on the items, against which candidates are measured one
/// at a time.
pub struct Reference {
    path: PathBuf,
    spec: WorkloadSpec,
    workload: Box<dyn Workload>,
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
    /// Opens `path` and runs it on the items of `options` (a warm-up and `options.repeats`
    /// timed passes).
    pub fn open(path: &Path, options: &EvalOptions) -> Result<Self> {
        let (mut workload, mut cost) = open(path, &options.spec, None)?;
        cost.file_bytes = model_bytes(path)?;
        let (outputs, _) = run_all(workload.as_mut(), options.repeats, None)?;
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
        Ok(Self {
            path: path.to_path_buf(),
            spec: options.spec.clone(),
            workload,
            outputs,
            cost,
            captions,
            caption,
            run,
        })
    }

    /// Runs `candidate` on the same items: its record (fidelity, and with `repeats` > 0 the
    /// latency of both, timed in alternation), its final images and each item's errors.
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
        let alongside: Option<&mut dyn Workload> = if repeats > 0 { Some(&mut *self.workload) } else { None };
        let (measured, paired) = run_all(candidate_workload.as_mut(), repeats, alongside)?;
        drop(candidate_workload);
        cost.call_ms = measured.call_ms;
        cost.image_ms = measured.image_ms;
        let mut reference_cost = self.cost;
        if let Some(paired) = paired {
            (reference_cost.call_ms, reference_cost.image_ms) = (paired.call_ms, paired.image_ms);
        }
        let mut record = compare(&self.outputs, &measured, label, &path, kind, predicted);
        if let Some(captions) = self.captions.as_mut() {
            record.caption = captions.accuracy(&measured.images)?;
        }
        record.reference_caption = self.caption.unwrap_or(f64::NAN);
        (record.cost, record.reference_cost) = (cost, reference_cost);
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

/// Each item's errors against the reference, in item order: what the record's PSNR and SQNR
/// are logarithms of, item by item (PSNR of a constant over the mean of `image_mse`, SQNR of the
/// reference's energy over the sum of `output_noise`), so that two candidates' difference and
/// its noise can be read off the same items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemErrors {
    /// Mean squared error of the final image.
    pub image_mse: Vec<f64>,
    /// Squared error of the denoiser's predictions, summed over elements and steps.
    pub output_noise: Vec<f64>,
}

impl ItemErrors {
    /// The errors `metric` is a logarithm of: image MSE for PSNR, output noise for SQNR; empty
    /// for the others.
    pub fn of(&self, metric: Metric) -> &[f64] {
        match metric {
            Metric::Psnr => &self.image_mse,
            Metric::Sqnr => &self.output_noise,
            Metric::Ssim | Metric::Caption => &[],
        }
    }
}

fn item_errors(fp: &Run, candidate: &Run) -> Result<ItemErrors> {
    let image_mse = fp
        .images
        .outer_iter()
        .zip(candidate.images.outer_iter())
        .map(|(a, b)| {
            let mut mse = Mse::default();
            mse.add(a, b);
            mse.value()
        })
        .collect::<Vec<_>>();
    let mut output_noise = vec![0.0; image_mse.len()];
    for ((a, b), &first) in fp.outputs.iter().zip(&candidate.outputs).zip(&fp.first_items) {
        for (j, (y, q)) in a.outer_iter().zip(b.outer_iter()).enumerate() {
            let items = output_noise.len();
            let noise = output_noise.get_mut(first + j).ok_or_else(|| {
                EvalError::Mismatch(format!(
                    "a denoiser output of {} rows from item {first} of {items}",
                    a.len_of(Axis(0))
                ))
            })?;
            *noise += y.iter().zip(q.iter()).map(|(&y, &q)| (f64::from(q) - f64::from(y)).powi(2)).sum::<f64>();
        }
    }
    Ok(ItemErrors { image_mse, output_noise })
}

/// Resident memory that opening the model at `path` (its sessions started) adds to a process
/// that has loaded ONNX Runtime and nothing else: meaningful only in a fresh process, since
/// memory freed by earlier sessions is reused. `bitsearch eval` runs it in a child per model.
pub fn opening_memory(path: &Path, spec: &WorkloadSpec) -> Result<u64> {
    bitsearch_runtime::init().map_err(bitsearch_pipeline::PipelineError::from)?;
    let before = resident_bytes();
    let workload = workload::open(path, spec)?;
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
        let options = SessionOptions { device: spec.device, threads: spec.threads, ..Default::default() };
        workload.load_steps(&models, by_step, &options)?;
    }
    let cost = Cost { start_seconds: started.elapsed().as_secs_f64(), ..Cost::default() };
    Ok((workload, cost))
}

/// Bytes of the denoiser a model path stands for: the file and its external data, the
/// quantized folder, or a pipeline's `unet/` folder.
fn model_bytes(path: &Path) -> Result<u64> {
    let target = if path.join("unet").is_dir() { path.join("unet") } else { path.to_path_buf() };
    // A single file comes with the external-data files beside it that it names.
    let external = if target.is_dir() { 0 } else { external_bytes(&target) };
    tree_bytes(&target)
        .map(|b| b + external)
        .map_err(|e| EvalError::File { path: target.clone(), message: format!("cannot read: {e}") })
}

/// Bytes of the external-data files a model file references (none for most exports).
fn external_bytes(model: &Path) -> u64 {
    let dir = model.parent().unwrap_or(Path::new("."));
    let name = model.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    [format!("{name}.data"), format!("{name}_data")]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// The manifest of a `quantize` folder: in the folder itself (a denoiser) or its `unet/` (a
/// pipeline); None for any other model.
pub fn manifest_of(path: &Path) -> Result<Option<Manifest>> {
    Ok(Manifest::find(path)?.or(Manifest::find(&path.join("unet"))?))
}

/// What a plan predicted: mean weight bits, SQNR, SSIM, PSNR (NaN without a plan).
#[derive(Debug, Clone, Copy)]
struct Predicted {
    avg_bits: f64,
    sqnr_db: f64,
    ssim: f64,
    psnr_db: f64,
}

impl Predicted {
    const NONE: Self = Self { avg_bits: f64::NAN, sqnr_db: f64::NAN, ssim: f64::NAN, psnr_db: f64::NAN };
}

/// A candidate's label, its record kind and what its plan predicted.
fn describe(candidate: &Candidate) -> Result<(String, String, Predicted)> {
    Ok(match candidate {
        Candidate::Simulated(plan) => {
            let plan = Plan::read(plan)?;
            let p = &plan.prediction;
            let avg_bits = plan.summary.avg_bits;
            let label = format!("{} {avg_bits:.2} bits (simulated)", kind_of(&plan.solver.name));
            (label, "simulated".into(), Predicted { avg_bits, sqnr_db: p.sqnr_db, ssim: p.ssim, psnr_db: p.psnr_db })
        }
        Candidate::Model(path) => match manifest_of(path)? {
            Some(m) => {
                let kind = kind_of(&m.method);
                let activations = match m.activation_layers {
                    0 => String::new(),
                    n => format!(", A8 on {n} layers"),
                };
                let mut corrections = String::new();
                if m.split_layers > 0 {
                    corrections.push_str(&format!(", split on {} layers", m.split_layers));
                }
                if m.corrections.bos_aware {
                    corrections.push_str(", BOS-aware");
                }
                if m.corrections.bias_correction {
                    corrections.push_str(", bias-corrected");
                }
                if m.corrections.noise_correction.is_some() {
                    corrections.push_str(", PTQD");
                }
                let label = format!("{kind} {:.2} bits{activations}{corrections} ({})", m.avg_bits, m.storage);
                let predicted = Predicted {
                    avg_bits: m.avg_bits,
                    sqnr_db: m.predicted_sqnr_db,
                    ssim: m.predicted_ssim,
                    psnr_db: m.predicted_psnr_db,
                };
                (label, kind, predicted)
            }
            None => {
                let label = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
                (label, "model".into(), Predicted::NONE)
            }
        },
    })
}

/// The record kind of a plan's solver name.
fn kind_of(solver: &str) -> String {
    if solver.contains("uniform") {
        "uniform".into()
    } else if solver.contains("greedy") {
        "greedy".into()
    } else {
        "ilp".into()
    }
}

/// The fidelity of `candidate` against `fp`, in a record whose other fields the caller fills.
fn compare(fp: &Run, candidate: &Run, label: String, path: &Path, kind: String, predicted: Predicted) -> EvalRecord {
    let mut sqnr = Sqnr::default();
    let mut nonfinite = 0;
    for (a, b) in fp.outputs.iter().zip(&candidate.outputs) {
        sqnr.add(a.view(), b.view());
        nonfinite += count_nonfinite(b.view());
    }
    nonfinite += count_nonfinite(candidate.images.view());
    let mut mse = Mse::default();
    mse.add(fp.images.view(), candidate.images.view());
    let ssim = ssim_per_item(fp.images.view(), candidate.images.view());
    EvalRecord {
        label,
        candidate: path.display().to_string(),
        kind,
        avg_bits: predicted.avg_bits,
        predicted_sqnr_db: predicted.sqnr_db,
        predicted_ssim: predicted.ssim,
        predicted_psnr_db: predicted.psnr_db,
        sqnr_db: sqnr.db(),
        ssim: ssim.iter().sum::<f64>() / ssim.len().max(1) as f64,
        psnr_db: mse.psnr_db(),
        mse: mse.value(),
        nonfinite,
        caption: f64::NAN,
        reference_caption: f64::NAN,
        cost: Cost::default(),
        reference_cost: Cost::default(),
    }
}

/// Whole-caption accuracy of a pipeline that ships an attribute classifier.
struct Captions {
    classifier: AttributeClassifier,
    /// The objects each item's prompt asks for, in item order.
    wanted: Vec<Vec<ObjectSpec>>,
}

impl Captions {
    /// None unless `model` is a pipeline folder with `classifier/`.
    fn open(model: &Path, spec: &WorkloadSpec) -> Result<Option<Self>> {
        let dir = model.join("classifier");
        if !dir.is_dir() || spec.prompts.is_empty() {
            return Ok(None);
        }
        let options = SessionOptions { device: spec.device, threads: spec.threads, ..Default::default() };
        let classifier = AttributeClassifier::open(&dir, &options)?;
        let objects: Vec<Vec<ObjectSpec>> =
            spec.prompts.iter().map(|p| parse_prompt(p, classifier.schema())).collect::<Result<_, _>>()?;
        let wanted = spec
            .pairs(objects.len())
            .map_err(bitsearch_pipeline::PipelineError::from)?
            .into_iter()
            .map(|(p, _)| objects[p].clone())
            .collect();
        Ok(Some(Self { classifier, wanted }))
    }

    fn accuracy(&mut self, images: &ArrayD<f32>) -> Result<f64> {
        let mut scorer = Scorer::new(self.classifier.schema().attributes.len());
        for (wanted, seen) in self.wanted.iter().zip(self.classifier.classify(images.view())?) {
            scorer.add(wanted, &seen);
        }
        Ok(scorer.caption.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    fn zipped() -> WorkloadSpec {
        let prompts = (0..4).map(|i| format!("prompt {i}")).collect();
        WorkloadSpec { prompts, seeds: vec![998], pairing: Pairing::Zip, ..Default::default() }
    }

    #[test]
    fn held_out_items_take_every_seed_and_see_the_zipped_seeds_of_the_sensitivity_run() {
        let (spec, words) = held_out(&zipped(), None, 2, None);
        assert_eq!((spec.pairing, spec.seeds.clone()), (Pairing::Every, vec![1000, 1001]));
        assert_eq!(spec.pairs(spec.prompts.len()).unwrap().len(), 8);
        assert!(words.contains("[1000, 1001] shared: NOT held out"), "{words}");
        assert!(words.contains("998..=1001, one per item"), "{words}");
    }

    #[test]
    fn calibration_reuses_zipped_items_and_extends_shared_seeds_to_the_minimum() {
        let (spec, words) = calibration(&zipped(), None, 8);
        assert_eq!(spec, zipped());
        assert!(words.ends_with("4 item(s)"), "{words}");
        let every = WorkloadSpec { pairing: Pairing::Every, seeds: vec![1], ..zipped() };
        let (spec, words) = calibration(&every, None, 9);
        assert_eq!(spec.seeds, vec![1, 0, 2]);
        assert!(words.ends_with("12 item(s)"), "{words}");
        let (spec, _) = calibration(&zipped(), Some(vec![5, 6]), 8);
        assert_eq!((spec.pairing, spec.seeds), (Pairing::Every, vec![5, 6]));
    }

    #[test]
    fn selection_items_take_seeds_the_sensitivity_run_never_used() {
        let (spec, words) = fresh(&zipped(), None, 8);
        let used = zipped().item_seeds();
        assert_eq!(spec.pairing, Pairing::Every);
        assert!(spec.seeds.len() >= 2 && spec.seeds.iter().all(|s| !used.contains(s) && *s < HELD_OUT_SEED));
        assert!(words.starts_with("selection items") && words.ends_with(&format!("{} item(s)", spec.seeds.len() * 4)));
        assert_eq!(spec.seeds.len() * zipped().sets(), 8);
        let (spec, _) = fresh(&zipped(), Some(vec![7]), 8);
        assert_eq!(spec.seeds, vec![7]);
    }

    /// Two batches (3 items and 1) of two steps each: per-item errors must add up to the
    /// record's PSNR and SQNR, land on the right items, and refuse outputs that overrun them.
    #[test]
    fn item_errors_are_what_the_record_is_a_logarithm_of() {
        let array = |rows: usize, f: &dyn Fn(usize, usize) -> f32| {
            ArrayD::from_shape_fn(IxDyn(&[rows, 2, 3]), |i| f(i[0], i[1] * 3 + i[2]))
        };
        let run = |shift: f32| {
            let out = |first: usize, rows: usize, step: usize| {
                array(rows, &|r, e| (e + step) as f32 + if first + r == 2 { 3.0 * shift } else { shift * r as f32 })
            };
            Run {
                outputs: vec![out(0, 3, 0), out(0, 3, 1), out(3, 1, 0), out(3, 1, 1)],
                first_items: vec![0, 0, 3, 3],
                images: array(4, &|r, e| (e as f32 / 10.0) - shift * r as f32),
                call_ms: f64::NAN,
                image_ms: f64::NAN,
            }
        };
        let (fp, candidate) = (run(0.0), run(0.5));
        let errors = item_errors(&fp, &candidate).expect("errors");
        let record = compare(&fp, &candidate, "c".into(), Path::new("c"), "model".into(), Predicted::NONE);
        let mean = errors.image_mse.iter().sum::<f64>() / 4.0;
        assert!((mean - record.mse).abs() < 1e-12 && (bitsearch_metrics::psnr_db(mean) - record.psnr_db).abs() < 1e-9);
        let signal: f64 = fp.outputs.iter().flat_map(|o| o.iter()).map(|&y| f64::from(y).powi(2)).sum();
        let noise: f64 = errors.output_noise.iter().sum();
        assert!((10.0 * (signal / noise).log10() - record.sqnr_db).abs() < 1e-9);
        // Item 2 is off by 1.5 in each of 6 elements at both steps; item 3, the second batch's
        // first row, by nothing.
        let close = |got: &[f64], want: &[f64]| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6);
        assert!(close(&errors.output_noise, &[0.0, 2.0 * 6.0 * 0.25, 2.0 * 6.0 * 2.25, 0.0]), "{errors:?}");
        assert!(close(&errors.image_mse, &[0.0, 0.25, 1.0, 2.25]), "{errors:?}");
        assert_eq!(errors.of(Metric::Psnr), errors.image_mse.as_slice());
        assert!(errors.of(Metric::Caption).is_empty());
        let shifted = Run { first_items: vec![1, 1, 4, 4], ..run(0.0) };
        assert!(item_errors(&shifted, &candidate).unwrap_err().to_string().contains("rows from item 4 of 4"));
    }
}
