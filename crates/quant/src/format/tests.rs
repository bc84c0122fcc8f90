//! A toy format added through the public codec trait alone: a lookup table of levels in
//! [−1, 1] (NF4 is such a table of 16 normal quantiles), one absmax scale per output channel.

use crate::{QuantError, WeightCodec, stored_bytes};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// NF4's 16 levels (QLoRA, normal quantiles scaled to [−1, 1]).
const NF4: [f32; 16] = [
    -1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0, 0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626,
    0.7230, 1.0,
];

struct Lut(Vec<f32>);

struct LutWeight {
    codes: ArrayD<u8>,
    scales: Vec<f32>,
    axis: usize,
}

impl Lut {
    fn bits(&self) -> u64 {
        u64::from(usize::BITS - (self.0.len() - 1).leading_zeros())
    }

    fn nearest(&self, x: f32) -> u8 {
        let distance = |i: &usize| (self.0[*i] - x).abs();
        (0..self.0.len()).min_by(|a, b| distance(a).total_cmp(&distance(b))).unwrap_or(0) as u8
    }
}

impl WeightCodec for Lut {
    type Stored = LutWeight;

    fn quantize(&self, w: ArrayViewD<f32>, axis: usize) -> Result<LutWeight, QuantError> {
        let mut codes = ArrayD::<u8>::zeros(w.raw_dim());
        let mut scales = Vec::new();
        for (src, mut dst) in w.axis_iter(Axis(axis)).zip(codes.axis_iter_mut(Axis(axis))) {
            let scale = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            scales.push(scale);
            dst.zip_mut_with(&src, |d, &v| *d = self.nearest(if scale > 0.0 { v / scale } else { 0.0 }));
        }
        Ok(LutWeight { codes, scales, axis })
    }

    fn dequantize(&self, stored: &LutWeight) -> ArrayD<f32> {
        let mut out = stored.codes.mapv(|c| self.0[usize::from(c)]);
        for (mut channel, &scale) in out.axis_iter_mut(Axis(stored.axis)).zip(&stored.scales) {
            channel.mapv_inplace(|v| v * scale);
        }
        out
    }

    fn stored_bytes(&self, stored: &LutWeight) -> u64 {
        stored_bytes(stored.codes.len(), self.bits(), stored.scales.len())
    }
}

fn squared_error(codec: &Lut, w: &ArrayD<f32>) -> f32 {
    let back = codec.dequantize(&codec.quantize(w.view(), 0).unwrap());
    w.iter().zip(back.iter()).map(|(a, b)| (a - b).powi(2)).sum()
}

#[test]
fn a_lookup_table_format_plugs_into_the_codec_trait() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let w = ArrayD::from_shape_simple_fn(IxDyn(&[8, 64]), || StandardNormal.sample(&mut rng));
    let (two_bit, nf4) = (Lut(vec![-1.0, -0.33, 0.33, 1.0]), Lut(NF4.to_vec()));
    // More levels, less error.
    assert!(squared_error(&nf4, &w) < squared_error(&two_bit, &w) / 4.0);
    // Codes round-trip: the dequantized weight quantizes to the same codes.
    let stored = nf4.quantize(w.view(), 0).unwrap();
    let again = nf4.quantize(nf4.dequantize(&stored).view(), 0).unwrap();
    assert_eq!(again.codes, stored.codes);
    // 512 four-bit codes and 8 f32 scales.
    assert_eq!(nf4.stored_bytes(&stored), 256 + 32);
    assert_eq!(two_bit.stored_bytes(&two_bit.quantize(w.view(), 0).unwrap()), 128 + 32);
}
