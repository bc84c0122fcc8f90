//! GPTQ's error-compensating rounding. A layer's output error on its inputs `X` is
//! ‖(Ŵ − W)X‖², a quadratic form in the second moment `H = E[x xᵀ]` of its input features. With
//! the scales fixed (the ones nearest rounding chose), the input columns are rounded one at a
//! time, most energetic first, and each column's rounding error is carried into the columns not
//! yet rounded through the upper Cholesky factor of `H⁻¹` (the OBQ update), so later codes make
//! up for earlier ones. No gradients and no iterations: one pass of linear algebra per layer.
//!
//! The stored form is that of nearest rounding (same scales, same bit-widths, same container),
//! only the codes differ; per output channel the codes with the smaller output error on the
//! measured `H` are kept, so GPTQ never does worse than nearest on its own calibration inputs.

use crate::{QuantError, QuantizedWeight};
use bitsearch_onnx::{GraphView, NodeAttrs};
use bitsearch_types::Layer;
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatRef, Par, Side};
use ndarray::{ArrayViewD, Axis};

/// Damping added to the diagonal of `H`, as a fraction of its mean: directions calibration left
/// unexcited must not get infinite weight.
const DAMPING: f64 = 0.01;
/// Columns rounded one by one before the rest of the weight takes their errors in one product.
const BLOCK: usize = 128;
/// Input rows (feature vectors) each layer's `H` is estimated from over a whole run: eight per
/// feature, within these bounds, sampled evenly from every capture.
const MIN_ROWS: usize = 4096;
const MAX_ROWS: usize = 131_072;

/// How a layer's input becomes rows of features, in the order of the weight's values inside an
/// output channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfold {
    /// MatMul or Gemm: the input's last axis is the feature axis.
    Dense { features: usize },
    /// A 2-D Conv with one group: every output position's receptive field `(c, ky, kx)`.
    Patches { channels: usize, kernel: [usize; 2], strides: [usize; 2], dilations: [usize; 2], pads: Pads },
}

/// Padding of a Conv: explicit `[top, left, bottom, right]`, or ONNX's `SAME_*` computed from the
/// input size (`upper`: the odd pixel at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pads {
    Explicit([usize; 4]),
    Same { upper: bool },
}

impl Unfold {
    /// How `layer`'s input unfolds, or None where GPTQ is not defined for it here: grouped,
    /// transposed or non-2-D convolutions, Gemm with a transposed input, batched MatMul weights.
    pub fn of(view: &GraphView<'_>, layer: &Layer) -> Option<Self> {
        Self::of_node(view, layer).filter(|unfold| unfold.features() > 0)
    }

    fn of_node(view: &GraphView<'_>, layer: &Layer) -> Option<Self> {
        let node = (0..view.nodes().len()).find(|&i| view.node_name(i) == layer.name).map(|i| view.node(i))?;
        let ints = |name: &str, default: [usize; 2]| -> Option<[usize; 2]> {
            match node.attr_ints(name) {
                None => Some(default),
                Some(&[a, b]) => Some([usize::try_from(a).ok()?, usize::try_from(b).ok()?]),
                Some(_) => None,
            }
        };
        match (node.op_type(), layer.weight_shape.as_slice()) {
            ("Conv", &[_, channels, kh, kw]) => {
                if node.attr_int("group").unwrap_or(1) != 1 || kh == 0 || kw == 0 {
                    return None;
                }
                let pads = match node.attr_str("auto_pad").unwrap_or("NOTSET") {
                    "NOTSET" => match node.attr_ints("pads") {
                        None => Pads::Explicit([0; 4]),
                        Some(p) if p.len() == 4 => {
                            let mut pads = [0; 4];
                            for (d, &v) in pads.iter_mut().zip(p) {
                                *d = usize::try_from(v).ok()?;
                            }
                            Pads::Explicit(pads)
                        }
                        Some(_) => return None,
                    },
                    "VALID" => Pads::Explicit([0; 4]),
                    "SAME_UPPER" => Pads::Same { upper: true },
                    "SAME_LOWER" => Pads::Same { upper: false },
                    _ => return None,
                };
                let (strides, dilations) = (ints("strides", [1, 1])?, ints("dilations", [1, 1])?);
                (strides.iter().chain(&dilations).all(|&v| v > 0)).then_some(Self::Patches {
                    channels,
                    kernel: [kh, kw],
                    strides,
                    dilations,
                    pads,
                })
            }
            ("Gemm", &[_, _]) if node.attr_int("transA").unwrap_or(0) == 0 => {
                Some(Self::Dense { features: layer.weight_shape[1 - layer.channel_axis.unwrap_or(0)] })
            }
            ("MatMul", &[features, _]) => Some(Self::Dense { features }),
            _ => None,
        }
    }

