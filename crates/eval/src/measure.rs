//! Running a workload for measurement: every step's prediction and the final images of every
//! item, the wall time of each denoiser call and each generation, and resident memory.

use crate::{EvalError, Result};
use bitsearch_pipeline::sampler::SampleError;
use bitsearch_pipeline::workload::{Evaluate, StepControl, Unchanged, Workload};
use ndarray::{ArrayD, Axis};
use std::time::{Duration, Instant};

/// What one model produced on the items, and how fast.
#[derive(Debug)]
pub struct Run {
    /// The prediction of every step of every batch, batch-major.
    pub outputs: Vec<ArrayD<f32>>,
    /// The item each output's first row is.
    pub first_items: Vec<usize>,
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

/// Median wall times of one model's denoiser calls and generations.
#[derive(Debug, Clone, Copy)]
struct Timing {
    pub call_ms: f64,
    pub image_ms: f64,
}

/// Wall times collected over passes.
#[derive(Debug, Default)]
struct Times {
    calls: Vec<Duration>,
    per_image: Vec<Duration>,
}

impl Times {
    /// Runs batch `b` of `workload`, timing it; returns its images and predictions.
    fn run(&mut self, workload: &mut dyn Workload, b: usize) -> Result<(ArrayD<f32>, Vec<ArrayD<f32>>)> {
        let mut timed = Timed::default();
        let started = Instant::now();
        let images = workload.run(b, &mut timed)?;
        let items = images.shape().first().copied().unwrap_or(1).max(1);
        self.per_image.push(started.elapsed() / items as u32);
        self.calls.extend(timed.calls);
        Ok((images, timed.outputs))
    }

    fn timing(self) -> Timing {
        Timing { call_ms: median_ms(self.calls), image_ms: median_ms(self.per_image) }
    }
}

/// One untimed warm-up generation (ONNX Runtime allocates and tunes on its first runs), then
/// `repeats` timed passes over every batch; the first pass's outputs are kept. With `repeats`
/// = 0, one untimed pass for the outputs alone (latency NaN: an unwarmed pass is no measurement).
pub fn run_all(workload: &mut dyn Workload, repeats: usize) -> Result<Run> {
    if repeats > 0 {
        workload.run(0, &mut Unchanged)?;
    }
    let mut times = Times::default();
    let (mut outputs, mut first_items, mut images) = (Vec::new(), Vec::new(), Vec::new());
    for repeat in 0..repeats.max(1) {
        let mut first = 0;
        for b in 0..workload.batches() {
            let (batch_images, batch_outputs) = times.run(workload, b)?;
            if repeat == 0 {
                first_items.extend(std::iter::repeat_n(first, batch_outputs.len()));
                first += batch_images.shape().first().copied().unwrap_or(1);
                outputs.extend(batch_outputs);
                images.push(batch_images);
            }
        }
    }
    let views: Vec<_> = images.iter().map(|i| i.view()).collect();
    let images = ndarray::concatenate(Axis(0), &views).map_err(|e| EvalError::Mismatch(format!("images: {e}")))?;
    let timing = if repeats == 0 { Timing { call_ms: f64::NAN, image_ms: f64::NAN } } else { times.timing() };
    Ok(Run { outputs, first_items, images, call_ms: timing.call_ms, image_ms: timing.image_ms })
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
