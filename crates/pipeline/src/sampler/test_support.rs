//! Test-only helpers: a denoiser that is exactly right for Gaussian data, so samplers can be
//! checked against known answers, and shorthands for building settings.
//!
//! For data `x0 ~ N(0, s²)` i.i.d. observed as `x = x0 + σ·ε`, the MMSE denoiser is
//! `D(x, σ) = x·s²/(s² + σ²)`; a sampler driven by it should return samples with std `s`.

use ndarray::ArrayD;

use super::{Denoiser, Prediction, SampleError, SamplerSettings, TimeDomain};
use crate::noise::{NoiseSource, batch_noise};
use crate::schedule::{BetaSchedule, DiscreteSchedule, TimestepSpacing};

pub(super) const DATA_STD: f64 = 0.5;

/// Shape of one batch item in the sampler tests; batches hold two.
pub(super) const ITEM_SHAPE: [usize; 3] = [4, 50, 50];

/// The exact denoiser for `N(0, DATA_STD²)` data, answering in the domain's conventions and
/// recording every call as `(step, t)`.
pub(super) struct Gaussian {
    pub domain: TimeDomain,
    pub prediction: Prediction,
    pub calls: Vec<(usize, f32)>,
}

impl Gaussian {
    pub fn for_settings(settings: &SamplerSettings) -> Self {
        Self { domain: settings.domain.clone(), prediction: settings.prediction, calls: Vec::new() }
    }
}

impl Denoiser for Gaussian {
    fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
        self.calls.push((step, t));
        let s2 = DATA_STD * DATA_STD;
        // Coefficients of (x0, ε, v, score) as multiples of the network input x.
        let (x0_k, eps_k, v, score) = match &self.domain {
            TimeDomain::Discrete(schedule) => {
                // Euler feeds fractional t with its interpolated sigma; ᾱ = 1/(1+σ²) matches both.
                let sigma = schedule.sigma_at(f64::from(t));
                let a = 1.0 / (1.0 + sigma * sigma);
                let x0_k = a.sqrt() * s2 / (a * s2 + 1.0 - a);
                let eps_k = (1.0 - a.sqrt() * x0_k) / (1.0 - a).sqrt();
                (x0_k, eps_k, a.sqrt() * eps_k - (1.0 - a).sqrt() * x0_k, -eps_k / (1.0 - a).sqrt())
            }
            TimeDomain::Sigma { sigma_data, .. } => {
                let sigma = f64::from(t);
                let x0_k = s2 / (s2 + sigma * sigma);
                let total = sigma * sigma + sigma_data * sigma_data;
                let c_skip = sigma_data * sigma_data / total;
                let c_out = -sigma * sigma_data / total.sqrt();
                (x0_k, (1.0 - x0_k) / sigma, (x0_k - c_skip) / c_out, (x0_k - 1.0) / (sigma * sigma))
            }
        };
        let k = match self.prediction {
            Prediction::Epsilon => eps_k,
            Prediction::Sample => x0_k,
            Prediction::VPrediction => v,
            Prediction::Score => score,
        };
        Ok(x.mapv(|value| (f64::from(value) * k) as f32))
    }
}

/// Stable Diffusion's schedule with the given spacing and offset.
pub(super) fn sd_schedule(spacing: TimestepSpacing, offset: usize) -> DiscreteSchedule {
    let mut schedule = DiscreteSchedule::new(1000, 0.00085, 0.012, BetaSchedule::ScaledLinear).unwrap();
    schedule.spacing = spacing;
    schedule.steps_offset = offset;
    schedule
}

/// EDM's usual sigma range with `sigma_data` 0.5.
pub(super) fn edm_domain() -> TimeDomain {
    TimeDomain::Sigma { sigma_min: 0.002, sigma_max: 80.0, sigma_data: 0.5 }
}

/// Samples a batch of 2 × 10000 elements with the exact denoiser; returns the result and the calls.
pub(super) fn run_gaussian(settings: &SamplerSettings, seeds: [u64; 2]) -> (ArrayD<f32>, Vec<(usize, f32)>) {
    run_gaussian_with(settings, seeds, seeds)
}

/// Like [`run_gaussian`] with separate seeds for the initial and the mid-run noise.
pub(super) fn run_gaussian_with(
    settings: &SamplerSettings,
    initial_seeds: [u64; 2],
    mid_run_seeds: [u64; 2],
) -> (ArrayD<f32>, Vec<(usize, f32)>) {
    let mut denoiser = Gaussian::for_settings(settings);
    let initial = batch_noise(&ITEM_SHAPE, &initial_seeds);
    let mut noise = NoiseSource::new(&mid_run_seeds);
    let out = super::sample(settings, &mut denoiser, initial, &mut noise).unwrap();
    (out, denoiser.calls)
}

/// Relative error of the sample std against `DATA_STD`, measured against the std the initial
/// noise actually has so that the finite sample's own spread does not count.
pub(super) fn std_error(out: &ArrayD<f32>, seeds: [u64; 2]) -> f64 {
    let mean = f64::from(out.mean().unwrap());
    assert!(mean.abs() < 0.02, "mean {mean}");
    let noise_std = f64::from(batch_noise(&ITEM_SHAPE, &seeds).std(0.0));
    f64::from(out.std(0.0)) / (DATA_STD * noise_std) - 1.0
}

/// Asserts a sampler lands on the data std within `at_50` (relative) in 50 steps and within
/// `at_250` in 250, and that the extra steps help: these samplers are first order, so 50 steps
/// leave a few percent of discretisation error (the exact scalar recursion agrees).
pub(super) fn assert_converges_to_data_std(make: impl Fn(usize) -> SamplerSettings, at_50: f64, at_250: f64) {
    let coarse = std_error(&run_gaussian(&make(50), [1, 2]).0, [1, 2]);
    let fine = std_error(&run_gaussian(&make(250), [1, 2]).0, [1, 2]);
    assert!(coarse.abs() < at_50, "50 steps: std off by {coarse:.4}");
    assert!(fine.abs() < at_250, "250 steps: std off by {fine:.4}");
    assert!(fine.abs() < coarse.abs(), "250 steps ({fine:.4}) no better than 50 ({coarse:.4})");
}

/// Asserts the denoiser saw steps 0..n in order with exactly the reported time values.
pub(super) fn assert_calls_match_timesteps(settings: &SamplerSettings, calls: &[(usize, f32)]) {
    let times = super::timesteps(settings).unwrap();
    assert_eq!(times.len(), settings.steps);
    let expected: Vec<(usize, f32)> = times.into_iter().enumerate().collect();
    assert_eq!(calls, expected.as_slice());
}

/// Largest elementwise difference between two same-shaped arrays.
pub(super) fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    (a - b).mapv(f32::abs).fold(0.0, |m, &e| m.max(e))
}