    /// Features per row: the values of one output channel of the weight.
    pub fn features(&self) -> usize {
        match self {
            Self::Dense { features } => *features,
            Self::Patches { channels, kernel, .. } => channels * kernel[0] * kernel[1],
        }
    }

    /// Up to `limit` rows of `x` (the layer's input), evenly spaced over all of its rows, as a
    /// row-major `[rows, features]` buffer; the number of rows taken.
    pub fn rows(&self, x: ArrayViewD<f32>, limit: usize) -> Result<(Vec<f32>, usize), QuantError> {
        let n = self.features();
        let bad = |expected: String| QuantError::InputShape { shape: x.shape().to_vec(), expected };
        match *self {
            Self::Dense { features } => {
                if x.shape().last() != Some(&features) {
                    return Err(bad(format!("a last axis of {features} features")));
                }
                let x = x.as_standard_layout();
                let values = x.as_slice().unwrap_or_default();
                let total = values.len() / features;
                let (stride, taken) = spacing(total, limit);
                let mut out = Vec::with_capacity(taken * n);
                for r in (0..total).step_by(stride).take(taken) {
                    out.extend_from_slice(&values[r * features..(r + 1) * features]);
                }
                Ok((out, taken))
            }
            Self::Patches { channels, kernel, strides, dilations, pads } => {
                let &[batch, c, h, w] = x.shape() else { return Err(bad(format!("[N, {channels}, H, W]"))) };
                if c != channels {
                    return Err(bad(format!("[N, {channels}, H, W]")));
                }
                let [top, left, bottom, right] = match pads {
                    Pads::Explicit(p) => p,
                    Pads::Same { upper } => {
                        let total = |size: usize, axis: usize| {
                            let out = size.div_ceil(strides[axis]);
                            ((out - 1) * strides[axis] + (kernel[axis] - 1) * dilations[axis] + 1).saturating_sub(size)
                        };
                        let (th, tw) = (total(h, 0), total(w, 1));
                        let begin = |t: usize| if upper { t / 2 } else { t.div_ceil(2) };
                        [begin(th), begin(tw), th - begin(th), tw - begin(tw)]
                    }
                };
                let extent = |size: usize, axis: usize, before: usize, after: usize| {
                    let span = (kernel[axis] - 1) * dilations[axis] + 1;
                    (size + before + after).checked_sub(span).map(|s| s / strides[axis] + 1)
                };
                let (Some(oh), Some(ow)) = (extent(h, 0, top, bottom), extent(w, 1, left, right)) else {
                    return Err(bad("an input at least as large as the kernel".into()));
                };
                let x = x.as_standard_layout();
                let values = x.as_slice().unwrap_or_default();
                let (stride, taken) = spacing(batch * oh * ow, limit);
                let mut out = Vec::with_capacity(taken * n);
                for r in (0..batch * oh * ow).step_by(stride).take(taken) {
                    let (b, oy, ox) = (r / (oh * ow), r / ow % oh, r % ow);
                    for ch in 0..channels {
                        let plane = &values[(b * channels + ch) * h * w..][..h * w];
                        for ky in 0..kernel[0] {
                            let iy = (oy * strides[0] + ky * dilations[0]).checked_sub(top).filter(|&y| y < h);
                            for kx in 0..kernel[1] {
                                let ix = (ox * strides[1] + kx * dilations[1]).checked_sub(left).filter(|&v| v < w);
                                out.push(match (iy, ix) {
                                    (Some(y), Some(v)) => plane[y * w + v],
                                    _ => 0.0,
                                });
                            }
                        }
                    }
                }
                Ok((out, taken))
            }
        }
    }
}

/// The stride and count of at most `limit` rows spread evenly over `total`.
fn spacing(total: usize, limit: usize) -> (usize, usize) {
    let stride = total.div_ceil(limit.max(1)).max(1);
    (stride, total.div_ceil(stride))
}

