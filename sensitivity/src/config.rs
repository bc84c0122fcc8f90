//! What a sensitivity run measures and how: read from YAML (`--config`), then overridden
//! field by field by command-line flags. Unknown fields and out-of-range values are errors
//! naming the field. What is generated (items, sampler, sessions) is the `generation` section,
//! the workload spec every generating stage shares; how layers are quantized is `quantizer`.

use crate::error::{Result, SensitivityError};
use bitsearch_pipeline::PipelineError;
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_types::quantizer::{check_bits, check_group_size, check_weight_bits};
use bitsearch_types::{ACTIVATION_BITS, MetricGroup, QuantizerSpec, Rounding, check_rank};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitivityConfig {
    /// Weight bit-widths probed for every weight layer.
    pub w_bits: Vec<u8>,
    /// Also probe MPQ-DM's outlier split at each of `w_bits` that allows one (2 and 3: every
    /// channel stays within 4 bits), for layers with at least 10 output channels: a further
    /// option the solver weighs against the plain one at the same mean bits.
    pub outlier_split: bool,
    /// Group sizes probed beside per-channel scales at each integer width of `w_bits` below
    /// 8 bits (where per-channel scales lose most): per-layer options, their scales' bytes
    /// counted.
    pub w_groups: Vec<usize>,
    /// Also probe 8-bit float weights (E4M3, per-channel scales) for every weight layer.
    pub fp8: bool,
    /// How integer codes are rounded, each a further option of every integer form (GPTQ where
    /// the layer allows it: Gemm, MatMul and ungrouped 2-D Conv; the others round to nearest).
    pub rounding: Vec<Rounding>,
    /// Ranks of SVDQuant's low-rank float16 branch, each a further option of every integer form
    /// below 8 bits whose codes then carry the residual (where the layer allows it, as for GPTQ,
    /// and the branch is at most a quarter of the weight's values); its bytes and MACs are
    /// counted by the budgets.
    pub ranks: Vec<u16>,
    /// Bias correction inside each probe: the quantized weight's mean output shift (measured on
    /// the probe items, float input) is taken out of the layer's bias (Conv, Gemm), as
    /// `quantize --bias-correction` does.
    pub bias_correction: bool,
    /// MixDQ's BOS-aware text embedding: where the input of a cross-attention K/V projection is
    /// quantized, its first token row stays in float and out of the range calibration.
    pub bos_aware: bool,
    /// Activation bit-widths; empty probes weights alone. Given, every probe quantizes the
    /// layer's input activations too, and activation-only products (attention) are probed.
    pub a_bits: Vec<u8>,
    /// Splits the denoising steps into this many consecutive groups; each probe quantizes its
    /// layer during one group only (PTQD's step awareness). 1: all steps.
    pub step_groups: usize,
    pub quantizer: QuantizerSpec,
    /// Layers to probe, by name (or `component/name`) or role; empty: every weight layer (and
    /// every activation product when `a_bits` is set).
    pub layers: Vec<String>,
    /// Metric group per layer name or role, overriding MixDQ's role-based grouping.
    pub groups: BTreeMap<String, MetricGroup>,
    /// Layers whose weights one session can replace; a session is built per window, so larger
    /// windows build fewer sessions but lose more of ONNX Runtime's weight pre-packing.
    pub window: usize,
    /// Megabytes (10^6 bytes) for the full-precision values that cross the windows' cuts: a
    /// probe's first quantized step then runs only the graph below its window. Values beyond
    /// it are not kept (those batches run the whole model); 0 runs every probe on the whole
    /// model.
    pub cache_mb: usize,
    /// Items, sampler and sessions (MixDQ used 32 prompts).
    pub generation: WorkloadSpec,
    /// A plan the probes start from instead of the float model: every layer it quantizes holds
    /// its planned weight and each probe changes one layer from there, so the table measures
    /// each change in the company of the others (its losses are linear around the plan, which
    /// the solver takes into account). Weights only: one step group, no activation bits, no
    /// bias correction.
    pub base: Option<PathBuf>,
}

impl Default for SensitivityConfig {
    fn default() -> Self {
        Self {
            w_bits: vec![4, 8],
            outlier_split: false,
            w_groups: Vec::new(),
            fp8: false,
            rounding: vec![Rounding::Nearest],
            ranks: Vec::new(),
            bias_correction: false,
            bos_aware: true,
            a_bits: Vec::new(),
            step_groups: 1,
            quantizer: QuantizerSpec::default(),
            layers: Vec::new(),
            groups: BTreeMap::new(),
            window: 16,
            cache_mb: 2000,
            generation: WorkloadSpec::default(),
            base: None,
        }
    }
}

