//! The sensitivity table: one row per probe, written as Parquet with the run's description in
//! the file's key-value metadata (key [`META_KEY`], JSON). The solver and the report read it
//! back through [`SensitivityTable::read`].

use crate::error::{RecordError, Result, check_format};
use bitsearch_types::{Component, FLOAT_BITS, LayerInfo, MetricGroup, QuantizerSpec, Role, WeightForm};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Parquet key-value metadata key holding the [`RunMeta`] JSON.
pub const META_KEY: &str = "bitsearch.sensitivity";
/// Format of the table this bitsearch writes. 1 (no `format` field): layers without their
/// component, the run's config embedded in the engine's own types. 2: no outlier-split rows.
/// 3: no group-size or float8 rows. 4: 2-bit codes costed in int4 containers (read with their
/// bytes re-costed as int2, four codes per byte).
pub const TABLE_FORMAT: u32 = 5;

/// One probe's measurement against the full-precision run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Position in the full probe list (stable across shards and resumes).
    pub probe: u64,
    #[serde(flatten)]
    pub layer: LayerInfo,
    /// Weight bits; [`FLOAT_BITS`] for layers without weights.
    pub w_bits: u32,
    /// MPQ-DM's outlier split at a mean of `w_bits`: a tenth of the output channels (highest
    /// weight kurtosis) one bit wider, as many (lowest) one bit narrower.
    #[serde(default)]
    pub w_split: bool,
    /// Values per weight scale group; 0: the run's quantizer granularity.
    #[serde(default)]
    pub w_group: u32,
    /// E4M3 codes with per-channel scales (at 8 bits).
    #[serde(default)]
    pub w_fp8: bool,
    /// Input-activation bits; [`FLOAT_BITS`] when activations stay in float.
    pub a_bits: u32,
    pub step_group: u32,
    /// First and last (inclusive) denoising step of the group.
    pub step_first: u32,
    pub step_last: u32,
    /// Bytes of the quantized weight: codes plus the quantizer's scales.
    pub weight_bytes: u64,
    /// SQNR of the denoiser output over every step, dB (−∞ when non-finite).
    #[serde(with = "float_text")]
    pub sqnr_db: f64,
    /// Mean SSIM of the final images (−1 when non-finite).
    #[serde(with = "float_text")]
    pub ssim: f64,
    #[serde(with = "float_text")]
    pub mse: f64,
    #[serde(with = "float_text")]
    pub psnr_db: f64,
    /// NaN or infinite values in the denoiser outputs and final images.
    pub nonfinite: u64,
}

impl ProbeRow {
    /// Split, grouped or float8: a row beside the plain one of the same bits.
    pub fn variant(&self) -> bool {
        self.w_split || self.w_group > 0 || self.w_fp8
    }
}

/// Which part of the probe list a process computes: windows `index`, `index + count`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl FromStr for Shard {
    type Err = String;

    /// `i/N` with i in 0..N.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parse = || -> Option<Shard> {
            let (i, n) = s.split_once('/')?;
            Some(Shard { index: i.trim().parse().ok()?, count: n.trim().parse().ok()? })
        };
        match parse() {
            Some(shard) if shard.count > 0 && shard.index < shard.count => Ok(shard),
            _ => Err(format!("'{s}' is not a shard: expected i/N with 0 <= i < N, e.g. 0/4")),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What `--shard` asks for: a fixed part `i/N`, or `auto` (`auto/N`), the index (and count)
/// taken from the cluster scheduler that started the process: a Slurm job array or a
/// Kubernetes Indexed Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    /// `count` given as `auto/N`; Slurm states it itself, a Kubernetes Indexed Job does not.
    Auto {
        count: Option<usize>,
    },
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let Some(rest) = s.trim().strip_prefix("auto") else { return s.parse().map(ShardSpec::Fixed) };
        match rest.strip_prefix('/').map(|n| n.trim().parse::<usize>()) {
            None if rest.is_empty() => Ok(ShardSpec::Auto { count: None }),
            Some(Ok(count)) if count > 0 => Ok(ShardSpec::Auto { count: Some(count) }),
            _ => Err(format!("'{s}' is not a shard: expected i/N, auto or auto/N (N at least 1)")),
        }
    }
}

