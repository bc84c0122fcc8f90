//! `bitsearch sample`: generate with a denoiser file or a diffusers folder and write PNGs.

use crate::cli::SampleArgs;
use anyhow::Context;
use bitsearch_onnx::Model;
use bitsearch_pipeline::denoiser::{DenoiserConfig, DenoiserPipeline};
use bitsearch_pipeline::image::save_samples;
use bitsearch_runtime::{Session, SessionOptions};

/// Generated samples live in [-1, 1], the range diffusion models are trained on.
const SAMPLE_RANGE: (f32, f32) = (-1.0, 1.0);

pub fn run(args: &SampleArgs) -> anyhow::Result<()> {
    let seeds: Vec<u64> = (0..u64::from(args.num)).map(|i| args.seed + i).collect();
    let model = Model::load(&args.model)?;
    let session = Session::new(&model, &SessionOptions { device: args.device, ..Default::default() })?;
    let config = DenoiserConfig {
        prediction: args.prediction,
        sigma_min: f64::from(args.sigma_min),
        sigma_max: f64::from(args.sigma_max),
        conditions: args.conditions.clone(),
        dims: args.dims.iter().cloned().collect(),
        ..Default::default()
    };
    let label = args.model.display();
    let mut pipeline = DenoiserPipeline::new(session, &config).with_context(|| format!("{label}"))?;
    let spec = pipeline.spec();
    let kind = args.sampler.unwrap_or_else(|| spec.default_sampler());
    let settings = spec.settings(kind, usize::from(args.steps), f64::from(args.eta));
    log::info!("{label}: {kind} sampler, {} steps, {} prediction", args.steps, spec.prediction);
    for (chunk, batch_seeds) in seeds.chunks(usize::from(args.batch)).enumerate() {
        let samples = pipeline.generate(&settings, batch_seeds).with_context(|| format!("{label}"))?;
        let first = chunk * usize::from(args.batch);
        for path in save_samples(samples.view(), SAMPLE_RANGE, &args.out, "sample_", first)? {
            println!("{}", path.display());
        }
    }
    Ok(())
}
