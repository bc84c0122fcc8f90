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

use crate::allocation::{Assignment, Evaluation};
use crate::error::{Result, SolverError};
use crate::problem::Problem;
use crate::reduce;
use bitsearch_records::{Budget, Limit, Resource};
use bitsearch_types::MetricGroup;
use bitsearch_types::WeightFormat;
use good_lp::{Expression, ProblemVariables, SolverModel, Variable, variable};
use highs::{HighsModelStatus, HighsSolutionStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Instant;

/// MixDQ's window below an avg-bits budget: a 4-bit budget is met by 3.98 to 4.00 bits.
pub const AVG_BITS_WINDOW: f64 = 0.02;
/// The same window for memory and BOPs budgets, as a fraction of the budget.
pub const RELATIVE_WINDOW: f64 = 0.005;
const OBJECTIVE_SCALE: f64 = 1e4;
/// Slack for float round-off when checking a plan against its budgets.
pub(crate) const TOLERANCE: f64 = 1e-9;

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

/// A solved program.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    /// What chose the plan, in words.
    pub solver: &'static str,
    pub assignment: Assignment,
    pub evaluation: Evaluation,
    pub limits: Vec<Limit>,
    /// `optimal` (proven, gap 0) or `time_limit` (best found).
    pub status: String,
    /// Relative gap to the LP bound; 0 when proven optimal.
    pub gap: f64,
    pub seconds: f64,
    pub variables: usize,
    pub constraints: usize,
    /// The content share the program was held to (None: free, or no content layers).
    pub content_share: Option<f64>,
}