impl ShardSpec {
    /// The shard, `auto` read from the environment through `var` (a variable's value, None
    /// where it is unset): a Slurm array task's index is `(SLURM_ARRAY_TASK_ID − _MIN) / _STEP`
    /// of `SLURM_ARRAY_TASK_COUNT` (or as many as `_MIN` to `_MAX` hold), a Kubernetes
    /// Indexed Job's `JOB_COMPLETION_INDEX` of the `N` given.
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> std::result::Result<Shard, String> {
        let count = match self {
            ShardSpec::Fixed(shard) => return Ok(shard),
            ShardSpec::Auto { count } => count,
        };
        let number = |name: &str| -> std::result::Result<Option<usize>, String> {
            var(name)
                .map(|v| v.trim().parse().map_err(|_| format!("{name}={v} is not a non-negative integer")))
                .transpose()
        };
        let shard = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let tasks = match (number("SLURM_ARRAY_TASK_COUNT")?, number("SLURM_ARRAY_TASK_MAX")?) {
                (Some(n), _) => n,
                (None, Some(max)) if max >= min => (max - min) / step + 1,
                _ => return Err("--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor a SLURM_ARRAY_TASK_MAX at or above SLURM_ARRAY_TASK_MIN".into()),
            };
            if id < min || (id - min) % step != 0 {
                return Err(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID={id} is not in the array {min}, {}, …",
                    min + step
                ));
            }
            if count.is_some_and(|n| n != tasks) {
                return Err(format!("--shard auto/{}: the Slurm array has {tasks} tasks", count.unwrap_or_default()));
            }
            Shard { index: (id - min) / step, count: tasks }
        } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count.ok_or(
                "--shard auto: JOB_COMPLETION_INDEX is set but the count is not: give --shard auto/N with the Job's completions",
            )?;
            Shard { index, count }
        } else {
            return Err("--shard auto: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set (run it as a Slurm array task or a Kubernetes Indexed Job, or give --shard i/N)".into());
        };
        if shard.count == 0 || shard.index >= shard.count {
            return Err(format!("--shard auto: task {} of {} is outside the array", shard.index, shard.count));
        }
        Ok(shard)
    }
}

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
    /// The whole configuration of the run as the sensitivity stage read it, kept to compare
    /// runs (resume, merge); other stages use the typed fields above.
    pub config: serde_json::Value,
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
    pub w_bits: u32,
    pub w_split: bool,
    pub w_group: u32,
    pub w_fp8: bool,
}

impl BaseLayer {
    pub fn new(component: Component, name: &str, form: WeightForm) -> Self {
        Self {
            component,
            name: name.to_string(),
            w_bits: u32::from(form.bits),
            w_split: form.split,
            w_group: form.group.map_or(0, |g| g as u32),
            w_fp8: form.fp8,
        }
    }

    /// Whether `row` probes this layer at this form, with float activations.
    pub fn matches(&self, row: &ProbeRow) -> bool {
        self.component == row.layer.component
            && self.name == row.layer.name
            && (self.w_bits, self.w_split, self.w_group, self.w_fp8)
                == (row.w_bits, row.w_split, row.w_group, row.w_fp8)
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

/// A table read back: its rows and the run they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityTable {
    pub meta: RunMeta,
    pub rows: Vec<ProbeRow>,
}

impl SensitivityTable {
    /// Writes the table as Parquet, atomically (a reader never sees half a file).
    pub fn write(&self, path: &Path) -> Result<()> {
        let error = |e: &dyn std::fmt::Display| RecordError::file(path, e.to_string());
        let mut frame = self.frame().map_err(|e| error(&e))?;
        let meta = serde_json::to_string(&self.meta).map_err(|e| error(&e))?;
        crate::write_parquet(path, &mut frame, META_KEY, meta)
    }

    /// Reads a table written by [`SensitivityTable::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let (meta, frame) = crate::read_parquet(path, META_KEY, "sensitivity table")?;
        let mut meta = RunMeta::from_json(path, &meta)?;
        let mut rows = rows_of(&frame).map_err(|e| RecordError::file(path, format!("unexpected columns: {e}")))?;
        if meta.format < 5 {
            recost_narrow_codes(&mut rows);
            meta.format = TABLE_FORMAT;
        }
        Ok(Self { meta, rows })
    }

