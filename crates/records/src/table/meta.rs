//! What a table was measured on ([`RunMeta`]), the plan its probes may start from
//! ([`BasePoint`]), and the merge of the tables of one run's shards.

use super::{ProbeRow, SensitivityTable, Shard, TABLE_FORMAT, weight_columns};
use crate::check::{self, Checked, invalid};
use crate::error::{RecordError, Result, check_format};
use crate::run_config::RunConfig;
use bitsearch_types::{Component, FLOAT_BITS, QuantizerSpec, WeightFormat};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Most probes one run may hold: every layer of the largest models at every form and step
/// group, many times over.
const MAX_PROBES: u64 = 1 << 24;

/// What a table was measured on; equal for every shard of one run but for `shard`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// [`TABLE_FORMAT`] of the writer.
    pub format: u32,
    pub tool_version: String,
    /// The model as measured: an absolute path, so any stage finds it from any folder.
    pub model: String,
    /// sha256 of the denoiser file.
    pub model_sha256: String,
    /// `denoiser` (one ONNX file) or `diffusers` (a pipeline folder).
    pub pipeline: String,
    pub sampler: String,
    pub steps: usize,
    /// `[first, last]` step of each group.
    pub step_groups: Vec<[usize; 2]>,
    /// One per item: the condition or prompt, and the seed.
    pub items: Vec<String>,
    pub device: String,
    /// Which metric drives which layers, in words.
    pub metric_groups: String,
    pub probes_total: usize,
    pub shard: Shard,
    /// The quantizer the probes used, which a plan's apply stage must reuse.
    pub quantizer: QuantizerSpec,
    /// The whole configuration of the run as the sensitivity stage read it: its generation
    /// settings typed, the rest kept to compare runs (resume, merge); other stages use the typed
    /// fields above.
    pub config: RunConfig,
    /// The operating point the probes started from (`sensitivity --base`); absent: every other
    /// layer in float.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BasePoint>,
}

/// A plan every probe of a table starts from: each layer the plan quantizes holds its planned
/// weight, and a probe changes one layer from there (to another weight form, or from float to
/// one). A layer's probe at its own planned form measures the base point itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasePoint {
    /// The plan file as given.
    pub plan: String,
    pub plan_sha256: String,
    /// The layers the plan quantizes and their weight forms (the others stay in float).
    pub layers: Vec<BaseLayer>,
}

/// One quantized layer of a [`BasePoint`], its weight form in the table's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseLayer {
    pub component: Component,
    pub name: String,
    #[serde(flatten, with = "weight_columns")]
    pub weight: WeightFormat,
}

impl BaseLayer {
    pub fn new(component: Component, name: &str, weight: WeightFormat) -> Self {
        Self { component, name: name.to_string(), weight }
    }

    /// Whether `row` probes this layer at this form, with float activations.
    pub fn matches(&self, row: &ProbeRow) -> bool {
        self.component == row.layer.component
            && self.name == row.layer.name
            && self.weight == row.weight
            && row.a_bits == FLOAT_BITS
    }
}

impl BasePoint {
    /// Whether `row` probes its layer at the base's own form: it measures the base point.
    pub fn is_base(&self, row: &ProbeRow) -> bool {
        self.layers.iter().any(|l| l.matches(row))
    }

    /// Whether the base quantizes the layer `component/name`.
    pub fn quantizes(&self, component: Component, name: &str) -> bool {
        self.layers.iter().any(|l| l.component == component && l.name == name)
    }
}

impl RunMeta {
    /// Whether the items ended as decoded images (a pipeline folder, through its VAE decoder)
    /// rather than as the denoiser's own output.
    pub fn decodes_images(&self) -> bool {
        self.pipeline == "diffusers"
    }

