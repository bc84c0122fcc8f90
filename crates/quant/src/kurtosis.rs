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

/// Weight bit-widths whose split keeps every channel within a packed int4 container and at 1 bit
/// or more (1: sign codes): a 4-bit split would need 5-bit channels, so an int8 container.
pub const SPLIT_BITS: [u8; 2] = [2, 3];

/// MPQ-DM's k: a tenth of the output channels move up a bit, as many move down.
pub fn split_channels(channels: usize) -> usize {
    channels / 10
}

/// The per-channel bit-widths of MPQ-DM's split of `w` (output channels along `axis`) at
/// `bits`: [`channel_bits`] of the channels' kurtosis with k = [`split_channels`].
pub fn outlier_split_bits(w: ArrayViewD<f32>, axis: usize, bits: u8) -> Result<Vec<u8>, QuantError> {
    let kurtosis = channel_kurtosis(w, axis)?;
    Ok(channel_bits(&kurtosis, bits, split_channels(kurtosis.len())))
}

/// Bit-width per channel: the `k` highest-kurtosis channels get `bits + 1`, the `k` lowest
/// `bits − 1`, the rest `bits`. The average stays `bits` when 2k ≤ C; beyond that the top set
/// wins the overlap. Ties keep channel order (the earlier channel ranks higher). Widths are not
/// checked here: the quantizer rejects ones it cannot store (0 bits from `bits` = 1).
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
    fn the_split_moves_a_tenth_of_the_channels_and_keeps_the_mean_bits() {
        assert_eq!((split_channels(9), split_channels(10), split_channels(64)), (0, 1, 6));
        // 20 channels of 8 values, channel c with one outlier of size c: kurtosis grows with c.
        let w = ArrayD::from_shape_fn(IxDyn(&[20, 8]), |d| {
            if d[1] == 0 { d[0] as f32 + 1.0 } else { 0.1 * (d[1] as f32 - 4.0) }
        });
        for bits in SPLIT_BITS {
            let split = outlier_split_bits(w.view(), 0, bits).unwrap();
            assert_eq!(split.iter().map(|&b| u32::from(b)).sum::<u32>(), u32::from(bits) * 20);
            assert_eq!(split.iter().filter(|&&b| b == bits + 1).count(), 2);
            assert!(split[19] == bits + 1 && split[18] == bits + 1, "{split:?}");
            assert!(split.iter().all(|&b| (1..=4).contains(&b)));
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
