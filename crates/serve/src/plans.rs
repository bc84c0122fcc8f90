//! What plan and frontier requests ask, and the solves that answer them: the same steps as
//! `bitsearch solve --budget` and `--sweep` (one program per budget, fixed shrinkage), so a
//! served plan or frontier equals the CLI's.

use crate::catalogue;
use crate::work::Stop;
use bitsearch_records::{FrontierPoint, Plan, SensitivityTable, Sweep};
use bitsearch_solver::{Fraction, Problem, SolveConfig, SolveOptions, Solved, SolverError, pareto};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// `POST /plans`: a registered table and the budgets, with the settings `solve` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The table's id, as registration answered it.
    pub table: String,
    /// As `--budget` takes them: `avg-bits=4.5`, `memory=2.5MB`, `bops=30%`.
    #[schema(example = json!(["avg-bits=4.5"]))]
    pub budgets: Vec<String>,
    /// Layers kept in float (names, roles, `input`, `output`); unset: the default protection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<Vec<String>>,
    /// Weight of the content (SSIM) group's loss against the quality (SQNR) group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_weight: Option<f64>,
    /// Layers that take one precision, as `--tie` takes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<String>,
}

/// `POST /frontiers`: a sweep of one budget over a registered table, as `solve --sweep` runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrontierRequest {
    pub table: String,
    /// As `--sweep` takes it: `[KIND=]FROM..TO:N`.
    #[schema(example = "avg-bits=2.5..8:12")]
    pub sweep: String,
    /// Further budgets every point meets, as `--budget` takes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_weight: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<String>,
}

/// The settings either request gives, as `solve` would take them from flags.
fn config(
    budgets: &[String],
    protect: &Option<Vec<String>>,
    content_weight: Option<f64>,
    ties: &[String],
    time_limit: f64,
) -> SolveConfig {
    let mut config = SolveConfig { budgets: budgets.to_vec(), time_limit, ..Default::default() };
    if let Some(protect) = protect {
        config.protect = protect.clone();
    }
    config.content_weight = content_weight.unwrap_or(config.content_weight);
    config.ties = ties.to_vec();
    config
}

impl PlanRequest {
    /// The request as the cache keys it: fields in a fixed order, defaults spelled out.
    pub fn key(&self) -> String {
        let c = self.config(f64::NAN);
        serde_json::json!({
            "table": self.table, "budgets": c.budgets, "protect": c.protect,
            "content_weight": c.content_weight, "ties": c.ties,
        })
        .to_string()
    }

    pub fn config(&self, time_limit: f64) -> SolveConfig {
        config(&self.budgets, &self.protect, self.content_weight, &self.ties, time_limit)
    }
}

impl FrontierRequest {
    /// As [`PlanRequest::key`], with the sweep.
    pub fn key(&self) -> String {
        let c = self.config(f64::NAN);
        serde_json::json!({
            "table": self.table, "sweep": self.sweep, "budgets": c.budgets, "protect": c.protect,
            "content_weight": c.content_weight, "ties": c.ties,
        })
        .to_string()
    }

    pub fn config(&self, time_limit: f64) -> SolveConfig {
        config(&self.budgets, &self.protect, self.content_weight, &self.ties, time_limit)
    }

    pub fn sweep(&self) -> Result<Sweep, SolverError> {
        self.sweep.parse().map_err(|message| SolverError::Config { field: "sweep".into(), message })
    }

    /// The key of the plan at point `i` of this sweep.
    fn point_key(&self, i: usize) -> String {
        serde_json::json!({ "frontier": self.key(), "point": i }).to_string()
    }
}

/// A table read and its program built once, for one plan or a sweep's many.
#[derive(Debug)]
pub struct Prepared {
    table: SensitivityTable,
    path: PathBuf,
    problem: Problem,
    pub options: SolveOptions,
}

impl Prepared {
    /// The program of the table at `path` under `config`, shrunk as `solve` shrinks it.
    pub fn new(config: &SolveConfig, path: &Path) -> Result<Self, SolverError> {
        let options = config.options()?;
        // A catalogue's table was checked when it was registered: failing to read it now is
        // the server's fault.
        let table = SensitivityTable::read(path)
            .map_err(|e| SolverError::File { path: path.display().to_string(), message: e.to_string() })?;
        let mut problem = Problem::from_table(&table, &config.protect, config.basis(&[], table.meta.decodes_images()))?;
        problem.tie(&config.ties)?;
        if let Fraction::Fixed(lambda) = config.shrink {
            problem.shrink(lambda)?;
        }
        Ok(Self { table, path: path.to_path_buf(), problem, options })
    }

    /// The plan under `options`' budgets, with the solve it came from.
    pub fn plan(&self, options: &SolveOptions) -> Result<(Plan, Solved), SolverError> {
        let solved = bitsearch_solver::solve(&self.problem, options)?;
        let plan = bitsearch_solver::plan(&self.problem, &solved, options, &self.table, &self.path)?;
        Ok((plan, solved))
    }
}

