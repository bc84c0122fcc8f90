//! Multistep consistency sampling (Song et al. 2023) for sigma-parameterised models: denoise
//! from `sigma_max` in one evaluation, then alternately re-noise the clean estimate to the next,
//! lower sigma of a Karras ladder (sigma_max down to, not including, sigma_min) and denoise again.

use ndarray::ArrayD;

use super::maths::{eval, lin, sigma_ladder, sigma_x0};
use super::{Denoiser, Domain, Run, SampleError, Sampler, SamplerKind, SamplerSettings};
use crate::noise::NoiseSource;

pub(super) struct Consistency;

impl Sampler for Consistency {
    fn kind(&self) -> SamplerKind {
        SamplerKind::Consistency
    }

    fn domain(&self) -> Domain {
        Domain::Sigma
    }

    fn times(&self, settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
        // The last rung (sigma_min) is left out: re-noising to the model's floor adds nothing,
        // so every evaluation lands on a noise level that still corrects the estimate.
        let mut sigmas = sigma_ladder(settings.steps + 1, settings.domain.sigmas(self.kind())?)?;
        sigmas.pop();
        Ok(sigmas)
    }

    fn run(
        &self,
        run: &Run<'_>,
        denoiser: &mut dyn Denoiser,
        initial_noise: ArrayD<f32>,
        noise: &mut NoiseSource,
    ) -> Result<ArrayD<f32>, SampleError> {
        let range = run.settings.domain.sigmas(self.kind())?;
        let (sigmas, pred, sigma_min, sigma_data) = (run.times, run.settings.prediction, range.min, range.data);
        let sigma_max = sigmas.first().copied().unwrap_or(0.0);
        let mut x = initial_noise * sigma_max as f32;
        for (step, &sigma) in sigmas.iter().enumerate() {
            if step > 0 {
                // `x` holds the previous clean estimate; the model's own floor sigma_min counts as clean.
                let spread = (sigma * sigma - sigma_min * sigma_min).max(0.0).sqrt();
                x = lin(&x, 1.0, &noise.draw(x.shape())?, spread);
            }
            let out = eval(denoiser, step, &x, sigma)?;
            x = sigma_x0(pred, out, &x, sigma, sigma_data);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use crate::noise::batch_noise;
    use crate::sampler::test_support::*;
    use crate::sampler::{Prediction, SamplerKind, SamplerSettings};

    #[test]
    fn one_step_is_a_single_denoise_at_sigma_max() {
        let settings = SamplerSettings::new(SamplerKind::Consistency, 1, Prediction::Sample, edm_domain());
        let (out, calls) = run_gaussian(&settings, [1, 2]);
        assert_eq!(calls, [(0, 80.0)]);
        let k = 80.0 * DATA_STD * DATA_STD / (DATA_STD * DATA_STD + 6400.0);
        let expected = batch_noise(&ITEM_SHAPE, &[1, 2]).mapv(|v| (f64::from(v) * k) as f32);
        let err = max_diff(&out, &expected);
        assert!(err < 1e-6, "max error {err}");
    }

    #[test]
    fn multistep_calls_each_karras_sigma_and_is_seeded() {
        let settings = SamplerSettings::new(SamplerKind::Consistency, 3, Prediction::Sample, edm_domain());
        let (out, calls) = run_gaussian(&settings, [1, 2]);
        assert_calls_match_timesteps(&settings, &calls);
        assert_eq!(run_gaussian(&settings, [1, 2]).0, out);
        assert_ne!(run_gaussian_with(&settings, [1, 2], [3, 4]).0, out);
    }
}
