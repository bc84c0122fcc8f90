//! The one description of how a layer's weight is stored: [`WeightFormat`], with one textual
//! form (`w4`, `w3s`, `w4g64`, `w4r16`, `w4-gptq`, `e4m3`, `f16`, `f32`) that parses back, and the
//! facts that belong to a format (its bits, the container its codes take, what it may be combined
//! with).

use crate::quantizer::{FLOAT_BITS, HALF_BITS, Rounding, WEIGHT_BITS, WeightScheme, check_group_size};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// The width of 8-bit float (E4M3) weights.
pub const FP8_BITS: u8 = 8;
/// Ranks a low-rank branch may take: powers of two (a handful of options per layer is what the
/// solver can price; SVDQuant keeps 16 to 32).
pub const LOW_RANKS: RangeInclusive<u16> = 1..=512;

/// One way of storing a layer's weight: what a sensitivity probe measures, what a plan chooses
/// per layer (and step group) and what the solver prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// Symmetric integer codes of `bits` (2..=8) with one scale per output channel, or per
    /// `group` values when set; `split`: MPQ-DM's outlier split at a mean of `bits`;
    /// `rounding`: how the codes are chosen under those scales; `rank`: a float16 low-rank
    /// branch `L·R` (SVDQuant) kept beside the codes, which then quantize `W − L·R`.
    Int { bits: u8, split: bool, group: Option<usize>, rounding: Rounding, rank: Option<u16> },
    /// E4M3 codes with one scale per output channel (ONNX Runtime's float8 DequantizeLinear).
    E4M3,
    /// The values rounded to float16 (MixDQ keeps its most sensitive layers there).
    F16,
    /// Left in float: nothing quantized.
    Float,
}

/// The table and plan columns of a format: bits, split, group size (0: none), float8, GPTQ
/// rounding, low-rank branch (0: none).
pub type FormatColumns = (u32, bool, u32, bool, bool, u32);

impl WeightFormat {
    /// Integer codes at the quantizer's own granularity.
    pub fn int(bits: u8) -> Self {
        Self::Int { bits, split: false, group: None, rounding: Rounding::Nearest, rank: None }
    }

    /// This format with its codes chosen by `rounding`; None where the format has no integer
    /// codes to round.
    pub fn rounded(self, rounding: Rounding) -> Option<Self> {
        match self {
            Self::Int { bits, split, group, rank, .. } => Some(Self::Int { bits, split, group, rounding, rank }),
            _ => None,
        }
    }

    /// This format with a low-rank branch of `rank` (None: without one); None where the format
    /// has no integer codes to take the residual.
    pub fn with_rank(self, rank: Option<u16>) -> Option<Self> {
        match self {
            Self::Int { bits, split, group, rounding, .. } => Some(Self::Int { bits, split, group, rounding, rank }),
            _ => None,
        }
    }

    /// The rank of the format's low-rank branch, if it keeps one.
    pub fn rank(&self) -> Option<u16> {
        match self {
            Self::Int { rank, .. } => *rank,
            _ => None,
        }
    }

    /// Values a low-rank branch of this format keeps for an `outputs × inputs` weight (float16,
    /// `L` of `outputs × r` and `R` of `r × inputs`); 0 without one.
    pub fn branch_values(&self, outputs: u64, inputs: u64) -> u64 {
        self.rank().map_or(0, |r| u64::from(r) * (outputs + inputs))
    }

    /// Whether the branch of this format is worth keeping on an `outputs × inputs` weight: at
    /// most a quarter of its values (a larger one costs more than the bits it saves).
    pub fn fits(&self, outputs: u64, inputs: u64) -> bool {
        4 * self.branch_values(outputs, inputs) <= outputs.saturating_mul(inputs)
    }

    /// The plain format of a bit-width: [`HALF_BITS`] is float16, [`FLOAT_BITS`] float, any
    /// other integer codes.
    pub fn of_bits(bits: u32) -> Self {
        match bits {
            FLOAT_BITS => Self::Float,
            b if b == u32::from(HALF_BITS) => Self::F16,
            b => Self::int(u8::try_from(b).unwrap_or(u8::MAX)),
        }
    }

    /// Bits per value: the integer width, 8 for E4M3, 16 for float16, [`FLOAT_BITS`] in float.
    pub fn bits(&self) -> u32 {
        match self {
            Self::Int { bits, .. } => u32::from(*bits),
            Self::E4M3 => u32::from(FP8_BITS),
            Self::F16 => u32::from(HALF_BITS),
            Self::Float => FLOAT_BITS,
        }
    }

