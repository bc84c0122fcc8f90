//! Bias correction: quantizing a weight shifts the mean of each output channel of its layer by
//! `E[(W_q − W)·x]`, a shift that stays coherent across layers where random rounding noise would
//! average out. One float pass of the calibration items measures it for every (layer, width) the
//! plan stores, with each layer fed its float input ([`workload::shift`]), and the apply stage
//! subtracts it from the layer's bias, per step-group configuration (the mean is over the steps
//! that configuration runs).

use crate::{Codebook, Config, Result};
use bitsearch_onnx::{GraphView, Model, tensor_to_f32};
use bitsearch_pipeline::workload::Workload;
use bitsearch_pipeline::workload::shift::{self, ChannelSums, SHIFTED_OPS, WeightChange};
use bitsearch_records::{Plan, PlanLayer};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::{Layer, LayerKind, WeightFormat};
use std::collections::HashMap;

/// The measured mean output shift of each (layer, weight width), per step.
#[derive(Debug, Default)]
pub struct BiasShifts {
    sums: HashMap<(String, WeightFormat), Vec<ChannelSums>>,
}

impl BiasShifts {
    /// The mean shift per output channel of `layer` stored in `form` over the steps of `groups`;
    /// None when it was not measured (a layer whose output has no channel axis to correct).
    pub fn get(&self, layer: &str, form: WeightFormat, groups: &[usize], plan: &Plan) -> Option<Vec<f32>> {
        let sums = self.sums.get(&(layer.to_string(), form))?;
        let steps = groups.iter().filter_map(|&g| plan.step_groups.get(g)).flat_map(|&[first, last]| first..=last);
        shift::mean_shift(sums, steps)
    }
}

/// Runs the calibration items through `fp` with, beside every layer the plan quantizes, a copy
/// of it computing `(W_q − W)·x` at each of its weight widths, and returns the mean shifts.
pub fn measure(
    workload: &mut dyn Workload,
    fp: &Model,
    chosen: &[(PlanLayer, Layer)],
    configs: &[(Config, Vec<usize>)],
    codes: &mut Codebook,
    plan: &Plan,
    options: &SessionOptions,
) -> Result<BiasShifts> {
    let view = GraphView::new(fp.graph());
    let mut changes = Vec::new();
    let mut keys = Vec::new();
    for (i, (_, layer)) in chosen.iter().enumerate() {
        let Some(weight) = layer.weight.as_deref() else { continue };
        let Some(original) = view.initializer(weight) else { continue };
        if layer.kind != LayerKind::Weight || !SHIFTED_OPS.contains(&layer.op.as_str()) {
            continue;
        }
        let original = tensor_to_f32(original)?;
        let mut forms: Vec<WeightFormat> = Vec::new();
        for (config, _) in configs {
            if let Some(form) = config[i].0.filter(|f| !forms.contains(f)) {
                forms.push(form);
            }
        }
        for form in forms {
            let delta = codes.get(fp, layer, plan, form)?.dequantize() - &original;
            changes.push(WeightChange { layer: layer.name.clone(), weight: weight.to_string(), delta });
            keys.push((layer.name.clone(), form));
        }
    }
    let sums = shift::output_shifts(workload, fp, &changes, options)?;
    Ok(BiasShifts { sums: keys.into_iter().zip(sums).collect() })
}
