//! `bitsearch solve`: the per-layer (and per-step-group) bit-widths that lose the least under a
//! memory, BOPs or average-bits budget, as an integer linear program (MixDQ's layer-wise ILP,
//! with PTQD's step-aware precision chosen jointly), solved by HiGHS through good_lp.
//!
//! The data flows sensitivity table → [`Problem`] (options, costs, losses) → [`solve`] →
//! [`plan()`] (the YAML record of `bitsearch_records`). [`Problem::evaluate`] recomputes any
//! allocation's usage and loss from the problem alone, so plans can be checked without trusting
//! the solver. Tables, budgets, plans and frontiers are `bitsearch_records` types; this crate
//! adds only the program and HiGHS. [`target`] closes the loop with measurement: the smallest
//! plan whose measured quality meets a target, and [`select`] how far to shrink the table's
//! losses, by measuring their plans.

mod allocation;
pub mod bench;
mod config;
mod error;
mod greedy;
mod ilp;
mod layer_options;
mod options;
pub mod pareto;
mod plan;
mod precision;
mod problem;
mod reduce;
pub mod select;
pub mod target;

pub use allocation::{Assignment, Evaluation, Usage};
pub use bitsearch_types::LossBasis;
pub use config::{MAX_CONTENT_WEIGHT, SolveConfig};
pub use error::{Result, SolverError};
pub use greedy::uniform;
pub use ilp::{AVG_BITS_WINDOW, RELATIVE_WINDOW, solve};
pub use options::{Fraction, Method, Minimise, SolveOptions, Solved, Status};
pub use plan::{plan, sha256};
pub use problem::{AppliedFit, DEFAULT_PROTECT, INPUT, LayerOptions, MAX_LOSS, OUTPUT, Precision, Problem, Variant};
