//! The durable record of a run in progress: the run's description on the first line, then one
//! JSON line per finished probe, handed to the operating system before the next probe starts
//! and synced to disk at most a second later. A killed run loses at most the probe in flight (a
//! machine that loses power, at most the last second's); `--resume` reads the journal back, cuts
//! off a line torn by the kill, and skips every probe it holds. The journal is only ever
//! appended to, and a run holds an exclusive lock on it: a second run on the same output stops
//! at once instead of recomputing the same probes.

use crate::error::{Result, SensitivityError};
use bitsearch_records::table::first_difference;
use bitsearch_records::{ProbeRow, RecordError, RunMeta};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest time a written row waits for its sync: a sync per probe cost about 0.6% of a
/// terrain run.
const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    synced: Instant,
}

/// The journal kept beside a table: `table.parquet` → `table.parquet.journal.jsonl`.
pub fn journal_path(table: &Path) -> PathBuf {
    let mut name = table.as_os_str().to_owned();
    name.push(".journal.jsonl");
    PathBuf::from(name)
}

impl Journal {
    /// Starts a new journal at `path`, replacing any journal there.
    pub fn create(path: &Path, meta: &RunMeta) -> Result<Self> {
        let mut header = serde_json::to_string(meta).map_err(|e| SensitivityError::table(path, e.to_string()))?;
        header.push('\n');
        let mut file = open_locked(path)?;
        let error = |e: std::io::Error| SensitivityError::table(path, format!("cannot write: {e}"));
        // A kill between these leaves a journal without a header, which --resume refuses.
        file.set_len(0).map_err(error)?;
        file.write_all(header.as_bytes()).map_err(error)?;
        file.sync_data().map_err(error)?;
        Ok(Self { path: path.to_path_buf(), file, synced: Instant::now() })
    }

    /// Opens the journal at `path` to continue the run `meta` describes; returns it with the
    /// probes already finished. A journal of another run (other model, settings or shard) is
    /// refused, naming the first field that differs.
    pub fn resume(path: &Path, meta: &RunMeta) -> Result<(Self, Vec<ProbeRow>)> {
        let file = open_locked(path)?;
        let (found, rows, valid_len) = read(path)?;
        if let Some(field) = first_difference(&found, meta) {
            return Err(SensitivityError::table(
                path,
                format!("was written by a different run (its '{field}' differs); start over with --overwrite"),
            ));
        }
        // Drop the tail a kill left half-written; appends go after what is kept.
        file.set_len(valid_len).map_err(|e| SensitivityError::table(path, format!("cannot write: {e}")))?;
        Ok((Self { path: path.to_path_buf(), file, synced: Instant::now() }, rows))
    }

    /// Appends one finished probe (unbuffered: a kill after this loses nothing), syncing the
    /// file when the last sync is [`SYNC_EVERY`] old.
    pub fn append(&mut self, row: &ProbeRow) -> Result<()> {
        let mut line = serde_json::to_string(row).map_err(|e| SensitivityError::table(&self.path, e.to_string()))?;
        line.push('\n');
        let error = |e: std::io::Error| SensitivityError::table(&self.path, format!("cannot write: {e}"));
        self.file.write_all(line.as_bytes()).map_err(error)?;
        if self.synced.elapsed() >= SYNC_EVERY {
            self.file.sync_data().map_err(error)?;
            self.synced = Instant::now();
        }
        Ok(())
    }

    /// Syncs what the last second appended; the run calls it once its probes are done.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| SensitivityError::table(&self.path, format!("cannot write: {e}")))?;
        self.synced = Instant::now();
        Ok(())
    }

    /// Every probe recorded so far, with the run's description.
    pub fn contents(path: &Path) -> Result<(RunMeta, Vec<ProbeRow>)> {
        let (meta, rows, _) = read(path)?;
        Ok((meta, rows))
    }
}

