//! The catalogue: registered tables (content-addressed files under the data folder, one row
//! each in SQLite) and the plans and frontiers answered from them. A table's file is written under a
//! temporary name and renamed before its row is committed, so a kill at any moment leaves
//! either the whole registration or none of it (a file without a row is written again by the
//! next registration of the same bytes). Another SQL database could hold the same two tables:
//! the statements below are plain SQL, and only `open` is SQLite's.

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

impl Catalogue {
    /// Opens (or creates) the catalogue in `data`; leftovers of registrations cut short are
    /// removed.
    pub fn open(data: &Path) -> Result<Self, CatalogueError> {
        let tables = data.join("tables");
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

    /// Registers the table in `bytes` (the Parquet file `sensitivity` writes), or finds it.
    pub fn register(&mut self, bytes: &[u8]) -> Result<TableEntry, CatalogueError> {
        let id = bitsearch_types::sha256_hex(bytes);
        if let Some(entry) = self.table(&id)? {
            return Ok(entry);
        }
        let path = self.path(&id);
        let file_error = |e: std::io::Error| CatalogueError::File { path: path.clone(), message: e.to_string() };
        let mut upload = tempfile::Builder::new().prefix(".upload").tempfile_in(&self.tables).map_err(file_error)?;
        std::io::Write::write_all(&mut upload, bytes).map_err(file_error)?;
        upload.as_file().sync_all().map_err(file_error)?;
        let table = bitsearch_records::SensitivityTable::read(upload.path()).map_err(|e| {
            CatalogueError::NotATable(e.to_string().replace(&upload.path().display().to_string(), "body"))
        })?;
        let missing = table.missing_probes();
        if missing > 0 {
            return Err(CatalogueError::Partial { missing, total: table.meta.probes_total });
        }
        upload.persist(&path).map_err(|e| file_error(e.error))?;
        let layers: std::collections::BTreeSet<&str> = table.rows.iter().map(|r| r.layer.name.as_str()).collect();
        let entry = TableEntry {
            id,
            model: table.meta.model.clone(),
            layers: layers.len(),
            rows: table.rows.len(),
            step_groups: table.meta.step_groups.len(),
            bytes: bytes.len(),
        };
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
