//! The baselines the integer program is measured against. The greedy plan starts with every
//! quantized layer at its most precise option and repeatedly moves the layer that loses least
//! per unit of the budget it saves to its next cheaper option, until the budget is met
//! (marginal-loss greedy; one option per layer in every step group). A uniform plan puts every
//! quantized layer at one weight bit-width.

use crate::error::{Result, SolverError};
use crate::ilp::{TOLERANCE, check_feasible};
use crate::options::{SolveOptions, Solved, Status};
use crate::problem::Problem;
use bitsearch_records::{Limit, PointKind, Resource};
use std::time::Instant;

/// The greedy plan under the single budget of `options`.
pub fn solve(problem: &Problem, options: &SolveOptions) -> Result<Solved> {
    let started = Instant::now();
    let [budget] = options.budgets.as_slice() else {
        return Err(config("budget", "the greedy plan takes exactly one budget"));
    };
    if options.content_share.is_some() {
        return Err(config("content_share", "the greedy plan trades content and quality layers freely"));
    }
    let resource = budget.resource;
    let full = problem.full_precision().get(resource);
    let limit = budget.amount.resolve(full);
    check_feasible(problem, budget, limit)?;
    // Each layer's ladder: options from most to least of `resource`, each strictly cheaper and
    // strictly lossier than the one before (the others can never be a greedy step's best).
    let ladders: Vec<Vec<(usize, f64, f64)>> = (0..problem.layers.len())
        .map(|l| {
            let layer = &problem.layers[l];
            if layer.protected {
                return Vec::new();
            }
            let mut options: Vec<(usize, f64, f64)> = (0..layer.options.len())
                .filter(|&o| layer.loss[o].iter().all(|v| v.is_finite()))
                .map(|o| (o, usage(problem, resource, l, o), loss(problem, l, o, options.content_weight)))
                .collect();
            options.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.total_cmp(&b.2)));
            let mut ladder: Vec<(usize, f64, f64)> = Vec::new();
            for option in options {
                // Sorted by cost, ties by loss: a rung as dear as the last is no better.
                if ladder.last().is_some_and(|last| option.1 >= last.1) {
                    continue;
                }
                // A cheaper option that loses no more replaces the rungs above it.
                while ladder.last().is_some_and(|last| last.2 >= option.2) {
                    ladder.pop();
                }
                ladder.push(option);
            }
            ladder
        })
        .collect();
    let mut rung = vec![0usize; ladders.len()];
    let scale = if resource == Resource::AvgBits { problem.quantized_params() as f64 } else { 1.0 };
    let mut used = problem.protected_usage(resource)
        + ladders.iter().filter_map(|ladder| ladder.first()).map(|&(_, cost, _)| cost).sum::<f64>();
    // The slack the feasibility check allows, so float sums cannot push past the last rung.
    while used > limit * scale * (1.0 + TOLERANCE) {
        let step = (0..ladders.len())
            .filter(|&l| rung[l] + 1 < ladders[l].len())
            .map(|l| {
                let (now, next) = (ladders[l][rung[l]], ladders[l][rung[l] + 1]);
                (l, (next.2 - now.2) / (now.1 - next.1), now.1 - next.1)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((l, _, saved)) = step else {
            return Err(SolverError::Solver("the greedy plan ran out of cheaper options".into()));
        };
        rung[l] += 1;
        used -= saved;
    }
    let assignment = ladders
        .iter()
        .zip(&rung)
        .map(|(ladder, &r)| vec![ladder.get(r).map(|&(o, _, _)| o); problem.groups()])
        .collect();
    let evaluation = problem.evaluate(&assignment, options.content_weight);
    let used = evaluation.usage.get(resource);
    Ok(Solved {
        solver: PointKind::Greedy.solver(),
        assignment,
        evaluation,
        limits: vec![Limit { resource, limit, lower: None, used, full_precision: full }],
        status: Status::Greedy,
        gap: f64::NAN,
        seconds: started.elapsed().as_secs_f64(),
        variables: 0,
        constraints: 0,
        content_share: None,
    })
}

/// Every quantized layer at `w_bits`: an error names the first layer the table has no such
/// row for.
pub fn uniform(problem: &Problem, w_bits: u32, content_weight: f64) -> Result<Solved> {
    let assignment = problem.uniform(w_bits).ok_or_else(|| {
        let missing = problem
            .layers
            .iter()
            .find(|l| !l.protected && l.layer.params > 0 && !l.options.iter().any(|p| p.w_bits() == w_bits));
        match missing {
            Some(l) => SolverError::Layer { layer: l.layer.id(), message: format!("the table has no W{w_bits} row") },
            None => config("uniform", format!("W{w_bits} gave NaN/Inf on some layer")),
        }
    })?;
    let evaluation = problem.evaluate(&assignment, content_weight);
    Ok(Solved {
        solver: PointKind::Uniform.solver(),
        assignment,
        evaluation,
        limits: Vec::new(),
        status: Status::Uniform,
        gap: f64::NAN,
        seconds: 0.0,
        variables: 0,
        constraints: 0,
        content_share: None,
    })
}

/// What option `o` of layer `l` uses of `resource` when the layer keeps it in every step group.
fn usage(problem: &Problem, resource: Resource, l: usize, o: usize) -> f64 {
    if resource.per_step() {
        (0..problem.groups()).map(|g| problem.coefficient(resource, l, o, g)).sum()
    } else {
        // Stored once, whatever the number of step groups.
        problem.coefficient(resource, l, o, 0)
    }
}

/// The normalised loss of option `o` of layer `l` over every step group.
fn loss(problem: &Problem, l: usize, o: usize, content_weight: f64) -> f64 {
    (0..problem.groups()).map(|g| problem.cost(l, o, g, content_weight)).sum()
}

fn config(field: &str, message: impl Into<String>) -> SolverError {
    SolverError::Config { field: field.into(), message: message.into() }
}
