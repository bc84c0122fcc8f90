//! The calibration items (the sensitivity run's, never the evaluation's) as a workload, and the
//! activation ranges of the layers a plan gives 8-bit activations: one full-precision pass that
//! returns those activations at every step.

use crate::{QuantizeError, Result};
use bitsearch_onnx::Model;
use bitsearch_pipeline::workload::{self, Workload, WorkloadSpec};
use bitsearch_quant::{ActRange, StepRanges, range_key, without_first_row};
use bitsearch_records::{Plan, PlanLayer};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::{FLOAT_BITS, Layer, LayerKind};
use std::collections::HashMap;
use std::path::Path;

/// Per-step ranges of the calibrated activations, read per step group.
#[derive(Debug, Default)]
pub struct ActivationRanges {
    ranges: HashMap<String, StepRanges>,
    step_groups: Vec<[usize; 2]>,
    per_step: bool,
}

impl ActivationRanges {
    /// The range of `key` (a [`range_key`]) over the steps of `groups` (over every step when the plan's
    /// quantizer keeps one range for all steps).
    pub fn get(&self, key: &str, groups: &[usize]) -> Option<ActRange> {
        let ranges = self.ranges.get(key)?;
        let range = if self.per_step {
            groups
                .iter()
                .filter_map(|&g| self.step_groups.get(g))
                .flat_map(|&[first, last]| first..=last)
                .filter_map(|step| ranges.get(step))
                .fold(ActRange::EMPTY, ActRange::union)
        } else {
            ranges.merged()
        };
        (!range.is_empty()).then_some(range)
    }
}

/// The calibration items as a workload of the float `model`, checked to run the plan's steps.
pub fn open(model: &Path, spec: &WorkloadSpec, plan: &Plan, plan_path: &Path) -> Result<Box<dyn Workload>> {
    let workload = workload::open(model, spec)?;
    if workload.steps() != plan.steps() {
        return Err(QuantizeError::Plan {
            plan: plan_path.to_path_buf(),
            field: "step_groups".into(),
            message: format!(
                "the plan's step groups cover {} steps; calibration runs {}",
                plan.steps(),
                workload.steps()
            ),
        });
    }
    Ok(workload)
}

/// Runs the calibration items through `fp` and records the ranges of the inputs (and, for
/// weight layers, outputs) of every layer with 8-bit activations, keyed by
/// [`range_key`]: without their first token row for the layers `first_row_float` picks.
pub fn calibrate(
    workload: &mut dyn Workload,
    fp: &Model,
    chosen: &[(PlanLayer, Layer)],
    plan: &Plan,
    options: &SessionOptions,
    first_row_float: impl Fn(&Layer) -> bool,
) -> Result<ActivationRanges> {
    let mut keys: Vec<(String, bool)> = Vec::new();
    for (p, layer) in chosen {
        if p.a_bits.iter().all(|&a| a == FLOAT_BITS) {
            continue;
        }
        let first = first_row_float(layer);
        keys.extend(layer.inputs.iter().map(|t| (t.clone(), first)));
        if layer.kind == LayerKind::Weight {
            keys.push((layer.output.clone(), first));
        }
    }
    keys.sort();
    keys.dedup();
    let mut tensors: Vec<String> = keys.iter().map(|(t, _)| t.clone()).collect();
    tensors.dedup();
    let mut ranges: HashMap<String, StepRanges> = HashMap::new();
    workload::observe(workload, fp, &tensors, options, |tensor, _, step, values| {
        for (_, first) in keys.iter().filter(|(t, _)| t == tensor) {
            let observed = if *first { without_first_row(values.view()) } else { values.view() };
            ranges.entry(range_key(tensor, *first)).or_default().observe(step, observed);
        }
    })?;
    Ok(ActivationRanges { ranges, step_groups: plan.step_groups.clone(), per_step: plan.quantizer.activation.per_step })
}
