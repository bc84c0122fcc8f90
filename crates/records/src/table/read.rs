//! Rows read back from a table's Parquet frame.

use super::ProbeRow;
use bitsearch_types::{Component, LayerInfo, MetricGroup, Role, WeightFormat};
use polars::prelude::*;

pub(super) fn rows_of(frame: &DataFrame) -> PolarsResult<Vec<ProbeRow>> {
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
    let (w_split, w_fp8, w_gptq) = (bools("w_split")?, bools("w_fp8")?, bools("w_gptq")?);
    let numbers = |name: &str| if frame.column(name).is_ok() { u32s(name) } else { Ok(vec![0; frame.height()]) };
    let (w_group, w_rank) = (numbers("w_group")?, numbers("w_rank")?);
    let outputs = if frame.column("outputs").is_ok() { u64s("outputs")? } else { vec![None; frame.height()] };
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
                    outputs: outputs[i],
                },
                weight: WeightFormat::from_columns((w_bits[i], w_split[i], w_group[i], w_fp8[i], w_gptq[i], w_rank[i]))
                    .map_err(|e| parsed("w_bits", i, &w_bits[i].to_string(), e))?,
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
