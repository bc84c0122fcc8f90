//! Noise schedules: the discrete DDPM variance schedule that diffusers models are trained on,
//! the timesteps its schedulers visit for a given step count, Karras sigma ladders for
//! continuous-sigma (EDM) models, the VP SDE's ᾱ(t) for continuous-time score models, and (in
//! `config`) the `scheduler_config.json` that describes a model's schedule.

use std::f64::consts::FRAC_PI_2;

use serde::Deserialize;

use crate::sampler::SampleError;

mod config;

pub use config::SchedulerConfig;

/// How betas grow over the training timesteps (diffusers' `beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Betas evenly spaced from `beta_start` to `beta_end`.
    Linear,
    /// Square roots of the betas evenly spaced (Stable Diffusion).
    ScaledLinear,
    /// The cosine ᾱ schedule of Nichol & Dhariwal, betas capped at 0.999.
    SquaredcosCapV2,
}

/// Which training timesteps an N-step run visits (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// Multiples of `T / N` counted up from 0, plus `steps_offset`.
    Leading,
    /// Multiples of `T / N` counted down from `T`, minus one.
    Trailing,
    /// `N` evenly spaced (possibly fractional) points from `T − 1` down to 0.
    Linspace,
}

/// The exponent Karras et al. recommend for spacing sigmas.
pub const KARRAS_RHO: f64 = 7.0;

/// A discrete-time variance schedule plus how inference picks timesteps from it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteSchedule {
    alphas_cumprod: Vec<f64>,
    /// How inference timesteps are picked.
    pub spacing: TimestepSpacing,
    /// Added to every `Leading` timestep (Stable Diffusion 1.x uses 1).
    pub steps_offset: usize,
    /// Whether the step after the last timestep is noise-free (ᾱ = 1) rather than at ᾱ of timestep 0.
    pub set_alpha_to_one: bool,
}

