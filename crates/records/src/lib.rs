//! The records that pass between bitsearch's stages, as plain data any stage can read without
//! linking ONNX Runtime or HiGHS: the sensitivity table and the description of the run that
//! measured it (Parquet), budgets and sweeps as users write them, the plan (YAML), the fit of
//! how single-layer losses combine (YAML) and the Pareto frontier (Parquet or CSV), the manifest
//! of a quantized model and the noise correction beside it, the evaluation records of the apply
//! stage (Parquet), and the float32 `.npy` arrays users hand in (images, latents, tensor
//! conditions).
//!
//! Every file carries a format version; a file from an older bitsearch is refused with a
//! message naming the command that writes the current format. Files are written atomically.

pub mod budget;
mod check;
pub mod correction;
mod error;
pub mod eval;
pub mod float_text;
pub mod frontier;
pub mod fuzzing;
pub mod manifest;
pub mod npy;
pub mod plan;
pub mod prediction_fit;
pub mod run_config;
mod solver;
pub mod table;
pub mod target;
mod thrift;

pub use budget::{Amount, Budget, Limit, Resource, Sweep};
pub use correction::{NoiseCorrection, StepNoise};
pub use error::{RecordError, Result};
pub use eval::{Cost, EVAL_FORMAT, EvalRecord, EvalRun, read_evals, write_evals};
pub use frontier::{FrontierPoint, PointKind, read_frontier, write_frontier};
pub use manifest::{Corrections, MANIFEST_FILE, Manifest, ManifestModel, Storage};
pub use plan::{Plan, PlanLayer};
pub use prediction_fit::{Combination, Curve, FitPlan, Form, Line, PredictionFit};
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

/// Key-value metadata key of the sha256 of a Parquet record's pages (see [`pages`]).
const PAGES_SHA256_KEY: &str = "bitsearch.pages_sha256";
/// Largest Parquet record read: tables of millions of probes stay far below it.
const MAX_PARQUET_BYTES: u64 = 1 << 30;

/// Writes `frame` as Parquet with `meta` (JSON) under `key` in the file's key-value metadata
/// and the sha256 of its pages beside it, atomically. The pages are encoded the same way
/// twice, the second time with the first one's checksum.
fn write_parquet(path: &Path, frame: &mut polars::prelude::DataFrame, key: &str, meta: String) -> Result<()> {
    use polars::prelude::{KeyValueMetadata, ParquetWriter};
    let error = |message: String| RecordError::file(path, message);
    let mut encode = |checksum: String| -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let pairs = vec![(key.to_string(), meta.clone()), (PAGES_SHA256_KEY.to_string(), checksum)];
        ParquetWriter::new(&mut bytes)
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(pairs)))
            .finish(frame)
            .map_err(|e| error(e.to_string()))?;
        Ok(bytes)
    };
    let draft = encode(String::new())?;
    let checksum =
        bitsearch_types::sha256_hex(pages(&draft).ok_or_else(|| error("the Parquet writer wrote no pages".into()))?);
    let bytes = encode(checksum.clone())?;
    if pages(&bytes).map(bitsearch_types::sha256_hex) != Some(checksum) {
        return Err(error("the Parquet writer encoded the same rows differently twice".into()));
    }
    write_file(path, &bytes)
}

/// Where a Parquet file's two parts lie between its magic bytes: the pages (every column
/// chunk) and the footer (the Thrift-encoded metadata). None when the file is not laid out as
/// Parquet.
fn parts(bytes: &[u8]) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    const MAGIC: &[u8] = b"PAR1";
    let n = bytes.len();
    if n < 12 || !bytes.starts_with(MAGIC) || !bytes.ends_with(MAGIC) {
        return None;
    }
    let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().ok()?) as usize;
    let start = (n - 8).checked_sub(footer).filter(|&start| start >= 4)?;
    Some((4..start, start..n - 8))
}

/// The pages of a Parquet file (see [`parts`]).
fn pages(bytes: &[u8]) -> Option<&[u8]> {
    parts(bytes).map(|(pages, _)| &bytes[pages])
}

