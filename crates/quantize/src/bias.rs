//! Bias correction: quantizing a weight shifts the mean of each output channel of its layer by
//! `E[(W_q − W)·x]`, a shift that stays coherent across layers where random rounding noise would
//! average out. One float pass of the calibration items measures it for every (layer, width) the
//! plan stores, with each layer fed its float input, and the apply stage subtracts it from the
//! layer's bias, per step-group configuration (the mean is over the steps that configuration
//! runs).

use crate::{Codebook, Config, Result, Width};
use bitsearch_onnx::{GraphView, Model, rewrite, tensor_to_f32};
use bitsearch_pipeline::workload::{self, Workload};
use bitsearch_records::{Plan, PlanLayer};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::{FLOAT_BITS, Layer, LayerKind};
use ndarray::{ArrayViewD, Axis};
use std::collections::HashMap;

/// Ops whose output shift a weight change makes can be measured (a per-channel output).
const MEASURED_OPS: [&str; 4] = ["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// One step's per-channel sums of a shift and how many values each sum adds up.
type ChannelSums = (Vec<f64>, f64);

/// The measured mean output shift of each (layer, weight width), per step.
#[derive(Debug, Default)]
pub struct BiasShifts {
    sums: HashMap<(String, Width), Vec<ChannelSums>>,
}

impl BiasShifts {
    /// The mean shift per output channel of `layer` at `width` over the steps of `groups`; None
    /// when it was not measured (a layer whose output has no channel axis to correct).
    pub fn get(&self, layer: &str, width: Width, groups: &[usize], plan: &Plan) -> Option<Vec<f32>> {
        let steps = self.sums.get(&(layer.to_string(), width))?;
        let mut total: Option<ChannelSums> = None;
        for &g in groups {
            let [first, last] = *plan.step_groups.get(g)?;
            for (sums, count) in steps.iter().take(last + 1).skip(first) {
                let (acc, n) = total.get_or_insert_with(|| (vec![0.0; sums.len()], 0.0));
                acc.iter_mut().zip(sums).for_each(|(a, s)| *a += s);
                *n += count;
            }
        }
        let (sums, count) = total.filter(|(_, n)| *n > 0.0)?;
        Some(sums.iter().map(|s| (s / count) as f32).collect())
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
    let mut probe = fp.clone();
    let mut tensors = Vec::new();
    let mut keys = Vec::new();
    let view = GraphView::new(fp.graph());
    for (i, (_, layer)) in chosen.iter().enumerate() {
        let Some(weight) = layer.weight.as_deref() else { continue };
        if layer.kind != LayerKind::Weight || !MEASURED_OPS.contains(&layer.op.as_str()) {
            continue;
        }
        let mut widths: Vec<Width> = Vec::new();
        for (config, _) in configs {
            let width = config[i].0;
            if width.bits != FLOAT_BITS && !widths.contains(&width) {
                widths.push(width);
            }
        }
        for width in widths {
            let original = view.initializer(weight).map(tensor_to_f32).transpose()?;
            let Some(original) = original else { continue };
            let delta = codes.get(fp, layer, plan, width)?.dequantize() - &original;
            let prefix = format!("{}/bc/{}", layer.name, width.label());
            let (value, axis) = rewrite::weight_delta_branch(&mut probe, &layer.name, weight, &prefix, &delta)?;
            tensors.push(value);
            keys.push(((layer.name.clone(), width), axis));
        }
    }
    let index: HashMap<&str, usize> = tensors.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let steps = workload.steps();
    let mut shifts = BiasShifts::default();
    workload::observe(workload, &probe, &tensors, options, |tensor, step, values| {
        let Some(&i) = index.get(tensor) else { return };
        let (key, axis) = &keys[i];
        let per_step = shifts.sums.entry(key.clone()).or_insert_with(|| vec![(Vec::new(), 0.0); steps]);
        if let Some(slot) = per_step.get_mut(step) {
            add_channel_sums(slot, values, *axis);
        }
    })?;
    Ok(shifts)
}

/// Adds each channel's sum along `axis` (the last one for `usize::MAX`) and the number of values
/// per channel.
fn add_channel_sums((sums, count): &mut ChannelSums, values: ArrayViewD<'_, f32>, axis: usize) {
    let axis = if axis == usize::MAX { values.ndim().saturating_sub(1) } else { axis };
    if axis >= values.ndim() {
        return;
    }
    let channels = values.shape()[axis];
    if sums.len() != channels {
        *sums = vec![0.0; channels];
    }
    for (sum, channel) in sums.iter_mut().zip(values.axis_iter(Axis(axis))) {
        *sum += channel.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    *count += (values.len() / channels.max(1)) as f64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn channel_sums_average_over_every_other_axis() {
        let mut slot = (Vec::new(), 0.0);
        // [2, 3]: channels on the last axis.
        add_channel_sums(&mut slot, array![[1.0f32, 2.0, 3.0], [3.0, 4.0, 5.0]].into_dyn().view(), usize::MAX);
        assert_eq!(slot, (vec![4.0, 6.0, 8.0], 2.0));
        // [1, 2, 1, 1] pooled convolution outputs: channels on axis 1; sums keep adding.
        let mut slot = (Vec::new(), 0.0);
        for _ in 0..2 {
            add_channel_sums(&mut slot, array![[[[0.5f32]], [[-1.0]]]].into_dyn().view(), 1);
        }
        assert_eq!(slot, (vec![1.0, -2.0], 2.0));
    }
}
