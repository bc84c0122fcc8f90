//! The sensitivity table: one row per probe, written as Parquet with the run's description in
//! the file's key-value metadata (key [`META_KEY`], JSON). The solver and the report read it
//! back through [`SensitivityTable::read`].

mod meta;
mod read;
mod shard;
mod stats;

pub use meta::{BaseLayer, BasePoint, RunMeta, first_difference, merge};
pub use shard::{Shard, ShardSpec};
pub use stats::{Monotonicity, SQNR_FLOOR_DB, SSIM_TOLERANCE, SplitGain, monotonicity, split_gains};

use crate::check::{self, Checked, invalid};
use crate::error::{RecordError, Result};
use bitsearch_types::{LayerInfo, WeightFormat};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Parquet key-value metadata key holding the [`RunMeta`] JSON.
pub const META_KEY: &str = "bitsearch.sensitivity";
/// Format of the table this bitsearch writes. 1 (no `format` field): layers without their
/// component, the run's config embedded in the engine's own types. 2: no outlier-split rows.
/// 3: no group-size or float8 rows. 4: 2-bit codes costed in int4 containers. 5: no checksum of
/// the pages.
pub const TABLE_FORMAT: u32 = 6;

/// One probe's measurement against the full-precision run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Position in the full probe list (stable across shards and resumes).
    pub probe: u64,
    #[serde(flatten)]
    pub layer: LayerInfo,
    /// How the weight is stored ([`WeightFormat::Float`] for layers without weights), in the
    /// columns `w_bits`, `w_split` (MPQ-DM's outlier split), `w_group` (values per scale group,
    /// 0: the run's quantizer granularity) and `w_fp8` (E4M3 codes).
    #[serde(flatten, with = "weight_columns")]
    pub weight: WeightFormat,
    /// Input-activation bits; [`FLOAT_BITS`] when activations stay in float.
    pub a_bits: u32,
    pub step_group: u32,
    /// First and last (inclusive) denoising step of the group.
    pub step_first: u32,
    pub step_last: u32,
    /// Bytes of the quantized weight: codes plus the quantizer's scales.
    pub weight_bytes: u64,
    /// SQNR of the denoiser output over every step, dB (−∞ when non-finite).
    #[serde(with = "crate::float_text")]
    pub sqnr_db: f64,
    /// Mean SSIM of the final images (−1 when non-finite).
    #[serde(with = "crate::float_text")]
    pub ssim: f64,
    #[serde(with = "crate::float_text")]
    pub mse: f64,
    #[serde(with = "crate::float_text")]
    pub psnr_db: f64,
    /// NaN or infinite values in the denoiser outputs and final images.
    pub nonfinite: u64,
}

impl ProbeRow {
    /// The row's fields against their ranges and the run's step groups.
    fn validate(&self, meta: &RunMeta) -> Checked {
        if self.probe >= meta.probes_total as u64 {
            return Err(invalid("probe", format!("{} is past the run's {} probes", self.probe, meta.probes_total)));
        }
        check::layer(&self.layer)?;
        let bytes = (self.weight != WeightFormat::Float).then_some(self.weight_bytes);
        if bytes.is_none() && self.weight_bytes != 0 {
            return Err(invalid("weight_bytes", "a layer left in float stores no quantized weight (0)"));
        }
        check::weight("w_bits", &self.weight, &self.layer, bytes)?;
        check::activation_bits("a_bits", self.a_bits)?;
        let group = meta.step_groups.get(self.step_group as usize).ok_or_else(|| {
            invalid(
                "step_group",
                format!("{} is past the run's {} step groups", self.step_group, meta.step_groups.len()),
            )
        })?;
        if [self.step_first as usize, self.step_last as usize] != *group {
            return Err(invalid(
                "step_first",
                format!("[{}, {}] is not step group {}'s {group:?}", self.step_first, self.step_last, self.step_group),
            ));
        }
        check::within("sqnr_db", self.sqnr_db, f64::NEG_INFINITY, f64::INFINITY)?;
        check::within("ssim", self.ssim, -1.0, 1.0)?;
        check::within("mse", self.mse, 0.0, f64::INFINITY)?;
        check::within("psnr_db", self.psnr_db, f64::NEG_INFINITY, f64::INFINITY)
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

    /// Whether `path` holds a sensitivity table of any format (its footer names the run), as
    /// opposed to a file `--overwrite` must leave alone.
    pub fn is_table(path: &Path) -> bool {
        crate::carries_key(path, META_KEY)
    }

    /// Reads a table written by [`SensitivityTable::write`].
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_bytes(&crate::read_bounded(path, crate::MAX_PARQUET_BYTES, "sensitivity table")?, path)
    }

