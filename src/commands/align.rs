//! `bitsearch align`: prompt-image alignment of a text-to-image folder, at full precision and
//! with every UNet weight fake-quantized at the asked bit-widths, plus the text encoder's BOS
//! row magnitude; or, with `--images`, of images another generator made from the same prompts.

use crate::cli::printer::{Align, Column, Printer, Table};
use crate::cli::{AlignArgs, settings};
use anyhow::Context;
use bitsearch_alignment::{ALIGN_REPORT_FORMAT, AlignGeneration, AlignReport, AlignRow};
use bitsearch_alignment::{AttributeClassifier, Evaluation, PromptSet, evaluate, score_images};
use bitsearch_metrics::Mse;
use bitsearch_onnx::{Model, discover_layers};
use bitsearch_pipeline::diffusers::{DiffusersPipeline, GenerateRequest, token_norms};
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_quant::fake_quantize_weights;
use bitsearch_runtime::SessionOptions;
use bitsearch_types::{Component, QuantizerSpec, write_atomically};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayD;
use std::path::Path;

/// The classifier, the prompts it can read, and where the rows go.
struct Scoring {
    classifier: AttributeClassifier,
    set: PromptSet,
    /// Attribute names, schema order.
    names: Vec<String>,
    prompts_path: std::path::PathBuf,
    table: Table,
    out: Printer,
}

impl Scoring {
    fn open(args: &AlignArgs, options: &SessionOptions) -> anyhow::Result<Self> {
        let classifier_dir = args.classifier.clone().unwrap_or_else(|| args.model.join("classifier"));
        let classifier = AttributeClassifier::open(&classifier_dir, options)?;
        let prompts_path = args.prompts.clone().unwrap_or_else(|| args.model.join("heldout_prompts.txt"));
        let set = PromptSet::read(&prompts_path, &classifier)?;
        let names: Vec<String> = classifier.schema().attributes.keys().cloned().collect();
        let mut columns = vec![Column::fixed("weights", Align::Left, 8)];
        columns.extend(names.iter().map(|n| Column::fixed(n, Align::Right, 9)));
        columns.extend([
            Column::fixed("position", Align::Right, 10),
            Column::fixed("caption", Align::Right, 9),
            Column::fixed("PSNR vs FP", Align::Right, 13),
        ]);
        let table = Table::new(columns, "");
        Ok(Self { classifier, set, names, prompts_path, table, out: Printer::stdout() })
    }

    /// The row of `scorer`, printed as it comes (after the header, before the first row).
    fn row(
        &mut self,
        weights: &str,
        scorer: &bitsearch_alignment::Scorer,
        psnr_db: Option<f64>,
    ) -> anyhow::Result<AlignRow> {
        let row = AlignRow::new(weights, &self.names, scorer, psnr_db);
        let mut cells = vec![row.weights.clone()];
        cells.extend(row.attributes.iter().map(|(_, v)| format!("{v:.3}")));
        cells.push(format!("{:.3}", row.position));
        cells.push(format!("{:.3}", row.caption));
        cells.push(row.psnr_db.map_or("—".to_string(), |p| format!("{p:.1} dB")));
        self.out.text(&self.table.row(&cells))?;
        Ok(row)
    }

    fn report(&self, args: &AlignArgs, generation: Option<AlignGeneration>, rows: Vec<AlignRow>) -> AlignReport {
        AlignReport {
            format: ALIGN_REPORT_FORMAT,
            model: args.model.display().to_string(),
            prompts: self.set.prompts.len(),
            seeds: args.seeds,
            images: args.images.as_ref().map(|p| p.display().to_string()),
            generation,
            rows,
        }
    }
}

