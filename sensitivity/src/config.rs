//! What a sensitivity run measures and how: read from YAML (`--config`), then overridden
//! field by field by command-line flags. Unknown fields and out-of-range values are errors
//! naming the field.

use crate::error::{Result, SensitivityError};
use bitsearch_pipeline::sampler::{Prediction, SamplerKind};
use bitsearch_quant::{Clipping, Granularity, WeightQuantizer};
use bitsearch_runtime::Device;
use bitsearch_types::MetricGroup;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Bit-widths the quantizers support.
pub const BITS: std::ops::RangeInclusive<u8> = 2..=8;
/// The bit-width the table records for a side left in float.
pub const FLOAT_BITS: u8 = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitivityConfig {
    /// Weight bit-widths probed for every weight layer.
    pub w_bits: Vec<u8>,
    /// Activation bit-widths; empty probes weights alone. Given, every probe quantizes the
    /// layer's input activations too, and activation-only products (attention) are probed.
    pub a_bits: Vec<u8>,
    /// Splits the denoising steps into this many consecutive groups; each probe quantizes its
    /// layer during one group only (PTQD's step awareness). 1: all steps.
    pub step_groups: usize,
    /// Denoising steps; default 1 for sigma (consistency) models, 10 for discrete-time ones.
    pub steps: Option<usize>,
    pub sampler: Option<SamplerKind>,
    pub eta: f64,
    /// Seeds of the initial noise; every condition runs with every seed.
    pub seeds: Vec<u64>,
    /// Denoiser files: values of each condition input; the conditions are their product.
    pub conditions: BTreeMap<String, Vec<f32>>,
    /// Diffusers folders: the prompts (MixDQ used 32).
    pub prompts: Vec<String>,
    pub negative_prompt: Option<String>,
    pub guidance: f32,
    pub prediction: Option<Prediction>,
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// Sizes of symbolic input dimensions (e.g. height).
    pub dims: BTreeMap<String, usize>,
    /// Items (condition × seed) per network run.
    pub batch: usize,
    pub clipping: ClippingChoice,
    /// Clip ratios tried by the MSE search.
    pub clip_grid: usize,
    /// Quantize weights per group of this many values along the input axes instead of per
    /// output channel.
    pub group_size: Option<usize>,
    /// Layers to probe, by name or role; empty: every weight layer (and every activation
    /// product when `a_bits` is set).
    pub layers: Vec<String>,
    /// Metric group per layer name or role, overriding MixDQ's role-based grouping.
    pub groups: BTreeMap<String, MetricGroup>,
    /// Layers whose weights one session can replace; a session is built per window, so larger
    /// windows build fewer sessions but lose more of ONNX Runtime's weight pre-packing.
    pub window: usize,
    pub device: Device,
    /// Intra-op threads of ONNX Runtime; default one per core.
    pub threads: Option<usize>,
}

impl Default for SensitivityConfig {
    fn default() -> Self {
        Self {
            w_bits: vec![4, 8],
            a_bits: Vec::new(),
            step_groups: 1,
            steps: None,
            sampler: None,
            eta: 0.0,
            seeds: vec![0],
            conditions: BTreeMap::new(),
            prompts: Vec::new(),
            negative_prompt: None,
            guidance: 7.5,
            prediction: None,
            sigma_min: 0.002,
            sigma_max: 80.0,
            dims: BTreeMap::new(),
            batch: 8,
            clipping: ClippingChoice::Mse,
            clip_grid: 20,
            group_size: None,
            layers: Vec::new(),
            groups: BTreeMap::new(),
            window: 16,
            device: Device::Auto,
            threads: None,
        }
    }
}

/// The weight quantizer's clipping, as configs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClippingChoice {
    /// Clip at max|w|.
    Minmax,
    /// Search the clip ratio minimising the squared error.
    Mse,
}

impl FromStr for ClippingChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "minmax" => Ok(Self::Minmax),
            "mse" => Ok(Self::Mse),
            other => Err(format!("unknown clipping '{other}', expected minmax or mse")),
        }
    }
}

impl fmt::Display for ClippingChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Minmax => "minmax",
            Self::Mse => "mse",
        })
    }
}