/// The plan for `request` from the table at `path`, HiGHS given at most `time_limit` seconds.
pub fn answer(request: &PlanRequest, path: &Path, time_limit: f64) -> Result<Plan, SolverError> {
    let prepared = Prepared::new(&request.config(time_limit), path)?;
    if prepared.options.budgets.is_empty() {
        return Err(SolverError::Config { field: "budgets".into(), message: "give at least one budget".into() });
    }
    Ok(prepared.plan(&prepared.options)?.0)
}

/// One line of a streamed frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FrontierEvent {
    /// A frontier point, as `solve --sweep` writes it to frontier.parquet: the program's plan at
    /// one budget (its `plan` is the plan's id, for `GET /plans/{id}`), or after them the
    /// uniform plans.
    Point(FrontierPoint),
    /// A budget no plan meets, left out as `solve --sweep` leaves it out.
    LeftOut(LeftOut),
    /// The last line: the frontier's id and how many of the sweep's budgets were solved.
    Done { id: String, solved: usize, of: usize, cached: bool },
    /// The last line of a sweep stopped short (the request's time ran out): why.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeftOut {
    pub budget: String,
    pub error: String,
}

/// A whole frontier, as `POST /frontiers` answers it unstreamed and as the catalogue keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrontierAnswer {
    pub id: String,
    #[serde(default)]
    pub cached: bool,
    pub solved: usize,
    pub of: usize,
    /// The program's points in budget order, then the uniform plans.
    pub points: Vec<FrontierPoint>,
    pub left_out: Vec<LeftOut>,
}

impl FrontierAnswer {
    /// The answer as the lines a stream sends.
    pub fn events(&self) -> Vec<FrontierEvent> {
        let points = self.points.iter().cloned().map(FrontierEvent::Point);
        let left_out = self.left_out.iter().cloned().map(FrontierEvent::LeftOut);
        let done = FrontierEvent::Done { id: self.id.clone(), solved: self.solved, of: self.of, cached: self.cached };
        points.chain(left_out).chain([done]).collect()
    }
}

/// A solved sweep: the answer, and each point's plan request key with the plan's YAML.
#[derive(Debug)]
pub struct Swept {
    pub answer: FrontierAnswer,
    pub plans: Vec<(String, String)>,
}

/// How a sweep ended.
#[derive(Debug)]
pub enum Outcome {
    Swept(Swept),
    /// `emit` said the listener had gone.
    Left,
    /// The request's time ran out after `done` of the sweep's `of` budgets.
    OutOfTime {
        done: usize,
        of: usize,
    },
}

/// Solves `request`'s sweep point by point, handing each line to `emit` as it is known; stops
/// when `emit` says the listener has gone, or when `stop` does (client gone, time up). Each
/// point's solve is given at most the time the request has left.
pub fn sweep(
    request: &FrontierRequest,
    prepared: &Prepared,
    stop: &Stop,
    mut emit: impl FnMut(FrontierEvent) -> bool,
) -> Result<Outcome, SolverError> {
    let sweep = request.sweep()?;
    let kind = prepared.options.method.kind();
    let mut answer = FrontierAnswer {
        id: catalogue::id(&request.key()),
        cached: false,
        solved: 0,
        of: sweep.points,
        points: Vec::new(),
        left_out: Vec::new(),
    };
    let mut plans = Vec::new();
    for (i, budget, mut options) in pareto::budgets(&sweep, &prepared.options) {
        if stop.client_gone() {
            return Ok(Outcome::Left);
        }
        let left = stop.remaining().as_secs_f64();
        if left <= 0.0 {
            return Ok(Outcome::OutOfTime { done: i, of: sweep.points });
        }
        options.time_limit = options.time_limit.min(left);
        let event = match prepared.plan(&options) {
            Ok((plan, solved)) => {
                let key = request.point_key(i);
                let limit = solved.limits[0].limit;
                let point =
                    pareto::point(kind, catalogue::id(&key), sweep.resource, limit, &solved.evaluation, solved.status);
                let yaml = serde_norway::to_string(&plan).map_err(|e| SolverError::Solver(format!("plan: {e}")))?;
                plans.push((key, yaml));
                answer.points.push(point.clone());
                answer.solved += 1;
                FrontierEvent::Point(point)
            }
            // One budget the program cannot meet does not cost the frontier.
            Err(e) => {
                let left = LeftOut { budget: budget.to_string(), error: e.to_string() };
                answer.left_out.push(left.clone());
                FrontierEvent::LeftOut(left)
            }
        };
        if !emit(event) {
            return Ok(Outcome::Left);
        }
    }
    let uniform = pareto::uniform_points(&prepared.problem, sweep.resource, prepared.options.content_weight);
    for point in uniform {
        answer.points.push(point.clone());
        if !emit(FrontierEvent::Point(point)) {
            return Ok(Outcome::Left);
        }
    }
    Ok(Outcome::Swept(Swept { answer, plans }))
}
