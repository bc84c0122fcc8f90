//! A plan checked against the model it is applied to: the same model (by sha256), every plan
//! layer matched to the model's layer of that name.

use crate::{ACTIVATION_BITS, QuantizeError, Result, io_error};
use bitsearch_onnx::rewrite;
use bitsearch_onnx::{Model, discover_layers};
use bitsearch_pipeline::workload;
use bitsearch_quant::SPLIT_BITS;
use bitsearch_records::{Plan, PlanLayer};
use bitsearch_types::{Component, FLOAT_BITS, Layer, WeightFormat};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A plan checked against the model it is applied to.
pub(crate) struct Prepared {
    pub plan: Plan,
    /// The denoiser file and its sha256.
    pub denoiser: PathBuf,
    pub sha: String,
    /// The denoiser, every node named.
    pub fp: Model,
    /// Each plan layer with the model's layer of that name.
    pub chosen: Vec<(PlanLayer, Layer)>,
}

impl Prepared {
    pub fn new(model: &Path, plan_path: &Path) -> Result<Self> {
        let plan = Plan::read(plan_path)?;
        let denoiser = workload::denoiser_file(model);
        let sha = bitsearch_types::sha256_file(&denoiser).map_err(io_error(&denoiser))?;
        if sha != plan.source.model_sha256 {
            return Err(QuantizeError::OtherModel {
                plan: plan_path.to_path_buf(),
                plan_model: plan.source.model.clone(),
                plan_sha: plan.source.model_sha256.chars().take(12).collect(),
                model: model.to_path_buf(),
                model_sha: sha.chars().take(12).collect(),
            });
        }
        let mut fp = Model::load(&denoiser)?;
        rewrite::name_nodes(&mut fp);
        let layers = discover_layers(&fp, Component::Unet)?;
        let chosen = match_layers(&plan, plan_path, &layers, model)?;
        Ok(Self { plan, denoiser, sha, fp, chosen })
    }
}

/// Each plan layer with the model's layer of that name.
fn match_layers(plan: &Plan, plan_path: &Path, layers: &[Layer], model: &Path) -> Result<Vec<(PlanLayer, Layer)>> {
    let by_name: HashMap<&str, &Layer> = layers.iter().map(|l| (l.name.as_str(), l)).collect();
    let groups = plan.step_groups.len();
    plan.layers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let field = |f: &str| format!("layers[{i}].{f}");
            let plan_error =
                |field: String, message: String| QuantizeError::Plan { plan: plan_path.to_path_buf(), field, message };
            if p.layer.component != Component::Unet {
                return Err(plan_error(
                    field("component"),
                    format!("'{}': only the denoiser (unet) is quantized so far", p.layer.component),
                ));
            }
            let layer = by_name.get(p.layer.name.as_str()).ok_or_else(|| QuantizeError::MissingLayer {
                plan: plan_path.to_path_buf(),
                layer: p.layer.id(),
                model: model.to_path_buf(),
            })?;
            for (name, len) in [("w_bits", p.weights.len()), ("a_bits", p.a_bits.len())] {
                if len != groups {
                    return Err(plan_error(field(name), format!("{len} values for {groups} step groups")));
                }
            }
            if let Some(message) = p.weights.iter().find_map(|w| w.check().err()) {
                return Err(plan_error(field("w_bits"), message));
            }
            if let Some((g, w)) =
                p.weights.iter().enumerate().find(
                    |(_, w)| matches!(w, WeightFormat::Int { bits, split: true, .. } if !SPLIT_BITS.contains(bits)),
                )
            {
                return Err(plan_error(
                    field("w_split"),
                    format!("step group {g}: an outlier split needs {SPLIT_BITS:?} weight bits, not {}", w.bits()),
                ));
            }
            if p.weights.iter().any(|&w| w != WeightFormat::Float) && layer.weight.is_none() {
                return Err(plan_error(field("w_bits"), format!("'{}' has no weight to quantize", p.layer.name)));
            }
            if let Some(b) = p.a_bits.iter().find(|&&b| b != FLOAT_BITS && b != ACTIVATION_BITS) {
                return Err(plan_error(
                    field("a_bits"),
                    format!("{b} bits: activations are written as uint8 QDQ only ({ACTIVATION_BITS} or {FLOAT_BITS})"),
                ));
            }
            Ok((p.clone(), (*layer).clone()))
        })
        .collect()
}
