//! Exit statuses, mapped from a command's result in this one place, as the README states them:
//! 0 success; 1 the job ran and the answer is no (no plan meets the budget, no budget of a
//! sweep can be met, no plan meets a target); 2 bad input or any other error (clap uses 2 for
//! bad arguments too).

use bitsearch_solver::SolverError;
use std::process::ExitCode;

/// The job ran to its end and found no answer; the message says what came closest.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What a finished command tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Refused = 1,
    Error = 2,
}

impl Exit {
    /// [`Exit::Refused`] for an answer of no anywhere in the error's chain, else [`Exit::Error`].
    pub fn of(result: &anyhow::Result<()>) -> Self {
        let Err(error) = result else { return Self::Success };
        let refused = error.chain().any(|e| {
            e.is::<Refused>()
                || matches!(
                    e.downcast_ref::<SolverError>(),
                    Some(SolverError::Infeasible { .. } | SolverError::Unreachable { .. } | SolverError::Unmet { .. })
                )
        });
        if refused { Self::Refused } else { Self::Error }
    }
}

/// The exit code of `result`, its error (if any) printed as one line on standard error.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    let exit = Exit::of(&result);
    if let Err(error) = result {
        // One line, whatever the libraries put in their messages.
        let message = format!("{error:#}").replace('\n', " ");
        eprintln!("bitsearch: error: {message}");
    }
    ExitCode::from(exit as u8)
}
