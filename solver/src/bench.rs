//! A bench: plans written round by round to a scratch folder and measured on one set of items,
//! what the target and shrinkage searches measure with. Running the model is the caller's
//! [`Meter`]: the solver links no runtime.

use crate::allocation::Assignment;
use crate::error::SolverError;
use crate::ilp::solve;
use crate::options::{SolveOptions, Solved};
use crate::pareto;
use crate::plan::{plan, sha256};
use crate::problem::Problem;
use crate::select::{SHRINK_GRID, Selected, Trial, select};
use crate::target::{self, Searched};
use bitsearch_records::prediction_fit::PREDICTION_FIT_FORMAT;
use bitsearch_records::{FitPlan, Metric, Plan, PredictionFit, RecordError, SensitivityTable};
use bitsearch_records::{ShrinkSearch, Sweep, Target, TargetSearch};
use std::path::Path;

/// Most budgets `--fit-prediction` measures: a fit is a handful of evaluations.
pub const MAX_FIT_BUDGETS: usize = 8;

/// What measures a plan file on the bench's items.
pub trait Meter {
    type Error: From<SolverError> + From<RecordError> + From<Unmeasurable>;

    /// The plan at `plan` run on the items: its metrics and each item's errors of `metric`.
    fn measure(&mut self, plan: &Path, metric: Metric) -> Result<Trial, Self::Error>;
}

/// A metric the searches read that the bench's model cannot measure.
#[derive(Debug, thiserror::Error)]
#[error("{metric}: {model} cannot measure it (caption needs a pipeline with a classifier)")]
pub struct Unmeasurable {
    pub metric: Metric,
    pub model: String,
}

/// Plans of one sensitivity table measured by `M` on one set of items.
pub struct Bench<'a, M> {
    table: &'a SensitivityTable,
    /// The table's file, recorded in each plan.
    sensitivity: &'a Path,
    meter: M,
    scratch: tempfile::TempDir,
    /// The items, in words.
    items: String,
    /// Metrics the search reads: a model that cannot measure one is an error.
    needs: Vec<Metric>,
}

impl<M> std::fmt::Debug for Bench<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench").field("items", &self.items).field("needs", &self.needs).finish_non_exhaustive()
    }
}

impl<'a, M: Meter> Bench<'a, M> {
    /// A bench with a fresh scratch folder for the rounds' plans.
    pub fn new(
        (table, sensitivity): (&'a SensitivityTable, &'a Path),
        meter: M,
        items: String,
        needs: Vec<Metric>,
    ) -> std::io::Result<Self> {
        let scratch = tempfile::tempdir()?;
        Ok(Self { table, sensitivity, meter, scratch, items, needs })
    }

    fn measure(
        &mut self,
        round: usize,
        (problem, solved): (&Problem, &Solved),
        options: &SolveOptions,
        metric: Metric,
    ) -> Result<Trial, M::Error> {
        let path = self.scratch.path().join(format!("round_{round:02}.yaml"));
        plan(problem, solved, options, self.table, self.sensitivity)?.write(&path)?;
        let trial = self.meter.measure(&path, metric)?;
        if let Some(&metric) = self.needs.iter().find(|m| m.of(&trial.measured).is_nan()) {
            return Err(Unmeasurable { metric, model: self.table.meta.model.clone() }.into());
        }
        Ok(trial)
    }

    /// `--shrink search` under `options`' budgets: the plan of the largest shrinkage that
    /// measures within one standard error of the best on the bench's items, recording every
    /// round.
    pub fn select_plan(&mut self, problem: &Problem, options: &SolveOptions) -> Result<(Plan, Selected), M::Error> {
        let metric = target::basis_metric(problem.basis);
        let selected =
            select(problem, options, &SHRINK_GRID, metric, |r, p, s| self.measure(r, (p, s), options, metric))?;
        let mut plan = plan(&selected.problem, &selected.solved, options, self.table, self.sensitivity)?;
        let rounds = selected.rounds.clone();
        plan.shrink_search = Some(ShrinkSearch { metric, items: self.items.clone(), rounds, chosen: selected.chosen });
        Ok((plan, selected))
    }

