//! A base plan (`sensitivity --base`): the operating point every probe starts from. The
//! additive model of a float-based table misses how layers' errors interact, and misses most
//! for mixed plans far from float; probing around a plan measures each change with the other
//! layers already quantized.

use crate::config::SensitivityConfig;
use crate::error::{Result, SensitivityError};
use bitsearch_onnx::{Model, rewrite};
use bitsearch_quant::fake_quantized_weight;
use bitsearch_records::{BaseLayer, BasePoint, Plan};
use bitsearch_types::{FLOAT_BITS, Layer, WeightFormat};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The base plan applied to the denoiser.
#[derive(Debug)]
pub(crate) struct Base {
    /// The denoiser with every layer the plan quantizes holding its fake-quantized weight.
    pub model: Arc<Model>,
    pub point: BasePoint,
}

impl Base {
    /// Reads the plan at `path` and applies it to `float`, whose layers are `layers` and whose
    /// sha256 is `model_sha256`. The plan must come from this model, quantize with the run's
    /// weight quantizer, and give each layer one weight form and float activations.
    pub fn open(
        path: &Path,
        float: &Model,
        layers: &[Layer],
        config: &SensitivityConfig,
        model_sha256: &str,
    ) -> Result<Self> {
        let refuse = |message: String| SensitivityError::config(format!("base: {}", path.display()), message);
        let plan = Plan::read(path)?;
        if plan.source.model_sha256 != model_sha256 {
            return Err(refuse(format!(
                "was solved for another model ({}, sha256 {}…)",
                plan.source.model.display(),
                plan.source.model_sha256.chars().take(12).collect::<String>()
            )));
        }
        if plan.quantizer.weight != config.quantizer.weight {
            return Err(refuse(
                "its weight quantizer (clipping, grid, group size) differs from this run's; the probes and the base \
                 must quantize alike"
                    .into(),
            ));
        }
        let mut weights = HashMap::new();
        let mut based = Vec::new();
        for p in &plan.layers {
            let index = layers.iter().position(|l| l.component == p.layer.component && l.name == p.layer.name);
            let Some(index) = index else {
                return Err(refuse(format!("layer '{}' is not a layer of the model", p.layer.id())));
            };
            if p.a_bits.iter().any(|&a| a != FLOAT_BITS) {
                return Err(refuse(format!(
                    "layer '{}' quantizes activations; a base holds weights only",
                    p.layer.id()
                )));
            }
            let form = p.weight_form(0);
            if (1..plan.step_groups.len()).any(|g| p.weight_form(g) != form) {
                return Err(refuse(format!(
                    "layer '{}' changes weights between step groups; a base is one configuration",
                    p.layer.id()
                )));
            }
            let (Some(form), Some(name)) = (form, layers[index].weight.as_ref()) else { continue };
            weights.insert(
                name.clone(),
                fake_quantized_weight(float, &layers[index], &config.quantizer.weight, form, None)?.0,
            );
            based.push(BaseLayer::new(p.layer.component, &p.layer.name, form));
        }
        if based.is_empty() {
            return Err(refuse("quantizes no layer: the float model is the base already".into()));
        }
        let mut model = float.clone();
        rewrite::replace_initializers(&mut model, &weights);
        let plan_sha256 = bitsearch_types::sha256_file(path)
            .map_err(|e| SensitivityError::table(path, format!("cannot read: {e}")))?;
        let point = BasePoint { plan: path.display().to_string(), plan_sha256, layers: based };
        Ok(Self { model: Arc::new(model), point })
    }

    /// Whether `form` is the plan's own weight for `layer`: a probe there measures the base.
    pub fn holds(&self, layer: &Layer, form: WeightFormat) -> bool {
        self.point.layers.contains(&BaseLayer::new(layer.component, &layer.name, form))
    }
}
