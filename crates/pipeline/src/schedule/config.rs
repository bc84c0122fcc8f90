//! diffusers' `scheduler_config.json`: the schedule a model was trained on, its prediction type,
//! and the sampler that best stands in for the configured scheduler class.

use serde::Deserialize;

use super::{BetaSchedule, DiscreteSchedule, TimestepSpacing};
use crate::sampler::{Prediction, SAMPLERS, SampleError, SamplerKind, SamplerSettings, TimeDomain};

/// diffusers' `scheduler/scheduler_config.json`; fields it does not list are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    /// The diffusers scheduler class, e.g. `DDIMScheduler`.
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    #[serde(default = "default_train_timesteps")]
    pub num_train_timesteps: usize,
    /// `None` when absent: the class's default applies (see [`SchedulerConfig::schedule`]).
    pub beta_start: Option<f64>,
    /// `None` when absent: the class's default applies.
    pub beta_end: Option<f64>,
    /// `None` when absent: the class's default applies.
    pub beta_schedule: Option<BetaSchedule>,
    #[serde(default)]
    pub prediction_type: Prediction,
    /// `None` when absent: `linspace` for the Euler/DPM-style classes, `leading` otherwise.
    pub timestep_spacing: Option<TimestepSpacing>,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
    #[serde(default = "default_original_inference_steps")]
    pub original_inference_steps: usize,
    #[serde(default = "default_timestep_scaling")]
    pub timestep_scaling: f64,
}

fn default_train_timesteps() -> usize {
    1000
}

fn default_true() -> bool {
    true
}

fn default_original_inference_steps() -> usize {
    50
}

fn default_timestep_scaling() -> f64 {
    10.0
}

/// Scheduler classes whose diffusers default `timestep_spacing` is `linspace`.
const LINSPACE_CLASSES: [&str; 7] = ["Euler", "DPMSolver", "LMS", "DEIS", "UniPC", "Heun", "KDPM2"];

impl SchedulerConfig {
    fn is_lcm(&self) -> bool {
        self.class_name == "LCMScheduler"
    }

    /// The variance schedule and timestep spacing, with the class's defaults for absent fields.
    pub fn schedule(&self) -> Result<DiscreteSchedule, SampleError> {
        // LCMScheduler alone defaults to Stable Diffusion's betas; the others to DDPM's.
        let (start, end, kind) = if self.is_lcm() {
            (0.00085, 0.012, BetaSchedule::ScaledLinear)
        } else {
            (0.0001, 0.02, BetaSchedule::Linear)
        };
        let mut schedule = DiscreteSchedule::new(
            self.num_train_timesteps,
            self.beta_start.unwrap_or(start),
            self.beta_end.unwrap_or(end),
            self.beta_schedule.unwrap_or(kind),
        )?;
        let linspace_default = LINSPACE_CLASSES.iter().any(|p| self.class_name.starts_with(p));
        schedule.spacing = self.timestep_spacing.unwrap_or(if linspace_default {
            TimestepSpacing::Linspace
        } else {
            TimestepSpacing::Leading
        });
        schedule.steps_offset = self.steps_offset;
        schedule.set_alpha_to_one = self.set_alpha_to_one;
        Ok(schedule)
    }

    /// The sampler that best matches the configured class, and a note to log when it is a
    /// stand-in for a scheduler this crate does not implement.
    pub fn default_sampler(&self) -> (SamplerKind, Option<String>) {
        let class = self.class_name.as_str();
        if let Some(sampler) = SAMPLERS.iter().find(|s| s.scheduler_class() == Some(class)) {
            return (sampler.kind(), None);
        }
        match class {
            "EulerAncestralDiscreteScheduler" => (
                SamplerKind::Euler,
                Some("EulerAncestralDiscreteScheduler is sampled with the deterministic euler sampler".into()),
            ),
            other => (
                SamplerKind::Ddim,
                Some(format!("scheduler {other:?} is not implemented; sampling with ddim on the same noise schedule")),
            ),
        }
    }

    /// Settings for running `kind` for `steps` steps on this schedule (eta 0).
    pub fn settings(&self, kind: SamplerKind, steps: usize) -> Result<SamplerSettings, SampleError> {
        let mut settings =
            SamplerSettings::new(kind, steps, self.prediction_type, TimeDomain::Discrete(self.schedule()?));
        settings.original_inference_steps = self.original_inference_steps;
        settings.timestep_scaling = self.timestep_scaling;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{close, stable_diffusion};
    use super::*;

    #[test]
    fn stable_diffusion_pndm_config_maps_to_ddim() {
        let json = r#"{
            "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0",
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
            "steps_offset": 1, "trained_betas": null, "clip_sample": false
        }"#;
        let config: SchedulerConfig = serde_json::from_str(json).unwrap();
        let (kind, note) = config.default_sampler();
        assert_eq!(kind, SamplerKind::Ddim);
        assert!(note.unwrap().contains("PNDMScheduler"));
        let schedule = config.schedule().unwrap();
        assert_eq!(schedule, {
            let mut s = stable_diffusion();
            s.steps_offset = 1;
            s.set_alpha_to_one = false;
            s
        });
        assert_eq!(schedule.timesteps(50).unwrap()[0], 981.0);
        assert_eq!(config.prediction_type, Prediction::Epsilon);
    }

    #[test]
    fn class_defaults_fill_absent_fields() {
        let lcm: SchedulerConfig = serde_json::from_str(r#"{"_class_name": "LCMScheduler"}"#).unwrap();
        assert_eq!(lcm.default_sampler(), (SamplerKind::Lcm, None));
        assert_eq!(lcm.schedule().unwrap(), stable_diffusion());
        assert_eq!((lcm.original_inference_steps, lcm.timestep_scaling), (50, 10.0));

        let euler: SchedulerConfig = serde_json::from_str(
            r#"{"_class_name": "EulerDiscreteScheduler", "prediction_type": "v_prediction", "interpolation_type": "linear"}"#,
        )
        .unwrap();
        assert_eq!(euler.default_sampler(), (SamplerKind::Euler, None));
        assert_eq!(euler.prediction_type, Prediction::VPrediction);
        let schedule = euler.schedule().unwrap();
        assert_eq!(schedule.spacing, TimestepSpacing::Linspace);
        close(schedule.alphas_cumprod()[0], 0.9999, 1e-12);

        let ddim: SchedulerConfig =
            serde_json::from_str(r#"{"_class_name": "DDIMScheduler", "timestep_spacing": "trailing"}"#).unwrap();
        assert_eq!(ddim.default_sampler(), (SamplerKind::Ddim, None));
        assert_eq!(ddim.schedule().unwrap().spacing, TimestepSpacing::Trailing);
        assert!(ddim.set_alpha_to_one);

        let settings = lcm.settings(SamplerKind::Lcm, 4).unwrap();
        assert_eq!((settings.steps, settings.eta), (4, 0.0));
    }

    #[test]
    fn unknown_strings_in_config_are_errors() {
        for json in [r#"{"beta_schedule": "sigmoid"}"#, r#"{"prediction_type": "flow"}"#] {
            assert!(serde_json::from_str::<SchedulerConfig>(json).is_err(), "{json}");
        }
    }
}
