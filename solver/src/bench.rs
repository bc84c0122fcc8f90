//! A bench: plans written round by round to a scratch folder and measured on one set of items,
//! what the target and shrinkage searches measure with. Running the model is the caller's
//! [`Meter`]: the solver links no runtime.

use crate::error::SolverError;
use crate::options::{SolveOptions, Solved};
use crate::plan::plan;
use crate::problem::Problem;
use crate::select::{SHRINK_GRID, Selected, Trial, select};
use crate::target::{self, Searched};
use bitsearch_records::{Metric, Plan, RecordError, SensitivityTable, ShrinkSearch, Target, TargetSearch};
use std::path::Path;

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
