//! The quantization grid of one channel or group and the clipping that chooses it: min-max, or
//! the clip ratio with the smallest squared reconstruction error.

use crate::Clipping;

/// Smallest clip ratio the MSE search tries, as a fraction of max|w|.
const MIN_CLIP_RATIO: f32 = 0.5;

/// One quantization grid: the stored scale and the factor that maps a value to code units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    pub(crate) scale: f32,
    /// qmax / clip rather than 1 / scale, so a value at the clip maps to exactly qmax.
    inv: f32,
}

impl Step {
    fn new(clip: f32, qmax: f32) -> Self {
        // An all-zero channel or group gets scale 0 and codes 0, never 0/0.
        if clip > 0.0 { Step { scale: clip / qmax, inv: qmax / clip } } else { Step { scale: 0.0, inv: 0.0 } }
    }

    /// Saturates at ±qmax and rounds half away from zero, as `f32::round` would, but in
    /// operations the compiler vectorizes (the clipping search calls this for every value at
    /// every grid point): truncation, then the exact fractional part decides.
    fn level(self, x: f32, qmax: f32) -> f32 {
        let y = (x * self.inv).clamp(-qmax, qmax);
        let t = y as i32 as f32;
        let up = f32::from(u8::from(y - t >= 0.5)) - f32::from(u8::from(y - t <= -0.5));
        t + up
    }

    pub(crate) fn code(self, x: f32, qmax: f32) -> i8 {
        self.level(x, qmax) as i8
    }

    /// Sum of squared rounding errors, in eight f64 lanes so that the loop vectorizes.
    fn sq_error(self, values: &[f32], qmax: f32) -> f64 {
        let error = |x: f32| f64::from(x - self.level(x, qmax) * self.scale).powi(2);
        let mut lanes = [0.0f64; 8];
        let chunks = values.chunks_exact(8);
        let tail: f64 = chunks.remainder().iter().map(|&x| error(x)).sum();
        for chunk in chunks {
            lanes.iter_mut().zip(chunk).for_each(|(lane, &x)| *lane += error(x));
        }
        lanes.iter().sum::<f64>() + tail
    }
}

impl Clipping {
    pub(crate) fn step(self, values: &[f32], qmax: f32) -> Step {
        let amax = values.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        match self {
            Clipping::MinMax => Step::new(amax, qmax),
            Clipping::MseSearch { grid } => {
                let full = Step::new(amax, qmax);
                let mut best = (full.sq_error(values, qmax), full);
                // From the largest ratio down, replacing only on a strict gain: ties keep the larger.
                for i in (0..grid.saturating_sub(1)).rev() {
                    let r = MIN_CLIP_RATIO + (1.0 - MIN_CLIP_RATIO) * i as f32 / (grid - 1) as f32;
                    let step = Step::new(r * amax, qmax);
                    let err = step.sq_error(values, qmax);
                    if err < best.0 {
                        best = (err, step);
                    }
                }
                best.1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_rounds_like_f32_round_and_saturates() {
        let qmax = 7.0;
        let step = Step::new(1.0, 1.0);
        let halves = (-40..=40).map(|i| i as f32 * 0.25);
        let near = [0.49999997f32, 0.50000006, 2.4999998, 6.5, 7.4999995, 7.5, 8.0, 1e6];
        for x in halves.chain(near).chain(near.map(|v| -v)) {
            assert_eq!(step.level(x, qmax), x.round().clamp(-qmax, qmax), "{x}");
        }
    }
}
