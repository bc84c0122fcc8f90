//! The UNet of a diffusers folder and the denoiser the samplers call: one UNet run per step,
//! with classifier-free guidance done by batching the unconditional and conditional halves
//! together, or with LCM's guidance embedding fed to `timestep_cond` instead. An SDXL UNet also
//! takes the pooled text embedding and the size ids (`text_embeds`, `time_ids`).
//!
//! [`UnetDenoiser`] is public so that callers can change the UNet's weights from one step to
//! the next ([`UnetDenoiser::set_overrides`]) and read values captured on each run
//! ([`UnetDenoiser::extra_outputs`]).

use crate::error::PipelineError;
use crate::sampler::{Denoiser, SampleError};
use crate::sessions::DenoiserSessions;
use bitsearch_onnx::Model;
use bitsearch_runtime::{InputSpec, RuntimeError, Session, SessionOptions};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn, Slice, Zip};
use std::path::{Path, PathBuf};

const SAMPLE: &str = "sample";
const TIMESTEP: &str = "timestep";
const CONTEXT: &str = "encoder_hidden_states";
const TIMESTEP_COND: &str = "timestep_cond";
const TEXT_EMBEDS: &str = "text_embeds";
const TIME_IDS: &str = "time_ids";
const INPUTS: [&str; 6] = [SAMPLE, TIMESTEP, CONTEXT, TIMESTEP_COND, TEXT_EMBEDS, TIME_IDS];
/// Numbers in SDXL's `time_ids`: original size, crop corner, target size.
const TIME_ID_COUNT: usize = 6;

/// A loaded UNet and the layout of its inputs.
#[derive(Debug)]
pub struct Unet {
    sessions: DenoiserSessions,
    path: PathBuf,
    /// Declared [batch, channels, height, width] of `sample`.
    sample_shape: Vec<Option<usize>>,
    timestep: TimestepLayout,
    timestep_cond: Option<usize>,
    /// Declared width of `encoder_hidden_states`, where fixed.
    context_width: Option<usize>,
    /// Whether the UNet takes `text_embeds` and `time_ids`, and the declared width of
    /// `text_embeds` where fixed.
    text_time: Option<Option<usize>>,
}

/// How `timestep` is shaped: one value per batch item, one shared value, or a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimestepLayout {
    PerItem,
    Single,
    Scalar,
}

impl Unet {
    /// Loads `path` and checks its inputs: `sample`, `timestep` and `encoder_hidden_states`,
    /// optionally `timestep_cond` (LCM-distilled UNets), and `text_embeds` with `time_ids`
    /// (SDXL). A quantized UNet folder loads every model its manifest lists.
    pub fn open(path: &Path, options: &SessionOptions) -> Result<Self, PipelineError> {
        Self::from_sessions(DenoiserSessions::open(path, options)?, path)
    }

    /// Replaces the session with one built from `model` (the UNet itself, or a copy of it with
    /// its graph edited), keeping the path it was loaded from.
    pub fn reload(&mut self, model: &Model, options: &SessionOptions) -> Result<(), PipelineError> {
        self.install(DenoiserSessions::from_models(std::slice::from_ref(model), Vec::new(), options)?)
    }

    /// Replaces the sessions with ones built from edited copies of this UNet. The interface
    /// checked when it was opened stays: a window's cut reads the values crossing into it
    /// besides, or instead of, the UNet's own inputs.
    pub fn install(&mut self, sessions: DenoiserSessions) -> Result<(), PipelineError> {
        self.sessions = sessions;
        Ok(())
    }