/// The second moment of a layer's input features, accumulated over the calibration items.
#[derive(Debug, Clone)]
pub struct Hessian {
    sum: Mat<f64>,
    rows: u64,
}

impl Hessian {
    pub fn new(features: usize) -> Self {
        Self { sum: Mat::zeros(features, features), rows: 0 }
    }

    /// Bytes one takes for `features` input features.
    pub fn bytes(features: usize) -> u64 {
        (features as u64).pow(2) * size_of::<f64>() as u64
    }

    /// Rows each of `captures` captures (items × steps) contributes for `features` features.
    pub fn rows_per_capture(features: usize, captures: usize) -> usize {
        (8 * features).clamp(MIN_ROWS, MAX_ROWS).div_ceil(captures.max(1))
    }

    pub fn features(&self) -> usize {
        self.sum.nrows()
    }

    /// Adds `count` rows of features, row-major in `rows`.
    pub fn add(&mut self, rows: &[f32], count: usize) {
        let n = self.features();
        if count == 0 || rows.len() != count * n {
            return;
        }
        let x = MatRef::from_row_major_slice(rows, count, n);
        let mut product = Mat::<f32>::zeros(n, n);
        matmul(product.as_mut(), Accum::Replace, x.transpose(), x, 1.0, Par::rayon(0));
        for j in 0..n {
            for i in 0..n {
                self.sum[(i, j)] += f64::from(product[(i, j)]);
            }
        }
        self.rows += count as u64;
    }

    /// The mean of `x xᵀ` over the rows seen.
    fn mean(&self) -> Mat<f64> {
        let rows = self.rows.max(1) as f64;
        Mat::from_fn(self.features(), self.features(), |i, j| self.sum[(i, j)] / rows)
    }
}

/// Chooses `q`'s codes anew by GPTQ for the float weight `w` they were quantized from, keeping
/// `q`'s scales and per-channel bit-widths. `h` must be the second moment of the layer's input
/// features, in the order of the weight's values inside an output channel.
pub fn gptq(q: &mut QuantizedWeight, w: ArrayViewD<f32>, h: &Hessian) -> Result<(), QuantError> {
    let axis = Axis(q.granularity.axis());
    let m = q.codes.shape()[axis.0];
    let n = q.codes.len() / m.max(1);
    if h.features() != n || w.shape() != q.codes.shape() {
        return Err(QuantError::Hessian { features: h.features(), expected: n });
    }
    let group = match q.granularity {
        crate::Granularity::PerChannel { .. } => n,
        crate::Granularity::PerGroup { group_size, .. } => group_size.max(1),
    };
    let weight = rows_of(w.view(), axis, m, n, |&v| f64::from(v));
    let row_scales: Vec<Vec<f64>> =
        q.scales.axis_iter(Axis(0)).map(|row| row.iter().map(|&s| f64::from(s)).collect()).collect();
    let scale = |r: usize, col: usize| row_scales.get(r).and_then(|row| row.get(col / group)).copied().unwrap_or(0.0);
    let moment = h.mean();
    // Columns calibration never excited: any code serves, but the inverse must exist.
    let live: Vec<f64> = (0..n).map(|i| moment[(i, i)]).filter(|&d| d > 0.0).collect();
    let damping = if live.is_empty() { 1.0 } else { DAMPING * live.iter().sum::<f64>() / live.len() as f64 };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| moment[(b, b)].total_cmp(&moment[(a, a)]).then(a.cmp(&b)));
    let damped = Mat::from_fn(n, n, |i, j| moment[(order[i], order[j])] + if i == j { damping } else { 0.0 });
    let upper = inverse_factor(damped).ok_or(QuantError::Indefinite)?;

    let mut work = Mat::from_fn(m, n, |r, i| weight[(r, order[i])]);
    let mut codes = Mat::<f64>::zeros(m, n);
    let mut errors = Mat::<f64>::zeros(m, BLOCK);
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        for i in start..end {
            let col = order[i];
            let d = upper[(i, i)];
            for r in 0..m {
                let (value, s) = (work[(r, i)], scale(r, col));
                let code = round_code(value, s, q.bits[r]);
                codes[(r, col)] = code;
                errors[(r, i - start)] = (value - code * s) / d;
            }
            for j in i + 1..end {
                let u = upper[(i, j)];
                for r in 0..m {
                    work[(r, j)] -= errors[(r, i - start)] * u;
                }
            }
        }
        if end < n {
            let block = errors.as_ref().subcols(0, end - start);
            let rest = upper.as_ref().submatrix(start, end, end - start, n - end);
            matmul(work.as_mut().subcols_mut(end, n - end), Accum::Add, block, rest, -1.0, Par::rayon(0));
        }
    }

    // Per output channel, whichever codes lose less on the measured inputs.
    let nearest = rows_of(q.codes.view(), axis, m, n, |&c| f64::from(c));
    let dequantized = |c: &Mat<f64>| Mat::from_fn(m, n, |r, j| c[(r, j)] * scale(r, j) - weight[(r, j)]);
    let gptq_loss = output_error(&dequantized(&codes), &moment);
    let nearest_loss = output_error(&dequantized(&nearest), &moment);
    for (r, mut dst) in q.codes.axis_iter_mut(axis).enumerate() {
        if gptq_loss[r] < nearest_loss[r] {
            dst.iter_mut().enumerate().for_each(|(j, c)| *c = codes[(r, j)] as i8);
        }
    }
    Ok(())
}