/// Solves the allocation under `options` with its method. An unreachable budget is an error
/// naming the smallest feasible one.
pub fn solve(problem: &Problem, options: &SolveOptions) -> Result<Solved> {
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

    let solved = program(problem, options, &limits, lower, started);
    match solved {
        Err(SolverError::Infeasible { .. }) if lower > 0.0 => {
            let (first_resource, first_limit) = limits[0];
            log::warn!(
                "no plan uses between {} and {} of {}; solved without the lower bound",
                first_resource.format(lower),
                first_resource.format(first_limit),
                first_resource
            );
            program(problem, options, &limits, 0.0, started)
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

/// Builds and solves the program with `lower` as the first budget's lower bound.
fn program(
    problem: &Problem,
    options: &SolveOptions,
    limits: &[(Resource, f64)],
    lower: f64,
    started: Instant,
) -> Result<Solved> {
    let full = problem.full_precision();
    let groups = problem.groups();
    // avg-bits rows are written in total stored bits: Σ params·w ≤ limit · Σ params.
    let scale =
        |resource: Resource| if resource == Resource::AvgBits { problem.quantized_params() as f64 } else { 1.0 };
    // A fixed share applies only where there are content layers to hold to it.
    let content_share = match (options.content_share, limits.first()) {
        (Some(Fraction::Fixed(share)), Some(&first)) if has_content(problem) => Some((share, first)),
        _ => None,
    };
    // The reduction's proof holds for one budget row, a loss objective and independent layers.
    let reduced = match limits {
        &[(resource, limit)]
            if content_share.is_none() && options.minimise == Minimise::Loss && problem.ties.is_empty() =>
        {
            let (limit, lower) = (limit * scale(resource), lower * scale(resource));
            if groups == 1 || resource == Resource::Bops {
                prune_options(problem, options, resource, limit, lower).map(Reduced::Pruned)
            } else {
                reduce_stored(problem, options, resource, limit, lower)
            }
        }
        _ => None,
    };
    let pruned = match reduced {
        Some(Reduced::Solved(outcome)) => return Ok(finish(problem, options, limits, lower, started, None, outcome)),
        Some(Reduced::Pruned(pruned)) => Some(pruned),
        None => None,
    };
    let mut vars = ProblemVariables::new();
    // HiGHS numbers its columns in the order the variables are made; the solution is read back
    // by that number.
    let mut made = 0;
    let mut binary = || {
        made += 1;
        Column { variable: vars.add(variable().binary()), index: made - 1 }
    };
    // x[l][o][g]
    let x: Vec<Vec<Vec<Option<Column>>>> = problem
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            (0..layer.options.len())
                .map(|o| {
                    (0..groups)
                        .map(|g| {
                            let allowed = !layer.protected
                                && layer.loss[o][g].is_finite()
                                && !pruned.as_ref().is_some_and(|p| p[l][o][g]);
                            allowed.then(&mut binary)
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    // z[l][w]: only needed when a layer can use different bits in different groups and a
    // budget counts stored weights.
    let counts_storage = limits.iter().map(|&(r, _)| r).chain(options.minimise.resource()).any(|r| r != Resource::Bops);
    let z: Vec<BTreeMap<WeightFormat, Column>> = problem
        .layers
        .iter()
        .map(|layer| {
            if groups == 1 || layer.protected || !counts_storage {
                return BTreeMap::new();
            }
            let widths: std::collections::BTreeSet<WeightFormat> = layer.options.iter().map(|p| p.weight).collect();
            widths.into_iter().map(|w| (w, binary())).collect()
        })
        .collect();
    let variables = made;
    // Every x as (layer, option, group, column).
    let entries = || {
        x.iter().enumerate().flat_map(|(l, per)| {
            per.iter()
                .enumerate()
                .flat_map(move |(o, gs)| gs.iter().enumerate().filter_map(move |(g, c)| c.map(|c| (l, o, g, c))))
        })
    };

    let usage = |resource: Resource, only: Option<MetricGroup>| -> (Expression, f64) {
        let mut expr = Expression::from(0.0);
        let fixed = if only.is_none() { problem.protected_usage(resource) } else { 0.0 };
        let counted = |l: usize| !problem.layers[l].protected && only.is_none_or(|g| g == problem.group(l));
        if groups == 1 || resource == Resource::Bops {
            for (l, o, g, c) in entries().filter(|&(l, ..)| counted(l)) {
                expr += problem.coefficient(resource, l, o, g) * c.variable;
            }
        } else {
            for (l, layer) in problem.layers.iter().enumerate().filter(|&(l, _)| counted(l)) {
                for (&w, &zw) in &z[l] {
                    // Any option with this weight width stores the same bytes.
                    if let Some(o) = (0..layer.options.len()).find(|&o| layer.options[o].weight == w) {
                        expr += problem.coefficient(resource, l, o, 0) * zw.variable;
                    }
                }
            }
        }
        (expr, fixed)
    };
    let mut loss = Expression::from(0.0);
    for (l, o, g, c) in entries() {
        loss += OBJECTIVE_SCALE * problem.cost(l, o, g, options.content_weight) * c.variable;
    }
    let objective = match options.minimise.resource() {
        None => loss.clone(),
        // Divided by the full-precision amount so the objective is a fraction near 1.
        Some(resource) => usage(resource, None).0 / full.get(resource) * OBJECTIVE_SCALE,
    };
    let mut model = vars.minimise(objective).using(good_lp::highs);
    let mut constraints = 0;
    let mut add = |model: &mut good_lp::solvers::highs::HighsProblem, c: good_lp::Constraint| {
        model.add_constraint(c);
        constraints += 1;
    };
    for (l, layer) in problem.layers.iter().enumerate() {
        if layer.protected {
            continue;
        }
        for g in 0..groups {
            let one: Expression = x[l].iter().filter_map(|per| per[g]).map(|c| Expression::from(c.variable)).sum();
            add(&mut model, one.eq(1.0));
        }
        for (&w, &zw) in &z[l] {
            let users: Vec<Variable> = (0..layer.options.len())
                .filter(|&o| layer.options[o].weight == w)
                .flat_map(|o| x[l][o].iter().flatten().map(|c| c.variable))
                .collect();
            for &u in &users {
                add(&mut model, (Expression::from(u) - zw.variable).leq(0.0));
            }
            let used: Expression = users.iter().map(|&u| Expression::from(u)).sum();
            add(&mut model, (Expression::from(zw.variable) - used).leq(0.0));
        }
    }

    if let Some(cap) = options.loss_cap {
        add(&mut model, loss.leq(OBJECTIVE_SCALE * cap));
    }
    for tie in &problem.ties {
        for pair in tie.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            for p in &problem.layers[a].options {
                let taking = |l: usize, g: usize| -> Expression {
                    let layer = &problem.layers[l];
                    (0..layer.options.len())
                        .filter(|&o| layer.options[o] == *p)
                        .filter_map(|o| x[l][o][g])
                        .map(|c| Expression::from(c.variable))
                        .sum()
                };
                for g in 0..groups {
                    add(&mut model, (taking(a, g) - taking(b, g)).eq(0.0));
                }
            }
        }
    }
    for &(resource, limit) in limits {
        let (expr, fixed) = usage(resource, None);
        // Rows divided by their limit: BOPs run to 1e15, and HiGHS's tolerances are absolute.
        let unit = limit * scale(resource);
        add(&mut model, (expr / unit).leq(1.0 - fixed / unit));
    }
    if let (true, Some(&(first_resource, first_limit))) = (lower > 0.0, limits.first()) {
        let (expr, fixed) = usage(first_resource, None);
        let unit = first_limit * scale(first_resource);
        add(&mut model, (expr / unit).geq((lower * scale(first_resource) - fixed) / unit));
    }
    if let Some((share, (first_resource, first_limit))) = content_share {
        let (_, fixed) = usage(first_resource, None);
        let available = first_limit * scale(first_resource) - fixed;
        let (content, _) = usage(first_resource, Some(MetricGroup::Content));
        let (quality, _) = usage(first_resource, Some(MetricGroup::Quality));
        let unit = first_limit * scale(first_resource);
        add(&mut model, (content / unit).leq(share * available / unit));
        add(&mut model, (quality / unit).leq((1.0 - share) * available / unit));
    }

    // Solved by HiGHS directly (good_lp builds the model) to read the status and the gap.
    let highs = exact(model, options.time_limit).map_err(SolverError::Solver)?;
    let solved = highs.try_solve().map_err(|e| SolverError::Solver(format!("{e:?}")))?;
    let status = match solved.status() {
        HighsModelStatus::Optimal => "optimal",
        HighsModelStatus::ReachedTimeLimit | HighsModelStatus::ReachedInterrupt => "time_limit",
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
    let assignment: Assignment = problem
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            (0..groups)
                .map(|g| (0..layer.options.len()).find(|&o| x[l][o][g].is_some_and(|c| values[c.index] > 0.5)))
                .collect()
        })
        .collect();
    let outcome = Outcome { assignment, status, gap, variables, constraints };
    Ok(finish(problem, options, limits, lower, started, content_share.map(|(share, _)| share), outcome))
}

/// What a program's solution says, before it is evaluated.
#[derive(Debug)]
struct Outcome {
    assignment: Assignment,
    status: &'static str,
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
        solver: "HiGHS (good_lp)",
        assignment: outcome.assignment,
        evaluation,
        limits,
        status: outcome.status.to_string(),
        gap: outcome.gap,
        seconds: started.elapsed().as_secs_f64(),
        variables: outcome.variables,
        constraints: outcome.constraints,
        content_share,
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
) -> Option<Vec<Vec<Vec<bool>>>> {
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
    let mut pruned: Vec<Vec<Vec<bool>>> =
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

/// What the reductions before HiGHS found: options that cannot be optimal, or the optimum.
enum Reduced {
    Pruned(Vec<Vec<Vec<bool>>>),
    Solved(Outcome),
}

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
            return Some(Reduced::Solved(Outcome { assignment, status: "optimal", gap: 0.0, variables, constraints }));
        }
    }
    let mut pruned: Vec<Vec<Vec<bool>>> =
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
    let mut highs = exact(model, time_limit).ok()?;
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

/// HiGHS's own model of `model`, quiet, on one thread, set to prove optimality (no relative or
/// absolute gap tolerated) within `time_limit` seconds.
fn exact(model: good_lp::solvers::highs::HighsProblem, time_limit: f64) -> std::result::Result<highs::Model, String> {
    let mut highs = model.try_into_inner().map_err(|e| e.to_string())?;
    highs.make_quiet();
    highs.set_option("mip_rel_gap", 0.0);
    highs.set_option("mip_abs_gap", 0.0);
    highs.set_option("time_limit", time_limit);
    highs.set_option("threads", 1);
    Ok(highs)
}

/// A binary variable and the HiGHS column it becomes.
#[derive(Debug, Clone, Copy)]
struct Column {
    variable: Variable,
    index: usize,
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