    fn from_sessions(sessions: DenoiserSessions, path: &Path) -> Result<Self, PipelineError> {
        let session = sessions.first();
        let names = || session.inputs().iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
        if let Some(other) = session.inputs().iter().find(|s| !INPUTS.contains(&s.name.as_str())) {
            let (known, last) = INPUTS.split_at(INPUTS.len() - 1);
            return Err(PipelineError::file(
                path,
                format!("UNet input '{}' is not supported: only {} and {} are", other.name, known.join(", "), last[0]),
            ));
        }
        let get = |name: &str| session.inputs().iter().find(|s| s.name == name);
        let find = |name: &str| {
            get(name).ok_or_else(|| {
                PipelineError::file(path, format!("the UNet has no input '{name}' (its inputs: {})", names()))
            })
        };
        let sample = find(SAMPLE)?;
        if sample.shape.len() != 4 {
            return Err(PipelineError::file(
                path,
                format!("UNet input '{SAMPLE}' must have rank 4, it has {}", sample.shape.len()),
            ));
        }
        let timestep = match find(TIMESTEP)?.shape.as_slice() {
            [] => TimestepLayout::Scalar,
            [Some(1)] => TimestepLayout::Single,
            _ => TimestepLayout::PerItem,
        };
        let context_width = match find(CONTEXT)?.shape.as_slice() {
            [_, _, width] => *width,
            _ => return Err(PipelineError::file(path, format!("UNet input '{CONTEXT}' must have rank 3"))),
        };
        // [batch, width]; `width` must be `fixed` when given.
        let row = |spec: &InputSpec, fixed: Option<usize>| match spec.shape.as_slice() {
            [_, width] if fixed.is_none_or(|f| width.is_none_or(|w| w == f)) => Ok(*width),
            _ => Err(PipelineError::file(
                path,
                format!(
                    "UNet input '{}' must have shape [batch, {}], it has {:?}",
                    spec.name,
                    fixed.map_or("width".to_string(), |f| f.to_string()),
                    spec.shape
                ),
            )),
        };
        let timestep_cond = match get(TIMESTEP_COND) {
            None => None,
            Some(spec) => Some(row(spec, None)?.ok_or_else(|| {
                PipelineError::file(path, format!("UNet input '{TIMESTEP_COND}' must have a fixed width"))
            })?),
        };
        let text_time = match (get(TEXT_EMBEDS), get(TIME_IDS)) {
            (None, None) => None,
            (Some(text), Some(ids)) => {
                row(ids, Some(TIME_ID_COUNT))?;
                Some(row(text, None)?)
            }
            (Some(_), None) | (None, Some(_)) => {
                let (has, lacks) =
                    if get(TEXT_EMBEDS).is_some() { (TEXT_EMBEDS, TIME_IDS) } else { (TIME_IDS, TEXT_EMBEDS) };
                return Err(PipelineError::file(
                    path,
                    format!("the UNet takes '{has}' but not '{lacks}': an SDXL UNet takes both"),
                ));
            }
        };
        let sample_shape = sample.shape.clone();
        Ok(Self { sessions, path: path.to_path_buf(), sample_shape, timestep, timestep_cond, context_width, text_time })
    }

    /// Whether the UNet takes SDXL's `text_embeds` and `time_ids`.
    pub fn takes_text_time(&self) -> bool {
        self.text_time.is_some()
    }

