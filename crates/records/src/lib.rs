//! The records that pass between bitsearch's stages, as plain data any stage can read without
//! linking ONNX Runtime or HiGHS: the sensitivity table and the description of the run that
//! measured it (Parquet), budgets and sweeps as users write them, the plan (YAML) and the
//! Pareto frontier (Parquet or CSV). Evaluation records of the apply stage belong here too.
//!
//! Every file carries a format version; a file from an older bitsearch is refused with a
//! message naming the command that writes the current format. Files are written atomically.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod budget;
mod error;
pub mod frontier;
pub mod plan;
pub mod table;

pub use budget::{Amount, Budget, Limit, Resource, Sweep};
pub use error::{RecordError, Result};
pub use frontier::{FrontierPoint, PointKind, read_frontier, write_frontier};
pub use plan::{Plan, PlanLayer};
pub use table::{Monotonicity, ProbeRow, RunMeta, SensitivityTable, Shard, merge, monotonicity};

use std::path::Path;

/// Writes `bytes` to `path` atomically; the error names the file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    bitsearch_types::write_atomically(path, bytes).map_err(|e| RecordError::file(path, format!("cannot write: {e}")))
}