/// Whether `path` is a Parquet file whose footer carries the metadata key `key`: a record
/// bitsearch wrote, which `--overwrite` may replace. Only the footer is read.
fn carries_key(path: &Path, key: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let footer = || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let mut tail = [0u8; 8];
        file.seek(SeekFrom::End(-8))?;
        file.read_exact(&mut tail)?;
        let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if &tail[4..] != b"PAR1" || length + 12 > size || length > MAX_PARQUET_BYTES {
            return Ok(Vec::new());
        }
        let mut footer = vec![0u8; length as usize];
        file.seek(SeekFrom::End(-8 - length as i64))?;
        file.read_exact(&mut footer)?;
        Ok(footer)
    };
    footer().is_ok_and(|f| f.windows(key.len()).any(|w| w == key.as_bytes()))
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

/// Reads a Parquet file written by [`write_parquet`]: the metadata under `key` and the rows
/// (see [`decode_parquet`]).
fn read_parquet(path: &Path, key: &str, what: &str, rerun: &str) -> Result<(String, polars::prelude::DataFrame)> {
    decode_parquet(&read_bounded(path, MAX_PARQUET_BYTES, what)?, path, (key, what, rerun), |_| Ok(()))
}

/// The bytes of the `what` file at `path`, refused past `max_bytes` before reading.
fn read_bounded(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    let error = |message: String| RecordError::file(path, message);
    let size = std::fs::metadata(path).map_err(|e| error(format!("cannot read: {e}")))?.len();
    if size > max_bytes {
        return Err(error(format!("{size} bytes is more than a {what} holds ({max_bytes} at most)")));
    }
    std::fs::read(path).map_err(|e| error(format!("cannot read: {e}")))
}

/// Most rows any Parquet record holds (a table holds at most one per probe): the footer's count
/// is refused past it before a row is decoded.
const MAX_ROWS: usize = 1 << 24;

/// What a Parquet record holds by its footer alone, known before a row is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub rows: usize,
    /// Bytes of the JSON run description.
    pub meta_bytes: usize,
}

/// Decodes the bytes of a Parquet file written by [`write_parquet`], `path` naming it in
/// errors: the metadata under `key` and the rows. A file without it is not a `what`; one
/// without the checksum of its pages comes from an older bitsearch (`rerun` writes it anew).
/// The pages are checked against their checksum before anything decodes them: polars'
/// decoder trusts the sizes inside them, and a damaged size aborts the process allocating it.
/// `admit` sees the file's [`Footprint`] before the rows are decoded, and may refuse it.
fn decode_parquet(
    bytes: &[u8],
    path: &Path,
    (key, what, rerun): (&str, &str, &str),
    admit: impl FnOnce(&Footprint) -> std::result::Result<(), String>,
) -> Result<(String, polars::prelude::DataFrame)> {
    use polars::prelude::{ParquetReader, SerReader};
    let error = |message: String| RecordError::file(path, message);
    let (pages, footer) = parts(bytes).ok_or_else(|| error("not a Parquet file".into()))?;
    let pages = &bytes[pages];
    thrift::counts_fit(&bytes[footer]).map_err(|e| error(format!("damaged Parquet file ({e})")))?;
    let mut reader = ParquetReader::new(std::io::Cursor::new(bytes));
    // polars' decoder panics on some damaged bytes instead of returning an error.
    let damaged = |panic: String| error(format!("damaged Parquet file ({panic})"));
    let metadata = bitsearch_types::catch_panic(|| reader.get_metadata().cloned())
        .map_err(damaged)?
        .map_err(|e| error(format!("not a Parquet file: {e}")))?;
    let value = |name: &str| {
        metadata.key_value_metadata.iter().flatten().find(|kv| kv.key == name).and_then(|kv| kv.value.clone())
    };
    let meta = value(key).ok_or_else(|| error(format!("not a bitsearch {what} (no run metadata)")))?;
    match value(PAGES_SHA256_KEY) {
        None => return Err(error(format!("carries no checksum: written by an older bitsearch; rerun `{rerun}`"))),
        Some(stored) if stored != bitsearch_types::sha256_hex(pages) => {
            return Err(error(format!(
                "{PAGES_SHA256_KEY}: the pages do not match their checksum (the file is damaged)"
            )));
        }
        Some(_) => {}
    }
    if metadata.num_rows > MAX_ROWS {
        return Err(error(format!("rows: {} is more than a {what} holds ({MAX_ROWS} at most)", metadata.num_rows)));
    }
    admit(&Footprint { rows: metadata.num_rows, meta_bytes: meta.len() }).map_err(error)?;
    bitsearch_types::catch_panic(|| check_pages(bytes, &metadata))
        .map_err(damaged)?
        .map_err(|e| error(format!("damaged Parquet file ({e})")))?;
    let frame = bitsearch_types::catch_panic(|| reader.finish())
        .map_err(damaged)?
        .map_err(|e| error(format!("cannot read the rows: {e}")))?;
    Ok((meta, frame))
}

