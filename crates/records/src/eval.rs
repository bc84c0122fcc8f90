//! Evaluation records: what `eval` measured of candidate models against the full-precision
//! reference on held-out items — fidelity, size, memory, start time and latency — next to what
//! the candidate's plan predicted. One row per candidate, as Parquet with the run's format
//! version and items in the file's metadata.

use crate::check::{self, Checked};
use crate::error::{RecordError, Result, check_format};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format version of evaluation files. 1: no checksum of the pages.
pub const EVAL_FORMAT: u32 = 2;
const META_KEY: &str = "bitsearch_eval";

/// The run every row of an evaluation file shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    pub format: u32,
    pub reference: String,
    pub device: String,
    pub sampler: String,
    pub steps: usize,
    /// One description per item (condition or prompt, and seed).
    pub items: Vec<String>,
    /// How the items relate to the sensitivity and calibration items, in words.
    pub held_out: String,
}

/// Cost of running one model, measured.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Every file the model is made of, on disk.
    pub file_bytes: u64,
    /// Resident memory that opening the model (its sessions started) added to a fresh process;
    /// 0 where not measured (a simulation).
    pub session_bytes: u64,
    pub start_seconds: f64,
    /// Median wall time of one denoiser call (a whole batch), ms.
    pub call_ms: f64,
    /// Median wall time of a whole generation, per image, ms.
    pub image_ms: f64,
}

/// What one candidate measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// A short name: the plan's method and budget, or the file name.
    pub label: String,
    pub candidate: String,
    /// `ilp`, `greedy`, `uniform` (from a plan), `simulated` (a plan fake-quantized in float)
    /// or `model` (any other ONNX model).
    pub kind: String,
    /// The plan's mean weight bits and predictions; NaN without a plan.
    pub avg_bits: f64,
    pub predicted_sqnr_db: f64,
    pub predicted_ssim: f64,
    /// The plan's additive image-MSE prediction (NaN in records from before it was kept).
    pub predicted_psnr_db: f64,
    /// Denoiser-output SQNR over every step and item, dB.
    pub sqnr_db: f64,
    /// Final-image SSIM, PSNR (data range 2) and MSE against the reference's images.
    pub ssim: f64,
    pub psnr_db: f64,
    pub mse: f64,
    pub nonfinite: u64,
    /// Whole-caption accuracy of the candidate and the reference (pipelines with a classifier);
    /// NaN otherwise.
    pub caption: f64,
    pub reference_caption: f64,
    pub cost: Cost,
    pub reference_cost: Cost,
}

impl EvalRecord {
    /// Metrics inside their ranges (NaN where a value was not measured), costs non-negative.
    fn validate(&self) -> Checked {
        let unmeasured_or = check::unmeasured_or;
        unmeasured_or("avg_bits", self.avg_bits, 0.0, f64::from(bitsearch_types::FLOAT_BITS))?;
        unmeasured_or("ssim", self.ssim, -1.0, 1.0)?;
        unmeasured_or("predicted_ssim", self.predicted_ssim, f64::NEG_INFINITY, 1.0)?;
        unmeasured_or("mse", self.mse, 0.0, f64::INFINITY)?;
        unmeasured_or("caption", self.caption, 0.0, 1.0)?;
        unmeasured_or("reference_caption", self.reference_caption, 0.0, 1.0)?;
        for (prefix, cost) in [("", &self.cost), ("reference_", &self.reference_cost)] {
            for (name, value) in
                [("start_seconds", cost.start_seconds), ("call_ms", cost.call_ms), ("image_ms", cost.image_ms)]
            {
                unmeasured_or(&format!("{prefix}{name}"), value, 0.0, f64::MAX)?;
            }
        }
        Ok(())
    }

    /// The fidelity measured, as a target search reads it.
    pub fn measured(&self) -> crate::Measured {
        crate::Measured { sqnr_db: self.sqnr_db, ssim: self.ssim, psnr_db: self.psnr_db, caption: self.caption }
    }

    /// Latency of the candidate's denoiser call over the reference's.
    pub fn latency_ratio(&self) -> f64 {
        self.cost.call_ms / self.reference_cost.call_ms
    }

