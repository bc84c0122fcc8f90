//! One program built and solved: the reductions first, then the columns, the objective, the
//! rows, HiGHS, and the plan read back from the columns.

use super::columns::Columns;
use super::presolve::{Reduced, reduce};
use super::rows::Rows;
use super::{OBJECTIVE_SCALE, Outcome, finish, has_content, run};
use crate::error::Result;
use crate::options::{Fraction, SolveOptions, Solved};
use crate::problem::Problem;
use bitsearch_records::Resource;
use good_lp::ProblemVariables;
use std::time::Instant;

/// Builds and solves the program with `lower` as the first budget's lower bound.
pub(super) fn program(
    problem: &Problem,
    options: &SolveOptions,
    limits: &[(Resource, f64)],
    lower: f64,
    started: Instant,
) -> Result<Solved> {
    // A fixed share applies only where there are content layers to hold to it.
    let content_share = match (options.content_share, limits.first()) {
        (Some(Fraction::Fixed(share)), Some(&first)) if has_content(problem) => Some((share, first)),
        _ => None,
    };
    let pruned = match reduce(problem, options, limits, lower, content_share.is_some()) {
        Some(Reduced::Solved(outcome)) => return Ok(finish(problem, options, limits, lower, started, None, outcome)),
        Some(Reduced::Pruned(pruned)) => Some(pruned),
        None => None,
    };
    let mut vars = ProblemVariables::new();
    // Stored widths are columns only where a budget or the objective counts stored weights.
    let counts_storage = limits.iter().map(|&(r, _)| r).chain(options.minimise.resource()).any(|r| !r.per_step());
    let columns = Columns::new(problem, &mut vars, pruned.as_ref(), counts_storage);
    let loss = columns.loss(options.content_weight);
    let objective = match options.minimise.resource() {
        None => loss.clone(),
        // Divided by the full-precision amount so the objective is a fraction near 1.
        Some(resource) => columns.usage(resource, None).0 / problem.full_precision().get(resource) * OBJECTIVE_SCALE,
    };
    let mut rows = Rows::new(&columns, vars.minimise(objective).using(good_lp::highs));
    for (l, _) in problem.layers.iter().enumerate().filter(|(_, layer)| !layer.protected) {
        rows.one_option(l);
        rows.stored_widths(l);
    }
    if let Some(cap) = options.loss_cap {
        rows.loss_cap(loss, cap);
    }
    rows.ties();
    rows.budgets(limits);
    if let (true, Some(&first)) = (lower > 0.0, limits.first()) {
        rows.lower_bound(first, lower);
    }
    if let Some((share, first)) = content_share {
        rows.content_share(share, first);
    }
    let (model, constraints) = rows.finish();
    let found = run::solve_model(model, options, limits)?;
    let assignment = columns.assignment(&found.values);
    let outcome = Outcome { assignment, status: found.status, gap: found.gap, variables: columns.count, constraints };
    Ok(finish(problem, options, limits, lower, started, content_share.map(|(share, _)| share), outcome))
}
