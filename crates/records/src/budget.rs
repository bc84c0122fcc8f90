//! Budgets as users write them: `memory=2.5MB`, `avg-bits=4.0`, `bops=1.2e12`, or a bare
//! amount whose unit says the kind (`2.5MB`, `4.0bits`, `1.2e12bops`); `30%` is a fraction of
//! the full-precision value (a bare percentage is a memory budget). A bare number such as `4.5`
//! is refused: it could mean bits, bytes or BOPs, and guessing one turns a typo into a plan
//! that silently solves the wrong problem. A sweep is a range of budgets of one kind:
//! `avg-bits=2.5..8:50`; it too needs a kind, a unit on either end, or percentages.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// Bytes of the weights: codes plus the quantizer's scales; protected layers in float32.
    Memory,
    /// Σ MACs · weight bits · activation bits over every step that runs the layer.
    Bops,
    /// Parameter-weighted mean weight bits of the quantized (not protected) layers.
    AvgBits,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Bops => "bops",
            Resource::AvgBits => "avg-bits",
        }
    }

    /// Whether the resource is charged in every step that runs a layer (BOPs) rather than
    /// once for the stored weights (memory, avg-bits).
    pub fn per_step(self) -> bool {
        match self {
            Resource::Bops => true,
            Resource::Memory | Resource::AvgBits => false,
        }
    }

    /// An amount of this resource in the units people read.
    pub fn format(self, value: f64) -> String {
        match self {
            Resource::Memory => format!("{:.4}MB", value / 1e6),
            Resource::Bops => format!("{value:.4e}bops"),
            Resource::AvgBits => format!("{value:.4}bits"),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Resource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_resource(s)
    }
}

/// How much of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// In the resource's own unit (bytes, BOPs, bits).
    Absolute(f64),
    /// A fraction of the full-precision value (0.3 for `30%`).
    OfFullPrecision(f64),
}

impl Amount {
    /// Whether the amount is a finite number above zero, the only kind a budget can hold (a
    /// subnormal one is refused too: a sweep's points between two of them would round to zero).
    fn is_positive(self) -> bool {
        self.number().is_normal() && self.number() > 0.0
    }

    /// The number as written: in the resource's unit, or a fraction.
    pub fn number(self) -> f64 {
        match self {
            Amount::Absolute(v) | Amount::OfFullPrecision(v) => v,
        }
    }

    /// The amount in the resource's unit, given the full-precision value.
    pub fn resolve(self, full_precision: f64) -> f64 {
        match self {
            Amount::Absolute(v) => v,
            Amount::OfFullPrecision(f) => f * full_precision,
        }
    }
}

/// One budget as a solved program used it, as plans record it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub resource: Resource,
    #[serde(with = "crate::float_text")]
    pub limit: f64,
    /// The lower bound (first budget only).
    pub lower: Option<f64>,
    #[serde(with = "crate::float_text")]
    pub used: f64,
    #[serde(with = "crate::float_text")]
    pub full_precision: f64,
}

/// An upper limit on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub resource: Resource,
    pub amount: Amount,
}

impl FromStr for Budget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (resource, amount) = match s.split_once('=') {
            Some((kind, amount)) => (Some(parse_resource(kind.trim())?), amount.trim()),
            None => (None, s.trim()),
        };
        let (amount, unit) = parse_amount(amount).ok_or_else(|| {
            format!(
                "'{s}' is not a budget: expected e.g. avg-bits=4.0, memory=2.5MB, bops=1.2e12, 4.0bits, 2.5MB or 30%"
            )
        })?;
        let resource = match (resource, unit) {
            (Some(r), Some(u)) if r != u => {
                return Err(format!("'{s}': a {} budget cannot be given in {} units", r.name(), u.name()));
            }
            (Some(r), _) | (None, Some(r)) => r,
            (None, None) if matches!(amount, Amount::OfFullPrecision(_)) => Resource::Memory,
            (None, None) => return Err(no_unit(s)),
        };
        if !amount.is_positive() {
            return Err(format!("'{s}': a budget must be a positive number"));
        }
        Ok(Budget { resource, amount })
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.amount {
            Amount::Absolute(v) => write!(f, "{}={}", self.resource, self.resource.format(v)),
            Amount::OfFullPrecision(p) => write!(f, "{}={}%", self.resource, p * 100.0),
        }
    }
}

/// Most budgets one sweep solves: each is an integer program and a plan file, and a frontier
/// of tens of points already draws the curve.
pub const MAX_SWEEP_POINTS: usize = 10_000;

