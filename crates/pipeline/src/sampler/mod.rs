//! Samplers: turn unit Gaussian noise into a sample by calling a denoising network once per
//! step. Everything is f32 over whole batches; schedule maths is done in f64.
//!
//! Two time domains exist. Discrete (DDPM) models see a noisy sample `x_t = √ᾱ·x0 + √(1−ᾱ)·ε`
//! and a training timestep; DDIM, Euler and LCM drive them. Sigma (EDM-style) models see
//! `x = x0 + σ·ε` unscaled together with `σ`, doing their own preconditioning; consistency and
//! EDM Euler sampling drive them.

mod consistency;
mod ddim;
mod edm;
mod euler;
mod lcm;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::str::FromStr;

use std::sync::Arc;

use bitsearch_records::{NoiseCorrection, StepNoise};
use ndarray::{ArrayD, Zip};
use serde::{Deserialize, Serialize};

use crate::noise::NoiseSource;
use crate::schedule::{DiscreteSchedule, KARRAS_RHO, karras_sigmas};

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

/// What the network outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The noise ε.
    #[default]
    Epsilon,
    /// `v = √ᾱ·ε − √(1−ᾱ)·x0` (in the sigma domain, with `sigma_data` in place of 1).
    VPrediction,
    /// The clean sample itself, as preconditioned EDM and consistency models output.
    Sample,
    /// The score `∇ₓ log p(x)` of the noisy sample's density, as score-SDE models output:
    /// `−ε/√(1−ᾱ)` on a discrete schedule, `(x0 − x)/σ²` in the sigma domain.
    Score,
}

impl Prediction {
    const ALL: [Self; 4] = [Self::Epsilon, Self::VPrediction, Self::Sample, Self::Score];

    /// diffusers' name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Epsilon => "epsilon",
            Self::VPrediction => "v_prediction",
            Self::Sample => "sample",
            Self::Score => "score",
        }
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Prediction {
    type Err = SampleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            SampleError::Config(format!(
                "unknown prediction type {s:?}; expected epsilon, v_prediction, sample or score"
            ))
        })
    }
}

/// The sampling algorithm; the first three need a discrete schedule, the last two a sigma domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    Ddim,
    Euler,
    Lcm,
    Consistency,
    EdmEuler,
}

impl SamplerKind {
    pub const ALL: [Self; 5] = [Self::Ddim, Self::Euler, Self::Lcm, Self::Consistency, Self::EdmEuler];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddim => "ddim",
            Self::Euler => "euler",
            Self::Lcm => "lcm",
            Self::Consistency => "consistency",
            Self::EdmEuler => "edm-euler",
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplerKind {
    type Err = SampleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            SampleError::Config(format!(
                "unknown sampler {s:?}; expected one of ddim, euler, lcm, consistency, edm-euler"
            ))
        })
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

/// The `t` values fed to the network, one per step, in order.
pub fn timesteps(settings: &SamplerSettings) -> Result<Vec<f32>, SampleError> {
    Ok(plan(settings)?.times().iter().map(|&t| t as f32).collect())
}

/// Runs the sampler from unit Gaussian `initial_noise` (scaled here as the domain needs);
/// `noise` supplies the fresh noise of stochastic samplers.
pub fn sample(
    settings: &SamplerSettings,
    denoiser: &mut dyn Denoiser,
    initial_noise: ArrayD<f32>,
    noise: &mut NoiseSource,
) -> Result<ArrayD<f32>, SampleError> {
    let pred = settings.prediction;
    let plan = plan(settings)?;
    let correction = corrections(settings, &plan)?;
    let correct = Correct { pred, steps: correction };
    match plan {
        Plan::Ddim(schedule, ts) => ddim::run(schedule, &ts, settings.eta, &correct, denoiser, initial_noise, noise),
        Plan::Euler(schedule, ts) => euler::run(schedule, &ts, &correct, denoiser, initial_noise),
        Plan::Lcm(schedule, ts) => {
            lcm::run(schedule, &ts, settings.timestep_scaling, pred, denoiser, initial_noise, noise)
        }
        Plan::Consistency { sigmas, sigma_min, sigma_data } => {
            consistency::run(&sigmas, sigma_min, sigma_data, pred, denoiser, initial_noise, noise)
        }
        Plan::EdmEuler { sigmas, sigma_data } => edm::run(&sigmas, sigma_data, pred, denoiser, initial_noise),
    }
}

