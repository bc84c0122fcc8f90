//! Symmetric weight quantization: one scale per output channel or per group of consecutive
//! values inside a channel, a grid of ±(2^(b−1)−1) codes (the −2^(b−1) code is left unused so
//! the grid is symmetric), and either min-max or an MSE-searched clipping range. A channel of a
//! mixed-precision weight may also take 1 bit: the sign, times the mean magnitude (the scale
//! that minimises the squared error of a sign code).

use crate::QuantError;
use bitsearch_types::WEIGHT_BITS;
use bitsearch_types::quantizer::{ClipSearch, WeightScheme};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
/// Bit-widths one channel of a mixed-precision weight may take (1: sign codes).
const CHANNEL_BITS: std::ops::RangeInclusive<u8> = 1..=8;

/// Which values share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One scale per index of `axis`, the axis of the weight indexing output channels.
    PerChannel { axis: usize },
    /// Inside each output channel, the remaining axes are flattened in row-major order and cut
    /// into groups of `group_size` values (the last group may be shorter), one scale each.
    PerGroup { axis: usize, group_size: usize },
}

impl Granularity {
    /// The output-channel axis.
    pub fn axis(self) -> usize {
        match self {
            Granularity::PerChannel { axis } | Granularity::PerGroup { axis, .. } => axis,
        }
    }
}

/// How the clipping range of a channel or group is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clipping {
    /// Clip at max|w|: no value saturates.
    MinMax,
    /// Try `grid` clip ratios evenly spaced from 0.5 to 1.0 (1.0 included) and keep the one with
    /// the smallest squared reconstruction error; ties go to the larger ratio.
    MseSearch { grid: usize },
}

/// A symmetric weight quantizer. Fields are checked on every call, so any value can be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightQuantizer {
    /// Bits per weight, 2..=8.
    pub bits: u8,
    pub granularity: Granularity,
    pub clipping: Clipping,
}

/// Integer codes and the scales that turn them back into weights.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeight {
    /// Same shape as the weight; each within ±(2^(bits of its channel − 1) − 1).
    pub codes: ArrayD<i8>,
    /// `[C_out]` per channel, `[C_out, n_groups]` per group; 0 for an all-zero channel or group.
    pub scales: ArrayD<f32>,
    /// Bit-width of each output channel; all equal unless built by [`WeightQuantizer::quantize_mixed`].
    pub bits: Vec<u8>,
    pub granularity: Granularity,
}

impl QuantizedWeight {
    /// codes × scale of their channel or group, in the weight's shape.
    ///
    /// # Panics
    /// If `scales` was replaced by an array with fewer rows than there are output channels.
    pub fn dequantize(&self) -> ArrayD<f32> {
        let axis = Axis(self.granularity.axis());
        let mut out = ArrayD::<f32>::zeros(self.codes.raw_dim());
        for (c, (codes, mut dst)) in self.codes.axis_iter(axis).zip(out.axis_iter_mut(axis)).enumerate() {
            // Per channel the row is a single scale, per group one scale per group.
            let row: Vec<f32> = self.scales.index_axis(Axis(0), c).iter().copied().collect();
            let group = group_len(self.granularity, codes.len());
            for (i, (&q, d)) in codes.iter().zip(dst.iter_mut()).enumerate() {
                *d = f32::from(q) * row.get(i / group).copied().unwrap_or(0.0);
            }
        }
        out
    }
}

impl WeightQuantizer {
    /// The quantizer `scheme` describes, at `bits`, for a weight whose output channels lie on
    /// `axis`.
    pub fn new(scheme: &WeightScheme, bits: u8, axis: usize) -> Self {
        let granularity = match scheme.group_size {
            Some(group_size) => Granularity::PerGroup { axis, group_size },
            None => Granularity::PerChannel { axis },
        };
        let clipping = match scheme.clipping {
            ClipSearch::Minmax => Clipping::MinMax,
            ClipSearch::Mse => Clipping::MseSearch { grid: scheme.clip_grid },
        };
        Self { bits, granularity, clipping }
    }

