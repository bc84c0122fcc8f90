//! The engine: one full-precision reference pass, then the probes window by window. A window's
//! session makes only its own layers' weights (and fake quantizers) overridable, so a probe is
//! one pipeline run with one override, no session build, and the FP outputs are reused. The
//! next window's sessions are built, and this window's weights quantized, on threads of their
//! own while the probes run.

use crate::base::Base;
use crate::config::{SensitivityConfig, in_generation};
use crate::cut::{CacheStats, CutCache};
use crate::error::{Result, SensitivityError};
use crate::journal::{Journal, journal_path};
use crate::probes::{Probe, Window, plan, shard, step_groups};
use crate::window::{WindowBuild, WindowSessions, bias_of};
use bitsearch_metrics::{Mse, Sqnr, count_nonfinite, ssim_per_item};
use bitsearch_onnx::rewrite::{self, FakeQuantPoint};
use bitsearch_onnx::{GraphView, Model, tensor_to_f32};
use bitsearch_pipeline::sampler::SampleError;
use bitsearch_pipeline::sessions::DenoiserSessions;
use bitsearch_pipeline::workload::shift::{self, WeightChange};
use bitsearch_pipeline::workload::{self, Evaluate, StepControl, Workload};
use bitsearch_quant::{ActQuantizer, ApplyError, StepRanges, fake_quantized_weight, range_key, without_first_row};
use bitsearch_records::table::TABLE_FORMAT;
use bitsearch_records::{ProbeRow, RunMeta, SensitivityTable, Shard};
use bitsearch_runtime::{ActiveDevice, Device, Session, SessionOptions, layers_with_costs};
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{Component, FLOAT_BITS, Layer, LayerKind, MetricGroup, Role, WeightFormat as WeightForm};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Activation ranges by [`range_key`].
type Ranges = HashMap<String, StepRanges>;

/// Values fed to a session by name.
type Feeds<'a> = Vec<(&'a str, ArrayViewD<'a, f32>)>;