/// The ᾱ of the sample the network receives at each step, for converting its output to ε: the
/// samplers that can apply a noise correction (DDIM, Euler) only.
pub fn step_alphas(settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
    match plan(settings)? {
        Plan::Ddim(schedule, ts) => Ok(ts.iter().map(|&t| schedule.alpha_cumprod_at(t)).collect()),
        Plan::Euler(schedule, ts) => Ok(ts.iter().map(|&t| euler::input_alpha(schedule, t)).collect()),
        _ => Err(uncorrectable(settings.kind)),
    }
}

fn uncorrectable(kind: SamplerKind) -> SampleError {
    SampleError::Config(format!(
        "PTQD's noise correction is fitted and applied by the ddim and euler samplers, not by {kind}"
    ))
}

/// The network output `out` at input `x` (at `alpha_cumprod`) as an ε estimate.
pub fn to_epsilon(pred: Prediction, out: ArrayD<f32>, x: &ArrayD<f32>, alpha_cumprod: f64) -> ArrayD<f32> {
    vp_split(pred, out, x, alpha_cumprod).1
}

/// The steps of the settings' noise correction, checked against the run's sampler and timesteps.
fn corrections<'s>(settings: &'s SamplerSettings, plan: &Plan<'_>) -> Result<Option<&'s [StepNoise]>, SampleError> {
    let Some(correction) = &settings.correction else { return Ok(None) };
    if !matches!(plan, Plan::Ddim(..) | Plan::Euler(..)) {
        return Err(uncorrectable(settings.kind));
    }
    let times = plan.times();
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

/// How a sampler turns a network output into (x0, ε): the prediction type, and the noise
/// correction of each step when the network is a corrected quantized one.
struct Correct<'s> {
    pred: Prediction,
    steps: Option<&'s [StepNoise]>,
}

impl Correct<'_> {
    /// x0 and ε of `out` at input `x` (at ᾱ `alpha_cumprod`), ε corrected and x0 recomputed from it.
    fn split(
        &self,
        step: usize,
        out: ArrayD<f32>,
        x: &ArrayD<f32>,
        alpha_cumprod: f64,
    ) -> Result<(ArrayD<f32>, ArrayD<f32>), SampleError> {
        let (x0, eps) = vp_split(self.pred, out, x, alpha_cumprod);
        let Some(noise) = self.noise(step) else { return Ok((x0, eps)) };
        let eps = crate::ptqd::correct(noise, eps).map_err(|e| SampleError::Denoiser(format!("step {step}: {e}")))?;
        let (sa, sb) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
        Ok((lin(x, 1.0 / sa, &eps, -sb / sa), eps))
    }

    fn noise(&self, step: usize) -> Option<&StepNoise> {
        self.steps.and_then(|s| s.get(step))
    }
}