    /// Quantizes every output channel at `self.bits`.
    pub fn quantize(&self, w: ArrayViewD<f32>) -> Result<QuantizedWeight, QuantError> {
        check_bits(self.bits)?;
        let axis = self.check_layout(w.ndim())?;
        let bits = vec![self.bits; w.shape()[axis]];
        self.quantize_mixed(w, &bits)
    }

    /// Quantizes output channel `c` at `channel_bits[c]` (MPQ-DM's outlier-driven mixed
    /// precision); granularity and clipping are those of `self`, `self.bits` is not used.
    pub fn quantize_mixed(&self, w: ArrayViewD<f32>, channel_bits: &[u8]) -> Result<QuantizedWeight, QuantError> {
        let channels = check_weight(&w, self.check_layout(w.ndim())?)?;
        if channel_bits.len() != channels {
            return Err(QuantError::ChannelBitsLen { got: channel_bits.len(), expected: channels });
        }
        if let Some((channel, &bits)) = channel_bits.iter().enumerate().find(|(_, b)| !CHANNEL_BITS.contains(b)) {
            return Err(QuantError::ChannelBits { channel, bits });
        }
        let axis = Axis(self.granularity.axis());
        let inner = w.len() / channels;
        let group = group_len(self.granularity, inner);
        let n_groups = inner.div_ceil(group);
        let shape = match self.granularity {
            Granularity::PerChannel { .. } => IxDyn(&[channels]),
            Granularity::PerGroup { .. } => IxDyn(&[channels, n_groups]),
        };
        let mut scales = ArrayD::<f32>::zeros(shape);
        let mut codes = ArrayD::<i8>::zeros(w.raw_dim());
        let (mut values, mut chan_codes, mut chan_scales) = (Vec::new(), Vec::new(), Vec::new());
        for (c, (src, mut dst)) in w.axis_iter(axis).zip(codes.axis_iter_mut(axis)).enumerate() {
            values.clear();
            values.extend(src.iter().copied());
            chan_codes.clear();
            chan_scales.clear();
            for chunk in values.chunks(group) {
                if channel_bits[c] == 1 {
                    let scale = chunk.iter().map(|x| f64::from(x.abs())).sum::<f64>() / chunk.len() as f64;
                    chan_scales.push(scale as f32);
                    chan_codes.extend(chunk.iter().map(|&x| {
                        if scale == 0.0 {
                            0
                        } else if x < 0.0 {
                            -1
                        } else {
                            1
                        }
                    }));
                    continue;
                }
                let qmax = qmax(channel_bits[c]);
                let step = self.clipping.step(chunk, qmax);
                chan_scales.push(step.scale);
                chan_codes.extend(chunk.iter().map(|&x| step.code(x, qmax)));
            }
            dst.iter_mut().zip(&chan_codes).for_each(|(d, &q)| *d = q);
            scales.index_axis_mut(Axis(0), c).iter_mut().zip(&chan_scales).for_each(|(d, &s)| *d = s);
        }
        Ok(QuantizedWeight { codes, scales, bits: channel_bits.to_vec(), granularity: self.granularity })
    }

    /// Quantize then dequantize in f32: the weight a probe feeds to ONNX Runtime.
    pub fn fake_quantize(&self, w: ArrayViewD<f32>) -> Result<ArrayD<f32>, QuantError> {
        Ok(self.quantize(w)?.dequantize())
    }

    /// [`Self::fake_quantize`] with one bit-width per output channel.
    pub fn fake_quantize_mixed(&self, w: ArrayViewD<f32>, channel_bits: &[u8]) -> Result<ArrayD<f32>, QuantError> {
        Ok(self.quantize_mixed(w, channel_bits)?.dequantize())
    }

