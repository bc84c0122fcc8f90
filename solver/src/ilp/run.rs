//! HiGHS itself: set to prove optimality, its status mapped to the solve's, and its column
//! values read back.

use crate::error::{Result, SolverError};
use crate::options::{SolveOptions, Status};
use bitsearch_records::{Budget, Resource};
use good_lp::solvers::highs::HighsProblem;
use highs::{HighsModelStatus, HighsSolutionStatus};

/// What HiGHS found: how it ended, the relative gap and every column's value.
pub(super) struct Found {
    pub status: Status,
    pub gap: f64,
    pub values: Vec<f64>,
}

/// HiGHS's own model of `model`, quiet, on one thread, set to prove optimality (no relative or
/// absolute gap tolerated) within `time_limit` seconds.
pub(super) fn exact(model: HighsProblem, time_limit: f64) -> std::result::Result<highs::Model, String> {
    let mut highs = model.try_into_inner().map_err(|e| e.to_string())?;
    highs.make_quiet();
    highs.set_option("mip_rel_gap", 0.0);
    highs.set_option("mip_abs_gap", 0.0);
    highs.set_option("time_limit", time_limit);
    highs.set_option("threads", 1);
    Ok(highs)
}

/// Solves `model` by HiGHS directly (good_lp built it) to read the status and the gap; an
/// infeasible program is an error naming the limits (`options`' budgets, evaluated as `limits`).
pub(super) fn solve_model(model: HighsProblem, options: &SolveOptions, limits: &[(Resource, f64)]) -> Result<Found> {
    let highs = exact(model, options.time_limit).map_err(SolverError::Solver)?;
    let solved = highs.try_solve().map_err(|e| SolverError::Solver(format!("{e:?}")))?;
    let status = match solved.status() {
        HighsModelStatus::Optimal => Status::Optimal,
        HighsModelStatus::ReachedTimeLimit | HighsModelStatus::ReachedInterrupt => Status::TimeLimit,
        HighsModelStatus::Infeasible | HighsModelStatus::UnboundedOrInfeasible => {
            return Err(SolverError::Infeasible {
                budget: options
                    .budgets
                    .iter()
                    .map(Budget::to_string)
                    .chain(options.loss_cap.map(|cap| format!("loss cap {cap:.6e}")))
                    .collect::<Vec<_>>()
                    .join(" and "),
                resource: limits.first().map_or("loss cap", |(r, _)| r.name()).into(),
                minimum: "not reachable together with the other limits".into(),
                how: "each limit alone is feasible; loosen one, or the fill window / content share / ties".into(),
            });
        }
        other => return Err(SolverError::Solver(format!("HiGHS ended with {other:?}"))),
    };
    if solved.primal_solution_status() != HighsSolutionStatus::Feasible {
        return Err(SolverError::Solver(format!("HiGHS found no plan before it stopped ({status})")));
    }
    let values = solved.get_solution().columns().to_vec();
    // HiGHS's own measure; below 1e-12 it is round-off of a proven optimum.
    let gap = if solved.mip_gap().is_finite() { solved.mip_gap().max(0.0) } else { f64::NAN };
    Ok(Found { status, gap, values })
}