impl DiscreteSchedule {
    /// The schedule of `num_train_timesteps` betas; picks `Leading` spacing, no offset and
    /// `set_alpha_to_one` until the caller changes those fields.
    pub fn new(
        num_train_timesteps: usize,
        beta_start: f64,
        beta_end: f64,
        beta_schedule: BetaSchedule,
    ) -> Result<Self, SampleError> {
        let n = num_train_timesteps;
        if n < 2 {
            return Err(SampleError::Config(format!("num_train_timesteps must be at least 2, got {n}")));
        }
        let ramp = |i: usize| i as f64 / (n - 1) as f64;
        let betas: Vec<f64> = match beta_schedule {
            BetaSchedule::Linear => (0..n).map(|i| beta_start + (beta_end - beta_start) * ramp(i)).collect(),
            BetaSchedule::ScaledLinear => {
                let (lo, hi) = (beta_start.sqrt(), beta_end.sqrt());
                (0..n).map(|i| (lo + (hi - lo) * ramp(i)).powi(2)).collect()
            }
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * FRAC_PI_2).cos().powi(2);
                (0..n)
                    .map(|i| {
                        let ratio = alpha_bar((i + 1) as f64 / n as f64) / alpha_bar(i as f64 / n as f64);
                        (1.0 - ratio).min(0.999)
                    })
                    .collect()
            }
        };
        // NaN (e.g. from a negative beta_start under scaled_linear) fails this test too.
        if let Some(bad) = betas.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
            return Err(SampleError::Config(format!(
                "{beta_schedule:?} schedule from beta_start {beta_start} to beta_end {beta_end} \
                 gives beta {bad}; every beta must lie strictly between 0 and 1"
            )));
        }
        let alphas_cumprod = betas
            .iter()
            .scan(1.0, |acc, beta| {
                *acc *= 1.0 - beta;
                Some(*acc)
            })
            .collect();
        Self::from_alphas_cumprod(alphas_cumprod)
    }

    /// The schedule with these ᾱ, timestep 0 first, for models trained on a schedule that is no
    /// beta ramp (a continuous-time one sampled on a grid); spacing and flags as [`Self::new`].
    pub fn from_alphas_cumprod(alphas_cumprod: Vec<f64>) -> Result<Self, SampleError> {
        let n = alphas_cumprod.len();
        if n < 2 {
            return Err(SampleError::Config(format!("a schedule needs at least 2 timesteps, got {n}")));
        }
        // Written as one positive test so that NaN fails it.
        let valid = |(i, a): (usize, &f64)| *a > 0.0 && *a < 1.0 && (i == 0 || *a < alphas_cumprod[i - 1]);
        if let Some((i, bad)) = alphas_cumprod.iter().enumerate().find(|&entry| !valid(entry)) {
            return Err(SampleError::Config(format!(
                "alpha_cumprod {bad} at timestep {i}: every alpha_cumprod must lie strictly between 0 and 1 \
                 and fall from each timestep to the next"
            )));
        }
        Ok(Self { alphas_cumprod, spacing: TimestepSpacing::Leading, steps_offset: 0, set_alpha_to_one: true })
    }

    /// Number of training timesteps `T`.
    pub fn num_train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// ᾱ for every training timestep, timestep 0 first.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// ᾱ at `t`, rounded to the nearest training timestep and clamped to the trained range.
    pub fn alpha_cumprod_at(&self, t: f64) -> f64 {
        self.alphas_cumprod[self.clamp_index(t.round())]
    }

    /// ᾱ that the step after the last timestep lands on.
    pub fn final_alpha_cumprod(&self) -> f64 {
        if self.set_alpha_to_one { 1.0 } else { self.alphas_cumprod[0] }
    }

    /// Noise-to-signal ratio `σ = √((1 − ᾱ)/ᾱ)` at `t`, linearly interpolated between training
    /// timesteps for fractional `t` and clamped to the trained range.
    pub fn sigma_at(&self, t: f64) -> f64 {
        let sigma = |i: usize| {
            let a = self.alphas_cumprod[self.clamp_index(i as f64)];
            ((1.0 - a) / a).sqrt()
        };
        let t = t.clamp(0.0, (self.num_train_timesteps() - 1) as f64);
        let below = t.floor() as usize;
        let frac = t - below as f64;
        sigma(below) + (sigma(below + 1) - sigma(below)) * frac
    }

    fn clamp_index(&self, t: f64) -> usize {
        (t.max(0.0) as usize).min(self.num_train_timesteps() - 1)
    }

    /// The `steps` timesteps an inference run visits, noisiest first, following `spacing`.
    /// `Linspace` points are left fractional; samplers that need whole timesteps round them.
    pub fn timesteps(&self, steps: usize) -> Result<Vec<f64>, SampleError> {
        let train = self.num_train_timesteps();
        if steps == 0 || steps > train {
            return Err(SampleError::Config(format!(
                "the number of steps must be between 1 and the {train} training timesteps, got {steps}"
            )));
        }
        let times: Vec<f64> = match self.spacing {
            TimestepSpacing::Leading => {
                let ratio = train / steps;
                (0..steps).rev().map(|i| (i * ratio).saturating_add(self.steps_offset) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / steps as f64;
                // numpy rounds halves to even; matching it keeps the lists identical to diffusers'.
                (0..steps).map(|i| (train as f64 - i as f64 * ratio).round_ties_even() - 1.0).collect()
            }
            TimestepSpacing::Linspace => {
                let last = (train - 1) as f64;
                let step = if steps > 1 { last / (steps - 1) as f64 } else { 0.0 };
                (0..steps).map(|i| last - i as f64 * step).collect()
            }
        };
        match times.first() {
            Some(&first) if first <= (train - 1) as f64 => Ok(times),
            _ => Err(SampleError::Config(format!(
                "steps_offset {} pushes the first of {steps} timesteps past the last training timestep {}",
                self.steps_offset,
                train - 1
            ))),
        }
    }
}

/// `n` sigmas from `sigma_max` down to `sigma_min`, evenly spaced in `σ^(1/ρ)` (Karras et al.
/// 2022); a single sigma is `sigma_max`.
pub fn karras_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    (0..n)
        .map(|i| {
            let ramp = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 };
            (hi + ramp * (lo - hi)).powf(rho)
        })
        .collect()
}

/// β at t = 0 and t = 1 of the linear-β VP SDE (Song et al. 2021, score_sde's defaults).
pub const VP_BETA_MIN: f64 = 0.1;
pub const VP_BETA_MAX: f64 = 20.0;