    /// Validates the layout and the clipping against an `ndim`-D weight; returns the channel axis.
    fn check_layout(&self, ndim: usize) -> Result<usize, QuantError> {
        let axis = self.granularity.axis();
        if axis >= ndim {
            return Err(QuantError::Axis { axis, ndim });
        }
        if let Granularity::PerGroup { group_size: 0, .. } = self.granularity {
            return Err(QuantError::GroupSize);
        }
        if let Clipping::MseSearch { grid: 0 } = self.clipping {
            return Err(QuantError::Grid);
        }
        Ok(axis)
    }
}

/// Rejects empty and non-finite weights; returns the number of output channels along `axis`.
pub(crate) fn check_weight(w: &ArrayViewD<f32>, axis: usize) -> Result<usize, QuantError> {
    if axis >= w.ndim() {
        return Err(QuantError::Axis { axis, ndim: w.ndim() });
    }
    if w.is_empty() {
        return Err(QuantError::Empty);
    }
    if let Some((index, &value)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(QuantError::NonFinite { index, value });
    }
    Ok(w.shape()[axis])
}

fn check_bits(bits: u8) -> Result<(), QuantError> {
    if WEIGHT_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(QuantError::Bits { bits, min: *WEIGHT_BITS.start(), max: *WEIGHT_BITS.end() })
    }
}

/// Largest code magnitude at `bits`, as f32 because all arithmetic happens there.
fn qmax(bits: u8) -> f32 {
    f32::from((1u8 << (bits - 1)) - 1)
}

