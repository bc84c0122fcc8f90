//! Errors of reading and writing stage records; each names the file.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file cannot be read or written, or its contents are not what was expected.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A record from an earlier format: says which command writes the current one.
    #[error("{}: written by an older bitsearch ({what} format {found}, this one reads {expected}); rerun `{rerun}`", path.display())]
    OlderFormat { path: PathBuf, what: &'static str, found: u32, expected: u32, rerun: &'static str },
    /// A value of a record is wrong; names the field.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

impl RecordError {
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::File { path: path.to_path_buf(), message: message.into() }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field { field: field.into(), message: message.into() }
    }
}

/// Checks the format version `found` in the record at `path` against the `expected` one this
/// bitsearch writes: an older record names the command (`rerun`) that writes it anew, a newer
/// one asks for a newer bitsearch.
pub(crate) fn check_format(
    path: &Path,
    what: &'static str,
    found: u64,
    expected: u32,
    rerun: &'static str,
) -> Result<()> {
    match found.cmp(&u64::from(expected)) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => {
            Err(RecordError::OlderFormat { path: path.to_path_buf(), what, found: found as u32, expected, rerun })
        }
        std::cmp::Ordering::Greater => Err(RecordError::file(
            path,
            format!(
                "written by a newer bitsearch ({what} format {found}, this one reads {expected}); update bitsearch"
            ),
        )),
    }
}

pub type Result<T, E = RecordError> = std::result::Result<T, E>;

/// How a YAML record names itself and numbers its format.
pub(crate) struct YamlFormat {
    /// What the text is not, when it does not decode ("bitsearch plan").
    pub noun: &'static str,
    /// The record in format messages ("plan").
    pub what: &'static str,
    /// The top-level field holding the format number.
    pub field: &'static str,
    pub expected: u32,
    /// The command that writes the current format.
    pub rerun: &'static str,
}

/// Decodes the YAML `text` of the file at `path` as a `T` once its format number is the one this
/// bitsearch reads; the record's own checks are the caller's.
pub(crate) fn decode_yaml<T: serde::de::DeserializeOwned>(text: &str, path: &Path, format: &YamlFormat) -> Result<T> {
    let error = |message: String| RecordError::file(path, message);
    let value: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| error(format!("not a {}: {e}", format.noun)))?;
    let found = value
        .get(format.field)
        .and_then(serde_norway::Value::as_u64)
        .ok_or_else(|| error(format!("not a {}: no '{}' format field", format.noun, format.field)))?;
    check_format(path, format.what, found, format.expected, format.rerun)?;
    serde_norway::from_value(value).map_err(|e| error(format!("not a {}: {e}", format.noun)))
}

/// The text of the record file at `path`.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| RecordError::file(path, format!("cannot read: {e}")))
}

/// Writes `record` as YAML to `path`, atomically.
pub(crate) fn write_yaml<T: serde::Serialize>(path: &Path, record: &T) -> Result<()> {
    let yaml = serde_norway::to_string(record).map_err(|e| RecordError::file(path, e.to_string()))?;
    crate::write_file(path, yaml.as_bytes())
}
