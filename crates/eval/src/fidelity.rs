//! The fidelity of a candidate against the reference on the same items: the record's SQNR,
//! SSIM, PSNR and MSE, and each item's errors they are logarithms of.

use crate::candidate::Predicted;
use crate::measure::Run;
use crate::{EvalError, Result};
use bitsearch_metrics::{Mse, Sqnr, count_nonfinite, ssim_per_item};
use bitsearch_records::{Cost, EvalRecord, Metric};
use ndarray::Axis;
use std::path::Path;

/// Each item's errors against the reference, in item order: what the record's PSNR and SQNR
/// are logarithms of, item by item (PSNR of a constant over the mean of `image_mse`, SQNR of the
/// reference's energy over the sum of `output_noise`), so that two candidates' difference and
/// its noise can be read off the same items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemErrors {
    /// Mean squared error of the final image.
    pub image_mse: Vec<f64>,
    /// Squared error of the denoiser's predictions, summed over elements and steps.
    pub output_noise: Vec<f64>,
}

impl ItemErrors {
    /// The errors `metric` is a logarithm of: image MSE for PSNR, output noise for SQNR; empty
    /// for the others.
    pub fn of(&self, metric: Metric) -> &[f64] {
        match metric {
            Metric::Psnr => &self.image_mse,
            Metric::Sqnr => &self.output_noise,
            Metric::Ssim | Metric::Caption => &[],
        }
    }
}

pub(crate) fn item_errors(fp: &Run, candidate: &Run) -> Result<ItemErrors> {
    let image_mse = fp
        .images
        .outer_iter()
        .zip(candidate.images.outer_iter())
        .map(|(a, b)| {
            let mut mse = Mse::default();
            mse.add(a, b);
            mse.value()
        })
        .collect::<Vec<_>>();
    let mut output_noise = vec![0.0; image_mse.len()];
    for ((a, b), &first) in fp.outputs.iter().zip(&candidate.outputs).zip(&fp.first_items) {
        for (j, (y, q)) in a.outer_iter().zip(b.outer_iter()).enumerate() {
            let items = output_noise.len();
            let noise = output_noise.get_mut(first + j).ok_or_else(|| {
                EvalError::Mismatch(format!(
                    "a denoiser output of {} rows from item {first} of {items}",
                    a.len_of(Axis(0))
                ))
            })?;
            *noise += y.iter().zip(q.iter()).map(|(&y, &q)| (f64::from(q) - f64::from(y)).powi(2)).sum::<f64>();
        }
    }
    Ok(ItemErrors { image_mse, output_noise })
}

/// The fidelity of `candidate` against `fp`, in a record whose other fields the caller fills.
pub(crate) fn compare(
    fp: &Run,
    candidate: &Run,
    label: String,
    path: &Path,
    kind: String,
    predicted: Predicted,
) -> EvalRecord {
    let mut sqnr = Sqnr::default();
    let mut nonfinite = 0;
    for (a, b) in fp.outputs.iter().zip(&candidate.outputs) {
        sqnr.add(a.view(), b.view());
        nonfinite += count_nonfinite(b.view());
    }
    nonfinite += count_nonfinite(candidate.images.view());
    let mut mse = Mse::default();
    mse.add(fp.images.view(), candidate.images.view());
    let ssim = ssim_per_item(fp.images.view(), candidate.images.view());
    EvalRecord {
        label,
        candidate: path.display().to_string(),
        kind,
        avg_bits: predicted.avg_bits,
        predicted_sqnr_db: predicted.sqnr_db,
        predicted_ssim: predicted.ssim,
        predicted_psnr_db: predicted.psnr_db,
        sqnr_db: sqnr.db(),
        ssim: ssim.iter().sum::<f64>() / ssim.len().max(1) as f64,
        psnr_db: mse.psnr_db(),
        mse: mse.value(),
        nonfinite,
        caption: f64::NAN,
        reference_caption: f64::NAN,
        cost: Cost::default(),
        reference_cost: Cost::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    /// Two batches (3 items and 1) of two steps each: per-item errors must add up to the
    /// record's PSNR and SQNR, land on the right items, and refuse outputs that overrun them.
    #[test]
    fn item_errors_are_what_the_record_is_a_logarithm_of() {
        let array = |rows: usize, f: &dyn Fn(usize, usize) -> f32| {
            ArrayD::from_shape_fn(IxDyn(&[rows, 2, 3]), |i| f(i[0], i[1] * 3 + i[2]))
        };
        let run = |shift: f32| {
            let out = |first: usize, rows: usize, step: usize| {
                array(rows, &|r, e| (e + step) as f32 + if first + r == 2 { 3.0 * shift } else { shift * r as f32 })
            };
            Run {
                outputs: vec![out(0, 3, 0), out(0, 3, 1), out(3, 1, 0), out(3, 1, 1)],
                first_items: vec![0, 0, 3, 3],
                images: array(4, &|r, e| (e as f32 / 10.0) - shift * r as f32),
                call_ms: f64::NAN,
                image_ms: f64::NAN,
            }
        };
        let (fp, candidate) = (run(0.0), run(0.5));
        let errors = item_errors(&fp, &candidate).expect("errors");
        let record = compare(&fp, &candidate, "c".into(), Path::new("c"), "model".into(), Predicted::NONE);
        let mean = errors.image_mse.iter().sum::<f64>() / 4.0;
        assert!((mean - record.mse).abs() < 1e-12 && (bitsearch_metrics::psnr_db(mean) - record.psnr_db).abs() < 1e-9);
        let signal: f64 = fp.outputs.iter().flat_map(|o| o.iter()).map(|&y| f64::from(y).powi(2)).sum();
        let noise: f64 = errors.output_noise.iter().sum();
        assert!((10.0 * (signal / noise).log10() - record.sqnr_db).abs() < 1e-9);
        // Item 2 is off by 1.5 in each of 6 elements at both steps; item 3, the second batch's
        // first row, by nothing.
        let close = |got: &[f64], want: &[f64]| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6);
        assert!(close(&errors.output_noise, &[0.0, 2.0 * 6.0 * 0.25, 2.0 * 6.0 * 2.25, 0.0]), "{errors:?}");
        assert!(close(&errors.image_mse, &[0.0, 0.25, 1.0, 2.25]), "{errors:?}");
        assert_eq!(errors.of(Metric::Psnr), errors.image_mse.as_slice());
        assert!(errors.of(Metric::Caption).is_empty());
        let shifted = Run { first_items: vec![1, 1, 4, 4], ..run(0.0) };
        assert!(item_errors(&shifted, &candidate).unwrap_err().to_string().contains("rows from item 4 of 4"));
    }
}
