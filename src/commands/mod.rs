//! One file per subcommand; each turns parsed arguments into library calls and output.

mod align;
mod eval;
mod inspect;
mod merge;
mod quantize;
mod report;
mod sample;
mod sensitivity;
mod serve;
mod solve;

use crate::cli::{Args, Command};
use bitsearch_solver::SolverError;

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Inspect(a) => inspect::run(&a),
        Command::Sample(a) => sample::run(&a),
        Command::Sensitivity(a) => sensitivity::run(&a),
        Command::Merge(a) => merge::run(&a),
        Command::Solve(a) => solve::run(&a),
        Command::Quantize(a) => quantize::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Memory(a) => eval::memory(&a),
        Command::Report(a) => report::run(&a),
        Command::Align(a) => align::run(&a),
        Command::Serve(a) => serve::run(&a),
    }
}

/// Exit status when the job ran and its answer is no (e.g. no plan meets the budget).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status for bad input and every other error, as clap uses for bad arguments.
pub const EXIT_ERROR: u8 = 2;

/// The job ran to its end and found no answer; the message says what came closest.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// [`EXIT_REFUSED`] for an answer of no, [`EXIT_ERROR`] for anything else.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    let refused = error.chain().any(|e| {
        e.is::<Refused>()
            || matches!(
                e.downcast_ref::<SolverError>(),
                Some(SolverError::Infeasible { .. } | SolverError::Unreachable { .. } | SolverError::Unmet { .. })
            )
    });
    if refused { EXIT_REFUSED } else { EXIT_ERROR }
}