    pub fn split(&self) -> bool {
        matches!(self, Self::Int { split: true, .. })
    }

    pub fn rounding(&self) -> Rounding {
        match self {
            Self::Int { rounding, .. } => *rounding,
            _ => Rounding::Nearest,
        }
    }

    /// Values per scale group, when the format sets its own.
    pub fn group(&self) -> Option<usize> {
        match self {
            Self::Int { group, .. } => *group,
            _ => None,
        }
    }

    /// Split, grouped, GPTQ-rounded, branched or float8: a format beside the plain one of the
    /// same bits.
    pub fn variant(&self) -> bool {
        self.split()
            || self.group().is_some()
            || self.rounding() != Rounding::Nearest
            || self.rank().is_some()
            || *self == Self::E4M3
    }

    /// `base` with this format's group size, if it has one.
    pub fn scheme(&self, base: &WeightScheme) -> WeightScheme {
        WeightScheme { group_size: self.group().or(base.group_size), ..*base }
    }

    /// Bits one value takes in the stored file: 2-bit integer codes are packed four per byte
    /// (int2), 3- and 4-bit ones two per byte (int4), wider ones take a byte each (int8),
    /// whatever their nominal width. A split 2-bit weight has 3-bit channels: int4.
    pub fn container_bits(&self) -> u64 {
        match *self {
            Self::Int { bits, split: false, .. } if bits <= 2 => 2,
            Self::Int { bits, .. } if bits <= 4 => 4,
            Self::Int { .. } => 8,
            other => u64::from(other.bits()),
        }
    }

    /// The format in tensor names: `w3`, `w3s` (split), `w4g64`, `w4r16`, `w4-gptq`, `w8e4m3`,
    /// `w16`.
    pub fn label(&self) -> String {
        match self {
            Self::Int { .. } => self.to_string(),
            Self::E4M3 => format!("w{FP8_BITS}e4m3"),
            other => format!("w{}", other.bits()),
        }
    }

    /// Checks that the parts fit together; the message says what does not.
    pub fn check(&self) -> Result<(), String> {
        if let Self::Int { group: Some(g), .. } = *self {
            check_group_size(g).map_err(|e| format!("{self}: {e}"))?;
        }
        if let Self::Int { rank: Some(r), .. } = *self {
            check_rank(r).map_err(|e| format!("{self}: {e}"))?;
        }
        match *self {
            Self::Int { bits, .. } if !WEIGHT_BITS.contains(&bits) => Err(format!(
                "{self}: {bits} bits; integer weights take {}..={}",
                WEIGHT_BITS.start(),
                WEIGHT_BITS.end()
            )),
            _ => Ok(()),
        }
    }

    /// The table and plan columns of this format.
    pub fn columns(&self) -> FormatColumns {
        (
            self.bits(),
            self.split(),
            self.group().map_or(0, |g| g as u32),
            *self == Self::E4M3,
            self.rounding() == Rounding::Gptq,
            self.rank().map_or(0, u32::from),
        )
    }

    /// The format the table and plan columns describe; the message says what does not fit.
    pub fn from_columns((bits, split, group, fp8, gptq, rank): FormatColumns) -> Result<Self, String> {
        let plain = !split && group == 0 && !gptq && rank == 0;
        match bits {
            _ if fp8 && bits == u32::from(FP8_BITS) && plain => Ok(Self::E4M3),
            _ if fp8 => {
                Err(format!("w_bits {bits}: 8-bit float weights take {FP8_BITS} bits, per-channel scales, no split"))
            }
            FLOAT_BITS if plain => Ok(Self::Float),
            b if b == u32::from(HALF_BITS) && plain => Ok(Self::F16),
            b if b == u32::from(HALF_BITS) || b == FLOAT_BITS => {
                Err(format!("{b}-bit float weights have no split, groups, GPTQ rounding or low-rank branch"))
            }
            b => {
                let bits = u8::try_from(b).map_err(|_| format!("{b} bits is not a weight width"))?;
                let rounding = if gptq { Rounding::Gptq } else { Rounding::Nearest };
                let rank = u16::try_from(rank).map_err(|_| format!("rank {rank} is not a branch rank"))?;
                Ok(Self::Int {
                    bits,
                    split,
                    group: (group > 0).then_some(group as usize),
                    rounding,
                    rank: (rank > 0).then_some(rank),
                })
            }
        }
    }
}