    /// `--fit-prediction`: the plan of every budget of `sweep` measured on the bench's items
    /// (a plan an earlier budget gave, left out), and the curves of how their single-layer
    /// losses combine. A budget the program cannot meet is left out; fewer than two plans is an error.
    pub fn fit_prediction(
        &mut self,
        problem: &Problem,
        sweep: &Sweep,
        options: &SolveOptions,
    ) -> Result<PredictionFit, M::Error> {
        if sweep.points > MAX_FIT_BUDGETS {
            let message = format!("{} budgets: a fit measures at most {MAX_FIT_BUDGETS} plans", sweep.points);
            return Err(SolverError::Config { field: "sweep".into(), message }.into());
        }
        let metric = target::basis_metric(problem.basis);
        let mut measured: Vec<Assignment> = Vec::new();
        let mut plans = Vec::new();
        for (i, budget, options) in pareto::budgets(sweep, options) {
            let solved = match solve(problem, &options) {
                Ok(solved) => solved,
                Err(e) => {
                    log::warn!("fit point {budget}: {e}; left out");
                    continue;
                }
            };
            // A plan measured twice would count twice in the fit.
            if measured.contains(&solved.assignment) {
                log::info!("fit point {budget}: the plan of an earlier budget; left out");
                continue;
            }
            let m = self.measure(i, (problem, &solved), &options, metric)?.measured;
            measured.push(solved.assignment.clone());
            let e = &solved.evaluation;
            log::info!(
                "fit point {budget}: {:.3} bits; additive SQNR {:.2} dB, PSNR {:.2} dB; measured SQNR {:.2} dB, PSNR {:.2} dB",
                e.usage.avg_bits,
                e.additive_sqnr_db(),
                e.additive_psnr_db(),
                m.sqnr_db,
                m.psnr_db
            );
            plans.push(FitPlan {
                budget: budget.to_string(),
                avg_bits: e.usage.avg_bits,
                bytes: e.usage.memory,
                additive_sqnr_db: e.additive_sqnr_db(),
                additive_ssim: e.additive_ssim(),
                additive_psnr_db: e.additive_psnr_db(),
                measured: m,
            });
        }
        if plans.len() < 2 {
            let message = format!("{} distinct plans measured; a fit needs two or more", plans.len());
            return Err(SolverError::Config { field: "sweep".into(), message }.into());
        }
        Ok(PredictionFit {
            bitsearch_prediction_fit: PREDICTION_FIT_FORMAT,
            sensitivity_sha256: sha256(self.sensitivity)?,
            loss: problem.basis,
            items: self.items.clone(),
            curves: PredictionFit::curves(&plans),
            plans,
        })
    }

    /// `--target`: the search for the smallest plan whose measurement meets every target, at
    /// most `max_rounds` measurements (see [`target::search`]).
    pub fn search(
        &mut self,
        problem: &Problem,
        options: &SolveOptions,
        targets: &[Target],
        max_rounds: usize,
    ) -> Result<Searched, M::Error> {
        let metric = target::basis_metric(problem.basis);
        target::search(problem, options, targets, max_rounds, |round, solved| {
            Ok(self.measure(round, (problem, solved), options, metric)?.measured)
        })
    }

