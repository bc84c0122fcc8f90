//! The program's rows, one function per constraint family, added in the order HiGHS has
//! always been given them. Budget rows are divided by their limit: BOPs run to 1e15, and
//! HiGHS's tolerances are absolute.

use super::columns::Columns;
use super::{OBJECTIVE_SCALE, row_scale};
use bitsearch_records::Resource;
use bitsearch_types::MetricGroup;
use good_lp::solvers::highs::HighsProblem;
use good_lp::{Constraint, Expression, SolverModel, Variable};

/// The model under construction and how many rows it has.
pub(super) struct Rows<'a> {
    columns: &'a Columns<'a>,
    model: HighsProblem,
    count: usize,
}

impl<'a> Rows<'a> {
    pub fn new(columns: &'a Columns<'a>, model: HighsProblem) -> Self {
        Self { columns, model, count: 0 }
    }

    fn add(&mut self, constraint: Constraint) {
        self.model.add_constraint(constraint);
        self.count += 1;
    }

    /// The model and its number of rows.
    pub fn finish(self) -> (HighsProblem, usize) {
        (self.model, self.count)
    }

    /// Layer `l` takes exactly one option in each step group.
    pub fn one_option(&mut self, l: usize) {
        let columns = self.columns;
        for g in 0..columns.groups {
            let one: Expression =
                columns.x[l].iter().filter_map(|per| per[g]).map(|c| Expression::from(c.variable)).sum();
            self.add(one.eq(1.0));
        }
    }

    /// Layer `l` stores every width an option it takes uses (`x ≤ z`), and nothing unused
    /// (`z ≤ Σ x`).
    pub fn stored_widths(&mut self, l: usize) {
        let columns = self.columns;
        let layer = &columns.problem.layers[l];
        for (&w, &zw) in &columns.z[l] {
            let users: Vec<Variable> = (0..layer.options.len())
                .filter(|&o| layer.options[o].weight == w)
                .flat_map(|o| columns.x[l][o].iter().flatten().map(|c| c.variable))
                .collect();
            for &u in &users {
                self.add((Expression::from(u) - zw.variable).leq(0.0));
            }
            let used: Expression = users.iter().map(|&u| Expression::from(u)).sum();
            self.add((Expression::from(zw.variable) - used).leq(0.0));
        }
    }

    /// The predicted loss (`loss`, scaled as the objective) at most `cap`.
    pub fn loss_cap(&mut self, loss: Expression, cap: f64) {
        self.add(loss.leq(OBJECTIVE_SCALE * cap));
    }

    /// Layers of one tie take the same precision in every group.
    pub fn ties(&mut self) {
        let (columns, problem) = (self.columns, self.columns.problem);
        for tie in &problem.ties {
            for pair in tie.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                for p in &problem.layers[a].options {
                    let taking = |l: usize, g: usize| -> Expression {
                        let layer = &problem.layers[l];
                        (0..layer.options.len())
                            .filter(|&o| layer.options[o] == *p)
                            .filter_map(|o| columns.x[l][o][g])
                            .map(|c| Expression::from(c.variable))
                            .sum()
                    };
                    for g in 0..columns.groups {
                        self.add((taking(a, g) - taking(b, g)).eq(0.0));
                    }
                }
            }
        }
    }

    /// Each budget's use at most its limit.
    pub fn budgets(&mut self, limits: &[(Resource, f64)]) {
        for &(resource, limit) in limits {
            let (expr, fixed) = self.columns.usage(resource, None);
            let unit = limit * row_scale(self.columns.problem, resource);
            self.add((expr / unit).leq(1.0 - fixed / unit));
        }
    }

    /// The first budget's use at least `lower`.
    pub fn lower_bound(&mut self, (resource, limit): (Resource, f64), lower: f64) {
        let (expr, fixed) = self.columns.usage(resource, None);
        let scale = row_scale(self.columns.problem, resource);
        let unit = limit * scale;
        self.add((expr / unit).geq((lower * scale - fixed) / unit));
    }

    /// The first budget beyond the protected layers split: content layers at most `share` of
    /// it, quality layers the rest.
    pub fn content_share(&mut self, share: f64, (resource, limit): (Resource, f64)) {
        let (_, fixed) = self.columns.usage(resource, None);
        let unit = limit * row_scale(self.columns.problem, resource);
        let available = unit - fixed;
        let (content, _) = self.columns.usage(resource, Some(MetricGroup::Content));
        let (quality, _) = self.columns.usage(resource, Some(MetricGroup::Quality));
        self.add((content / unit).leq(share * available / unit));
        self.add((quality / unit).leq((1.0 - share) * available / unit));
    }
}