/// The journal at `path` (created if missing, never truncated here) opened for appending, with
/// the exclusive lock that keeps every other run off it until this one closes it.
fn open_locked(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| SensitivityError::table(path, format!("cannot open: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(SensitivityError::table(
            path,
            "is held by another sensitivity run on the same output: wait for it to end, or choose another --out",
        )),
        Err(TryLockError::Error(e)) => Err(SensitivityError::table(path, format!("cannot lock: {e}"))),
    }
}

/// A journal of an older format cannot be resumed: the run starts over.
fn start_over(error: RecordError) -> RecordError {
    match error {
        RecordError::OlderFormat { rerun: _, path, what, found, expected } => {
            RecordError::OlderFormat { path, what, found, expected, rerun: "bitsearch sensitivity … --overwrite" }
        }
        other => other,
    }
}

/// The header, the complete rows, and the byte length they span (a torn last line excluded).
fn read(path: &Path) -> Result<(RunMeta, Vec<ProbeRow>, u64)> {
    let file = File::open(path).map_err(|e| SensitivityError::table(path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut offset = 0u64;
    let mut meta = None;
    let mut rows = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| SensitivityError::table(path, format!("cannot read: {e}")))?;
        number += 1;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let bad = |e: serde_json::Error| SensitivityError::table(path, format!("line {number} is not readable: {e}"));
        match meta {
            None => meta = Some(RunMeta::from_json(path, &line).map_err(start_over)?),
            Some(_) => rows.push(serde_json::from_str::<ProbeRow>(&line).map_err(bad)?),
        }
        offset += n as u64;
    }
    let meta = meta.ok_or_else(|| SensitivityError::table(path, "is empty: no run description on its first line"))?;
    Ok((meta, rows, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitsearch_records::Shard;

    fn meta(shard: Shard) -> RunMeta {
        RunMeta { shard, ..bitsearch_fixtures::sensitivity_table(0, 1, &[4], 1).meta }
    }

    fn row(probe: u64, sqnr_db: f64) -> ProbeRow {
        ProbeRow { probe, sqnr_db, ..bitsearch_fixtures::sensitivity_table(0, 1, &[4], 1).rows[0].clone() }
    }

    #[test]
    fn resume_keeps_complete_lines_and_cuts_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.journal.jsonl");
        let mut journal = Journal::create(&path, &meta(Shard::WHOLE)).unwrap();
        journal.append(&row(0, 10.0)).unwrap();
        journal.append(&row(1, f64::INFINITY)).unwrap();
        drop(journal);
        // A kill in the middle of a write.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"probe\":2,\"lay").unwrap();
        drop(file);

        let (mut journal, rows) = Journal::resume(&path, &meta(Shard::WHOLE)).unwrap();
        assert_eq!(rows, vec![row(0, 10.0), row(1, f64::INFINITY)]);
        journal.append(&row(2, 5.0)).unwrap();
        let (_, rows) = Journal::contents(&path).unwrap();
        assert_eq!(rows.iter().map(|r| r.probe).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn a_second_run_on_a_held_journal_stops_and_leaves_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.journal.jsonl");
        let mut journal = Journal::create(&path, &meta(Shard::WHOLE)).unwrap();
        journal.append(&row(0, 10.0)).unwrap();
        for second in [
            Journal::resume(&path, &meta(Shard::WHOLE)).map(|_| ()),
            Journal::create(&path, &meta(Shard::WHOLE)).map(|_| ()),
        ] {
            assert!(second.unwrap_err().to_string().contains("held by another sensitivity run"));
        }
        journal.append(&row(1, 9.0)).unwrap();
        drop(journal);
        let (mut resumed, rows) = Journal::resume(&path, &meta(Shard::WHOLE)).unwrap();
        assert_eq!(rows.len(), 2, "the refused runs truncated nothing");
        resumed.append(&row(2, 8.0)).unwrap();
        assert_eq!(Journal::contents(&path).unwrap().1.len(), 3);
    }

    #[test]
    fn resume_refuses_another_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.journal.jsonl");
        Journal::create(&path, &meta(Shard::WHOLE)).unwrap();
        let message = Journal::resume(&path, &meta(Shard { index: 1, count: 2 })).unwrap_err().to_string();
        assert!(message.contains("'shard' differs"), "{message}");
    }
}