    /// Reads the JSON run description of the table (or journal) at `path`; a description
    /// from an older format is refused with the command that writes the current one.
    pub fn from_json(path: &Path, json: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| RecordError::file(path, format!("run metadata is not JSON: {e}")))?;
        let found = value.get("format").and_then(serde_json::Value::as_u64).unwrap_or(1);
        check_format(path, "sensitivity table", found, TABLE_FORMAT, "bitsearch sensitivity")?;
        serde_json::from_value(value).map_err(|e| RecordError::file(path, format!("run metadata is not readable: {e}")))
    }

    /// The run's schedule, shard and quantizer against their ranges.
    pub(crate) fn validate(&self) -> Checked {
        check::step_groups("step_groups", &self.step_groups, self.steps)?;
        if self.probes_total == 0 || self.probes_total as u64 > MAX_PROBES {
            return Err(invalid("probes_total", format!("{} is outside 1..={MAX_PROBES}", self.probes_total)));
        }
        if self.shard.count == 0 || self.shard.index >= self.shard.count {
            return Err(invalid(
                "shard",
                format!("{}/{} is not a shard of the run", self.shard.index, self.shard.count),
            ));
        }
        self.quantizer.validate().map_err(|(field, message)| invalid(field, message))
    }
}

/// Joins the tables of the shards of one run into the table of the whole run, rows in probe
/// order. The shards must describe the same run and not overlap.
pub fn merge(tables: Vec<(std::path::PathBuf, SensitivityTable)>) -> Result<SensitivityTable> {
    let Some((first_path, first)) = tables.first().cloned() else {
        return Err(RecordError::field("merge", "needs at least one table"));
    };
    let mut meta = first.meta.clone();
    meta.shard = Shard::WHOLE;
    let mut rows = Vec::new();
    let mut absent: std::collections::BTreeSet<usize> = (0..first.meta.shard.count).collect();
    for (path, table) in tables {
        absent.remove(&table.meta.shard.index);
        let mut other = table.meta.clone();
        other.shard = Shard::WHOLE;
        if let Some(field) = first_difference(&meta, &other) {
            return Err(RecordError::file(
                &path,
                format!("comes from a different run than {}: its '{field}' differs", first_path.display()),
            ));
        }
        rows.extend(table.rows);
    }
    rows.sort_by_key(|r| r.probe);
    if let Some(pair) = rows.windows(2).find(|w| w[0].probe == w[1].probe) {
        return Err(RecordError::field(
            "merge",
            format!("probe {} (layer '{}') is in more than one table", pair[0].probe, pair[0].layer.id()),
        ));
    }
    if rows.len() < meta.probes_total {
        let shards = match absent.len() {
            0 => "every shard is there, so some are unfinished".to_string(),
            _ => format!(
                "shard(s) {} of {} absent",
                absent.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
                first.meta.shard.count
            ),
        };
        log::warn!("merged {} of the run's {} probes: {shards}", rows.len(), meta.probes_total);
    }
    Ok(SensitivityTable { meta, rows })
}

/// The first top-level field where two run descriptions differ.
pub fn first_difference(a: &RunMeta, b: &RunMeta) -> Option<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Some("metadata".into());
    };
    a.iter().find(|(k, v)| b.get(*k) != Some(v)).map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{meta, row};

    #[test]
    fn merge_orders_rows_and_refuses_other_runs_and_overlaps() {
        let a = SensitivityTable { meta: meta(Shard { index: 0, count: 2 }), rows: vec![row(2, 1.0), row(0, 3.0)] };
        let b = SensitivityTable { meta: meta(Shard { index: 1, count: 2 }), rows: vec![row(1, 2.0)] };
        assert_eq!((a.missing_probes(), b.missing_probes()), (1, 2), "each shard lacks the other's probes");
        let merged = merge(vec![("a".into(), a.clone()), ("b".into(), b.clone())]).unwrap();
        assert_eq!(merged.meta, meta(Shard::WHOLE));
        assert_eq!(merged.missing_probes(), 0);
        assert_eq!(merged.rows.iter().map(|r| r.probe).collect::<Vec<_>>(), vec![0, 1, 2]);

        let mut other = b.clone();
        other.meta.steps = 2;
        let message = merge(vec![("a".into(), a.clone()), ("b".into(), other)]).unwrap_err().to_string();
        assert!(message.contains("'steps' differs"), "{message}");
        let message = merge(vec![("a".into(), a.clone()), ("a2".into(), a)]).unwrap_err().to_string();
        assert!(message.contains("more than one table"), "{message}");
    }
}