    /// The rows as a polars frame, one column per [`ProbeRow`] field.
    pub fn frame(&self) -> PolarsResult<DataFrame> {
        let rows = &self.rows;
        let text = |f: fn(&ProbeRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        let u64s = |f: fn(&ProbeRow) -> u64| rows.iter().map(f).collect::<Vec<_>>();
        let u32s = |f: fn(&ProbeRow) -> u32| rows.iter().map(f).collect::<Vec<_>>();
        let f64s = |f: fn(&ProbeRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
        let columns = vec![
            Column::new("probe".into(), u64s(|r| r.probe)),
            Column::new("component".into(), text(|r| r.layer.component.as_str())),
            Column::new("layer".into(), text(|r| &r.layer.name)),
            Column::new("op".into(), text(|r| &r.layer.op)),
            Column::new("role".into(), text(|r| r.layer.role.as_str())),
            Column::new("group".into(), text(|r| r.layer.group.as_str())),
            Column::new("params".into(), u64s(|r| r.layer.params)),
            Column::new("macs".into(), rows.iter().map(|r| r.layer.macs).collect::<Vec<_>>()),
            Column::new("w_bits".into(), u32s(|r| r.w_bits)),
            Column::new("w_split".into(), rows.iter().map(|r| r.w_split).collect::<Vec<_>>()),
            Column::new("w_group".into(), u32s(|r| r.w_group)),
            Column::new("w_fp8".into(), rows.iter().map(|r| r.w_fp8).collect::<Vec<_>>()),
            Column::new("a_bits".into(), u32s(|r| r.a_bits)),
            Column::new("step_group".into(), u32s(|r| r.step_group)),
            Column::new("step_first".into(), u32s(|r| r.step_first)),
            Column::new("step_last".into(), u32s(|r| r.step_last)),
            Column::new("weight_bytes".into(), u64s(|r| r.weight_bytes)),
            Column::new("sqnr_db".into(), f64s(|r| r.sqnr_db)),
            Column::new("ssim".into(), f64s(|r| r.ssim)),
            Column::new("mse".into(), f64s(|r| r.mse)),
            Column::new("psnr_db".into(), f64s(|r| r.psnr_db)),
            Column::new("nonfinite".into(), u64s(|r| r.nonfinite)),
        ];
        DataFrame::new(rows.len(), columns)
    }
}

impl RunMeta {
    /// Reads the JSON run description of the table (or journal) at `path`; a description
    /// from an older format is refused with the command that writes the current one.
    pub fn from_json(path: &Path, json: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| RecordError::file(path, format!("run metadata is not JSON: {e}")))?;
        let found = value.get("format").and_then(serde_json::Value::as_u64).unwrap_or(1);
        // Formats 2 to 4 lack some kinds of rows or cost 2-bit codes as int4 (mended on read).
        let found = if matches!(found, 2..=4) { u64::from(TABLE_FORMAT) } else { found };
        check_format(path, "sensitivity table", found, TABLE_FORMAT, "bitsearch sensitivity")?;
        serde_json::from_value(value).map_err(|e| RecordError::file(path, format!("run metadata is not readable: {e}")))
    }
}

/// Tables before format 5 costed every integer code of up to 4 bits in an int4 container: the
/// codes' bytes are re-costed in the container [`WeightForm::container_bits`] gives them now.
fn recost_narrow_codes(rows: &mut [ProbeRow]) {
    for row in rows.iter_mut().filter(|r| r.w_bits <= 4) {
        let form = WeightForm {
            bits: row.w_bits as u8,
            split: row.w_split,
            group: (row.w_group > 0).then_some(row.w_group as usize),
            fp8: row.w_fp8,
        };
        if form.integer() {
            let params = row.layer.params;
            row.weight_bytes -= (params * 4).div_ceil(8) - (params * form.container_bits()).div_ceil(8);
        }
    }
}

fn rows_of(frame: &DataFrame) -> PolarsResult<Vec<ProbeRow>> {
    let text = |name: &str| -> PolarsResult<Vec<String>> {
        Ok(frame.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
    };
    let parsed = |name: &str, i: usize, value: &str, e: String| {
        PolarsError::ComputeError(format!("row {i}, column '{name}': '{value}': {e}").into())
    };
    let u64s = |name: &str| -> PolarsResult<Vec<Option<u64>>> { Ok(frame.column(name)?.u64()?.iter().collect()) };
    let u32s = |name: &str| -> PolarsResult<Vec<u32>> {
        Ok(frame.column(name)?.u32()?.iter().map(Option::unwrap_or_default).collect())
    };
    let f64s = |name: &str| -> PolarsResult<Vec<f64>> {
        Ok(frame.column(name)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let (component, layer, op, role, group) =
        (text("component")?, text("layer")?, text("op")?, text("role")?, text("group")?);
    let (probe, params, macs, weight_bytes, nonfinite) =
        (u64s("probe")?, u64s("params")?, u64s("macs")?, u64s("weight_bytes")?, u64s("nonfinite")?);
    let (w_bits, a_bits) = (u32s("w_bits")?, u32s("a_bits")?);
    // Columns later formats added: absent in older tables.
    let bools = |name: &str| -> PolarsResult<Vec<bool>> {
        match frame.column(name) {
            Ok(column) => Ok(column.bool()?.iter().map(Option::unwrap_or_default).collect()),
            Err(_) => Ok(vec![false; frame.height()]),
        }
    };
    let (w_split, w_fp8) = (bools("w_split")?, bools("w_fp8")?);
    let w_group = if frame.column("w_group").is_ok() { u32s("w_group")? } else { vec![0; frame.height()] };
    let (step_group, step_first, step_last) = (u32s("step_group")?, u32s("step_first")?, u32s("step_last")?);
    let (sqnr_db, ssim, mse, psnr_db) = (f64s("sqnr_db")?, f64s("ssim")?, f64s("mse")?, f64s("psnr_db")?);
    (0..frame.height())
        .map(|i| {
            Ok(ProbeRow {
                probe: probe[i].unwrap_or_default(),
                layer: LayerInfo {
                    component: component[i]
                        .parse::<Component>()
                        .map_err(|e| parsed("component", i, &component[i], e))?,
                    name: layer[i].clone(),
                    op: op[i].clone(),
                    role: role[i].parse::<Role>().map_err(|e| parsed("role", i, &role[i], e))?,
                    group: group[i].parse::<MetricGroup>().map_err(|e| parsed("group", i, &group[i], e))?,
                    params: params[i].unwrap_or_default(),
                    macs: macs[i],
                },
                w_bits: w_bits[i],
                w_split: w_split[i],
                w_group: w_group[i],
                w_fp8: w_fp8[i],
                a_bits: a_bits[i],
                step_group: step_group[i],
                step_first: step_first[i],
                step_last: step_last[i],
                weight_bytes: weight_bytes[i].unwrap_or_default(),
                sqnr_db: sqnr_db[i],
                ssim: ssim[i],
                mse: mse[i],
                psnr_db: psnr_db[i],
                nonfinite: nonfinite[i].unwrap_or_default(),
            })
        })
        .collect()
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
    for (path, table) in tables {
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
        log::warn!(
            "merged {} of the run's {} probes: some shards are missing or unfinished",
            rows.len(),
            meta.probes_total
        );
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

/// SQNR two runs in float reach when they differ only by kernel choice (a weight fed at run
/// time instead of pre-packed): above it on both sides, a comparison measures rounding noise.
pub const SQNR_FLOOR_DB: f64 = 120.0;
/// SSIM differences below this are rounding noise too.
pub const SSIM_TOLERANCE: f64 = 1e-9;

/// Layers where fewer weight bits measured *better* than more: for each layer (and activation
/// bits and step group), every pair of consecutive weight bit-widths is compared on one metric
/// (plain quantization only: split, grouped and float8 rows sit beside the plain ones at the same bits).
/// Differences inside float rounding noise ([`SQNR_FLOOR_DB`], [`SSIM_TOLERANCE`]) are ties.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Monotonicity {
    /// Layers with at least two weight bit-widths.
    pub checked: usize,
    /// Ids (`component/name`) of the layers where a lower bit-width beat a higher one on SQNR,
    /// and on SSIM.
    pub sqnr_exceptions: Vec<String>,
    pub ssim_exceptions: Vec<String>,
}

pub fn monotonicity(rows: &[ProbeRow]) -> Monotonicity {
    let mut series: std::collections::BTreeMap<(String, u32, u32), Vec<&ProbeRow>> = Default::default();
    for row in rows.iter().filter(|r| r.w_bits != FLOAT_BITS && !r.variant()) {
        series.entry((row.layer.id(), row.a_bits, row.step_group)).or_default().push(row);
    }
    let mut result = Monotonicity::default();
    let mut checked = std::collections::BTreeSet::new();
    for ((layer, _, _), mut probes) in series {
        if probes.len() < 2 {
            continue;
        }
        checked.insert(layer.clone());
        probes.sort_by_key(|r| r.w_bits);
        let sqnr_beaten = probes.windows(2).any(|p| p[0].sqnr_db > p[1].sqnr_db && p[1].sqnr_db < SQNR_FLOOR_DB);
        let ssim_beaten = probes.windows(2).any(|p| p[0].ssim > p[1].ssim + SSIM_TOLERANCE);
        if sqnr_beaten && !result.sqnr_exceptions.contains(&layer) {
            result.sqnr_exceptions.push(layer.clone());
        }
        if ssim_beaten && !result.ssim_exceptions.contains(&layer) {
            result.ssim_exceptions.push(layer.clone());
        }
    }
    result.checked = checked.len();
    result
}

/// What MPQ-DM's outlier split did at one weight bit-width: over the layers probed both ways
/// (same activation bits and step group), the median SQNR and SSIM change from plain to split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitGain {
    pub w_bits: u32,
    pub layers: usize,
    /// Layers whose split measured a higher SQNR than their plain quantization.
    pub improved: usize,
    pub median_sqnr_db: f64,
    pub median_ssim: f64,
}

/// [`SplitGain`] of every weight bit-width with split rows, in increasing bits.
pub fn split_gains(rows: &[ProbeRow]) -> Vec<SplitGain> {
    let key = |r: &ProbeRow| (r.layer.id(), r.w_bits, r.a_bits, r.step_group);
    let plain: std::collections::HashMap<_, &ProbeRow> =
        rows.iter().filter(|r| !r.variant()).map(|r| (key(r), r)).collect();
    let mut by_bits: std::collections::BTreeMap<u32, Vec<(f64, f64)>> = Default::default();
    for split in rows.iter().filter(|r| r.w_split) {
        if let Some(p) = plain.get(&key(split)) {
            by_bits.entry(split.w_bits).or_default().push((split.sqnr_db - p.sqnr_db, split.ssim - p.ssim));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    };
    by_bits
        .into_iter()
        .map(|(w_bits, gains)| SplitGain {
            w_bits,
            layers: gains.len(),
            improved: gains.iter().filter(|g| g.0 > 0.0).count(),
            median_sqnr_db: median(gains.iter().map(|g| g.0).collect()),
            median_ssim: median(gains.iter().map(|g| g.1).collect()),
        })
        .collect()
}

/// JSON has no infinities: non-finite floats are written as the strings `inf`, `-inf`, `NaN`.
mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() { serializer.serialize_f64(*value) } else { serializer.serialize_str(&value.to_string()) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(s) => s.parse().map_err(|_| serde::de::Error::custom(format!("'{s}' is not a number"))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn row(probe: u64, sqnr_db: f64) -> ProbeRow {
        ProbeRow {
            probe,
            layer: LayerInfo {
                component: Component::Unet,
                name: format!("layer{probe}"),
                op: "Conv".into(),
                role: Role::Conv,
                group: MetricGroup::Quality,
                params: 100,
                macs: if probe.is_multiple_of(2) { Some(1000) } else { None },
            },
            w_bits: 4,
            w_split: false,
            w_group: 0,
            w_fp8: false,
            a_bits: 32,
            step_group: 0,
            step_first: 0,
            step_last: 0,
            weight_bytes: 58,
            sqnr_db,
            ssim: 0.5,
            mse: 0.01,
            psnr_db: 26.0,
            nonfinite: 0,
        }
    }

    pub fn meta(shard: Shard) -> RunMeta {
        RunMeta {
            format: TABLE_FORMAT,
            tool_version: "test".into(),
            model: "m.onnx".into(),
            model_sha256: "00".into(),
            pipeline: "denoiser".into(),
            sampler: "consistency".into(),
            steps: 1,
            step_groups: vec![[0, 0]],
            items: vec!["seed=0".into()],
            device: "cpu".into(),
            metric_groups: "all quality".into(),
            probes_total: 3,
            shard,
            quantizer: QuantizerSpec::default(),
            config: serde_json::json!({"w_bits": [4]}),
            base: None,
        }
    }

    #[test]
    fn parquet_round_trip_keeps_rows_metadata_and_infinities() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let table = SensitivityTable {
            meta: meta(Shard::WHOLE),
            rows: vec![row(0, 12.5), row(1, f64::NEG_INFINITY), row(2, f64::INFINITY)],
        };
        table.write(&path).unwrap();
        assert_eq!(SensitivityTable::read(&path).unwrap(), table);
        let json = serde_json::to_string(&table.rows[1]).unwrap();
        assert!(json.contains("\"-inf\""), "{json}");
        assert_eq!(serde_json::from_str::<ProbeRow>(&json).unwrap(), table.rows[1]);
    }

    #[test]
    fn auto_shards_come_from_slurm_or_kubernetes_variables() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let auto = |text: &str| text.parse::<ShardSpec>().unwrap();
        let shard = |index, count| Ok(Shard { index, count });
        // `sbatch --array=1-3`: ids from 1.
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(auto("auto").resolve(slurm), shard(2, 3));
        assert_eq!(auto("auto/3").resolve(slurm), shard(2, 3));
        assert!(auto("auto/4").resolve(slurm).unwrap_err().contains("has 3 tasks"));
        // `--array=0-12:4` without a count: 0, 4, 8, 12.
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "12"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ]);
        assert_eq!(auto("auto").resolve(stepped), shard(2, 4));
        let kubernetes = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(auto("auto/2").resolve(kubernetes), shard(1, 2));
        assert!(auto("auto").resolve(kubernetes).unwrap_err().contains("auto/N"));
        assert!(auto("auto/1").resolve(kubernetes).unwrap_err().contains("outside the array"));
        assert!(auto("auto").resolve(env(&[])).unwrap_err().contains("neither SLURM_ARRAY_TASK_ID"));
        let bad = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        assert!(auto("auto").resolve(bad).unwrap_err().contains("SLURM_ARRAY_TASK_ID=x"));
        assert_eq!("1/4".parse::<ShardSpec>().unwrap().resolve(env(&[])), shard(1, 4));
        for text in ["auto/0", "auto/x", "autox", "4/4"] {
            assert!(text.parse::<ShardSpec>().is_err(), "{text}");
        }
    }

    #[test]
    fn merge_orders_rows_and_refuses_other_runs_and_overlaps() {
        let a = SensitivityTable { meta: meta(Shard { index: 0, count: 2 }), rows: vec![row(2, 1.0), row(0, 3.0)] };
        let b = SensitivityTable { meta: meta(Shard { index: 1, count: 2 }), rows: vec![row(1, 2.0)] };
        let merged = merge(vec![("a".into(), a.clone()), ("b".into(), b.clone())]).unwrap();
        assert_eq!(merged.meta, meta(Shard::WHOLE));
        assert_eq!(merged.rows.iter().map(|r| r.probe).collect::<Vec<_>>(), vec![0, 1, 2]);

        let mut other = b.clone();
        other.meta.steps = 2;
        let message = merge(vec![("a".into(), a.clone()), ("b".into(), other)]).unwrap_err().to_string();
        assert!(message.contains("'steps' differs"), "{message}");
        let message = merge(vec![("a".into(), a.clone()), ("a2".into(), a)]).unwrap_err().to_string();
        assert!(message.contains("more than one table"), "{message}");
    }

    #[test]
    fn split_gains_are_medians_over_the_layers_probed_both_ways() {
        let probe = |layer: &str, w_bits: u32, w_split: bool, sqnr_db: f64| {
            let mut row = ProbeRow { w_bits, w_split, ..row(0, sqnr_db) };
            row.layer.name = layer.into();
            row
        };
        let rows = vec![
            probe("a", 2, false, 5.0),
            probe("a", 2, true, 8.0),
            probe("b", 2, false, 6.0),
            probe("b", 2, true, 5.0),
            probe("c", 2, false, 1.0),
            probe("c", 2, true, 3.0),
            probe("a", 3, false, 9.0),
            probe("d", 3, true, 9.0),
        ];
        let gains = split_gains(&rows);
        assert_eq!(gains.len(), 1, "d has no plain W3 row to compare with");
        assert_eq!((gains[0].w_bits, gains[0].layers, gains[0].improved), (2, 3, 2));
        assert_eq!(gains[0].median_sqnr_db, 2.0);
    }

    #[test]
    fn monotonicity_names_the_layers_where_fewer_bits_won() {
        let probe = |layer: &str, w_bits: u32, sqnr_db: f64, ssim: f64| {
            let mut row = ProbeRow { w_bits, ssim, ..row(0, sqnr_db) };
            row.layer.name = layer.into();
            row
        };
        let rows = vec![
            probe("a", 2, 5.0, 0.5),
            probe("a", 4, 15.0, 0.9),
            probe("a", 8, 30.0, 0.99),
            probe("b", 4, 20.0, 0.95),
            probe("b", 8, 18.0, 0.95),
            probe("c", 8, 1.0, 0.1),
            // Both beyond the float floor: rounding noise, not an exception.
            probe("d", 4, 131.0, 1.0),
            probe("d", 8, 129.0, 1.0 - 1e-12),
        ];
        let m = monotonicity(&rows);
        assert_eq!(m.checked, 3);
        assert_eq!(m.sqnr_exceptions, vec!["unet/b".to_string()]);
        assert!(m.ssim_exceptions.is_empty(), "a tie is not an exception");
    }

    #[test]
    fn a_table_of_the_older_format_names_the_command_to_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let table = SensitivityTable { meta: meta(Shard::WHOLE), rows: vec![row(0, 12.5)] };
        let mut frame = table.frame().unwrap();
        let mut old = serde_json::to_value(&table.meta).unwrap();
        old.as_object_mut().unwrap().remove("format");
        let mut bytes = Vec::new();
        ParquetWriter::new(&mut bytes)
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(vec![(META_KEY.to_string(), old.to_string())])))
            .finish(&mut frame)
            .unwrap();
        std::fs::write(&path, bytes).unwrap();
        let message = SensitivityTable::read(&path).unwrap_err().to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("written by an older bitsearch (sensitivity table format 1"), "{message}");
        assert!(message.ends_with("rerun `bitsearch sensitivity`"), "{message}");
    }

    #[test]
    fn format_4_tables_are_read_with_unsplit_two_bit_codes_four_per_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("four.parquet");
        let mut meta = meta(Shard::WHOLE);
        meta.format = 4;
        // 100 values: 50 bytes as int4, 25 as int2, plus 8 bytes of scales either way.
        let two = |split: bool| ProbeRow { w_bits: 2, w_split: split, weight_bytes: 58, ..row(0, 1.0) };
        let rows = vec![two(false), ProbeRow { probe: 1, ..two(true) }, row(2, 12.5)];
        SensitivityTable { meta, rows }.write(&path).unwrap();
        let read = SensitivityTable::read(&path).unwrap();
        assert_eq!(read.meta.format, TABLE_FORMAT);
        let bytes: Vec<u64> = read.rows.iter().map(|r| r.weight_bytes).collect();
        assert_eq!(bytes, vec![33, 58, 58], "split 2-bit codes keep their int4 container");
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, b"PAR1 not really").unwrap();
        let message = SensitivityTable::read(&path).unwrap_err().to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("not a Parquet file"), "{message}");
    }
}
