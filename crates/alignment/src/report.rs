//! The record `bitsearch align --json` writes: what was scored, how it was generated, and one
//! row of accuracies per weight precision. Versioned by `format` like bitsearch's other records.

use crate::error::AlignmentError;
use crate::score::Scorer;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of [`AlignReport`]'s layout; a reader refuses any other. 1: the first versioned
/// layout (the unversioned reports before it lack the field).
pub const ALIGN_REPORT_FORMAT: u32 = 1;

/// Alignment scores of one folder (or of images given to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignReport {
    pub format: u32,
    pub model: String,
    pub prompts: usize,
    /// Images per prompt.
    pub seeds: usize,
    /// The scored .npy file, when the images were given rather than generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    /// Absent when the images were given.
    #[serde(flatten)]
    pub generation: Option<AlignGeneration>,
    pub rows: Vec<AlignRow>,
}

/// How bitsearch generated the images it scored, and the text encoder's BOS row magnitude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignGeneration {
    pub steps: usize,
    pub guidance: f32,
    pub sampler: String,
    pub bos_norm: f64,
    pub other_tokens_median_norm: f64,
    pub other_tokens_max_norm: f64,
}

/// One precision and what it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignRow {
    /// `fp32`, `W8`, … or `images`.
    pub weights: String,
    /// Attribute name → accuracy over the prompts' objects.
    pub attributes: Vec<(String, f64)>,
    pub position: f64,
    pub caption: f64,
    /// PSNR of the images against the full-precision ones (None for full precision).
    pub psnr_db: Option<f64>,
}

impl AlignRow {
    /// The row of `scorer`'s counts, its attributes named in schema order.
    pub fn new(weights: &str, names: &[String], scorer: &Scorer, psnr_db: Option<f64>) -> Self {
        Self {
            weights: weights.to_string(),
            attributes: names.iter().cloned().zip(scorer.attributes.iter().map(|a| a.value())).collect(),
            position: scorer.position.value(),
            caption: scorer.caption.value(),
            psnr_db,
        }
    }
}

impl AlignReport {
    /// Pretty JSON, as written to disk.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// A report from disk, refused when it is not of [`ALIGN_REPORT_FORMAT`].
    pub fn read(path: &Path) -> Result<Self, AlignmentError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| AlignmentError::file(path, format!("cannot read: {e}")))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| AlignmentError::file(path, format!("not JSON: {e}")))?;
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(f) if f == u64::from(ALIGN_REPORT_FORMAT) => {}
            found => {
                let found = found.map_or("no format".to_string(), |f| format!("format {f}"));
                let message = format!(
                    "an alignment report of {found}, expected format {ALIGN_REPORT_FORMAT}: rerun `bitsearch align --json`"
                );
                return Err(AlignmentError::file(path, message));
            }
        }
        serde_json::from_value(value).map_err(|e| AlignmentError::file(path, format!("not an alignment report: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(generation: Option<AlignGeneration>) -> AlignReport {
        let row = AlignRow {
            weights: "fp32".into(),
            attributes: vec![("shape".into(), 0.75)],
            position: 1.0,
            caption: 0.5,
            psnr_db: None,
        };
        AlignReport {
            format: ALIGN_REPORT_FORMAT,
            model: "m".into(),
            prompts: 2,
            seeds: 2,
            images: None,
            generation,
            rows: vec![row],
        }
    }

    #[test]
    fn a_report_reads_back_and_other_formats_are_refused() {
        let path = std::env::temp_dir().join(format!("bitsearch-align-report-{}.json", std::process::id()));
        let generation = AlignGeneration {
            steps: 20,
            guidance: 4.0,
            sampler: "ddim".into(),
            bos_norm: 30.0,
            other_tokens_median_norm: 1.0,
            other_tokens_max_norm: 2.0,
        };
        for r in [report(None), report(Some(generation))] {
            std::fs::write(&path, r.to_json().unwrap()).unwrap();
            assert_eq!(AlignReport::read(&path).unwrap(), r);
        }
        let json = report(None).to_json().unwrap();
        assert!(json.starts_with("{\n  \"format\": 1,"), "{json}");
        std::fs::write(&path, json.replace("\"format\": 1", "\"format\": 2")).unwrap();
        assert!(AlignReport::read(&path).unwrap_err().to_string().contains("format 2, expected format 1"));
        std::fs::write(&path, json.replace("\"format\": 1,", "")).unwrap();
        assert!(AlignReport::read(&path).unwrap_err().to_string().contains("no format"));
        std::fs::remove_file(&path).unwrap();
    }
}
