//! PTQD's quantization-noise correction (He et al. 2023), in the sampler's ε space. On the same
//! noisy input, the quantized denoiser's estimate is modelled as `ε_q = (1 + k)·ε + b_c + r`: a
//! part correlated with the float estimate (slope `k`, one per step), a mean shift per channel
//! `b_c`, and residual noise `r` of standard deviation σ. Samplers divide the first two out
//! (`ε̂ = (ε_q − b)/(1 + k)`, k only when positive) and, when they add fresh noise, add less of
//! it so that the residual's share keeps the total variance on the schedule.

use bitsearch_records::StepNoise;
use ndarray::{ArrayD, ArrayViewD, Axis, Zip};

/// The axis of channels in the sample (`[batch, channels, ...]`).
const CHANNEL_AXIS: usize = 1;

/// Running per-channel sums of pairs (ε, Δ = ε_q − ε) of one step, from which the fit follows.
#[derive(Debug, Clone, Default)]
pub struct StepFit {
    channels: Vec<Sums>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: f64,
    e: f64,
    d: f64,
    ee: f64,
    ed: f64,
    dd: f64,
}

impl StepFit {
    /// Adds a batch of float estimates `eps` and quantized ones `eps_q` of the same shape.
    pub fn add(&mut self, eps: ArrayViewD<'_, f32>, eps_q: ArrayViewD<'_, f32>) -> Result<(), String> {
        if eps.shape() != eps_q.shape() || eps.ndim() <= CHANNEL_AXIS {
            return Err(format!(
                "float and quantized estimates of shapes {:?} and {:?}: expected one shape [batch, channels, ...]",
                eps.shape(),
                eps_q.shape()
            ));
        }
        let channels = eps.shape()[CHANNEL_AXIS];
        if self.channels.is_empty() {
            self.channels = vec![Sums::default(); channels];
        } else if self.channels.len() != channels {
            return Err(format!("{channels} channels after {} in an earlier batch", self.channels.len()));
        }
        for (c, sums) in self.channels.iter_mut().enumerate() {
            let (e, q) = (eps.index_axis(Axis(CHANNEL_AXIS), c), eps_q.index_axis(Axis(CHANNEL_AXIS), c));
            Zip::from(&e).and(&q).for_each(|&e, &q| {
                let (e, d) = (f64::from(e), f64::from(q) - f64::from(e));
                sums.n += 1.0;
                sums.e += e;
                sums.d += d;
                sums.ee += e * e;
                sums.ed += e * d;
                sums.dd += d * d;
            });
        }
        Ok(())
    }

    /// Whether no pair was added yet.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The least-squares fit of Δ on ε with one intercept per channel: the slope pools the
    /// within-channel (centred) sums; with a negative slope PTQD corrects the bias alone, so the
    /// bias and residual are those of slope 0 then.
    pub fn finish(&self, timestep: f64) -> StepNoise {
        let centred = |s: &Sums| {
            let n = s.n.max(1.0);
            (s.ee - s.e * s.e / n, s.ed - s.e * s.d / n, s.dd - s.d * s.d / n)
        };
        let (sxx, sxy) = self.channels.iter().map(centred).fold((0.0, 0.0), |(a, b), (xx, xy, _)| (a + xx, b + xy));
        let k_fitted = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let k = k_fitted.max(0.0);
        let total = self.channels.iter().map(|s| s.n).sum::<f64>().max(1.0);
        let residual: f64 = self
            .channels
            .iter()
            .map(|s| {
                let (xx, xy, yy) = centred(s);
                yy - 2.0 * k * xy + k * k * xx
            })
            .sum();
        StepNoise {
            timestep,
            k_fitted,
            k,
            bias: self.channels.iter().map(|s| ((s.d - k * s.e) / s.n.max(1.0)) as f32).collect(),
            sigma: (residual / total).max(0.0).sqrt(),
            rms_error: (self.channels.iter().map(|s| s.dd).sum::<f64>() / total).sqrt(),
        }
    }
}

/// `ε̂ = (ε_q − b_c)/(1 + k)` of a batch `[batch, channels, ...]`.
pub fn correct(step: &StepNoise, mut eps: ArrayD<f32>) -> Result<ArrayD<f32>, String> {
    if eps.ndim() <= CHANNEL_AXIS || eps.shape()[CHANNEL_AXIS] != step.bias.len() {
        return Err(format!(
            "the noise correction has {} channels; the estimate has shape {:?}",
            step.bias.len(),
            eps.shape()
        ));
    }
    let scale = 1.0 / (1.0 + step.k) as f32;
    for (mut channel, &b) in eps.axis_iter_mut(Axis(CHANNEL_AXIS)).zip(&step.bias) {
        channel.mapv_inplace(|v| (v - b) * scale);
    }
    Ok(eps)
}