/// Per (layer, weight bits, split, step group): the bias initializer and its corrected values.
type CorrectedBiases = HashMap<(usize, WeightForm, usize), (String, ArrayD<f32>)>;

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
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Probes computed by this process (those found in the journal excluded).
    pub computed: usize,
    /// Of those, probes of a layer at its base plan's own form, answered by one pass of the base.
    pub at_base: usize,
    pub skipped: usize,
    /// Probes whose output held NaN or infinity.
    pub nonfinite: usize,
    /// Every timed full-precision pass over every batch: three before the probes, then one
    /// every [`PLAIN_EVERY`] probes among them, each at the first probe boundary where none of
    /// the run's own threads (session builds, weight quantization) works beside it.
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
    pub fn named(&self) -> [(&'static str, Duration); 7] {
        [
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

/// A prepared sensitivity run over one model.
#[derive(Debug)]
pub struct SensitivityRun {
    /// The model's path, to open the float workload of the plain passes.
    path: std::path::PathBuf,
    workload: Box<dyn Workload>,
    /// The denoiser as loaded: what the probes quantize, and (without a base) what every
    /// window's session is built from.
    model: Arc<Model>,
    /// The plan the probes start from, if any: its model is what the sessions run.
    base: Option<Base>,
    /// The device the first session settled on (`auto` resolved once, not per window).
    device: Device,
    config: SensitivityConfig,
    layers: Vec<Layer>,
    groups: Vec<MetricGroup>,
    windows: Vec<Window>,
    steps: Vec<Range<usize>>,
    meta: RunMeta,
}

/// The full-precision run of one batch: the prediction of every step, and the final images.
#[derive(Debug)]
struct Reference {
    outputs: Vec<ArrayD<f32>>,
    images: ArrayD<f32>,
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

impl SensitivityRun {
    /// Opens the model, finds its layers and plans the probes of `shard`.
    pub fn open(model: &Path, config: SensitivityConfig, shard_of: Shard) -> Result<Self> {
        config.validate()?;
        let workload = workload::open(model, &config.generation).map_err(in_generation)?;
        let dims = config.generation.dims.clone().into_iter().collect();
        let denoiser = workload.model()?;
        let layers = layers_with_costs(&denoiser, Component::Unet, &dims)?;
        let selected = select(&layers, &config)?;
        let groups = metric_groups(&layers, &config)?;
        let steps = workload.steps();
        if config.step_groups > steps {
            return Err(SensitivityError::config(
                "step_groups",
                format!("{} groups cannot split the {steps} denoising steps", config.step_groups),
            ));
        }
        let steps = step_groups(steps, config.step_groups);
        let all = plan(&layers, &selected, &config);
        let probes_total = all.iter().map(|w| w.probes.len()).sum();
        let denoiser_file = workload::denoiser_file(model);
        let absolute = model.canonicalize().map_err(|e| SensitivityError::table(model, format!("cannot read: {e}")))?;
        let model_sha256 = bitsearch_types::sha256_file(&denoiser_file)
            .map_err(|e| SensitivityError::table(&denoiser_file, format!("cannot read: {e}")))?;
        let base = match &config.base {
            Some(path) => Some(Base::open(path, &denoiser, &layers, &config, &model_sha256)?),
            None => None,
        };
        let meta = RunMeta {
            format: TABLE_FORMAT,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            model: absolute.display().to_string(),
            model_sha256,
            pipeline: workload.kind().to_string(),
            sampler: workload.sampler(),
            steps: workload.steps(),
            step_groups: steps.iter().map(|r| [r.start, r.end - 1]).collect(),
            items: workload.items().to_vec(),
            device: workload.device().to_string(),
            metric_groups: describe_groups(&layers, &selected, &groups),
            probes_total,
            shard: shard_of,
            quantizer: config.quantizer,
            config: serde_json::to_value(&config)
                .map_err(|e| SensitivityError::config("config", format!("cannot be recorded: {e}")))?,
            base: base.as_ref().map(|b| b.point.clone()),
        };
        let windows = shard(all, shard_of);
        let device = match workload.device() {
            ActiveDevice::Cpu => Device::Cpu,
            ActiveDevice::Cuda => Device::Cuda,
        };
        let path = model.to_path_buf();
        Ok(Self {
            path,
            workload,
            model: Arc::new(denoiser),
            base,
            device,
            config,
            layers,
            groups,
            windows,
            steps,
            meta,
        })
    }

    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Probes of this shard.
    pub fn probes(&self) -> usize {
        self.windows.iter().map(|w| w.probes.len()).sum()
    }

    /// Runs every probe not in `done`, appending each row to `journal` as it finishes.
    pub fn run(&mut self, journal: &mut Journal, done: &HashSet<u64>, progress: &mut dyn Progress) -> Result<Summary> {
        let pending = |p: &&Probe| !done.contains(&(p.index as u64));
        let total = self.probes();
        let todo: usize = self.windows.iter().map(|w| w.probes.iter().filter(pending).count()).sum();
        progress.start(total, total - todo);
        let mut summary = Summary {
            computed: 0,
            at_base: 0,
            skipped: total - todo,
            nonfinite: 0,
            plain_passes: Vec::new(),
            probe_times: Vec::new(),
            probing: Duration::ZERO,
            phases: Phases::default(),
            cache: CacheStats::default(),
        };
        if todo == 0 {
            return Ok(summary);
        }
        progress.stage("full-precision reference");
        // ONNX Runtime's first runs allocate and tune: a warm-up, then three timed passes (the
        // reference itself and two more).
        self.workload.run(0, &mut Record::default())?;
        let started = Instant::now();
        let reference = full_pass(self.workload.as_mut())?;
        summary.plain_passes.push(started.elapsed());
        for _ in 0..PLAIN_PASSES - 1 {
            let started = Instant::now();
            full_pass(self.workload.as_mut())?;
            summary.plain_passes.push(started.elapsed());
        }
        // The windows replace the workload's session: plain passes among the probes run on a
        // float workload of their own, warmed up like the first.
        let mut plain = workload::open(&self.path, &self.config.generation).map_err(in_generation)?;
        plain.run(0, &mut Record::default())?;
        let started = Instant::now();
        // Every probe of a layer at its base form measures the base itself: one pass for all.
        let mut base_scores: Option<Scores> = None;
        let windows = self.windows.clone();
        let mut cache = self.cut_cache(&windows);
        let todo: Vec<usize> = (0..windows.len()).filter(|&w| windows[w].probes.iter().any(|p| pending(&p))).collect();
        // The next window's sessions build while this one's probes run.
        let spawn = |this: &Self, cache: &CutCache, k: usize| {
            todo.get(k).map(|&w| (w, this.window_build(&windows[w], w, cache).spawn()))
        };
        let mut next = spawn(self, &cache, 0);
        // A plain pass falls due every PLAIN_EVERY probes and runs once no thread of the run's
        // own builds or quantizes beside it: the probes pay for that work, the plain pass not.
        // Owed passes are counted, so a run has 3 + (probes − 1) / PLAIN_EVERY of them.
        let mut plain_owed = 0;
        let mut k = 0;
        while let Some((w, build)) = next.take() {
            k += 1;
            let window = &windows[w];
            let probes: Vec<&Probe> = window.probes.iter().filter(pending).collect();
            progress.stage(&format!("window {}/{} ({} layers)", w + 1, windows.len(), window.layers.len()));
            let window_started = Instant::now();
            let mut weights: HashMap<(usize, WeightForm), (ArrayD<f32>, u64)> = HashMap::new();
            let biases = if self.config.bias_correction {
                self.corrected_biases(&probes, &mut weights)?
            } else {
                HashMap::new()
            };
            let jobs = probes.iter().filter_map(|p| Some((p.layer, p.weight?))).filter(|k| !weights.contains_key(k));
            let quantizing = Quantizing::start(&self.model, &self.layers, self.config.quantizer.weight, jobs.collect());
            let capture_started = Instant::now();
            let model = self.base.as_ref().map_or(&*self.model, |b| &b.model);
            let options = self.session_options();
            let capture = if cache.prepare(w, self.workload.as_mut(), model, &options)? {
                capture_started.elapsed()
            } else {
                Duration::ZERO
            };
            summary.phases.capture += capture;
            let built = build.wait()?;
            next = spawn(self, &cache, k);
            let (points, ranges, cut) = self.install_window(built, w, &cache)?;
            let setup = window_started.elapsed();
            summary.phases.sessions += setup - capture;
            let first_time = summary.probe_times.len();
            for probe in probes {
                plain_owed += usize::from(summary.computed > 0 && summary.computed.is_multiple_of(PLAIN_EVERY));
                if plain_owed > 0 && quantizing.is_finished() && next.as_ref().is_none_or(|(_, b)| b.is_finished()) {
                    plain_owed -= 1;
                    plain_pass(plain.as_mut(), &mut summary)?;
                }
                let probe_started = Instant::now();
                let weight_name = self.layers[probe.layer].weight.clone();
                let weight = match (probe.weight, &weight_name) {
                    (Some(form), Some(name)) => {
                        let key = (probe.layer, form);
                        let started = Instant::now();
                        quantizing.wait(key, &mut weights)?;
                        summary.phases.quantize += started.elapsed();
                        weights.get(&key).map(|(w, bytes)| (name.as_str(), w, *bytes))
                    }
                    _ => None,
                };
                let layer_points: Vec<&FakeQuantPoint> = points.iter().filter(|p| p.layer == probe.layer).collect();
                let bias = probe.weight.and_then(|form| biases.get(&(probe.layer, form, probe.step_group)));
                let bias = bias.map(|(name, values)| (name.as_str(), values));
                let at_base = match (&self.base, probe.weight, probe.a_bits) {
                    (Some(base), Some(form), None) => base.holds(&self.layers[probe.layer], form),
                    _ => false,
                };
                let scores = match base_scores {
                    Some(scores) if at_base => scores,
                    _ => {
                        let below = Below { at: cut, window: w, cache: &cache };
                        let (scores, times, cut_runs) = if at_base {
                            self.score(probe, None, None, &[], &ranges, &reference, below)?
                        } else {
                            let quantized = weight.map(|(name, w, _)| (name, w));
                            self.score(probe, quantized, bias, &layer_points, &ranges, &reference, below)?
                        };
                        cache.stats.cut_runs += cut_runs;
                        cache.stats.whole_runs += reference.len() - cut_runs;
                        if at_base {
                            base_scores = Some(scores);
                        }
                        summary.phases.runs += times.runs;
                        summary.phases.image_metrics += times.image_metrics;
                        scores
                    }
                };
                let row = self.row(probe, weight.map_or(0, |(_, _, bytes)| bytes), scores);
                let started = Instant::now();
                journal.append(&row)?;
                summary.phases.journal += started.elapsed();
                if !at_base || summary.at_base == 0 {
                    summary.probe_times.push(probe_started.elapsed());
                }
                summary.computed += 1;
                summary.at_base += usize::from(at_base);
                summary.nonfinite += usize::from(row.nonfinite > 0);
                progress.finished(&row);
            }
            let timed = &mut summary.probe_times[first_time..];
            let share = setup / timed.len().max(1) as u32;
            timed.iter_mut().for_each(|t| *t += share);
        }
        // Passes still owed when the last window ended (its threads were busy until then).
        for _ in 0..plain_owed {
            plain_pass(plain.as_mut(), &mut summary)?;
        }
        summary.probing = started.elapsed();
        summary.cache = cache.stats;
        Ok(summary)
    }

    fn session_options(&self) -> SessionOptions {
        SessionOptions { device: self.device, threads: self.config.generation.threads, ..Default::default() }
    }

    /// Bias correction inside the probes: for every (layer, weight width) the probes quantize and
    /// whose layer has a bias initializer, one pass measures the mean output shift of the
    /// quantized weight (float input); per step group, the bias minus that shift over the group.
    fn corrected_biases(
        &mut self,
        probes: &[&Probe],
        weights: &mut HashMap<(usize, WeightForm), (ArrayD<f32>, u64)>,
    ) -> Result<CorrectedBiases> {
        let view = GraphView::new(self.model.graph());
        let (mut changes, mut keys) = (Vec::new(), Vec::new());
        for probe in probes {
            let layer = &self.layers[probe.layer];
            let (Some(form), Some(weight)) = (probe.weight, layer.weight.as_deref()) else { continue };
            let key = (probe.layer, form);
            let Some(bias) = bias_of(&view, layer) else { continue };
            if keys.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let original = view.initializer(weight).map(tensor_to_f32).transpose()?.unwrap_or_default();
            if let Entry::Vacant(slot) = weights.entry(key) {
                let scheme = &self.config.quantizer.weight;
                slot.insert(fake_quantized_weight(&self.model, layer, scheme, form)?);
            }
            let delta = &weights[&key].0 - &original;
            changes.push(WeightChange { layer: layer.name.clone(), weight: weight.to_string(), delta });
            keys.push((key, bias));
        }
        let options = self.session_options();
        let sums = shift::output_shifts(self.workload.as_mut(), &self.model, &changes, &options)?;
        let mut corrected = HashMap::new();
        for (((layer, form), (name, bias)), sums) in keys.into_iter().zip(sums) {
            for (g, steps) in self.steps.iter().enumerate() {
                let Some(shift) = shift::mean_shift(&sums, steps.clone()).filter(|s| s.len() == bias.len()) else {
                    continue;
                };
                let mut values = bias.clone();
                values.iter_mut().zip(&shift).for_each(|(b, s)| *b -= s);
                corrected.insert((layer, form, g), (name.clone(), values));
            }
        }
        Ok(corrected)
    }

    /// What window `w`'s sessions are built from (on a thread of their own).
    fn window_build(&self, window: &Window, w: usize, cache: &CutCache) -> WindowBuild {
        WindowBuild {
            model: self.base.as_ref().map_or_else(|| Arc::clone(&self.model), |b| Arc::clone(&b.model)),
            float: Arc::clone(&self.model),
            layers: window.layers.iter().map(|&l| (l, self.layers[l].clone())).collect(),
            activations: !self.config.a_bits.is_empty(),
            bos_aware: self.config.bos_aware,
            biases: self.config.bias_correction,
            crossing: cache.crossing(w).map(<[String]>::to_vec),
            whole_too: self.workload.steps() > 1,
            options: self.session_options(),
        }
    }

    /// Makes window `w`'s built sessions the workload's, after calibrating its activation
    /// quantizers. A one-step window built as its cut alone also gets the whole model when the
    /// cache lacks some of the cut's values. Returns the quantizers with the per-step ranges of
    /// the activations they quantize, and which loaded model is the cut.
    fn install_window(
        &mut self,
        built: WindowSessions,
        w: usize,
        cache: &CutCache,
    ) -> Result<(Vec<FakeQuantPoint>, Ranges, Option<usize>)> {
        let ranges = if built.points.is_empty() { HashMap::new() } else { self.calibrate(&built.points)? };
        let (mut sessions, mut cut) = (built.sessions, built.cut);
        if cut == Some(0) && !cache.holds_all(w) {
            sessions.insert(0, Session::new(&built.model, &built.options)?);
            cut = Some(1);
        }
        self.workload.install(DenoiserSessions::from_sessions(sessions, Vec::new())?)?;
        Ok((built.points, ranges, cut))
    }

    /// The cache of the values crossing each window's cut, none where `cache_mb` is 0.
    fn cut_cache(&self, windows: &[Window]) -> CutCache {
        let budget = self.config.cache_mb * 1_000_000;
        let model = self.base.as_ref().map_or(&*self.model, |b| &b.model);
        let crossing = windows
            .iter()
            .map(|window| {
                let nodes: Vec<&str> = window.layers.iter().map(|&l| self.layers[l].name.as_str()).collect();
                (budget > 0).then(|| rewrite::crossing(model, &nodes, &[])).flatten()
            })
            .collect();
        let starts = self.steps.iter().map(|g| g.start).collect();
        CutCache::new(budget, crossing, starts, self.workload.batches())
    }

    /// Per-step ranges of the activations `points` quantize, over a full-precision pass of
    /// every batch, on a session of its own: returning them from the probes' session would
    /// slow every probe down.
    /// Ranges of the quantized activations, keyed by [`range_key`]: a point that keeps the
    /// first token row in float is calibrated on the other rows only (MixDQ: the BOS row's
    /// outliers would otherwise set the range of every token).
    fn calibrate(&mut self, points: &[FakeQuantPoint]) -> Result<HashMap<String, StepRanges>> {
        let mut tensors: Vec<String> = points.iter().map(|p| p.tensor.clone()).collect();
        tensors.sort();
        tensors.dedup();
        let mut ranges: HashMap<String, StepRanges> = HashMap::new();
        let options = self.session_options();
        workload::observe(self.workload.as_mut(), &self.model, &tensors, &options, |tensor, _, step, values| {
            for first_row_float in [false, true] {
                if points.iter().any(|p| p.tensor == tensor && p.first_row_float == first_row_float) {
                    let key = range_key(tensor, first_row_float);
                    let observed = if first_row_float { without_first_row(values.view()) } else { values.view() };
                    ranges.entry(key).or_default().observe(step, observed);
                }
            }
        })?;
        Ok(ranges)
    }

    /// Runs one probe over every batch and compares it with the reference; the time its runs
    /// and image metrics took, and how many batches ran their first quantized step below the
    /// window's cut.
    #[allow(clippy::too_many_arguments)]
    fn score(
        &mut self,
        probe: &Probe,
        weight: Option<(&str, &ArrayD<f32>)>,
        bias: Option<(&str, &ArrayD<f32>)>,
        points: &[&FakeQuantPoint],
        ranges: &HashMap<String, StepRanges>,
        reference: &[Reference],
        below: Below<'_>,
    ) -> Result<(Scores, Phases, usize)> {
        let layer = &self.layers[probe.layer];
        let steps = self.steps[probe.step_group].clone();
        // Activation parameters of every step the probe quantizes.
        let mut act_params: HashMap<usize, Vec<(String, ArrayD<f32>)>> = HashMap::new();
        if let Some(bits) = probe.a_bits {
            for step in steps.clone() {
                let mut params = Vec::new();
                for point in points {
                    let per_step = self.config.quantizer.activation.per_step;
                    let range = ranges
                        .get(&range_key(&point.tensor, point.first_row_float))
                        .map(|r| r.get(step).filter(|_| per_step).unwrap_or_else(|| r.merged()));
                    let quantizer = ActQuantizer::new(bits, range.unwrap_or_default())
                        .map_err(|source| ApplyError::Quant { layer: layer.name.clone(), source })?;
                    let (scale, zero) = quantizer.params();
                    let scalar = |v: f32| ArrayD::from_elem(IxDyn(&[]), v);
                    params.push((point.scale.clone(), scalar(scale)));
                    params.push((point.zero_point.clone(), scalar(f32::from(zero))));
                    params.push((point.qmax.clone(), scalar(((1u32 << bits) - 1) as f32)));
                    params.push((point.on.clone(), scalar(1.0)));
                }
                act_params.insert(step, params);
            }
        }
        let (mut sqnr, mut mse, mut ssim_sum, mut items, mut nonfinite) = (Sqnr::default(), Mse::default(), 0.0, 0, 0);
        let (mut phases, mut cut_runs) = (Phases::default(), 0);
        for (b, fp) in reference.iter().enumerate() {
            let cut = below.at.zip(below.cache.feeds(below.window, b, probe.step_group));
            cut_runs += usize::from(cut.is_some());
            let mut control = ProbeControl {
                reference: &fp.outputs,
                cut,
                steps: steps.clone(),
                weight: weight.map(|(name, w)| (name, w.view())),
                bias: bias.map(|(name, b)| (name, b.view())),
                act_params: &act_params,
                sqnr: &mut sqnr,
                nonfinite: &mut nonfinite,
            };
            let started = Instant::now();
            let images = self.workload.run(b, &mut control)?;
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

    /// The table row of `probe`, whose weight takes `weight_bytes` stored.
    fn row(&self, probe: &Probe, weight_bytes: u64, scores: Scores) -> ProbeRow {
        let (layer, group) = (&self.layers[probe.layer], self.groups[probe.layer]);
        let steps = &self.steps[probe.step_group];
        ProbeRow {
            probe: probe.index as u64,
            layer: layer.info(group),
            weight: probe.weight.unwrap_or(WeightForm::Float),
            a_bits: probe.a_bits.map_or(FLOAT_BITS, u32::from),
            step_group: probe.step_group as u32,
            step_first: steps.start as u32,
            step_last: (steps.end - 1) as u32,
            weight_bytes,
            sqnr_db: scores.sqnr_db,
            ssim: scores.ssim,
            mse: scores.mse,
            psnr_db: scores.psnr_db,
            nonfinite: scores.nonfinite,
        }
    }
}

/// A window's quantized weights, computed on a thread of their own in probe order while the
/// window's sessions are built and its probes run: the quantization (and its clipping search)
/// leaves the critical path, but for the wait of a probe that overtakes it.
struct Quantizing {
    done: mpsc::Receiver<QuantizedJob>,
    worker: std::thread::JoinHandle<()>,
}

/// A (layer, form) quantized: the fake-quantized weight and its stored bytes.
type QuantizedJob = ((usize, WeightForm), std::result::Result<(ArrayD<f32>, u64), ApplyError>);

impl Quantizing {
    fn start(model: &Arc<Model>, layers: &[Layer], scheme: WeightScheme, jobs: Vec<(usize, WeightForm)>) -> Self {
        let (send, done) = mpsc::channel();
        let model = Arc::clone(model);
        let jobs: Vec<((usize, WeightForm), Layer)> = jobs.into_iter().map(|k| (k, layers[k.0].clone())).collect();
        // Detached: once the window is done (or failed) the receiver is gone and the worker
        // stops at its next weight.
        let worker = std::thread::spawn(move || {
            for (key, layer) in jobs {
                if send.send((key, fake_quantized_weight(&model, &layer, &scheme, key.1))).is_err() {
                    return;
                }
            }
        });
        Self { done, worker }
    }

    /// True once every weight is quantized.
    fn is_finished(&self) -> bool {
        self.worker.is_finished()
    }

    /// Waits until `weights` holds `key`, keeping whatever the worker finished before it.
    fn wait(
        &self,
        key: (usize, WeightForm),
        weights: &mut HashMap<(usize, WeightForm), (ArrayD<f32>, u64)>,
    ) -> Result<()> {
        while !weights.contains_key(&key) {
            let (finished, weight) = self.done.recv().map_err(|_| SensitivityError::QuantizerStopped)?;
            weights.insert(finished, weight?);
        }
        Ok(())
    }
}

/// What one probe measured against the reference.
#[derive(Debug, Clone, Copy)]
struct Scores {
    sqnr_db: f64,
    ssim: f64,
    mse: f64,
    psnr_db: f64,
    nonfinite: u64,
}

/// Records the prediction of every step (the reference pass).
#[derive(Debug, Default)]
struct Record {
    outputs: Vec<ArrayD<f32>>,
}

impl StepControl for Record {
    fn step(&mut self, _: usize, step: usize, evaluate: &mut Evaluate<'_>) -> Result<ArrayD<f32>, SampleError> {
        let output = first(evaluate(&[])?, step)?;
        if self.outputs.len() != step {
            return Err(SampleError::Denoiser(format!("step {step} came out of order")));
        }
        self.outputs.push(output.clone());
        Ok(output)
    }
}

/// Where a window's probes may run below its cut: the loaded model that is the cut, and the
/// cache of what crosses it.
#[derive(Clone, Copy)]
struct Below<'a> {
    at: Option<usize>,
    window: usize,
    cache: &'a CutCache,
}

/// One probe's run: before its step group the stored FP predictions stand in for the network
/// (the inputs are the FP ones, so the outputs would be too); during the group the layer is
/// quantized, its first step below the window's cut where the cut is loaded and fed; after it
/// the network runs in float on the drifted inputs.
struct ProbeControl<'a> {
    reference: &'a [ArrayD<f32>],
    /// The loaded model that is the window's cut, and the values crossing it at the group's
    /// first step.
    cut: Option<(usize, Feeds<'a>)>,
    steps: Range<usize>,
    weight: Option<(&'a str, ArrayViewD<'a, f32>)>,
    /// The layer's bias corrected for the quantized weight's mean output shift.
    bias: Option<(&'a str, ArrayViewD<'a, f32>)>,
    act_params: &'a HashMap<usize, Vec<(String, ArrayD<f32>)>>,
    sqnr: &'a mut Sqnr,
    nonfinite: &'a mut u64,
}

impl StepControl for ProbeControl<'_> {
    fn step(&mut self, _: usize, step: usize, evaluate: &mut Evaluate<'_>) -> Result<ArrayD<f32>, SampleError> {
        let fp =
            self.reference.get(step).ok_or_else(|| SampleError::Denoiser(format!("no reference for step {step}")))?;
        if step < self.steps.start {
            self.sqnr.add(fp.view(), fp.view());
            return Ok(fp.clone());
        }
        let mut overrides: Vec<(&str, ArrayViewD<'_, f32>)> = Vec::new();
        if self.steps.contains(&step) {
            overrides.extend(self.weight.as_ref().map(|(name, w)| (*name, w.view())));
            overrides.extend(self.bias.as_ref().map(|(name, b)| (*name, b.view())));
            if let Some(params) = self.act_params.get(&step) {
                overrides.extend(params.iter().map(|(name, v)| (name.as_str(), v.view())));
            }
        }
        if let Some((_, fed)) = self.cut.as_ref().filter(|_| step == self.steps.start) {
            overrides.extend(fed.iter().map(|(name, v)| (*name, v.view())));
        }
        let output = first(evaluate(&overrides)?, step)?;
        self.sqnr.add(fp.view(), output.view());
        *self.nonfinite += count_nonfinite(output.view());
        Ok(output)
    }

    fn model(&self, _: usize, step: usize) -> Option<usize> {
        self.cut.as_ref().filter(|_| step == self.steps.start).map(|(at, _)| *at)
    }
}

fn first(mut outputs: Vec<ArrayD<f32>>, step: usize) -> Result<ArrayD<f32>, SampleError> {
    if outputs.is_empty() {
        return Err(SampleError::Denoiser(format!("step {step}: the denoiser returned nothing")));
    }
    Ok(outputs.swap_remove(0))
}

/// The layers to probe, in graph order: those the config names (by layer name or role), else
/// every weight layer, and every activation product when activations are probed.
fn select(layers: &[Layer], config: &SensitivityConfig) -> Result<Vec<usize>> {
    let probes_acts = !config.a_bits.is_empty();
    if config.layers.is_empty() {
        return Ok((0..layers.len()).filter(|&i| layers[i].kind == LayerKind::Weight || probes_acts).collect());
    }
    let mut chosen = HashSet::new();
    for entry in &config.layers {
        let role = entry.parse::<Role>().ok();
        let matched: Vec<usize> =
            (0..layers.len()).filter(|&i| layers[i].is_named(entry) || Some(layers[i].role) == role).collect();
        if matched.is_empty() && role.is_none() {
            return Err(SensitivityError::config(
                "layers",
                format!("'{entry}' is neither a layer of the model nor a role (see `bitsearch inspect`)"),
            ));
        }
        if !probes_acts && matched.iter().any(|&i| layers[i].kind == LayerKind::ActMatMul && layers[i].is_named(entry))
        {
            return Err(SensitivityError::config(
                "layers",
                format!("'{entry}' has no weights: probing it needs activation bits (a_bits)"),
            ));
        }
        chosen.extend(matched.into_iter().filter(|&i| layers[i].kind == LayerKind::Weight || probes_acts));
    }
    let mut chosen: Vec<usize> = chosen.into_iter().collect();
    chosen.sort_unstable();
    Ok(chosen)
}

/// MixDQ's grouping from the roles, with the config's overrides (layer names before roles).
fn metric_groups(layers: &[Layer], config: &SensitivityConfig) -> Result<Vec<MetricGroup>> {
    for key in config.groups.keys() {
        if key.parse::<Role>().is_err() && !layers.iter().any(|l| l.is_named(key)) {
            return Err(SensitivityError::config(
                format!("groups.{key}"),
                "is neither a layer of the model nor a role (see `bitsearch inspect`)",
            ));
        }
    }
    Ok(layers
        .iter()
        .map(|l| {
            config
                .groups
                .iter()
                .find(|(key, _)| l.is_named(key))
                .map(|(_, group)| group)
                .or_else(|| config.groups.get(l.role.as_str()))
                .copied()
                .unwrap_or_else(|| l.role.metric_group())
        })
        .collect())
}

/// Which metric drives which probed layers, for the table and the user.
fn describe_groups(layers: &[Layer], selected: &[usize], groups: &[MetricGroup]) -> String {
    let count = |g: MetricGroup| selected.iter().filter(|&&i| groups[i] == g).count();
    let text = !layers.iter().any(|l| matches!(l.role, Role::CrossAttnK | Role::CrossAttnV));
    let mut note = format!(
        "content group (scored by SSIM of the final image): {} layers; quality group (scored by SQNR of the denoiser \
         output): {} layers",
        count(MetricGroup::Content),
        count(MetricGroup::Quality)
    );
    if text {
        note.push_str(
            "; the model has no text conditioning, so it has no cross-attention layers and only feed-forward layers \
             can be content layers",
        );
    }
    note
}

/// What to do with the results of an earlier run at the same output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Stop with an error that suggests the other two.
    Refuse,
    /// Continue the run its journal records, skipping every finished probe.
    Resume,
    /// Start over.
    Overwrite,
}

/// Runs `run` with its journal beside `out`, then writes the table of every probe the journal
/// holds to `out`.
pub fn run_to_table(
    run: &mut SensitivityRun,
    out: &Path,
    existing: Existing,
    progress: &mut dyn Progress,
) -> Result<(Summary, SensitivityTable)> {
    let path = journal_path(out);
    let (mut journal, done) = match existing {
        Existing::Refuse if path.exists() || out.exists() => {
            return Err(SensitivityError::table(
                out,
                "already exists: pass --resume to continue that run, or --overwrite to start over",
            ));
        }
        Existing::Resume if path.exists() => Journal::resume(&path, run.meta())?,
        Existing::Resume if out.exists() => {
            return Err(SensitivityError::table(
                &path,
                "is missing, so the run that wrote the table cannot be resumed; pass --overwrite to start over",
            ));
        }
        _ => (Journal::create(&path, run.meta())?, Vec::new()),
    };
    let done: HashSet<u64> = done.iter().map(|r| r.probe).collect();
    let summary = run.run(&mut journal, &done, progress)?;
    journal.sync()?;
    let (meta, mut rows) = Journal::contents(&path)?;
    rows.sort_by_key(|r| r.probe);
    let table = SensitivityTable { meta, rows };
    table.write(out)?;
    Ok((summary, table))
}
