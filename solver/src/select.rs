//! `solve --shrink search`: how far to trust the table, chosen by measurement.
//!
//! A sensitivity table measures each layer alone on a few items; its per-layer losses are noisy
//! (a small layer can carry a large share by chance), and the program, which trusts every one
//! of them, spends bits on that noise. Shrinking each loss toward what the layer's size predicts
//! ([`Problem::shrink`]) trades that noise for a prior under which every parameter counts alike.
//! How much to shrink is not something the table can say about itself, so each shrinkage of a
//! grid is solved under the same budgets, its plan measured on items the table never saw, and
//! the plan that measures best is kept.

use crate::allocation::Assignment;
use crate::error::SolverError;
use crate::ilp::{Minimise, SolveOptions, Solved, solve};
use crate::problem::Problem;
use bitsearch_records::{Measured, Metric, ShrinkRound};

/// The shrinkages a search solves: from the table alone (0) to uniform bits (1).
pub const SHRINK_GRID: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// The outcome of a selection: every round, the chosen one, and its shrunk problem and plan.
#[derive(Debug, Clone)]
pub struct Selected {
    pub rounds: Vec<ShrinkRound>,
    pub chosen: usize,
    pub problem: Problem,
    pub solved: Solved,
}

/// Solves `problem` under `options` at each shrinkage of `grid`, measures each distinct plan
/// with `measure` (round index, shrunk problem, plan), and keeps the one with the highest
/// `metric` (the smaller shrinkage on a tie). A plan the program chose at an earlier shrinkage
/// is not measured again.
pub fn select<E: From<SolverError>>(
    problem: &Problem,
    options: &SolveOptions,
    grid: &[f64],
    metric: Metric,
    mut measure: impl FnMut(usize, &Problem, &Solved) -> std::result::Result<Measured, E>,
) -> std::result::Result<Selected, E> {
    if options.minimise != Minimise::Loss || options.budgets.is_empty() {
        return Err(SolverError::Config {
            field: "shrink".into(),
            message: "a shrinkage search compares plans under one set of budgets: give --budget".into(),
        }
        .into());
    }
    let mut rounds: Vec<ShrinkRound> = Vec::new();
    let mut best: Option<(usize, Problem, Solved)> = None;
    // The first round of each distinct plan.
    let mut plans: Vec<(usize, Assignment)> = Vec::new();
    for &lambda in grid {
        let mut shrunk = problem.clone();
        shrunk.shrink(lambda)?;
        let solved = solve(&shrunk, options)?;
        let index = rounds.len();
        let same_as = plans.iter().find(|(_, a)| *a == solved.assignment).map(|&(r, _)| r);
        let measured = match same_as {
            Some(r) => rounds[r].measured,
            None => measure(index, &shrunk, &solved)?,
        };
        let e = &solved.evaluation;
        let round = ShrinkRound {
            shrink: lambda,
            predicted_objective: e.objective,
            predicted_sqnr_db: e.predicted_sqnr_db(),
            predicted_psnr_db: e.predicted_psnr_db(),
            measured,
            bytes: e.usage.memory,
            avg_bits: e.usage.avg_bits,
            same_as,
        };
        log::info!(
            "shrink {lambda:.2}: {:.3} bits, {:.3} MB; measured SQNR {:.2} dB, SSIM {:.4}, PSNR {:.2} dB{}{}",
            e.usage.avg_bits,
            e.usage.memory / 1e6,
            measured.sqnr_db,
            measured.ssim,
            measured.psnr_db,
            measured.caption_words(),
            same_as.map_or(String::new(), |r| format!(" (the plan of round {r})")),
        );
        let value = metric.of(&measured);
        let better = best.as_ref().is_none_or(|(b, _, _)| value > metric.of(&rounds[*b].measured));
        if same_as.is_none() {
            plans.push((index, solved.assignment.clone()));
        }
        if better && !value.is_nan() {
            best = Some((index, shrunk, solved));
        }
        rounds.push(round);
    }
    let Some((chosen, problem, solved)) = best else {
        return Err(SolverError::Config {
            field: "shrink".into(),
            message: format!("no plan of the search measured a {metric}"),
        }
        .into());
    };
    Ok(Selected { rounds, chosen, problem, solved })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;

    /// The measurement rewards plans whose bits follow size (the table's per-layer losses are
    /// noise): the search must keep the shrinkage whose plan measures best, measure each plan
    /// once, and record every round.
    #[test]
    fn the_search_keeps_the_best_measured_shrinkage_and_measures_each_plan_once() {
        let mut problem = crate::problem::tests::synthetic(12);
        for (i, l) in problem.layers.iter_mut().enumerate() {
            for loss in &mut l.loss {
                loss[0] *= 2f64.powi(12 - i as i32);
            }
        }
        let options = SolveOptions { budgets: vec!["avg-bits=4".parse().expect("budget")], ..Default::default() };
        let uniform = problem.evaluate(&problem.uniform(4).expect("W4"), 1.0).usage.memory;
        let mut calls = Vec::new();
        // "Measured" SQNR falls with the distance from uniform W4 (what the prior believes).
        let measure = |round: usize, p: &Problem, s: &Solved| -> Result<Measured> {
            calls.push(round);
            let spread: f64 = s
                .assignment
                .iter()
                .zip(&p.layers)
                .map(|(a, l)| (f64::from(l.options[a[0].expect("quantized")].w_bits) - 4.0).abs())
                .sum();
            Ok(Measured { sqnr_db: 30.0 - spread, ssim: f64::NAN, psnr_db: f64::NAN, caption: f64::NAN })
        };
        let selected = select(&problem, &options, &SHRINK_GRID, Metric::Sqnr, measure).expect("select");
        assert_eq!(selected.rounds.len(), SHRINK_GRID.len());
        let best = &selected.rounds[selected.chosen];
        assert!(selected.rounds.iter().all(|r| r.measured.sqnr_db <= best.measured.sqnr_db));
        assert_eq!(best.measured.sqnr_db, 30.0, "uniform W4 is reachable at shrink 1");
        assert!((selected.solved.evaluation.usage.memory - uniform).abs() < 1e-9);
        assert_eq!(selected.problem.shrunk, best.shrink);
        assert!(selected.rounds[0].measured.sqnr_db < 30.0, "the table alone mixes bits");
        // Rounds with a plan already seen point at it and were not measured again.
        let measured: Vec<usize> =
            (0..selected.rounds.len()).filter(|&r| selected.rounds[r].same_as.is_none()).collect();
        assert_eq!(calls, measured);
        for r in &selected.rounds {
            if let Some(first) = r.same_as {
                let earlier = &selected.rounds[first];
                assert!(earlier.same_as.is_none() && r.measured.sqnr_db == earlier.measured.sqnr_db);
            }
        }
        // Without a budget there is nothing to compare plans under.
        let targeted = SolveOptions { budgets: Vec::new(), ..options };
        let error = select(&problem, &targeted, &SHRINK_GRID, Metric::Sqnr, |_, _, _| -> Result<Measured> {
            unreachable!("nothing is measured")
        })
        .unwrap_err();
        assert!(error.to_string().starts_with("shrink: "), "{error}");
    }
}
