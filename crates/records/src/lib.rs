//! The records that pass between bitsearch's stages, as plain data any stage can read without
//! linking ONNX Runtime or HiGHS: the sensitivity table and the description of the run that
//! measured it (Parquet), budgets and sweeps as users write them, the plan (YAML) and the
//! Pareto frontier (Parquet or CSV), the manifest of a quantized model and the noise correction
//! beside it, and the evaluation records of the apply stage (Parquet).
//!
//! Every file carries a format version; a file from an older bitsearch is refused with a
//! message naming the command that writes the current format. Files are written atomically.

pub mod budget;
pub mod correction;
mod error;
pub mod eval;
pub mod frontier;
pub mod manifest;
pub mod plan;
pub mod run_config;
mod solver;
pub mod table;
pub mod target;

pub use budget::{Amount, Budget, Limit, Resource, Sweep};
pub use correction::{NoiseCorrection, StepNoise};
pub use error::{RecordError, Result};
pub use eval::{Cost, EVAL_FORMAT, EvalRecord, EvalRun, read_evals, write_evals};
pub use frontier::{FrontierPoint, PointKind, read_frontier, write_frontier};
pub use manifest::{Corrections, MANIFEST_FILE, Manifest, ManifestModel, Storage};
pub use plan::{Plan, PlanLayer};
pub use run_config::RunConfig;
pub use table::{
    BaseLayer, BasePoint, Monotonicity, ProbeRow, RunMeta, SensitivityTable, Shard, ShardSpec, SplitGain, merge,
    monotonicity, split_gains,
};
pub use target::{Measured, Metric, Round, ShrinkRound, ShrinkSearch, Target, TargetSearch};

use std::path::Path;

/// Writes `bytes` to `path` atomically; the error names the file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    bitsearch_types::write_atomically(path, bytes).map_err(|e| RecordError::file(path, format!("cannot write: {e}")))
}

/// Writes `frame` as Parquet with `meta` (JSON) under `key` in the file's key-value metadata,
/// atomically.
fn write_parquet(path: &Path, frame: &mut polars::prelude::DataFrame, key: &str, meta: String) -> Result<()> {
    use polars::prelude::{KeyValueMetadata, ParquetWriter};
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .with_key_value_metadata(Some(KeyValueMetadata::from_static(vec![(key.to_string(), meta)])))
        .finish(frame)
        .map_err(|e| RecordError::file(path, e.to_string()))?;
    write_file(path, &bytes)
}

/// A float column a later format added: its values (null as NaN), or NaN for every row of a
/// file written before it.
fn added_floats(frame: &polars::prelude::DataFrame, name: &str) -> polars::prelude::PolarsResult<Vec<f64>> {
    use polars::prelude::DataType;
    match frame.column(name) {
        Ok(column) => Ok(column.cast(&DataType::Float64)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect()),
        Err(_) => Ok(vec![f64::NAN; frame.height()]),
    }
}

/// Reads a Parquet file written by [`write_parquet`]: the metadata under `key` and the rows.
/// A file without it is not a `what`.
fn read_parquet(path: &Path, key: &str, what: &str) -> Result<(String, polars::prelude::DataFrame)> {
    use polars::prelude::{ParquetReader, SerReader};
    let error = |message: String| RecordError::file(path, message);
    let file = std::fs::File::open(path).map_err(|e| error(format!("cannot open: {e}")))?;
    let mut reader = ParquetReader::new(file);
    let metadata = reader.get_metadata().map_err(|e| error(format!("not a Parquet file: {e}")))?;
    let meta = metadata
        .key_value_metadata
        .iter()
        .flatten()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .ok_or_else(|| error(format!("not a bitsearch {what} (no run metadata)")))?;
    let frame = reader.finish().map_err(|e| error(format!("cannot read the rows: {e}")))?;
    Ok((meta, frame))
}