/// A low-rank branch's rank from [`LOW_RANKS`]: a power of two.
pub fn check_rank(rank: u16) -> Result<(), String> {
    if rank.is_power_of_two() && LOW_RANKS.contains(&rank) {
        Ok(())
    } else {
        Err(format!("rank {rank} is not a power of two in {}..={}", LOW_RANKS.start(), LOW_RANKS.end()))
    }
}

/// In the order of the columns: bits, split, group size, float8, rounding, rank (the order
/// solver columns and stored weights are enumerated in).
impl Ord for WeightFormat {
    fn cmp(&self, other: &Self) -> Ordering {
        self.columns().cmp(&other.columns())
    }
}

impl PartialOrd for WeightFormat {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int { bits, split, group, rounding, rank } => {
                write!(f, "w{bits}{}", if *split { "s" } else { "" })?;
                group.map_or(Ok(()), |g| write!(f, "g{g}"))?;
                rank.map_or(Ok(()), |r| write!(f, "r{r}"))?;
                match rounding {
                    Rounding::Nearest => Ok(()),
                    Rounding::Gptq => write!(f, "-{rounding}"),
                }
            }
            Self::E4M3 => f.write_str("e4m3"),
            Self::F16 => f.write_str("f16"),
            Self::Float => f.write_str("f32"),
        }
    }
}

impl FromStr for WeightFormat {
    type Err = String;

    /// `w<bits>[s][g<group>][r<rank>][-gptq]`, `e4m3`, `f16` or `f32`.
    fn from_str(s: &str) -> Result<Self, String> {
        let error = || {
            format!(
                "'{s}' is not a weight format: expected w<bits>[s][g<size>][r<rank>][-gptq] (w4, w3s, w4g64, w4r16, w4-gptq), e4m3, f16 or f32"
            )
        };
        match s {
            "e4m3" => return Ok(Self::E4M3),
            "f16" => return Ok(Self::F16),
            "f32" => return Ok(Self::Float),
            _ => {}
        }
        let rest = s.strip_prefix('w').ok_or_else(error)?;
        let (rest, rounding) = match rest.split_once('-') {
            Some((rest, r)) if r == Rounding::Gptq.as_str() => (rest, Rounding::Gptq),
            Some(_) => return Err(error()),
            None => (rest, Rounding::Nearest),
        };
        let (rest, rank) = match rest.split_once('r') {
            Some((rest, r)) => (rest, Some(r.parse::<u16>().map_err(|_| error())?)),
            None => (rest, None),
        };
        let (head, group) = match rest.split_once('g') {
            Some((head, g)) => (head, Some(g.parse::<usize>().map_err(|_| error())?)),
            None => (rest, None),
        };
        let (digits, split) = head.strip_suffix('s').map_or((head, false), |d| (d, true));
        let bits = digits.parse::<u8>().map_err(|_| error())?;
        let format = Self::Int { bits, split, group, rounding, rank };
        format.check().map(|()| format)
    }
}

