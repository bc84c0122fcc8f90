//! Exact pruning before the program goes to HiGHS, for the common case of a single budget row
//! over independent one-hot choices (a multiple-choice knapsack). For any λ ≥ 0 the Lagrangian
//! `L(λ) = Σ_k min_o (c_ko + λ·a_ko) − λ·B` bounds every plan from below, and swapping choice
//! k's minimum for option o's term bounds every plan that takes o there. An option whose bound
//! exceeds the objective of a plan known to be feasible cannot be in an optimal plan, so it gets
//! no variable; HiGHS proves optimality on what is left. (HiGHS fixes the same variables at its
//! root node, but only after an LP that costs seconds at a thousand layers × eight step groups;
//! the bound here costs milliseconds.) A layer whose step groups share stored widths is one
//! choice among its sets of widths (see the solver's `reduce_stored`).

/// One option of a choice: its objective cost and what it adds to the budget row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Option_ {
    pub cost: f64,
    pub usage: f64,
}

/// The Lagrangian bound at the multiplier where the greedy plan just fits the budget, and that
/// plan (improved by spending its slack) as the incumbent it is compared with.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub lambda: f64,
    /// Per choice, the smallest cost + λ·usage.
    minima: Vec<f64>,
    /// Σ minima − λ·budget: no plan within the budget costs less.
    total: f64,
    /// An index into each choice.
    pub plan: Vec<usize>,
    /// The plan's cost.
    incumbent: f64,
}

impl Bound {
    /// Whether every plan that takes, in choice `k`, an option whose cost + λ·usage is `term`
    /// costs more than the incumbent (so no optimal plan takes it).
    pub fn excludes(&self, k: usize, term: f64) -> bool {
        let slack = 1e-9 * self.incumbent.abs() + 1e-12;
        self.total - self.minima[k] + term > self.incumbent + slack
    }
}

/// The bound of `choices` under `budget`; None when no λ makes the greedy plan meet it.
/// `choices[k][o]` is None for options that have no variable anyway.
pub(crate) fn bound(choices: &[Vec<Option<Option_>>], budget: f64) -> Option<Bound> {
    // The plan minimising c + λ·a in every choice, ties to the smaller usage.
    let greedy = |lambda: f64| -> Option<(Vec<usize>, f64)> {
        let mut usage = 0.0;
        let plan = choices
            .iter()
            .map(|options| {
                let best =
                    options.iter().enumerate().filter_map(|(o, x)| x.map(|x| (o, x))).min_by(|(_, a), (_, b)| {
                        (a.cost + lambda * a.usage)
                            .total_cmp(&(b.cost + lambda * b.usage))
                            .then(a.usage.total_cmp(&b.usage))
                    })?;
                usage += best.1.usage;
                Some(best.0)
            })
            .collect::<Option<Vec<usize>>>()?;
        Some((plan, usage))
    };
    let (mut lo, mut hi) = (0.0, 0.0);
    if greedy(0.0)?.1 > budget {
        hi = 1.0;
        while greedy(hi)?.1 > budget {
            hi *= 2.0;
            if hi > 1e30 {
                return None;
            }
        }
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if greedy(mid)?.1 <= budget { hi = mid } else { lo = mid }
        }
    }
    let lambda = hi;
    let (mut plan, used) = greedy(lambda)?;
    fill_slack(choices, &mut plan, budget - used);
    let incumbent: f64 = plan.iter().zip(choices).map(|(&o, options)| options[o].map_or(0.0, |x| x.cost)).sum();
    let term = |x: &Option_| x.cost + lambda * x.usage;
    let minima: Vec<f64> =
        choices.iter().map(|options| options.iter().flatten().map(term).fold(f64::INFINITY, f64::min)).collect();
    let total = minima.iter().sum::<f64>() - lambda * budget;
    Some(Bound { lambda, minima, total, plan, incumbent })
}

/// The options to drop (`drop[k][o]`) and the greedy plan (`plan[k]`, an index into choice k)
/// whose objective justified it; None when no λ makes the greedy plan meet the budget.
pub(crate) fn prune(choices: &[Vec<Option<Option_>>], budget: f64) -> Option<(Vec<Vec<bool>>, Vec<usize>)> {
    let b = bound(choices, budget)?;
    let drop = choices
        .iter()
        .enumerate()
        .map(|(k, options)| {
            options.iter().map(|x| x.is_some_and(|x| b.excludes(k, x.cost + b.lambda * x.usage))).collect()
        })
        .collect();
    Some((drop, b.plan))
}

/// Spends what the greedy plan left of the budget: repeatedly takes the single switch that
/// lowers the objective most and still fits. A better plan gives a tighter pruning bound.
fn fill_slack(choices: &[Vec<Option<Option_>>], plan: &mut [usize], mut slack: f64) {
    // A few hundred switches at most; the greedy plan is already within one choice of the LP.
    for _ in 0..MAX_SWITCHES {
        let mut best: Option<(usize, usize, f64, f64)> = None;
        for (k, options) in choices.iter().enumerate() {
            let Some(current) = options[plan[k]] else { continue };
            for (o, x) in options.iter().enumerate() {
                let Some(x) = x else { continue };
                let (gain, extra) = (current.cost - x.cost, x.usage - current.usage);
                if gain > 0.0 && extra <= slack && best.is_none_or(|b| gain > b.2) {
                    best = Some((k, o, gain, extra));
                }
            }
        }
        let Some((k, o, _, extra)) = best else { return };
        plan[k] = o;
        slack -= extra;
    }
}

const MAX_SWITCHES: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_optimum_and_drops_hopeless_options() {
        // Two choices; budget 3. Optimum: (b, d) with cost 1 + 1 = 2 and usage 3.
        let x = |cost, usage| Some(Option_ { cost, usage });
        let choices = vec![vec![x(5.0, 1.0), x(1.0, 2.0), x(0.9, 9.0)], vec![x(1.0, 1.0), x(0.0, 5.0)]];
        let (drop, plan) = prune(&choices, 3.0).unwrap();
        assert_eq!(plan, vec![1, 0]);
        assert!(!drop[0][1] && !drop[1][0], "the optimum survives");
        // At the optimal λ = 1/4 the bound of (0.0, 5.0) ties the optimum: it must stay.
        assert!(!drop[1][1]);
        assert!(drop[0][0] && drop[0][2], "options whose bound exceeds the optimum go: {drop:?}");
    }
}
