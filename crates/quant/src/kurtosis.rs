//! MPQ-DM's outlier-driven mixed precision (OMQ): channels whose weights are heavy-tailed (high
//! kurtosis) get one bit more, the flattest channels one bit less, so the average stays put.

use crate::QuantError;
use crate::weight::check_weight;
use ndarray::{ArrayViewD, Axis};

/// Kurtosis E[(w−μ)^4] / σ^4 (population moments, not excess) of each output channel along
/// `axis`. A constant channel has no outliers and gets 0, so it ranks as the flattest.
pub fn channel_kurtosis(w: ArrayViewD<f32>, axis: usize) -> Result<Vec<f32>, QuantError> {
    check_weight(&w, axis)?;
    Ok(w.axis_iter(Axis(axis))
        .map(|ch| {
            let n = ch.len() as f64;
            let mean = ch.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let (m2, m4) = ch.iter().fold((0.0, 0.0), |(m2, m4), &x| {
                let d2 = (f64::from(x) - mean).powi(2);
                (m2 + d2 / n, m4 + d2 * d2 / n)
            });
            if m2 > 0.0 { (m4 / (m2 * m2)) as f32 } else { 0.0 }
        })
        .collect())
}

/// Bit-width per channel: the `k` highest-kurtosis channels get `bits + 1`, the `k` lowest
/// `bits − 1`, the rest `bits`. The average stays `bits` when 2k ≤ C; beyond that the top set
/// wins the overlap. Ties keep channel order (the earlier channel ranks higher). Widths are not
/// checked here: the quantizer rejects ones it cannot store (e.g. 1 bit from `bits` = 2).
pub fn channel_bits(kurtosis: &[f32], bits: u8, k: usize) -> Vec<u8> {
    let mut order: Vec<usize> = (0..kurtosis.len()).collect();
    order.sort_by(|&a, &b| kurtosis[b].total_cmp(&kurtosis[a]));
    let mut out = vec![bits; kurtosis.len()];
    for (rank, &c) in order.iter().enumerate() {
        if rank < k {
            out[c] = bits.saturating_add(1);
        } else if rank + k >= order.len() {
            out[c] = bits.saturating_sub(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clipping, Granularity, WeightQuantizer};
    use ndarray::{ArrayD, IxDyn, array};

    #[test]
    fn kurtosis_matches_hand_computation() {
        // [1,2,3,4]: μ 2.5, m2 = 1.25, m4 = 2.5625 → 1.64.
        // [0,0,0,4]: μ 1, m2 = 3, m4 = 21 → 7/3. A constant channel → 0.
        let w = array![[1.0f32, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 4.0], [5.0, 5.0, 5.0, 5.0]].into_dyn();
        let expected = [1.64f32, 7.0 / 3.0, 0.0];
        for (axis, w) in [(0, w.view()), (1, w.t())] {
            let k = channel_kurtosis(w, axis).unwrap();
            assert!(k.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6), "{k:?}");
        }
    }

    #[test]
    fn kurtosis_rejects_bad_weights() {
        let w = array![[1.0f32, f32::NAN]].into_dyn();
        assert!(matches!(channel_kurtosis(w.view(), 0), Err(QuantError::NonFinite { index: 1, .. })));
        assert_eq!(channel_kurtosis(w.view(), 2), Err(QuantError::Axis { axis: 2, ndim: 2 }));
        assert_eq!(channel_kurtosis(ArrayD::zeros(IxDyn(&[3, 0])).view(), 0), Err(QuantError::Empty));
    }

    #[test]
    fn channel_bits_moves_one_bit_from_flat_to_heavy_channels() {
        let kurt = [1.0f32, 5.0, 3.0, 0.5, 2.0];
        assert_eq!(channel_bits(&kurt, 4, 2), vec![3, 5, 5, 3, 4]);
        assert_eq!(channel_bits(&kurt, 4, 1), vec![4, 5, 4, 3, 4]);
        assert_eq!(channel_bits(&kurt, 4, 0), vec![4; 5]);
        for c in 1..12usize {
            let kurt: Vec<f32> = (0..c).map(|i| ((i * 7) % c) as f32).collect();
            for k in 0..=c / 2 {
                let bits = channel_bits(&kurt, 4, k);
                assert_eq!(bits.iter().map(|&b| usize::from(b)).sum::<usize>(), 4 * c, "C={c} k={k}");
                assert_eq!(bits.iter().filter(|&&b| b == 5).count(), k);
            }
        }
    }

    #[test]
    fn kurtosis_bits_feed_the_mixed_quantizer() {
        let w = array![[0.1f32, -0.2, 0.15, 3.0], [0.5, -0.4, 0.3, -0.6], [0.2, 0.2, -0.2, 0.1]].into_dyn();
        let bits = channel_bits(&channel_kurtosis(w.view(), 0).unwrap(), 4, 1);
        // Row 0 has the outlier; row 1, all of similar magnitude, is the flattest.
        assert_eq!(bits, vec![5, 3, 4]);
        let q =
            WeightQuantizer { bits: 4, granularity: Granularity::PerChannel { axis: 0 }, clipping: Clipping::MinMax };
        assert_eq!(q.quantize_mixed(w.view(), &bits).unwrap().bits, bits);
    }
}
