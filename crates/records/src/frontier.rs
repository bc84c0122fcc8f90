//! The Pareto frontier of a sweep: the program's plans at each budget next to the uniform
//! plans (every layer at one bit-width), as Parquet or CSV.

use crate::budget::Resource;
use crate::error::{RecordError, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a frontier point comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// A plan of the integer program.
    Ilp,
    /// A plan of the marginal-loss greedy baseline.
    Greedy,
    /// Every quantized layer at one bit-width.
    Uniform,
}

bitsearch_types::named_enum!(PointKind, "frontier point kind", { Ilp => "ilp", Greedy => "greedy", Uniform => "uniform" });

/// One point of the frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FrontierPoint {
    pub kind: PointKind,
    /// Plan file (ILP) or `uniform-W4` etc.
    pub plan: String,
    pub resource: Resource,
    /// The budget (ILP) or the amount used (uniform), in the resource's unit.
    #[serde(with = "crate::float_text")]
    pub budget: f64,
    #[serde(with = "crate::float_text")]
    pub objective: f64,
    #[serde(with = "crate::float_text")]
    pub sqnr_db: f64,
    #[serde(with = "crate::float_text")]
    pub ssim: f64,
    /// The additive image-MSE prediction, dB; NaN in frontiers from before it was recorded.
    #[serde(with = "crate::float_text")]
    pub psnr_db: f64,
    #[serde(with = "crate::float_text")]
    pub memory: f64,
    #[serde(with = "crate::float_text")]
    pub bops: f64,
    #[serde(with = "crate::float_text")]
    pub avg_bits: f64,
    pub status: String,
}

/// Writes the frontier as Parquet (`.parquet`) or CSV (anything else), atomically.
pub fn write_frontier(points: &[FrontierPoint], path: &Path) -> Result<()> {
    let error = |e: &dyn std::fmt::Display| RecordError::file(path, e.to_string());
    let text = |f: fn(&FrontierPoint) -> String| points.iter().map(f).collect::<Vec<_>>();
    let num = |f: fn(&FrontierPoint) -> f64| points.iter().map(f).collect::<Vec<_>>();
    let columns = vec![
        Column::new("kind".into(), text(|p| p.kind.as_str().to_string())),
        Column::new("plan".into(), text(|p| p.plan.clone())),
        Column::new("resource".into(), text(|p| p.resource.name().to_string())),
        Column::new("budget".into(), num(|p| p.budget)),
        Column::new("objective".into(), num(|p| p.objective)),
        Column::new("sqnr_db".into(), num(|p| p.sqnr_db)),
        Column::new("ssim".into(), num(|p| p.ssim)),
        Column::new("psnr_db".into(), num(|p| p.psnr_db)),
        Column::new("memory".into(), num(|p| p.memory)),
        Column::new("bops".into(), num(|p| p.bops)),
        Column::new("avg_bits".into(), num(|p| p.avg_bits)),
        Column::new("status".into(), text(|p| p.status.clone())),
    ];
    let mut frame = DataFrame::new(points.len(), columns).map_err(|e| error(&e))?;
    if path.extension().is_some_and(|e| e == "parquet") {
        return crate::write_parquet(path, &mut frame, META_KEY, "{}".into());
    }
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(&mut frame).map_err(|e| error(&e))?;
    crate::write_file(path, &bytes)
}

/// Parquet key-value metadata key that marks a frontier.
const META_KEY: &str = "bitsearch.frontier";

/// Reads a frontier written by [`write_frontier`] (Parquet or CSV, by extension).
pub fn read_frontier(path: &Path) -> Result<Vec<FrontierPoint>> {
    let error = |message: String| RecordError::file(path, message);
    let frame = if path.extension().is_some_and(|e| e == "parquet") {
        crate::read_parquet(path, META_KEY, "frontier", "bitsearch solve --sweep")?.1
    } else {
        let file = std::fs::File::open(path).map_err(|e| error(format!("cannot open: {e}")))?;
        CsvReader::new(file).finish().map_err(|e| error(format!("not a CSV file: {e}")))?
    };
    let points = || -> PolarsResult<Vec<FrontierPoint>> {
        let text = |name: &str| -> PolarsResult<Vec<String>> {
            Ok(frame.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
        };
        let num = |name: &str| -> PolarsResult<Vec<f64>> {
            Ok(frame.column(name)?.cast(&DataType::Float64)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
        };
        let (kind, plan, resource, status) = (text("kind")?, text("plan")?, text("resource")?, text("status")?);
        let (budget, objective, sqnr, ssim) = (num("budget")?, num("objective")?, num("sqnr_db")?, num("ssim")?);
        let (memory, bops, avg_bits) = (num("memory")?, num("bops")?, num("avg_bits")?);
        let psnr = crate::added_floats(&frame, "psnr_db")?;
        (0..frame.height())
            .map(|i| {
                let resource = resource[i].parse::<Resource>().map_err(|e| PolarsError::ComputeError(e.into()))?;
                let kind = kind[i].parse::<PointKind>().map_err(|e| PolarsError::ComputeError(e.into()))?;
                Ok(FrontierPoint {
                    kind,
                    plan: plan[i].clone(),
                    resource,
                    budget: budget[i],
                    objective: objective[i],
                    sqnr_db: sqnr[i],
                    ssim: ssim[i],
                    psnr_db: psnr[i],
                    memory: memory[i],
                    bops: bops[i],
                    avg_bits: avg_bits[i],
                    status: status[i].clone(),
                })
            })
            .collect()
    };
    points().map_err(|e| error(format!("not a bitsearch frontier: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_points_round_trip_through_json() {
        let point = FrontierPoint {
            kind: PointKind::Ilp,
            plan: "plan_000.yaml".into(),
            resource: Resource::Memory,
            budget: 1e308,
            objective: f64::NEG_INFINITY,
            sqnr_db: f64::INFINITY,
            ssim: 0.5,
            psnr_db: f64::NAN,
            memory: 1e6,
            bops: 2e9,
            avg_bits: 4.0,
            status: "optimal".into(),
        };
        let json = serde_json::to_string(&point).unwrap();
        assert!(json.contains(r#""sqnr_db":"inf""#) && json.contains(r#""psnr_db":"NaN""#), "{json}");
        let back: FrontierPoint = serde_json::from_str(&json).unwrap();
        // NaN equals nothing, so it is compared apart; every other field exactly.
        assert!(back.psnr_db.is_nan(), "{json}");
        assert_eq!(FrontierPoint { psnr_db: 0.0, ..back }, FrontierPoint { psnr_db: 0.0, ..point });
        // What earlier versions stored for a non-finite value still reads.
        let stored: FrontierPoint = serde_json::from_str(&json.replace(r#""inf""#, "null")).unwrap();
        assert!(stored.sqnr_db.is_nan());
    }
}
