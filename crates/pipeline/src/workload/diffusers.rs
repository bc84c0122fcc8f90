//! A diffusers/optimum folder: items are prompts paired with seeds. Prompts are encoded once; only
//! the UNet's session is swapped, the text encoder and VAE stay in float.

use super::{Result, StepControl, Workload, WorkloadSpec, batch_ranges};
use crate::diffusers::{Conditioning, DiffusersPipeline, GenerateRequest};
use crate::error::PipelineError;
use crate::sampler::{Denoiser, SamplerSettings};
use crate::sessions::DenoiserSessions;
use bitsearch_onnx::Model;
use bitsearch_runtime::{ActiveDevice, SessionOptions};
use ndarray::ArrayD;
use std::path::Path;

#[derive(Debug)]
pub struct DiffusersWorkload {
    pipeline: DiffusersPipeline,
    items: Vec<String>,
    /// One request and its encoded prompts per batch.
    requests: Vec<(GenerateRequest, Conditioning)>,
    sampler: String,
    steps: usize,
    device: ActiveDevice,
}

/// Steps when the config names none.
const DEFAULT_STEPS: usize = 10;

impl DiffusersWorkload {
    pub fn open(dir: &Path, config: &WorkloadSpec) -> Result<Self> {
        if !config.conditions.is_empty() || !config.condition_files.is_empty() {
            return Err(PipelineError::spec(
                "conditions",
                format!("{} is a diffusers folder: it takes prompts, not conditions", dir.display()),
            ));
        }
        if config.time_input.is_some() || config.time_kind.is_some() {
            return Err(PipelineError::spec(
                if config.time_input.is_some() { "time_input" } else { "time_kind" },
                format!("{} is a diffusers folder: its scheduler config describes the time input", dir.display()),
            ));
        }
        if config.prompts.is_empty() {
            return Err(PipelineError::spec(
                "prompts",
                format!("{} is a diffusers folder: give at least one prompt", dir.display()),
            ));
        }
        let options = SessionOptions::for_workload(config);
        let mut pipeline = DiffusersPipeline::open(dir, &options)?;
        let pairs: Vec<(&String, u64)> =
            config.pairs(config.prompts.len())?.into_iter().map(|(p, s)| (&config.prompts[p], s)).collect();
        let items = pairs.iter().map(|(p, s)| format!("{p:?} seed={s}")).collect();
        let size = image_size(config, &pipeline)?;
        let steps = config.steps.unwrap_or(DEFAULT_STEPS);
        pipeline.unet_mut().sessions_mut().prepare(steps)?;
        let mut requests = Vec::new();
        for range in batch_ranges(pairs.len(), config.batch) {
            let prompts = pairs[range.clone()].iter().map(|(p, _)| (*p).clone()).collect();
            let seeds = pairs[range].iter().map(|(_, s)| *s).collect();
            let mut request = GenerateRequest::new(prompts, seeds);
            request.negative_prompt = config.negative_prompt.clone();
            request.steps = steps;
            request.guidance = config.guidance;
            request.sampler = config.sampler;
            request.eta = config.eta;
            request.size = size;
            let conditioning = pipeline.conditioning(&request)?;
            requests.push((request, conditioning));
        }
        // Every prompt is encoded: the text encoders are not needed again.
        pipeline.release_text_encoders();
        let sampler = match requests.first() {
            Some((request, _)) => pipeline.sampler_settings(request)?.kind.to_string(),
            None => String::new(),
        };
        let device = pipeline.unet_mut().session_mut().device();
        Ok(Self { pipeline, items, requests, sampler, steps, device })
    }
}

/// Longest image side generated: 16384 pixels, far past any diffusion model's (SDXL's 1024);
/// past it a size is a typo whose latents would not fit in memory.
const MAX_IMAGE_SIDE: usize = 1 << 14;

/// The image size (pixels) of the latent size `dims` gives as the UNet's `height` and `width`
/// (both or neither): the folder then generates at that size instead of its config's
/// `sample_size`. Other dimension names are refused: nothing else of a folder is sized by them.
pub fn image_size(config: &WorkloadSpec, pipeline: &DiffusersPipeline) -> Result<Option<(usize, usize)>> {
    if let Some(name) = config.dims.keys().find(|name| !["height", "width"].contains(&name.as_str())) {
        return Err(PipelineError::spec(
            format!("--dim {name}"),
            "a diffusers folder takes --dim height and width (the latent size) and no other dimension",
        ));
    }
    let factor = pipeline.vae_scale_factor();
    match (config.dims.get("height"), config.dims.get("width")) {
        (Some(&h), Some(&w)) => {
            let side = |name: &str, latent: usize| {
                latent.checked_mul(factor).filter(|&p| (1..=MAX_IMAGE_SIDE).contains(&p)).ok_or_else(|| {
                    PipelineError::spec(
                        format!("--dim {name}"),
                        format!("{latent} latent pixels make an image side outside 1..={MAX_IMAGE_SIDE} pixels"),
                    )
                })
            };
            Ok(Some((side("height", h)?, side("width", w)?)))
        }
        (None, None) => Ok(None),
        (given, _) => Err(PipelineError::spec(
            "dims",
            format!(
                "give the latent size whole: --dim height=H --dim width=W (only {} was given)",
                if given.is_some() { "height" } else { "width" }
            ),
        )),
    }
}

impl Workload for DiffusersWorkload {
    fn model(&self) -> Result<Model> {
        Ok(Model::load(self.pipeline.unet().path())?)
    }

    fn kind(&self) -> &'static str {
        "diffusers"
    }

    fn items(&self) -> &[String] {
        &self.items
    }

    fn batches(&self) -> usize {
        self.requests.len()
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn sampler(&self) -> String {
        self.sampler.clone()
    }

    fn settings(&self) -> Result<SamplerSettings> {
        let (request, _) = self.requests.first().ok_or_else(|| PipelineError::Request("no items".into()))?;
        self.pipeline.sampler_settings(request)
    }

    fn device(&self) -> ActiveDevice {
        self.device
    }

    fn install(&mut self, sessions: DenoiserSessions) -> Result<()> {
        self.pipeline.unet_mut().install(sessions)
    }

    fn run(&mut self, batch: usize, control: &mut dyn StepControl) -> Result<ArrayD<f32>> {
        let (request, conditioning) = &self.requests[batch];
        let generated = self.pipeline.generate_from(request, conditioning.clone(), |denoiser, step, x, t| {
            denoiser.set_model(control.model(batch, step));
            control.step(batch, step, &mut |overrides| {
                denoiser.set_overrides(overrides.iter().map(|(n, v)| (n.to_string(), v.to_owned())).collect());
                let prediction = denoiser.eval(step, x, t)?;
                Ok(std::iter::once(prediction).chain(denoiser.extra_outputs().iter().cloned()).collect())
            })
        })?;
        Ok(generated.images)
    }
}
