//! `bitsearch align`: prompt-image alignment of a text-to-image folder, at full precision and
//! with every UNet weight fake-quantized at the asked bit-widths, plus the text encoder's BOS
//! row magnitude; or, with `--images`, of images another generator made from the same prompts.

use crate::cli::AlignArgs;
use anyhow::Context;
use bitsearch_alignment::{AttributeClassifier, Evaluation, PromptSet, Scorer, evaluate, score_images};
use bitsearch_metrics::Mse;
use bitsearch_onnx::{Model, discover_layers};
use bitsearch_pipeline::diffusers::{DiffusersPipeline, GenerateRequest, token_norms};
use bitsearch_quant::fake_quantize_weights;
use bitsearch_runtime::SessionOptions;
use bitsearch_types::{Component, QuantizerSpec, write_atomically};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use serde::Serialize;
use std::path::Path;

/// One row of the results: a precision and what it scored.
#[derive(Debug, Serialize)]
struct Row {
    weights: String,
    /// Attribute name → accuracy over the prompts' objects.
    attributes: Vec<(String, f64)>,
    position: f64,
    caption: f64,
    /// PSNR of the images against the full-precision ones (None for full precision).
    psnr_db: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    prompts: usize,
    seeds: usize,
    /// The scored .npy file, when the images were given rather than generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<String>,
    #[serde(flatten)]
    generation: Option<Generation>,
    rows: Vec<Row>,
}

/// How bitsearch generated the images it scored.
#[derive(Debug, Serialize)]
struct Generation {
    steps: u16,
    guidance: f32,
    sampler: String,
    bos_norm: f64,
    other_tokens_median_norm: f64,
    other_tokens_max_norm: f64,
}

pub fn run(args: &AlignArgs) -> anyhow::Result<()> {
    let options = SessionOptions { device: args.device, ..Default::default() };
    let classifier_dir = args.classifier.clone().unwrap_or_else(|| args.model.join("classifier"));
    let mut classifier = AttributeClassifier::open(&classifier_dir, &options)?;
    let prompts_path = args.prompts.clone().unwrap_or_else(|| args.model.join("heldout_prompts.txt"));
    let set = PromptSet::read(&prompts_path, &classifier)?;
    let names: Vec<String> = classifier.schema().attributes.keys().cloned().collect();
    let row = |weights: &str, scorer: &Scorer, psnr_db: Option<f64>| Row {
        weights: weights.to_string(),
        attributes: names.iter().cloned().zip(scorer.attributes.iter().map(|a| a.value())).collect(),
        position: scorer.position.value(),
        caption: scorer.caption.value(),
        psnr_db,
    };
    let report = |generation: Option<Generation>, rows: Vec<Row>| Report {
        model: args.model.display().to_string(),
        prompts: set.prompts.len(),
        seeds: usize::from(args.seeds),
        images: args.images.as_ref().map(|p| p.display().to_string()),
        generation,
        rows,
    };
    if let Some(path) = &args.images {
        let images = read_images(path)?;
        let scorer =
            score_images(&mut classifier, &set, images.view(), usize::from(args.seeds), usize::from(args.batch))
                .with_context(|| format!("{}: does not fit {}", path.display(), prompts_path.display()))?;
        println!(
            "{}: {} prompts × {} seeds, images from {}",
            args.model.display(),
            set.prompts.len(),
            args.seeds,
            path.display()
        );
        let rows = vec![row("images", &scorer, None)];
        print_header(&names);
        print_row(&rows[0]);
        return write_report(args.json.as_deref(), &report(None, rows));
    }

    let mut pipeline = DiffusersPipeline::open(&args.model, &options)?;
    let seeds: Vec<u64> = (0..u64::from(args.seeds)).map(|s| args.seed + s).collect();
    let mut template = GenerateRequest::new(Vec::new(), Vec::new());
    template.steps = usize::from(args.steps);
    template.guidance = args.guidance;
    template.sampler = args.sampler;
    let sampler = pipeline.sampler_settings(&template)?.kind;

    let norms = token_norms(pipeline.encode_prompts(&set.prompts)?.view());
    let total = set.prompts.len() * seeds.len();
    println!(
        "{}: {} prompts × {} seeds, {sampler} {} steps, guidance {}",
        args.model.display(),
        set.prompts.len(),
        seeds.len(),
        args.steps,
        args.guidance
    );
    println!(
        "text encoder: BOS row norm {:.2}, other rows median {:.2} (max {:.2}): BOS / median = {:.2}",
        norms.bos,
        norms.others_median,
        norms.others_max,
        norms.bos / norms.others_median
    );

    let mut run = |label: &str, pipeline: &mut DiffusersPipeline| -> anyhow::Result<Evaluation> {
        let bar = ProgressBar::new(total as u64).with_message(label.to_string());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} images  ETA {eta}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let result = evaluate(pipeline, &mut classifier, &set, &seeds, &template, usize::from(args.batch), |done| {
            bar.set_position(done as u64)
        });
        bar.finish_and_clear();
        Ok(result?)
    };
    let full = run("full precision", &mut pipeline)?;
    let mut rows = vec![row("fp32", &full.scorer, None)];
    print_header(&names);
    print_row(&rows[0]);
    if !args.w_bits.is_empty() {
        let unet_path = pipeline.unet().path().to_path_buf();
        let model = Model::load(&unet_path)?;
        let layers = discover_layers(&model, Component::Unet)?;
        let spec = QuantizerSpec::default();
        for &bits in &args.w_bits {
            let quantized = fake_quantize_weights(&model, &layers, bits, &spec.weight)?;
            pipeline.unet_mut().reload(&quantized, &options)?;
            let label = format!("W{bits}");
            let e = run(&label, &mut pipeline)?;
            let mut mse = Mse::default();
            mse.add(full.images.view(), e.images.view());
            rows.push(row(&label, &e.scorer, Some(mse.psnr_db())));
            print_row(rows.last().context("a row was just added")?);
        }
    }
    let generation = Generation {
        steps: args.steps,
        guidance: args.guidance,
        sampler: sampler.to_string(),
        bos_norm: norms.bos,
        other_tokens_median_norm: norms.others_median,
        other_tokens_max_norm: norms.others_max,
    };
    write_report(args.json.as_deref(), &report(Some(generation), rows))
}

fn write_report(path: Option<&Path>, report: &Report) -> anyhow::Result<()> {
    if let Some(path) = path {
        write_atomically(path, serde_json::to_string_pretty(report)?.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// Images [n, 3, H, W] from a float32 .npy file.
fn read_images(path: &Path) -> anyhow::Result<ArrayD<f32>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    ArrayD::<f32>::read_npy(file)
        .with_context(|| format!("{}: expected a float32 .npy array of images [n, 3, height, width]", path.display()))
}

fn print_header(names: &[String]) {
    let attributes: String = names.iter().map(|n| format!("{n:>9}")).collect();
    println!("{:<8}{attributes}{:>10}{:>9}{:>13}", "weights", "position", "caption", "PSNR vs FP");
}

fn print_row(row: &Row) {
    let attributes: String = row.attributes.iter().map(|(_, v)| format!("{v:>9.3}")).collect();
    let psnr = row.psnr_db.map_or("—".to_string(), |p| format!("{p:.1} dB"));
    println!("{:<8}{attributes}{:>10.3}{:>9.3}{psnr:>13}", row.weights, row.position, row.caption);
}
