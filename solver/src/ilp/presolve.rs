//! The exact reductions tried before HiGHS sees the whole program: with one budget row, a loss
//! objective and no ties or content share, options a Lagrangian bound proves cannot be optimal
//! are pruned, and a budget on stored weights over several step groups is first solved as a
//! knapsack over each layer's sets of stored widths.

use super::{OBJECTIVE_SCALE, Outcome, row_scale, run};
use crate::allocation::Assignment;
use crate::options::{Minimise, SolveOptions, Status};
use crate::problem::Problem;
use crate::reduce;
use bitsearch_records::Resource;
use bitsearch_types::WeightFormat;
use good_lp::{Expression, ProblemVariables, SolverModel, Variable, variable};
use highs::HighsModelStatus;

/// `pruned[l][o][g]`: option `o` of layer `l` cannot be optimal in step group `g`.
pub(super) type Pruned = Vec<Vec<Vec<bool>>>;

/// What the reductions before HiGHS found: options that cannot be optimal, or the optimum.
pub(super) enum Reduced {
    Pruned(Pruned),
    Solved(Outcome),
}

/// The reductions for a program under `limits` (`lower` bounding the first): None where their
/// proof does not hold (several budget rows, a content share, a resource minimised, ties).
pub(super) fn reduce(
    problem: &Problem,
    options: &SolveOptions,
    limits: &[(Resource, f64)],
    lower: f64,
    shared: bool,
) -> Option<Reduced> {
    let &[(resource, limit)] = limits else { return None };
    if shared || options.minimise != Minimise::Loss || !problem.ties.is_empty() {
        return None;
    }
    let scale = row_scale(problem, resource);
    let (limit, lower) = (limit * scale, lower * scale);
    if problem.groups() == 1 || resource.per_step() {
        prune_options(problem, options, resource, limit, lower).map(Reduced::Pruned)
    } else {
        reduce_stored(problem, options, resource, limit, lower)
    }
}

/// `pruned[l][o][g]`: options [`reduce::prune`] proves cannot be in an optimal plan, when the
/// program has one budget row (`limit` and `lower` in the row's units) and the greedy plan that
/// proves it meets the lower bound too.
fn prune_options(
    problem: &Problem,
    options: &SolveOptions,
    resource: Resource,
    limit: f64,
    lower: f64,
) -> Option<Pruned> {
    let groups = problem.groups();
    let keys: Vec<(usize, usize)> = (0..problem.layers.len())
        .filter(|&l| !problem.layers[l].protected)
        .flat_map(|l| (0..groups).map(move |g| (l, g)))
        .collect();
    let choices: Vec<Vec<Option<reduce::Option_>>> = keys
        .iter()
        .map(|&(l, g)| {
            let layer = &problem.layers[l];
            (0..layer.options.len())
                .map(|o| {
                    layer.loss[o][g].is_finite().then(|| reduce::Option_ {
                        cost: OBJECTIVE_SCALE * problem.cost(l, o, g, options.content_weight),
                        usage: problem.coefficient(resource, l, o, g),
                    })
                })
                .collect()
        })
        .collect();
    let fixed = problem.protected_usage(resource);
    let (drop, plan) = reduce::prune(&choices, limit - fixed)?;
    let used: f64 = plan.iter().zip(&choices).map(|(&o, c)| c[o].map_or(0.0, |x| x.usage)).sum();
    if used + fixed < lower {
        return None;
    }
    let mut pruned: Pruned =
        problem.layers.iter().map(|layer| vec![vec![false; groups]; layer.options.len()]).collect();
    for (&(l, g), dropped) in keys.iter().zip(drop) {
        for (o, d) in dropped.into_iter().enumerate() {
            pruned[l][o][g] = d;
        }
    }
    Some(pruned)
}

/// Stored widths per layer up to which [`reduce_stored`] enumerates their sets (2^n − 1 of them).
const MAX_STORED_WIDTHS: usize = 10;

