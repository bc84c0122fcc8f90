//! What a run reports: its progress as it goes, and at the end its speed (probe and plain-pass
//! times, where the probing time went).

use crate::cut::CacheStats;
use bitsearch_records::ProbeRow;
use std::time::Duration;

/// What a long run tells its user as it goes.
pub trait Progress {
    /// `total` probes in this run (this shard), `done` of them already in the journal.
    fn start(&mut self, total: usize, done: usize);
    fn stage(&mut self, message: &str);
    fn finished(&mut self, row: &ProbeRow);
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: usize, _: usize) {}
    fn stage(&mut self, _: &str) {}
    fn finished(&mut self, _: &ProbeRow) {}
}

/// Speed of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Probes computed by this process (those found in the journal excluded).
    pub computed: usize,
    /// Of those, probes of a layer at its base plan's own form, answered by one pass of the base.
    pub at_base: usize,
    pub skipped: usize,
    /// Probes whose output held NaN or infinity.
    pub nonfinite: usize,
    /// Every timed full-precision pass over every batch: three before the probes, then one
    /// every [`PLAIN_EVERY`](crate::PLAIN_EVERY) probes among them, each at the first probe
    /// boundary where none of the run's own threads (session builds, weight quantization)
    /// works beside it.
    pub plain_passes: Vec<Duration>,
    /// Each computed probe's wall time (quantization, runs, metrics), its window's session
    /// build and calibration shared among the window's probes; the probes answered by one pass
    /// of the base count as one.
    pub probe_times: Vec<Duration>,
    /// Wall time of the probing phase: session builds, quantization, calibration, runs, and
    /// the plain passes among them.
    pub probing: Duration,
    /// Where that time went.
    pub phases: Phases,
    /// The values fed to the windows' cuts (downstream-only probes).
    pub cache: CacheStats,
}

/// Where a run's probing time went, summed over its probes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    /// Passes capturing the values that cross the windows' cuts.
    pub capture: Duration,
    /// The GPTQ weights: their layers' input moments measured, then the rounding.
    pub gptq: Duration,
    /// Waits for the window's sessions (built on a thread of their own during the previous
    /// window's probes), activation ranges calibrated, bias shifts measured.
    pub sessions: Duration,
    /// Waits for the window's fake-quantized weights (quantized, with the clipping search, on a
    /// thread of their own).
    pub quantize: Duration,
    /// The probes' pipeline runs, with the per-step SQNR against the reference.
    pub runs: Duration,
    /// MSE and SSIM of the final images.
    pub image_metrics: Duration,
    /// The plain passes among the probes.
    pub plain: Duration,
    /// Rows written to the journal.
    pub journal: Duration,
}

impl Phases {
    /// Each phase with its name, in the order of a probe.
    pub fn named(&self) -> [(&'static str, Duration); 8] {
        [
            ("GPTQ moments and rounding", self.gptq),
            ("cut values captured", self.capture),
            ("sessions and calibration", self.sessions),
            ("waits for quantized weights", self.quantize),
            ("runs", self.runs),
            ("image metrics", self.image_metrics),
            ("plain passes", self.plain),
            ("journal", self.journal),
        ]
    }
}

impl Summary {
    pub fn probes_per_second(&self) -> f64 {
        self.computed as f64 / self.probing.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// `time` as a percentage of the probing time.
    pub fn share(&self, time: Duration) -> f64 {
        100.0 * time.as_secs_f64() / self.probing.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The median plain pass.
    pub fn plain_pass(&self) -> Duration {
        median(&self.plain_passes)
    }

    /// The median probe over the median plain pass, both timed in the same run (interleaved):
    /// 1 means a probe costs one forward of the model.
    pub fn probe_to_plain_ratio(&self) -> f64 {
        if self.probe_times.is_empty() || self.plain_passes.is_empty() {
            return f64::NAN;
        }
        median(&self.probe_times).as_secs_f64() / self.plain_pass().as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// The median of `times` (the upper one of an even count); zero for none.
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
