//! One probe scored: its run over every batch with the probed layer's overrides, compared with
//! the full-precision reference on the denoiser output (SQNR) and the final image (SSIM, MSE,
//! PSNR).

use crate::control::{ActParams, Below, ProbeControl};
use crate::error::Result;
use crate::plain::Reference;
use crate::summary::Phases;
use bitsearch_metrics::{Mse, Sqnr, count_nonfinite, ssim_per_item};
use bitsearch_onnx::rewrite::FakeQuantPoint;
use bitsearch_pipeline::workload::Workload;
use bitsearch_quant::{ActQuantizer, ApplyError, StepRanges, range_key};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

/// What one probe measured against the reference.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scores {
    pub sqnr_db: f64,
    pub ssim: f64,
    pub mse: f64,
    pub psnr_db: f64,
    pub nonfinite: u64,
}

/// One probe's run: what it overrides during which steps, and what it is compared with.
pub(crate) struct Trial<'a> {
    pub step_group: usize,
    /// The steps of the step group, where the overrides apply.
    pub steps: Range<usize>,
    /// The quantized weight, by initializer name.
    pub weight: Option<(&'a str, &'a ArrayD<f32>)>,
    /// The layer's bias corrected for the quantized weight's mean output shift.
    pub bias: Option<(&'a str, &'a ArrayD<f32>)>,
    pub act_params: ActParams,
    pub reference: &'a [Reference],
    pub below: Below<'a>,
}

/// The parameters of the activation quantizers `points` (the probed layer's, named `layer`) at
/// `bits`, for every step of `steps`: each from its own step's range when `per_step`, else from
/// the range merged over the steps.
pub(crate) fn act_params(
    bits: u8,
    points: &[&FakeQuantPoint],
    ranges: &HashMap<String, StepRanges>,
    steps: Range<usize>,
    per_step: bool,
    layer: &str,
) -> Result<ActParams> {
    let mut act_params = HashMap::new();
    for step in steps {
        let mut params = Vec::new();
        for point in points {
            let range = ranges
                .get(&range_key(&point.tensor, point.first_row_float))
                .map(|r| r.get(step).filter(|_| per_step).unwrap_or_else(|| r.merged()));
            let quantizer = ActQuantizer::new(bits, range.unwrap_or_default())
                .map_err(|source| ApplyError::Quant { layer: layer.to_string(), source })?;
            let (scale, zero) = quantizer.params();
            let scalar = |v: f32| ArrayD::from_elem(IxDyn(&[]), v);
            params.push((point.scale.clone(), scalar(scale)));
            params.push((point.zero_point.clone(), scalar(f32::from(zero))));
            params.push((point.qmax.clone(), scalar(((1u32 << bits) - 1) as f32)));
            params.push((point.on.clone(), scalar(1.0)));
        }
        act_params.insert(step, params);
    }
    Ok(act_params)
}

/// Runs `trial` over every batch on `workload` and compares it with the reference; the time its
/// runs and image metrics took, and how many batches ran their first quantized step below the
/// window's cut.
pub(crate) fn score(workload: &mut dyn Workload, trial: &Trial<'_>) -> Result<(Scores, Phases, usize)> {
    let (mut sqnr, mut mse, mut ssim_sum, mut items, mut nonfinite) = (Sqnr::default(), Mse::default(), 0.0, 0, 0);
    let (mut phases, mut cut_runs) = (Phases::default(), 0);
    let below = trial.below;
    for (b, fp) in trial.reference.iter().enumerate() {
        let cut = below.at.zip(below.cache.feeds(below.window, b, trial.step_group));
        cut_runs += usize::from(cut.is_some());
        let mut control = ProbeControl {
            reference: &fp.outputs,
            cut,
            steps: trial.steps.clone(),
            weight: trial.weight.map(|(name, w)| (name, w.view())),
            bias: trial.bias.map(|(name, b)| (name, b.view())),
            act_params: &trial.act_params,
            sqnr: &mut sqnr,
            nonfinite: &mut nonfinite,
        };
        let started = Instant::now();
        let images = workload.run(b, &mut control)?;
        phases.runs += started.elapsed();
        let started = Instant::now();
        nonfinite += count_nonfinite(images.view());
        mse.add(fp.images.view(), images.view());
        let per_item = ssim_per_item(fp.images.view(), images.view());
        items += per_item.len();
        ssim_sum += per_item.iter().sum::<f64>();
        phases.image_metrics += started.elapsed();
    }
    // A non-finite output is the worst a probe can do on every metric.
    let finite = nonfinite == 0;
    let scores = Scores {
        sqnr_db: if finite { sqnr.db() } else { f64::NEG_INFINITY },
        ssim: if finite { ssim_sum / items.max(1) as f64 } else { -1.0 },
        mse: if finite { mse.value() } else { f64::INFINITY },
        psnr_db: if finite { mse.psnr_db() } else { f64::NEG_INFINITY },
        nonfinite,
    };
    Ok((scores, phases, cut_runs))
}
