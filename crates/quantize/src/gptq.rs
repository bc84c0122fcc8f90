//! The GPTQ-rounded codes of a plan: its GPTQ layers' input moments measured on the calibration
//! items (the sensitivity run's, on which its probes measured them), then every (layer, form)
//! the plan gives GPTQ rounded once into the codebook the models are built from.

use crate::{Codebook, QuantizeError, Result};
use bitsearch_onnx::{GraphView, Model};
use bitsearch_pipeline::workload::Workload;
use bitsearch_pipeline::workload::moments::{Wanted, second_moments};
use bitsearch_records::{Plan, PlanLayer};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::{Layer, Rounding, WeightFormat};

/// Whether any layer of `plan` takes GPTQ rounding in any step group.
pub(crate) fn used(plan: &Plan) -> bool {
    plan.layers.iter().flat_map(|l| &l.weights).any(|w| w.rounding() == Rounding::Gptq)
}

/// Rounds every GPTQ form of `chosen` into `codebook`, from one pass of `fp` on `workload`.
pub(crate) fn round(
    workload: &mut dyn Workload,
    fp: &Model,
    chosen: &[(PlanLayer, Layer)],
    plan: &Plan,
    options: &SessionOptions,
    codebook: &mut Codebook,
) -> Result<()> {
    let view = GraphView::new(fp.graph());
    let mut layers: Vec<(&Layer, Vec<WeightFormat>)> = Vec::new();
    let mut wanted = Vec::new();
    for (p, layer) in chosen {
        let mut forms: Vec<WeightFormat> =
            p.weights.iter().copied().filter(|w| w.rounding() == Rounding::Gptq).collect();
        forms.sort_unstable();
        forms.dedup();
        if forms.is_empty() {
            continue;
        }
        let Some(moment) = Wanted::of(&view, layer) else {
            return Err(QuantizeError::Layer {
                layer: layer.name.clone(),
                message: format!("{} has no GPTQ rounding here: only Gemm, MatMul and ungrouped 2-D Conv", forms[0]),
            });
        };
        wanted.push(moment);
        layers.push((layer, forms));
    }
    log::info!("GPTQ: measuring the input moments of {} layer(s) on {} item(s)", layers.len(), workload.items().len());
    second_moments(workload, fp, &wanted, options, |i, moment| {
        let (layer, forms) = &layers[i];
        for &form in forms {
            codebook.round(fp, layer, plan, form, moment)?;
        }
        Ok::<(), QuantizeError>(())
    })
}
