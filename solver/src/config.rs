//! `bitsearch solve`'s settings from YAML (`--config`), overridden by flags.

use crate::budget::Budget;
use crate::error::{Result, SolverError};
use crate::ilp::SolveOptions;
use crate::problem::DEFAULT_PROTECT;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::str::FromStr;

/// How the first budget is split between content and quality layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Share {
    /// This fraction for content layers.
    Fixed(f64),
    /// `search`: solve at shares 0.1, 0.2 … 0.9 and keep the best prediction (MixDQ's sweep).
    Search(SearchWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchWord {
    Search,
}

impl FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "search" {
            return Ok(Share::Search(SearchWord::Search));
        }
        match s.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(Share::Fixed(v)),
            _ => Err(format!("'{s}' is not a content share: expected a fraction in [0, 1] or 'search'")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SolveConfig {
    /// Budgets as on the command line (`avg-bits=4`, `2.5MB`, `30%`); the first also gets a
    /// lower bound.
    pub budgets: Vec<String>,
    pub content_weight: f64,
    pub content_share: Option<Share>,
    /// Layers kept in float: names, roles, `input`, `output`.
    pub protect: Vec<String>,
    /// Lower bound of the first budget as a fraction of it (default: MixDQ's window).
    pub fill: Option<f64>,
    /// Seconds HiGHS may spend per program.
    pub time_limit: f64,
}

impl Default for SolveConfig {
    fn default() -> Self {
        Self {
            budgets: Vec::new(),
            content_weight: 1.0,
            content_share: None,
            protect: DEFAULT_PROTECT.iter().map(|s| s.to_string()).collect(),
            fill: None,
            time_limit: 60.0,
        }
    }
}

impl SolveConfig {
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let error = |message: String| SolverError::Config { field: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        serde_norway::from_str(&text).map_err(|e| error(e.to_string()))
    }

    /// Checks the values and turns them into solver options.
    pub fn options(&self) -> Result<SolveOptions> {
        let field = |field: &str, message: String| SolverError::Config { field: field.into(), message };
        let budgets = self
            .budgets
            .iter()
            .map(|b| b.parse::<Budget>().map_err(|m| field("budgets", m)))
            .collect::<Result<Vec<_>>>()?;
        if !(self.content_weight.is_finite() && self.content_weight >= 0.0) {
            return Err(field("content_weight", format!("{} is not a non-negative number", self.content_weight)));
        }
        if let Some(Share::Fixed(s)) = self.content_share
            && !(0.0..=1.0).contains(&s)
        {
            return Err(field("content_share", format!("{s} is not a fraction in [0, 1]")));
        }
        if let Some(f) = self.fill.filter(|f| !(0.0..=1.0).contains(f)) {
            return Err(field("fill", format!("{f} is not a fraction in [0, 1]")));
        }
        if self.time_limit.is_nan() || self.time_limit <= 0.0 {
            return Err(field("time_limit", "must be positive".into()));
        }
        Ok(SolveOptions {
            budgets,
            content_weight: self.content_weight,
            content_share: match self.content_share {
                Some(Share::Fixed(s)) => Some(s),
                _ => None,
            },
            fill: self.fill,
            time_limit: self.time_limit,
        })
    }

    pub fn searches_share(&self) -> bool {
        matches!(self.content_share, Some(Share::Search(_)))
    }
}
