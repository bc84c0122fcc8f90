//! The mean output shift a weight change makes to a layer, measured on a workload's items: the
//! quantity bias correction subtracts. Each changed layer gets a copy beside it that reads the
//! weight change in place of its weight (these layers are linear in their weight), fed the
//! layer's float input, and one pass returns the change's per-channel sums at every step.

use super::{Result, Workload, observe};
use bitsearch_onnx::{Model, rewrite};
use bitsearch_runtime::SessionOptions;
use ndarray::{ArrayD, ArrayViewD, Axis};

/// Ops whose output change has a channel axis to correct.
pub const SHIFTED_OPS: [&str; 4] = ["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// One step's per-channel sums of a shift and how many values each sum adds up.
pub type ChannelSums = (Vec<f64>, f64);

/// `delta` added to the weight initializer `weight` of the node `layer`.
#[derive(Debug, Clone)]
pub struct WeightChange {
    pub layer: String,
    pub weight: String,
    pub delta: ArrayD<f32>,
}

/// Runs every batch of `workload` through `model` with a delta branch beside each change; per
/// change (in order), per step, the channel sums of the change it makes to its layer's output.
pub fn output_shifts(
    workload: &mut dyn Workload,
    model: &Model,
    changes: &[WeightChange],
    options: &SessionOptions,
) -> Result<Vec<Vec<ChannelSums>>> {
    let mut probe = model.clone();
    let mut branches = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let prefix = format!("{}/shift{i}", change.layer);
        branches.push(rewrite::weight_delta_branch(&mut probe, &change.layer, &change.weight, &prefix, &change.delta)?);
    }
    let tensors: Vec<String> = branches.iter().map(|(value, _)| value.clone()).collect();
    let steps = workload.steps();
    let mut sums = vec![vec![(Vec::new(), 0.0); steps]; changes.len()];
    observe(workload, &probe, &tensors, options, |tensor, _, step, values| {
        if let Some(i) = tensors.iter().position(|t| t == tensor)
            && let Some(slot) = sums[i].get_mut(step)
        {
            add_channel_sums(slot, values, branches[i].1);
        }
    })?;
    Ok(sums)
}

/// The mean shift per channel over `steps` of one change's sums; None when nothing was seen.
pub fn mean_shift(sums: &[ChannelSums], steps: impl IntoIterator<Item = usize>) -> Option<Vec<f32>> {
    let mut total: Option<ChannelSums> = None;
    for (channel_sums, count) in steps.into_iter().filter_map(|s| sums.get(s)) {
        let (acc, n) = total.get_or_insert_with(|| (vec![0.0; channel_sums.len()], 0.0));
        acc.iter_mut().zip(channel_sums).for_each(|(a, s)| *a += s);
        *n += count;
    }
    let (acc, count) = total.filter(|(_, n)| *n > 0.0)?;
    Some(acc.iter().map(|s| (s / count) as f32).collect())
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
    fn channel_sums_average_over_every_other_axis_and_steps() {
        let mut slot = (Vec::new(), 0.0);
        // [2, 3]: channels on the last axis.
        add_channel_sums(&mut slot, array![[1.0f32, 2.0, 3.0], [3.0, 4.0, 5.0]].into_dyn().view(), usize::MAX);
        assert_eq!(slot, (vec![4.0, 6.0, 8.0], 2.0));
        // [1, 2, 1, 1] pooled convolution outputs: channels on axis 1; sums keep adding.
        let mut pooled = (Vec::new(), 0.0);
        for _ in 0..2 {
            add_channel_sums(&mut pooled, array![[[[0.5f32]], [[-1.0]]]].into_dyn().view(), 1);
        }
        assert_eq!(pooled, (vec![1.0, -2.0], 2.0));
        // Steps 0 and 2 of three: (1 + 1) / 2 items and (-2 + 3) / 3.
        let steps = vec![pooled.clone(), (vec![100.0, 100.0], 1.0), (vec![1.0, 3.0], 1.0)];
        assert_eq!(mean_shift(&steps, [0, 2]), Some(vec![2.0 / 3.0, 1.0 / 3.0]));
        assert_eq!(mean_shift(&steps, [5]), None);
    }
}
