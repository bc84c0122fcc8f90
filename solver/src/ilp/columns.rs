//! The program's binary columns, numbered as HiGHS numbers them: `x[l][o][g]` (layer `l` takes
//! option `o` in step group `g`) and `z[l][w]` (layer `l` stores its weight at width `w`), the
//! linear expressions over them, and the plan read back from their values.

use super::OBJECTIVE_SCALE;
use super::presolve::Pruned;
use crate::allocation::Assignment;
use crate::problem::Problem;
use bitsearch_records::Resource;
use bitsearch_types::MetricGroup;
use bitsearch_types::WeightFormat;
use good_lp::{Expression, ProblemVariables, Variable, variable};
use std::collections::{BTreeMap, BTreeSet};

/// A binary variable and the HiGHS column it becomes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Column {
    pub variable: Variable,
    pub index: usize,
}

/// Every column of one program.
pub(super) struct Columns<'a> {
    pub problem: &'a Problem,
    pub groups: usize,
    /// `x[l][o][g]`; None where the layer is protected, the loss is not finite or the option
    /// was pruned.
    pub x: Vec<Vec<Vec<Option<Column>>>>,
    /// `z[l][w]`: only where a layer can use different bits in different groups and a budget
    /// counts stored weights.
    pub z: Vec<BTreeMap<WeightFormat, Column>>,
    /// How many columns were made.
    pub count: usize,
}

impl<'a> Columns<'a> {
    /// The columns of `problem` without the `pruned` options; `z` only if `counts_storage`.
    pub fn new(
        problem: &'a Problem,
        vars: &mut ProblemVariables,
        pruned: Option<&Pruned>,
        counts_storage: bool,
    ) -> Self {
        let groups = problem.groups();
        // HiGHS numbers its columns in the order the variables are made; the solution is read
        // back by that number.
        let mut made = 0;
        let mut binary = || {
            made += 1;
            Column { variable: vars.add(variable().binary()), index: made - 1 }
        };
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
                                    && !pruned.is_some_and(|p| p[l][o][g]);
                                allowed.then(&mut binary)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let z = problem
            .layers
            .iter()
            .map(|layer| {
                if groups == 1 || layer.protected || !counts_storage {
                    return BTreeMap::new();
                }
                let widths: BTreeSet<WeightFormat> = layer.options.iter().map(|p| p.weight).collect();
                widths.into_iter().map(|w| (w, binary())).collect()
            })
            .collect();
        Self { problem, groups, x, z, count: made }
    }

    /// Every x as (layer, option, group, column).
    pub fn entries(&self) -> impl Iterator<Item = (usize, usize, usize, Column)> + '_ {
        self.x.iter().enumerate().flat_map(|(l, per)| {
            per.iter()
                .enumerate()
                .flat_map(move |(o, gs)| gs.iter().enumerate().filter_map(move |(g, c)| c.map(|c| (l, o, g, c))))
        })
    }

    /// Σ cost · x, scaled.
    pub fn loss(&self, content_weight: f64) -> Expression {
        let mut loss = Expression::from(0.0);
        for (l, o, g, c) in self.entries() {
            loss += OBJECTIVE_SCALE * self.problem.cost(l, o, g, content_weight) * c.variable;
        }
        loss
    }

    /// What the plan uses of `resource` (of the layers of `only`, or of all with the protected
    /// layers' fixed use): the expression over the columns and the fixed part.
    pub fn usage(&self, resource: Resource, only: Option<MetricGroup>) -> (Expression, f64) {
        let problem = self.problem;
        let mut expr = Expression::from(0.0);
        let fixed = if only.is_none() { problem.protected_usage(resource) } else { 0.0 };
        let counted = |l: usize| !problem.layers[l].protected && only.is_none_or(|g| g == problem.group(l));
        if self.groups == 1 || resource.per_step() {
            for (l, o, g, c) in self.entries().filter(|&(l, ..)| counted(l)) {
                expr += problem.coefficient(resource, l, o, g) * c.variable;
            }
        } else {
            for (l, layer) in problem.layers.iter().enumerate().filter(|&(l, _)| counted(l)) {
                for (&w, &zw) in &self.z[l] {
                    // Any option with this weight width stores the same bytes.
                    if let Some(o) = (0..layer.options.len()).find(|&o| layer.options[o].weight == w) {
                        expr += problem.coefficient(resource, l, o, 0) * zw.variable;
                    }
                }
            }
        }
        (expr, fixed)
    }

    /// The plan the column `values` (in column order) choose.
    pub fn assignment(&self, values: &[f64]) -> Assignment {
        let x = &self.x;
        self.problem
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                (0..self.groups)
                    .map(|g| (0..layer.options.len()).find(|&o| x[l][o][g].is_some_and(|c| values[c.index] > 0.5)))
                    .collect()
            })
            .collect()
    }
}