    /// Decodes and checks the bytes of the table file at `path`, as [`SensitivityTable::read`]
    /// does (the path names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        Self::from_bytes_within(bytes, path, |_| Ok(()))
    }

    /// As [`SensitivityTable::from_bytes`], `admit` seeing the file's rows and the size of its
    /// run description before either is decoded: a service's own limits, refused before they
    /// cost memory.
    pub fn from_bytes_within(
        bytes: &[u8],
        path: &Path,
        admit: impl FnOnce(&crate::Footprint) -> std::result::Result<(), String>,
    ) -> Result<Self> {
        let kind = (META_KEY, "sensitivity table", "bitsearch sensitivity");
        let (meta, frame) = crate::decode_parquet(bytes, path, kind, admit)?;
        let meta = RunMeta::from_json(path, &meta)?;
        let rows = read::rows_of(&frame).map_err(|e| RecordError::file(path, format!("unexpected columns: {e}")))?;
        let table = Self { meta, rows };
        table.validate().map_err(|e| e.at(path))?;
        Ok(table)
    }

    /// Checks every field of the run description and of each row against its range, and that
    /// no probe is listed twice.
    fn validate(&self) -> Checked {
        let meta = &self.meta;
        meta.validate()?;
        if self.rows.len() > meta.probes_total {
            return Err(invalid(
                "probes_total",
                format!("{} for a table of {} rows", meta.probes_total, self.rows.len()),
            ));
        }
        check::distinct("rows", &self.rows, |r| r.probe)
            .map_err(|e| invalid(format!("{}.probe", e.field), e.message))?;
        for (i, row) in self.rows.iter().enumerate() {
            row.validate(meta).map_err(|e| e.under(&format!("rows[{i}]")))?;
        }
        Ok(())
    }

    /// Probes of the whole run this table lacks: a shard's table, or a merge that left shards out.
    pub fn missing_probes(&self) -> usize {
        let present: std::collections::BTreeSet<u64> = self.rows.iter().map(|r| r.probe).collect();
        self.meta.probes_total.saturating_sub(present.len())
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
            Column::new("outputs".into(), rows.iter().map(|r| r.layer.outputs).collect::<Vec<_>>()),
            Column::new("w_bits".into(), u32s(|r| r.weight.bits())),
            Column::new("w_split".into(), rows.iter().map(|r| r.weight.split()).collect::<Vec<_>>()),
            Column::new("w_group".into(), u32s(|r| r.weight.columns().2)),
            Column::new("w_fp8".into(), rows.iter().map(|r| r.weight == WeightFormat::E4M3).collect::<Vec<_>>()),
            Column::new("w_gptq".into(), rows.iter().map(|r| r.weight.columns().4).collect::<Vec<_>>()),
            Column::new("w_rank".into(), u32s(|r| r.weight.columns().5)),
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

/// A [`WeightFormat`] as the columns `w_bits`, `w_split`, `w_group`, `w_fp8`, `w_gptq`, `w_rank`
/// (all but the first absent in older records).
pub(crate) mod weight_columns {
    use bitsearch_types::WeightFormat;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Columns {
        w_bits: u32,
        #[serde(default)]
        w_split: bool,
        #[serde(default)]
        w_group: u32,
        #[serde(default)]
        w_fp8: bool,
        #[serde(default)]
        w_gptq: bool,
        #[serde(default)]
        w_rank: u32,
    }

    pub fn serialize<S: Serializer>(format: &WeightFormat, serializer: S) -> Result<S::Ok, S::Error> {
        let (w_bits, w_split, w_group, w_fp8, w_gptq, w_rank) = format.columns();
        Columns { w_bits, w_split, w_group, w_fp8, w_gptq, w_rank }.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<WeightFormat, D::Error> {
        let c = Columns::deserialize(deserializer)?;
        WeightFormat::from_columns((c.w_bits, c.w_split, c.w_group, c.w_fp8, c.w_gptq, c.w_rank))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitsearch_types::{Component, MetricGroup, QuantizerSpec, Role};

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
                outputs: if probe.is_multiple_of(2) { Some(10) } else { None },
            },
            weight: WeightFormat::int(4),
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
            config: crate::RunConfig::from_value(serde_json::json!({"w_bits": [4]})).unwrap(),
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
        assert!(
            json.contains(
                r#""w_bits":4,"w_split":false,"w_group":0,"w_fp8":false,"w_gptq":false,"w_rank":0,"a_bits":32"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ProbeRow>(&json).unwrap(), table.rows[1]);
    }

    #[test]
    fn a_table_of_the_older_format_names_the_command_to_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let table = SensitivityTable { meta: meta(Shard::WHOLE), rows: vec![row(0, 12.5)] };
        let mut frame = table.frame().unwrap();
        let mut old = serde_json::to_value(&table.meta).unwrap();
        old.as_object_mut().unwrap().remove("format");
        crate::write_parquet(&path, &mut frame, META_KEY, old.to_string()).unwrap();
        let message = SensitivityTable::read(&path).unwrap_err().to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("written by an older bitsearch (sensitivity table format 1"), "{message}");
        assert!(message.ends_with("rerun `bitsearch sensitivity`"), "{message}");

        // Tables before format 6 carry no checksum of their pages.
        let mut bytes = Vec::new();
        ParquetWriter::new(&mut bytes)
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(vec![(META_KEY.to_string(), old.to_string())])))
            .finish(&mut frame)
            .unwrap();
        std::fs::write(&path, bytes).unwrap();
        let message = SensitivityTable::read(&path).unwrap_err().to_string();
        assert!(message.contains("carries no checksum: written by an older bitsearch; rerun `bitsearch sensitivity`"));
    }

    #[test]
    fn damaged_pages_and_out_of_range_fields_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let write = |rows: Vec<ProbeRow>| SensitivityTable { meta: meta(Shard::WHOLE), rows }.write(&path).unwrap();
        let refused = |path: &Path| SensitivityTable::read(path).unwrap_err().to_string();
        write(vec![row(0, 12.5)]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[50] ^= 0x08;
        let flipped = dir.path().join("flipped.parquet");
        std::fs::write(&flipped, &bytes).unwrap();
        assert!(refused(&flipped).contains("the pages do not match their checksum"), "{}", refused(&flipped));

        let ranked = |r| WeightFormat::int(4).with_rank(Some(r)).unwrap();
        let cases: Vec<(ProbeRow, &str)> = vec![
            (ProbeRow { weight: WeightFormat::int(9), ..row(0, 1.0) }, "rows[0].w_bits: w9"),
            (ProbeRow { ssim: 99.0, ..row(0, 1.0) }, "rows[0].ssim: 99 is outside [-1, 1]"),
            (ProbeRow { ssim: f64::NAN, ..row(0, 1.0) }, "rows[0].ssim: is NaN"),
            (ProbeRow { mse: -1.0, ..row(0, 1.0) }, "rows[0].mse"),
            (ProbeRow { sqnr_db: f64::NAN, ..row(0, 1.0) }, "rows[0].sqnr_db"),
            (ProbeRow { weight_bytes: 0, ..row(0, 1.0) }, "rows[0].weight_bytes"),
            (ProbeRow { weight_bytes: 1 << 63, ..row(0, 1.0) }, "rows[0].weight_bytes"),
            (ProbeRow { layer: LayerInfo { params: 0, ..row(0, 1.0).layer }, ..row(0, 1.0) }, "rows[0].params"),
            (ProbeRow { layer: LayerInfo { params: 1 << 63, ..row(0, 1.0).layer }, ..row(0, 1.0) }, "rows[0].params"),
            (ProbeRow { layer: LayerInfo { name: " ".into(), ..row(0, 1.0).layer }, ..row(0, 1.0) }, "rows[0].layer"),
            (ProbeRow { a_bits: 1, ..row(0, 1.0) }, "rows[0].a_bits"),
            (ProbeRow { step_group: 3, ..row(0, 1.0) }, "rows[0].step_group"),
            (ProbeRow { probe: 7, ..row(0, 1.0) }, "rows[0].probe: 7 is past the run's 3 probes"),
            (ProbeRow { layer: LayerInfo { outputs: Some(0), ..row(0, 1.0).layer }, ..row(0, 1.0) }, "rows[0].outputs"),
            (ProbeRow { layer: LayerInfo { outputs: Some(7), ..row(0, 1.0).layer }, ..row(0, 1.0) }, "rows[0].outputs"),
            // A branch needs the layer's output channels, and must stay small beside the weight.
            (ProbeRow { weight: ranked(1), ..row(1, 1.0) }, "rows[0].w_bits: w4r1: the branch needs"),
            (ProbeRow { weight: ranked(4), ..row(0, 1.0) }, "rows[0].w_bits: w4r4: the branch needs"),
        ];
        for (bad, expected) in cases {
            write(vec![bad]);
            let message = refused(&path);
            assert!(message.starts_with(&path.display().to_string()) && message.contains(expected), "{message}");
        }
        write(vec![row(1, 1.0), row(1, 2.0)]);
        assert!(refused(&path).contains("rows[1].probe: '1' is listed twice"), "{}", refused(&path));
        for bits in [1, 15, 17, 31, 33, 99] {
            write(vec![ProbeRow { weight: WeightFormat::int(bits), ..row(0, 1.0) }]);
            assert!(refused(&path).contains(&format!("rows[0].w_bits: w{bits}")), "{}", refused(&path));
        }
    }

    #[test]
    fn every_flipped_bit_of_a_table_reads_or_is_refused_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let table = SensitivityTable { meta: meta(Shard::WHOLE), rows: vec![row(0, 12.5), row(1, 3.0)] };
        table.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let flipped = dir.path().join("flipped.parquet");
        let mut damaged = 0;
        // The reviewer's flip (0x08: a thrift bool field in the footer) at every byte.
        for at in 0..bytes.len() {
            let mut copy = bytes.clone();
            copy[at] ^= 0x08;
            std::fs::write(&flipped, &copy).unwrap();
            // A panic or abort here fails the test; an error must name the file.
            if let Err(e) = SensitivityTable::read(&flipped) {
                assert!(e.to_string().starts_with(&flipped.display().to_string()), "{e}");
                damaged += 1;
            }
        }
        assert!(damaged > bytes.len() / 2, "{damaged} of {} flips refused", bytes.len());
    }

    #[test]
    #[ignore = "writes fuzz/seeds/table"]
    fn write_fuzz_seeds() {
        let dir = crate::fuzz_seeds("table");
        std::fs::create_dir_all(&dir).unwrap();
        let plain = vec![row(0, 12.5), row(1, f64::NEG_INFINITY), row(2, f64::INFINITY)];
        SensitivityTable { meta: meta(Shard::WHOLE), rows: plain }.write(&dir.join("three-rows.parquet")).unwrap();
        let format = |text: &str| text.parse::<WeightFormat>().unwrap();
        let formats = [WeightFormat::E4M3, format("w4s"), format("w2g32")];
        let rows = formats.iter().enumerate().map(|(i, &weight)| ProbeRow { weight, ..row(i as u64, 20.0) }).collect();
        SensitivityTable { meta: meta(Shard::WHOLE), rows }.write(&dir.join("formats.parquet")).unwrap();
    }

    #[test]
    fn the_fuzz_seeds_read_back() {
        for file in crate::fuzz_seed_files("table") {
            SensitivityTable::read(&file).unwrap();
        }
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

    #[test]
    fn a_reader_s_own_limits_see_the_footer_before_any_row_is_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.parquet");
        let table = SensitivityTable { meta: meta(Shard::WHOLE), rows: vec![row(0, 1.0), row(1, 2.0), row(2, 3.0)] };
        table.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut seen = None;
        let read = SensitivityTable::from_bytes_within(&bytes, &path, |found| {
            seen = Some(*found);
            Ok(())
        });
        assert_eq!(read.unwrap(), table);
        let seen = seen.unwrap();
        assert_eq!(seen.rows, 3);
        assert_eq!(seen.meta_bytes, serde_json::to_string(&table.meta).unwrap().len());
        let refused = SensitivityTable::from_bytes_within(&bytes, &path, |found| Err(format!("{} rows", found.rows)));
        let message = refused.unwrap_err().to_string();
        assert!(message.starts_with(&path.display().to_string()) && message.ends_with("3 rows"), "{message}");
    }
}
