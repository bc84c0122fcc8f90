//! The catalogue: registered tables (content-addressed files under the data folder, one row
//! each in SQLite) and the plans and frontiers answered from them. A table's file is written under a
//! temporary name and renamed before its row is committed, so a kill at any moment leaves
//! either the whole registration or none of it (a file without a row is written again by the
//! next registration of the same bytes). Another SQL database could hold the same two tables:
//! the statements below are plain SQL, and only `open` is SQLite's.

use crate::limits::{self, Limits};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("not a sensitivity table: {0}")]
    NotATable(String),
    #[error(
        "a partial table: {missing} of the run's {total} probes are missing (a shard's table, or a merge without \
         every shard), so its plans would leave their layers in float; merge every shard first"
    )]
    Partial { missing: usize, total: usize },
}

/// A registered table, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TableEntry {
    /// sha256 of the file's bytes: the table's id.
    pub id: String,
    pub model: String,
    pub layers: usize,
    pub rows: usize,
    pub step_groups: usize,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct Catalogue {
    db: Connection,
    tables: PathBuf,
}

/// Where the catalogue in `data` keeps its table files.
pub fn tables_folder(data: &Path) -> PathBuf {
    data.join("tables")
}

impl Catalogue {
    /// Opens (or creates) the catalogue in `data`; leftovers of registrations cut short are
    /// removed.
    pub fn open(data: &Path) -> Result<Self, CatalogueError> {
        let tables = tables_folder(data);
        let file_error =
            |path: &Path, e: std::io::Error| CatalogueError::File { path: path.into(), message: e.to_string() };
        std::fs::create_dir_all(&tables).map_err(|e| file_error(&tables, e))?;
        for entry in std::fs::read_dir(&tables).map_err(|e| file_error(&tables, e))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".upload") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let db = Connection::open(data.join("catalogue.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        // 256 KiB of pages: a lookup by key touches few, the system caches the file, and the
        // service's memory should not grow with what it has stored.
        db.pragma_update(None, "cache_size", -256)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS tables (
                id TEXT PRIMARY KEY, model TEXT NOT NULL, layers INTEGER NOT NULL, rows INTEGER NOT NULL,
                step_groups INTEGER NOT NULL, bytes INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS plans (
                id TEXT PRIMARY KEY, request TEXT NOT NULL UNIQUE, table_id TEXT NOT NULL REFERENCES tables(id),
                frontier TEXT, answer TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS frontiers (
                id TEXT PRIMARY KEY, request TEXT NOT NULL UNIQUE, table_id TEXT NOT NULL REFERENCES tables(id),
                answer TEXT NOT NULL);",
        )?;
        Ok(Self { db, tables })
    }

    /// Registers a table [`Upload::check`] read, or finds it registered already.
    pub fn add(&mut self, upload: Upload) -> Result<TableEntry, CatalogueError> {
        let Upload { entry, file } = upload;
        if let Some(registered) = self.table(&entry.id)? {
            return Ok(registered);
        }
        let path = self.path(&entry.id);
        file.persist(&path).map_err(|e| CatalogueError::File { path, message: e.error.to_string() })?;
        self.db.execute(
            "INSERT INTO tables (id, model, layers, rows, step_groups, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![entry.id, entry.model, entry.layers, entry.rows, entry.step_groups, entry.bytes],
        )?;
        Ok(entry)
    }

    pub fn table(&self, id: &str) -> Result<Option<TableEntry>, CatalogueError> {
        let mut statement =
            self.db.prepare_cached("SELECT id, model, layers, rows, step_groups, bytes FROM tables WHERE id = ?1")?;
        Ok(statement.query_row([id], entry).optional()?)
    }

    pub fn tables(&self) -> Result<Vec<TableEntry>, CatalogueError> {
        let mut statement =
            self.db.prepare_cached("SELECT id, model, layers, rows, step_groups, bytes FROM tables ORDER BY id")?;
        let rows = statement.query_map([], entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Where table `id`'s file is: named by its hash, never by anything a client sent.
    pub fn path(&self, id: &str) -> PathBuf {
        self.tables.join(format!("{id}.parquet"))
    }

    /// The plan stored for a request (its canonical JSON): its id and YAML.
    pub fn cached(&self, request: &str) -> Result<Option<(String, String)>, CatalogueError> {
        let mut statement = self.db.prepare_cached("SELECT id, answer FROM plans WHERE request = ?1")?;
        Ok(statement.query_row([request], |row| Ok((row.get(0)?, row.get(1)?))).optional()?)
    }

    /// Plan `id`'s YAML.
    pub fn plan(&self, id: &str) -> Result<Option<String>, CatalogueError> {
        let mut statement = self.db.prepare_cached("SELECT answer FROM plans WHERE id = ?1")?;
        Ok(statement.query_row([id], |row| row.get(0)).optional()?)
    }

    /// Table `table`'s plans asked for one at a time (not points of a frontier), oldest first:
    /// ids and YAML.
    pub fn plans_of(&self, table: &str) -> Result<Vec<(String, String)>, CatalogueError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT id, answer FROM plans WHERE table_id = ?1 AND frontier IS NULL ORDER BY rowid")?;
        let rows = statement.query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a plan answered for `request`; returns its id.
    pub fn store(&self, request: &str, table: &str, answer: &str) -> Result<String, CatalogueError> {
        let id = id(request);
        self.db.execute(
            "INSERT OR REPLACE INTO plans (id, request, table_id, answer) VALUES (?1, ?2, ?3, ?4)",
            params![id, request, table, answer],
        )?;
        Ok(id)
    }

    /// The frontier stored for a request: its JSON.
    pub fn frontier(&self, request: &str) -> Result<Option<String>, CatalogueError> {
        let mut statement = self.db.prepare_cached("SELECT answer FROM frontiers WHERE request = ?1")?;
        Ok(statement.query_row([request], |row| row.get(0)).optional()?)
    }

    /// Table `table`'s newest frontier: its id and JSON.
    pub fn latest_frontier(&self, table: &str) -> Result<Option<(String, String)>, CatalogueError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT id, answer FROM frontiers WHERE table_id = ?1 ORDER BY rowid DESC LIMIT 1")?;
        Ok(statement.query_row([table], |row| Ok((row.get(0)?, row.get(1)?))).optional()?)
    }

    /// Stores a frontier and its points' plans (requests and YAML) in one transaction.
    pub fn store_frontier(
        &mut self,
        request: &str,
        table: &str,
        answer: &str,
        plans: &[(String, String)],
    ) -> Result<(), CatalogueError> {
        let transaction = self.db.transaction()?;
        transaction.execute(
            "INSERT OR REPLACE INTO frontiers (id, request, table_id, answer) VALUES (?1, ?2, ?3, ?4)",
            params![id(request), request, table, answer],
        )?;
        for (plan_request, plan) in plans {
            transaction.execute(
                "INSERT OR REPLACE INTO plans (id, request, table_id, frontier, answer) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id(plan_request), plan_request, table, id(request), plan],
            )?;
        }
        Ok(transaction.commit()?)
    }
}

/// A table uploaded, checked and written beside the catalogue's tables, not yet registered.
#[derive(Debug)]
pub struct Upload {
    entry: TableEntry,
    file: tempfile::NamedTempFile,
}

impl Upload {
    /// Reads and checks the table in `bytes` (id `id`, the hash of `bytes`) completely, refusing
    /// past `limits` before decoding what they bound, and writes it under a temporary name in
    /// `tables`. Needs no lock: the catalogue is not touched.
    pub fn check(tables: &Path, id: String, bytes: &[u8], limits: &Limits) -> Result<Self, CatalogueError> {
        let name = Path::new("body");
        let admit = |found: &bitsearch_records::Footprint| {
            limits::at_most("rows", found.rows, "--max-table-rows", limits.table_rows)?;
            // In KiB, as the flag takes it (the limit is a whole number of them).
            let (asked, most) = (found.meta_bytes.div_ceil(1024), limits.table_meta_bytes / 1024);
            limits::at_most("run description (KiB)", asked, "--max-table-meta-kb", most)
        };
        let table = bitsearch_records::SensitivityTable::from_bytes_within(bytes, name, admit)
            .map_err(|e| CatalogueError::NotATable(e.to_string()))?;
        let groups = table.meta.step_groups.len();
        limits::at_most("step groups", groups, "--max-step-groups", limits.step_groups)
            .map_err(|message| CatalogueError::NotATable(format!("body: {message}")))?;
        let missing = table.missing_probes();
        if missing > 0 {
            return Err(CatalogueError::Partial { missing, total: table.meta.probes_total });
        }
        let layers: std::collections::BTreeSet<&str> = table.rows.iter().map(|r| r.layer.name.as_str()).collect();
        let entry = TableEntry {
            id,
            model: table.meta.model.clone(),
            layers: layers.len(),
            rows: table.rows.len(),
            step_groups: groups,
            bytes: bytes.len(),
        };
        let file_error = |e: std::io::Error| CatalogueError::File { path: tables.into(), message: e.to_string() };
        let mut file = tempfile::Builder::new().prefix(".upload").tempfile_in(tables).map_err(file_error)?;
        std::io::Write::write_all(&mut file, bytes).map_err(file_error)?;
        file.as_file().sync_all().map_err(file_error)?;
        Ok(Self { entry, file })
    }
}

/// The id of a plan or frontier: the hash of its request's canonical JSON.
pub fn id(request: &str) -> String {
    bitsearch_types::sha256_hex(request.as_bytes())
}

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<TableEntry> {
    Ok(TableEntry {
        id: row.get(0)?,
        model: row.get(1)?,
        layers: row.get(2)?,
        rows: row.get(3)?,
        step_groups: row.get(4)?,
        bytes: row.get(5)?,
    })
}