/// `[KIND=]FROM..TO:N`, e.g. `avg-bits=2.5..8:50` or `2.5bits..8bits:50`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub resource: Resource,
    pub from: Amount,
    pub to: Amount,
    pub points: usize,
}

impl FromStr for Sweep {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad =
            || format!("'{s}' is not a sweep: expected [KIND=]FROM..TO:N, e.g. avg-bits=2.5..8:50 or 1MB..4MB:20");
        let (kind, rest) = match s.split_once('=') {
            Some((kind, rest)) => (Some(parse_resource(kind.trim())?), rest),
            None => (None, s),
        };
        let (range, points) = rest.rsplit_once(':').ok_or_else(bad)?;
        let (from, to) = range.split_once("..").ok_or_else(bad)?;
        let points: usize = points.trim().parse().map_err(|_| bad())?;
        let (from, from_unit) = parse_amount(from.trim()).ok_or_else(bad)?;
        let (to, to_unit) = parse_amount(to.trim()).ok_or_else(bad)?;
        let percentages = matches!((from, to), (Amount::OfFullPrecision(_), Amount::OfFullPrecision(_)));
        let resource = match kind.or(from_unit).or(to_unit) {
            Some(r) => r,
            None if percentages => Resource::Memory,
            None => return Err(no_unit(s)),
        };
        if [from_unit, to_unit].into_iter().flatten().any(|u| u != resource) {
            return Err(format!("'{s}': both ends must be {} amounts", resource.name()));
        }
        // The budgets take `from`'s kind of amount, so a mixed range would read one end wrongly.
        if matches!(from, Amount::OfFullPrecision(_)) != matches!(to, Amount::OfFullPrecision(_)) {
            return Err(format!("'{s}': both ends must be percentages, or neither"));
        }
        if !(from.is_positive() && to.is_positive()) {
            return Err(format!("'{s}': both ends must be positive numbers"));
        }
        if !(2..=MAX_SWEEP_POINTS).contains(&points) {
            return Err(format!("'{s}': {points} points is outside a sweep's 2..={MAX_SWEEP_POINTS}"));
        }
        Ok(Sweep { resource, from, to, points })
    }
}

impl Sweep {
    /// The budgets, evenly spaced from `from` to `to`.
    pub fn budgets(&self) -> Vec<Budget> {
        let (a, b) = (self.from.number(), self.to.number());
        (0..self.points)
            .map(|i| {
                // Weighted, not a + (b - a)·t: the last point is `to` exactly, and ends far
                // apart in size do not cancel to zero.
                let t = i as f64 / (self.points - 1) as f64;
                let v = a * (1.0 - t) + b * t;
                let amount = match self.from {
                    Amount::Absolute(_) => Amount::Absolute(v),
                    Amount::OfFullPrecision(_) => Amount::OfFullPrecision(v),
                };
                Budget { resource: self.resource, amount }
            })
            .collect()
    }
}

/// Why a number with neither a kind nor a unit is refused, and how to write it.
fn no_unit(s: &str) -> String {
    format!(
        "'{s}' has no unit: write avg-bits=4.5 or 4.5bits, memory=4.5MB, bops=4.5e12 or 4.5bops, or a percentage like 30%"
    )
}

fn parse_resource(kind: &str) -> Result<Resource, String> {
    match kind {
        "memory" | "mem" => Ok(Resource::Memory),
        "bops" => Ok(Resource::Bops),
        "avg-bits" | "bits" => Ok(Resource::AvgBits),
        other => Err(format!("unknown budget '{other}', expected memory, bops or avg-bits")),
    }
}

