//! What a plan request asks, and the solve that answers it: the same steps as `bitsearch solve
//! --budget` (one program under the budgets, fixed shrinkage), so a served plan equals the CLI's.

use bitsearch_records::{Plan, SensitivityTable};
use bitsearch_solver::{Problem, SolveConfig, SolverError, plan, solve};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `POST /plans`: a registered table and the budgets, with the settings `solve` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The table's id, as registration answered it.
    pub table: String,
    /// As `--budget` takes them: `avg-bits=4.5`, `memory=2.5MB`, `bops=30%`.
    pub budgets: Vec<String>,
    /// Layers kept in float (names, roles, `input`, `output`); unset: the default protection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_weight: Option<f64>,
    /// Layers that take one precision, as `--tie` takes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<String>,
}

impl PlanRequest {
    /// The request as the cache keys it: fields in a fixed order, defaults spelled out.
    pub fn key(&self) -> String {
        let config = self.config(f64::NAN);
        let canonical = serde_json::json!({
            "table": self.table, "budgets": self.budgets, "protect": config.protect,
            "content_weight": config.content_weight, "ties": self.ties,
        });
        canonical.to_string()
    }

    fn config(&self, time_limit: f64) -> SolveConfig {
        let mut config = SolveConfig { budgets: self.budgets.clone(), time_limit, ..Default::default() };
        if let Some(protect) = &self.protect {
            config.protect = protect.clone();
        }
        config.content_weight = self.content_weight.unwrap_or(config.content_weight);
        config.ties = self.ties.clone();
        config
    }
}

/// The plan for `request` from the table at `path`, HiGHS given at most `time_limit` seconds.
pub fn answer(request: &PlanRequest, path: &Path, time_limit: f64) -> Result<Plan, SolverError> {
    let config = request.config(time_limit);
    let options = config.options()?;
    if options.budgets.is_empty() {
        return Err(SolverError::Config { field: "budgets".into(), message: "give at least one budget".into() });
    }
    let table = SensitivityTable::read(path).map_err(|e| SolverError::Table(e.to_string()))?;
    let mut problem = Problem::from_table(&table, &config.protect, config.basis(&[]))?;
    problem.tie(&config.ties)?;
    let solved = solve(&problem, &options)?;
    plan(&problem, &solved, &options, &table, path)
}
