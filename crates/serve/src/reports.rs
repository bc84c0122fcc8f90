//! The HTML report of a registered table and what was answered from it (its plans and newest
//! frontier), built by `bitsearch report`'s library into the data folder and served as static
//! files. A report is named by what it was built from, so it never changes once built: it is
//! built in a temporary folder and renamed into place, and a newer report of the same table
//! replaces the older.

use crate::plans::FrontierAnswer;
use bitsearch_reports::{ReportInputs, write_report};
use std::path::{Path, PathBuf};

/// Where reports are built, under the data folder.
pub const FOLDER: &str = "reports";
const BUILDING: &str = ".build";

/// What one report is made of.
pub struct Source {
    pub table: String,
    pub table_path: PathBuf,
    /// Plan ids and YAML, oldest first.
    pub plans: Vec<(String, String)>,
    pub frontier: Option<FrontierAnswer>,
}

impl Source {
    /// The report's folder name: the table's and a hash of the plans' and frontier's ids.
    pub fn name(&self) -> String {
        let ids: Vec<&str> =
            self.plans.iter().map(|(id, _)| id.as_str()).chain(self.frontier.iter().map(|f| f.id.as_str())).collect();
        let of = bitsearch_types::sha256_hex(ids.join("\n").as_bytes());
        format!("{}-{}", &self.table[..16], &of[..16])
    }
}

/// Removes reports whose build was cut short.
pub fn tidy(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    for entry in std::fs::read_dir(root)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(BUILDING) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Builds `source`'s report under `root` unless it is there; returns its folder name.
pub fn build(root: &Path, source: &Source) -> Result<String, String> {
    let name = source.name();
    let done = root.join(&name);
    if done.is_dir() {
        return Ok(name);
    }
    let folder = |e: std::io::Error| format!("{}: {e}", root.display());
    let scratch = tempfile::Builder::new().prefix(BUILDING).tempdir_in(root).map_err(folder)?;
    let out = scratch.path();
    let plans_dir = out.join("plans");
    std::fs::create_dir_all(&plans_dir).map_err(folder)?;
    let mut plans = Vec::new();
    for (id, yaml) in &source.plans {
        let path = plans_dir.join(format!("{}.yaml", &id[..16]));
        std::fs::write(&path, yaml).map_err(folder)?;
        plans.push(path);
    }
    let frontier = match &source.frontier {
        Some(answer) => {
            let path = out.join("frontier.parquet");
            bitsearch_records::write_frontier(&answer.points, &path).map_err(|e| e.to_string())?;
            Some(path)
        }
        None => None,
    };
    let inputs = ReportInputs {
        sensitivity: Some(source.table_path.clone()),
        plans,
        frontier,
        out: out.to_path_buf(),
        ..Default::default()
    };
    write_report(&inputs).map_err(|e| e.to_string())?;
    let built = scratch.keep();
    if let Err(e) = std::fs::rename(&built, &done) {
        let _ = std::fs::remove_dir_all(&built);
        // Another request built the same report first.
        if !done.is_dir() {
            return Err(folder(e));
        }
    }
    let older = format!("{}-", &source.table[..16]);
    for entry in std::fs::read_dir(root).map_err(folder)?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&older) && file != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(name)
}
