//! The small enums a generation is described with: sampler, prediction type, time input, device
//! and seed pairing. Names only; what they do lives in the pipeline and runtime crates.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The sampling algorithm; ddim, euler and lcm need a discrete schedule, the others a sigma
/// domain. Each variant is one file of `bitsearch_pipeline::sampler`.
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
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            format!("unknown sampler {s:?}; expected one of {}", names.join(", "))
        })
    }
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
    pub const ALL: [Self; 4] = [Self::Epsilon, Self::VPrediction, Self::Sample, Self::Score];

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
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown prediction type {s:?}; expected epsilon, v_prediction, sample or score"))
    }
}

/// What a denoiser file's time input measures: it fixes the noise schedule the samplers assume
/// and the values the input receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeKind {
    /// A training timestep 0…999 of Stable Diffusion's scaled-linear schedule (bare epsilon UNets).
    Discrete,
    /// The noise level σ of `x = x0 + σ·ε`, unscaled (EDM and consistency models).
    Sigma,
    /// Continuous time t ∈ [0, 1] of the linear-β VP SDE (score-SDE models).
    Vp,
}

crate::named_enum!(TimeKind, "time kind", { Discrete => "discrete", Sigma => "sigma", Vp => "vp" });

/// The device the user asked for (the runtime resolves it to the one a session runs on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("unknown device '{other}', expected auto, cpu or cuda")),
        }
    }
}

/// How seeds meet the prompts (or condition sets) to make the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Every prompt runs with every seed: prompts × seeds items, the seeds' noise shared by all
    /// prompts.
    #[default]
    Every,
    /// Prompt i runs with seed i alone, so every item has noise of its own (a calibration set
    /// whose items share one noise draw fits the layers to that draw). A single seed S stands
    /// for S, S+1, …
    Zip,
}

impl Pairing {
    pub fn name(self) -> &'static str {
        match self {
            Self::Every => "every",
            Self::Zip => "zip",
        }
    }
}

impl fmt::Display for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pairing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Every, Self::Zip]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown pairing {s:?}; expected every or zip"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in SamplerKind::ALL {
            assert_eq!(kind.to_string().parse::<SamplerKind>(), Ok(kind));
        }
        assert_eq!("edm-euler".parse::<SamplerKind>(), Ok(SamplerKind::EdmEuler));
        for pred in Prediction::ALL {
            assert_eq!(pred.to_string().parse::<Prediction>(), Ok(pred));
        }
        assert_eq!("v_prediction".parse::<Prediction>(), Ok(Prediction::VPrediction));
        assert_eq!(
            "heun".parse::<SamplerKind>(),
            Err("unknown sampler \"heun\"; expected one of ddim, euler, lcm, consistency, edm-euler".into())
        );
        assert!("v".parse::<Prediction>().is_err());
        for kind in TimeKind::ALL {
            assert_eq!(kind.to_string().parse::<TimeKind>(), Ok(kind));
        }
        assert!("ve".parse::<TimeKind>().unwrap_err().contains("expected one of: discrete, sigma, vp"));
        assert_eq!("zip".parse::<Pairing>(), Ok(Pairing::Zip));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda));
    }
}
