//! How far a run (a sensitivity probe, a quantized model) is from the full-precision run.
//! These formulas are the product, so they are written out here: SQNR of the denoiser output
//! (MixDQ's quality metric), SSIM of the final image (its content metric), and the MSE / PSNR
//! of the final image. Every stage that compares runs uses these.

use ndarray::{Array2, ArrayView3, ArrayViewD, Axis, Ix3, Zip};

/// Samples live in [-1, 1], the range diffusion models are trained on.
pub const DATA_RANGE: f64 = 2.0;

/// SSIM's Gaussian window (Wang et al. 2004): 11 taps, σ = 1.5, and its two stabilisers.
const SSIM_TAPS: usize = 11;
const SSIM_SIGMA: f64 = 1.5;
const SSIM_K1: f64 = 0.01;
const SSIM_K2: f64 = 0.03;

/// Signal and error energy summed over many outputs (every step of every batch), so that the
/// SQNR of a run weighs every element equally.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Sqnr {
    signal: f64,
    noise: f64,
}

impl Sqnr {
    pub fn add(&mut self, reference: ArrayViewD<'_, f32>, probe: ArrayViewD<'_, f32>) {
        for (&y, &q) in reference.iter().zip(probe.iter()) {
            let (y, q) = (f64::from(y), f64::from(q));
            self.signal += y * y;
            self.noise += (q - y) * (q - y);
        }
    }

    /// 10·log10(Σy² / Σ(ŷ − y)²) in dB; +∞ when the probe matches exactly.
    pub fn db(&self) -> f64 {
        if self.noise == 0.0 { f64::INFINITY } else { 10.0 * (self.signal / self.noise).log10() }
    }
}

/// Mean squared error over many images.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Mse {
    sum: f64,
    count: u64,
}

impl Mse {
    pub fn add(&mut self, reference: ArrayViewD<'_, f32>, probe: ArrayViewD<'_, f32>) {
        for (&y, &q) in reference.iter().zip(probe.iter()) {
            let d = f64::from(q) - f64::from(y);
            self.sum += d * d;
        }
        self.count += reference.len() as u64;
    }

    pub fn value(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum / self.count as f64 }
    }

    /// [`psnr_db`] of the mean squared error.
    pub fn psnr_db(&self) -> f64 {
        psnr_db(self.value())
    }
}

/// 10·log10(range² / `mse`) in dB for images in [−1, 1]; +∞ for identical images.
pub fn psnr_db(mse: f64) -> f64 {
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (DATA_RANGE * DATA_RANGE / mse).log10() }
}

/// The MSE at which [`psnr_db`] gives `db`: its inverse.
pub fn mse_at_psnr_db(db: f64) -> f64 {
    DATA_RANGE * DATA_RANGE * 10f64.powf(-db / 10.0)
}

/// Number of NaN or infinite values.
pub fn count_nonfinite(values: ArrayViewD<'_, f32>) -> u64 {
    values.iter().filter(|v| !v.is_finite()).count() as u64
}

/// SSIM of each item of a batch `[batch, ...]`. An item `[C, H, W]` is compared channel by
/// channel; lower ranks become `[1, H, W]` or `[1, 1, N]`, higher ones fold their leading axes
/// into channels.
pub fn ssim_per_item(reference: ArrayViewD<'_, f32>, probe: ArrayViewD<'_, f32>) -> Vec<f64> {
    assert_eq!(reference.shape(), probe.shape(), "SSIM compares images of one shape");
    reference
        .axis_iter(Axis(0))
        .zip(probe.axis_iter(Axis(0)))
        .map(|(y, q)| {
            let shape = as_chw(y.shape());
            let (Ok(y), Ok(q)) = (y.to_shape(shape), q.to_shape(shape)) else {
                unreachable!("as_chw keeps the element count")
            };
            let (y, q) = (y.into_dimensionality::<Ix3>(), q.into_dimensionality::<Ix3>());
            match (y, q) {
                (Ok(y), Ok(q)) => ssim(y.view(), q.view(), DATA_RANGE),
                _ => unreachable!("as_chw returns three axes"),
            }
        })
        .collect()
}