/// Which part of the probe list a process computes: windows `index`, `index + count`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl FromStr for Shard {
    type Err = String;

    /// `i/N` with i in 0..N.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parse = || -> Option<Shard> {
            let (i, n) = s.split_once('/')?;
            Some(Shard { index: i.trim().parse().ok()?, count: n.trim().parse().ok()? })
        };
        match parse() {
            Some(shard) if shard.count > 0 && shard.index < shard.count => Ok(shard),
            _ => Err(format!("'{s}' is not a shard: expected i/N with 0 <= i < N, e.g. 0/4")),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
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
        let check_bits = |field: &str, bits: &[u8]| -> Result<()> {
            if let Some(b) = bits.iter().find(|b| !BITS.contains(b)) {
                return Err(SensitivityError::config(
                    field,
                    format!("{b} bits is outside {}..={}", BITS.start(), BITS.end()),
                ));
            }
            if has_duplicates(bits) {
                return Err(SensitivityError::config(field, format!("{bits:?} lists a bit-width twice")));
            }
            Ok(())
        };
        check_bits("w_bits", &self.w_bits)?;
        check_bits("a_bits", &self.a_bits)?;
        if self.w_bits.is_empty() {
            return Err(SensitivityError::config("w_bits", "needs at least one bit-width"));
        }
        let positive = |field: &str, value: usize| -> Result<()> {
            if value == 0 { Err(SensitivityError::config(field, "must be at least 1")) } else { Ok(()) }
        };
        positive("step_groups", self.step_groups)?;
        positive("batch", self.batch)?;
        positive("window", self.window)?;
        positive("clip_grid", self.clip_grid)?;
        if let Some(steps) = self.steps {
            positive("steps", steps)?;
            if self.step_groups > steps {
                return Err(SensitivityError::config(
                    "step_groups",
                    format!("{} groups cannot split {steps} steps", self.step_groups),
                ));
            }
        }
        if let Some(g) = self.group_size {
            positive("group_size", g)?;
        }
        if let Some(t) = self.threads {
            positive("threads", t)?;
        }
        if self.seeds.is_empty() {
            return Err(SensitivityError::config("seeds", "needs at least one seed"));
        }
        if has_duplicates(&self.seeds) {
            return Err(SensitivityError::config("seeds", "lists a seed twice"));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(SensitivityError::config("eta", format!("{} is outside [0, 1]", self.eta)));
        }
        if !(self.sigma_min > 0.0 && self.sigma_max > self.sigma_min) {
            return Err(SensitivityError::config("sigma_min", "needs 0 < sigma_min < sigma_max"));
        }
        for (name, values) in &self.conditions {
            if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
                return Err(SensitivityError::config(format!("conditions.{name}"), "needs one or more finite values"));
            }
        }
        Ok(())
    }

    /// The weight quantizer at `bits` for a weight whose output channels lie on `axis`.
    pub fn weight_quantizer(&self, bits: u8, axis: usize) -> WeightQuantizer {
        let granularity = match self.group_size {
            Some(group_size) => Granularity::PerGroup { axis, group_size },
            None => Granularity::PerChannel { axis },
        };
        let clipping = match self.clipping {
            ClippingChoice::Minmax => Clipping::MinMax,
            ClippingChoice::Mse => Clipping::MseSearch { grid: self.clip_grid },
        };
        WeightQuantizer { bits, granularity, clipping }
    }

    /// Every combination of condition values, in the order of the names then the values.
    pub fn condition_sets(&self) -> Vec<Vec<(String, f32)>> {
        self.conditions.iter().fold(vec![Vec::new()], |sets, (name, values)| {
            sets.iter()
                .flat_map(|set| {
                    values.iter().map(move |&v| {
                        let mut next = set.clone();
                        next.push((name.clone(), v));
                        next
                    })
                })
                .collect()
        })
    }
}

fn has_duplicates<T: PartialEq>(values: &[T]) -> bool {
    values.iter().enumerate().any(|(i, v)| values[..i].contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SensitivityConfig> {
        let config: SensitivityConfig =
            serde_norway::from_str(yaml).map_err(|e| SensitivityError::config("yaml", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn yaml_overrides_defaults_field_by_field() {
        let config = parse("w_bits: [2, 4]\nconditions:\n  difficulty: [0.2, 0.8]\nclipping: minmax\n").unwrap();
        assert_eq!(config.w_bits, vec![2, 4]);
        assert_eq!(config.clipping, ClippingChoice::Minmax);
        assert_eq!(config.seeds, vec![0]);
        assert_eq!(config.condition_sets().len(), 2);
    }

    #[test]
    fn bad_fields_are_named() {
        let message = |yaml: &str| parse(yaml).unwrap_err().to_string();
        assert!(message("w_bitz: [4]").contains("w_bitz"), "{}", message("w_bitz: [4]"));
        assert!(message("w_bits: [4, 9]").starts_with("w_bits: 9 bits"), "{}", message("w_bits: [4, 9]"));
        assert!(message("a_bits: [1]").starts_with("a_bits:"));
        assert!(message("batch: 0").starts_with("batch:"));
        assert!(message("steps: 2\nstep_groups: 3").starts_with("step_groups:"));
        assert!(message("w_bits: four").contains("w_bits"), "{}", message("w_bits: four"));
        assert!(message("conditions:\n  difficulty: []").starts_with("conditions.difficulty:"));
        assert!(message("clipping: best").contains("clipping"), "{}", message("clipping: best"));
    }

    #[test]
    fn condition_sets_are_the_product_of_the_values() {
        let mut config = SensitivityConfig::default();
        config.conditions.insert("a".into(), vec![1.0, 2.0]);
        config.conditions.insert("b".into(), vec![0.5, 0.6, 0.7]);
        let sets = config.condition_sets();
        assert_eq!(sets.len(), 6);
        assert_eq!(sets[1], vec![("a".to_string(), 1.0), ("b".to_string(), 0.6)]);
        assert_eq!(SensitivityConfig::default().condition_sets(), vec![Vec::new()]);
    }

    #[test]
    fn shards_parse_and_reject_nonsense() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1", "a/b", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