impl SensitivityConfig {
    /// Reads a YAML file; unknown or mistyped fields are errors that name the field.
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SensitivityError::config(path.display().to_string(), format!("cannot read: {e}")))?;
        let config: Self = serde_norway::from_str(&text)
            .map_err(|e| SensitivityError::config(path.display().to_string(), e.to_string()))?;
        config.validate().map_err(|e| match e {
            SensitivityError::Config { field, message } => {
                SensitivityError::config(format!("{}: {field}", path.display()), message)
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Checks every value that does not depend on the model.
    pub fn validate(&self) -> Result<()> {
        check_weight_bits(&self.w_bits).map_err(|m| SensitivityError::config("w_bits", m))?;
        check_bits(&self.a_bits, &ACTIVATION_BITS).map_err(|m| SensitivityError::config("a_bits", m))?;
        if let Some(message) = self.w_groups.iter().find_map(|&g| check_group_size(g).err()) {
            return Err(SensitivityError::config("w_groups", message));
        }
        if self.w_groups.iter().enumerate().any(|(i, g)| self.w_groups[..i].contains(g)) {
            return Err(SensitivityError::config("w_groups", format!("{:?} lists a group size twice", self.w_groups)));
        }
        if self.rounding.is_empty() || self.rounding.iter().enumerate().any(|(i, r)| self.rounding[..i].contains(r)) {
            let listed: Vec<&str> = self.rounding.iter().map(|r| r.as_str()).collect();
            return Err(SensitivityError::config(
                "rounding",
                format!("[{}]: needs at least one rounding, each once", listed.join(", ")),
            ));
        }
        if let Some(message) = self.ranks.iter().find_map(|&r| check_rank(r).err()) {
            return Err(SensitivityError::config("ranks", message));
        }
        if self.ranks.iter().enumerate().any(|(i, r)| self.ranks[..i].contains(r)) {
            return Err(SensitivityError::config("ranks", format!("{:?} lists a rank twice", self.ranks)));
        }
        if self.w_bits.is_empty() {
            return Err(SensitivityError::config("w_bits", "needs at least one bit-width"));
        }
        self.quantizer.validate().map_err(|(field, message)| SensitivityError::config(field, message))?;
        for (field, value) in [("step_groups", self.step_groups), ("window", self.window)] {
            if value == 0 {
                return Err(SensitivityError::config(field, "must be at least 1"));
            }
        }
        self.generation.validate().map_err(|e| in_generation(e.into()))?;
        if self.base.is_some() {
            let refused = [
                (self.step_groups > 1, "step_groups", "a base plan is measured over all steps: use one step group"),
                (!self.a_bits.is_empty(), "a_bits", "a base plan probes weights only"),
                (self.bias_correction, "bias_correction", "a base plan probes weights without bias correction"),
            ];
            if let Some((_, field, message)) = refused.into_iter().find(|(bad, _, _)| *bad) {
                return Err(SensitivityError::config(field, message));
            }
        }
        if let Some(steps) = self.generation.steps
            && self.step_groups > steps
        {
            return Err(SensitivityError::config(
                "step_groups",
                format!("{} groups cannot split {steps} steps", self.step_groups),
            ));
        }
        Ok(())
    }
}

/// A workload error, its field named as the config's `generation` section names it.
pub(crate) fn in_generation(error: PipelineError) -> SensitivityError {
    match error {
        PipelineError::Spec { field, message } => SensitivityError::config(format!("generation.{field}"), message),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitsearch_types::quantizer::ClipSearch;

    fn parse(yaml: &str) -> Result<SensitivityConfig> {
        let config: SensitivityConfig =
            serde_norway::from_str(yaml).map_err(|e| SensitivityError::config("yaml", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn yaml_overrides_defaults_field_by_field() {
        let config = parse(
            "w_bits: [2, 4]\na_bits: [12]\ngeneration:\n  conditions:\n    difficulty: [0.2, 0.8]\n\
             quantizer:\n  weight:\n    clipping: minmax\n",
        )
        .unwrap();
        assert_eq!(config.w_bits, vec![2, 4]);
        assert_eq!(config.a_bits, vec![12], "activation bits go up to 16");
        assert_eq!(config.quantizer.weight.clipping, ClipSearch::Minmax);
        assert_eq!(config.quantizer.weight.clip_grid, 20);
        assert_eq!(config.generation.seeds, vec![0]);
        assert_eq!(config.generation.condition_sets().len(), 2);
    }

    #[test]
    fn bad_fields_are_named() {
        let message = |yaml: &str| parse(yaml).unwrap_err().to_string();
        assert!(message("w_bitz: [4]").contains("w_bitz"), "{}", message("w_bitz: [4]"));
        assert!(message("w_bits: [4, 9]").starts_with("w_bits: 9 bits"), "{}", message("w_bits: [4, 9]"));
        assert!(message("w_bits: [12]").starts_with("w_bits: 12 bits is outside 2..=8 (integer codes) or 16"));
        assert!(message("a_bits: [1]").starts_with("a_bits:"));
        assert!(message("a_bits: [17]").starts_with("a_bits: 17 bits is outside 2..=16"));
        assert!(message("generation:\n  batch: 0").starts_with("generation.batch:"));
        assert!(message("generation:\n  steps: 2\nstep_groups: 3").starts_with("step_groups:"));
        assert!(message("w_bits: four").contains("w_bits"), "{}", message("w_bits: four"));
        assert!(
            message("generation:\n  conditions:\n    difficulty: []").starts_with("generation.conditions.difficulty:")
        );
        let clipping = message("quantizer:\n  weight:\n    clipping: best");
        assert!(clipping.contains("clipping"), "{clipping}");
        assert!(message("quantizer:\n  weight:\n    clip_grid: 0").starts_with("quantizer.weight.clip_grid:"));
        assert!(message("ranks: [3]").starts_with("ranks: rank 3 is not a power of two"), "{}", message("ranks: [3]"));
        assert!(message("ranks: [8, 8]").starts_with("ranks: [8, 8] lists a rank twice"));
        assert!(message("ranks: [1024]").starts_with("ranks:") && message("ranks: [-1]").contains("ranks"));
        // A base plan is one configuration of weights over all steps.
        assert!(message("base: u4.yaml\nstep_groups: 2\ngeneration:\n  steps: 4").starts_with("step_groups: a base"));
        assert!(message("base: u4.yaml\na_bits: [8]").starts_with("a_bits: a base plan probes weights only"));
    }
}