fn as_chw(item: &[usize]) -> (usize, usize, usize) {
    match item {
        [] => (1, 1, 1),
        [n] => (1, 1, *n),
        [h, w] => (1, *h, *w),
        [lead @ .., h, w] => (lead.iter().product(), *h, *w),
    }
}

/// Mean SSIM of two images `[C, H, W]` in a value range of `data_range`: local means, variances
/// and covariance under a Gaussian window (11 taps, σ = 1.5, cut to the image where it is
/// smaller), averaged over every position where the window fits and over channels.
pub fn ssim(reference: ArrayView3<'_, f32>, probe: ArrayView3<'_, f32>, data_range: f64) -> f64 {
    let (channels, h, w) = reference.dim();
    let (wh, ww) = (gaussian(SSIM_TAPS.min(h)), gaussian(SSIM_TAPS.min(w)));
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let mut total = 0.0;
    for c in 0..channels {
        let x = reference.index_axis(Axis(0), c).mapv(f64::from);
        let y = probe.index_axis(Axis(0), c).mapv(f64::from);
        let blur = |a: &Array2<f64>| filter_valid(a, &wh, &ww);
        let (mx, my) = (blur(&x), blur(&y));
        let (xx, yy, xy) = (blur(&(&x * &x)), blur(&(&y * &y)), blur(&(&x * &y)));
        let sum = Zip::from(&mx).and(&my).and(&xx).and(&yy).and(&xy).fold(0.0, |acc, &mx, &my, &xx, &yy, &xy| {
            let (vx, vy, cov) = (xx - mx * mx, yy - my * my, xy - mx * my);
            acc + ((2.0 * mx * my + c1) * (2.0 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        });
        total += sum / mx.len() as f64;
    }
    total / channels as f64
}

/// Normalised Gaussian weights of `taps` taps centred on the window.
fn gaussian(taps: usize) -> Vec<f64> {
    let centre = (taps as f64 - 1.0) / 2.0;
    let weights: Vec<f64> =
        (0..taps).map(|i| (-((i as f64 - centre).powi(2)) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp()).collect();
    let sum: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / sum).collect()
}

/// Separable correlation with `rows` along axis 0 and `cols` along axis 1, valid positions only.
fn filter_valid(a: &Array2<f64>, rows: &[f64], cols: &[f64]) -> Array2<f64> {
    let (h, w) = a.dim();
    let (oh, ow) = (h + 1 - rows.len(), w + 1 - cols.len());
    let across =
        Array2::from_shape_fn((h, ow), |(i, j)| cols.iter().enumerate().map(|(k, c)| c * a[[i, j + k]]).sum::<f64>());
    Array2::from_shape_fn((oh, ow), |(i, j)| rows.iter().enumerate().map(|(k, r)| r * across[[i + k, j]]).sum::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, ArrayD, IxDyn};

    fn ramp(h: usize, w: usize) -> Array3<f32> {
        Array3::from_shape_fn((1, h, w), |(_, i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0)
    }

    #[test]
    fn sqnr_is_signal_over_error_energy() {
        let y = ArrayD::from_shape_vec(IxDyn(&[4]), vec![1.0f32, -2.0, 2.0, 0.0]).unwrap();
        let q = ArrayD::from_shape_vec(IxDyn(&[4]), vec![1.0f32, -2.0, 1.0, 1.0]).unwrap();
        let mut s = Sqnr::default();
        s.add(y.view(), q.view());
        // Σy² = 9, Σe² = 2.
        assert!((s.db() - 10.0 * 4.5f64.log10()).abs() < 1e-12);
        // Adding the same pair again keeps the ratio.
        s.add(y.view(), q.view());
        assert!((s.db() - 10.0 * 4.5f64.log10()).abs() < 1e-12);
        let mut exact = Sqnr::default();
        exact.add(y.view(), y.view());
        assert_eq!(exact.db(), f64::INFINITY);
    }

    #[test]
    fn mse_and_psnr() {
        let y = ArrayD::from_elem(IxDyn(&[2, 2]), 0.5f32);
        let q = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.5f32, 0.5, 0.0, 1.0]).unwrap();
        let mut m = Mse::default();
        m.add(y.view(), q.view());
        assert!((m.value() - 0.125).abs() < 1e-12);
        assert!((m.psnr_db() - 10.0 * (4.0f64 / 0.125).log10()).abs() < 1e-9);
        assert!((mse_at_psnr_db(m.psnr_db()) - 0.125).abs() < 1e-12);
    }

    #[test]
    fn ssim_is_one_for_identical_images_and_falls_with_noise() {
        let x = ramp(24, 20);
        assert!((ssim(x.view(), x.view(), DATA_RANGE) - 1.0).abs() < 1e-12);
        let mut previous = 1.0;
        for amplitude in [0.01f32, 0.05, 0.2, 0.5] {
            let noisy = Array3::from_shape_fn(x.dim(), |(c, i, j)| {
                x[[c, i, j]] + amplitude * if (i * 31 + j * 17) % 3 == 0 { 1.0 } else { -0.5 }
            });
            let s = ssim(x.view(), noisy.view(), DATA_RANGE);
            assert!(s < previous, "SSIM {s} at noise {amplitude} is not below {previous}");
            previous = s;
        }
    }

    #[test]
    fn ssim_of_constant_images_follows_the_luminance_term() {
        // Flat images have no variance, so SSIM reduces to (2ab + C1) / (a² + b² + C1).
        let (a, b) = (0.2f32, -0.3f32);
        let x = Array3::from_elem((2, 12, 12), a);
        let y = Array3::from_elem((2, 12, 12), b);
        let c1 = (SSIM_K1 * DATA_RANGE).powi(2);
        let (a, b) = (f64::from(a), f64::from(b));
        let expected = (2.0 * a * b + c1) / (a * a + b * b + c1);
        assert!((ssim(x.view(), y.view(), DATA_RANGE) - expected).abs() < 1e-9);
    }

    #[test]
    fn ssim_matches_a_direct_window_sum_on_one_position() {
        // An 11×11 image has exactly one window position: the weighted statistics by hand.
        let x = ramp(11, 11);
        let y = x.mapv(|v| 0.8 * v + 0.1);
        let g = gaussian(11);
        let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..11 {
            for j in 0..11 {
                let wgt = g[i] * g[j];
                let (a, b) = (f64::from(x[[0, i, j]]), f64::from(y[[0, i, j]]));
                mx += wgt * a;
                my += wgt * b;
                xx += wgt * a * a;
                yy += wgt * b * b;
                xy += wgt * a * b;
            }
        }
        let (c1, c2) = ((SSIM_K1 * DATA_RANGE).powi(2), (SSIM_K2 * DATA_RANGE).powi(2));
        let expected = ((2.0 * mx * my + c1) * (2.0 * (xy - mx * my) + c2))
            / ((mx * mx + my * my + c1) * ((xx - mx * mx) + (yy - my * my) + c2));
        assert!((ssim(x.view(), y.view(), DATA_RANGE) - expected).abs() < 1e-12);
    }

    #[test]
    fn per_item_ssim_handles_every_rank() {
        let batch = ArrayD::from_shape_fn(IxDyn(&[3, 16]), |i| (i[0] as f32 - i[1] as f32) / 16.0);
        let values = ssim_per_item(batch.view(), batch.view());
        assert_eq!(values.len(), 3);
        assert!(values.iter().all(|v| (v - 1.0).abs() < 1e-12));
        let nonfinite = ArrayD::from_shape_vec(IxDyn(&[3]), vec![f32::NAN, 1.0, f32::INFINITY]).unwrap();
        assert_eq!(count_nonfinite(nonfinite.view()), 2);
    }
}
