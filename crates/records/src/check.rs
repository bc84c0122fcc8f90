//! The checks every record reader runs on what it decoded, before any stage uses it: a value out
//! of its range is refused with the field's path (`rows[3].ssim`), so a damaged or hand-edited
//! record never becomes a plan, a manifest or an allocation.

use crate::error::RecordError;
use bitsearch_types::{ACTIVATION_BITS, FLOAT_BITS, LayerInfo, WeightFormat};
use std::path::Path;

/// A field of a record and what is wrong with its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    pub field: String,
    pub message: String,
}

pub(crate) type Checked = Result<(), Invalid>;

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

impl Invalid {
    /// The error naming the file and the field.
    pub fn at(self, path: &Path) -> RecordError {
        RecordError::file(path, format!("{}: {}", self.field, self.message))
    }

    /// The same problem, its field below `parent` (`rows[3]` + `ssim`).
    pub fn under(self, parent: &str) -> Self {
        Self { field: format!("{parent}.{}", self.field), ..self }
    }
}

/// Most denoising steps a record may describe: samplers run tens, training schedules 1000.
pub const MAX_STEPS: usize = 10_000;
/// Most parameters one layer may have (2^40: far past any model's largest layer, and small
/// enough that byte counts and products of them stay inside u64).
pub const MAX_PARAMS: u64 = 1 << 40;

/// `value` inside `[low, high]` (infinite bounds allowed); NaN is never inside.
pub(crate) fn within(field: &str, value: f64, low: f64, high: f64) -> Checked {
    if value >= low && value <= high {
        Ok(())
    } else if value.is_nan() {
        Err(invalid(field, format!("is NaN; a value in [{low}, {high}] was expected")))
    } else {
        Err(invalid(field, format!("{value} is outside [{low}, {high}]")))
    }
}

/// NaN (a value not measured or not predicted), or one inside `[low, high]`.
pub(crate) fn unmeasured_or(field: &str, value: f64, low: f64, high: f64) -> Checked {
    if value.is_nan() { Ok(()) } else { within(field, value, low, high) }
}

/// A prediction in dB: NaN (none made), +∞ (no noise at all), or a value of at least −1000 dB.
pub(crate) fn predicted_db(field: &str, value: f64) -> Checked {
    unmeasured_or(field, value, -1000.0, f64::INFINITY)
}

/// A finite value of at least 0.
pub(crate) fn non_negative(field: &str, value: f64) -> Checked {
    within(field, value, 0.0, f64::MAX)
}

/// A finite value.
pub(crate) fn finite(field: &str, value: f64) -> Checked {
    within(field, value, f64::MIN, f64::MAX)
}

/// Step groups `[first, last]` that cover steps `0..steps` in order, without gaps or overlaps.
pub(crate) fn step_groups(field: &str, groups: &[[usize; 2]], steps: usize) -> Checked {
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(invalid("steps", format!("{steps} is outside 1..={MAX_STEPS}")));
    }
    if groups.is_empty() {
        return Err(invalid(field, "lists no step group"));
    }
    let mut next = 0;
    for (g, &[first, last]) in groups.iter().enumerate() {
        if first != next || last < first {
            return Err(invalid(
                format!("{field}[{g}]"),
                format!(
                    "[{first}, {last}]: groups must run in order from step 0, each [first, last] with first <= last, no gaps"
                ),
            ));
        }
        next = last + 1;
    }
    if next != steps {
        return Err(invalid(field, format!("cover {next} steps; the record runs {steps}")));
    }
    Ok(())
}

/// A layer's description: a name, a plausible size.
pub(crate) fn layer(layer: &LayerInfo) -> Checked {
    if layer.name.trim().is_empty() {
        return Err(invalid("layer", "a layer needs a name"));
    }
    if !(1..=MAX_PARAMS).contains(&layer.params) {
        return Err(invalid("params", format!("{} is outside 1..={MAX_PARAMS}", layer.params)));
    }
    if layer.macs.is_some_and(|m| m > MAX_PARAMS << 20) {
        return Err(invalid("macs", format!("{} is past any layer's work", layer.macs.unwrap_or_default())));
    }
    if let Some(outputs) = layer.outputs
        && (outputs == 0 || !layer.params.is_multiple_of(outputs))
    {
        return Err(invalid("outputs", format!("{outputs} output channels do not divide {} weights", layer.params)));
    }
    Ok(())
}