/// The amount and the resource its unit implies (None for no unit or a percentage).
pub fn parse_amount(text: &str) -> Option<(Amount, Option<Resource>)> {
    if let Some(percent) = text.strip_suffix('%') {
        return Some((Amount::OfFullPrecision(percent.trim().parse::<f64>().ok()? / 100.0), None));
    }
    // The unit starts at the first letter that is not an exponent's `e`.
    let split = text.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().ok()?;
    let unit = unit.trim();
    let (scale, implied) = match unit.to_ascii_lowercase().as_str() {
        "" => (1.0, None),
        "b" => (1.0, Some(Resource::Memory)),
        "kb" => (1e3, Some(Resource::Memory)),
        "mb" => (1e6, Some(Resource::Memory)),
        "gb" => (1e9, Some(Resource::Memory)),
        "kib" => (1024.0, Some(Resource::Memory)),
        "mib" => (1024.0 * 1024.0, Some(Resource::Memory)),
        "gib" => (1024.0 * 1024.0 * 1024.0, Some(Resource::Memory)),
        "bops" => (1.0, Some(Resource::Bops)),
        "bits" | "bit" => (1.0, Some(Resource::AvgBits)),
        _ => return None,
    };
    Some((Amount::Absolute(value * scale), implied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units_kinds_and_percentages() {
        let b = |s: &str| s.parse::<Budget>().unwrap();
        assert_eq!(b("2.5MB"), Budget { resource: Resource::Memory, amount: Amount::Absolute(2.5e6) });
        assert_eq!(b("memory=1KiB"), Budget { resource: Resource::Memory, amount: Amount::Absolute(1024.0) });
        assert_eq!(b("4.0bits"), Budget { resource: Resource::AvgBits, amount: Amount::Absolute(4.0) });
        assert_eq!(b("avg-bits=3.5"), Budget { resource: Resource::AvgBits, amount: Amount::Absolute(3.5) });
        assert_eq!(b("1.2e12bops"), Budget { resource: Resource::Bops, amount: Amount::Absolute(1.2e12) });
        assert_eq!(b("bops=2E9"), Budget { resource: Resource::Bops, amount: Amount::Absolute(2e9) });
        assert_eq!(b("30%"), Budget { resource: Resource::Memory, amount: Amount::OfFullPrecision(0.3) });
        assert_eq!(b("bops=25%"), Budget { resource: Resource::Bops, amount: Amount::OfFullPrecision(0.25) });
    }

    #[test]
    fn nonsense_budgets_are_refused_with_the_reason() {
        for (bad, reason) in [
            ("avg-bits=2MB", "cannot be given in memory units"),
            ("speed=3", "unknown budget"),
            ("4 apples", "is not a budget"),
            ("memory=-1MB", "positive"),
            ("0bits", "positive"),
            ("4.5", "has no unit"),
            (" 1000000 ", "has no unit"),
            ("2e9", "has no unit"),
        ] {
            let message = bad.parse::<Budget>().unwrap_err();
            assert!(message.contains(reason), "{bad}: {message}");
        }
    }

    #[test]
    fn sweeps_need_a_kind_or_a_unit() {
        let sweep = |s: &str| s.parse::<Sweep>().unwrap();
        assert_eq!(sweep("avg-bits=2.5..8:50").resource, Resource::AvgBits);
        assert_eq!(sweep("1MB..4MB:20").resource, Resource::Memory);
        assert_eq!(sweep("2..8bits:4").resource, Resource::AvgBits);
        assert_eq!(sweep("20%..60%:5").resource, Resource::Memory);
        assert_eq!(sweep("bops=20%..60%:5").resource, Resource::Bops);
        for bad in ["1..4:5", "2.5..8:50", "20%..4:3"] {
            let message = bad.parse::<Sweep>().unwrap_err();
            assert!(message.contains("has no unit") && message.contains("avg-bits=4.5"), "{bad}: {message}");
        }
        for (bad, reason) in [
            ("20%..4MB:3", "percentages, or neither"),
            ("avg-bits=0..8:3", "positive"),
            ("bops=10%..inf%:3", "positive"),
            ("memory=-1MB..1MB:3", "positive"),
        ] {
            let message = bad.parse::<Sweep>().unwrap_err();
            assert!(message.contains(reason), "{bad}: {message}");
        }
    }

    #[test]
    fn sweeps_are_bounded_before_any_budget_is_made() {
        assert_eq!("avg-bits=4..8:10000".parse::<Sweep>().unwrap().points, MAX_SWEEP_POINTS);
        for bad in ["avg-bits=4..8:1000000000", "avg-bits=4..8:10001", "avg-bits=4..8:1"] {
            let message = bad.parse::<Sweep>().unwrap_err();
            assert!(message.contains("is outside a sweep's 2..=10000"), "{bad}: {message}");
        }
    }

    #[test]
    fn a_sweep_between_ends_far_apart_ends_at_its_end() {
        // Found by the budget fuzz target: 1e91 + (6 − 1e91) is 0.
        let sweep: Sweep = "1e91B..6:95".parse().unwrap();
        let budgets = sweep.budgets();
        assert_eq!(budgets.last().unwrap().amount, Amount::Absolute(6.0));
        assert!(budgets.iter().all(|b| Amount::is_positive(b.amount)));
        assert!("5e-324bits".parse::<Budget>().is_err(), "a subnormal budget");
    }

    #[test]
    fn the_fuzz_seeds_read_back() {
        for file in crate::fuzz_seed_files("budget") {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.parse::<Budget>().is_ok() || text.parse::<Sweep>().is_ok(), "{}", file.display());
        }
    }
}
