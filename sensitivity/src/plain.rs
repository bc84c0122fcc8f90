//! The full-precision passes: the reference every probe is compared with, and the plain passes
//! timed before and among the probes, so that probe and plain times share the machine's load.

use crate::config::in_generation;
use crate::control::Record;
use crate::error::Result;
use crate::summary::Summary;
use bitsearch_pipeline::workload::{self, Workload, WorkloadSpec};
use ndarray::ArrayD;
use std::path::Path;
use std::time::{Duration, Instant};

/// Timed full-precision passes before the probes.
const PLAIN_PASSES: usize = 3;

/// Probes between two plain passes during the probing: probe and plain times then share the
/// machine's load, whatever else runs beside them, at about 1/32 of the run's time.
pub const PLAIN_EVERY: usize = 32;

/// A pause before and after each plain pass among the probes, untimed: the threads of the
/// session that ran last keep spinning for a while, and on the terrain UNet a plain pass
/// straight after a probe took 9% longer than one 30 ms later (the next probe would pay the
/// same for the plain session's threads).
const SETTLE: Duration = Duration::from_millis(30);

/// The full-precision run of one batch: the prediction of every step, and the final images.
#[derive(Debug)]
pub(crate) struct Reference {
    pub outputs: Vec<ArrayD<f32>>,
    pub images: ArrayD<f32>,
}

/// The reference of every batch, on the session `workload` holds, timed into `summary` with two
/// more passes. ONNX Runtime's first runs allocate and tune: a warm-up goes first, untimed.
pub(crate) fn reference(workload: &mut dyn Workload, summary: &mut Summary) -> Result<Vec<Reference>> {
    workload.run(0, &mut Record::default())?;
    let started = Instant::now();
    let reference = full_pass(workload)?;
    summary.plain_passes.push(started.elapsed());
    for _ in 0..PLAIN_PASSES - 1 {
        let started = Instant::now();
        full_pass(workload)?;
        summary.plain_passes.push(started.elapsed());
    }
    Ok(reference)
}

/// The plain passes among the probes, on a float workload of their own (the windows replace
/// the probes' session). A pass falls due every [`PLAIN_EVERY`] probes and runs once no thread
/// of the run's own builds or quantizes beside it: the probes pay for that work, the plain pass
/// not. Owed passes are counted, so a run has 3 + (probes − 1) / [`PLAIN_EVERY`] of them.
pub(crate) struct PlainPasses {
    workload: Box<dyn Workload>,
    owed: usize,
}

impl PlainPasses {
    /// Opens the float workload of `model` and warms it up like the first.
    pub fn open(model: &Path, spec: &WorkloadSpec) -> Result<Self> {
        let mut workload = workload::open(model, spec).map_err(in_generation)?;
        workload.run(0, &mut Record::default())?;
        Ok(Self { workload, owed: 0 })
    }

    /// Before a probe: counts the pass that falls due, and runs one owed when `idle` (none of
    /// the run's threads works beside it).
    pub fn before_probe(&mut self, summary: &mut Summary, idle: impl FnOnce() -> bool) -> Result<()> {
        self.owed += usize::from(summary.computed > 0 && summary.computed.is_multiple_of(PLAIN_EVERY));
        if self.owed > 0 && idle() {
            self.owed -= 1;
            plain_pass(self.workload.as_mut(), summary)?;
        }
        Ok(())
    }

    /// Runs the passes still owed when the last window ended (its threads were busy until then).
    pub fn finish(mut self, summary: &mut Summary) -> Result<()> {
        for _ in 0..self.owed {
            plain_pass(self.workload.as_mut(), summary)?;
        }
        Ok(())
    }
}

/// One plain pass among the probes, timed between two untimed pauses of [`SETTLE`] or one
/// plain pass if shorter (so that they cost small models at most 2/[`PLAIN_EVERY`] of their
/// probing); the pauses count in the plain passes' share.
fn plain_pass(workload: &mut dyn Workload, summary: &mut Summary) -> Result<()> {
    let settle = SETTLE.min(summary.plain_pass());
    let settled = Instant::now();
    std::thread::sleep(settle);
    let started = Instant::now();
    full_pass(workload)?;
    summary.plain_passes.push(started.elapsed());
    std::thread::sleep(settle);
    summary.phases.plain += settled.elapsed();
    Ok(())
}

/// A full-precision pass over every batch of `workload`, on the session it holds: the reference,
/// and the plain passes timed beside the probes.
fn full_pass(workload: &mut dyn Workload) -> Result<Vec<Reference>> {
    (0..workload.batches())
        .map(|b| {
            let mut record = Record::default();
            let images = workload.run(b, &mut record)?;
            Ok(Reference { outputs: record.outputs, images })
        })
        .collect()
}
