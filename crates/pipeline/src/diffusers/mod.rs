//! The diffusers/optimum ONNX folder pipeline: `model_index.json`, `scheduler/`, `tokenizer/`,
//! `text_encoder/`, `unet/` and `vae_decoder/` (and for SDXL `tokenizer_2/` and
//! `text_encoder_2/`), as `optimum-cli export onnx` and diffusers' ONNX export write them, run
//! as text-to-image generation.
//!
//! Prompts are tokenized and encoded once; the sampler then calls the UNet once per step (both
//! guidance halves in one batch), and the VAE decodes the final latents. Each image depends
//! only on its own seed, whatever else shares the batch.

mod layout;
mod prompt;
mod text;
mod tokenizer;
mod unet;
mod vae;

pub(crate) use layout::unet_sample_size;
pub use layout::{ModelIndex, TextKind, VaeConfig};
pub use prompt::PromptEmbeddings;
pub use text::{TokenNorms, token_norms};
pub use tokenizer::PromptTokenizer;
pub use unet::{Conditioning, TextTime, Unet, UnetDenoiser, UnetInputs, guidance_embedding};

use crate::error::PipelineError;
use crate::noise::{NoiseSource, batch_noise};
use crate::sampler::{self, Denoiser, SampleError, SamplerKind, SamplerSettings};
use crate::schedule::SchedulerConfig;
use bitsearch_runtime::SessionOptions;
use ndarray::ArrayD;
use prompt::PromptEncoder;
use std::path::{Path, PathBuf};
use vae::VaeDecoder;

/// One text-to-image generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// One prompt per seed, or a single prompt for every seed.
    pub prompts: Vec<String>,
    /// Replaces the empty prompt as the unconditional half of guidance (which an SDXL folder
    /// forcing zeros for empty prompts runs on zeros when this is None).
    pub negative_prompt: Option<String>,
    pub steps: usize,
    /// Classifier-free guidance scale; at most 1 runs the conditional half alone.
    pub guidance: f32,
    /// One image per seed.
    pub seeds: Vec<u64>,
    /// Overrides the sampler that the scheduler config's class maps to.
    pub sampler: Option<SamplerKind>,
    /// DDIM stochasticity in [0, 1].
    pub eta: f64,
    /// Image (height, width) in pixels; default: the UNet's declared sample size, else
    /// `unet/config.json`'s `sample_size`, times the VAE scale factor.
    pub size: Option<(usize, usize)>,
    /// Initial latents [seeds, channels, h, w] to start from instead of each seed's noise (to
    /// reproduce another implementation's run); seeds still drive any noise drawn mid-run.
    pub initial: Option<ArrayD<f32>>,
}

impl GenerateRequest {
    /// A request with Stable Diffusion's usual settings: 25 steps, guidance 7.5, eta 0.
    pub fn new(prompts: Vec<String>, seeds: Vec<u64>) -> Self {
        Self {
            prompts,
            negative_prompt: None,
            steps: 25,
            guidance: 7.5,
            seeds,
            sampler: None,
            eta: 0.0,
            size: None,
            initial: None,
        }
    }
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Raw VAE output [batch, 3, height, width], nominally in [-1, 1].
    pub images: ArrayD<f32>,
    /// Final latents [batch, channels, h, w] before the VAE scaling.
    pub latents: ArrayD<f32>,
}

/// A loaded diffusers/optimum ONNX folder.
#[derive(Debug)]
pub struct DiffusersPipeline {
    dir: PathBuf,
    index: ModelIndex,
    scheduler: SchedulerConfig,
    text: PromptEncoder,
    unet: Unet,
    vae: VaeDecoder,
    /// `sample_size` of `unet/config.json` (latent pixels), for UNets with symbolic sizes.
    config_sample_size: Option<(usize, usize)>,
}