impl Serialize for WeightFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WeightFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grouped(bits: u8, group: usize) -> WeightFormat {
        WeightFormat::Int { bits, split: false, group: Some(group), rounding: Rounding::Nearest, rank: None }
    }

    #[test]
    fn formats_cost_their_container_and_refuse_impossible_mixes() {
        let containers: Vec<u64> = [2, 3, 4, 5, 8].iter().map(|&b| WeightFormat::int(b).container_bits()).collect();
        assert_eq!(containers, vec![2, 4, 4, 8, 8]);
        let split2 = WeightFormat::Int { bits: 2, split: true, group: None, rounding: Rounding::Nearest, rank: None };
        assert_eq!(split2.container_bits(), 4);
        assert_eq!((WeightFormat::E4M3.container_bits(), WeightFormat::E4M3.label()), (8, "w8e4m3".to_string()));
        assert_eq!((WeightFormat::F16.container_bits(), WeightFormat::F16.label()), (16, "w16".to_string()));
        assert_eq!((grouped(3, 64).label(), grouped(3, 64).to_string()), ("w3g64".to_string(), "w3g64".to_string()));
        assert_eq!(grouped(3, 64).scheme(&WeightScheme::default()).group_size, Some(64));
        assert!(grouped(3, 64).check().is_ok() && WeightFormat::E4M3.check().is_ok());
        assert!(grouped(3, 0).check().is_err() && WeightFormat::int(9).check().is_err());
        let r16 = WeightFormat::int(4).with_rank(Some(16)).unwrap();
        assert_eq!((r16.container_bits(), r16.label(), r16.rank()), (4, "w4r16".to_string(), Some(16)));
        assert_eq!((r16.branch_values(320, 2880), WeightFormat::int(4).branch_values(320, 2880)), (16 * 3200, 0));
        assert!(r16.fits(320, 2880) && !r16.fits(32, 32) && WeightFormat::int(4).fits(1, 1));
    }

    #[test]
    fn the_text_form_round_trips_and_names_what_it_expects() {
        let formats = [
            WeightFormat::int(4),
            grouped(4, 64),
            WeightFormat::Int { bits: 3, split: true, group: None, rounding: Rounding::Nearest, rank: None },
            WeightFormat::Int { bits: 3, split: true, group: Some(32), rounding: Rounding::Nearest, rank: None },
            WeightFormat::Int { bits: 3, split: false, group: Some(64), rounding: Rounding::Gptq, rank: None },
            WeightFormat::int(4).rounded(Rounding::Gptq).unwrap(),
            WeightFormat::int(3).with_rank(Some(8)).unwrap(),
            WeightFormat::Int { bits: 4, split: false, group: Some(64), rounding: Rounding::Gptq, rank: Some(16) },
            WeightFormat::E4M3,
            WeightFormat::F16,
            WeightFormat::Float,
        ];
        let text: Vec<String> = formats.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["w4", "w4g64", "w3s", "w3sg32", "w3g64-gptq", "w4-gptq", "w3r8", "w4g64r16-gptq", "e4m3", "f16", "f32"]
        );
        for (format, text) in formats.iter().zip(&text) {
            assert_eq!(text.parse::<WeightFormat>().as_ref(), Ok(format));
            assert_eq!(serde_json::to_string(format).unwrap(), format!("\"{text}\""));
        }
        assert_eq!(WeightFormat::F16.rounded(Rounding::Gptq), None);
        assert_eq!(WeightFormat::F16.with_rank(Some(8)), None);
        let bad = [
            "w",
            "w9",
            "w4g0",
            "w4x",
            "int4",
            "w4gg",
            "w4-",
            "w4-hqq",
            "f16-gptq",
            "w4-gptq-gptq",
            "w4r0",
            "w4r3",
            "w4r",
            "w4r1024",
            "w4r16g64",
            "w4rr8",
        ];
        for bad in bad {
            assert!(bad.parse::<WeightFormat>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_columns_round_trip_and_order_like_the_tables() {
        let gptq8 = WeightFormat::int(8).rounded(Rounding::Gptq).unwrap();
        let ranked8 = WeightFormat::int(8).with_rank(Some(32)).unwrap();
        let mut formats = vec![
            ranked8,
            WeightFormat::Float,
            WeightFormat::F16,
            gptq8,
            WeightFormat::E4M3,
            grouped(8, 16),
            WeightFormat::int(8),
        ];
        for f in &formats {
            assert_eq!(WeightFormat::from_columns(f.columns()), Ok(*f));
        }
        formats.sort();
        assert_eq!(
            formats,
            [
                WeightFormat::int(8),
                ranked8,
                gptq8,
                WeightFormat::E4M3,
                grouped(8, 16),
                WeightFormat::F16,
                WeightFormat::Float
            ]
        );
        assert!(WeightFormat::from_columns((4, false, 0, true, false, 0)).is_err());
        assert!(WeightFormat::from_columns((16, true, 0, false, false, 0)).is_err());
        assert!(WeightFormat::from_columns((8, false, 0, true, true, 0)).is_err());
        assert!(WeightFormat::from_columns((16, false, 0, false, true, 0)).is_err());
        assert!(WeightFormat::from_columns((16, false, 0, false, false, 8)).is_err());
        assert!(WeightFormat::from_columns((8, false, 0, true, false, 8)).is_err());
        assert!(WeightFormat::from_columns((4, false, 0, false, false, 1 << 20)).is_err());
        assert_eq!(WeightFormat::of_bits(16), WeightFormat::F16);
    }
}