/// Validated settings together with the time values each step uses.
enum Plan<'a> {
    Ddim(&'a DiscreteSchedule, Vec<f64>),
    Euler(&'a DiscreteSchedule, Vec<f64>),
    Lcm(&'a DiscreteSchedule, Vec<f64>),
    Consistency { sigmas: Vec<f64>, sigma_min: f64, sigma_data: f64 },
    EdmEuler { sigmas: Vec<f64>, sigma_data: f64 },
}

impl Plan<'_> {
    fn times(&self) -> &[f64] {
        match self {
            Plan::Ddim(_, ts) | Plan::Euler(_, ts) | Plan::Lcm(_, ts) => ts,
            Plan::Consistency { sigmas, .. } | Plan::EdmEuler { sigmas, .. } => sigmas,
        }
    }
}

fn plan(settings: &SamplerSettings) -> Result<Plan<'_>, SampleError> {
    let steps = settings.steps;
    if steps == 0 {
        return Err(SampleError::Config("steps must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&settings.eta) {
        return Err(SampleError::Config(format!("eta must lie in [0, 1], got {}", settings.eta)));
    }
    match (settings.kind, &settings.domain) {
        (SamplerKind::Ddim, TimeDomain::Discrete(s)) => Ok(Plan::Ddim(s, ddim::timesteps(s, steps)?)),
        (SamplerKind::Euler, TimeDomain::Discrete(s)) => Ok(Plan::Euler(s, s.timesteps(steps)?)),
        (SamplerKind::Lcm, TimeDomain::Discrete(s)) => {
            if !(settings.timestep_scaling.is_finite() && settings.timestep_scaling > 0.0) {
                return Err(SampleError::Config(format!(
                    "lcm timestep_scaling must be a positive number, got {}",
                    settings.timestep_scaling
                )));
            }
            Ok(Plan::Lcm(s, lcm::timesteps(s, steps, settings.original_inference_steps)?))
        }
        (SamplerKind::Consistency, &TimeDomain::Sigma { sigma_min, sigma_max, sigma_data }) => {
            // The last rung (sigma_min) is left out: re-noising to the model's floor adds nothing,
            // so every evaluation lands on a noise level that still corrects the estimate.
            let mut sigmas = sigma_ladder(steps + 1, sigma_min, sigma_max, sigma_data)?;
            sigmas.pop();
            Ok(Plan::Consistency { sigmas, sigma_min, sigma_data })
        }
        (SamplerKind::EdmEuler, &TimeDomain::Sigma { sigma_min, sigma_max, sigma_data }) => {
            Ok(Plan::EdmEuler { sigmas: sigma_ladder(steps, sigma_min, sigma_max, sigma_data)?, sigma_data })
        }
        (kind, TimeDomain::Discrete(_)) => Err(SampleError::Config(format!(
            "the {kind} sampler needs a sigma-parameterised (EDM) model, but the model uses discrete timesteps; \
             use ddim, euler or lcm"
        ))),
        (kind, TimeDomain::Sigma { .. }) => Err(SampleError::Config(format!(
            "the {kind} sampler needs a discrete-timestep (DDPM) model, but the model is sigma-parameterised; \
             use consistency or edm-euler"
        ))),
    }
}

/// Karras sigmas for `steps` evaluations, after checking the sigma domain makes sense.
fn sigma_ladder(steps: usize, sigma_min: f64, sigma_max: f64, sigma_data: f64) -> Result<Vec<f64>, SampleError> {
    // Written as one positive test so that NaN anywhere fails it.
    if !(0.0 < sigma_min && sigma_min < sigma_max && sigma_max.is_finite() && sigma_data > 0.0) {
        return Err(SampleError::Config(format!(
            "sigma domain needs 0 < sigma_min < sigma_max and sigma_data > 0, got sigma_min {sigma_min}, \
             sigma_max {sigma_max}, sigma_data {sigma_data}"
        )));
    }
    Ok(karras_sigmas(steps, sigma_min, sigma_max, KARRAS_RHO))
}

/// Calls the network and checks it returned a tensor shaped like its input.
fn eval(denoiser: &mut dyn Denoiser, step: usize, x: &ArrayD<f32>, t: f64) -> Result<ArrayD<f32>, SampleError> {
    let out = denoiser.eval(step, x, t as f32)?;
    if out.shape() != x.shape() {
        return Err(SampleError::Denoiser(format!(
            "step {step}: network output has shape {:?}, expected the sample's shape {:?}",
            out.shape(),
            x.shape()
        )));
    }
    Ok(out)
}

/// `ca·a + cb·b` elementwise; both arrays share the sample's shape.
fn lin(a: &ArrayD<f32>, ca: f64, b: &ArrayD<f32>, cb: f64) -> ArrayD<f32> {
    let (ca, cb) = (ca as f32, cb as f32);
    Zip::from(a).and(b).map_collect(|&a, &b| ca * a + cb * b)
}

/// Clean-sample estimate from a network output on `x = √ᾱ·x0 + √(1−ᾱ)·ε`.
fn vp_x0(pred: Prediction, out: &ArrayD<f32>, x: &ArrayD<f32>, alpha_cumprod: f64) -> ArrayD<f32> {
    let (sa, sb) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
    match pred {
        Prediction::Epsilon => lin(x, 1.0 / sa, out, -sb / sa),
        Prediction::Sample => out.clone(),
        Prediction::VPrediction => lin(x, sa, out, -sb),
        Prediction::Score => lin(x, 1.0 / sa, out, sb * sb / sa),
    }
}

/// Clean-sample and noise estimates from a network output on `x = √ᾱ·x0 + √(1−ᾱ)·ε`.
fn vp_split(pred: Prediction, out: ArrayD<f32>, x: &ArrayD<f32>, alpha_cumprod: f64) -> (ArrayD<f32>, ArrayD<f32>) {
    let x0 = vp_x0(pred, &out, x, alpha_cumprod);
    let (sa, sb) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
    let eps = match pred {
        Prediction::Epsilon => out,
        Prediction::Sample => lin(x, 1.0 / sb, &x0, -sa / sb),
        Prediction::VPrediction => lin(&out, sa, x, sb),
        Prediction::Score => out.mapv(|score| (-sb * f64::from(score)) as f32),
    };
    (x0, eps)
}

/// Clean-sample estimate `D(x, σ)` from a network output on `x = x0 + σ·ε`.
fn sigma_x0(pred: Prediction, out: ArrayD<f32>, x: &ArrayD<f32>, sigma: f64, sigma_data: f64) -> ArrayD<f32> {
    match pred {
        Prediction::Sample => out,
        Prediction::Epsilon => lin(x, 1.0, &out, -sigma),
        Prediction::VPrediction => {
            let total = sigma * sigma + sigma_data * sigma_data;
            lin(x, sigma_data * sigma_data / total, &out, -sigma * sigma_data / total.sqrt())
        }
        Prediction::Score => lin(x, 1.0, &out, sigma * sigma),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, Axis};

    use super::test_support::*;
    use super::*;
    use crate::noise::batch_noise;
    use crate::schedule::TimestepSpacing;

    fn discrete() -> TimeDomain {
        TimeDomain::Discrete(sd_schedule(TimestepSpacing::Leading, 1))
    }

    #[test]
    fn names_round_trip() {
        for kind in SamplerKind::ALL {
            assert_eq!(kind.to_string().parse::<SamplerKind>().unwrap(), kind);
        }
        assert_eq!("edm-euler".parse::<SamplerKind>().unwrap(), SamplerKind::EdmEuler);
        for pred in Prediction::ALL {
            assert_eq!(pred.to_string().parse::<Prediction>().unwrap(), pred);
        }
        assert_eq!("v_prediction".parse::<Prediction>().unwrap(), Prediction::VPrediction);
        assert!(matches!("heun".parse::<SamplerKind>(), Err(SampleError::Config(_))));
        assert!(matches!("v".parse::<Prediction>(), Err(SampleError::Config(_))));
    }

    #[test]
    fn every_sampler_calls_the_network_once_per_step_at_the_reported_times() {
        for kind in SamplerKind::ALL {
            let domain = match kind {
                SamplerKind::Consistency | SamplerKind::EdmEuler => edm_domain(),
                _ => discrete(),
            };
            let settings = SamplerSettings::new(kind, 7, Prediction::Epsilon, domain);
            let (out, calls) = run_gaussian(&settings, [1, 2]);
            assert_eq!(out.shape(), &[2, 4, 50, 50]);
            assert_calls_match_timesteps(&settings, &calls);
        }
    }

    #[test]
    fn all_prediction_types_give_the_same_trajectory() {
        let cases =
            [(SamplerKind::Ddim, discrete()), (SamplerKind::Euler, discrete()), (SamplerKind::EdmEuler, edm_domain())];
        for (kind, domain) in cases {
            let outputs: Vec<ArrayD<f32>> = Prediction::ALL
                .into_iter()
                .map(|pred| run_gaussian(&SamplerSettings::new(kind, 20, pred, domain.clone()), [1, 2]).0)
                .collect();
            for other in &outputs[1..] {
                let diff = max_diff(&outputs[0], other);
                assert!(diff < 1e-3, "{kind}: predictions disagree by {diff}");
            }
        }
    }

    #[test]
    fn batch_items_do_not_depend_on_their_neighbours() {
        let mut settings = SamplerSettings::new(SamplerKind::Ddim, 10, Prediction::Epsilon, discrete());
        settings.eta = 1.0;
        let pair = run_gaussian(&settings, [1, 2]).0;
        let alone = {
            let mut denoiser = Gaussian::for_settings(&settings);
            let initial = batch_noise(&ITEM_SHAPE, &[2]);
            sample(&settings, &mut denoiser, initial, &mut NoiseSource::new(&[2])).unwrap()
        };
        assert_eq!(pair.index_axis(Axis(0), 1), alone.index_axis(Axis(0), 0));
    }

    fn config_error(settings: &SamplerSettings, expect: &str) {
        let mut denoiser = Gaussian::for_settings(settings);
        let result = sample(settings, &mut denoiser, batch_noise(&[3], &[1]), &mut NoiseSource::new(&[1]));
        match result {
            Err(SampleError::Config(msg)) => assert!(msg.contains(expect), "{msg:?} lacks {expect:?}"),
            other => panic!("expected a config error mentioning {expect:?}, got {other:?}"),
        }
        assert!(timesteps(settings).is_err());
        assert!(denoiser.calls.is_empty());
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let base = |kind, domain| SamplerSettings::new(kind, 4, Prediction::Epsilon, domain);
        config_error(&SamplerSettings::new(SamplerKind::Ddim, 0, Prediction::Epsilon, discrete()), "steps");
        config_error(&SamplerSettings::new(SamplerKind::Ddim, 1001, Prediction::Epsilon, discrete()), "steps");
        for eta in [-0.1, 1.5, f64::NAN] {
            let mut s = base(SamplerKind::Ddim, discrete());
            s.eta = eta;
            config_error(&s, "eta");
        }
        for kind in [SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::Lcm] {
            config_error(&base(kind, edm_domain()), "discrete-timestep");
        }
        for kind in [SamplerKind::Consistency, SamplerKind::EdmEuler] {
            config_error(&base(kind, discrete()), "sigma-parameterised");
            for (sigma_min, sigma_max, sigma_data) in
                [(0.0, 80.0, 0.5), (1.0, 1.0, 0.5), (0.002, 80.0, 0.0), (0.002, f64::NAN, 0.5)]
            {
                config_error(&base(kind, TimeDomain::Sigma { sigma_min, sigma_max, sigma_data }), "sigma_min");
            }
        }
        let mut lcm = base(SamplerKind::Lcm, discrete());
        lcm.steps = 51;
        config_error(&lcm, "original_inference_steps");
        lcm.steps = 4;
        for original in [0, 1001] {
            lcm.original_inference_steps = original;
            config_error(&lcm, "original_inference_steps");
        }
        lcm.original_inference_steps = 50;
        lcm.timestep_scaling = 0.0;
        config_error(&lcm, "timestep_scaling");
    }

    #[test]
    fn noise_for_the_wrong_batch_is_a_config_error() {
        let mut settings = SamplerSettings::new(SamplerKind::Ddim, 4, Prediction::Epsilon, discrete());
        settings.eta = 1.0;
        let mut denoiser = Gaussian::for_settings(&settings);
        let result = sample(&settings, &mut denoiser, batch_noise(&[3], &[1, 2]), &mut NoiseSource::new(&[1]));
        assert!(matches!(result, Err(SampleError::Config(_))), "{result:?}");
    }

    /// Answers with a fixed result, to exercise how the samplers treat a misbehaving network.
    struct Broken(Result<ArrayD<f32>, String>);

    impl Denoiser for Broken {
        fn eval(&mut self, _: usize, _: &ArrayD<f32>, _: f32) -> Result<ArrayD<f32>, SampleError> {
            self.0.clone().map_err(SampleError::Denoiser)
        }
    }

    #[test]
    fn network_failures_and_wrong_shapes_are_denoiser_errors() {
        let settings = SamplerSettings::new(SamplerKind::Euler, 4, Prediction::Epsilon, discrete());
        let run = |mut net: Broken| sample(&settings, &mut net, batch_noise(&[3], &[1]), &mut NoiseSource::new(&[1]));
        match run(Broken(Err("session exploded".into()))) {
            Err(SampleError::Denoiser(msg)) => assert_eq!(msg, "session exploded"),
            other => panic!("{other:?}"),
        }
        match run(Broken(Ok(batch_noise(&[4], &[1])))) {
            Err(SampleError::Denoiser(msg)) => assert!(msg.contains("shape"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    /// Channel biases of [`Corrupted`], one per channel of [`ITEM_SHAPE`].
    const BIAS: [f32; 4] = [0.1, -0.2, 0.05, 0.0];

    /// The exact Gaussian denoiser with its ε corrupted as a quantized network's might be,
    /// ε_q = 1.1·ε + b_c, answered as `prediction`.
    struct Corrupted {
        exact: Gaussian,
        prediction: Prediction,
    }

    impl Denoiser for Corrupted {
        fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
            let mut eps = self.exact.eval(step, x, t)?.mapv(|e| 1.1 * e);
            for (mut channel, b) in eps.axis_iter_mut(Axis(1)).zip(BIAS) {
                channel.mapv_inplace(|e| e + b);
            }
            let TimeDomain::Discrete(schedule) = &self.exact.domain else { unreachable!() };
            let a = euler::input_alpha(schedule, f64::from(t));
            let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
            Ok(match self.prediction {
                Prediction::Epsilon => eps,
                Prediction::VPrediction => lin(&eps, 1.0 / sa, x, -sb / sa),
                Prediction::Sample => lin(x, 1.0 / sa, &eps, -sb / sa),
                Prediction::Score => eps.mapv(|e| (-f64::from(e) / sb) as f32),
            })
        }
    }

    /// The correction of [`Corrupted`] for `settings`' timesteps, with residual σ `sigma`.
    fn known_correction(settings: &SamplerSettings, sigma: f64) -> Arc<NoiseCorrection> {
        let times = plan(settings).unwrap().times().to_vec();
        let steps = times.into_iter().map(|timestep| StepNoise {
            timestep,
            k_fitted: 0.1,
            k: 0.1,
            bias: BIAS.to_vec(),
            sigma,
            rms_error: 1.0,
        });
        Arc::new(NoiseCorrection {
            bitsearch_noise_correction: 1,
            sampler: settings.kind.to_string(),
            prediction: "epsilon".into(),
            calibration_items: Vec::new(),
            steps: steps.collect(),
        })
    }

    fn run_corrupted(settings: &SamplerSettings, prediction: Prediction) -> ArrayD<f32> {
        let exact = Gaussian { prediction: Prediction::Epsilon, ..Gaussian::for_settings(settings) };
        let mut denoiser = Corrupted { exact, prediction };
        let settings = SamplerSettings { prediction, ..settings.clone() };
        sample(&settings, &mut denoiser, batch_noise(&ITEM_SHAPE, &[1, 2]), &mut NoiseSource::new(&[3, 4])).unwrap()
    }

    #[test]
    fn the_noise_correction_undoes_a_known_corruption_in_every_prediction_type() {
        for (kind, eta) in [(SamplerKind::Ddim, 0.0), (SamplerKind::Ddim, 1.0), (SamplerKind::Euler, 0.0)] {
            let mut settings = SamplerSettings::new(kind, 8, Prediction::Epsilon, discrete());
            settings.eta = eta;
            let mut exact = Gaussian::for_settings(&settings);
            let clean =
                sample(&settings, &mut exact, batch_noise(&ITEM_SHAPE, &[1, 2]), &mut NoiseSource::new(&[3, 4]))
                    .unwrap();
            let corrupted = run_corrupted(&settings, Prediction::Epsilon);
            assert!(max_diff(&corrupted, &clean) > 0.05, "{kind} eta {eta}: the corruption must show");
            // σ = 0: nothing is left to take from the fresh noise, so even eta = 1 matches exactly.
            settings.correction = Some(known_correction(&settings, 0.0));
            for prediction in [Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample] {
                let err = max_diff(&run_corrupted(&settings, prediction), &clean);
                assert!(err < 2e-3, "{kind} eta {eta} {prediction}: max error {err}");
            }
        }
    }

    #[test]
    fn a_residual_takes_its_share_from_the_fresh_noise_only_when_there_is_some() {
        let std = |eta: f64, sigma: f64| {
            let mut settings = SamplerSettings::new(SamplerKind::Ddim, 8, Prediction::Epsilon, discrete());
            settings.eta = eta;
            settings.correction = Some(known_correction(&settings, sigma));
            let out = run_corrupted(&settings, Prediction::Epsilon);
            f64::from(out.std(0.0))
        };
        assert!(std(1.0, 0.5) < std(1.0, 0.0) - 1e-3, "{} vs {}", std(1.0, 0.5), std(1.0, 0.0));
        assert_eq!(std(0.0, 0.5), std(0.0, 0.0), "a deterministic sampler adds no noise to reduce");
    }

    #[test]
    fn a_correction_for_other_timesteps_or_samplers_is_refused() {
        let settings = SamplerSettings::new(SamplerKind::Ddim, 8, Prediction::Epsilon, discrete());
        let fitted = known_correction(&settings, 0.0);
        let message = |settings: &SamplerSettings| {
            let mut net = Gaussian::for_settings(settings);
            let result = sample(settings, &mut net, batch_noise(&[3], &[1]), &mut NoiseSource::new(&[1]));
            match result {
                Err(SampleError::Config(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        let mut other_steps = SamplerSettings::new(SamplerKind::Ddim, 6, Prediction::Epsilon, discrete());
        other_steps.correction = Some(fitted.clone());
        assert!(message(&other_steps).contains("fitted for ddim 8 steps; this run is ddim 6 steps"));
        let mut lcm = SamplerSettings::new(SamplerKind::Lcm, 8, Prediction::Epsilon, discrete());
        lcm.correction = Some(fitted);
        assert!(message(&lcm).contains("ddim and euler samplers, not by lcm"), "{}", message(&lcm));
    }
}