impl DiffusersPipeline {
    /// Reads the folder's configs and tokenizers and builds the sessions. `unet` is how the
    /// UNet's session is built (its overridable weights and extra outputs are read back through
    /// [`UnetDenoiser`]); the text encoders and VAE take its device and threads.
    pub fn open(dir: impl AsRef<Path>, unet: &SessionOptions) -> Result<Self, PipelineError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(PipelineError::file(dir, "not a folder (expected a diffusers/optimum ONNX pipeline folder)"));
        }
        let index = layout::model_index(&dir.join("model_index.json"))?;
        let scheduler = layout::scheduler_config(&dir.join("scheduler").join("scheduler_config.json"))?;
        let vae_config = layout::vae_config(&dir.join("vae_decoder").join("config.json"))?;
        let config_sample_size = layout::unet_sample_size(&dir.join("unet").join("config.json"))?;
        let session = SessionOptions { device: unet.device, threads: unet.threads, ..Default::default() };
        let unet = Unet::open(&dir.join("unet").join("model.onnx"), unet)?;
        let sdxl = matches!(index.text, TextKind::Dual { .. });
        if unet.takes_text_time() != sdxl {
            let (listed, takes) =
                if sdxl { ("two", "no text_embeds or time_ids") } else { ("one", "text_embeds and time_ids") };
            return Err(PipelineError::file(
                unet.path(),
                format!(
                    "the UNet takes {takes}, but model_index.json lists {listed} text encoder{}: an SDXL UNet and \
                     only an SDXL UNet takes them",
                    if sdxl { "s" } else { "" }
                ),
            ));
        }
        let text = PromptEncoder::open(dir, index.text, &session)?;
        let vae = VaeDecoder::open(&dir.join("vae_decoder").join("model.onnx"), vae_config, &session)?;
        log::info!("{}: {} with {}", dir.display(), index.class_name, scheduler.class_name);
        Ok(Self { dir: dir.to_path_buf(), index, scheduler, text, unet, vae, config_sample_size })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model_index(&self) -> &ModelIndex {
        &self.index
    }

    pub fn scheduler(&self) -> &SchedulerConfig {
        &self.scheduler
    }

    /// The tokenizer of `text_encoder/`.
    pub fn tokenizer(&self) -> &PromptTokenizer {
        self.text.tokenizer()
    }

    pub fn vae_config(&self) -> VaeConfig {
        self.vae.config()
    }

    pub fn unet(&self) -> &Unet {
        &self.unet
    }

    pub fn unet_mut(&mut self) -> &mut Unet {
        &mut self.unet
    }

    /// What the text encoders give the UNet for `prompts`.
    pub fn encode_prompts(&mut self, prompts: &[String]) -> Result<PromptEmbeddings, PipelineError> {
        self.text.encode(prompts)
    }

    /// The sampler settings `request` runs with: its sampler, or the one the scheduler's class
    /// maps to, on the scheduler's schedule.
    pub fn sampler_settings(&self, request: &GenerateRequest) -> Result<SamplerSettings, PipelineError> {
        let kind = request.sampler.unwrap_or_else(|| {
            let (kind, note) = self.scheduler.default_sampler();
            if let Some(note) = note {
                log::warn!("{note}");
            }
            kind
        });
        let mut settings = self.scheduler.settings(kind, request.steps)?;
        settings.eta = request.eta;
        settings.correction = self.unet.sessions().correction();
        Ok(settings)
    }

    /// The UNet's conditioning for `request`. A UNet with `timestep_cond` gets diffusers' LCM
    /// guidance embedding of `guidance − 1` and no guidance batch; otherwise guidance above 1
    /// pairs every prompt with the negative (or empty) prompt. An SDXL UNet also gets the
    /// pooled embeddings and the size ids of the image size.
    pub fn conditioning(&mut self, request: &GenerateRequest) -> Result<Conditioning, PipelineError> {
        let prompts = self.prompts_per_seed(request)?;
        let cond = self.text.encode(&prompts)?;
        let lcm = self.unet.timestep_cond_width();
        let guidance = (lcm.is_none() && request.guidance > 1.0).then_some(request.guidance);
        let embeddings = match guidance {
            Some(_) => {
                let uncond = self.text.unconditional(request.negative_prompt.as_deref(), &cond)?;
                PromptEmbeddings::stack(&uncond, &cond)?
            }
            None => cond,
        };
        let timestep_cond = lcm.map(|width| guidance_embedding(&vec![request.guidance - 1.0; prompts.len()], width));
        let text_time = match embeddings.pooled {
            Some(pooled) => Some(TextTime::new(pooled, self.image_size(request.size)?)),
            None => None,
        };
        let conditioning = Conditioning {
            context: embeddings.context,
            guidance,
            timestep_cond: timestep_cond.map(|e| e.into_dyn()),
            text_time,
        };
        self.unet.check(&conditioning)?;
        Ok(conditioning)
    }

    /// Generates one image per seed.
    pub fn generate(&mut self, request: &GenerateRequest) -> Result<Generated, PipelineError> {
        self.generate_with(request, |denoiser, step, x, t| denoiser.eval(step, x, t))
    }

    /// Generates one image per seed, with every UNet evaluation going through `hook`, which
    /// gets the denoiser (to swap weights or read captured values) and the step's inputs, and
    /// returns the step's prediction.
    pub fn generate_with<F>(&mut self, request: &GenerateRequest, hook: F) -> Result<Generated, PipelineError>
    where
        F: FnMut(&mut UnetDenoiser<'_>, usize, &ArrayD<f32>, f32) -> Result<ArrayD<f32>, SampleError>,
    {
        let conditioning = self.conditioning(request)?;
        self.generate_from(request, conditioning, hook)
    }

    /// [`DiffusersPipeline::generate_with`] from conditioning computed beforehand (by
    /// [`DiffusersPipeline::conditioning`]), so that repeated generations of one request skip the
    /// text encoder.
    pub fn generate_from<F>(
        &mut self,
        request: &GenerateRequest,
        conditioning: Conditioning,
        hook: F,
    ) -> Result<Generated, PipelineError>
    where
        F: FnMut(&mut UnetDenoiser<'_>, usize, &ArrayD<f32>, f32) -> Result<ArrayD<f32>, SampleError>,
    {
        let settings = self.sampler_settings(request)?;
        self.unet.sessions_mut().prepare(settings.steps)?;
        let item_shape = self.latent_item_shape(request.size)?;
        let initial = match &request.initial {
            None => batch_noise(&item_shape, &request.seeds),
            Some(given) => {
                let expected: Vec<usize> = std::iter::once(request.seeds.len()).chain(item_shape).collect();
                if given.shape() != expected.as_slice() {
                    return Err(PipelineError::Request(format!(
                        "initial latents of shape {:?} do not fit: this pipeline needs {expected:?} (one latent per seed)",
                        given.shape()
                    )));
                }
                given.clone()
            }
        };
        let mut noise = NoiseSource::new(&request.seeds);
        let mut hooked = Hooked { denoiser: UnetDenoiser::new(&mut self.unet, conditioning), hook };
        let latents = sampler::sample(&settings, &mut hooked, initial, &mut noise)?;
        let images = self.vae.decode(&latents)?;
        Ok(Generated { images, latents })
    }

    /// Decodes latents [batch, channels, h, w] into images.
    pub fn decode(&mut self, latents: &ArrayD<f32>) -> Result<ArrayD<f32>, PipelineError> {
        self.vae.decode(latents)
    }

    fn prompts_per_seed(&self, request: &GenerateRequest) -> Result<Vec<String>, PipelineError> {
        match (request.prompts.len(), request.seeds.len()) {
            (_, 0) => Err(PipelineError::Request("give at least one seed (one image is made per seed)".into())),
            (1, n) => Ok(vec![request.prompts[0].clone(); n]),
            (p, n) if p == n => Ok(request.prompts.clone()),
            (p, n) => Err(PipelineError::Request(format!(
                "{p} prompts for {n} seeds: give one prompt per seed, or a single prompt for all"
            ))),
        }
    }

    /// Closes the text encoders' sessions, which reopen when prompts are next encoded: a run
    /// that has encoded all its prompts needs only the UNet and the VAE (SDXL's second
    /// encoder alone holds 0.7 billion parameters).
    pub fn release_text_encoders(&mut self) {
        self.text.release();
    }

    /// Pixels per latent pixel along each side (the VAE's scale factor).
    pub fn vae_scale_factor(&self) -> usize {
        self.vae.config().scale_factor
    }

    /// Image (height, width) in pixels: the requested size, or the UNet's.
    fn image_size(&self, size: Option<(usize, usize)>) -> Result<(usize, usize), PipelineError> {
        let factor = self.vae.config().scale_factor;
        let [_, h, w] = self.latent_item_shape(size)?;
        Ok((h * factor, w * factor))
    }

    /// [channels, h, w] of one latent, from the UNet's declared shape, the requested image
    /// size, or `unet/config.json`.
    fn latent_item_shape(&self, size: Option<(usize, usize)>) -> Result<[usize; 3], PipelineError> {
        let declared = self.unet.sample_shape();
        let unet_path = self.unet.path();
        let channels = declared[1]
            .ok_or_else(|| PipelineError::file(unet_path, "the UNet's sample input has a symbolic channel count"))?;
        let factor = self.vae.config().scale_factor;
        let requested = size
            .map(|(h, w)| {
                if h % factor != 0 || w % factor != 0 || h == 0 || w == 0 {
                    return Err(PipelineError::Request(format!(
                        "image size {h}×{w} must be a positive multiple of the VAE scale factor {factor}"
                    )));
                }
                Ok((h / factor, w / factor))
            })
            .transpose()?;
        let (h, w) = match (declared[2], declared[3], requested) {
            (Some(h), Some(w), Some(r)) if r != (h, w) => {
                return Err(PipelineError::Request(format!(
                    "the UNet takes {h}×{w} latents ({}×{} images); {}×{} images were asked for",
                    h * factor,
                    w * factor,
                    r.0 * factor,
                    r.1 * factor
                )));
            }
            (Some(h), Some(w), _) => (h, w),
            (_, _, Some(r)) => r,
            _ => self.config_sample_size.ok_or_else(|| {
                PipelineError::Request(
                    "the UNet's latent size is symbolic and unet/config.json gives no sample_size: give the image size"
                        .into(),
                )
            })?,
        };
        Ok([channels, h, w])
    }
}

/// Routes every evaluation through the caller's hook.
struct Hooked<'u, F> {
    denoiser: UnetDenoiser<'u>,
    hook: F,
}

impl<F> Denoiser for Hooked<'_, F>
where
    F: FnMut(&mut UnetDenoiser<'_>, usize, &ArrayD<f32>, f32) -> Result<ArrayD<f32>, SampleError>,
{
    fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
        (self.hook)(&mut self.denoiser, step, x, t)
    }
}
