//! Samplers: turn unit Gaussian noise into a sample by calling a denoising network once per
//! step. Everything is f32 over whole batches; schedule maths is done in f64.
//!
//! Two time domains exist. Discrete (DDPM) models see a noisy sample `x_t = √ᾱ·x0 + √(1−ᾱ)·ε`
//! and a training timestep; DDIM, Euler and LCM drive them. Sigma (EDM-style) models see
//! `x = x0 + σ·ε` unscaled together with `σ`, doing their own preconditioning; consistency and
//! EDM Euler sampling drive them.
//!
//! Each sampler is one file implementing [`Sampler`], listed once in [`SAMPLERS`]; its
//! [`SamplerKind`] variant (in `bitsearch_types`, as records name it) is its only other mention.

mod consistency;
mod ddim;
mod edm;
mod euler;
mod lcm;
mod maths;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bitsearch_records::{NoiseCorrection, StepNoise};
pub use bitsearch_types::generation::{Prediction, SamplerKind};
use ndarray::ArrayD;

use crate::noise::NoiseSource;
use crate::schedule::DiscreteSchedule;
use maths::{lin, vp_split};

/// Every sampler, in the order the CLI lists them; the first of each time domain is the default
/// for models of that domain. Adding a sampler is its file and a line here.
pub static SAMPLERS: [&dyn Sampler; 5] =
    [&ddim::Ddim, &euler::Euler, &lcm::Lcm, &consistency::Consistency, &edm::EdmEuler];

/// One sampling algorithm.
pub trait Sampler: Sync {
    /// The kind configs and records name it by.
    fn kind(&self) -> SamplerKind;
    /// The time domain of the models it drives.
    fn domain(&self) -> Domain;
    /// The diffusers scheduler class it reproduces, picked for folders whose config names it.
    fn scheduler_class(&self) -> Option<&'static str> {
        None
    }
    /// The time value of each step, after checking the settings only this sampler reads.
    fn times(&self, settings: &SamplerSettings) -> Result<Vec<f64>, SampleError>;
    /// For samplers that apply PTQD's noise correction: ᾱ of the network's input at step time
    /// `t`, to convert its output to ε. None: the sampler cannot apply a correction.
    fn input_alpha(&self) -> Option<fn(&DiscreteSchedule, f64) -> f64> {
        None
    }
    /// Runs every step from unit Gaussian `initial_noise` (scaled here as the domain needs).
    fn run(
        &self,
        run: &Run<'_>,
        denoiser: &mut dyn Denoiser,
        initial_noise: ArrayD<f32>,
        noise: &mut NoiseSource,
    ) -> Result<ArrayD<f32>, SampleError>;
}

/// The sampler of `kind`.
pub fn of(kind: SamplerKind) -> Result<&'static dyn Sampler, SampleError> {
    SAMPLERS
        .iter()
        .copied()
        .find(|s| s.kind() == kind)
        .ok_or_else(|| SampleError::Config(format!("no sampler implements {kind}")))
}

/// The default sampler for models of `domain`.
pub fn default_for(domain: &TimeDomain) -> SamplerKind {
    let wanted = domain.kind();
    SAMPLERS.iter().find(|s| s.domain() == wanted).map_or(SamplerKind::Ddim, |s| s.kind())
}

/// The CLI's help line for `--sampler`, e.g. `Sampler: ddim, euler (discrete-time models), …`.
pub fn help() -> String {
    let groups: Vec<String> = [Domain::Discrete, Domain::Sigma]
        .into_iter()
        .map(|d| format!("{} ({})", names_of(d, ", "), d.models()))
        .collect();
    format!("Sampler: {}.", groups.join(", "))
}

/// The names of the samplers of `domain`, joined by `sep` (the last pair by "or" when `sep` is ", ").
fn names_of(domain: Domain, sep: &str) -> String {
    let names: Vec<&str> = SAMPLERS.iter().filter(|s| s.domain() == domain).map(|s| s.kind().name()).collect();
    names.join(sep)
}

/// The names of the samplers of `domain`, as a choice: "a, b or c".
fn choice_of(domain: Domain) -> String {
    let all = names_of(domain, ", ");
    match all.rsplit_once(", ") {
        Some((head, last)) => format!("{head} or {last}"),
        None => all,
    }
}

