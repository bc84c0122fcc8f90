//! Errors of the solver stage; each names the layer, field or budget it is about.

#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    #[error("{field}: {message}")]
    Config { field: String, message: String },
    #[error("sensitivity table: {0}")]
    Table(String),
    #[error("layer '{layer}': {message}")]
    Layer { layer: String, message: String },
    /// No plan meets the budget; says the smallest that would.
    #[error("infeasible budget {budget}: the smallest feasible {resource} budget is {minimum} ({how})")]
    Infeasible { budget: String, resource: String, minimum: String, how: String },
    /// No plan is predicted to lose as little as the cap allows.
    #[error("loss cap {cap} is below what every layer at its least lossy option predicts ({best})")]
    Unreachable { cap: String, best: String },
    /// A target search ended with no plan meeting its targets.
    #[error("no plan met {targets}: {best}")]
    Unmet { targets: String, best: String },
    #[error("the solver failed: {0}")]
    Solver(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

pub type Result<T, E = SolverError> = std::result::Result<T, E>;
