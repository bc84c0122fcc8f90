//! `bitsearch sample`: generate with a denoiser file or a diffusers folder and write PNGs.

use crate::cli::printer::Printer;
use crate::cli::{SampleArgs, paths, settings};
use anyhow::{Context, bail};
use bitsearch_pipeline::diffusers::{DiffusersPipeline, GenerateRequest};
use bitsearch_pipeline::image::save_samples;
use bitsearch_pipeline::workload::{self, Unchanged, WorkloadSpec};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::write_atomically;
use ndarray::{ArrayD, Axis, Slice};
use ndarray_npy::WriteNpyExt;
use std::path::Path;

/// Generated samples live in [-1, 1], the range diffusion models are trained on.
const SAMPLE_RANGE: (f32, f32) = (-1.0, 1.0);

pub fn run(args: &SampleArgs) -> anyhow::Result<()> {
    paths::keep_apart(&[("--out", &args.out)], std::iter::once(args.model.as_path()).chain(args.latents.as_deref()))?;
    let spec = settings::sample(args)?;
    let batch = spec.batch;
    let seeds: Vec<u64> = (0..args.num as u64).map(|i| args.seed + i).collect();
    let mut out = Printer::stdout();
    // Every batch is written as it comes; --npy also needs them all at the end.
    let mut kept = Vec::new();
    let mut finish = |index: usize, samples: ArrayD<f32>| {
        write(&mut out, args, index * batch, &samples)?;
        if args.npy {
            kept.push(samples);
        }
        anyhow::Ok(())
    };
    if args.model.join("model_index.json").is_file() {
        let mut pipeline = Diffusers::open(args, &spec)?;
        let latents = args.latents.as_deref().map(|path| read_latents(path, seeds.len())).transpose()?;
        for (i, chunk) in seeds.chunks(batch).enumerate() {
            let first = i * batch;
            let initial =
                latents.as_ref().map(|l| l.slice_axis(Axis(0), Slice::from(first..first + chunk.len())).to_owned());
            finish(i, pipeline.generate(&spec, chunk, initial)?)?;
        }
    } else {
        if let Some(latents) = &args.latents {
            bail!("{}: --latents applies to diffusers folders only", latents.display());
        }
        if !spec.prompts.is_empty() {
            bail!(
                "{}: --prompt needs a diffusers folder with a text encoder, not a single denoiser file",
                args.model.display()
            );
        }
        // A file, a quantize folder, or a folder holding a denoiser alone (`unet/`, `transformer/`).
        let mut items = spec.clone();
        items.pair_every_with(seeds);
        let mut workload = workload::open(&args.model, &items).with_context(|| args.model.display().to_string())?;
        log::info!("{}: {} sampler, {} steps", args.model.display(), workload.sampler(), workload.steps());
        for b in 0..workload.batches() {
            finish(b, workload.run(b, &mut Unchanged).with_context(|| args.model.display().to_string())?)?;
        }
    }
    if args.npy {
        let views: Vec<_> = kept.iter().map(|a| a.view()).collect();
        let path = args.out.join("samples.npy");
        write_npy(&path, &ndarray::concatenate(Axis(0), &views)?)?;
        Printer::stdout().line(path.display())?;
    }
    Ok(())
}

/// A diffusers folder and the prompt it is asked to draw.
struct Diffusers {
    pipeline: DiffusersPipeline,
    prompt: String,
}

impl Diffusers {
    fn open(args: &SampleArgs, spec: &WorkloadSpec) -> anyhow::Result<Self> {
        let folder = args.model.display();
        let Some(prompt) = spec.prompts.first().cloned() else { bail!("{folder}: a diffusers folder needs --prompt") };
        if args.denoiser.any() {
            bail!(
                "{folder}: --condition, --prediction, --time-input and --time-kind apply to single denoiser files; \
                 this folder's configs set them"
            );
        }
        let options = SessionOptions::for_workload(spec);
        Ok(Self { pipeline: DiffusersPipeline::open(&args.model, &options)?, prompt })
    }

    fn generate(
        &mut self,
        spec: &WorkloadSpec,
        seeds: &[u64],
        initial: Option<ArrayD<f32>>,
    ) -> anyhow::Result<ArrayD<f32>> {
        let mut request = GenerateRequest::new(vec![self.prompt.clone()], seeds.to_vec());
        request.negative_prompt = spec.negative_prompt.clone();
        request.steps = spec.steps.unwrap_or(1);
        request.guidance = spec.guidance;
        request.sampler = spec.sampler;
        request.eta = spec.eta;
        request.initial = initial;
        request.size = workload::image_size(spec, &self.pipeline)?;
        Ok(self.pipeline.generate(&request)?.images)
    }
}

/// Writes the samples numbered from `first` and prints each file's path.
fn write(out: &mut Printer, args: &SampleArgs, first: usize, samples: &ArrayD<f32>) -> anyhow::Result<()> {
    // Latents (a lone denoiser's 4 channels) have no picture: --npy alone keeps them.
    let picture = matches!(samples.shape().get(1), Some(1 | 3));
    if args.npy && !picture {
        return Ok(());
    }
    if !picture {
        bail!(
            "{}: the samples have {} channels, not an image's 1 or 3 (latents): write them with --npy",
            args.model.display(),
            samples.shape().get(1).copied().unwrap_or(0)
        );
    }
    for path in save_samples(samples.view(), SAMPLE_RANGE, &args.out, "sample_", first)? {
        out.line(path.display())?;
    }
    Ok(())
}

/// Latents [num, …] from a float32 .npy file.
fn read_latents(path: &Path, num: usize) -> anyhow::Result<ArrayD<f32>> {
    let latents = bitsearch_records::npy::read(path, bitsearch_records::npy::MAX_ARRAY_BYTES)?;
    let latents = ArrayD::from_shape_vec(latents.shape, latents.values)?;
    if latents.shape().first() != Some(&num) {
        bail!(
            "{}: latents of shape {:?}, expected {num} of them (one per image, --num)",
            path.display(),
            latents.shape()
        );
    }
    Ok(latents)
}

fn write_npy(path: &Path, values: &ArrayD<f32>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let mut bytes = Vec::new();
    values.write_npy(&mut bytes)?;
    write_atomically(path, &bytes).with_context(|| format!("{}: cannot write", path.display()))
}