/// Values per scale inside one channel of `inner` values (at least 1 so chunking is defined).
fn group_len(granularity: Granularity, inner: usize) -> usize {
    match granularity {
        Granularity::PerChannel { .. } => inner.max(1),
        Granularity::PerGroup { group_size, .. } => group_size.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal, StudentT};

    /// (shape, channel axis) of a Conv, a Gemm with transB=0 and a MatMul weight.
    const LAYOUTS: [(&[usize], usize); 3] = [(&[8, 4, 3, 3], 0), (&[16, 32], 1), (&[32, 16], 1)];
    const BITS: [u8; 5] = [2, 3, 4, 6, 8];
    const CLIPPINGS: [Clipping; 2] = [Clipping::MinMax, Clipping::MseSearch { grid: 20 }];

    fn wq(bits: u8, granularity: Granularity, clipping: Clipping) -> WeightQuantizer {
        WeightQuantizer { bits, granularity, clipping }
    }

    /// Gaussian weights, or Student-t with 2 degrees of freedom for heavy tails.
    fn random(shape: &[usize], heavy: bool, seed: u64) -> ArrayD<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let t = StudentT::new(2.0f32).unwrap();
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            if heavy { t.sample(&mut rng) } else { StandardNormal.sample(&mut rng) }
        })
    }

    fn sq_err(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| f64::from(x - y).powi(2)).sum()
    }

    /// Every random test input: each layout, Gaussian and heavy-tailed.
    fn inputs() -> Vec<(ArrayD<f32>, usize)> {
        let mut out = Vec::new();
        for (i, &(shape, axis)) in LAYOUTS.iter().enumerate() {
            for heavy in [false, true] {
                out.push((random(shape, heavy, 10 * i as u64 + u64::from(heavy)), axis));
            }
        }
        out
    }

    fn granularities(axis: usize) -> [Granularity; 2] {
        [Granularity::PerChannel { axis }, Granularity::PerGroup { axis, group_size: 8 }]
    }

    #[test]
    fn hand_computed_per_channel() {
        let w = array![[1.0f32, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]].into_dyn();
        let q = wq(4, Granularity::PerChannel { axis: 0 }, Clipping::MinMax).quantize(w.view()).unwrap();
        assert_eq!(q.scales, array![1.0f32 / 7.0, 0.0].into_dyn());
        // -0.5 / (1/7) = -3.5 rounds away from zero.
        assert_eq!(q.codes, array![[7i8, -4, 2, 0], [0, 0, 0, 0]].into_dyn());
        assert_eq!(q.bits, vec![4, 4]);
        let s = 1.0f32 / 7.0;
        let expected = array![[1.0f32, -4.0 * s, 2.0 * s, 0.0], [0.0, 0.0, 0.0, 0.0]].into_dyn();
        let dq = q.dequantize();
        assert_eq!(dq, expected);
        assert_eq!(dq[[0, 0]], 1.0);
        assert!(dq.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn error_strictly_decreases_with_bits() {
        for (w, axis) in inputs() {
            for granularity in granularities(axis) {
                for clipping in CLIPPINGS {
                    let errs: Vec<f64> = BITS
                        .iter()
                        .map(|&b| sq_err(&w, &wq(b, granularity, clipping).fake_quantize(w.view()).unwrap()))
                        .collect();
                    assert!(errs.windows(2).all(|p| p[1] < p[0]), "{granularity:?} {clipping:?} {errs:?}");
                }
            }
        }
    }

    #[test]
    fn mse_search_never_worse_than_min_max() {
        for (w, axis) in inputs() {
            for granularity in granularities(axis) {
                for bits in BITS {
                    let minmax = wq(bits, granularity, Clipping::MinMax).fake_quantize(w.view()).unwrap();
                    let searched = wq(bits, granularity, CLIPPINGS[1]).fake_quantize(w.view()).unwrap();
                    // Channel by channel, since the search is per channel (or group).
                    for c in 0..w.shape()[axis] {
                        let ch = |a: &ArrayD<f32>| a.index_axis(Axis(axis), c).to_owned();
                        assert!(sq_err(&ch(&w), &ch(&searched)) <= sq_err(&ch(&w), &ch(&minmax)));
                    }
                    assert!(sq_err(&w, &searched) <= sq_err(&w, &minmax));
                }
            }
        }
    }

    #[test]
    fn mse_search_beats_min_max_on_heavy_tail() {
        let w = random(&[1, 256], true, 7);
        let g = Granularity::PerChannel { axis: 0 };
        let minmax = sq_err(&w, &wq(3, g, Clipping::MinMax).fake_quantize(w.view()).unwrap());
        let searched = sq_err(&w, &wq(3, g, Clipping::MseSearch { grid: 20 }).fake_quantize(w.view()).unwrap());
        assert!(searched < minmax, "{searched} vs {minmax}");
    }

    #[test]
    fn single_point_grid_is_min_max() {
        for (w, axis) in inputs() {
            let g = Granularity::PerChannel { axis };
            let minmax = wq(3, g, Clipping::MinMax).quantize(w.view()).unwrap();
            assert_eq!(wq(3, g, Clipping::MseSearch { grid: 1 }).quantize(w.view()).unwrap(), minmax);
        }
    }

    #[test]
    fn whole_channel_group_equals_per_channel() {
        for (w, axis) in inputs() {
            let inner = w.len() / w.shape()[axis];
            for clipping in CLIPPINGS {
                let pc = wq(4, Granularity::PerChannel { axis }, clipping).quantize(w.view()).unwrap();
                let pg = wq(4, Granularity::PerGroup { axis, group_size: inner }, clipping).quantize(w.view()).unwrap();
                assert_eq!(pg.codes, pc.codes);
                assert_eq!(pg.scales.shape(), &[w.shape()[axis], 1]);
                assert_eq!(pg.scales.iter().collect::<Vec<_>>(), pc.scales.iter().collect::<Vec<_>>());
                assert_eq!(pg.dequantize(), pc.dequantize());
            }
        }
    }

    #[test]
    fn smaller_groups_never_increase_error() {
        for (w, axis) in inputs() {
            let inner = w.len() / w.shape()[axis];
            for clipping in CLIPPINGS {
                for bits in BITS {
                    let errs: Vec<f64> = [inner, inner / 2, inner / 4]
                        .iter()
                        .map(|&group_size| {
                            let q = wq(bits, Granularity::PerGroup { axis, group_size }, clipping);
                            sq_err(&w, &q.fake_quantize(w.view()).unwrap())
                        })
                        .collect();
                    assert!(errs.windows(2).all(|p| p[1] <= p[0]), "{clipping:?} {bits} {errs:?}");
                }
            }
        }
    }

    #[test]
    fn scale_shapes() {
        let conv = random(&[8, 4, 3, 3], false, 1);
        let pc = wq(4, Granularity::PerChannel { axis: 0 }, Clipping::MinMax);
        assert_eq!(pc.quantize(conv.view()).unwrap().scales.shape(), &[8]);
        // 36 values per channel in groups of 8: 8, 8, 8, 8, 4.
        let pg = wq(3, Granularity::PerGroup { axis: 0, group_size: 8 }, Clipping::MinMax);
        assert_eq!(pg.quantize(conv.view()).unwrap().scales.shape(), &[8, 5]);
        // Gemm [K=16, N=32], channels on axis 1: 32 channels of 16 values, groups of 5 → 4.
        let gemm = random(&[16, 32], false, 2);
        let pg = wq(8, Granularity::PerGroup { axis: 1, group_size: 5 }, Clipping::MinMax);
        assert_eq!(pg.quantize(gemm.view()).unwrap().scales.shape(), &[32, 4]);
    }

    #[test]
    fn groups_follow_row_major_order_inside_a_channel() {
        // One channel (axis 1) of a [4, 2] weight: column 0 holds [1, 2, 3, 40], column 1 zeros.
        let w = array![[1.0f32, 0.0], [2.0, 0.0], [3.0, 0.0], [40.0, 0.0]].into_dyn();
        let q = wq(4, Granularity::PerGroup { axis: 1, group_size: 3 }, Clipping::MinMax).quantize(w.view()).unwrap();
        assert_eq!(q.scales, array![[3.0f32 / 7.0, 40.0 / 7.0], [0.0, 0.0]].into_dyn());
        assert_eq!(q.codes.index_axis(Axis(1), 0), array![2i8, 5, 7, 7].into_dyn());
    }

    #[test]
    fn codes_in_range_and_fake_quantize_is_dequantize_of_quantize() {
        for (w, axis) in inputs() {
            for granularity in granularities(axis) {
                for clipping in CLIPPINGS {
                    for bits in 2..=8 {
                        let q = wq(bits, granularity, clipping);
                        let qw = q.quantize(w.view()).unwrap();
                        let lim = (1i8 << (bits - 1)).wrapping_sub(1);
                        assert!(qw.codes.iter().all(|&c| (-lim..=lim).contains(&c)), "{bits}");
                        assert_eq!(q.fake_quantize(w.view()).unwrap(), qw.dequantize());
                    }
                }
            }
        }
    }

    #[test]
    fn mixed_bits_quantize_each_channel_at_its_width() {
        let w = random(&[4, 2, 3, 3], true, 3);
        let bits = [3u8, 5, 4, 4];
        let g = Granularity::PerGroup { axis: 0, group_size: 4 };
        let mixed = wq(4, g, CLIPPINGS[1]).fake_quantize_mixed(w.view(), &bits).unwrap();
        for (c, &b) in bits.iter().enumerate() {
            let uniform = wq(b, g, CLIPPINGS[1]).fake_quantize(w.view()).unwrap();
            assert_eq!(mixed.index_axis(Axis(0), c), uniform.index_axis(Axis(0), c));
        }
        let q = wq(4, g, CLIPPINGS[1]).quantize_mixed(w.view(), &bits).unwrap();
        assert_eq!(q.bits, bits);
        for (codes, &b) in q.codes.axis_iter(Axis(0)).zip(&bits) {
            let lim = (1i8 << (b - 1)) - 1;
            assert!(codes.iter().all(|&c| (-lim..=lim).contains(&c)));
        }
    }

    #[test]
    fn a_one_bit_channel_is_its_sign_times_the_mean_magnitude() {
        // Row 0: mean |w| = 0.5; row 1 (all zero) stays zero; row 2 at 2 bits as usual.
        let w = array![[1.0f32, -0.5, 0.25, -0.25], [0.0, 0.0, 0.0, 0.0], [0.3, -0.6, 0.0, 0.9]].into_dyn();
        let q = wq(2, Granularity::PerChannel { axis: 0 }, Clipping::MinMax);
        let mixed = q.quantize_mixed(w.view(), &[1, 1, 2]).unwrap();
        assert_eq!(mixed.codes.index_axis(Axis(0), 0).iter().copied().collect::<Vec<_>>(), vec![1i8, -1, 1, -1]);
        assert_eq!(mixed.scales.iter().copied().collect::<Vec<_>>()[..2], [0.5f32, 0.0]);
        assert_eq!(
            mixed.dequantize().index_axis(Axis(0), 0).iter().copied().collect::<Vec<_>>(),
            vec![0.5f32, -0.5, 0.5, -0.5]
        );
        assert_eq!(mixed.dequantize().index_axis(Axis(0), 1).iter().copied().collect::<Vec<_>>(), vec![0.0f32; 4]);
        let two = q.fake_quantize(w.view()).unwrap();
        assert_eq!(mixed.dequantize().index_axis(Axis(0), 2), two.index_axis(Axis(0), 2));
        // No other scale gives a sign code a smaller squared error.
        let err = |s: f32| w.index_axis(Axis(0), 0).iter().map(|&x| (x - s * x.signum()).powi(2)).sum::<f32>();
        assert!([0.4f32, 0.45, 0.55, 0.6].iter().all(|&s| err(s) > err(0.5)));
    }

    #[test]
    fn every_error_path_returns_an_error() {
        let w = random(&[4, 6], false, 4);
        let pc = |axis| Granularity::PerChannel { axis };
        for bits in [0, 1, 9, 16] {
            let q = wq(bits, pc(0), Clipping::MinMax);
            assert_eq!(q.quantize(w.view()), Err(QuantError::Bits { bits, min: 2, max: 8 }));
        }
        let q = wq(4, pc(2), Clipping::MinMax);
        assert_eq!(q.quantize(w.view()), Err(QuantError::Axis { axis: 2, ndim: 2 }));
        let q = wq(4, Granularity::PerGroup { axis: 0, group_size: 0 }, Clipping::MinMax);
        assert_eq!(q.quantize(w.view()), Err(QuantError::GroupSize));
        let q = wq(4, pc(0), Clipping::MseSearch { grid: 0 });
        assert_eq!(q.fake_quantize(w.view()), Err(QuantError::Grid));
        let q = wq(4, pc(0), Clipping::MinMax);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = w.clone();
            v[[1, 2]] = bad;
            assert!(matches!(q.quantize(v.view()), Err(QuantError::NonFinite { index: 8, .. })));
        }
        assert_eq!(q.quantize(ArrayD::<f32>::zeros(IxDyn(&[0, 3])).view()), Err(QuantError::Empty));
        assert_eq!(q.quantize_mixed(w.view(), &[4, 4]), Err(QuantError::ChannelBitsLen { got: 2, expected: 4 }));
        assert_eq!(
            q.fake_quantize_mixed(w.view(), &[4, 4, 0, 9]),
            Err(QuantError::ChannelBits { channel: 2, bits: 0 })
        );
        assert_eq!(q.quantize_mixed(w.view(), &[4, 1, 1, 9]), Err(QuantError::ChannelBits { channel: 3, bits: 9 }));
        // Messages say what was expected.
        assert!(QuantError::Bits { bits: 9, min: 2, max: 8 }.to_string().contains("2..=8"));
        assert!(QuantError::Axis { axis: 2, ndim: 2 }.to_string().contains("below 2"));
    }
}