    /// File size of the candidate over the reference's.
    pub fn size_ratio(&self) -> f64 {
        self.cost.file_bytes as f64 / self.reference_cost.file_bytes as f64
    }
}

/// Writes the records as Parquet, atomically.
pub fn write_evals(path: &Path, run: &EvalRun, records: &[EvalRecord]) -> Result<()> {
    let error = |e: &dyn std::fmt::Display| RecordError::file(path, e.to_string());
    let text = |f: fn(&EvalRecord) -> &str| records.iter().map(f).collect::<Vec<_>>();
    let num = |f: fn(&EvalRecord) -> f64| records.iter().map(f).collect::<Vec<_>>();
    let int = |f: fn(&EvalRecord) -> u64| records.iter().map(f).collect::<Vec<_>>();
    let mut columns = vec![
        Column::new("label".into(), text(|r| &r.label)),
        Column::new("candidate".into(), text(|r| &r.candidate)),
        Column::new("kind".into(), text(|r| &r.kind)),
        Column::new("avg_bits".into(), num(|r| r.avg_bits)),
        Column::new("predicted_sqnr_db".into(), num(|r| r.predicted_sqnr_db)),
        Column::new("predicted_ssim".into(), num(|r| r.predicted_ssim)),
        Column::new("predicted_psnr_db".into(), num(|r| r.predicted_psnr_db)),
        Column::new("sqnr_db".into(), num(|r| r.sqnr_db)),
        Column::new("ssim".into(), num(|r| r.ssim)),
        Column::new("psnr_db".into(), num(|r| r.psnr_db)),
        Column::new("mse".into(), num(|r| r.mse)),
        Column::new("nonfinite".into(), int(|r| r.nonfinite)),
        Column::new("caption".into(), num(|r| r.caption)),
        Column::new("reference_caption".into(), num(|r| r.reference_caption)),
    ];
    for (prefix, cost) in
        [("", (|r: &EvalRecord| r.cost) as fn(&EvalRecord) -> Cost), ("reference_", |r| r.reference_cost)]
    {
        let costs: Vec<Cost> = records.iter().map(cost).collect();
        let ints = |f: fn(&Cost) -> u64| costs.iter().map(f).collect::<Vec<_>>();
        let nums = |f: fn(&Cost) -> f64| costs.iter().map(f).collect::<Vec<_>>();
        columns.extend([
            Column::new(format!("{prefix}file_bytes").into(), ints(|c| c.file_bytes)),
            Column::new(format!("{prefix}session_bytes").into(), ints(|c| c.session_bytes)),
            Column::new(format!("{prefix}start_seconds").into(), nums(|c| c.start_seconds)),
            Column::new(format!("{prefix}call_ms").into(), nums(|c| c.call_ms)),
            Column::new(format!("{prefix}image_ms").into(), nums(|c| c.image_ms)),
        ]);
    }
    let mut frame = DataFrame::new(records.len(), columns).map_err(|e| error(&e))?;
    let meta = serde_json::to_string(run).map_err(|e| error(&e))?;
    crate::write_parquet(path, &mut frame, META_KEY, meta)
}

/// Reads a file written by [`write_evals`].
pub fn read_evals(path: &Path) -> Result<(EvalRun, Vec<EvalRecord>)> {
    let error = |message: String| RecordError::file(path, message);
    let (meta, frame) = crate::read_parquet(path, META_KEY, "evaluation", "bitsearch eval")?;
    let value: serde_json::Value =
        serde_json::from_str(&meta).map_err(|e| error(format!("run metadata is not JSON: {e}")))?;
    let found = value.get("format").and_then(serde_json::Value::as_u64).unwrap_or(0);
    check_format(path, "evaluation", found, EVAL_FORMAT, "bitsearch eval")?;
    let run: EvalRun =
        serde_json::from_value(value).map_err(|e| error(format!("run metadata is not readable: {e}")))?;
    let records = records_of(&frame).map_err(|e| error(format!("unexpected columns: {e}")))?;
    for (i, record) in records.iter().enumerate() {
        record.validate().map_err(|e| e.under(&format!("records[{i}]")).at(path))?;
    }
    Ok((run, records))
}