/// One network evaluation. `x` is exactly what the network receives as its sample input
/// (already scaled where the sampler requires it), `t` the sampler's time (discrete timestep,
/// possibly fractional, or sigma; a denoiser may convert it for its network), `step` the
/// 0-based index of the denoising step (so callers can change the network per step, e.g.
/// quantize only some steps).
pub trait Denoiser {
    fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError>;
}

/// Why sampling could not run.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The network evaluation failed; carries the underlying error's message.
    #[error("denoiser failed: {0}")]
    Denoiser(String),
    /// The sampler settings cannot work; says what was expected.
    #[error("invalid sampler settings: {0}")]
    Config(String),
}

/// The two kinds of [`TimeDomain`], as a sampler declares which it drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Discrete,
    Sigma,
}

impl Domain {
    /// The models of this domain, in the CLI's words.
    fn models(self) -> &'static str {
        match self {
            Self::Discrete => "discrete-time models",
            Self::Sigma => "sigma models",
        }
    }
}

/// How the model measures noise level.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeDomain {
    /// Discrete training timesteps of a DDPM variance schedule.
    Discrete(DiscreteSchedule),
    /// Continuous sigma in `[sigma_min, sigma_max]`; `sigma_data` is the data std the model's
    /// preconditioning assumes (only v-prediction uses it here).
    Sigma { sigma_min: f64, sigma_max: f64, sigma_data: f64 },
}

/// The range of a sigma domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SigmaRange {
    pub min: f64,
    pub max: f64,
    pub data: f64,
}

impl TimeDomain {
    pub fn kind(&self) -> Domain {
        match self {
            Self::Discrete(_) => Domain::Discrete,
            Self::Sigma { .. } => Domain::Sigma,
        }
    }

    /// The discrete schedule the `kind` sampler needs, or an error naming the samplers that fit.
    fn schedule(&self, kind: SamplerKind) -> Result<&DiscreteSchedule, SampleError> {
        match self {
            Self::Discrete(schedule) => Ok(schedule),
            Self::Sigma { .. } => Err(SampleError::Config(format!(
                "the {kind} sampler needs a discrete-timestep (DDPM) model, but the model is sigma-parameterised; \
                 use {}",
                choice_of(Domain::Sigma)
            ))),
        }
    }

    /// The sigma range the `kind` sampler needs, or an error naming the samplers that fit.
    fn sigmas(&self, kind: SamplerKind) -> Result<SigmaRange, SampleError> {
        match *self {
            Self::Sigma { sigma_min, sigma_max, sigma_data } => {
                Ok(SigmaRange { min: sigma_min, max: sigma_max, data: sigma_data })
            }
            Self::Discrete(_) => Err(SampleError::Config(format!(
                "the {kind} sampler needs a sigma-parameterised (EDM) model, but the model uses discrete timesteps; \
                 use {}",
                choice_of(Domain::Discrete)
            ))),
        }
    }
}

/// Everything a sampling run needs besides the network and the noise.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    pub kind: SamplerKind,
    /// Network evaluations per sample.
    pub steps: usize,
    /// DDIM stochasticity in `[0, 1]`: 0 deterministic, 1 DDPM-like. Only DDIM uses it, but it is
    /// validated for every sampler.
    pub eta: f64,
    pub prediction: Prediction,
    pub domain: TimeDomain,
    /// LCM: length of the distillation timestep ladder the steps are picked from.
    pub original_inference_steps: usize,
    /// LCM: timestep multiplier in the boundary-condition scalings.
    pub timestep_scaling: f64,
    /// PTQD's correction of a quantized network's noise estimate (DDIM and Euler), fitted for
    /// exactly these timesteps.
    pub correction: Option<Arc<NoiseCorrection>>,
}

impl SamplerSettings {
    /// Settings with eta 0 and LCM's defaults (50 original steps, timestep scaling 10).
    pub fn new(kind: SamplerKind, steps: usize, prediction: Prediction, domain: TimeDomain) -> Self {
        Self {
            kind,
            steps,
            eta: 0.0,
            prediction,
            domain,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
            correction: None,
        }
    }
}

/// One validated run as a sampler sees it: the settings, the time of each step, and the noise
/// correction of each step when the network is a corrected quantized one.
#[derive(Debug)]
pub struct Run<'s> {
    pub settings: &'s SamplerSettings,
    pub times: &'s [f64],
    corrections: Option<&'s [StepNoise]>,
}