pub fn run(args: &AlignArgs) -> anyhow::Result<()> {
    let spec = settings::align(args)?;
    let options = SessionOptions::for_workload(&spec);
    let mut scoring = Scoring::open(args, &options)?;
    let report = match &args.images {
        Some(path) => given(args, &spec, &mut scoring, path)?,
        None => generated(args, &spec, &options, &mut scoring)?,
    };
    if let Some(path) = &args.json {
        write_atomically(path, report.to_json()?.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// `--images`: the given images scored as they are.
fn given(args: &AlignArgs, spec: &WorkloadSpec, scoring: &mut Scoring, path: &Path) -> anyhow::Result<AlignReport> {
    let images = read_images(path)?;
    let scorer = score_images(&mut scoring.classifier, &scoring.set, images.view(), args.seeds, spec.batch)
        .with_context(|| format!("{}: does not fit {}", path.display(), scoring.prompts_path.display()))?;
    scoring.out.line(format_args!(
        "{}: {} prompts × {} seeds, images from {}",
        args.model.display(),
        scoring.set.prompts.len(),
        args.seeds,
        path.display()
    ))?;
    scoring.out.text(&scoring.table.header())?;
    let rows = vec![scoring.row("images", &scorer, None)?];
    Ok(scoring.report(args, None, rows))
}

/// Images generated at full precision, then with the UNet's weights at each of `--w-bits`.
fn generated(
    args: &AlignArgs,
    spec: &WorkloadSpec,
    options: &SessionOptions,
    scoring: &mut Scoring,
) -> anyhow::Result<AlignReport> {
    let mut pipeline = DiffusersPipeline::open(&args.model, options)?;
    let seeds: Vec<u64> = (0..args.seeds as u64).map(|s| args.seed + s).collect();
    let mut template = GenerateRequest::new(Vec::new(), Vec::new());
    template.steps = spec.steps.unwrap_or(20);
    template.guidance = spec.guidance;
    template.sampler = spec.sampler;
    template.eta = spec.eta;
    let sampler = pipeline.sampler_settings(&template)?.kind;
    let norms = token_norms(pipeline.encode_prompts(&scoring.set.prompts)?.context.view());
    scoring.out.line(format_args!(
        "{}: {} prompts × {} seeds, {sampler} {} steps, guidance {}",
        args.model.display(),
        scoring.set.prompts.len(),
        seeds.len(),
        template.steps,
        template.guidance
    ))?;
    scoring.out.line(format_args!(
        "text encoder: BOS row norm {:.2}, other rows median {:.2} (max {:.2}): BOS / median = {:.2}",
        norms.bos,
        norms.others_median,
        norms.others_max,
        norms.bos / norms.others_median
    ))?;
    let full = measure(scoring, &mut pipeline, &seeds, &template, spec.batch, "full precision")?;
    scoring.out.text(&scoring.table.header())?;
    let mut rows = vec![scoring.row("fp32", &full.scorer, None)?];
    if !args.w_bits.is_empty() {
        let model = Model::load(pipeline.unet().path())?;
        let layers = discover_layers(&model, Component::Unet)?;
        let spec_q = QuantizerSpec::default();
        for &bits in &args.w_bits {
            let quantized = fake_quantize_weights(&model, &layers, bits, &spec_q.weight)?;
            pipeline.unet_mut().reload(&quantized, options)?;
            let label = format!("W{bits}");
            let e = measure(scoring, &mut pipeline, &seeds, &template, spec.batch, &label)?;
            let mut mse = Mse::default();
            mse.add(full.images.view(), e.images.view());
            rows.push(scoring.row(&label, &e.scorer, Some(mse.psnr_db()))?);
        }
    }
    let generation = AlignGeneration {
        steps: template.steps,
        guidance: template.guidance,
        sampler: sampler.to_string(),
        bos_norm: norms.bos,
        other_tokens_median_norm: norms.others_median,
        other_tokens_max_norm: norms.others_max,
    };
    Ok(scoring.report(args, Some(generation), rows))
}

/// One pass of the pipeline over every prompt and seed, scored, with a progress bar.
fn measure(
    scoring: &mut Scoring,
    pipeline: &mut DiffusersPipeline,
    seeds: &[u64],
    template: &GenerateRequest,
    batch: usize,
    label: &str,
) -> anyhow::Result<Evaluation> {
    let total = scoring.set.prompts.len() * seeds.len();
    let bar = ProgressBar::new(total as u64).with_message(label.to_string());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = evaluate(pipeline, &mut scoring.classifier, &scoring.set, seeds, template, batch, |done| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    Ok(result?)
}

/// Images [n, 3, H, W] from a float32 .npy file, every value finite (a NaN would score as
/// any other value).
fn read_images(path: &Path) -> anyhow::Result<ArrayD<f32>> {
    let images = bitsearch_records::npy::read(path, bitsearch_records::npy::MAX_ARRAY_BYTES)?;
    Ok(ArrayD::from_shape_vec(images.shape, images.values)?)
}
