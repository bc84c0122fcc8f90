//! 8-bit float weights in E4M3 (the `FN` variant ONNX calls FLOAT8E4M3FN: 1 sign, 4 exponent
//! bits with bias 7, 3 mantissa bits, no infinities, the all-ones pattern NaN): one scale per
//! output channel maps the channel's largest magnitude onto the largest finite E4M3 value, and
//! every value is rounded to the nearest E4M3 number (ties to even mantissa).

use super::{WeightCodec, stored_bytes};
use crate::QuantError;
use crate::weight::check_weight;
use ndarray::{ArrayD, ArrayViewD, Axis};

/// The largest finite E4M3 value, 1.75 · 2⁸.
pub const E4M3_MAX: f32 = 448.0;
/// The smallest normal exponent; below 2⁻⁶ values are subnormal, in steps of 2⁻⁹.
const MIN_EXPONENT: i32 = -6;
const MANTISSA_BITS: i32 = 3;

/// E4M3 bit patterns and the per-channel scales that turn them back into weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Fp8Weight {
    /// One byte per value, in the weight's shape.
    pub codes: ArrayD<u8>,
    /// `[C_out]`; 0 for an all-zero channel.
    pub scales: ArrayD<f32>,
    /// The output-channel axis.
    pub axis: usize,
}

impl Fp8Weight {
    /// Quantizes `w` channel by channel along `axis`.
    pub fn quantize(w: ArrayViewD<f32>, axis: usize) -> Result<Self, QuantError> {
        let channels = check_weight(&w, axis)?;
        let mut codes = ArrayD::<u8>::zeros(w.raw_dim());
        let mut scales = ArrayD::<f32>::zeros(ndarray::IxDyn(&[channels]));
        for (c, (src, mut dst)) in w.axis_iter(Axis(axis)).zip(codes.axis_iter_mut(Axis(axis))).enumerate() {
            let max = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / E4M3_MAX } else { 0.0 };
            scales[c] = scale;
            for (d, &v) in dst.iter_mut().zip(src.iter()) {
                *d = if scale > 0.0 { encode(v / scale) } else { 0 };
            }
        }
        Ok(Self { codes, scales, axis })
    }

    /// Codes × scale of their channel, in the weight's shape.
    pub fn dequantize(&self) -> ArrayD<f32> {
        let mut out = self.codes.mapv(decode);
        for (mut channel, &scale) in out.axis_iter_mut(Axis(self.axis)).zip(self.scales.iter()) {
            channel.mapv_inplace(|v| v * scale);
        }
        out
    }
}

/// The codec of [`bitsearch_types::WeightFormat::E4M3`]: a byte per value, an f32 per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E4m3Codec;

impl WeightCodec for E4m3Codec {
    type Stored = Fp8Weight;

    fn quantize(&self, w: ArrayViewD<f32>, axis: usize) -> Result<Fp8Weight, QuantError> {
        Fp8Weight::quantize(w, axis)
    }

    fn dequantize(&self, stored: &Fp8Weight) -> ArrayD<f32> {
        stored.dequantize()
    }

    fn stored_bytes(&self, stored: &Fp8Weight) -> u64 {
        stored_bytes(stored.codes.len(), 8, stored.scales.len())
    }
}

/// The E4M3 number nearest `x`, saturating at ±[`E4M3_MAX`] (weights have no infinities).
pub fn round_e4m3(x: f32) -> f32 {
    let magnitude = x.abs().min(E4M3_MAX);
    if magnitude == 0.0 {
        return 0.0;
    }
    let exponent = binade(magnitude).max(MIN_EXPONENT);
    // Values of one binade are spaced 2^(e − 3) apart; rounding may carry into the next binade.
    let quantum = 2f32.powi(exponent - MANTISSA_BITS);
    ((magnitude / quantum).round_ties_even() * quantum).min(E4M3_MAX).copysign(x)
}

/// The bit pattern of `x` rounded to E4M3.
pub fn encode(x: f32) -> u8 {
    let v = round_e4m3(x);
    let sign = if v.is_sign_negative() && v != 0.0 { 0x80 } else { 0 };
    let magnitude = v.abs();
    if magnitude < 2f32.powi(MIN_EXPONENT) {
        // Subnormal: the mantissa counts steps of 2⁻⁹.
        return sign | (magnitude / 2f32.powi(MIN_EXPONENT - MANTISSA_BITS)) as u8;
    }
    let exponent = binade(magnitude);
    let mantissa = ((magnitude / 2f32.powi(exponent) - 1.0) * 8.0).round() as u8;
    sign | (((exponent + 7) as u8) << 3) | mantissa
}

/// ⌊log₂ x⌋ of a positive f32, read off its exponent bits (exact where `log2` may round up).
fn binade(x: f32) -> i32 {
    ((x.to_bits() >> 23) & 0xff) as i32 - 127
}

/// The value of an E4M3 bit pattern (NaN for the two NaN patterns).
pub fn decode(bits: u8) -> f32 {
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let (exponent, mantissa) = (i32::from((bits >> 3) & 0x0f), f32::from(bits & 0x07));
    if exponent == 0x0f && mantissa == 7.0 {
        return f32::NAN;
    }
    let magnitude = if exponent == 0 {
        mantissa * 2f32.powi(MIN_EXPONENT - MANTISSA_BITS)
    } else {
        (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 7)
    };
    sign * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn every_finite_pattern_round_trips_and_rounding_picks_the_nearest() {
        let finite: Vec<u8> = (0..=255u8).filter(|b| !decode(*b).is_nan()).collect();
        assert_eq!(finite.len(), 254);
        for &b in &finite {
            let v = decode(b);
            assert_eq!(round_e4m3(v), v, "pattern {b:#04x}");
            // −0 encodes as +0; every other pattern gives itself back.
            assert!(encode(v) == b || (b == 0x80 && encode(v) == 0), "pattern {b:#04x}");
        }
        let mut values: Vec<f32> = finite.iter().map(|&b| decode(b)).collect();
        values.sort_by(f32::total_cmp);
        assert_eq!(values.last().copied(), Some(E4M3_MAX));
        // Any value rounds to the closest representable one.
        for x in [0.3f32, -1.06, 3.3, 250.0, 0.0009, 0.01, 447.0, 1000.0] {
            let nearest = values.iter().copied().min_by(|a, b| (a - x).abs().total_cmp(&(b - x).abs())).unwrap();
            assert!((round_e4m3(x) - nearest).abs() <= f32::EPSILON * nearest.abs(), "{x}");
        }
        // Ties go to the even mantissa: 1.0625 lies halfway between 1.0 and 1.125.
        assert_eq!(round_e4m3(1.0625), 1.0);
        assert_eq!(round_e4m3(1.1875), 1.25);
    }

    #[test]
    fn a_channel_scale_maps_its_largest_magnitude_to_the_format_maximum() {
        let w = array![[1.0f32, -0.5, 0.01], [0.0, 0.0, 0.0], [-3.0, 2.0, 0.7]].into_dyn();
        let q = Fp8Weight::quantize(w.view(), 0).unwrap();
        assert_eq!(q.scales[1], 0.0);
        let back = q.dequantize();
        assert_eq!(back[[0, 0]], 1.0);
        assert_eq!(back[[2, 0]], -3.0);
        for (a, b) in w.iter().zip(back.iter()) {
            // Three mantissa bits: at most 1/16 relative error for normal values.
            assert!((a - b).abs() <= a.abs() / 16.0 + 1e-6, "{a} vs {b}");
        }
        assert!(Fp8Weight::quantize(w.view(), 2).is_err());
    }
}