/// A weight format bitsearch can store on `layer` (a low-rank branch only where its output
/// channels are known and the branch fits), and the bytes the layer takes in it: at least one
/// byte, at most the codes plus one float32 scale per value.
pub(crate) fn weight(field: &str, format: &WeightFormat, layer: &LayerInfo, bytes: Option<u64>) -> Checked {
    format.check().map_err(|m| invalid(field, m))?;
    let params = layer.params;
    if format.rank().is_some() {
        let fits = layer.outputs.is_some_and(|o| format.fits(o, params / o));
        if !fits {
            return Err(invalid(
                field,
                format!("{format}: the branch needs the layer's output channels and at most a quarter of its values"),
            ));
        }
    }
    if let Some(bytes) = bytes {
        let most = params.saturating_mul(8);
        if bytes == 0 || bytes > most {
            return Err(invalid("weight_bytes", format!("{bytes} is outside 1..={most} for {params} weights")));
        }
    }
    Ok(())
}

/// Activation bits: a width the activation quantizer supports, or [`FLOAT_BITS`].
pub(crate) fn activation_bits(field: &str, bits: u32) -> Checked {
    let supported = u8::try_from(bits).is_ok_and(|b| ACTIVATION_BITS.contains(&b));
    if supported || bits == FLOAT_BITS {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{bits} bits is outside {}..={} or {FLOAT_BITS} (float)",
                ACTIVATION_BITS.start(),
                ACTIVATION_BITS.end()
            ),
        ))
    }
}

/// A plain file name: a record names files beside it, never elsewhere.
pub(crate) fn file_name(field: &str, name: &str) -> Checked {
    let plain = std::path::Path::new(name).file_name().is_some_and(|n| n == name);
    if plain { Ok(()) } else { Err(invalid(field, format!("'{name}' is not a plain file name beside the record"))) }
}

/// A sha256 digest as bitsearch writes it: 64 lowercase hex digits.
pub(crate) fn sha256(field: &str, digest: &str) -> Checked {
    let hex = digest.len() == 64 && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex { Ok(()) } else { Err(invalid(field, format!("'{digest}' is not a sha256 (64 lowercase hex digits)"))) }
}

/// Items listed at most once, by `key` (hashed: a table may hold millions of rows).
pub(crate) fn distinct<T, K: Eq + std::hash::Hash + std::fmt::Display>(
    field: &str,
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Checked {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        if seen.contains(&k) {
            return Err(invalid(format!("{field}[{i}]"), format!("'{k}' is listed twice")));
        }
        seen.insert(k);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_groups_must_cover_the_schedule_in_order() {
        assert!(step_groups("g", &[[0, 1], [2, 3]], 4).is_ok());
        assert_eq!(step_groups("g", &[[0, 1], [3, 3]], 4).unwrap_err().field, "g[1]");
        assert_eq!(step_groups("g", &[[5, 2]], 6).unwrap_err().field, "g[0]");
        assert!(
            step_groups("g", &[[0, 1_000_000_000_000]], 1_000_000_000_001).unwrap_err().message.contains("outside")
        );
        assert!(step_groups("g", &[[0, 1]], 4).unwrap_err().message.contains("cover 2 steps"));
        assert!(step_groups("g", &[], 4).is_err());
    }

    #[test]
    fn ranges_refuse_nan_and_infinities_unless_allowed() {
        assert!(within("x", f64::NAN, f64::NEG_INFINITY, f64::INFINITY).is_err());
        assert!(within("x", f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY).is_ok());
        assert!(finite("x", f64::INFINITY).is_err());
        assert!(non_negative("x", -0.5).is_err());
        assert!(activation_bits("a", 8).is_ok() && activation_bits("a", 32).is_ok());
        assert!(activation_bits("a", 17).is_err() && activation_bits("a", 1).is_err());
        assert_eq!(distinct("ids", &[1, 2, 1], |v| *v).unwrap_err().field, "ids[2]");
        assert!(sha256("s", &"ab".repeat(32)).is_ok());
        assert!(sha256("s", &"AB".repeat(32)).is_err() && sha256("s", "ab").is_err());
    }
}
