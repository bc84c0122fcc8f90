//! Latent consistency model multistep sampling (Luo et al. 2023) on a discrete schedule: each
//! step maps the noisy sample straight to a clean estimate through the consistency boundary
//! conditions, then re-noises that estimate to the next chosen timestep.

use ndarray::ArrayD;

use super::maths::{eval, lin, vp_x0};
use super::{Denoiser, Domain, Run, SampleError, Sampler, SamplerKind, SamplerSettings};
use crate::noise::NoiseSource;
use crate::schedule::DiscreteSchedule;

/// Data std the LCM boundary conditions assume.
const SIGMA_DATA: f64 = 0.5;

pub(super) struct Lcm;

impl Sampler for Lcm {
    fn kind(&self) -> SamplerKind {
        SamplerKind::Lcm
    }

    fn domain(&self) -> Domain {
        Domain::Discrete
    }

    fn scheduler_class(&self) -> Option<&'static str> {
        Some("LCMScheduler")
    }

    fn times(&self, settings: &SamplerSettings) -> Result<Vec<f64>, SampleError> {
        let schedule = settings.domain.schedule(self.kind())?;
        if !(settings.timestep_scaling.is_finite() && settings.timestep_scaling > 0.0) {
            return Err(SampleError::Config(format!(
                "lcm timestep_scaling must be a positive number, got {}",
                settings.timestep_scaling
            )));
        }
        timesteps(schedule, settings.steps, settings.original_inference_steps)
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

/// `steps` timesteps picked at evenly spaced indices from the `original` distillation ladder
/// `T/original·k − 1` (k = original, …, 1).
fn timesteps(schedule: &DiscreteSchedule, steps: usize, original: usize) -> Result<Vec<f64>, SampleError> {
    let train = schedule.num_train_timesteps();
    if original == 0 || original > train {
        return Err(SampleError::Config(format!(
            "lcm original_inference_steps must be between 1 and the {train} training timesteps, got {original}"
        )));
    }
    if steps > original {
        return Err(SampleError::Config(format!(
            "lcm can take at most original_inference_steps ({original}) steps, got {steps}"
        )));
    }
    let skip = train / original;
    // Index i·original/steps into the ladder counted down from its top, floored.
    Ok((0..steps).map(|i| ((original - i * original / steps) * skip - 1) as f64).collect())
}

/// The consistency parameterisation's skip and output weights at timestep `t`.
fn boundary(t: f64, timestep_scaling: f64) -> (f64, f64) {
    let scaled = t * timestep_scaling;
    let total = scaled * scaled + SIGMA_DATA * SIGMA_DATA;
    (SIGMA_DATA * SIGMA_DATA / total, scaled / total.sqrt())
}

fn steps(
    schedule: &DiscreteSchedule,
    run: &Run<'_>,
    denoiser: &mut dyn Denoiser,
    mut x: ArrayD<f32>,
    noise: &mut NoiseSource,
) -> Result<ArrayD<f32>, SampleError> {
    let (ts, timestep_scaling, pred) = (run.times, run.settings.timestep_scaling, run.settings.prediction);
    for (step, &t) in ts.iter().enumerate() {
        let a = schedule.alpha_cumprod_at(t);
        if step > 0 {
            // `x` holds the previous clean estimate; noise it to this timestep.
            x = lin(&x, a.sqrt(), &noise.draw(x.shape())?, (1.0 - a).sqrt());
        }
        let out = eval(denoiser, step, &x, t)?;
        let x0 = vp_x0(pred, &out, &x, a);
        let (c_skip, c_out) = boundary(t, timestep_scaling);
        x = lin(&x0, c_out, &x, c_skip);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use crate::noise::batch_noise;
    use crate::sampler::test_support::*;
    use crate::sampler::{Prediction, SamplerKind, SamplerSettings, TimeDomain, timesteps};
    use crate::schedule::TimestepSpacing;

    fn lcm(steps: usize) -> SamplerSettings {
        let domain = TimeDomain::Discrete(sd_schedule(TimestepSpacing::Leading, 0));
        SamplerSettings::new(SamplerKind::Lcm, steps, Prediction::Epsilon, domain)
    }

    #[test]
    fn timesteps_match_diffusers() {
        let ts = |steps| timesteps(&lcm(steps)).unwrap();
        assert_eq!(ts(1), [999.0]);
        assert_eq!(ts(4), [999.0, 759.0, 499.0, 259.0]);
        assert_eq!(ts(8), [999.0, 879.0, 759.0, 639.0, 499.0, 379.0, 259.0, 139.0]);
        let all: Vec<f32> = (0..50).map(|i| (999 - 20 * i) as f32).collect();
        assert_eq!(ts(50), all);
    }

    #[test]
    fn one_step_applies_the_boundary_conditions_once() {
        let settings = lcm(1);
        let (out, calls) = run_gaussian(&settings, [1, 2]);
        assert_calls_match_timesteps(&settings, &calls);
        let z = batch_noise(&ITEM_SHAPE, &[1, 2]);
        // Exact x0 for the Gaussian data at t = 999, then c_out·x0 + c_skip·x.
        let a = sd_schedule(TimestepSpacing::Leading, 0).alpha_cumprod_at(999.0);
        let s2 = DATA_STD * DATA_STD;
        let x0_k = a.sqrt() * s2 / (a * s2 + 1.0 - a);
        let scaled = 9990.0_f64;
        let total = scaled * scaled + 0.25;
        let k = scaled / total.sqrt() * x0_k + 0.25 / total;
        let expected = z.mapv(|v| (f64::from(v) * k) as f32);
        let err = max_diff(&out, &expected);
        // Recovering x0 from ε divides by √ᾱ ≈ 0.07 at t = 999, magnifying f32 rounding.
        assert!(err < 2e-5, "max error {err}");
    }

    #[test]
    fn multistep_is_deterministic_per_seed_and_uses_fresh_noise() {
        let settings = lcm(4);
        let (out, calls) = run_gaussian(&settings, [1, 2]);
        assert_calls_match_timesteps(&settings, &calls);
        assert_eq!(run_gaussian(&settings, [1, 2]).0, out);
        assert_ne!(run_gaussian_with(&settings, [1, 2], [3, 4]).0, out);
    }
}
