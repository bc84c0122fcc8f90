//! The one description of a quantizer, shared by the sensitivity config, the plan and the apply
//! stage: how weights are quantized (clipping, granularity) and how activation ranges are kept.
//! Bit-widths are chosen per layer elsewhere; the ranges they may take are here.

use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// The bit-width tables and plans record for a side left in float.
pub const FLOAT_BITS: u32 = 32;
/// Weight bit-widths the weight quantizer supports (codes are stored as `i8`).
pub const WEIGHT_BITS: RangeInclusive<u8> = 2..=8;
/// The weight width that means "kept in float16": an option open to every layer beside the
/// integer widths (MixDQ keeps its most sensitive layers in FP16).
pub const HALF_BITS: u8 = 16;
/// Activation bit-widths the activation quantizer supports.
pub const ACTIVATION_BITS: RangeInclusive<u8> = 2..=16;
/// Values per scale group: powers of two in this range (smaller groups cost more in scales
/// than they save in codes; ONNX Runtime's block kernels take powers of two).
pub const GROUP_SIZES: RangeInclusive<usize> = 8..=4096;
/// Most clip ratios the MSE clipping search may try per channel.
pub const MAX_CLIP_GRID: usize = 1000;

/// How the clipping range of a weight channel or group is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipSearch {
    /// Clip at max|w|: no value saturates.
    Minmax,
    /// Search the clip ratio minimising the squared reconstruction error.
    Mse,
}

crate::named_enum!(ClipSearch, "clipping", { Minmax => "minmax", Mse => "mse" });

/// How integer codes are chosen once their scales are set.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// Every value to its nearest code.
    #[default]
    Nearest,
    /// GPTQ's error compensation: input columns in order of their energy, each column's
    /// rounding error carried into the columns not yet rounded through the inverse of the
    /// layer's input second moment, measured on the calibration items.
    Gptq,
}

crate::named_enum!(Rounding, "rounding", { Nearest => "nearest", Gptq => "gptq" });

/// Symmetric weight quantization: one scale per output channel, or per group of `group_size`
/// consecutive values inside a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightScheme {
    pub clipping: ClipSearch,
    /// Clip ratios the MSE search tries, from 0.5 to 1.0.
    pub clip_grid: usize,
    /// Per-group scales of this many values; None: per output channel.
    pub group_size: Option<usize>,
}

impl Default for WeightScheme {
    fn default() -> Self {
        Self { clipping: ClipSearch::Mse, clip_grid: 20, group_size: None }
    }
}

/// Asymmetric per-tensor activation quantization over min-max ranges calibrated on the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivationScheme {
    /// One range per denoising step (activation ranges drift across steps); false: one range
    /// over every step.
    pub per_step: bool,
}

impl Default for ActivationScheme {
    fn default() -> Self {
        Self { per_step: true }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantizerSpec {
    pub weight: WeightScheme,
    pub activation: ActivationScheme,
}

impl QuantizerSpec {
    /// Checks the values that any bit-width needs; the message names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let w = &self.weight;
        if !(1..=MAX_CLIP_GRID).contains(&w.clip_grid) {
            return Err((
                "quantizer.weight.clip_grid".into(),
                format!("{} is outside 1..={MAX_CLIP_GRID}", w.clip_grid),
            ));
        }
        if let Some(size) = w.group_size {
            check_group_size(size).map_err(|m| ("quantizer.weight.group_size".to_string(), m))?;
        }
        Ok(())
    }
}

/// A group size from [`GROUP_SIZES`]: a power of two.
pub fn check_group_size(size: usize) -> Result<(), String> {
    if size.is_power_of_two() && GROUP_SIZES.contains(&size) {
        Ok(())
    } else {
        Err(format!("group size {size} is not a power of two in {}..={}", GROUP_SIZES.start(), GROUP_SIZES.end()))
    }
}

/// Checks a list of bit-widths against `range`: every value inside, none twice.
pub fn check_bits(bits: &[u8], range: &RangeInclusive<u8>) -> Result<(), String> {
    if let Some(b) = bits.iter().find(|b| !range.contains(b)) {
        return Err(format!("{b} bits is outside {}..={}", range.start(), range.end()));
    }
    check_distinct(bits)
}

/// [`check_bits`] for weight widths: [`WEIGHT_BITS`] or [`HALF_BITS`].
pub fn check_weight_bits(bits: &[u8]) -> Result<(), String> {
    if let Some(b) = bits.iter().find(|b| !WEIGHT_BITS.contains(b) && **b != HALF_BITS) {
        return Err(format!(
            "{b} bits is outside {}..={} (integer codes) or {HALF_BITS} (float16)",
            WEIGHT_BITS.start(),
            WEIGHT_BITS.end()
        ));
    }
    check_distinct(bits)
}

fn check_distinct(bits: &[u8]) -> Result<(), String> {
    if bits.iter().enumerate().any(|(i, b)| bits[..i].contains(b)) {
        return Err(format!("{bits:?} lists a bit-width twice"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_lists_are_checked_against_their_range() {
        assert!(check_bits(&[2, 8], &WEIGHT_BITS).is_ok());
        assert_eq!(check_bits(&[4, 9], &WEIGHT_BITS).unwrap_err(), "9 bits is outside 2..=8");
        assert!(check_bits(&[12], &ACTIVATION_BITS).is_ok());
        assert!(check_weight_bits(&[4, 8, 16]).is_ok());
        assert!(check_weight_bits(&[12]).unwrap_err().starts_with("12 bits is outside 2..=8"));
        assert!(check_bits(&[4, 4], &ACTIVATION_BITS).unwrap_err().contains("twice"));
    }

    #[test]
    fn the_spec_reads_partial_yaml_like_json_with_defaults() {
        let spec: QuantizerSpec = serde_json::from_str(r#"{"weight": {"clipping": "minmax"}}"#).unwrap();
        assert_eq!(spec.weight, WeightScheme { clipping: ClipSearch::Minmax, ..Default::default() });
        assert!(spec.activation.per_step);
        assert!(serde_json::from_str::<QuantizerSpec>(r#"{"weight": {"clip": 3}}"#).is_err());
        let bad =
            QuantizerSpec { weight: WeightScheme { group_size: Some(0), ..Default::default() }, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().0, "quantizer.weight.group_size");
        for size in [1, 7, 12, 1 << 31, 1_000_000_000] {
            assert!(check_group_size(size).is_err(), "{size}");
        }
        assert!(check_group_size(8).is_ok() && check_group_size(128).is_ok());
        let grid = |clip_grid| QuantizerSpec {
            weight: WeightScheme { clip_grid, ..Default::default() },
            ..Default::default()
        };
        assert_eq!(grid(1_000_000_000).validate().unwrap_err().0, "quantizer.weight.clip_grid");
        assert!(grid(0).validate().is_err() && grid(20).validate().is_ok());
    }
}
