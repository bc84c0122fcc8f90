//! Resume policy: what a run does with the journal and table of an earlier run at the same
//! output path, and the table written from the journal once the probes are done.

use crate::error::{Result, SensitivityError};
use crate::journal::{Journal, journal_path};
use crate::run::SensitivityRun;
use crate::summary::{Progress, Summary};
use bitsearch_records::SensitivityTable;
use std::collections::HashSet;
use std::path::Path;

/// What to do with the results of an earlier run at the same output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Stop with an error that suggests the other two.
    Refuse,
    /// Continue the run its journal records, skipping every finished probe.
    Resume,
    /// Start over.
    Overwrite,
}

/// Runs `run` with its journal beside `out`, then writes the table of every probe the journal
/// holds to `out`.
pub fn run_to_table(
    run: &mut SensitivityRun,
    out: &Path,
    existing: Existing,
    progress: &mut dyn Progress,
) -> Result<(Summary, SensitivityTable)> {
    let path = journal_path(out);
    let (mut journal, done) = match existing {
        Existing::Refuse if path.exists() || out.exists() => {
            return Err(SensitivityError::table(
                out,
                "already exists: pass --resume to continue that run, or --overwrite to start over",
            ));
        }
        Existing::Resume if path.exists() => Journal::resume(&path, run.meta())?,
        Existing::Resume if out.exists() => {
            return Err(SensitivityError::table(
                &path,
                "is missing, so the run that wrote the table cannot be resumed; pass --overwrite to start over",
            ));
        }
        Existing::Overwrite if out.exists() && !SensitivityTable::is_table(out) => {
            return Err(SensitivityError::table(
                out,
                "is not a sensitivity table: --overwrite only replaces an earlier run's table; choose another --out",
            ));
        }
        _ => (Journal::create(&path, run.meta())?, Vec::new()),
    };
    let done: HashSet<u64> = done.iter().map(|r| r.probe).collect();
    let summary = run.run(&mut journal, &done, progress)?;
    journal.sync()?;
    let (meta, mut rows) = Journal::contents(&path)?;
    rows.sort_by_key(|r| r.probe);
    let table = SensitivityTable { meta, rows };
    table.write(out)?;
    Ok((summary, table))
}
