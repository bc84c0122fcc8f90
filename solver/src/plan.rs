//! The plan of a solved program, as [`bitsearch_records::Plan`] records it.

use crate::error::{Result, SolverError};
use crate::options::{SolveOptions, Solved};
use crate::problem::{Precision, Problem};
use bitsearch_records::plan::{FitUsed, PLAN_FORMAT, PlanSummary, Prediction, SolverReport, Source, absolute};
use bitsearch_records::{Plan, PlanLayer, SensitivityTable};
use bitsearch_types::{FLOAT_BITS, WeightFormat};
use std::path::{Path, PathBuf};

/// The plan of `solved`; `table_path` and its bytes' hash identify the sensitivity table.
pub fn plan(
    problem: &Problem,
    solved: &Solved,
    options: &SolveOptions,
    table: &SensitivityTable,
    table_path: &Path,
) -> Result<Plan> {
    let layers = problem
        .layers
        .iter()
        .zip(&solved.assignment)
        .map(|(layer, chosen)| {
            let bits = |f: fn(Precision) -> u32| {
                chosen.iter().map(|o| o.map_or(FLOAT_BITS, |o| f(layer.options[o]))).collect::<Vec<_>>()
            };
            let mut stored: Vec<usize> = chosen.iter().flatten().copied().collect();
            stored.sort_by_key(|&o| layer.options[o].weight);
            stored.dedup_by_key(|o| layer.options[*o].weight);
            let weight_bytes =
                if layer.protected { layer.float_bytes() } else { stored.iter().map(|&o| layer.bytes[o]).sum() };
            PlanLayer {
                layer: layer.layer.clone(),
                protected: layer.protected,
                weights: chosen.iter().map(|o| o.map_or(WeightFormat::Float, |o| layer.options[o].weight)).collect(),
                a_bits: bits(|p| p.a_bits),
                weight_bytes,
            }
        })
        .collect();
    let e = &solved.evaluation;
    let full = problem.full_precision();
    Ok(Plan {
        bitsearch_plan: PLAN_FORMAT,
        source: Source {
            sensitivity_table: absolute(table_path),
            sensitivity_sha256: sha256(table_path)?,
            model: PathBuf::from(&table.meta.model),
            model_sha256: table.meta.model_sha256.clone(),
        },
        quantizer: table.meta.quantizer,
        step_groups: problem.step_groups.clone(),
        budgets: solved.limits.clone(),
        prediction: Prediction {
            objective: e.objective,
            content_weight: options.content_weight,
            content_share: solved.content_share,
            sqnr_db: e.predicted_sqnr_db(),
            ssim: e.predicted_ssim(),
            quality_loss: e.quality_loss,
            content_loss: e.content_loss,
            psnr_db: e.predicted_psnr_db(),
            loss: problem.basis,
            shrink: problem.shrunk,
            fit: problem.fit.as_ref().map(|f| FitUsed {
                file: absolute(&f.file),
                sha256: f.sha256.clone(),
                additive_sqnr_db: e.additive_sqnr_db(),
                additive_ssim: e.additive_ssim(),
                additive_psnr_db: e.additive_psnr_db(),
            }),
        },
        solver: SolverReport {
            name: solved.solver.into(),
            status: solved.status.to_string(),
            gap: solved.gap,
            seconds: solved.seconds,
            variables: solved.variables,
            constraints: solved.constraints,
        },
        target: None,
        shrink_search: None,
        summary: PlanSummary {
            layers: problem.layers.len(),
            protected: problem.layers.iter().filter(|l| l.protected).count(),
            float_bytes: full.memory,
            bytes: e.usage.memory,
            compression: full.memory / e.usage.memory.max(1.0),
            bops: e.usage.bops,
            avg_bits: e.usage.avg_bits,
        },
        layers,
    })
}

/// The sha256 of the file at `path` (a sensitivity table, a prediction fit).
pub fn sha256(path: &Path) -> Result<String> {
    bitsearch_types::sha256_file(path)
        .map_err(|e| SolverError::File { path: path.display().to_string(), message: format!("cannot read: {e}") })
}
