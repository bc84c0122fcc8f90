//! The integer program, built with good_lp and solved by HiGHS to proven optimality:
//!
//! - binary `x[l,o,g]`: layer `l` takes option `o` during step group `g`; exactly one per (l, g);
//!   options whose probe gave NaN/Inf get no variable;
//! - with several step groups, binary `z[l,w]`: layer `l` stores its weight at `w` bits, with
//!   `x ≤ z` for every option and group using `w`, and `z ≤ Σ x` so nothing unused is stored;
//! - budgets as linear rows over `x` (BOPs) or the stored weights (memory, avg-bits); the first
//!   budget also gets a lower bound so the plan uses what it is given (MixDQ's window);
//! - with a content share, the first budget is split between the content and quality layers;
//! - objective: Σ cost · x, the normalised losses of [`Problem::cost`] — or, with
//!   [`Minimise::Memory`] / [`Minimise::Bops`] / [`Minimise::AvgBits`], that resource, with
//!   Σ cost · x capped instead (the program a quality target solves);
//! - ties: layers of one [`Problem::ties`] set take the same precision in every group.
//!
//! Before HiGHS sees it, a program with one budget row, a loss objective and no ties or shares
//! is reduced exactly: options a Lagrangian bound proves cannot be optimal get no variable; with
//! step groups under a budget on stored weights the program is first solved as a knapsack over
//! each layer's sets of stored widths, whose plan is the optimum when it stores within the
//! budget's window.

mod columns;
mod presolve;
mod program;
mod rows;
mod run;

use crate::allocation::Assignment;
use crate::error::{Result, SolverError};
use crate::options::{Fraction, Method, Minimise, SolveOptions, Solved, Status};
use crate::problem::Problem;
use bitsearch_records::{Budget, Limit, PointKind, Resource};
use bitsearch_types::MetricGroup;
use std::time::Instant;

/// MixDQ's window below an avg-bits budget: a 4-bit budget is met by 3.98 to 4.00 bits.
pub const AVG_BITS_WINDOW: f64 = 0.02;
/// The same window for memory and BOPs budgets, as a fraction of the budget.
pub const RELATIVE_WINDOW: f64 = 0.005;
const OBJECTIVE_SCALE: f64 = 1e4;
/// Slack for float round-off when checking a plan against its budgets.
pub(crate) const TOLERANCE: f64 = 1e-9;

/// Solves the allocation under `options` with its method. An unreachable budget is an error
/// naming the smallest feasible one.
pub fn solve(problem: &Problem, options: &SolveOptions) -> Result<Solved> {
    // Nothing to choose, and no quantized parameters for an avg-bits row to divide by.
    if problem.layers.iter().all(|l| l.protected) {
        return Err(SolverError::Config {
            field: "protect".into(),
            message: "every layer of the table is protected: there is nothing to quantize".into(),
        });
    }
    if options.method == Method::Greedy && (options.minimise != Minimise::Loss || !problem.ties.is_empty()) {
        return Err(SolverError::Config {
            field: "method".into(),
            message: "the greedy plan minimises the loss of untied layers: use the ilp method".into(),
        });
    }
    match (options.method, options.content_share) {
        (Method::Greedy, _) => crate::greedy::solve(problem, options),
        (Method::Ilp, Some(Fraction::Search(_))) => solve_searching_share(problem, options),
        (Method::Ilp, _) => solve_once(problem, options),
    }
}

/// An error naming the smallest feasible budget when `limit` of `budget`'s resource is below
/// what every quantized layer at its fewest bits uses.
pub(crate) fn check_feasible(problem: &Problem, budget: &Budget, limit: f64) -> Result<()> {
    let resource = budget.resource;
    let minimum = problem.evaluate(&problem.extreme(resource, false), 1.0).usage.get(resource);
    if limit < minimum * (1.0 - TOLERANCE) {
        return Err(SolverError::Infeasible {
            budget: budget.to_string(),
            resource: resource.name().into(),
            minimum: resource.format(minimum),
            how: "every quantized layer at its fewest bits, protected layers in float".into(),
        });
    }
    Ok(())
}