impl Run<'_> {
    /// x0 and ε of `out` at input `x` (at ᾱ `alpha_cumprod`), ε corrected and x0 recomputed from it.
    fn split(
        &self,
        step: usize,
        out: ArrayD<f32>,
        x: &ArrayD<f32>,
        alpha_cumprod: f64,
    ) -> Result<(ArrayD<f32>, ArrayD<f32>), SampleError> {
        let (x0, eps) = vp_split(self.settings.prediction, out, x, alpha_cumprod);
        let Some(noise) = self.noise(step) else { return Ok((x0, eps)) };
        let eps = crate::ptqd::correct(noise, eps).map_err(|e| SampleError::Denoiser(format!("step {step}: {e}")))?;
        let (sa, sb) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
        Ok((lin(x, 1.0 / sa, &eps, -sb / sa), eps))
    }

    fn noise(&self, step: usize) -> Option<&StepNoise> {
        self.corrections.and_then(|s| s.get(step))
    }
}

/// The `t` values fed to the network, one per step, in order.
pub fn timesteps(settings: &SamplerSettings) -> Result<Vec<f32>, SampleError> {
    Ok(plan(settings)?.iter().map(|&t| t as f32).collect())
}

/// Runs the sampler from unit Gaussian `initial_noise` (scaled here as the domain needs);
/// `noise` supplies the fresh noise of stochastic samplers.
pub fn sample(
    settings: &SamplerSettings,
    denoiser: &mut dyn Denoiser,
    initial_noise: ArrayD<f32>,
    noise: &mut NoiseSource,
) -> Result<ArrayD<f32>, SampleError> {
    let times = plan(settings)?;
    let corrections = corrections(settings, &times)?;
    of(settings.kind)?.run(&Run { settings, times: &times, corrections }, denoiser, initial_noise, noise)
}

/// The ᾱ of the sample the network receives at each step, for converting its output to ε: the
/// samplers that can apply a noise correction (DDIM, Euler) only.
pub fn step_alphas(settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
    let times = plan(settings)?;
    let input_alpha = of(settings.kind)?.input_alpha().ok_or_else(|| uncorrectable(settings.kind))?;
    let schedule = settings.domain.schedule(settings.kind)?;
    Ok(times.iter().map(|&t| input_alpha(schedule, t)).collect())
}

fn uncorrectable(kind: SamplerKind) -> SampleError {
    let names: Vec<&str> = SAMPLERS.iter().filter(|s| s.input_alpha().is_some()).map(|s| s.kind().name()).collect();
    SampleError::Config(format!(
        "PTQD's noise correction is fitted and applied by the {} samplers, not by {kind}",
        names.join(" and ")
    ))
}

/// The network output `out` at input `x` (at `alpha_cumprod`) as an ε estimate.
pub fn to_epsilon(pred: Prediction, out: ArrayD<f32>, x: &ArrayD<f32>, alpha_cumprod: f64) -> ArrayD<f32> {
    vp_split(pred, out, x, alpha_cumprod).1
}

/// The steps of the settings' noise correction, checked against the run's sampler and timesteps.
fn corrections<'s>(settings: &'s SamplerSettings, times: &[f64]) -> Result<Option<&'s [StepNoise]>, SampleError> {
    let Some(correction) = &settings.correction else { return Ok(None) };
    if of(settings.kind)?.input_alpha().is_none() {
        return Err(uncorrectable(settings.kind));
    }
    let fitted: Vec<f64> = correction.steps.iter().map(|s| s.timestep).collect();
    if settings.kind.name() != correction.sampler
        || fitted.len() != times.len()
        || fitted.iter().zip(times).any(|(a, b)| (a - b).abs() > 1e-6 * b.abs().max(1.0))
    {
        return Err(SampleError::Config(format!(
            "the model's noise correction was fitted for {} {} steps; this run is {} {} steps",
            correction.sampler,
            fitted.len(),
            settings.kind,
            times.len()
        )));
    }
    Ok(Some(&correction.steps))
}

/// The validated settings' time value of each step.
fn plan(settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
    if settings.steps == 0 {
        return Err(SampleError::Config("steps must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&settings.eta) {
        return Err(SampleError::Config(format!("eta must lie in [0, 1], got {}", settings.eta)));
    }
    of(settings.kind)?.times(settings)
}
