//! `bitsearch sample`: generate with a denoiser file or a diffusers folder and write PNGs.

use crate::cli::SampleArgs;
use anyhow::{Context, bail};
use bitsearch_onnx::Model;
use bitsearch_pipeline::denoiser::{DenoiserConfig, DenoiserPipeline};
use bitsearch_pipeline::diffusers::{DiffusersPipeline, GenerateRequest};
use bitsearch_pipeline::image::save_samples;
use bitsearch_runtime::{Session, SessionOptions};
use bitsearch_types::write_atomically;
use ndarray::{ArrayD, Axis, Slice};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::path::Path;

/// Generated samples live in [-1, 1], the range diffusion models are trained on.
const SAMPLE_RANGE: (f32, f32) = (-1.0, 1.0);

pub fn run(args: &SampleArgs) -> anyhow::Result<()> {
    let seeds: Vec<u64> = (0..u64::from(args.num)).map(|i| args.seed + i).collect();
    let batches = seeds.chunks(usize::from(args.batch));
    // Every batch is written as it comes; --npy also needs them all at the end.
    let mut kept = Vec::new();
    let mut finish = |index: usize, samples: ArrayD<f32>| {
        write(args, index, &samples)?;
        if args.npy {
            kept.push(samples);
        }
        anyhow::Ok(())
    };
    if args.model.is_dir() {
        let mut pipeline = Diffusers::open(args)?;
        let latents = args.latents.as_deref().map(|path| read_latents(path, seeds.len())).transpose()?;
        for (i, batch) in batches.enumerate() {
            let first = i * usize::from(args.batch);
            let initial =
                latents.as_ref().map(|l| l.slice_axis(Axis(0), Slice::from(first..first + batch.len())).to_owned());
            finish(i, pipeline.generate(args, batch, initial)?)?;
        }
    } else {
        if let Some(latents) = &args.latents {
            bail!("{}: --latents applies to diffusers folders only", latents.display());
        }
        if args.prompt.is_some() {
            bail!(
                "{}: --prompt needs a diffusers folder with a text encoder, not a single denoiser file",
                args.model.display()
            );
        }
        let mut pipeline = denoiser(args)?;
        let spec = pipeline.spec();
        let kind = args.sampler.unwrap_or_else(|| spec.default_sampler());
        let settings = spec.settings(kind, usize::from(args.steps), f64::from(args.eta));
        log::info!("{}: {kind} sampler, {} steps, {} prediction", args.model.display(), args.steps, spec.prediction);
        for (i, batch) in batches.enumerate() {
            finish(i, pipeline.generate(&settings, batch).with_context(|| args.model.display().to_string())?)?;
        }
    }
    if args.npy {
        let views: Vec<_> = kept.iter().map(|a| a.view()).collect();
        let path = args.out.join("samples.npy");
        write_npy(&path, &ndarray::concatenate(Axis(0), &views)?)?;
        println!("{}", path.display());
    }
    Ok(())
}

fn denoiser(args: &SampleArgs) -> anyhow::Result<DenoiserPipeline> {
    let model = Model::load(&args.model)?;
    let session = Session::new(&model, &SessionOptions { device: args.device, ..Default::default() })?;
    let config = DenoiserConfig {
        time_input: args.time_input.clone(),
        time_kind: args.time_kind,
        prediction: args.prediction,
        sigma_min: f64::from(args.sigma_min),
        sigma_max: f64::from(args.sigma_max),
        conditions: args.conditions.clone(),
        dims: args.dims.iter().cloned().collect(),
        ..Default::default()
    };
    DenoiserPipeline::new(session, &config).with_context(|| args.model.display().to_string())
}

/// A diffusers folder and the prompt it is asked to draw.
struct Diffusers {
    pipeline: DiffusersPipeline,
    prompt: String,
}

impl Diffusers {
    fn open(args: &SampleArgs) -> anyhow::Result<Self> {
        let folder = args.model.display();
        let Some(prompt) = args.prompt.clone() else { bail!("{folder}: a diffusers folder needs --prompt") };
        if !args.conditions.is_empty()
            || args.prediction.is_some()
            || args.time_input.is_some()
            || args.time_kind.is_some()
        {
            bail!(
                "{folder}: --condition, --prediction, --time-input and --time-kind apply to single denoiser files; \
                 this folder's configs set them"
            );
        }
        let options = SessionOptions { device: args.device, ..Default::default() };
        Ok(Self { pipeline: DiffusersPipeline::open(&args.model, &options)?, prompt })
    }

    fn generate(
        &mut self,
        args: &SampleArgs,
        seeds: &[u64],
        initial: Option<ArrayD<f32>>,
    ) -> anyhow::Result<ArrayD<f32>> {
        let mut request = GenerateRequest::new(vec![self.prompt.clone()], seeds.to_vec());
        request.negative_prompt = Some(args.negative_prompt.clone()).filter(|p| !p.is_empty());
        request.steps = usize::from(args.steps);
        request.guidance = args.guidance;
        request.sampler = args.sampler;
        request.eta = f64::from(args.eta);
        request.initial = initial;
        Ok(self.pipeline.generate(&request)?.images)
    }
}

/// Writes batch `index` of the run and prints each file's path.
fn write(args: &SampleArgs, index: usize, samples: &ArrayD<f32>) -> anyhow::Result<()> {
    let first = index * usize::from(args.batch);
    for path in save_samples(samples.view(), SAMPLE_RANGE, &args.out, "sample_", first)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Latents [num, …] from a float32 .npy file.
fn read_latents(path: &Path, num: usize) -> anyhow::Result<ArrayD<f32>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let latents = ArrayD::<f32>::read_npy(file)
        .with_context(|| format!("{}: expected a float32 .npy array of latents", path.display()))?;
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
    let mut bytes = Vec::new();
    values.write_npy(&mut bytes)?;
    write_atomically(path, &bytes).with_context(|| format!("{}: cannot write", path.display()))
}