    /// Checks that the text side's tensors in `conditioning` have the widths the UNet declares.
    pub(crate) fn check(&self, conditioning: &Conditioning) -> Result<(), PipelineError> {
        let fits = |input: &str, declared: Option<usize>, given: &ArrayD<f32>| {
            let given = given.shape().last().copied().unwrap_or(0);
            match declared {
                Some(declared) if declared != given => Err(PipelineError::file(
                    &self.path,
                    format!("UNet input '{input}' is {declared} wide, the text encoders give {given}"),
                )),
                _ => Ok(()),
            }
        };
        fits(CONTEXT, self.context_width, &conditioning.context)?;
        match &conditioning.text_time {
            Some(added) => fits(TEXT_EMBEDS, self.text_time.flatten(), &added.text_embeds),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Declared [batch, channels, height, width] of `sample` (None where symbolic).
    pub fn sample_shape(&self) -> &[Option<usize>] {
        &self.sample_shape
    }

    /// Width of `timestep_cond`, when the UNet takes LCM's guidance embedding.
    pub fn timestep_cond_width(&self) -> Option<usize> {
        self.timestep_cond
    }

    /// The (first) session itself, to run the UNet with inputs laid out by hand.
    pub fn session_mut(&mut self) -> &mut Session {
        self.sessions.first_mut()
    }

    /// The UNet's sessions (several for a step-aware quantized UNet).
    pub fn sessions(&self) -> &DenoiserSessions {
        &self.sessions
    }

    pub fn sessions_mut(&mut self) -> &mut DenoiserSessions {
        &mut self.sessions
    }

    /// One UNet run at time `t` for every item of `sample`, on the session of model `model`
    /// (None: the one that runs `step`). Returns the prediction, then the extra outputs the
    /// session was built with.
    pub fn run(&mut self, inputs: UnetInputs<'_>) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
        let UnetInputs { step, model, sample, t, context, timestep_cond, text_time, overrides } = inputs;
        let shape: &[usize] = match self.timestep {
            TimestepLayout::PerItem => &sample.shape()[..1],
            TimestepLayout::Single => &[1],
            TimestepLayout::Scalar => &[],
        };
        let time = ArrayD::from_elem(IxDyn(shape), t);
        let mut feeds = vec![(SAMPLE, sample), (TIMESTEP, time.view()), (CONTEXT, context)];
        feeds.extend(timestep_cond.map(|c| (TIMESTEP_COND, c)));
        if let Some(added) = text_time {
            feeds.extend([(TEXT_EMBEDS, added.text_embeds.view()), (TIME_IDS, added.time_ids.view())]);
        }
        let session = self
            .sessions
            .routed(step, model)
            .map_err(|message| RuntimeError::Run { model: self.path.display().to_string(), message })?;
        session.run(&feeds, overrides)
    }
}

/// The inputs of one [`Unet::run`].
#[derive(Debug, Clone)]
pub struct UnetInputs<'a> {
    /// The denoising step, which picks the session of a step-aware UNet.
    pub step: usize,
    /// The loaded model to run instead of the step's own (None: the step's).
    pub model: Option<usize>,
    pub sample: ArrayViewD<'a, f32>,
    pub t: f32,
    pub context: ArrayViewD<'a, f32>,
    pub timestep_cond: Option<ArrayViewD<'a, f32>>,
    /// SDXL's added conditions, batched like `context`.
    pub text_time: Option<&'a TextTime>,
    /// Initializers replaced for this run.
    pub overrides: &'a [(&'a str, ArrayViewD<'a, f32>)],
}

/// What the UNet is conditioned on for a whole generation.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// Text hidden states [batch, tokens, width]; under classifier-free guidance
    /// [2·batch, tokens, width] with the unconditional (negative-prompt) half first.
    pub context: ArrayD<f32>,
    /// The guidance scale when `context` holds both halves.
    pub guidance: Option<f32>,
    /// LCM's guidance embedding [batch, width] for UNets that take `timestep_cond`.
    pub timestep_cond: Option<ArrayD<f32>>,
    /// SDXL's added conditions, one row per row of `context`.
    pub text_time: Option<TextTime>,
}

/// SDXL's added conditions (diffusers' `added_cond_kwargs`).
#[derive(Debug, Clone, PartialEq)]
pub struct TextTime {
    /// The second text encoder's pooled, projected embedding [batch, width].
    pub text_embeds: ArrayD<f32>,
    /// [batch, 6]: original size (height, width), crop top-left (top, left) and target size
    /// (height, width), in pixels.
    pub time_ids: ArrayD<f32>,
}

impl TextTime {
    /// The conditions diffusers' SDXL pipeline gives an image of `size` (height, width) by
    /// default: original and target size `size`, crop corner (0, 0).
    pub fn new(text_embeds: ArrayD<f32>, (height, width): (usize, usize)) -> Self {
        let ids = [height as f32, width as f32, 0.0, 0.0, height as f32, width as f32];
        let time_ids = Array2::from_shape_fn((text_embeds.shape()[0], TIME_ID_COUNT), |(_, k)| ids[k]).into_dyn();
        Self { text_embeds, time_ids }
    }
}

/// The UNet as a [`Denoiser`]: `eps = eps_u + g·(eps_c − eps_u)` under guidance, the plain
/// prediction otherwise.
#[derive(Debug)]
pub struct UnetDenoiser<'u> {
    unet: &'u mut Unet,
    conditioning: Conditioning,
    overrides: Vec<(String, ArrayD<f32>)>,
    /// The loaded model that runs the next evaluations (None: the one of their step).
    model: Option<usize>,
    extras: Vec<ArrayD<f32>>,
}

impl<'u> UnetDenoiser<'u> {
    pub fn new(unet: &'u mut Unet, conditioning: Conditioning) -> Self {
        Self { unet, conditioning, overrides: Vec::new(), model: None, extras: Vec::new() }
    }

    pub fn conditioning(&self) -> &Conditioning {
        &self.conditioning
    }

    /// Weights to substitute on the following runs, until replaced; the names must be listed
    /// in the UNet's `SessionOptions::overridable`.
    pub fn set_overrides(&mut self, overrides: Vec<(String, ArrayD<f32>)>) {
        self.overrides = overrides;
    }

