//! Euler sampling of a discrete-schedule model in the k-diffusion view: the sample lives at
//! `x = x0 + σ·ε` with `σ` interpolated from the schedule at each chosen timestep, the network
//! sees `x/√(σ²+1)` (its own `x_t`), and each step follows `dx/dσ = (x − x0)/σ` down to σ = 0.

use ndarray::ArrayD;

use super::maths::{eval, lin};
use super::{Denoiser, Domain, Run, SampleError, Sampler, SamplerKind, SamplerSettings};
use crate::noise::NoiseSource;
use crate::schedule::{DiscreteSchedule, TimestepSpacing};

pub(super) struct Euler;

impl Sampler for Euler {
    fn kind(&self) -> SamplerKind {
        SamplerKind::Euler
    }

    fn domain(&self) -> Domain {
        Domain::Discrete
    }

    fn scheduler_class(&self) -> Option<&'static str> {
        Some("EulerDiscreteScheduler")
    }

    fn times(&self, settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
        settings.domain.schedule(self.kind())?.timesteps(settings.steps)
    }

    fn input_alpha(&self) -> Option<fn(&DiscreteSchedule, f64) -> f64> {
        Some(input_alpha)
    }

    fn run(
        &self,
        run: &Run<'_>,
        denoiser: &mut dyn Denoiser,
        initial_noise: ArrayD<f32>,
        _: &mut NoiseSource,
    ) -> Result<ArrayD<f32>, SampleError> {
        let schedule = run.settings.domain.schedule(self.kind())?;
        steps(schedule, run, denoiser, initial_noise)
    }
}

fn steps(
    schedule: &DiscreteSchedule,
    run: &Run<'_>,
    denoiser: &mut dyn Denoiser,
    initial_noise: ArrayD<f32>,
) -> Result<ArrayD<f32>, SampleError> {
    let ts = run.times;
    let sigmas: Vec<f64> = ts.iter().map(|&t| schedule.sigma_at(t)).collect();
    let sigma_max = sigmas.iter().copied().fold(0.0, f64::max);
    // diffusers scales the noise of `leading` runs by √(σ_max² + 1) rather than σ_max; kept for parity.
    let init_sigma = match schedule.spacing {
        TimestepSpacing::Leading => (sigma_max * sigma_max + 1.0).sqrt(),
        TimestepSpacing::Trailing | TimestepSpacing::Linspace => sigma_max,
    };
    let mut x = initial_noise * init_sigma as f32;
    for (step, (&t, &sigma)) in ts.iter().zip(&sigmas).enumerate() {
        let alpha_cumprod = input_alpha(schedule, t);
        let x_in = &x * alpha_cumprod.sqrt() as f32;
        let out = eval(denoiser, step, &x_in, t)?;
        let x0 = run.split(step, out, &x_in, alpha_cumprod)?.0;
        let next = sigmas.get(step + 1).copied().unwrap_or(0.0);
        // x + (x − x0)/σ · (next − σ), regrouped: a blend of x and x0 that lands on x0 at σ = 0.
        let keep = next / sigma;
        x = lin(&x, keep, &x0, 1.0 - keep);
    }
    Ok(x)
}

/// ᾱ of the network's input at timestep `t`: the one of σ interpolated from the schedule.
pub(super) fn input_alpha(schedule: &DiscreteSchedule, t: f64) -> f64 {
    let sigma = schedule.sigma_at(t);
    1.0 / (1.0 + sigma * sigma)
}

#[cfg(test)]
mod tests {
    use crate::sampler::test_support::*;
    use crate::sampler::{Prediction, SamplerKind, SamplerSettings, TimeDomain, timesteps};
    use crate::schedule::TimestepSpacing;

    #[test]
    fn euler_reaches_the_data_std_for_every_spacing() {
        for (spacing, offset) in
            [(TimestepSpacing::Leading, 1), (TimestepSpacing::Trailing, 0), (TimestepSpacing::Linspace, 0)]
        {
            let make = |steps| {
                let domain = TimeDomain::Discrete(sd_schedule(spacing, offset));
                SamplerSettings::new(SamplerKind::Euler, steps, Prediction::Epsilon, domain)
            };
            assert_converges_to_data_std(make, 0.07, 0.02);
            assert_calls_match_timesteps(&make(50), &run_gaussian(&make(50), [5, 6]).1);
        }
    }

    #[test]
    fn linspace_feeds_fractional_timesteps() {
        let domain = TimeDomain::Discrete(sd_schedule(TimestepSpacing::Linspace, 0));
        let ts = timesteps(&SamplerSettings::new(SamplerKind::Euler, 50, Prediction::Epsilon, domain)).unwrap();
        assert_eq!(ts[0], 999.0);
        assert!((ts[1] - (999.0 - 999.0 / 49.0) as f32).abs() < 1e-4, "{}", ts[1]);
        assert_eq!(ts[49], 0.0);
    }
}
