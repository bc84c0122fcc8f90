//! Step control: what each denoising step of a pass runs. The reference pass records every
//! step's prediction; a probe's pass stands in the reference before its step group, overrides
//! the probed layer during it (below the window's cut at its first step where the cut is fed),
//! and runs in float after it.

use crate::cut::CutCache;
use bitsearch_metrics::{Sqnr, count_nonfinite};
use bitsearch_pipeline::sampler::SampleError;
use bitsearch_pipeline::workload::{Evaluate, StepControl};
use ndarray::{ArrayD, ArrayViewD};
use std::collections::HashMap;
use std::ops::Range;

/// Values fed to a session by name.
pub(crate) type Feeds<'a> = Vec<(&'a str, ArrayViewD<'a, f32>)>;

/// The activation quantizers' parameters (initializer, value) of every step a probe quantizes.
pub(crate) type ActParams = HashMap<usize, Vec<(String, ArrayD<f32>)>>;

/// Records the prediction of every step (the reference pass).
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub outputs: Vec<ArrayD<f32>>,
}

impl StepControl for Record {
    fn step(&mut self, _: usize, step: usize, evaluate: &mut Evaluate<'_>) -> Result<ArrayD<f32>, SampleError> {
        let output = first(evaluate(&[])?, step)?;
        if self.outputs.len() != step {
            return Err(SampleError::Denoiser(format!("step {step} came out of order")));
        }
        self.outputs.push(output.clone());
        Ok(output)
    }
}

/// Where a window's probes may run below its cut: the loaded model that is the cut, and the
/// cache of what crosses it.
#[derive(Clone, Copy)]
pub(crate) struct Below<'a> {
    pub at: Option<usize>,
    pub window: usize,
    pub cache: &'a CutCache,
}

/// One probe's run: before its step group the stored FP predictions stand in for the network
/// (the inputs are the FP ones, so the outputs would be too); during the group the layer is
/// quantized, its first step below the window's cut where the cut is loaded and fed; after it
/// the network runs in float on the drifted inputs.
pub(crate) struct ProbeControl<'a> {
    pub reference: &'a [ArrayD<f32>],
    /// The loaded model that is the window's cut, and the values crossing it at the group's
    /// first step.
    pub cut: Option<(usize, Feeds<'a>)>,
    pub steps: Range<usize>,
    pub weight: Option<(&'a str, ArrayViewD<'a, f32>)>,
    /// The layer's bias corrected for the quantized weight's mean output shift.
    pub bias: Option<(&'a str, ArrayViewD<'a, f32>)>,
    pub act_params: &'a ActParams,
    pub sqnr: &'a mut Sqnr,
    pub nonfinite: &'a mut u64,
}

impl StepControl for ProbeControl<'_> {
    fn step(&mut self, _: usize, step: usize, evaluate: &mut Evaluate<'_>) -> Result<ArrayD<f32>, SampleError> {
        let fp =
            self.reference.get(step).ok_or_else(|| SampleError::Denoiser(format!("no reference for step {step}")))?;
        if step < self.steps.start {
            self.sqnr.add(fp.view(), fp.view());
            return Ok(fp.clone());
        }
        let mut overrides: Vec<(&str, ArrayViewD<'_, f32>)> = Vec::new();
        if self.steps.contains(&step) {
            overrides.extend(self.weight.as_ref().map(|(name, w)| (*name, w.view())));
            overrides.extend(self.bias.as_ref().map(|(name, b)| (*name, b.view())));
            if let Some(params) = self.act_params.get(&step) {
                overrides.extend(params.iter().map(|(name, v)| (name.as_str(), v.view())));
            }
        }
        if let Some((_, fed)) = self.cut.as_ref().filter(|_| step == self.steps.start) {
            overrides.extend(fed.iter().map(|(name, v)| (*name, v.view())));
        }
        let output = first(evaluate(&overrides)?, step)?;
        self.sqnr.add(fp.view(), output.view());
        *self.nonfinite += count_nonfinite(output.view());
        Ok(output)
    }

    fn model(&self, _: usize, step: usize) -> Option<usize> {
        self.cut.as_ref().filter(|_| step == self.steps.start).map(|(at, _)| *at)
    }
}

/// The first of the denoiser's outputs: its prediction.
fn first(mut outputs: Vec<ArrayD<f32>>, step: usize) -> Result<ArrayD<f32>, SampleError> {
    if outputs.is_empty() {
        return Err(SampleError::Denoiser(format!("step {step}: the denoiser returned nothing")));
    }
    Ok(outputs.swap_remove(0))
}
