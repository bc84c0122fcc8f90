//! The arithmetic samplers share: calling the network, blending arrays, and turning a network
//! output into clean-sample and noise estimates in either time domain.

use ndarray::{ArrayD, Zip};

use super::{Denoiser, Prediction, SampleError, SigmaRange};
use crate::schedule::{KARRAS_RHO, karras_sigmas};

/// Karras sigmas for `steps` evaluations, after checking the sigma domain makes sense.
pub(super) fn sigma_ladder(steps: usize, range: SigmaRange) -> Result<Vec<f64>, SampleError> {
    let SigmaRange { min: sigma_min, max: sigma_max, data: sigma_data } = range;
    // Written as one positive test so that NaN anywhere fails it.
    if !(0.0 < sigma_min && sigma_min < sigma_max && sigma_max.is_finite() && sigma_data > 0.0) {
        return Err(SampleError::Config(format!(
            "sigma domain needs 0 < sigma_min < sigma_max and sigma_data > 0, got sigma_min {sigma_min}, \
             sigma_max {sigma_max}, sigma_data {sigma_data}"
        )));
    }
    Ok(karras_sigmas(steps, sigma_min, sigma_max, KARRAS_RHO))
}

/// Calls the network and checks it returned a tensor shaped like its input.
pub(super) fn eval(
    denoiser: &mut dyn Denoiser,
    step: usize,
    x: &ArrayD<f32>,
    t: f64,
) -> Result<ArrayD<f32>, SampleError> {
    let out = denoiser.eval(step, x, t as f32)?;
    if out.shape() != x.shape() {
        return Err(SampleError::Denoiser(format!(
            "step {step}: network output has shape {:?}, expected the sample's shape {:?}",
            out.shape(),
            x.shape()
        )));
    }
    Ok(out)
}

/// `ca·a + cb·b` elementwise; both arrays share the sample's shape.
pub(super) fn lin(a: &ArrayD<f32>, ca: f64, b: &ArrayD<f32>, cb: f64) -> ArrayD<f32> {
    let (ca, cb) = (ca as f32, cb as f32);
    Zip::from(a).and(b).map_collect(|&a, &b| ca * a + cb * b)
}

/// Clean-sample estimate from a network output on `x = √ᾱ·x0 + √(1−ᾱ)·ε`.
pub(super) fn vp_x0(pred: Prediction, out: &ArrayD<f32>, x: &ArrayD<f32>, alpha_cumprod: f64) -> ArrayD<f32> {
    let (sa, sb) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
    match pred {
        Prediction::Epsilon => lin(x, 1.0 / sa, out, -sb / sa),
        Prediction::Sample => out.clone(),
        Prediction::VPrediction => lin(x, sa, out, -sb),
        Prediction::Score => lin(x, 1.0 / sa, out, sb * sb / sa),
    }
}

/// Clean-sample and noise estimates from a network output on `x = √ᾱ·x0 + √(1−ᾱ)·ε`.
pub(super) fn vp_split(
    pred: Prediction,
    out: ArrayD<f32>,
    x: &ArrayD<f32>,
    alpha_cumprod: f64,
) -> (ArrayD<f32>, ArrayD<f32>) {
    let x0 = vp_x0(pred, &out, x, alpha_cumprod);
    let (sa, sb) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
    let eps = match pred {
        Prediction::Epsilon => out,
        Prediction::Sample => lin(x, 1.0 / sb, &x0, -sa / sb),
        Prediction::VPrediction => lin(&out, sa, x, sb),
        Prediction::Score => out.mapv(|score| (-sb * f64::from(score)) as f32),
    };
    (x0, eps)
}

/// Clean-sample estimate `D(x, σ)` from a network output on `x = x0 + σ·ε`.
pub(super) fn sigma_x0(
    pred: Prediction,
    out: ArrayD<f32>,
    x: &ArrayD<f32>,
    sigma: f64,
    sigma_data: f64,
) -> ArrayD<f32> {
    match pred {
        Prediction::Sample => out,
        Prediction::Epsilon => lin(x, 1.0, &out, -sigma),
        Prediction::VPrediction => {
            let total = sigma * sigma + sigma_data * sigma_data;
            lin(x, sigma_data * sigma_data / total, &out, -sigma * sigma_data / total.sqrt())
        }
        Prediction::Score => lin(x, 1.0, &out, sigma * sigma),
    }
}