    /// Which of the UNet's loaded models runs the following evaluations (None: that of each step).
    pub fn set_model(&mut self, model: Option<usize>) {
        self.model = model;
    }

    /// The extra outputs of the last run, in the UNet's `SessionOptions::extra_outputs` order. Under
    /// guidance they cover the doubled batch, unconditional half first.
    pub fn extra_outputs(&self) -> &[ArrayD<f32>] {
        &self.extras
    }
}

impl Denoiser for UnetDenoiser<'_> {
    fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
        let batch = x.shape().first().copied().unwrap_or(0);
        let halves = if self.conditioning.guidance.is_some() { 2 } else { 1 };
        let context = &self.conditioning.context;
        if context.shape().first() != Some(&(halves * batch)) {
            return Err(SampleError::Denoiser(format!(
                "step {step}: text context of shape {:?} does not fit a batch of {batch}{}",
                context.shape(),
                if halves == 2 { " under guidance (it needs both halves)" } else { "" }
            )));
        }
        let doubled;
        let sample = if halves == 2 {
            doubled = ndarray::concatenate(Axis(0), &[x.view(), x.view()])
                .map_err(|e| SampleError::Denoiser(format!("step {step}: {e}")))?;
            doubled.view()
        } else {
            x.view()
        };
        let overrides: Vec<(&str, ArrayViewD<'_, f32>)> =
            self.overrides.iter().map(|(name, values)| (name.as_str(), values.view())).collect();
        let timestep_cond = self.conditioning.timestep_cond.as_ref().map(|c| c.view());
        let inputs = UnetInputs {
            step,
            model: self.model,
            sample,
            t,
            context: context.view(),
            timestep_cond,
            text_time: self.conditioning.text_time.as_ref(),
            overrides: &overrides,
        };
        let mut outputs = self.unet.run(inputs).map_err(|e| SampleError::Denoiser(format!("step {step}: {e}")))?;
        if outputs.is_empty() {
            return Err(SampleError::Denoiser(format!("step {step}: the UNet returned no output")));
        }
        let out = outputs.remove(0);
        self.extras = outputs;
        let Some(g) = self.conditioning.guidance else { return Ok(out) };
        if out.shape().first() != Some(&(2 * batch)) {
            return Err(SampleError::Denoiser(format!("step {step}: UNet output has shape {:?}", out.shape())));
        }
        let uncond = out.slice_axis(Axis(0), Slice::from(..batch));
        let cond = out.slice_axis(Axis(0), Slice::from(batch..));
        Ok(Zip::from(&uncond).and(&cond).map_collect(|&u, &c| u + g * (c - u)))
    }
}

/// diffusers' guidance-scale embedding of `w` (one per batch item) for `timestep_cond`:
/// `w·1000` times geometric frequencies from 1 down to 1/10000, sines then cosines, a zero
/// appended when `width` is odd. Shape [w.len(), width].
pub fn guidance_embedding(w: &[f32], width: usize) -> Array2<f32> {
    let half = width / 2;
    // diffusers divides by half − 1; a width below 4 would divide by zero there.
    let step = 10000f64.ln() / (half.max(2) - 1) as f64;
    Array2::from_shape_fn((w.len(), width), |(i, k)| {
        if k >= 2 * half {
            return 0.0;
        }
        let angle = f64::from(w[i]) * 1000.0 * (-step * (k % half) as f64).exp();
        (if k < half { angle.sin() } else { angle.cos() }) as f32
    })
}

#[cfg(test)]
mod tests {
    use super::guidance_embedding;

    #[test]
    fn guidance_embedding_is_sines_then_cosines_of_scaled_w() {
        let e = guidance_embedding(&[0.0, 0.5], 9);
        assert_eq!(e.shape(), &[2, 9]);
        // w = 0: all sines 0, all cosines 1, the odd tail 0.
        assert_eq!(e.row(0).to_vec(), [0., 0., 0., 0., 1., 1., 1., 1., 0.]);
        // w = 0.5 → 500 at frequency 1 and 500/10000 at the last of 4 frequencies.
        assert!((e[[1, 0]] - 500f32.sin()).abs() < 1e-5);
        assert!((e[[1, 3]] - 0.05f32.sin()).abs() < 1e-5);
        assert!((e[[1, 7]] - 0.05f32.cos()).abs() < 1e-5);
        assert_eq!(e[[1, 8]], 0.0);
    }
}
