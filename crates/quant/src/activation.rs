//! Asymmetric per-tensor activation quantization over a calibrated range, as ONNX
//! QuantizeLinear computes it: q = clamp(round(x / scale) + zero_point, 0, 2^b − 1). The range is
//! widened to contain 0 so that zero (padding, ReLU output) is exactly representable. Ranges may
//! be kept per denoising step, since activation ranges drift strongly across steps.

use crate::QuantError;
use bitsearch_types::ACTIVATION_BITS;
use ndarray::{ArrayD, ArrayViewD, Axis};
use serde::{Deserialize, Serialize};

/// Running min/max of observed activations. Starts empty (min > max); the empty bounds are
/// finite (±f32::MAX) so a range always serializes to JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActRange {
    pub min: f32,
    pub max: f32,
}

impl Default for ActRange {
    fn default() -> Self {
        ActRange::EMPTY
    }
}

impl ActRange {
    pub const EMPTY: ActRange = ActRange { min: f32::MAX, max: f32::MIN };

    /// Widens the range to cover the finite values of `x`. Non-finite values are skipped: one
    /// overflowing activation must not turn the whole calibration into an infinite scale.
    pub fn observe(&mut self, x: ArrayViewD<f32>) {
        for &v in x.iter().filter(|v| v.is_finite()) {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.min > self.max || self.min.is_nan() || self.max.is_nan()
    }

    /// The smallest range covering both.
    pub fn union(self, other: ActRange) -> ActRange {
        ActRange { min: self.min.min(other.min), max: self.max.max(other.max) }
    }
}

/// One activation range per denoising step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRanges {
    ranges: Vec<ActRange>,
}

impl StepRanges {
    pub fn observe(&mut self, step: usize, x: ArrayViewD<f32>) {
        if self.ranges.len() <= step {
            self.ranges.resize(step + 1, ActRange::EMPTY);
        }
        self.ranges[step].observe(x);
    }

    /// The range of `step`, `None` when nothing finite was observed at that step.
    pub fn get(&self, step: usize) -> Option<ActRange> {
        self.ranges.get(step).copied().filter(|r| !r.is_empty())
    }

    /// One past the last observed step.
    pub fn steps(&self) -> usize {
        self.ranges.len()
    }

    /// The range over all steps, for a single per-tensor scale.
    pub fn merged(&self) -> ActRange {
        self.ranges.iter().fold(ActRange::EMPTY, |acc, &r| acc.union(r))
    }
}

/// An asymmetric per-tensor quantizer; its parameters are fixed at construction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActQuantizer {
    bits: u8,
    range: ActRange,
    scale: f32,
    zero_point: u16,
}

