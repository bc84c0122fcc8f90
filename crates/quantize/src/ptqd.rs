//! `quantize --ptqd`: PTQD's noise correction fitted on the calibration items. Each step-group
//! model runs beside the float denoiser in one graph, on the float trajectory's inputs, so both
//! estimates of every step come from the same noisy sample; both are converted to ε and the
//! per-step fit of [`bitsearch_pipeline::ptqd::StepFit`] is written beside the models.

use crate::{QuantizeError, Result};
use bitsearch_onnx::{Model, rewrite};
use bitsearch_pipeline::ptqd::StepFit;
use bitsearch_pipeline::sampler;
use bitsearch_pipeline::workload::{self, Workload};
use bitsearch_records::NoiseCorrection;
use bitsearch_records::correction::NOISE_CORRECTION_FORMAT;
use bitsearch_runtime::SessionOptions;
use ndarray::ArrayD;

/// File name of the fitted correction in a quantized folder.
pub const NOISE_CORRECTION_FILE: &str = "noise_correction.yaml";
/// Prefix of the quantized graph's names inside the paired model.
const PREFIX: &str = "ptqd/";

/// Fits the correction of `quantized` (one model per configuration, `by_step` choosing) against
/// `fp` on the workload's items.
pub fn fit(
    workload: &mut dyn Workload,
    fp: &Model,
    quantized: &[Model],
    by_step: Vec<usize>,
    options: &SessionOptions,
) -> Result<NoiseCorrection> {
    let settings = workload.settings()?;
    let alphas = sampler::step_alphas(&settings).map_err(|e| QuantizeError::Ptqd(e.to_string()))?;
    let timesteps = sampler::timesteps(&settings).map_err(|e| QuantizeError::Ptqd(e.to_string()))?;
    let mut paired = Vec::new();
    let mut names = None;
    for q in quantized {
        let (model, exposed) = rewrite::side_by_side(fp, q, PREFIX)?;
        paired.push(model);
        names = Some(exposed);
    }
    let names = names.ok_or_else(|| QuantizeError::Ptqd("no quantized model to fit".into()))?;
    // The estimates, then every graph input: the sample is the one shaped like the estimate.
    let mut tensors = vec![names.main.clone(), names.side.clone()];
    tensors.extend(names.inputs.iter().map(|(_, identity)| identity.clone()));
    let mut fits = vec![StepFit::default(); alphas.len()];
    let mut call: Vec<ArrayD<f32>> = Vec::new();
    let mut failure = None;
    let last = &tensors[tensors.len() - 1];
    workload::observe_steps(workload, &paired, by_step, &tensors, options, |tensor, _, step, values| {
        call.push(values.to_owned());
        if tensor != last {
            return;
        }
        let mut values = std::mem::take(&mut call).into_iter();
        let (Some(fp_out), Some(q_out)) = (values.next(), values.next()) else { return };
        let (Some(fit), Some(&alpha)) = (fits.get_mut(step), alphas.get(step)) else { return };
        let inputs: Vec<ArrayD<f32>> = values.collect();
        let Some(x) = inputs.iter().find(|v| v.shape() == fp_out.shape()) else {
            failure
                .get_or_insert(format!("step {step}: no graph input is shaped like the estimate {:?}", fp_out.shape()));
            return;
        };
        let eps = sampler::to_epsilon(settings.prediction, fp_out, x, alpha);
        let eps_q = sampler::to_epsilon(settings.prediction, q_out, x, alpha);
        if let Err(e) = fit.add(eps.view(), eps_q.view()) {
            failure.get_or_insert(format!("step {step}: {e}"));
        }
    })?;
    if let Some(message) = failure {
        return Err(QuantizeError::Ptqd(message));
    }
    if let Some(step) = fits.iter().position(StepFit::is_empty) {
        return Err(QuantizeError::Ptqd(format!("step {step}: the calibration pass returned no estimates")));
    }
    let steps: Vec<_> = fits.iter().zip(&timesteps).map(|(fit, &t)| fit.finish(f64::from(t))).collect();
    for (i, s) in steps.iter().enumerate() {
        log::info!(
            "ptqd step {i} (t={}): k {:+.4} (fitted {:+.4}), residual σ {:.4} of rms error {:.4}",
            s.timestep,
            s.k,
            s.k_fitted,
            s.sigma,
            s.rms_error
        );
    }
    Ok(NoiseCorrection {
        bitsearch_noise_correction: NOISE_CORRECTION_FORMAT,
        sampler: settings.kind.to_string(),
        prediction: settings.prediction.to_string(),
        calibration_items: workload.items().to_vec(),
        steps,
    })
}
