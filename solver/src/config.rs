//! `bitsearch solve`'s settings from YAML (`--config`), overridden by flags.

use crate::error::{Result, SolverError};
use crate::options::{Fraction, Method, Minimise, SolveOptions};
use crate::problem::DEFAULT_PROTECT;
use bitsearch_records::{Budget, Metric, Target};
use bitsearch_types::LossBasis;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest content weight: past it the quality layers' costs fall below HiGHS's tolerances
/// beside the content layers', and the weighted costs toward what HiGHS takes for infinite.
pub const MAX_CONTENT_WEIGHT: f64 = 1e6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SolveConfig {
    /// `ilp` (the integer program) or `greedy` (the marginal-loss baseline, one budget).
    pub method: Method,
    /// Budgets as on the command line (`avg-bits=4`, `2.5MB`, `30%`); the first also gets a
    /// lower bound.
    pub budgets: Vec<String>,
    /// What the losses measure: `decoupled` (MixDQ's SQNR/SSIM) or `image` (final-image MSE);
    /// unset: see [`SolveConfig::basis`].
    pub loss: Option<LossBasis>,
    pub content_weight: f64,
    pub content_share: Option<Fraction>,
    /// Layers kept in float: names, roles, `input`, `output`.
    pub protect: Vec<String>,
    /// Layers that take one precision: `name+name+…` or `role+role+…` (see [`crate::Problem::tie`]).
    pub ties: Vec<String>,
    /// `loss` under the budgets, or `memory` / `bops` under a quality target.
    pub minimise: Minimise,
    /// Lower bound of the first budget as a fraction of it (default: MixDQ's window).
    pub fill: Option<f64>,
    /// Seconds HiGHS may spend per program.
    pub time_limit: f64,
    /// How far each layer's losses are shrunk toward what its size predicts, in [0, 1] (see
    /// [`crate::Problem::shrink`]), or `search`: chosen by measuring plans ([`crate::select`]).
    pub shrink: Fraction,
}

impl Default for SolveConfig {
    fn default() -> Self {
        Self {
            method: Method::Ilp,
            budgets: Vec::new(),
            loss: None,
            content_weight: 1.0,
            content_share: None,
            protect: DEFAULT_PROTECT.iter().map(|s| s.to_string()).collect(),
            ties: Vec::new(),
            minimise: Minimise::Loss,
            fill: None,
            time_limit: 60.0,
            shrink: Fraction::Fixed(0.0),
        }
    }
}

impl SolveConfig {
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let error = |message: String| SolverError::Config { field: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        serde_norway::from_str(&text).map_err(|e| error(e.to_string()))
    }

    /// The loss basis: as set, else `image` when a target bounds the image's PSNR (the image
    /// MSE predicts it, the denoiser's SQNR does not) or the table's items were decoded into
    /// images (on shapes-t2i, plans on decoupled losses measured below uniform ones held out:
    /// docs/shapes-t2i.md) unless a content share splits the budget between the decoupled
    /// groups, else `decoupled`.
    pub fn basis(&self, targets: &[Target], decoded_images: bool) -> LossBasis {
        let psnr = targets.iter().any(|t| t.metric == Metric::Psnr);
        let image = psnr || (decoded_images && self.content_share.is_none());
        self.loss.unwrap_or(if image { LossBasis::Image } else { LossBasis::Decoupled })
    }

    /// Checks the values and turns them into solver options.
    pub fn options(&self) -> Result<SolveOptions> {
        let field = |field: &str, message: String| SolverError::Config { field: field.into(), message };
        let budgets = self
            .budgets
            .iter()
            .map(|b| b.parse::<Budget>().map_err(|m| field("budgets", m)))
            .collect::<Result<Vec<_>>>()?;
        if !(0.0..=MAX_CONTENT_WEIGHT).contains(&self.content_weight) {
            return Err(field(
                "content_weight",
                format!("{} is not a number in [0, {MAX_CONTENT_WEIGHT:e}]", self.content_weight),
            ));
        }
        for (name, value) in [("content_share", self.content_share), ("shrink", Some(self.shrink))] {
            if let Some(Fraction::Fixed(s)) = value
                && !(0.0..=1.0).contains(&s)
            {
                return Err(field(name, format!("{s} is not a fraction in [0, 1]")));
            }
        }
        if let Some(f) = self.fill.filter(|f| !(0.0..=1.0).contains(f)) {
            return Err(field("fill", format!("{f} is not a fraction in [0, 1]")));
        }
        if self.time_limit.is_nan() || self.time_limit <= 0.0 {
            return Err(field("time_limit", "must be positive".into()));
        }
        Ok(SolveOptions {
            method: self.method,
            budgets,
            minimise: self.minimise,
            loss_cap: None,
            content_weight: self.content_weight,
            content_share: self.content_share,
            fill: self.fill,
            time_limit: self.time_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_psnr_target_or_a_pipeline_table_solves_on_image_losses_unless_told_otherwise() {
        let psnr: Vec<Target> = vec!["sqnr=20dB".parse().unwrap(), "psnr=30dB".parse().unwrap()];
        let sqnr: Vec<Target> = vec!["sqnr=20dB".parse().unwrap()];
        let unset = SolveConfig::default();
        assert_eq!(unset.basis(&[], false), LossBasis::Decoupled);
        assert_eq!(unset.basis(&sqnr, false), LossBasis::Decoupled);
        assert_eq!(unset.basis(&psnr, false), LossBasis::Image);
        assert_eq!(unset.basis(&[], true), LossBasis::Image);
        assert_eq!(unset.basis(&sqnr, true), LossBasis::Image);
        let shared = SolveConfig { content_share: Some(Fraction::Fixed(0.3)), ..SolveConfig::default() };
        assert_eq!(shared.basis(&[], true), LossBasis::Decoupled);
        let set = SolveConfig { loss: Some(LossBasis::Decoupled), ..SolveConfig::default() };
        assert_eq!(set.basis(&psnr, false), LossBasis::Decoupled);
        assert_eq!(set.basis(&[], true), LossBasis::Decoupled);
    }
}
