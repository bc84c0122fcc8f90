//! Pareto sweeps: the program solved at n budgets between two amounts, next to the uniform
//! plans (every layer at one bit-width) for comparison, written as a frontier table.

use crate::allocation::Evaluation;
use crate::budget::{Amount, Budget, Resource, parse_amount};
use crate::error::{Result, SolverError};
use crate::ilp::{SolveOptions, Solved, solve};
use crate::problem::Problem;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::str::FromStr;

/// `[KIND=]FROM..TO:N`, e.g. `avg-bits=2.5..8:50` or `2.5bits..8bits:50`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub resource: Resource,
    pub from: Amount,
    pub to: Amount,
    pub points: usize,
}

impl FromStr for Sweep {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad =
            || format!("'{s}' is not a sweep: expected [KIND=]FROM..TO:N, e.g. avg-bits=2.5..8:50 or 1MB..4MB:20");
        let (kind, rest) = match s.split_once('=') {
            Some((kind, rest)) => (Some(format!("{kind}=1").parse::<Budget>()?.resource), rest),
            None => (None, s),
        };
        let (range, points) = rest.rsplit_once(':').ok_or_else(bad)?;
        let (from, to) = range.split_once("..").ok_or_else(bad)?;
        let points: usize = points.trim().parse().map_err(|_| bad())?;
        let (from, from_unit) = parse_amount(from.trim()).ok_or_else(bad)?;
        let (to, to_unit) = parse_amount(to.trim()).ok_or_else(bad)?;
        let resource = kind.or(from_unit).or(to_unit).unwrap_or(Resource::Memory);
        if [from_unit, to_unit].into_iter().flatten().any(|u| u != resource) {
            return Err(format!("'{s}': both ends must be {} amounts", resource.name()));
        }
        if points < 2 {
            return Err(format!("'{s}': a sweep needs at least 2 points"));
        }
        Ok(Sweep { resource, from, to, points })
    }
}

impl Sweep {
    /// The budgets, evenly spaced from `from` to `to`.
    pub fn budgets(&self) -> Vec<Budget> {
        let at = |amount: Amount| match amount {
            Amount::Absolute(v) | Amount::OfFullPrecision(v) => v,
        };
        let (a, b) = (at(self.from), at(self.to));
        (0..self.points)
            .map(|i| {
                let v = a + (b - a) * i as f64 / (self.points - 1) as f64;
                let amount = match self.from {
                    Amount::Absolute(_) => Amount::Absolute(v),
                    Amount::OfFullPrecision(_) => Amount::OfFullPrecision(v),
                };
                Budget { resource: self.resource, amount }
            })
            .collect()
    }
}

/// One point of the frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// `ilp` for the program's plans, `uniform` for one bit-width everywhere.
    pub kind: String,
    /// Plan file (ILP) or `uniform-W4` etc.
    pub plan: String,
    pub resource: Resource,
    /// The budget (ILP) or the amount used (uniform), in the resource's unit.
    pub budget: f64,
    pub objective: f64,
    pub sqnr_db: f64,
    pub ssim: f64,
    pub memory: f64,
    pub bops: f64,
    pub avg_bits: f64,
    pub status: String,
}

impl FrontierPoint {
    pub fn new(kind: &str, plan: String, resource: Resource, budget: f64, e: &Evaluation, status: &str) -> Self {
        Self {
            kind: kind.into(),
            plan,
            resource,
            budget,
            objective: e.objective,
            sqnr_db: e.predicted_sqnr_db(),
            ssim: e.predicted_ssim(),
            memory: e.usage.memory,
            bops: e.usage.bops,
            avg_bits: e.usage.avg_bits,
            status: status.into(),
        }
    }
}

/// Solves every budget of `sweep` (with the other budgets of `base` kept as extra limits);
/// returns each solved budget with its position in the sweep. A budget the program cannot
/// meet (or solve) is left out with a warning, so one bad point does not cost the frontier.
pub fn run(problem: &Problem, sweep: &Sweep, base: &SolveOptions) -> Vec<(usize, Budget, Solved)> {
    let mut solved = Vec::new();
    for (i, budget) in sweep.budgets().into_iter().enumerate() {
        let mut options = base.clone();
        options.budgets.insert(0, budget);
        match solve(problem, &options) {
            Ok(s) => solved.push((i, budget, s)),
            Err(e) => log::warn!("sweep point {budget}: {e}; left out"),
        }
    }
    solved
}