/// Most bytes a page of a record may hold once decompressed, per row of its row group (and
/// beyond that, 64 KiB): a table's widest value, a layer's name, is far shorter.
const MAX_PAGE_BYTES_PER_ROW: usize = 4096;

/// Refuses data pages (and column chunks) that claim more values than their row group has rows,
/// or a decompressed size past [`MAX_PAGE_BYTES_PER_ROW`]: polars reserves what a page header
/// claims before it reads the page, and the pages' checksum proves nothing against a file
/// forged with its checksum recomputed (the `table_sealed` fuzz target found a page claiming
/// 2^61 values, which aborted the process allocating them).
fn check_pages(
    bytes: &[u8],
    metadata: &polars_parquet::parquet::metadata::FileMetadata,
) -> std::result::Result<(), String> {
    use polars_parquet::parquet::page::CompressedPage;
    for (g, group) in metadata.row_groups.iter().enumerate() {
        let rows = group.num_rows();
        let most_bytes = rows.saturating_mul(MAX_PAGE_BYTES_PER_ROW).saturating_add(64 * 1024);
        for column in group.parquet_columns() {
            let name = column.descriptor().path_in_schema.join(".");
            let at = |message: String| format!("row group {g}, column {name}: {message}");
            if usize::try_from(column.num_values()).map_or(true, |n| n > rows) {
                return Err(at(format!("claiming {} values in {rows} rows", column.num_values())));
            }
            // One column chunk copied at a time (the page reader owns its bytes), not the file.
            let range = column.byte_range();
            let chunk = usize::try_from(range.start)
                .ok()
                .zip(usize::try_from(range.end).ok())
                .and_then(|(start, end)| bytes.get(start..end))
                .ok_or_else(|| at(format!("bytes {range:?} lie outside the file")))?;
            let cursor = std::io::Cursor::new(polars_buffer::Buffer::from(chunk.to_vec()));
            let pages = polars_parquet::parquet::read::PageReader::new(cursor, column, Vec::new(), chunk.len());
            for page in pages {
                let CompressedPage::Data(page) = page.map_err(|e| at(e.to_string()))? else { continue };
                if page.num_values() > rows || page.uncompressed_size() > most_bytes {
                    return Err(at(format!(
                        "a page claiming {} values and {} bytes in {rows} rows",
                        page.num_values(),
                        page.uncompressed_size()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The fuzz targets' committed seeds, `fuzz/seeds/<target>/`: each test module that writes
/// them (`cargo test -p bitsearch-records -- --ignored fuzz_seeds`) also reads them back, so a
/// format change that outdates them fails `cargo test`.
#[cfg(test)]
fn fuzz_seeds(target: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target)
}

/// The files of a seed folder.
#[cfg(test)]
fn fuzz_seed_files(target: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(fuzz_seeds(target)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds for {target}");
    files
}
