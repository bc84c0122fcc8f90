//! DDIM (Song et al. 2021) on a discrete schedule: from each timestep, jump to the next one
//! along the predicted noise direction; `eta` > 0 swaps part of that direction for fresh noise
//! (eta = 1 matches DDPM's posterior variance).

use ndarray::ArrayD;

use super::maths::{eval, lin};
use super::{Denoiser, Domain, Run, SampleError, Sampler, SamplerKind, SamplerSettings};
use crate::noise::NoiseSource;
use crate::schedule::DiscreteSchedule;

pub(super) struct Ddim;

impl Sampler for Ddim {
    fn kind(&self) -> SamplerKind {
        SamplerKind::Ddim
    }

    fn domain(&self) -> Domain {
        Domain::Discrete
    }

    fn scheduler_class(&self) -> Option<&'static str> {
        Some("DDIMScheduler")
    }

    /// The schedule's timesteps rounded to whole training timesteps, as DDIM indexes ᾱ by them.
    fn times(&self, settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
        let mut ts = settings.domain.schedule(self.kind())?.timesteps(settings.steps)?;
        // numpy's round (ties to even), which diffusers uses for linspace spacing.
        ts.iter_mut().for_each(|t| *t = t.round_ties_even());
        Ok(ts)
    }

    fn input_alpha(&self) -> Option<fn(&DiscreteSchedule, f64) -> f64> {
        Some(DiscreteSchedule::alpha_cumprod_at)
    }

    fn run(
        &self,
        run: &Run<'_>,
        denoiser: &mut dyn Denoiser,
        x: ArrayD<f32>,
        noise: &mut NoiseSource,
    ) -> Result<ArrayD<f32>, SampleError> {
        let schedule = run.settings.domain.schedule(self.kind())?;
        steps(schedule, run, denoiser, x, noise)
    }
}

fn steps(
    schedule: &DiscreteSchedule,
    run: &Run<'_>,
    denoiser: &mut dyn Denoiser,
    mut x: ArrayD<f32>,
    noise: &mut NoiseSource,
) -> Result<ArrayD<f32>, SampleError> {
    let (ts, eta) = (run.times, run.settings.eta);
    for (step, &t) in ts.iter().enumerate() {
        let out = eval(denoiser, step, &x, t)?;
        let a = schedule.alpha_cumprod_at(t);
        // ᾱ of the next visited timestep, or the schedule's final ᾱ after the last. diffusers
        // steps back by T/N instead, which lands on the same timesteps except under linspace spacing.
        let a_prev = ts.get(step + 1).map_or(schedule.final_alpha_cumprod(), |&next| schedule.alpha_cumprod_at(next));
        let (x0, eps) = run.split(step, out, &x, a)?;
        let variance = (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev);
        let mut std = eta * variance.sqrt();
        // At eta = 1 rounding can push this a hair below zero.
        let direction = (1.0 - a_prev - std * std).max(0.0).sqrt();
        x = lin(&x0, a_prev.sqrt(), &eps, direction);
        if let Some(noise) = run.noise(step) {
            // What multiplies ε in x_{t-1} once x0 is written through ε: the residual's share.
            let coefficient = direction - (a_prev * (1.0 - a) / a).sqrt();
            std = crate::ptqd::calibrated_std(std, coefficient, noise);
        }
        if std > 0.0 {
            x = lin(&x, 1.0, &noise.draw(x.shape())?, std);
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use crate::noise::batch_noise;
    use crate::sampler::test_support::*;
    use crate::sampler::{Prediction, SamplerKind, SamplerSettings, TimeDomain, timesteps};
    use crate::schedule::TimestepSpacing;

    fn ddim(eta: f64, steps: usize) -> SamplerSettings {
        let schedule = sd_schedule(TimestepSpacing::Leading, 1);
        let mut s = SamplerSettings::new(SamplerKind::Ddim, steps, Prediction::Epsilon, TimeDomain::Discrete(schedule));
        s.eta = eta;
        s
    }

    #[test]
    fn deterministic_ddim_reaches_the_data_std() {
        assert_converges_to_data_std(|steps| ddim(0.0, steps), 0.06, 0.015);
        let settings = ddim(0.0, 50);
        let calls = run_gaussian(&settings, [1, 2]).1;
        assert_calls_match_timesteps(&settings, &calls);
        assert_eq!(calls[0].1, 981.0);
    }

    #[test]
    fn ddim_with_full_eta_reaches_the_data_std() {
        // DDPM's posterior variance is only exact for infinitely many steps, so eta = 1 converges slower.
        assert_converges_to_data_std(|steps| ddim(1.0, steps), 0.11, 0.035);
        let settings = ddim(1.0, 50);
        assert_calls_match_timesteps(&settings, &run_gaussian(&settings, [3, 4]).1);
    }

    #[test]
    fn only_positive_eta_draws_fresh_noise() {
        let deterministic = ddim(0.0, 10);
        let reference = run_gaussian(&deterministic, [1, 2]).0;
        assert_eq!(run_gaussian_with(&deterministic, [1, 2], [8, 9]).0, reference);
        let stochastic = ddim(1.0, 10);
        let reference = run_gaussian(&stochastic, [1, 2]).0;
        assert_eq!(run_gaussian(&stochastic, [1, 2]).0, reference);
        assert_ne!(run_gaussian_with(&stochastic, [1, 2], [8, 9]).0, reference);
    }

    #[test]
    fn the_last_step_lands_on_the_final_alpha() {
        // One trailing step from t = 999: with ᾱ_final = 1 DDIM returns its x0 estimate, otherwise
        // that estimate re-noised to ᾱ of timestep 0.
        let run = |set_alpha_to_one| {
            let mut schedule = sd_schedule(TimestepSpacing::Trailing, 0);
            schedule.set_alpha_to_one = set_alpha_to_one;
            let settings =
                SamplerSettings::new(SamplerKind::Ddim, 1, Prediction::Epsilon, TimeDomain::Discrete(schedule));
            run_gaussian(&settings, [1, 2]).0
        };
        let schedule = sd_schedule(TimestepSpacing::Trailing, 0);
        let (a, a0) = (schedule.alpha_cumprod_at(999.0), schedule.alphas_cumprod()[0]);
        let s2 = DATA_STD * DATA_STD;
        let x0_k = a.sqrt() * s2 / (a * s2 + 1.0 - a);
        let eps_k = (1.0 - a.sqrt() * x0_k) / (1.0 - a).sqrt();
        let z = batch_noise(&ITEM_SHAPE, &[1, 2]);
        for (set_alpha_to_one, k) in [(true, x0_k), (false, a0.sqrt() * x0_k + (1.0 - a0).sqrt() * eps_k)] {
            let expected = z.mapv(|v| (f64::from(v) * k) as f32);
            let err = max_diff(&run(set_alpha_to_one), &expected);
            assert!(err < 2e-5, "set_alpha_to_one {set_alpha_to_one}: max error {err}");
        }
    }

    #[test]
    fn linspace_timesteps_are_rounded() {
        let schedule = sd_schedule(TimestepSpacing::Linspace, 0);
        let s = SamplerSettings::new(SamplerKind::Ddim, 50, Prediction::Epsilon, TimeDomain::Discrete(schedule));
        let ts = timesteps(&s).unwrap();
        assert_eq!(&ts[..4], &[999.0, 979.0, 958.0, 938.0]);
        assert_eq!(ts[49], 0.0);
    }
}
