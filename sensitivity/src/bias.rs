//! Bias correction inside the probes: a probe's quantized weight shifts its layer's mean
//! output, and the corrected bias takes that shift out, as `quantize --bias-correction` does.

use crate::error::Result;
use crate::probes::Probe;
use crate::weights::Weights;
use crate::window::bias_of;
use bitsearch_onnx::{GraphView, Model, tensor_to_f32};
use bitsearch_pipeline::workload::Workload;
use bitsearch_pipeline::workload::shift::{self, WeightChange};
use bitsearch_quant::fake_quantized_weight;
use bitsearch_runtime::SessionOptions;
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{Layer, WeightFormat};
use ndarray::ArrayD;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;

/// Per (layer, weight form, step group): the bias initializer and its corrected values.
pub(crate) type CorrectedBiases = HashMap<(usize, WeightFormat, usize), (String, ArrayD<f32>)>;

/// What the correction reads of the run.
pub(crate) struct BiasCorrection<'a> {
    /// The float denoiser, whose weights the probes quantize.
    pub model: &'a Model,
    pub layers: &'a [Layer],
    pub scheme: &'a WeightScheme,
    /// The step groups, over each of which a shift is averaged.
    pub steps: &'a [Range<usize>],
    pub options: SessionOptions,
}

impl BiasCorrection<'_> {
    /// For every (layer, weight form) of `probes` whose layer has a bias initializer, one pass
    /// on `workload` measures the mean output shift of the quantized weight (float input); per
    /// step group, the bias minus that shift over the group. The weights it quantizes stay in
    /// `weights` for the probes.
    pub fn biases(
        &self,
        workload: &mut dyn Workload,
        probes: &[Probe],
        weights: &mut Weights,
    ) -> Result<CorrectedBiases> {
        let view = GraphView::new(self.model.graph());
        let (mut changes, mut keys) = (Vec::new(), Vec::new());
        for probe in probes {
            let layer = &self.layers[probe.layer];
            let (Some(form), Some(weight)) = (probe.weight, layer.weight.as_deref()) else { continue };
            let key = (probe.layer, form);
            let Some(bias) = bias_of(&view, layer) else { continue };
            if keys.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let original = view.initializer(weight).map(tensor_to_f32).transpose()?.unwrap_or_default();
            if let Entry::Vacant(slot) = weights.entry(key) {
                slot.insert(fake_quantized_weight(self.model, layer, self.scheme, form, None)?);
            }
            let delta = &weights[&key].0 - &original;
            changes.push(WeightChange { layer: layer.name.clone(), weight: weight.to_string(), delta });
            keys.push((key, bias));
        }
        let sums = shift::output_shifts(workload, self.model, &changes, &self.options)?;
        let mut corrected = HashMap::new();
        for (((layer, form), (name, bias)), sums) in keys.into_iter().zip(sums) {
            for (g, steps) in self.steps.iter().enumerate() {
                let Some(shift) = shift::mean_shift(&sums, steps.clone()).filter(|s| s.len() == bias.len()) else {
                    continue;
                };
                let mut values = bias.clone();
                values.iter_mut().zip(&shift).for_each(|(b, s)| *b -= s);
                corrected.insert((layer, form, g), (name.clone(), values));
            }
        }
        Ok(corrected)
    }
}