    /// The plan `searched` chose for `targets`, with its search recorded; None when no plan met
    /// them.
    pub fn target_plan(
        &self,
        problem: &Problem,
        options: &SolveOptions,
        targets: &[Target],
        searched: &Searched,
    ) -> Result<Option<(Plan, Solved)>, M::Error> {
        let Some((chosen, solved)) = searched.chosen.clone() else { return Ok(None) };
        let mut plan = plan(problem, &solved, options, self.table, self.sensitivity)?;
        plan.target = Some(TargetSearch {
            targets: targets.to_vec(),
            minimised: options.minimise.to_string(),
            items: self.items.clone(),
            rounds: searched.rounds.clone(),
            chosen,
        });
        Ok(Some((plan, solved)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::AppliedFit;
    use bitsearch_records::Measured;
    use bitsearch_types::LossBasis;

    /// Layers whose errors add up coherently: a plan measures `A · (Σ singles)^B` noise, in
    /// the denoiser and in the image alike.
    const A: f64 = 5.0;
    const B: f64 = 0.85;

    struct Coherent;

    impl Meter for Coherent {
        type Error = Box<dyn std::error::Error>;

        fn measure(&mut self, plan: &Path, _: Metric) -> Result<Trial, Self::Error> {
            let p = Plan::read(plan)?.prediction;
            let db = |noise: f64| -10.0 * (A * noise.powf(B)).log10();
            // The image MSE the plan's layers sum to, before any fit.
            let additive_psnr_db = p.fit.as_ref().map_or(p.psnr_db, |f| f.additive_psnr_db);
            let psnr_db = bitsearch_metrics::psnr_db(A * bitsearch_metrics::mse_at_psnr_db(additive_psnr_db).powf(B));
            let measured = Measured { sqnr_db: db(p.quality_loss), ssim: f64::NAN, psnr_db, caption: f64::NAN };
            Ok(Trial { measured, errors: Vec::new() })
        }
    }

    #[test]
    fn a_fit_on_a_few_budgets_predicts_the_measurement_at_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let mut table = bitsearch_fixtures::sensitivity_table(7, 24, &[2, 4, 8], 1);
        // Quality layers only: one metric group, whose fit moves no optimum.
        table.rows.iter_mut().for_each(|r| r.layer.group = bitsearch_types::MetricGroup::Quality);
        table.write(&path).unwrap();
        let mut problem = Problem::from_table(&table, &[], LossBasis::Decoupled).unwrap();
        let options = SolveOptions::default();
        let mut bench = Bench::new((&table, &path), Coherent, "test items".into(), vec![Metric::Sqnr]).unwrap();
        let sweep: Sweep = "avg-bits=2.2..8:5".parse().unwrap();
        let fit = bench.fit_prediction(&problem, &sweep, &options).unwrap();
        let line = fit.curves.sqnr.clone().and_then(|c| c.line).expect("an SQNR line");
        assert!((line.slope - B).abs() < 1e-6 && (line.intercept_db + 10.0 * A.log10()).abs() < 1e-5, "{line:?}");
        let psnr = fit.curves.psnr.clone().and_then(|c| c.line).expect("a PSNR line");
        assert!((psnr.slope - B).abs() < 1e-6, "{psnr:?}");
        assert!(fit.plans.len() >= 2 && fit.curves.ssim.is_none());

        let fit_path = dir.path().join("prediction-fit.yaml");
        fit.write(&fit_path).unwrap();
        let before = problem.clone();
        problem.fit = Some(AppliedFit { curves: fit.curves.clone(), file: fit_path, sha256: "ab".repeat(32) });
        for bits in ["avg-bits=3.1", "avg-bits=5.5", "avg-bits=7.3"] {
            let options = SolveOptions { budgets: vec![bits.parse().unwrap()], ..SolveOptions::default() };
            let solved = crate::solve(&problem, &options).unwrap();
            // A monotone map of one group's sum leaves the optimum where it was.
            assert_eq!(solved.assignment, crate::solve(&before, &options).unwrap().assignment, "{bits}");
            let written = dir.path().join("plan.yaml");
            plan(&problem, &solved, &options, &table, &path).unwrap().write(&written).unwrap();
            let measured = Coherent.measure(&written, Metric::Sqnr).unwrap().measured;
            let e = &solved.evaluation;
            assert!((e.predicted_sqnr_db() - measured.sqnr_db).abs() < 1e-6, "{bits}: {e:?} vs {measured:?}");
            assert!((e.predicted_psnr_db() - measured.psnr_db).abs() < 1e-6, "{bits}");
            assert!(e.additive_sqnr_db() - e.predicted_sqnr_db() > 1.0, "{bits}: the additive sum is optimistic");
            let recorded = Plan::read(&written).unwrap().prediction;
            let used = recorded.fit.expect("the plan names its fit");
            assert_eq!(recorded.sqnr_db, e.predicted_sqnr_db());
            assert_eq!(used.additive_sqnr_db, e.additive_sqnr_db());
        }

        let many: Sweep = "avg-bits=2.2..8:9".parse().unwrap();
        let message = bench.fit_prediction(&before, &many, &options).unwrap_err().to_string();
        assert!(message.starts_with("sweep: 9 budgets"), "{message}");
    }
}
