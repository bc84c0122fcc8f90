//! PTQD's noise correction as fitted by `quantize --ptqd`: per denoising step, how the quantized
//! denoiser's noise estimate relates to the float one on the same input, in the sampler's ε
//! space. A YAML file beside the quantized models; the manifest names it and samplers apply it.

use crate::check::{self, Checked, Invalid, invalid};
use crate::error::{RecordError, Result, check_format};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const NOISE_CORRECTION_FORMAT: u32 = 1;

/// The fit `ε_q = (1 + k_t)·ε + b_t,c + r` of every step, `r` of standard deviation `sigma`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseCorrection {
    pub bitsearch_noise_correction: u32,
    /// The sampler and step count the steps were fitted for; a run must use the same timesteps.
    pub sampler: String,
    /// The network's prediction type (converted to ε before fitting).
    pub prediction: String,
    /// Items of the float trajectories both denoisers were evaluated on.
    pub calibration_items: Vec<String>,
    pub steps: Vec<StepNoise>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepNoise {
    /// The sampler's time at this step (training timestep).
    pub timestep: f64,
    /// The least-squares slope of ε_q − ε on ε (within channels) as fitted.
    pub k_fitted: f64,
    /// The slope the correction divides by: `k_fitted` when positive, else 0 (PTQD).
    pub k: f64,
    /// Per channel: the mean of ε_q − (1 + k)·ε.
    pub bias: Vec<f32>,
    /// Standard deviation of what the fit leaves, r = ε_q − b − (1 + k)·ε.
    pub sigma: f64,
    /// Root mean square of ε_q − ε before any correction, for comparison.
    pub rms_error: f64,
}

impl NoiseCorrection {
    /// Every step's fit: finite numbers, k and the spreads non-negative.
    fn validate(&self) -> Checked {
        if self.steps.is_empty() || self.steps.len() > check::MAX_STEPS {
            return Err(invalid("steps", format!("{} steps is outside 1..={}", self.steps.len(), check::MAX_STEPS)));
        }
        for (i, step) in self.steps.iter().enumerate() {
            let at = |e: Invalid| e.under(&format!("steps[{i}]"));
            check::finite("timestep", step.timestep).map_err(at)?;
            check::finite("k_fitted", step.k_fitted).map_err(at)?;
            for (name, value) in [("k", step.k), ("sigma", step.sigma), ("rms_error", step.rms_error)] {
                check::non_negative(name, value).map_err(at)?;
            }
            if let Some(c) = step.bias.iter().position(|b| !b.is_finite()) {
                return Err(at(invalid(format!("bias[{c}]"), "must be a finite number")));
            }
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let yaml = serde_norway::to_string(self).map_err(|e| RecordError::file(path, e.to_string()))?;
        crate::write_file(path, yaml.as_bytes())
    }

    pub fn read(path: &Path) -> Result<Self> {
        let error = |message: String| RecordError::file(path, message);
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let value: serde_norway::Value =
            serde_norway::from_str(&text).map_err(|e| error(format!("not a noise correction: {e}")))?;
        let found = value.get("bitsearch_noise_correction").and_then(serde_norway::Value::as_u64).unwrap_or(0);
        check_format(path, "noise correction", found, NOISE_CORRECTION_FORMAT, "bitsearch quantize --ptqd")?;
        let correction: Self =
            serde_norway::from_value(value).map_err(|e| error(format!("not a noise correction: {e}")))?;
        correction.validate().map_err(|e| e.at(path))?;
        Ok(correction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correction_round_trips_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("noise.yaml");
        let step =
            StepNoise { timestep: 999.0, k_fitted: -0.01, k: 0.0, bias: vec![0.5, -0.25], sigma: 0.1, rms_error: 0.2 };
        let c = NoiseCorrection {
            bitsearch_noise_correction: NOISE_CORRECTION_FORMAT,
            sampler: "ddim".into(),
            prediction: "epsilon".into(),
            calibration_items: vec!["\"a\" seed=0".into()],
            steps: vec![step.clone()],
        };
        c.write(&path).unwrap();
        assert_eq!(NoiseCorrection::read(&path).unwrap(), c);
        let bad = NoiseCorrection { steps: vec![StepNoise { k: -1.0, ..step }], ..c };
        bad.write(&path).unwrap();
        assert!(NoiseCorrection::read(&path).unwrap_err().to_string().contains("steps[0]"));
    }
}
