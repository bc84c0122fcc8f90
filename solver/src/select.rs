//! `solve --shrink search`: how far to trust the table, chosen by measurement.
//!
//! A sensitivity table measures each layer alone on a few items; its per-layer losses are noisy
//! (a small layer can carry a large share by chance), and the program, which trusts every one
//! of them, spends bits on that noise. Shrinking each loss toward what the layer's size predicts
//! ([`Problem::shrink`]) trades that noise for a prior under which every parameter counts alike.
//! How much to shrink is not something the table can say about itself, so each shrinkage of a
//! grid is solved under the same budgets and its plan measured on items the table never saw.
//! Those items are few, and plans that differ in a handful of layers measure alike within their
//! noise; so the search keeps the largest shrinkage whose plan measures within one standard error
//! of the best (the one-standard-error rule): the more the prior, the less of the table's noise
//! the plan carries, unless the items show that the table's own evidence pays.

use crate::error::SolverError;
use crate::ilp::solve;
use crate::options::{Minimise, SolveOptions, Solved};
use crate::problem::Problem;
use bitsearch_records::{Measured, Metric, ShrinkRound};

/// The shrinkages a search solves: from the table alone (0) to uniform bits (1).
pub const SHRINK_GRID: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// A plan measured on the selection items: its metrics, and each item's error, of which the
/// selection's metric is 10·log10 of a constant over the mean (image MSE for PSNR, the
/// denoiser's noise energy for SQNR).
#[derive(Debug, Clone)]
pub struct Trial {
    pub measured: Measured,
    pub errors: Vec<f64>,
}

/// The outcome of a selection: every round, the chosen one, and its shrunk problem and plan.
#[derive(Debug, Clone)]
pub struct Selected {
    pub rounds: Vec<ShrinkRound>,
    pub chosen: usize,
    pub problem: Problem,
    pub solved: Solved,
}

/// Solves `problem` under `options` at each shrinkage of `grid` and measures each distinct plan
/// with `measure` (round index, shrunk problem, plan); a plan the program chose at an earlier
/// shrinkage is not measured again. Keeps the largest shrinkage whose plan's `metric` is within
/// one standard error (over the items, paired) of the best measured.
pub fn select<E: From<SolverError>>(
    problem: &Problem,
    options: &SolveOptions,
    grid: &[f64],
    metric: Metric,
    mut measure: impl FnMut(usize, &Problem, &Solved) -> std::result::Result<Trial, E>,
) -> std::result::Result<Selected, E> {
    if options.minimise != Minimise::Loss || options.budgets.is_empty() {
        return Err(SolverError::Config {
            field: "shrink".into(),
            message: "a shrinkage search compares plans under one set of budgets: give --budget".into(),
        }
        .into());
    }
    let mut rounds: Vec<ShrinkRound> = Vec::new();
    let mut solutions: Vec<(Problem, Solved)> = Vec::new();
    // Each round's measurement: its own, or that of the first round with its plan.
    let mut trials: Vec<Trial> = Vec::new();
    for &lambda in grid {
        let mut shrunk = problem.clone();
        shrunk.shrink(lambda)?;
        let solved = solve(&shrunk, options)?;
        let index = rounds.len();
        let same_as =
            (0..index).find(|&r| rounds[r].same_as.is_none() && solutions[r].1.assignment == solved.assignment);
        let trial = match same_as {
            Some(r) => trials[r].clone(),
            None => measure(index, &shrunk, &solved)?,
        };
        let (e, measured) = (&solved.evaluation, trial.measured);
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
        rounds.push(ShrinkRound {
            shrink: lambda,
            predicted_objective: e.objective,
            predicted_sqnr_db: e.predicted_sqnr_db(),
            predicted_psnr_db: e.predicted_psnr_db(),
            measured,
            bytes: e.usage.memory,
            avg_bits: e.usage.avg_bits,
            same_as,
            below_best_se_db: f64::NAN,
        });
        trials.push(trial);
        solutions.push((shrunk, solved));
    }
    let values: Vec<f64> = rounds.iter().map(|r| metric.of(&r.measured)).collect();
    let value = |r: usize| values[r];
    let Some(best) =
        (0..rounds.len()).filter(|&r| !value(r).is_nan()).reduce(|b, r| if value(r) > value(b) { r } else { b })
    else {
        return Err(SolverError::Config {
            field: "shrink".into(),
            message: format!("no plan of the search measured a {metric}"),
        }
        .into());
    };
    let mut chosen = best;
    for r in 0..rounds.len() {
        let se = difference_se_db(&trials[best].errors, &trials[r].errors);
        rounds[r].below_best_se_db = se;
        let within = value(best) - value(r) <= if se.is_nan() { 0.0 } else { se };
        if within && rounds[r].shrink >= rounds[chosen].shrink {
            chosen = r;
        }
    }
    let (problem, solved) = solutions.swap_remove(chosen);
    Ok(Selected { rounds, chosen, problem, solved })
}