fn records_of(frame: &DataFrame) -> PolarsResult<Vec<EvalRecord>> {
    let text = |name: &str| -> PolarsResult<Vec<String>> {
        Ok(frame.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
    };
    let num = |name: &str| -> PolarsResult<Vec<f64>> {
        Ok(frame.column(name)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let int = |name: &str| -> PolarsResult<Vec<u64>> {
        Ok(frame.column(name)?.u64()?.iter().map(Option::unwrap_or_default).collect())
    };
    let costs = |prefix: &str| -> PolarsResult<Vec<Cost>> {
        let (file, session) = (int(&format!("{prefix}file_bytes"))?, int(&format!("{prefix}session_bytes"))?);
        let (start, call, image) = (
            num(&format!("{prefix}start_seconds"))?,
            num(&format!("{prefix}call_ms"))?,
            num(&format!("{prefix}image_ms"))?,
        );
        Ok((0..frame.height())
            .map(|i| Cost {
                file_bytes: file[i],
                session_bytes: session[i],
                start_seconds: start[i],
                call_ms: call[i],
                image_ms: image[i],
            })
            .collect())
    };
    let (label, candidate, kind) = (text("label")?, text("candidate")?, text("kind")?);
    let (avg_bits, p_sqnr, p_ssim) = (num("avg_bits")?, num("predicted_sqnr_db")?, num("predicted_ssim")?);
    let p_psnr = crate::added_floats(frame, "predicted_psnr_db")?;
    let (sqnr, ssim, psnr, mse) = (num("sqnr_db")?, num("ssim")?, num("psnr_db")?, num("mse")?);
    let (nonfinite, caption, ref_caption) = (int("nonfinite")?, num("caption")?, num("reference_caption")?);
    let (cost, reference_cost) = (costs("")?, costs("reference_")?);
    Ok((0..frame.height())
        .map(|i| EvalRecord {
            label: label[i].clone(),
            candidate: candidate[i].clone(),
            kind: kind[i].clone(),
            avg_bits: avg_bits[i],
            predicted_sqnr_db: p_sqnr[i],
            predicted_ssim: p_ssim[i],
            predicted_psnr_db: p_psnr[i],
            sqnr_db: sqnr[i],
            ssim: ssim[i],
            psnr_db: psnr[i],
            mse: mse[i],
            nonfinite: nonfinite[i],
            caption: caption[i],
            reference_caption: ref_caption[i],
            cost: cost[i],
            reference_cost: reference_cost[i],
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record with every field set, for round trips here and in readers' tests.
    pub fn record(label: &str, avg_bits: f64, sqnr_db: f64) -> EvalRecord {
        let cost = Cost { file_bytes: 1000, session_bytes: 2000, start_seconds: 0.5, call_ms: 10.0, image_ms: 20.0 };
        EvalRecord {
            label: label.into(),
            candidate: format!("out/{label}"),
            kind: "ilp".into(),
            avg_bits,
            predicted_sqnr_db: sqnr_db + 4.0,
            predicted_ssim: 0.99,
            predicted_psnr_db: 31.0,
            sqnr_db,
            ssim: 0.98,
            psnr_db: 30.0,
            mse: 1e-3,
            nonfinite: 0,
            caption: f64::NAN,
            reference_caption: f64::NAN,
            cost: Cost { file_bytes: 250, call_ms: 12.0, ..cost },
            reference_cost: cost,
        }
    }

    #[test]
    fn evaluations_round_trip_with_their_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.parquet");
        let run = EvalRun {
            format: EVAL_FORMAT,
            reference: "m.onnx".into(),
            device: "cpu".into(),
            sampler: "ddim".into(),
            steps: 4,
            items: vec!["seed=1000".into()],
            held_out: "seeds 1000.. (sensitivity used 0)".into(),
        };
        let records = vec![record("a", 4.0, 25.0), record("b", 6.0, 30.0)];
        write_evals(&path, &run, &records).unwrap();
        let (read_run, read) = read_evals(&path).unwrap();
        assert_eq!(read_run, run);
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].label, "b");
        assert_eq!(read[0].cost, records[0].cost);
        assert!(read[0].caption.is_nan());
        assert_eq!((read[0].size_ratio(), read[0].latency_ratio()), (0.25, 1.2));
    }
}
