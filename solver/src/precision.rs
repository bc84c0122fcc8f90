//! What a layer may take: a [`Precision`] (a weight format and input-activation bits), and the
//! kinds of weight options a solve may leave out ([`Variant`]).

use bitsearch_records::ProbeRow;
use bitsearch_types::{FLOAT_BITS, Rounding, WeightFormat};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// A kind of weight option a solve may leave out of its table (`solve --without`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// MPQ-DM's outlier split.
    Split,
    /// Per-group scales chosen per layer.
    Groups,
    /// E4M3 weights.
    Fp8,
    /// Float16 weights.
    Half,
    /// GPTQ-rounded integer codes.
    Gptq,
    /// Low-rank float16 branches beside the codes.
    Rank,
}

bitsearch_types::named_enum!(Variant, "weight option", {
    Split => "split", Groups => "groups", Fp8 => "fp8", Half => "half", Gptq => "gptq", Rank => "rank"
});

impl Variant {
    /// Whether `row` probes an option of this kind.
    pub fn matches(self, row: &ProbeRow) -> bool {
        match self {
            Variant::Split => row.weight.split(),
            Variant::Groups => row.weight.group().is_some(),
            Variant::Fp8 => row.weight == WeightFormat::E4M3,
            Variant::Half => row.weight == WeightFormat::F16,
            Variant::Gptq => row.weight.rounding() == Rounding::Gptq,
            Variant::Rank => row.weight.rank().is_some(),
        }
    }
}

/// How one layer's weight is stored and how many bits its input activations take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Precision {
    /// Options with the same weight format store the same tensor.
    pub weight: WeightFormat,
    pub a_bits: u32,
}

impl Precision {
    /// The plain option at `w_bits` weights (float16 at 16, float at [`FLOAT_BITS`]) and
    /// `a_bits` activations.
    pub fn plain(w_bits: u32, a_bits: u32) -> Self {
        Self { weight: WeightFormat::of_bits(w_bits), a_bits }
    }

    /// The option a table row measures.
    pub fn of_row(row: &ProbeRow) -> Self {
        Self { weight: row.weight, a_bits: row.a_bits }
    }

    pub fn w_bits(&self) -> u32 {
        self.weight.bits()
    }

    /// Split, grouped, GPTQ-rounded, branched or float8: an option beside the plain precision
    /// of the same bits.
    pub fn variant(&self) -> bool {
        self.weight.variant()
    }

    /// Weight bits, activation bits, then the rest of the weight format: the order options
    /// (and so the program's columns) are listed in.
    fn key(&self) -> (u32, u32, bool, u32, bool, bool, u32) {
        let (w_bits, split, group, fp8, gptq, rank) = self.weight.columns();
        (w_bits, self.a_bits, split, group, fp8, gptq, rank)
    }
}

impl Ord for Precision {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Precision {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `W4A8`, `WFAF`, `W3AF split g64`, `W4AF r16 gptq`, `W8AF e4m3`.
impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |b: u32| if b == FLOAT_BITS { "F".to_string() } else { b.to_string() };
        let (w_bits, split, group, fp8, gptq, rank) = self.weight.columns();
        write!(f, "W{}A{}", side(w_bits), side(self.a_bits))?;
        if split {
            write!(f, " split")?;
        }
        if group > 0 {
            write!(f, " g{group}")?;
        }
        if rank > 0 {
            write!(f, " r{rank}")?;
        }
        if fp8 {
            write!(f, " e4m3")?;
        }
        if gptq {
            write!(f, " gptq")?;
        }
        Ok(())
    }
}
