//! Checks over a table's rows: where fewer bits measured better, and what the outlier split
//! gained.

use super::ProbeRow;
use bitsearch_types::WeightFormat;

/// SQNR two runs in float reach when they differ only by kernel choice (a weight fed at run
/// time instead of pre-packed): above it on both sides, a comparison measures rounding noise.
pub const SQNR_FLOOR_DB: f64 = 120.0;
/// SSIM differences below this are rounding noise too.
pub const SSIM_TOLERANCE: f64 = 1e-9;

/// Layers where fewer weight bits measured *better* than more: for each layer (and activation
/// bits and step group), every pair of consecutive weight bit-widths is compared on one metric
/// (plain quantization only: split, grouped and float8 rows sit beside the plain ones at the same bits).
/// Differences inside float rounding noise ([`SQNR_FLOOR_DB`], [`SSIM_TOLERANCE`]) are ties.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Monotonicity {
    /// Layers with at least two weight bit-widths.
    pub checked: usize,
    /// Ids (`component/name`) of the layers where a lower bit-width beat a higher one on SQNR,
    /// and on SSIM.
    pub sqnr_exceptions: Vec<String>,
    pub ssim_exceptions: Vec<String>,
}

pub fn monotonicity(rows: &[ProbeRow]) -> Monotonicity {
    let mut series: std::collections::BTreeMap<(String, u32, u32), Vec<&ProbeRow>> = Default::default();
    for row in rows.iter().filter(|r| r.weight != WeightFormat::Float && !r.weight.variant()) {
        series.entry((row.layer.id(), row.a_bits, row.step_group)).or_default().push(row);
    }
    let mut result = Monotonicity::default();
    let mut checked = std::collections::BTreeSet::new();
    for ((layer, _, _), mut probes) in series {
        if probes.len() < 2 {
            continue;
        }
        checked.insert(layer.clone());
        probes.sort_by_key(|r| r.weight.bits());
        let sqnr_beaten = probes.windows(2).any(|p| p[0].sqnr_db > p[1].sqnr_db && p[1].sqnr_db < SQNR_FLOOR_DB);
        let ssim_beaten = probes.windows(2).any(|p| p[0].ssim > p[1].ssim + SSIM_TOLERANCE);
        if sqnr_beaten && !result.sqnr_exceptions.contains(&layer) {
            result.sqnr_exceptions.push(layer.clone());
        }
        if ssim_beaten && !result.ssim_exceptions.contains(&layer) {
            result.ssim_exceptions.push(layer.clone());
        }
    }
    result.checked = checked.len();
    result
}

/// What MPQ-DM's outlier split did at one weight bit-width: over the layers probed both ways
/// (same activation bits and step group), the median SQNR and SSIM change from plain to split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitGain {
    pub w_bits: u32,
    pub layers: usize,
    /// Layers whose split measured a higher SQNR than their plain quantization.
    pub improved: usize,
    pub median_sqnr_db: f64,
    pub median_ssim: f64,
}

/// [`SplitGain`] of every weight bit-width with split rows, in increasing bits.
pub fn split_gains(rows: &[ProbeRow]) -> Vec<SplitGain> {
    let key = |r: &ProbeRow| (r.layer.id(), r.weight.bits(), r.a_bits, r.step_group);
    let plain: std::collections::HashMap<_, &ProbeRow> =
        rows.iter().filter(|r| !r.weight.variant()).map(|r| (key(r), r)).collect();
    let mut by_bits: std::collections::BTreeMap<u32, Vec<(f64, f64)>> = Default::default();
    for split in rows.iter().filter(|r| r.weight.split()) {
        if let Some(p) = plain.get(&key(split)) {
            by_bits.entry(split.weight.bits()).or_default().push((split.sqnr_db - p.sqnr_db, split.ssim - p.ssim));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    };
    by_bits
        .into_iter()
        .map(|(w_bits, gains)| SplitGain {
            w_bits,
            layers: gains.len(),
            improved: gains.iter().filter(|g| g.0 > 0.0).count(),
            median_sqnr_db: median(gains.iter().map(|g| g.0).collect()),
            median_ssim: median(gains.iter().map(|g| g.1).collect()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::row;

    #[test]
    fn split_gains_are_medians_over_the_layers_probed_both_ways() {
        let probe = |layer: &str, w_bits: u8, w_split: bool, sqnr_db: f64| {
            let mut row = ProbeRow {
                weight: WeightFormat::Int {
                    bits: w_bits,
                    split: w_split,
                    group: None,
                    rounding: bitsearch_types::Rounding::Nearest,
                    rank: None,
                },
                ..row(0, sqnr_db)
            };
            row.layer.name = layer.into();
            row
        };
        let rows = vec![
            probe("a", 2, false, 5.0),
            probe("a", 2, true, 8.0),
            probe("b", 2, false, 6.0),
            probe("b", 2, true, 5.0),
            probe("c", 2, false, 1.0),
            probe("c", 2, true, 3.0),
            probe("a", 3, false, 9.0),
            probe("d", 3, true, 9.0),
        ];
        let gains = split_gains(&rows);
        assert_eq!(gains.len(), 1, "d has no plain W3 row to compare with");
        assert_eq!((gains[0].w_bits, gains[0].layers, gains[0].improved), (2, 3, 2));
        assert_eq!(gains[0].median_sqnr_db, 2.0);
    }

    #[test]
    fn monotonicity_names_the_layers_where_fewer_bits_won() {
        let probe = |layer: &str, w_bits: u8, sqnr_db: f64, ssim: f64| {
            let mut row = ProbeRow { weight: WeightFormat::int(w_bits), ssim, ..row(0, sqnr_db) };
            row.layer.name = layer.into();
            row
        };
        let rows = vec![
            probe("a", 2, 5.0, 0.5),
            probe("a", 4, 15.0, 0.9),
            probe("a", 8, 30.0, 0.99),
            probe("b", 4, 20.0, 0.95),
            probe("b", 8, 18.0, 0.95),
            probe("c", 8, 1.0, 0.1),
            // Both beyond the float floor: rounding noise, not an exception.
            probe("d", 4, 131.0, 1.0),
            probe("d", 8, 129.0, 1.0 - 1e-12),
        ];
        let m = monotonicity(&rows);
        assert_eq!(m.checked, 3);
        assert_eq!(m.sqnr_exceptions, vec!["unet/b".to_string()]);
        assert!(m.ssim_exceptions.is_empty(), "a tie is not an exception");
    }
}