/// PTQD's variance-schedule calibration: the standard deviation of the fresh noise a stochastic
/// step adds, `√(std² − c²·σ²)` with σ the residual left in the corrected estimate (σ/(1 + k))
/// and `c` the coefficient the step multiplies that estimate by; 0 when the residual alone
/// exceeds the schedule's variance.
pub fn calibrated_std(std: f64, coefficient: f64, step: &StepNoise) -> f64 {
    let residual = step.sigma / (1.0 + step.k);
    (std * std - coefficient * coefficient * residual * residual).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, IxDyn};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array::from_shape_simple_fn(IxDyn(shape), || StandardNormal.sample(&mut rng))
    }

    /// ε_q = 1.1·ε + b_c (+ noise of std `noise`), channel biases 0.5 and −0.25.
    fn corrupted(eps: &ArrayD<f32>, noise: f32) -> ArrayD<f32> {
        let r = gaussian(eps.shape(), 7);
        let mut q = eps.mapv(|v| 1.1 * v) + r.mapv(|v| v * noise);
        for (mut ch, b) in q.axis_iter_mut(Axis(1)).zip([0.5f32, -0.25]) {
            ch.mapv_inplace(|v| v + b);
        }
        q
    }

    #[test]
    fn a_known_linear_corruption_is_recovered_and_undone() {
        let eps = gaussian(&[4, 2, 8, 8], 1);
        let q = corrupted(&eps, 0.0);
        let mut fit = StepFit::default();
        // Two batches add up like one.
        fit.add(eps.slice_axis(Axis(0), (..2).into()), q.slice_axis(Axis(0), (..2).into())).unwrap();
        fit.add(eps.slice_axis(Axis(0), (2..).into()), q.slice_axis(Axis(0), (2..).into())).unwrap();
        let step = fit.finish(999.0);
        assert!((step.k - 0.1).abs() < 1e-6 && step.k == step.k_fitted, "k {}", step.k);
        assert!((step.bias[0] - 0.5).abs() < 1e-5 && (step.bias[1] + 0.25).abs() < 1e-5, "{:?}", step.bias);
        assert!(step.sigma < 1e-5 && step.rms_error > 0.3, "σ {} rms {}", step.sigma, step.rms_error);
        let undone = correct(&step, q).unwrap();
        assert!(undone.iter().zip(&eps).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn the_residual_is_measured_and_a_negative_slope_is_not_used() {
        let eps = gaussian(&[8, 2, 16, 16], 2);
        let step = {
            let mut fit = StepFit::default();
            fit.add(eps.view(), corrupted(&eps, 0.2).view()).unwrap();
            fit.finish(500.0)
        };
        assert!((step.sigma - 0.2).abs() < 0.01, "σ {}", step.sigma);
        // ε_q = 0.9·ε: slope −0.1, not divided out; the bias and residual are those of slope 0.
        let q = eps.mapv(|v| 0.9 * v);
        let mut fit = StepFit::default();
        fit.add(eps.view(), q.view()).unwrap();
        let step = fit.finish(500.0);
        assert!((step.k_fitted + 0.1).abs() < 1e-6 && step.k == 0.0);
        assert!((step.sigma - step.rms_error).abs() < 1e-3, "{} {}", step.sigma, step.rms_error);
        let mut fit = StepFit::default();
        assert!(fit.add(eps.view(), eps.slice_axis(Axis(0), (..1).into())).is_err());
        assert!(correct(&step, gaussian(&[1, 3, 2], 1)).is_err());
    }

    #[test]
    fn the_fresh_noise_shrinks_by_the_residual_share() {
        let step = StepNoise { timestep: 10.0, k_fitted: 1.0, k: 1.0, bias: vec![], sigma: 0.4, rms_error: 0.5 };
        // Residual 0.4/2 = 0.2 scaled by c = 0.5: √(0.3² − 0.1²).
        assert!((calibrated_std(0.3, 0.5, &step) - 0.08f64.sqrt()).abs() < 1e-12);
        assert_eq!(calibrated_std(0.05, 0.5, &step), 0.0);
        assert_eq!(calibrated_std(0.0, 0.5, &step), 0.0);
    }
}
