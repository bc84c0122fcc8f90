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
/// The width of 8-bit float (E4M3) weights.
pub const FP8_BITS: u8 = 8;
/// Activation bit-widths the activation quantizer supports.
pub const ACTIVATION_BITS: RangeInclusive<u8> = 2..=16;

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

/// One way of storing a layer's weight: what a sensitivity probe measures and what a plan
/// chooses per layer (and step group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightForm {
    /// Bits per value: 2..=8 for integer codes, [`FP8_BITS`] with `fp8`, [`HALF_BITS`] for
    /// float16.
    pub bits: u8,
    /// MPQ-DM's outlier split at a mean of `bits`.
    pub split: bool,
    /// Per-group scales of this many values, overriding the quantizer's granularity.
    pub group: Option<usize>,
    /// E4M3 codes with one scale per output channel (ONNX Runtime's float8 DequantizeLinear).
    pub fp8: bool,
}

impl WeightForm {
    /// Integer codes (or float16 at [`HALF_BITS`]) at the quantizer's own granularity.
    pub fn plain(bits: u8) -> Self {
        Self { bits, split: false, group: None, fp8: false }
    }

    pub fn half(&self) -> bool {
        self.bits == HALF_BITS
    }

    /// Integer codes with scales (neither float8 nor float16).
    pub fn integer(&self) -> bool {
        !self.fp8 && !self.half()
    }

    /// `base` with this form's group size, if it has one.
    pub fn scheme(&self, base: &WeightScheme) -> WeightScheme {
        WeightScheme { group_size: self.group.or(base.group_size), ..*base }
    }

    /// Bits one value takes in the stored file: 2-bit integer codes are packed four per byte
    /// (int2), 3- and 4-bit ones two per byte (int4), wider ones take a byte each (int8),
    /// whatever their nominal width. A split 2-bit weight has 3-bit channels: int4.
    pub fn container_bits(&self) -> u64 {
        match self.bits {
            b if self.integer() && b <= 2 && !self.split => 2,
            b if self.integer() && b <= 4 => 4,
            _ if self.integer() => 8,
            b => u64::from(b),
        }
    }

    /// The form in tensor names: `w3`, `w3s` (split), `w4g64`, `w8e4m3`, `w16`.
    pub fn label(&self) -> String {
        let split = if self.split { "s" } else { "" };
        let group = self.group.map(|g| format!("g{g}")).unwrap_or_default();
        let fp8 = if self.fp8 { "e4m3" } else { "" };
        format!("w{}{split}{group}{fp8}", self.bits)
    }

    /// Checks that the parts fit together; the message says what does not.
    pub fn check(&self) -> Result<(), String> {
        if self.fp8 && (self.bits != FP8_BITS || self.split || self.group.is_some()) {
            return Err(format!("{self}: 8-bit float weights take {FP8_BITS} bits, per-channel scales, no split"));
        }
        if self.half() && (self.split || self.group.is_some()) {
            return Err(format!("{self}: float16 weights have no split or groups"));
        }
        if self.group == Some(0) {
            return Err(format!("{self}: a group holds at least one value"));
        }
        if !self.fp8 && !self.half() && !WEIGHT_BITS.contains(&self.bits) {
            return Err(format!("{self}: integer weights take {}..={} bits", WEIGHT_BITS.start(), WEIGHT_BITS.end()));
        }
        Ok(())
    }
}

impl std::fmt::Display for WeightForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "W{}", self.bits)?;
        if self.split {
            write!(f, " split")?;
        }
        if let Some(g) = self.group {
            write!(f, " g{g}")?;
        }
        if self.fp8 {
            write!(f, " e4m3")?;
        }
        Ok(())
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
        if w.clip_grid == 0 {
            return Err(("quantizer.weight.clip_grid".into(), "must be at least 1".into()));
        }
        if w.group_size == Some(0) {
            return Err(("quantizer.weight.group_size".into(), "must be at least 1".into()));
        }
        Ok(())
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
    fn weight_forms_cost_their_container_and_refuse_impossible_mixes() {
        let containers: Vec<u64> = [2, 3, 4, 5, 8].iter().map(|&b| WeightForm::plain(b).container_bits()).collect();
        assert_eq!(containers, vec![2, 4, 4, 8, 8]);
        assert_eq!(WeightForm { split: true, ..WeightForm::plain(2) }.container_bits(), 4);
        let fp8 = WeightForm { fp8: true, ..WeightForm::plain(8) };
        assert_eq!((fp8.container_bits(), fp8.label()), (8, "w8e4m3".to_string()));
        assert_eq!(WeightForm::plain(HALF_BITS).container_bits(), 16);
        let grouped = WeightForm { group: Some(64), ..WeightForm::plain(3) };
        assert_eq!((grouped.label(), grouped.to_string()), ("w3g64".to_string(), "W3 g64".to_string()));
        assert_eq!(grouped.scheme(&WeightScheme::default()).group_size, Some(64));
        assert!(grouped.check().is_ok() && fp8.check().is_ok());
        assert!(WeightForm { fp8: true, ..WeightForm::plain(4) }.check().is_err());
        assert!(WeightForm { group: Some(32), ..fp8 }.check().is_err());
        assert!(WeightForm { split: true, ..WeightForm::plain(HALF_BITS) }.check().is_err());
        assert!(WeightForm::plain(9).check().is_err());
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
    }
}
