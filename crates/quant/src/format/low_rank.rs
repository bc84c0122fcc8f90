//! SVDQuant's low-rank branch: a weight's leading singular directions kept in float16 as
//! `L·R`, so that the integer codes carry only the residual `W − L·R`, whose range the few
//! large directions no longer stretch.

use crate::QuantError;
use crate::gptq::rows_of;
use faer::Mat;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis};

/// The factors of a low-rank branch, each value a float16 (held as the f32 it stands for).
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    /// `[output channels, rank]`.
    pub left: Array2<f32>,
    /// `[rank, values per channel]`, the values in the order of the weight's other axes.
    pub right: Array2<f32>,
}

impl LowRank {
    /// The best rank-`rank` approximation of `w` (output channels on `axis`) in the Frobenius
    /// norm, by a thin SVD; each factor takes the square root of the singular values, so both
    /// sit in float16's range alike.
    pub fn of(w: ArrayViewD<f32>, axis: usize, rank: usize) -> Result<Self, QuantError> {
        if axis >= w.ndim() {
            return Err(QuantError::Axis { axis, ndim: w.ndim() });
        }
        if let Some((index, &value)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(QuantError::NonFinite { index, value });
        }
        let m = w.shape()[axis];
        let n = w.len() / m.max(1);
        if m == 0 || n == 0 {
            return Err(QuantError::Empty);
        }
        let rank = rank.min(m).min(n);
        let matrix: Mat<f64> = rows_of(w, Axis(axis), m, n, |&v| f64::from(v));
        let svd = matrix.thin_svd().map_err(|_| QuantError::Svd)?;
        let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
        let half = |x: f64| half::f16::from_f64(x).to_f32();
        let left = Array2::from_shape_fn((m, rank), |(r, k)| half(u[(r, k)] * s[k].sqrt()));
        let right = Array2::from_shape_fn((rank, n), |(k, j)| half(s[k].sqrt() * v[(j, k)]));
        Ok(Self { left, right })
    }

    pub fn rank(&self) -> usize {
        self.left.ncols()
    }

    /// `L·R` in the shape and layout of the weight (output channels on `axis`).
    pub fn product(&self, shape: &[usize], axis: usize) -> ArrayD<f32> {
        in_layout(self.left.dot(&self.right).view(), shape, axis)
    }

    /// `R` laid out as the weight of `shape` with `rank` output channels on `axis`: the kernel
    /// of the branch's down projection.
    pub fn right_in_layout(&self, shape: &[usize], axis: usize) -> ArrayD<f32> {
        let mut shape = shape.to_vec();
        shape[axis] = self.rank();
        in_layout(self.right.view(), &shape, axis)
    }

    /// Bytes of the two float16 factors.
    pub fn bytes(&self) -> u64 {
        2 * (self.left.len() + self.right.len()) as u64
    }
}

/// `matrix`, one row per index of `axis`, as an array of `shape` whose other axes take each
/// row's values in order (the inverse of [`rows_of`]).
fn in_layout(matrix: ArrayView2<f32>, shape: &[usize], axis: usize) -> ArrayD<f32> {
    let mut out = ArrayD::zeros(shape);
    for (r, mut channel) in out.axis_iter_mut(Axis(axis)).enumerate() {
        channel.iter_mut().zip(matrix.row(r)).for_each(|(dst, &v)| *dst = v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn frobenius(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn a_weight_of_low_rank_comes_back_in_its_own_layout() {
        // A rank-2 [in, out] MatMul weight (channels on axis 1) and a rank-2 conv weight.
        let mut rng = StdRng::seed_from_u64(3);
        let a = Array2::from_shape_simple_fn((12, 2), || rng.random_range(-1.0f32..1.0));
        let b = Array2::from_shape_simple_fn((2, 9), || rng.random_range(-1.0f32..1.0));
        let matmul = a.dot(&b).into_dyn();
        let branch = LowRank::of(matmul.view(), 1, 2).unwrap();
        assert_eq!((branch.left.dim(), branch.right.dim(), branch.bytes()), ((9, 2), (2, 12), 2 * (18 + 24)));
        assert!(frobenius(&branch.product(&[12, 9], 1), &matmul) < 1e-2);
        // The down projection's kernel: R as a [12, 2] MatMul weight.
        assert_eq!(branch.right_in_layout(&[12, 9], 1), branch.right.t().into_dyn());
        let conv = a.t().dot(&a).into_shape_with_order(IxDyn(&[2, 2, 1, 1])).unwrap();
        let branch = LowRank::of(conv.view(), 0, 8).unwrap();
        assert_eq!(branch.rank(), 2);
        assert!(frobenius(&branch.product(&[2, 2, 1, 1], 0), &conv) < 1e-2);
    }

    #[test]
    fn the_error_left_shrinks_with_the_rank() {
        let mut rng = StdRng::seed_from_u64(5);
        let w = ArrayD::from_shape_simple_fn(IxDyn(&[24, 4, 3, 3]), || rng.random_range(-1.0f32..1.0));
        let errors: Vec<f64> = [1, 2, 4, 8, 16]
            .iter()
            .map(|&r| frobenius(&LowRank::of(w.view(), 0, r).unwrap().product(w.shape(), 0), &w))
            .collect();
        assert!(errors.windows(2).all(|p| p[1] < p[0]), "{errors:?}");
        assert!(LowRank::of(ArrayD::from_elem(IxDyn(&[2, 2]), f32::NAN).view(), 0, 1).is_err());
        assert!(LowRank::of(w.view(), 4, 1).is_err());
    }

    #[test]
    fn codes_beside_a_branch_lose_far_less_where_a_few_directions_carry_the_range() {
        // One large rank-1 direction over small noise: plain codes spend their range on it.
        use crate::StoredWeight;
        use bitsearch_types::WeightFormat;
        use bitsearch_types::quantizer::WeightScheme;
        let mut rng = StdRng::seed_from_u64(9);
        let mut uniform = |shape, range: f32| Array2::from_shape_simple_fn(shape, || rng.random_range(-range..range));
        let w = (uniform((32, 1), 4.0).dot(&uniform((1, 64), 4.0)) + uniform((32, 64), 0.1)).into_dyn();
        let (w3, w3r1) = (WeightFormat::int(3), WeightFormat::int(3).with_rank(Some(1)).unwrap());
        let stored = |format| StoredWeight::quantize(format, &WeightScheme::default(), w.view(), 0, None).unwrap();
        let (plain, branched) = (stored(w3), stored(w3r1));
        let (plain_error, branched_error) = (frobenius(&plain.dequantize(), &w), frobenius(&branched.dequantize(), &w));
        assert!(branched_error * 5.0 < plain_error, "{branched_error} against {plain_error}");
        let StoredWeight::Branched(branch, _) = &branched else { panic!("no branch") };
        assert_eq!(branched.bytes(w3r1), plain.bytes(w3) + branch.bytes());
        assert_eq!(branch.bytes(), 2 * (32 + 64));
    }
}
