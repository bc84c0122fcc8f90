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

use crate::allocation::{Assignment, Evaluation};
use crate::error::{Result, SolverError};
use crate::problem::{Problem, StoredKey};
use crate::reduce;
use bitsearch_records::{Budget, Limit, Resource};
use bitsearch_types::MetricGroup;
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
    let pruned = match limits {
        &[(resource, limit)]
            if content_share.is_none()
                && options.minimise == Minimise::Loss
                && problem.ties.is_empty()
                && (groups == 1 || resource == Resource::Bops) =>
        {
            prune_options(problem, options, resource, limit * scale(resource), lower * scale(resource))
        }
        _ => None,
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
    let z: Vec<BTreeMap<StoredKey, Column>> = problem
        .layers
        .iter()
        .map(|layer| {
            if groups == 1 || layer.protected || !counts_storage {
                return BTreeMap::new();
            }
            let widths: std::collections::BTreeSet<StoredKey> = layer.options.iter().map(|p| p.weight()).collect();
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
                    if let Some(o) = (0..layer.options.len()).find(|&o| layer.options[o].weight() == w) {
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
                .filter(|&o| layer.options[o].weight() == w)
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
    let mut highs = model.try_into_inner().map_err(|e| SolverError::Solver(e.to_string()))?;
    highs.make_quiet();
    // Proven optimality: no relative or absolute gap tolerated.
    highs.set_option("mip_rel_gap", 0.0);
    highs.set_option("mip_abs_gap", 0.0);
    highs.set_option("time_limit", options.time_limit);
    highs.set_option("threads", 1);
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
    let evaluation = problem.evaluate(&assignment, options.content_weight);
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
    Ok(Solved {
        solver: "HiGHS (good_lp)",
        assignment,
        evaluation,
        limits,
        status: status.to_string(),
        gap,
        seconds: started.elapsed().as_secs_f64(),
        variables,
        constraints,
        content_share: content_share.map(|(share, _)| share),
    })
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