/// One program (with a fixed content share or none).
fn solve_once(problem: &Problem, options: &SolveOptions) -> Result<Solved> {
    let started = Instant::now();
    match (options.minimise, options.loss_cap) {
        (Minimise::Loss, _) if options.budgets.is_empty() => {
            return Err(SolverError::Config { field: "budget".into(), message: "give at least one budget".into() });
        }
        (Minimise::Memory | Minimise::Bops | Minimise::AvgBits, None) => {
            return Err(SolverError::Config {
                field: "loss_cap".into(),
                message: format!("minimising {} needs a cap on the predicted loss", options.minimise),
            });
        }
        _ => {}
    }
    if let Some(cap) = options.loss_cap {
        check_reachable(problem, cap, options.content_weight)?;
    }
    let full = problem.full_precision();
    let limits: Vec<(Resource, f64)> =
        options.budgets.iter().map(|b| (b.resource, b.amount.resolve(full.get(b.resource)))).collect();
    for (budget, &(_, limit)) in options.budgets.iter().zip(&limits) {
        check_feasible(problem, budget, limit)?;
    }
    // The lower bound keeps a loss-minimising plan from leaving its budget unused; a plan that
    // minimises a resource has no reason to be held up.
    let lower = match limits.first() {
        Some(&(first_resource, first_limit)) if options.minimise == Minimise::Loss => {
            let wanted = match (options.fill, first_resource) {
                (Some(f), _) => f * first_limit,
                (None, Resource::AvgBits) => first_limit - AVG_BITS_WINDOW,
                (None, _) => first_limit * (1.0 - RELATIVE_WINDOW),
            };
            // A budget above what the most generous plan can use is met by that plan.
            let reachable = problem.evaluate(&problem.extreme(first_resource, true), 1.0).usage.get(first_resource);
            wanted.min(reachable)
        }
        _ => 0.0,
    };

    let solved = program::program(problem, options, &limits, lower, started);
    match solved {
        Err(SolverError::Infeasible { .. }) if lower > 0.0 => {
            let (first_resource, first_limit) = limits[0];
            log::warn!(
                "no plan uses between {} and {} of {}; solved without the lower bound",
                first_resource.format(lower),
                first_resource.format(first_limit),
                first_resource
            );
            program::program(problem, options, &limits, 0.0, started)
        }
        other => other,
    }
}

/// An error naming the smallest reachable cap when `cap` is below the predicted objective of
/// every layer at its least lossy option.
fn check_reachable(problem: &Problem, cap: f64, content_weight: f64) -> Result<()> {
    let best = problem.evaluate(&problem.least_loss(content_weight), content_weight).objective;
    if cap < best * (1.0 - TOLERANCE) {
        return Err(SolverError::Unreachable { cap: format!("{cap:.6e}"), best: format!("{best:.6e}") });
    }
    Ok(())
}

/// avg-bits rows are written in total stored bits: Σ params·w ≤ limit · Σ params.
fn row_scale(problem: &Problem, resource: Resource) -> f64 {
    if resource == Resource::AvgBits { problem.quantized_params() as f64 } else { 1.0 }
}

/// What a program's solution says, before it is evaluated.
#[derive(Debug)]
struct Outcome {
    assignment: Assignment,
    status: Status,
    gap: f64,
    variables: usize,
    constraints: usize,
}

/// The solved program: the outcome's plan evaluated, and each limit's use.
fn finish(
    problem: &Problem,
    options: &SolveOptions,
    limits: &[(Resource, f64)],
    lower: f64,
    started: Instant,
    content_share: Option<f64>,
    outcome: Outcome,
) -> Solved {
    let full = problem.full_precision();
    let evaluation = problem.evaluate(&outcome.assignment, options.content_weight);
    let limits = limits
        .iter()
        .enumerate()
        .map(|(i, &(resource, limit))| Limit {
            resource,
            limit,
            lower: (i == 0 && lower > 0.0).then_some(lower),
            used: evaluation.usage.get(resource),
            full_precision: full.get(resource),
        })
        .collect();
    Solved {
        solver: PointKind::Ilp.solver(),
        assignment: outcome.assignment,
        evaluation,
        limits,
        status: outcome.status,
        gap: outcome.gap,
        seconds: started.elapsed().as_secs_f64(),
        variables: outcome.variables,
        constraints: outcome.constraints,
        content_share,
    }
}

fn has_content(problem: &Problem) -> bool {
    (0..problem.layers.len()).any(|l| problem.group(l) == MetricGroup::Content && !problem.layers[l].protected)
}

/// Content shares tried by [`solve_searching_share`].
const SHARES: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// MixDQ's share sweep: solves with the content layers held to each share of the first budget
/// and keeps the plan with the best predicted objective. Without content layers, one solve.
fn solve_searching_share(problem: &Problem, options: &SolveOptions) -> Result<Solved> {
    if !has_content(problem) {
        return solve_once(problem, options);
    }
    let mut best: Option<Solved> = None;
    let mut last_error = None;
    for share in SHARES {
        let options = SolveOptions { content_share: Some(Fraction::Fixed(share)), ..options.clone() };
        match solve_once(problem, &options) {
            Ok(s) if best.as_ref().is_none_or(|b| s.evaluation.objective < b.evaluation.objective) => best = Some(s),
            Ok(_) => {}
            Err(e @ SolverError::Infeasible { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    best.ok_or_else(|| last_error.unwrap_or_else(|| SolverError::Solver("no share was tried".into())))
}
