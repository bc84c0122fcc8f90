//! How to solve (method, objective, budgets, content share) and what a solve returns.

use crate::allocation::{Assignment, Evaluation};
use bitsearch_records::{Budget, Limit, PointKind, Resource};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A fraction in [0, 1] the user fixes, or `search` for the solver to choose: the share of the
/// first budget that content layers take (searched at 0.1, 0.2 … 0.9 for the best prediction,
/// MixDQ's sweep), or how far losses are shrunk (searched by measuring, see [`crate::select`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fraction {
    Fixed(f64),
    Search(SearchWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchWord {
    Search,
}

impl FromStr for Fraction {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "search" {
            return Ok(Fraction::Search(SearchWord::Search));
        }
        match s.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(Fraction::Fixed(v)),
            _ => Err(format!("'{s}' is not a fraction in [0, 1] or 'search'")),
        }
    }
}

/// What chooses the plan: the integer program, or the marginal-loss greedy baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Ilp,
    Greedy,
}

bitsearch_types::named_enum!(Method, "method", { Ilp => "ilp", Greedy => "greedy" });

impl Method {
    /// The kind of frontier point a plan of this method is.
    pub fn kind(self) -> PointKind {
        match self {
            Method::Ilp => PointKind::Ilp,
            Method::Greedy => PointKind::Greedy,
        }
    }
}

/// What the program minimises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Minimise {
    /// The predicted loss, under the budgets.
    #[default]
    Loss,
    /// Stored weight bytes, under the budgets and the loss cap.
    Memory,
    /// BOPs of a generation, under the budgets and the loss cap.
    Bops,
    /// Mean stored weight bits, under the budgets and the loss cap: what tells 2-, 3- and 4-bit
    /// layers apart when they share the int4 container and so the same bytes.
    #[serde(rename = "avg-bits")]
    AvgBits,
}

bitsearch_types::named_enum!(Minimise, "minimised quantity", {
    Loss => "loss", Memory => "memory", Bops => "bops", AvgBits => "avg-bits"
});

impl Minimise {
    /// The resource minimised; None for the loss.
    pub fn resource(self) -> Option<Resource> {
        match self {
            Minimise::Loss => None,
            Minimise::Memory => Some(Resource::Memory),
            Minimise::Bops => Some(Resource::Bops),
            Minimise::AvgBits => Some(Resource::AvgBits),
        }
    }
}

/// How to solve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolveOptions {
    pub method: Method,
    /// Upper limits; the first also gets a lower bound when the loss is minimised.
    pub budgets: Vec<Budget>,
    pub minimise: Minimise,
    /// Largest predicted objective ([`Evaluation::objective`]) a plan may have; needed when a
    /// resource is minimised.
    pub loss_cap: Option<f64>,
    /// Weight of the content group's normalised loss against the quality group's.
    pub content_weight: f64,
    /// How the first budget (beyond protected layers) is split between content and quality
    /// layers; None lets the program trade freely between the groups.
    pub content_share: Option<Fraction>,
    /// Lower bound of the first budget as a fraction of it; None: MixDQ's window.
    pub fill: Option<f64>,
    /// Seconds before HiGHS stops with its best plan so far.
    pub time_limit: f64,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            method: Method::Ilp,
            budgets: Vec::new(),
            minimise: Minimise::Loss,
            loss_cap: None,
            content_weight: 1.0,
            content_share: None,
            fill: None,
            time_limit: 60.0,
        }
    }
}

/// How a solve ended: the program's HiGHS status, or the baseline that chose the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Proven optimal, gap 0.
    Optimal,
    /// The best plan HiGHS found before its time limit.
    TimeLimit,
    /// The greedy baseline's plan.
    Greedy,
    /// Every quantized layer at one bit-width.
    Uniform,
}

bitsearch_types::named_enum!(Status, "solve status", {
    Optimal => "optimal", TimeLimit => "time_limit", Greedy => "greedy", Uniform => "uniform"
});

/// A solved program.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    /// What chose the plan, in words.
    pub solver: &'static str,
    pub assignment: Assignment,
    pub evaluation: Evaluation,
    pub limits: Vec<Limit>,
    pub status: Status,
    /// Relative gap to the LP bound; 0 when proven optimal.
    pub gap: f64,
    pub seconds: f64,
    pub variables: usize,
    pub constraints: usize,
    /// The content share the program was held to (None: free, or no content layers).
    pub content_share: Option<f64>,
}
