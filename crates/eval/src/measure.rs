//! Running a workload for measurement: every step's prediction and the final images of every
//! item, the wall time of each denoiser call and each generation, and resident memory.

use crate::{EvalError, Result};
use bitsearch_pipeline::sampler::SampleError;
use bitsearch_pipeline::workload::{Evaluate, StepControl, Workload};
use ndarray::{ArrayD, Axis};
use std::time::{Duration, Instant};

/// What one model produced on the items, and how fast.
#[derive(Debug)]
pub struct Run {
    /// The prediction of every step of every batch, batch-major.
    pub outputs: Vec<ArrayD<f32>>,
    /// Final images of every item, in item order.
    pub images: ArrayD<f32>,
    /// Median wall time of one denoiser call, ms.
    pub call_ms: f64,
    /// Median wall time of a batch's generation divided by its items, ms.
    pub image_ms: f64,
}

/// Records every prediction and times every denoiser call.
#[derive(Debug, Default)]
struct Timed {
    outputs: Vec<ArrayD<f32>>,
    calls: Vec<Duration>,
}

impl StepControl for Timed {
    fn step(&mut self, _: usize, step: usize, evaluate: &mut Evaluate<'_>) -> Result<ArrayD<f32>, SampleError> {
        let started = Instant::now();
        let mut outputs = evaluate(&[])?;
        self.calls.push(started.elapsed());
        if outputs.is_empty() {
            return Err(SampleError::Denoiser(format!("step {step}: the denoiser returned nothing")));
        }
        let prediction = outputs.swap_remove(0);
        self.outputs.push(prediction.clone());
        Ok(prediction)
    }
}

/// One untimed warm-up generation (ONNX Runtime allocates and tunes on its first runs), then
/// `repeats` timed passes over every batch; the first pass's outputs are kept.
pub fn run_all(workload: &mut dyn Workload, repeats: usize) -> Result<Run> {
    workload.run(0, &mut Timed::default())?;
    let mut kept = Timed::default();
    let mut images = Vec::new();
    let (mut calls, mut per_image) = (Vec::new(), Vec::new());
    for repeat in 0..repeats.max(1) {
        for b in 0..workload.batches() {
            let mut timed = Timed::default();
            let started = Instant::now();
            let batch_images = workload.run(b, &mut timed)?;
            let items = batch_images.shape().first().copied().unwrap_or(1).max(1);
            per_image.push(started.elapsed() / items as u32);
            calls.extend(timed.calls);
            if repeat == 0 {
                kept.outputs.extend(timed.outputs);
                images.push(batch_images);
            }
        }
    }
    let views: Vec<_> = images.iter().map(|i| i.view()).collect();
    let images = ndarray::concatenate(Axis(0), &views).map_err(|e| EvalError::Mismatch(format!("images: {e}")))?;
    Ok(Run { outputs: kept.outputs, images, call_ms: median_ms(calls), image_ms: median_ms(per_image) })
}

fn median_ms(mut times: Vec<Duration>) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

/// Resident memory of this process (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    const PAGE: u64 = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE)
}