/// The standard error, in dB, of the difference between two plans' metrics measured on the
/// same items, each metric 10·log10 of a constant over the mean of its per-item errors: the
/// delta method on the log of a ratio of paired means. 0 for identical errors; NaN with fewer
/// than two items, different item counts or a mean of zero (an exact plan).
pub fn difference_se_db(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len();
    let mean = |x: &[f64]| x.iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    if n < 2 || b.len() != n || ma <= 0.0 || mb <= 0.0 {
        return f64::NAN;
    }
    // Each item's share of b's mean less its share of a's: their mean is zero.
    let squares: f64 = a.iter().zip(b).map(|(x, y)| (y / mb - x / ma).powi(2)).sum();
    let variance_of_log = squares / (n - 1) as f64 / n as f64;
    10.0 / std::f64::consts::LN_10 * variance_of_log.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;

    /// A problem whose table says the small layers matter most, and 4 mean bits to spend.
    fn skewed() -> (Problem, SolveOptions) {
        let mut problem = crate::problem::tests::synthetic(12);
        for (i, l) in problem.layers.iter_mut().enumerate() {
            for loss in &mut l.loss {
                loss[0] *= 2f64.powi(12 - i as i32);
            }
        }
        (problem, SolveOptions { budgets: vec!["avg-bits=4".parse().expect("budget")], ..Default::default() })
    }

    /// A trial measuring `sqnr_db` whose 16 items' errors spread by ±`spread` around their mean,
    /// in a pattern that `draw` changes (independent noise per plan); their mean is exact.
    fn trial(sqnr_db: f64, spread: f64, draw: usize) -> Trial {
        let mean = 10f64.powf(-sqnr_db / 10.0);
        let errors = (0..16)
            .map(|i| {
                let sign = if (i / 2 * 7 + draw * 13) % 5 < 2 { 1.0 } else { -1.0 };
                let sign = if i % 2 == 0 { sign } else { -sign };
                mean * (1.0 + spread * sign)
            })
            .collect();
        Trial { measured: Measured { sqnr_db, ssim: f64::NAN, psnr_db: f64::NAN, caption: f64::NAN }, errors }
    }

    /// The measurement rewards plans whose bits follow size (the table's per-layer losses are
    /// noise) and is exact (every plan's item errors in one proportion): the search must keep
    /// the best measured shrinkage, measure each plan once, and record every round.
    #[test]
    fn the_search_keeps_the_best_measured_shrinkage_and_measures_each_plan_once() {
        let (problem, options) = skewed();
        let uniform = problem.evaluate(&problem.uniform(4).expect("W4"), 1.0).usage.memory;
        let mut calls = Vec::new();
        // "Measured" SQNR falls with the distance from uniform W4 (what the prior believes).
        let measure = |round: usize, p: &Problem, s: &Solved| -> Result<Trial> {
            calls.push(round);
            let spread: f64 = s
                .assignment
                .iter()
                .zip(&p.layers)
                .map(|(a, l)| (f64::from(l.options[a[0].expect("quantized")].w_bits()) - 4.0).abs())
                .sum();
            Ok(trial(30.0 - spread, 0.3, 0))
        };
        let selected = select(&problem, &options, &SHRINK_GRID, Metric::Sqnr, measure).expect("select");
        assert_eq!(selected.rounds.len(), SHRINK_GRID.len());
        let best = &selected.rounds[selected.chosen];
        assert!(selected.rounds.iter().all(|r| r.measured.sqnr_db <= best.measured.sqnr_db));
        assert_eq!(best.measured.sqnr_db, 30.0, "uniform W4 is reachable at shrink 1");
        assert_eq!(best.below_best_se_db, 0.0);
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
        let error = select(&problem, &targeted, &SHRINK_GRID, Metric::Sqnr, |_, _, _| -> Result<Trial> {
            unreachable!("nothing is measured")
        })
        .unwrap_err();
        assert!(error.to_string().starts_with("shrink: "), "{error}");
    }

    /// The first plan measures best by 0.1 dB and the second follows; the rest are far behind.
    /// When the items' noise makes 0.1 dB meaningless the search keeps the larger shrinkage of
    /// the two; when the measurement is exact it keeps the best.
    #[test]
    fn a_larger_shrinkage_within_one_standard_error_of_the_best_is_kept() {
        let (problem, options) = skewed();
        for spread in [0.5, 0.0] {
            let mut measured = 0;
            let measure = |_: usize, _: &Problem, _: &Solved| -> Result<Trial> {
                measured += 1;
                Ok(match measured {
                    1 => trial(30.0, spread, 1),
                    2 => trial(29.9, spread, 2),
                    _ => trial(20.0, spread, 3),
                })
            };
            let selected = select(&problem, &options, &SHRINK_GRID, Metric::Sqnr, measure).expect("select");
            let rounds = &selected.rounds;
            let first_of = |r: usize| rounds[r].same_as.unwrap_or(r);
            let second = (1..rounds.len()).find(|&r| rounds[r].same_as.is_none()).expect("two plans");
            let chosen = &rounds[selected.chosen];
            if spread > 0.0 {
                assert!(rounds[second].below_best_se_db > 0.1, "{}", rounds[second].below_best_se_db);
                assert_eq!(first_of(selected.chosen), second);
                assert!(rounds.iter().enumerate().all(|(r, x)| first_of(r) != second || x.shrink <= chosen.shrink));
                assert!(rounds.iter().all(|x| x.measured.sqnr_db < 29.0 || x.shrink <= chosen.shrink));
            } else {
                assert!(rounds[second].below_best_se_db < 1e-9);
                assert_eq!(first_of(selected.chosen), 0);
            }
            assert_eq!(selected.problem.shrunk, chosen.shrink);
            assert!((selected.solved.evaluation.usage.memory - chosen.bytes).abs() < 1e-9);
        }
    }

    /// The delta method's standard error on a case worked by hand: b's items swing by ±d around
    /// a's constant errors, so the log of the ratio of means has variance d²/(n − 1).
    #[test]
    fn the_standard_error_of_a_difference_follows_the_delta_method() {
        let (n, d) = (10, 0.2);
        let a = vec![2.0; n];
        let b: Vec<f64> = (0..n).map(|i| 3.0 * (1.0 + if i % 2 == 0 { d } else { -d })).collect();
        let expected = 10.0 / std::f64::consts::LN_10 * d / ((n - 1) as f64).sqrt();
        assert!((difference_se_db(&a, &b) - expected).abs() < 1e-12);
        assert!((difference_se_db(&b, &a) - difference_se_db(&a, &b)).abs() < 1e-12, "symmetric");
        let scaled: Vec<f64> = b.iter().map(|x| 5.0 * x).collect();
        assert_eq!(difference_se_db(&b, &scaled), 0.0, "errors in one proportion differ without noise");
        assert!(difference_se_db(&a[..1], &b[..1]).is_nan());
        assert!(difference_se_db(&a, &b[..3]).is_nan());
        assert!(difference_se_db(&vec![0.0; n], &b).is_nan(), "an exact plan's PSNR is infinite");
    }
}
