//! Pareto sweeps: the program solved at n budgets between two amounts, next to the uniform
//! plans (every layer at one bit-width) for comparison, as frontier points.

use crate::allocation::Evaluation;
use crate::ilp::solve;
use crate::options::{SolveOptions, Solved, Status};
use crate::problem::Problem;
use bitsearch_records::{Budget, FrontierPoint, PointKind, Resource, Sweep};

/// A frontier point of an allocation's prediction.
pub fn point(
    kind: PointKind,
    plan: String,
    resource: Resource,
    budget: f64,
    e: &Evaluation,
    status: Status,
) -> FrontierPoint {
    FrontierPoint {
        kind,
        plan,
        resource,
        budget,
        objective: e.objective,
        sqnr_db: e.predicted_sqnr_db(),
        ssim: e.predicted_ssim(),
        psnr_db: e.predicted_psnr_db(),
        memory: e.usage.memory,
        bops: e.usage.bops,
        avg_bits: e.usage.avg_bits,
        status: status.to_string(),
    }
}

/// Solves every budget of `sweep` (with the other budgets of `base` kept as extra limits);
/// returns each solved budget with its position in the sweep. A budget the program cannot
/// meet (or solve) is left out with a warning, so one bad point does not cost the frontier.
pub fn run(problem: &Problem, sweep: &Sweep, base: &SolveOptions) -> Vec<(usize, Budget, Solved)> {
    let mut solved = Vec::new();
    for (i, budget, options) in budgets(sweep, base) {
        match solve(problem, &options) {
            Ok(s) => solved.push((i, budget, s)),
            Err(e) => log::warn!("sweep point {budget}: {e}; left out"),
        }
    }
    solved
}

/// Every budget of `sweep` with its position and its options: `base` with the budget first.
pub fn budgets(sweep: &Sweep, base: &SolveOptions) -> Vec<(usize, Budget, SolveOptions)> {
    let with = |budget: Budget| {
        let mut options = base.clone();
        options.budgets.insert(0, budget);
        options
    };
    sweep.budgets().into_iter().enumerate().map(|(i, b)| (i, b, with(b))).collect()
}

/// The uniform plans every layer offers, as frontier points.
pub fn uniform_points(problem: &Problem, resource: Resource, content_weight: f64) -> Vec<FrontierPoint> {
    let mut bits: Vec<u32> =
        problem.layers.iter().flat_map(|l| l.options.iter().map(|p| p.w_bits())).filter(|&b| b < 32).collect();
    bits.sort_unstable();
    bits.dedup();
    bits.into_iter()
        .filter_map(|b| {
            let e = problem.evaluate(&problem.uniform(b)?, content_weight);
            Some(point(
                PointKind::Uniform,
                format!("uniform-W{b}"),
                resource,
                e.usage.get(resource),
                &e,
                Status::Uniform,
            ))
        })
        .collect()
}
