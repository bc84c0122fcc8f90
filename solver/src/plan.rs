//! Plans: the YAML file `solve` writes and `quantize` reads — the bits of every layer (per step
//! group), the quantizer that goes with them, the budgets and how much of each was used, the
//! predicted metrics, the solver's status, and the sensitivity table the plan came from.

use crate::error::{Result, SolverError};
use crate::ilp::{Limit, SolveOptions, Solved};
use crate::problem::{FLOAT_BITS, Problem};
use bitsearch_sensitivity::SensitivityTable;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format version written in every plan.
pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub bitsearch_plan: u32,
    pub source: Source,
    pub quantizer: Quantizer,
    /// `[first, last]` step of each group; per-layer bit lists follow this order.
    pub step_groups: Vec<[usize; 2]>,
    pub budgets: Vec<Limit>,
    pub prediction: Prediction,
    pub solver: SolverReport,
    pub summary: PlanSummary,
    pub layers: Vec<PlanLayer>,
}

/// Where the plan's numbers come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub sensitivity_table: String,
    pub sensitivity_sha256: String,
    pub model: String,
    pub model_sha256: String,
}

/// The weight quantizer the sensitivity was measured with, which `quantize` must reuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantizer {
    pub clipping: String,
    pub clip_grid: usize,
    pub group_size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    pub objective: f64,
    pub content_weight: f64,
    pub content_share: Option<f64>,
    /// Denoiser-output SQNR (additive noise over quality layers), dB.
    pub sqnr_db: f64,
    /// Final-image SSIM (additive loss over content layers).
    pub ssim: f64,
    pub quality_loss: f64,
    pub content_loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolverReport {
    pub name: String,
    pub status: String,
    /// Relative optimality gap; 0 when proven optimal, NaN when unknown.
    pub gap: f64,
    pub seconds: f64,
    pub variables: usize,
    pub constraints: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSummary {
    pub layers: usize,
    pub protected: usize,
    pub float_bytes: f64,
    pub bytes: f64,
    pub compression: f64,
    pub bops: f64,
    pub avg_bits: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanLayer {
    pub name: String,
    pub op: String,
    pub role: String,
    pub group: String,
    pub protected: bool,
    pub params: u64,
    /// Weight and activation bits per step group; 32 = float.
    pub w_bits: Vec<u32>,
    pub a_bits: Vec<u32>,
    /// Stored bytes of the weight (every distinct weight bit-width once).
    pub weight_bytes: u64,
}

impl Plan {
    /// The plan of `solved`; `table_path` and its bytes' hash identify the sensitivity table.
    pub fn new(
        problem: &Problem,
        solved: &Solved,
        options: &SolveOptions,
        table: &SensitivityTable,
        table_path: &Path,
    ) -> Result<Self> {
        let config = &table.meta.config;
        let layers = problem
            .layers
            .iter()
            .zip(&solved.assignment)
            .map(|(layer, chosen)| {
                let bits = |f: fn(crate::problem::Precision) -> u32| {
                    chosen.iter().map(|o| o.map_or(FLOAT_BITS, |o| f(layer.options[o]))).collect::<Vec<_>>()
                };
                let w_bits = bits(|p| p.w_bits);
                let mut stored: Vec<usize> = chosen.iter().flatten().copied().collect();
                stored.sort_by_key(|&o| layer.options[o].w_bits);
                stored.dedup_by_key(|o| layer.options[*o].w_bits);
                let weight_bytes =
                    if layer.protected { layer.float_bytes() } else { stored.iter().map(|&o| layer.bytes[o]).sum() };
                PlanLayer {
                    name: layer.name.clone(),
                    op: layer.op.clone(),
                    role: layer.role.clone(),
                    group: layer.group.to_string(),
                    protected: layer.protected,
                    params: layer.params,
                    w_bits,
                    a_bits: bits(|p| p.a_bits),
                    weight_bytes,
                }
            })
            .collect();
        let e = &solved.evaluation;
        let full = problem.full_precision();
        Ok(Self {
            bitsearch_plan: PLAN_VERSION,
            source: Source {
                sensitivity_table: table_path.display().to_string(),
                sensitivity_sha256: bitsearch_types::sha256_file(table_path).map_err(|e| SolverError::File {
                    path: table_path.display().to_string(),
                    message: format!("cannot read: {e}"),
                })?,
                model: table.meta.model.clone(),
                model_sha256: table.meta.model_sha256.clone(),
            },
            quantizer: Quantizer {
                clipping: config.clipping.to_string(),
                clip_grid: config.clip_grid,
                group_size: config.group_size,
            },
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
            },
            solver: SolverReport {
                name: "HiGHS (good_lp)".into(),
                status: solved.status.clone(),
                gap: solved.gap,
                seconds: solved.seconds,
                variables: solved.variables,
                constraints: solved.constraints,
            },
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

    /// Writes the plan as YAML, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let error = |message: String| SolverError::File { path: path.display().to_string(), message };
        let yaml = serde_norway::to_string(self).map_err(|e| error(e.to_string()))?;
        bitsearch_types::write_atomically(path, yaml.as_bytes()).map_err(|e| error(format!("cannot write: {e}")))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let error = |message: String| SolverError::File { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        serde_norway::from_str(&text).map_err(|e| error(format!("not a bitsearch plan: {e}")))
    }
}