/// The weight as an `[output channels, values per channel]` matrix.
pub(crate) fn rows_of<T>(w: ArrayViewD<T>, axis: Axis, m: usize, n: usize, value: impl Fn(&T) -> f64) -> Mat<f64> {
    let mut out = Mat::zeros(m, n);
    for (r, channel) in w.axis_iter(axis).enumerate() {
        for (j, v) in channel.iter().enumerate() {
            out[(r, j)] = value(v);
        }
    }
    out
}

/// The code of `value` at `scale` for a channel of `bits`: saturated and rounded half away from
/// zero like nearest rounding, a sign for 1-bit channels, 0 where the scale is 0.
fn round_code(value: f64, scale: f64, bits: u8) -> f64 {
    if scale == 0.0 {
        return 0.0;
    }
    if bits == 1 {
        return if value < 0.0 { -1.0 } else { 1.0 };
    }
    let qmax = f64::from((1u16 << (bits - 1)) - 1);
    (value / scale).round().clamp(-qmax, qmax)
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ U`); None when `H` is not positive definite.
fn inverse_factor(h: Mat<f64>) -> Option<Mat<f64>> {
    let n = h.nrows();
    let inverse = h.llt(Side::Lower).ok()?.solve(Mat::<f64>::identity(n, n));
    let lower = inverse.llt(Side::Lower).ok()?;
    Some(lower.L().transpose().to_owned())
}

/// Per row `e` of `errors`, `e H eᵀ`: the mean squared output error it causes.
fn output_error(errors: &Mat<f64>, h: &Mat<f64>) -> Vec<f64> {
    let mut product = Mat::<f64>::zeros(errors.nrows(), errors.ncols());
    matmul(product.as_mut(), Accum::Replace, errors.as_ref(), h.as_ref(), 1.0, Par::rayon(0));
    (0..errors.nrows()).map(|r| (0..errors.ncols()).map(|j| product[(r, j)] * errors[(r, j)]).sum()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clipping, Granularity, WeightQuantizer};
    use ndarray::{Array2, ArrayD, IxDyn};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal, StudentT};

    fn gaussian(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || StandardNormal.sample(rng))
    }

    /// Rows of correlated, unevenly scaled features, as layer inputs are.
    fn inputs(rows: usize, features: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
        let z: Array2<f32> = gaussian(&[rows, features], rng).into_dimensionality().unwrap();
        let mix: Array2<f32> = gaussian(&[features, features], rng).into_dimensionality().unwrap();
        let scale = Array2::from_shape_fn((1, features), |(_, j)| 1.0 + 4.0 * (j % 5) as f32);
        z.dot(&mix) * &scale
    }

    fn hessian_of(x: &Array2<f32>) -> Hessian {
        let mut h = Hessian::new(x.ncols());
        h.add(x.as_standard_layout().as_slice().unwrap(), x.nrows());
        h
    }

    /// ‖(Ŵ − W) Xᵀ‖² per output channel, for a `[out, in]` weight.
    fn output_errors(w: &ArrayD<f32>, q: &ArrayD<f32>, x: &Array2<f32>) -> Vec<f64> {
        let e: Array2<f32> = (q - w).into_dimensionality().unwrap();
        let out = e.dot(&x.t());
        out.rows().into_iter().map(|r| r.iter().map(|&v| f64::from(v).powi(2)).sum()).collect()
    }

    #[test]
    fn gptq_never_loses_to_nearest_on_the_layer_output_and_wins_overall() {
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        let heavy = StudentT::new(3.0f32).unwrap();
        for (case, (bits, group)) in
            [(2, None), (3, None), (4, None), (3, Some(16)), (4, Some(32))].into_iter().enumerate()
        {
            let (out, features) = (24, 64);
            let w = ArrayD::from_shape_simple_fn(IxDyn(&[out, features]), || heavy.sample(&mut rng));
            let x = inputs(512, features, &mut rng);
            let granularity = match group {
                Some(group_size) => Granularity::PerGroup { axis: 0, group_size },
                None => Granularity::PerChannel { axis: 0 },
            };
            let quantizer = WeightQuantizer { bits, granularity, clipping: Clipping::MseSearch { grid: 20 } };
            let nearest = quantizer.quantize(w.view()).unwrap();
            let mut rounded = nearest.clone();
            gptq(&mut rounded, w.view(), &hessian_of(&x)).unwrap();
            assert_eq!((&rounded.scales, &rounded.bits), (&nearest.scales, &nearest.bits), "case {case}");
            let qmax = (1i8 << (bits - 1)) - 1;
            assert!(rounded.codes.iter().all(|c| c.abs() <= qmax), "case {case}");
            let before = output_errors(&w, &nearest.dequantize(), &x);
            let after = output_errors(&w, &rounded.dequantize(), &x);
            for (r, (a, b)) in after.iter().zip(&before).enumerate() {
                assert!(a <= &(b * (1.0 + 1e-9)), "case {case}, channel {r}: {a} > {b}");
            }
            let (a, b): (f64, f64) = (after.iter().sum(), before.iter().sum());
            assert!(a < 0.8 * b, "case {case}: GPTQ {a:.3e} vs nearest {b:.3e}");
        }
    }

    #[test]
    fn a_channel_axis_of_1_and_split_bit_widths_are_respected() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // A MatMul weight [in, out]: channels on axis 1, features on axis 0.
        let w = gaussian(&[32, 10], &mut rng);
        let x = inputs(256, 32, &mut rng);
        let quantizer =
            WeightQuantizer { bits: 3, granularity: Granularity::PerChannel { axis: 1 }, clipping: Clipping::MinMax };
        let channel_bits = [1, 2, 3, 4, 3, 3, 2, 4, 3, 3];
        let nearest = quantizer.quantize_mixed(w.view(), &channel_bits).unwrap();
        let mut rounded = nearest.clone();
        gptq(&mut rounded, w.view(), &hessian_of(&x)).unwrap();
        let wt: ArrayD<f32> = w.t().to_owned().into_dyn();
        let errors = |q: &crate::QuantizedWeight| output_errors(&wt, &q.dequantize().t().to_owned().into_dyn(), &x);
        let (before, after) = (errors(&nearest), errors(&rounded));
        for (c, &bits) in channel_bits.iter().enumerate() {
            let qmax = if bits == 1 { 1 } else { (1i8 << (bits - 1)) - 1 };
            assert!(rounded.codes.index_axis(Axis(1), c).iter().all(|q| q.abs() <= qmax));
            if bits == 1 {
                assert!(rounded.codes.index_axis(Axis(1), c).iter().all(|q| q.abs() == 1));
            }
            assert!(after[c] <= before[c] * (1.0 + 1e-9), "channel {c}");
        }
    }

    #[test]
    fn a_wrong_sized_moment_is_refused() {
        let w = ArrayD::from_elem(IxDyn(&[4, 8]), 0.5f32);
        let mut q =
            WeightQuantizer { bits: 4, granularity: Granularity::PerChannel { axis: 0 }, clipping: Clipping::MinMax }
                .quantize(w.view())
                .unwrap();
        assert_eq!(gptq(&mut q, w.view(), &Hessian::new(9)), Err(QuantError::Hessian { features: 9, expected: 8 }));
        // Never measured: damping alone keeps it defined, and codes stay the nearest ones.
        let before = q.clone();
        gptq(&mut q, w.view(), &Hessian::new(8)).unwrap();
        assert_eq!(q, before);
    }

    /// A direct 2-D convolution of `x` `[N, C, H, W]` with `w` `[O, C, kh, kw]`.
    fn conv(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        strides: [usize; 2],
        dilations: [usize; 2],
        pads: [usize; 4],
    ) -> Vec<f32> {
        let (&[n, c, h, wd], &[o, _, kh, kw]) = (x.shape(), w.shape()) else { unreachable!() };
        let oh = (h + pads[0] + pads[2] - (kh - 1) * dilations[0] - 1) / strides[0] + 1;
        let ow = (wd + pads[1] + pads[3] - (kw - 1) * dilations[1] - 1) / strides[1] + 1;
        let mut out = Vec::new();
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for f in 0..o {
                        let mut acc = 0.0;
                        for ch in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * strides[0] + ky * dilations[0]) as isize - pads[0] as isize;
                                    let ix = (ox * strides[1] + kx * dilations[1]) as isize - pads[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                        acc += x[[b, ch, iy as usize, ix as usize]] * w[[f, ch, ky, kx]];
                                    }
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn patches_times_the_weight_rows_are_the_convolution() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = gaussian(&[2, 3, 7, 6], &mut rng);
        let w = gaussian(&[4, 3, 3, 2], &mut rng);
        let rows: Array2<f32> = w.clone().into_shape_with_order((4, 18)).unwrap();
        for (strides, dilations, pads) in
            [([1, 1], [1, 1], [1, 0, 1, 1]), ([2, 1], [1, 2], [0, 2, 1, 0]), ([1, 2], [2, 1], [0, 0, 0, 0])]
        {
            let unfold =
                Unfold::Patches { channels: 3, kernel: [3, 2], strides, dilations, pads: Pads::Explicit(pads) };
            let (patches, count) = unfold.rows(x.view(), usize::MAX).unwrap();
            let patches = Array2::from_shape_vec((count, 18), patches).unwrap();
            let got: Vec<f32> = patches.dot(&rows.t()).iter().copied().collect();
            let expected = conv(&x, &w, strides, dilations, pads);
            assert_eq!(got.len(), expected.len());
            assert!(got.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-4), "{strides:?} {dilations:?} {pads:?}");
        }
        // SAME_UPPER on 7×6 at stride 2 with a 3×2 kernel: 4×3 outputs, the odd pad at the end.
        let same = Unfold::Patches {
            channels: 3,
            kernel: [3, 2],
            strides: [2, 2],
            dilations: [1, 1],
            pads: Pads::Same { upper: true },
        };
        let (patches, count) = same.rows(x.view(), usize::MAX).unwrap();
        assert_eq!(count, 2 * 4 * 3);
        let patches = Array2::from_shape_vec((count, 18), patches).unwrap();
        let expected = conv(&x, &w, [2, 2], [1, 1], [1, 0, 1, 0]);
        assert!(patches.dot(&rows.t()).iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-4));
        // Sampling keeps evenly spaced rows, never more than asked.
        let (_, sampled) = unfold_dense(10).rows(gaussian(&[7, 10], &mut rng).view(), 3).unwrap();
        assert_eq!(sampled, 3);
        assert!(unfold_dense(9).rows(gaussian(&[7, 10], &mut rng).view(), 3).is_err());
    }

    fn unfold_dense(features: usize) -> Unfold {
        Unfold::Dense { features }
    }

    #[test]
    fn the_moment_is_the_mean_outer_product() {
        let x = Array2::from_shape_vec((2, 2), vec![1.0f32, 2.0, 3.0, -1.0]).unwrap();
        let h = hessian_of(&x).mean();
        assert_eq!([h[(0, 0)], h[(0, 1)], h[(1, 0)], h[(1, 1)]], [5.0, -0.5, -0.5, 2.5]);
        assert_eq!(Hessian::bytes(1280 * 9), 1280 * 9 * 1280 * 9 * 8);
        assert_eq!(Hessian::rows_per_capture(100, 4), 1024);
    }
}