/// The uniform plans every layer offers, as frontier points.
pub fn uniform_points(problem: &Problem, resource: Resource, content_weight: f64) -> Vec<FrontierPoint> {
    let mut bits: Vec<u32> =
        problem.layers.iter().flat_map(|l| l.options.iter().map(|p| p.w_bits)).filter(|&b| b < 32).collect();
    bits.sort_unstable();
    bits.dedup();
    bits.into_iter()
        .filter_map(|b| {
            let e = problem.evaluate(&problem.uniform(b)?, content_weight);
            Some(FrontierPoint::new("uniform", format!("uniform-W{b}"), resource, e.usage.get(resource), &e, "uniform"))
        })
        .collect()
}

/// Writes the frontier as Parquet (`.parquet`) or CSV (anything else), atomically.
pub fn write_frontier(points: &[FrontierPoint], path: &Path) -> Result<()> {
    let error =
        |e: &dyn std::fmt::Display| SolverError::File { path: path.display().to_string(), message: e.to_string() };
    let text = |f: fn(&FrontierPoint) -> String| points.iter().map(f).collect::<Vec<_>>();
    let num = |f: fn(&FrontierPoint) -> f64| points.iter().map(f).collect::<Vec<_>>();
    let columns = vec![
        Column::new("kind".into(), text(|p| p.kind.clone())),
        Column::new("plan".into(), text(|p| p.plan.clone())),
        Column::new("resource".into(), text(|p| p.resource.name().to_string())),
        Column::new("budget".into(), num(|p| p.budget)),
        Column::new("objective".into(), num(|p| p.objective)),
        Column::new("sqnr_db".into(), num(|p| p.sqnr_db)),
        Column::new("ssim".into(), num(|p| p.ssim)),
        Column::new("memory".into(), num(|p| p.memory)),
        Column::new("bops".into(), num(|p| p.bops)),
        Column::new("avg_bits".into(), num(|p| p.avg_bits)),
        Column::new("status".into(), text(|p| p.status.clone())),
    ];
    let mut frame = DataFrame::new(points.len(), columns).map_err(|e| error(&e))?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "parquet") {
        ParquetWriter::new(&mut bytes).finish(&mut frame).map_err(|e| error(&e))?;
    } else {
        CsvWriter::new(&mut bytes).finish(&mut frame).map_err(|e| error(&e))?;
    }
    bitsearch_types::write_atomically(path, &bytes).map_err(|e| error(&e))
}

/// Reads a frontier written by [`write_frontier`] (Parquet or CSV, by extension).
pub fn read_frontier(path: &Path) -> Result<Vec<FrontierPoint>> {
    let error = |message: String| SolverError::File { path: path.display().to_string(), message };
    let file = std::fs::File::open(path).map_err(|e| error(format!("cannot open: {e}")))?;
    let frame = if path.extension().is_some_and(|e| e == "parquet") {
        ParquetReader::new(file).finish().map_err(|e| error(format!("not a Parquet file: {e}")))?
    } else {
        CsvReader::new(file).finish().map_err(|e| error(format!("not a CSV file: {e}")))?
    };
    let points = || -> PolarsResult<Vec<FrontierPoint>> {
        let text = |name: &str| -> PolarsResult<Vec<String>> {
            Ok(frame.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
        };
        let num = |name: &str| -> PolarsResult<Vec<f64>> {
            Ok(frame.column(name)?.cast(&DataType::Float64)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
        };
        let (kind, plan, resource, status) = (text("kind")?, text("plan")?, text("resource")?, text("status")?);
        let (budget, objective, sqnr, ssim) = (num("budget")?, num("objective")?, num("sqnr_db")?, num("ssim")?);
        let (memory, bops, avg_bits) = (num("memory")?, num("bops")?, num("avg_bits")?);
        (0..frame.height())
            .map(|i| {
                let resource = format!("{}=1", resource[i])
                    .parse::<crate::budget::Budget>()
                    .map_err(|e| PolarsError::ComputeError(e.into()))?
                    .resource;
                Ok(FrontierPoint {
                    kind: kind[i].clone(),
                    plan: plan[i].clone(),
                    resource,
                    budget: budget[i],
                    objective: objective[i],
                    sqnr_db: sqnr[i],
                    ssim: ssim[i],
                    memory: memory[i],
                    bops: bops[i],
                    avg_bits: avg_bits[i],
                    status: status[i].clone(),
                })
            })
            .collect()
    };
    points().map_err(|e| error(format!("not a bitsearch frontier: {e}")))
}
