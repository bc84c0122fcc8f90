//! Deterministic EDM Euler sampling (Karras et al. 2022) for sigma-parameterised models: Karras
//! sigmas from `sigma_max` to `sigma_min`, then a last step to σ = 0, each step following
//! `dx/dσ = (x − D(x, σ))/σ`.

use ndarray::ArrayD;

use super::maths::{eval, lin, sigma_ladder, sigma_x0};
use super::{Denoiser, Domain, Run, SampleError, Sampler, SamplerKind, SamplerSettings};
use crate::noise::NoiseSource;

pub(super) struct EdmEuler;

impl Sampler for EdmEuler {
    fn kind(&self) -> SamplerKind {
        SamplerKind::EdmEuler
    }

    fn domain(&self) -> Domain {
        Domain::Sigma
    }

    fn times(&self, settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
        sigma_ladder(settings.steps, settings.domain.sigmas(self.kind())?)
    }

    fn run(
        &self,
        run: &Run<'_>,
        denoiser: &mut dyn Denoiser,
        initial_noise: ArrayD<f32>,
        _: &mut NoiseSource,
    ) -> Result<ArrayD<f32>, SampleError> {
        let sigma_data = run.settings.domain.sigmas(self.kind())?.data;
        steps(run, sigma_data, denoiser, initial_noise)
    }
}

fn steps(
    run: &Run<'_>,
    sigma_data: f64,
    denoiser: &mut dyn Denoiser,
    initial_noise: ArrayD<f32>,
) -> Result<ArrayD<f32>, SampleError> {
    let (sigmas, pred) = (run.times, run.settings.prediction);
    let sigma_max = sigmas.first().copied().unwrap_or(0.0);
    let mut x = initial_noise * sigma_max as f32;
    for (step, &sigma) in sigmas.iter().enumerate() {
        let out = eval(denoiser, step, &x, sigma)?;
        let denoised = sigma_x0(pred, out, &x, sigma, sigma_data);
        let next = sigmas.get(step + 1).copied().unwrap_or(0.0);
        // x + (x − D)/σ · (next − σ), regrouped as a blend of x and D.
        let keep = next / sigma;
        x = lin(&x, keep, &denoised, 1.0 - keep);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use crate::sampler::test_support::*;
    use crate::sampler::{Prediction, SamplerKind, SamplerSettings};

    #[test]
    fn edm_euler_reaches_the_data_std() {
        let make = |steps| SamplerSettings::new(SamplerKind::EdmEuler, steps, Prediction::Sample, edm_domain());
        assert_converges_to_data_std(make, 0.07, 0.015);
        let settings = make(50);
        let calls = run_gaussian(&settings, [7, 8]).1;
        assert_calls_match_timesteps(&settings, &calls);
        assert_eq!(calls[0].1, 80.0);
        assert!((calls[49].1 - 0.002).abs() < 1e-7);
    }
}