/// One layer's sets of stored widths (bit masks over its widths, from 1): per set each group's
/// cheapest option among them, None where some group has none.
struct Sets {
    layer: usize,
    /// The index into the layer's widths of each option.
    width_of: Vec<usize>,
    bytes: Vec<f64>,
    cheapest: Vec<Option<Vec<(usize, f64)>>>,
}

impl Sets {
    fn usage(&self, mask: usize) -> f64 {
        self.bytes.iter().enumerate().filter(|&(w, _)| mask >> w & 1 == 1).map(|(_, b)| b).sum()
    }

    /// What set `i` stores once its groups take their cheapest options: a set may hold a width
    /// that no group takes.
    fn stored(&self, i: usize) -> f64 {
        let taken = self.cheapest[i].iter().flatten().fold(0, |mask, &(o, _)| mask | 1 << self.width_of[o]);
        self.usage(taken)
    }
}

/// The reductions for a budget on stored weights over several step groups, where a layer's
/// groups are coupled by the widths it stores. A layer's choice is then the set of widths it
/// stores: given the set, each group takes its cheapest option among them, so the program is a
/// multiple-choice knapsack over those sets (cost: the groups' cheapest, usage: the set's
/// bytes), a relaxation of the program that any of its plans maps into at no more cost and the
/// same bytes. The knapsack's Lagrangian bound drops the sets that cannot be optimal; HiGHS
/// solves the knapsack on what is left, and when its plan, as the program would store it, fits
/// the budget's window, that plan is the program's optimum. Otherwise the bound drops every
/// option no set holding its width could make part of a better plan than the greedy one.
fn reduce_stored(
    problem: &Problem,
    options: &SolveOptions,
    resource: Resource,
    limit: f64,
    lower: f64,
) -> Option<Reduced> {
    let groups = problem.groups();
    let cost = |l: usize, o: usize, g: usize| OBJECTIVE_SCALE * problem.cost(l, o, g, options.content_weight);
    let mut all = Vec::new();
    for (l, layer) in problem.layers.iter().enumerate().filter(|(_, layer)| !layer.protected) {
        let mut widths: Vec<WeightFormat> = layer.options.iter().map(|p| p.weight).collect();
        widths.sort();
        widths.dedup();
        if widths.len() > MAX_STORED_WIDTHS {
            return None;
        }
        let width_of: Vec<usize> =
            layer.options.iter().map(|p| widths.binary_search(&p.weight).unwrap_or_default()).collect();
        // Any option of a width stores the same bytes.
        let bytes = (0..widths.len())
            .map(|w| width_of.iter().position(|&v| v == w).map_or(0.0, |o| problem.coefficient(resource, l, o, 0)))
            .collect();
        let cheapest = (1..1usize << widths.len())
            .map(|mask| {
                (0..groups)
                    .map(|g| {
                        (0..layer.options.len())
                            .filter(|&o| mask >> width_of[o] & 1 == 1 && layer.loss[o][g].is_finite())
                            .map(|o| (o, cost(l, o, g)))
                            .min_by(|a, b| a.1.total_cmp(&b.1))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .collect();
        all.push(Sets { layer: l, width_of, bytes, cheapest });
    }
    let choices: Vec<Vec<Option<reduce::Option_>>> = all
        .iter()
        .map(|sets| {
            sets.cheapest
                .iter()
                .enumerate()
                .map(|(i, cheapest)| {
                    let cost = cheapest.as_ref()?.iter().map(|&(_, c)| c).sum();
                    Some(reduce::Option_ { cost, usage: sets.usage(i + 1) })
                })
                .collect()
        })
        .collect();
    let fixed = problem.protected_usage(resource);
    let bound = reduce::bound(&choices, limit - fixed)?;
    let stored = |plan: &[usize]| -> f64 { all.iter().zip(plan).map(|(sets, &i)| sets.stored(i)).sum::<f64>() + fixed };
    // The bound proves against the greedy plan: it must be a plan of both programs.
    if stored(&bound.plan) < lower {
        return None;
    }
    let window = (lower - fixed, limit - fixed);
    if let Some((plan, variables, constraints)) = best_sets(&choices, &bound, window, options.time_limit) {
        let used = stored(&plan);
        if used >= lower && used <= limit {
            let mut assignment: Assignment = problem.layers.iter().map(|_| vec![None; groups]).collect();
            for (sets, &i) in all.iter().zip(&plan) {
                let cheapest = sets.cheapest[i].as_ref()?;
                assignment[sets.layer] = cheapest.iter().map(|&(o, _)| Some(o)).collect();
            }
            return Some(Reduced::Solved(Outcome {
                assignment,
                status: Status::Optimal,
                gap: 0.0,
                variables,
                constraints,
            }));
        }
    }
    let mut pruned: Pruned =
        problem.layers.iter().map(|layer| vec![vec![false; groups]; layer.options.len()]).collect();
    for (k, sets) in all.iter().enumerate() {
        let l = sets.layer;
        for (o, &w) in sets.width_of.iter().enumerate() {
            for g in 0..groups {
                // The best plan taking o in group g: over the sets holding its width.
                let possible = sets.cheapest.iter().zip(&choices[k]).enumerate().any(|(i, (cheapest, set))| {
                    let (Some(cheapest), Some(set)) = (cheapest, set) else { return false };
                    let term = set.cost - cheapest[g].1 + cost(l, o, g) + bound.lambda * set.usage;
                    (i + 1) >> w & 1 == 1 && !bound.excludes(k, term)
                });
                pruned[l][o][g] = !possible;
            }
        }
    }
    Some(Reduced::Pruned(pruned))
}

/// The knapsack over the options of `choices` that `bound` keeps, with its usage within
/// `window` (lower, upper), solved by HiGHS to proven optimality within `time_limit` seconds: an
/// index into each choice, and the program's variables and constraints; None if HiGHS proves
/// none.
fn best_sets(
    choices: &[Vec<Option<reduce::Option_>>],
    bound: &reduce::Bound,
    (lower, upper): (f64, f64),
    time_limit: f64,
) -> Option<(Vec<usize>, usize, usize)> {
    let mut vars = ProblemVariables::new();
    let kept: Vec<Vec<(usize, reduce::Option_, Variable)>> = choices
        .iter()
        .enumerate()
        .map(|(k, options)| {
            options
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.map(|x| (i, x)))
                .filter(|(_, x)| !bound.excludes(k, x.cost + bound.lambda * x.usage))
                .map(|(i, x)| (i, x, vars.add(variable().binary())))
                .collect()
        })
        .collect();
    let objective: Expression = kept.iter().flatten().map(|&(_, x, v)| x.cost * v).sum();
    let mut model = vars.minimise(objective).using(good_lp::highs);
    for options in &kept {
        model.add_constraint(options.iter().map(|&(.., v)| Expression::from(v)).sum::<Expression>().eq(1.0));
    }
    // In units of the budget, as the program's rows.
    let used: Expression = kept.iter().flatten().map(|&(_, x, v)| x.usage / upper * v).sum();
    model.add_constraint(used.clone().leq(1.0));
    model.add_constraint(used.geq(lower / upper));
    let mut highs = run::exact(model, time_limit).ok()?;
    // The caller checks the plan's bytes exactly; a loose tolerance would let it overrun.
    highs.set_option("primal_feasibility_tolerance", 1e-10);
    highs.set_option("mip_feasibility_tolerance", 1e-10);
    let solved = highs.try_solve().ok()?;
    if solved.status() != HighsModelStatus::Optimal {
        return None;
    }
    let values = solved.get_solution().columns().to_vec();
    // Columns in the order the variables were made.
    let mut column = 0;
    let plan = kept
        .iter()
        .map(|options| {
            let mut taken = None;
            for &(i, ..) in options {
                if values[column] > 0.5 {
                    taken = Some(i);
                }
                column += 1;
            }
            taken
        })
        .collect::<Option<Vec<usize>>>()?;
    Some((plan, column, kept.len() + 2))
}