/// ᾱ at continuous time `t` ∈ [0, 1] of the linear-β VP SDE, `β(t) = β_min + t·(β_max − β_min)`:
/// `exp(−∫₀ᵗ β) = exp(−(β_min·t + ½·(β_max − β_min)·t²))`.
pub fn vp_alpha_cumprod(t: f64) -> f64 {
    (-(VP_BETA_MIN * t + 0.5 * (VP_BETA_MAX - VP_BETA_MIN) * t * t)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn stable_diffusion() -> DiscreteSchedule {
        DiscreteSchedule::new(1000, 0.00085, 0.012, BetaSchedule::ScaledLinear).unwrap()
    }

    fn spaced(spacing: TimestepSpacing, offset: usize, steps: usize) -> Vec<f64> {
        let mut schedule = stable_diffusion();
        schedule.spacing = spacing;
        schedule.steps_offset = offset;
        schedule.timesteps(steps).unwrap()
    }

    pub(super) fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn scaled_linear_alphas_cumprod_match_hand_values() {
        let ac = stable_diffusion();
        let ac = ac.alphas_cumprod();
        assert_eq!(ac.len(), 1000);
        close(ac[0], 1.0 - 0.00085, 1e-12);
        // Reference values from numpy in f64.
        close(ac[1], 0.998_296_027_838_451_4, 1e-9);
        close(ac[500], 0.276_332_683_822_974_6, 1e-9);
        close(ac[999], 0.004_660_098_513_077_238, 1e-9);
    }

    #[test]
    fn linear_alphas_cumprod_match_hand_values() {
        let schedule = DiscreteSchedule::new(1000, 0.0001, 0.02, BetaSchedule::Linear).unwrap();
        let ac = schedule.alphas_cumprod();
        close(ac[0], 0.9999, 1e-12);
        close(ac[500], 0.077_796_658_365_023_89, 1e-9);
        close(ac[999], 4.035_829_765_375_676e-5, 1e-12);
    }

    #[test]
    fn cosine_alphas_cumprod_telescope_to_the_cosine() {
        let schedule = DiscreteSchedule::new(1000, 0.0, 0.0, BetaSchedule::SquaredcosCapV2).unwrap();
        let f = |t: f64| ((t + 0.008) / 1.008 * FRAC_PI_2).cos().powi(2);
        // Below the 0.999 cap the product of (1 − β) collapses to f((t+1)/T) / f(0).
        for t in [0, 250, 500, 900] {
            close(schedule.alphas_cumprod()[t], f((t + 1) as f64 / 1000.0) / f(0.0), 1e-9);
        }
    }

    #[test]
    fn sigmas_match_stable_diffusion_range() {
        let schedule = stable_diffusion();
        close(schedule.sigma_at(999.0), 14.614_641_229_333_639, 1e-9);
        close(schedule.sigma_at(0.0), 0.029_167_158_151_720_367, 1e-12);
        let halfway = (0.029_167_158_151_720_367 + 0.041_314_411_996_783_09) / 2.0;
        close(schedule.sigma_at(0.5), halfway, 1e-12);
        close(schedule.sigma_at(5000.0), schedule.sigma_at(999.0), 0.0);
        close(schedule.alpha_cumprod_at(999.0), 0.004_660_098_513_077_238, 1e-12);
    }

    #[test]
    fn leading_timesteps_match_diffusers() {
        let expected: Vec<f64> = (0..50).rev().map(|i| (i * 20 + 1) as f64).collect();
        assert_eq!(spaced(TimestepSpacing::Leading, 1, 50), expected);
        assert_eq!(expected[0], 981.0);
        let ten: Vec<f64> = (0..10).rev().map(|i| (i * 100) as f64).collect();
        assert_eq!(spaced(TimestepSpacing::Leading, 0, 10), ten);
    }

    #[test]
    fn trailing_timesteps_match_diffusers() {
        let ten: Vec<f64> = (0..10).map(|i| (999 - 100 * i) as f64).collect();
        assert_eq!(spaced(TimestepSpacing::Trailing, 0, 10), ten);
        let fifty: Vec<f64> = (0..50).map(|i| (999 - 20 * i) as f64).collect();
        assert_eq!(spaced(TimestepSpacing::Trailing, 0, 50), fifty);
        // 1000/16 = 62.5 puts halves on the grid; numpy rounds them to even.
        let sixteen = [999., 937., 874., 811., 749., 687., 624., 561., 499., 437., 374., 311., 249., 187., 124., 61.];
        assert_eq!(spaced(TimestepSpacing::Trailing, 0, 16), sixteen);
    }

    #[test]
    fn linspace_timesteps_match_diffusers() {
        let ten: Vec<f64> = (0..10).rev().map(|i| (111 * i) as f64).collect();
        assert_eq!(spaced(TimestepSpacing::Linspace, 0, 10), ten);
        let fifty = spaced(TimestepSpacing::Linspace, 0, 50);
        let rounded: Vec<f64> = fifty.iter().map(|t| t.round_ties_even()).collect();
        let ddim_list = [
            999., 979., 958., 938., 917., 897., 877., 856., 836., 816., 795., 775., 754., 734., 714., 693., 673., 652.,
            632., 612., 591., 571., 550., 530., 510., 489., 469., 449., 428., 408., 387., 367., 347., 326., 306., 285.,
            265., 245., 224., 204., 183., 163., 143., 122., 102., 82., 61., 41., 20., 0.,
        ];
        assert_eq!(rounded, ddim_list);
        close(fifty[1], 999.0 - 999.0 / 49.0, 1e-9);
    }

    #[test]
    fn karras_sigmas_run_from_max_to_min_decreasing() {
        let sigmas = karras_sigmas(20, 0.002, 80.0, KARRAS_RHO);
        assert_eq!(sigmas.len(), 20);
        close(sigmas[0], 80.0, 1e-9);
        close(sigmas[19], 0.002, 1e-12);
        assert!(sigmas.windows(2).all(|w| w[1] < w[0]));
        // Evenly spaced in σ^(1/ρ).
        let roots: Vec<f64> = sigmas.iter().map(|s| s.powf(1.0 / KARRAS_RHO)).collect();
        close(roots[1] - roots[0], roots[19] - roots[18], 1e-12);
        assert_eq!(karras_sigmas(1, 0.002, 80.0, KARRAS_RHO), vec![80.0]);
    }

    #[test]
    fn bad_schedules_are_errors() {
        let bad = [
            DiscreteSchedule::new(1, 0.0001, 0.02, BetaSchedule::Linear),
            DiscreteSchedule::new(1000, 0.0001, 1.0, BetaSchedule::Linear),
            DiscreteSchedule::new(1000, 0.0, 0.02, BetaSchedule::Linear),
            DiscreteSchedule::new(1000, -0.1, 0.02, BetaSchedule::ScaledLinear),
            DiscreteSchedule::new(1000, f64::NAN, 0.02, BetaSchedule::Linear),
        ];
        for result in bad {
            assert!(matches!(result, Err(SampleError::Config(_))), "{result:?}");
        }
    }

    #[test]
    fn given_alphas_cumprod_must_fall_inside_zero_to_one() {
        let schedule = DiscreteSchedule::from_alphas_cumprod(vec![0.9, 0.5, 0.1]).unwrap();
        assert_eq!(schedule.alphas_cumprod(), &[0.9, 0.5, 0.1]);
        for bad in [vec![0.9], vec![1.0, 0.5], vec![0.9, 0.0], vec![0.5, 0.9], vec![0.5, 0.5], vec![0.9, f64::NAN]] {
            let result = DiscreteSchedule::from_alphas_cumprod(bad);
            assert!(matches!(result, Err(SampleError::Config(_))), "{result:?}");
        }
    }

    #[test]
    fn vp_alpha_cumprod_integrates_the_linear_beta() {
        close(vp_alpha_cumprod(0.0), 1.0, 0.0);
        close(vp_alpha_cumprod(1.0), (-10.05f64).exp(), 1e-15);
        close(vp_alpha_cumprod(0.5), (-(0.05 + 0.5 * 19.9 * 0.25f64)).exp(), 1e-15);
        // d(−ln ᾱ)/dt is β(t) itself.
        let h = 1e-6;
        let beta = |t: f64| (vp_alpha_cumprod(t - h).ln() - vp_alpha_cumprod(t + h).ln()) / (2.0 * h);
        close(beta(0.3), VP_BETA_MIN + 0.3 * (VP_BETA_MAX - VP_BETA_MIN), 1e-6);
    }

    #[test]
    fn impossible_timestep_requests_are_errors() {
        let mut schedule = stable_diffusion();
        for steps in [0, 1001] {
            assert!(matches!(schedule.timesteps(steps), Err(SampleError::Config(_))));
        }
        schedule.steps_offset = 1;
        let err = schedule.timesteps(1000).unwrap_err();
        assert!(err.to_string().contains("steps_offset"), "{err}");
    }
}
