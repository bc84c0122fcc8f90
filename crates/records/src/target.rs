//! Quality targets (`solve --target sqnr=30dB`) and the record of the search that meets them:
//! every round's loss cap, prediction, measurement and size, stored in the plan it chose.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A measured quantity a target bounds from below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Denoiser-output SQNR over every step, dB.
    Sqnr,
    /// Final-image SSIM.
    Ssim,
    /// Final-image PSNR, dB.
    Psnr,
    /// Whole-caption accuracy of the pipeline's attribute classifier.
    Caption,
}

bitsearch_types::named_enum!(Metric, "target metric", {
    Sqnr => "sqnr", Ssim => "ssim", Psnr => "psnr", Caption => "caption"
});

/// `metric ≥ value` on the calibration items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub metric: Metric,
    pub value: f64,
}

impl Target {
    /// How far `measured` clears the target, in dB: the difference for SQNR and PSNR, the ratio
    /// of the error rates (1 − value) for SSIM and caption accuracy, so that every margin reads
    /// alike and moves by about as many dB as the noise does. Negative: missed.
    pub fn margin_db(&self, measured: &Measured) -> f64 {
        let error_db = |v: f64| -10.0 * (1.0 - v).max(1e-12).log10();
        match self.metric {
            Metric::Sqnr => measured.sqnr_db - self.value,
            Metric::Psnr => measured.psnr_db - self.value,
            Metric::Ssim => error_db(measured.ssim) - error_db(self.value),
            Metric::Caption => error_db(measured.caption) - error_db(self.value),
        }
    }

    /// The measured value of this target's metric.
    pub fn measured(&self, measured: &Measured) -> f64 {
        self.metric.of(measured)
    }
}

impl Metric {
    /// This metric's value in `measured`.
    pub fn of(self, measured: &Measured) -> f64 {
        match self {
            Metric::Sqnr => measured.sqnr_db,
            Metric::Psnr => measured.psnr_db,
            Metric::Ssim => measured.ssim,
            Metric::Caption => measured.caption,
        }
    }
}

impl FromStr for Target {
    type Err = String;

    /// `sqnr=30dB`, `psnr=30`, `ssim=0.99`, `caption=0.95`.
    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected sqnr=30dB, psnr=30dB, ssim=0.99 or caption=0.95";
        let (name, value) = s.split_once('=').ok_or_else(|| format!("'{s}' is not a target: {expected}"))?;
        let metric: Metric = name.trim().parse().map_err(|e| format!("'{s}': {e}"))?;
        let number = value.trim();
        let number = match metric {
            Metric::Sqnr | Metric::Psnr => number.strip_suffix("dB").unwrap_or(number),
            Metric::Ssim | Metric::Caption => number,
        };
        let value: f64 = number.trim().parse().map_err(|_| format!("'{s}': '{value}' is not a number ({expected})"))?;
        let fraction = matches!(metric, Metric::Ssim | Metric::Caption);
        if !value.is_finite() || (fraction && !(0.0..1.0).contains(&value)) {
            return Err(format!("'{s}': {metric} must be {}", if fraction { "in [0, 1)" } else { "finite" }));
        }
        Ok(Self { metric, value })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.metric {
            Metric::Sqnr | Metric::Psnr => write!(f, "{}={}dB", self.metric, self.value),
            Metric::Ssim | Metric::Caption => write!(f, "{}={}", self.metric, self.value),
        }
    }
}

/// What one round's plan measured (simulated in float) on the calibration items; NaN where the
/// pipeline cannot measure it (caption accuracy without a classifier).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub sqnr_db: f64,
    pub ssim: f64,
    pub psnr_db: f64,
    pub caption: f64,
}

impl Measured {
    /// `, caption 0.984` for a line of measurements, or nothing where no classifier scored it.
    pub fn caption_words(&self) -> String {
        if self.caption.is_nan() { String::new() } else { format!(", caption {:.3}", self.caption) }
    }
}

/// One round of the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Round {
    pub round: usize,
    /// The cap on the predicted objective the program was held to.
    pub loss_cap: f64,
    pub predicted_objective: f64,
    /// NaN when the losses were image MSE (`--loss image`).
    pub predicted_sqnr_db: f64,
    /// The additive image-MSE prediction; absent in plans from before it was recorded.
    #[serde(default = "crate::plan::unknown")]
    pub predicted_psnr_db: f64,
    /// Measured noise over predicted noise of what the losses measure: the denoiser output
    /// (10^((pred − meas SQNR)/10)) or, with image losses, the final image (PSNR): how far
    /// the additive model is from what the layers do together.
    pub noise_factor: f64,
    pub measured: Measured,
    /// The smallest margin over the targets, dB (negative: missed).
    pub margin_db: f64,
    pub bytes: f64,
    pub avg_bits: f64,
    pub meets: bool,
}

impl Round {
    /// What the additive model predicted for the denoiser's SQNR or the image's PSNR (NaN for
    /// the other metrics, which it does not predict).
    pub fn predicted_db(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Sqnr => self.predicted_sqnr_db,
            Metric::Psnr => self.predicted_psnr_db,
            Metric::Ssim | Metric::Caption => f64::NAN,
        }
    }
}

/// The record of a target search, in the plan it chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSearch {
    pub targets: Vec<Target>,
    /// What was minimised: `memory` or `bops`.
    pub minimised: String,
    /// The items measured, in words.
    pub items: String,
    pub rounds: Vec<Round>,
    /// The round whose plan this is: the smallest that met every target.
    pub chosen: usize,
}

/// One shrinkage `solve --shrink search` measured: the plan the program chose with every layer's
/// losses shrunk by `shrink` toward its size's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShrinkRound {
    pub shrink: f64,
    pub predicted_objective: f64,
    /// NaN when the losses were image MSE.
    pub predicted_sqnr_db: f64,
    pub predicted_psnr_db: f64,
    pub measured: Measured,
    pub bytes: f64,
    pub avg_bits: f64,
    /// The earlier round that chose the same plan (so it was not measured again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<usize>,
    /// The standard error, over the items, of the best round's metric less this one's, dB: the
    /// noise a shortfall is judged against (0 for the best's plan; NaN where it cannot be read).
    #[serde(default = "not_measured")]
    pub below_best_se_db: f64,
}

fn not_measured() -> f64 {
    f64::NAN
}

/// The record of a shrinkage selection, in the plan it chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShrinkSearch {
    /// What the selection maximised.
    pub metric: Metric,
    /// The items measured, in words.
    pub items: String,
    pub rounds: Vec<ShrinkRound>,
    /// The round whose plan this is: the largest shrinkage within one standard error of the
    /// best measured.
    pub chosen: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_print_and_measure_margins_in_db() {
        let t: Target = "sqnr=30dB".parse().unwrap();
        assert_eq!(t, Target { metric: Metric::Sqnr, value: 30.0 });
        assert_eq!(t.to_string(), "sqnr=30dB");
        assert_eq!("psnr = 29.5".parse::<Target>().unwrap().value, 29.5);
        let ssim: Target = "ssim=0.99".parse().unwrap();
        let m = Measured { sqnr_db: 31.0, ssim: 0.999, psnr_db: 20.0, caption: f64::NAN };
        assert!((t.margin_db(&m) - 1.0).abs() < 1e-12);
        // Ten times fewer SSIM errors: 10 dB of margin.
        assert!((ssim.margin_db(&m) - 10.0).abs() < 1e-9);
        for bad in ["sqnr", "lpips=0.1", "ssim=1.5", "psnr=high", "caption=-0.1"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