impl ActQuantizer {
    /// Needs 2..=16 bits and a non-empty finite range.
    pub fn new(bits: u8, range: ActRange) -> Result<Self, QuantError> {
        if !ACTIVATION_BITS.contains(&bits) {
            return Err(QuantError::Bits { bits, min: *ACTIVATION_BITS.start(), max: *ACTIVATION_BITS.end() });
        }
        if range.is_empty() || !range.min.is_finite() || !range.max.is_finite() {
            return Err(QuantError::Range { min: range.min, max: range.max });
        }
        let (lo, hi) = (range.min.min(0.0), range.max.max(0.0));
        let levels = f64::from(levels(bits));
        // f64 so that a range near ±f32::MAX does not overflow; the floor keeps a degenerate
        // [0, 0] range (or one so narrow the step underflows) from dividing by zero: every value
        // then lands on zero or within a few f32::MIN_POSITIVE of it.
        let scale = (((f64::from(hi) - f64::from(lo)) / levels) as f32).max(f32::MIN_POSITIVE);
        let zero_point = (f64::from(-lo) / f64::from(scale)).round().clamp(0.0, levels) as u16;
        Ok(ActQuantizer { bits, range, scale, zero_point })
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The calibrated range as given (before widening to contain 0).
    pub fn range(&self) -> ActRange {
        self.range
    }

    /// (scale, zero point), ready for an ONNX QuantizeLinear/DequantizeLinear pair.
    pub fn params(&self) -> (f32, u16) {
        (self.scale, self.zero_point)
    }

    /// Quantize then dequantize in f32; values outside the range saturate at its ends. Ties
    /// round to even, as ONNX QuantizeLinear does, so probes see what the exported model computes.
    pub fn fake_quantize(&self, x: ArrayViewD<f32>) -> ArrayD<f32> {
        let (levels, zp, s) = (levels(self.bits), f32::from(self.zero_point), self.scale);
        x.mapv(|v| (((v / s).round_ties_even() + zp).clamp(0.0, levels) - zp) * s)
    }
}

/// 2^b − 1, the largest code.
fn levels(bits: u8) -> f32 {
    ((1u32 << bits) - 1) as f32
}

/// The key of an activation's calibrated range: the tensor, marked when its first token row
/// (MixDQ's BOS) is left out of the range.
pub fn range_key(tensor: &str, first_row_float: bool) -> String {
    if first_row_float { format!("{tensor}#rows-1..") } else { tensor.to_string() }
}

/// Every token row but the first along [`bitsearch_types::TOKEN_AXIS`] (the values themselves
/// when they have no second row to keep).
pub fn without_first_row(values: ArrayViewD<'_, f32>) -> ArrayViewD<'_, f32> {
    let axis = bitsearch_types::TOKEN_AXIS;
    if values.ndim() > axis && values.shape()[axis] > 1 {
        values.slice_axis_move(Axis(axis), (1..).into())
    } else {
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Axis, array};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn range(min: f32, max: f32) -> ActRange {
        ActRange { min, max }
    }

    fn gaussian(n: usize, seed: u64) -> ArrayD<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array1::from_shape_simple_fn(n, || StandardNormal.sample(&mut rng)).into_dyn()
    }

    #[test]
    fn params_match_the_formula() {
        let q = ActQuantizer::new(8, range(-1.0, 3.0)).unwrap();
        let (scale, zp) = q.params();
        assert_eq!(scale, 4.0 / 255.0);
        assert_eq!(zp, 64); // round(1 / (4/255)) = round(63.75)
        // A positive-only range is widened to start at 0, so the zero point is 0.
        assert_eq!(ActQuantizer::new(4, range(0.5, 1.5)).unwrap().params(), (1.5 / 15.0, 0));
        // A negative-only range ends at 0: the zero point is the top code.
        assert_eq!(ActQuantizer::new(4, range(-3.0, -1.0)).unwrap().params().1, 15);
    }

    #[test]
    fn zero_is_exact() {
        for r in [range(-1.7, 3.1), range(0.3, 2.0), range(-5.0, -0.2), range(-0.001, 1000.0)] {
            for bits in [2, 4, 8, 16] {
                let q = ActQuantizer::new(bits, r).unwrap();
                assert_eq!(q.fake_quantize(array![0.0f32].into_dyn().view())[0], 0.0, "{r:?} {bits}");
            }
        }
    }

    #[test]
    fn inside_error_at_most_half_a_step_outside_clamped() {
        let r = range(-1.7, 3.1);
        for bits in [2, 4, 8] {
            let q = ActQuantizer::new(bits, r).unwrap();
            let (scale, zp) = q.params();
            let inside = Array1::linspace(r.min, r.max, 1001).into_dyn();
            let fq = q.fake_quantize(inside.view());
            for (&x, &y) in inside.iter().zip(&fq) {
                assert!((x - y).abs() <= scale / 2.0 * (1.0 + 1e-5), "{bits}: {x} → {y}");
            }
            let outside = array![r.max + 10.0, r.min - 10.0, 1e30, -1e30].into_dyn();
            let fq = q.fake_quantize(outside.view());
            let (top, bottom) = ((levels(bits) - f32::from(zp)) * scale, -f32::from(zp) * scale);
            assert_eq!(fq, array![top, bottom, top, bottom].into_dyn());
            assert!((top - r.max).abs() <= scale / 2.0 * (1.0 + 1e-5));
            assert!((bottom - r.min).abs() <= scale / 2.0 * (1.0 + 1e-5));
        }
    }

    #[test]
    fn degenerate_ranges_do_not_divide_by_zero() {
        let x = array![0.0f32, 1.0, -1.0, 5.0].into_dyn();
        let q = ActQuantizer::new(8, range(0.0, 0.0)).unwrap();
        let (scale, zp) = q.params();
        assert!(scale > 0.0 && zp == 0);
        let fq = q.fake_quantize(x.view());
        assert!(fq.iter().all(|v| v.is_finite() && v.abs() < 1e-30), "{fq:?}");
        // min == max away from zero: widening to 0 makes it a proper range.
        let q = ActQuantizer::new(8, range(2.0, 2.0)).unwrap();
        assert_eq!(q.params(), (2.0 / 255.0, 0));
        assert!((q.fake_quantize(x.view())[1] - 1.0).abs() <= 1.0 / 255.0);
    }

    #[test]
    fn observing_batches_equals_observing_their_concatenation() {
        let (a, b) = (gaussian(100, 1), gaussian(37, 2) * 3.0);
        let mut split = ActRange::default();
        split.observe(a.view());
        split.observe(b.view());
        let mut whole = ActRange::EMPTY;
        whole.observe(ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap().view());
        assert_eq!(split, whole);
        assert_eq!(whole.min, a.iter().chain(&b).copied().fold(f32::INFINITY, f32::min));
        assert_eq!(whole.max, a.iter().chain(&b).copied().fold(f32::NEG_INFINITY, f32::max));
    }

    #[test]
    fn observe_skips_non_finite_values() {
        let mut r = ActRange::EMPTY;
        assert!(r.is_empty());
        r.observe(array![f32::NAN, f32::INFINITY].into_dyn().view());
        assert!(r.is_empty());
        r.observe(array![1.5f32, f32::NEG_INFINITY, -0.5].into_dyn().view());
        assert_eq!(r, range(-0.5, 1.5));
    }

    #[test]
    fn error_strictly_decreases_with_bits() {
        let x = gaussian(4096, 3);
        let mut r = ActRange::EMPTY;
        r.observe(x.view());
        let errs: Vec<f64> = [2, 3, 4, 6, 8, 12, 16]
            .iter()
            .map(|&b| {
                let fq = ActQuantizer::new(b, r).unwrap().fake_quantize(x.view());
                x.iter().zip(&fq).map(|(&a, &b)| f64::from(a - b).powi(2)).sum()
            })
            .collect();
        assert!(errs.windows(2).all(|p| p[1] < p[0]), "{errs:?}");
    }

    #[test]
    fn step_ranges_keep_one_range_per_step() {
        let mut steps = StepRanges::default();
        steps.observe(2, array![1.0f32, 4.0].into_dyn().view());
        steps.observe(0, array![-2.0f32, 0.5].into_dyn().view());
        steps.observe(2, array![-1.0f32].into_dyn().view());
        assert_eq!(steps.steps(), 3);
        assert_eq!(steps.get(0), Some(range(-2.0, 0.5)));
        assert_eq!(steps.get(1), None);
        assert_eq!(steps.get(2), Some(range(-1.0, 4.0)));
        assert_eq!(steps.get(3), None);
        assert_eq!(steps.merged(), range(-2.0, 4.0));
        // The unobserved step stays finite, so the whole map survives JSON.
        let json = serde_json::to_string(&steps).unwrap();
        assert_eq!(serde_json::from_str::<StepRanges>(&json).unwrap(), steps);
    }

    #[test]
    fn invalid_settings_are_errors() {
        let r = range(-1.0, 1.0);
        for bits in [0, 1, 17] {
            assert_eq!(ActQuantizer::new(bits, r), Err(QuantError::Bits { bits, min: 2, max: 16 }));
        }
        for bad in [ActRange::EMPTY, range(1.0, -1.0), range(f32::NAN, 1.0), range(-1.0, f32::INFINITY)] {
            assert!(matches!(ActQuantizer::new(8, bad), Err(QuantError::Range { .. })), "{bad:?}");
        }
    }
}
