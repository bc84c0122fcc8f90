//! The engine: one full-precision reference pass, then the probes window by window. A window's
//! session makes only its own layers' weights (and fake quantizers) overridable, so a probe is
//! one pipeline run with one override, no session build, and the FP outputs are reused. The
//! next window's sessions are built, and this window's weights quantized, on threads of their
//! own while the probes run.

use crate::base::Base;
use crate::bias::{BiasCorrection, CorrectedBiases};
use crate::config::{SensitivityConfig, in_generation};
use crate::control::{ActParams, Below};
use crate::cut::CutCache;
use crate::error::{Result, SensitivityError};
use crate::journal::Journal;
use crate::plain::{self, PlainPasses, Reference};
use crate::probes::{Probe, Window, plan, shard, step_groups};
use crate::score::{self, Scores, Trial};
use crate::selection::{describe_groups, metric_groups, select};
use crate::summary::{Progress, Summary};
use crate::weights::{Quantizing, Weights};
use crate::window::{Pending, WindowBuild, WindowSessions};
use bitsearch_onnx::rewrite::{self, FakeQuantPoint};
use bitsearch_onnx::{GraphView, Model};
use bitsearch_pipeline::sessions::DenoiserSessions;
use bitsearch_pipeline::workload::moments::{Wanted, second_moments};
use bitsearch_pipeline::workload::{self, Workload};
use bitsearch_quant::{StepRanges, fake_quantized_weight, range_key, without_first_row};
use bitsearch_records::table::TABLE_FORMAT;
use bitsearch_records::{ProbeRow, RunConfig, RunMeta, Shard};
use bitsearch_runtime::{ActiveDevice, Device, Session, SessionOptions, layers_with_costs};
use bitsearch_types::{Component, FLOAT_BITS, Layer, MetricGroup, Rounding, WeightFormat};
use ndarray::ArrayD;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Activation ranges by [`range_key`].
type Ranges = HashMap<String, StepRanges>;

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
    /// The input moment each layer's GPTQ needs; None where GPTQ does not apply.
    moments: Vec<Option<Wanted>>,
    groups: Vec<MetricGroup>,
    windows: Vec<Window>,
    steps: Vec<Range<usize>>,
    meta: RunMeta,
}

/// What the probing carries from window to window.
struct Probing<'a> {
    journal: &'a mut Journal,
    progress: &'a mut dyn Progress,
    summary: Summary,
    reference: Vec<Reference>,
    cache: CutCache,
    plain: PlainPasses,
    /// Every probe of a layer at its base form measures the base itself: one pass for all.
    base_scores: Option<Scores>,
}

/// A window set up for its probes.
struct Installed {
    w: usize,
    /// Its quantized weights so far (those the bias correction needed first, then what the
    /// worker delivered).
    weights: Weights,
    quantizing: Quantizing,
    biases: CorrectedBiases,
    /// The fake quantizers on its layers' inputs, and the ranges of what they quantize.
    points: Vec<FakeQuantPoint>,
    ranges: Ranges,
    /// Which loaded model is the window's cut.
    cut: Option<usize>,
    /// The time it took to set up: sessions, calibration, bias shifts, capture.
    setup: Duration,
}

impl Installed {
    /// The corrected bias of `probe`'s layer for its weight form and step group, if any.
    fn bias(&self, probe: &Probe) -> Option<(&str, &ArrayD<f32>)> {
        let (name, values) = self.biases.get(&(probe.layer, probe.weight?, probe.step_group))?;
        Some((name.as_str(), values))
    }
}

impl SensitivityRun {
    /// Opens the model, finds its layers and plans the probes of `shard`.
    pub fn open(model: &Path, config: SensitivityConfig, shard_of: Shard) -> Result<Self> {
        config.validate()?;
        let workload = workload::open(model, &config.generation).map_err(in_generation)?;
        let denoiser = workload.model()?;
        // Spatial sizes the config.json beside a lone denoiser gives, as the workload took them.
        let symbols: Vec<_> = denoiser.graph().input.iter().map(bitsearch_onnx::declared_symbols).collect();
        let given = config.generation.dims.clone();
        let dims = workload::config_dims(&workload::denoiser_file(model), &symbols, given).map_err(in_generation)?.0;
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
        let view = GraphView::new(denoiser.graph());
        let moments: Vec<Option<Wanted>> = layers.iter().map(|l| Wanted::of(&view, l)).collect();
        let unfolds: Vec<bool> = moments.iter().map(Option::is_some).collect();
        let all = plan(&layers, &selected, &unfolds, &config);
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
                .and_then(RunConfig::from_value)
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
            moments,
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
        let mut summary = Summary { skipped: total - todo, ..Summary::default() };
        if todo == 0 {
            return Ok(summary);
        }
        progress.stage("full-precision reference");
        let reference = plain::reference(self.workload.as_mut(), &mut summary)?;
        let plain = PlainPasses::open(&self.path, &self.config.generation)?;
        let started = Instant::now();
        let cache = self.cut_cache();
        let mut probing = Probing { journal, progress, summary, reference, cache, plain, base_scores: None };
        let todo: Vec<usize> =
            (0..self.windows.len()).filter(|&w| self.windows[w].probes.iter().any(|p| pending(&p))).collect();
        let mut todo = todo.into_iter();
        let mut next = self.spawn(todo.next(), &probing.cache);
        while let Some((w, build)) = next {
            let probes: Vec<Probe> = self.windows[w].probes.iter().filter(pending).copied().collect();
            let (mut window, upcoming) = self.open_window(w, build, &probes, todo.next(), &mut probing)?;
            let first_time = probing.summary.probe_times.len();
            for probe in &probes {
                let idle = || window.quantizing.is_finished() && upcoming.as_ref().is_none_or(|(_, b)| b.is_finished());
                probing.plain.before_probe(&mut probing.summary, idle)?;
                self.probe(probe, &mut window, &mut probing)?;
            }
            // The window's setup is shared among its probes' times.
            let timed = &mut probing.summary.probe_times[first_time..];
            let share = window.setup / timed.len().max(1) as u32;
            timed.iter_mut().for_each(|t| *t += share);
            next = upcoming;
        }
        let Probing { mut summary, cache, plain, .. } = probing;
        plain.finish(&mut summary)?;
        summary.probing = started.elapsed();
        summary.cache = cache.stats;
        Ok(summary)
    }

    /// Starts building window `w`'s sessions on a thread of their own: the next window's build
    /// while this one's probes run.
    fn spawn(&self, w: Option<usize>, cache: &CutCache) -> Option<(usize, Pending)> {
        w.map(|w| (w, self.window_build(w, cache).spawn()))
    }

    /// Sets window `w` up for its `probes`: its weights quantizing (on a thread, but for those
    /// the bias correction needs first), the values crossing its cut captured, its sessions
    /// (`build`) waited for and installed. Window `upcoming`'s sessions start building once
    /// `build` is done; they come back with the window.
    fn open_window(
        &mut self,
        w: usize,
        build: Pending,
        probes: &[Probe],
        upcoming: Option<usize>,
        probing: &mut Probing<'_>,
    ) -> Result<(Installed, Option<(usize, Pending)>)> {
        let layers = self.windows[w].layers.len();
        probing.progress.stage(&format!("window {}/{} ({layers} layers)", w + 1, self.windows.len()));
        let window_started = Instant::now();
        let mut weights = Weights::new();
        let gptq_started = Instant::now();
        self.round_gptq(probes, &mut weights)?;
        let gptq = gptq_started.elapsed();
        probing.summary.phases.gptq += gptq;
        let biases = if self.config.bias_correction {
            let correction = BiasCorrection {
                model: &self.model,
                layers: &self.layers,
                scheme: &self.config.quantizer.weight,
                steps: &self.steps,
                options: self.session_options(),
            };
            correction.biases(self.workload.as_mut(), probes, &mut weights)?
        } else {
            HashMap::new()
        };
        let jobs = probes.iter().filter_map(|p| Some((p.layer, p.weight?))).filter(|k| !weights.contains_key(k));
        let quantizing = Quantizing::start(&self.model, &self.layers, self.config.quantizer.weight, jobs.collect());
        let capture_started = Instant::now();
        let model = self.base.as_ref().map_or(&*self.model, |b| &b.model);
        let options = self.session_options();
        let capture = if probing.cache.prepare(w, self.workload.as_mut(), model, &options)? {
            capture_started.elapsed()
        } else {
            Duration::ZERO
        };
        probing.summary.phases.capture += capture;
        let built = build.wait()?;
        let next = self.spawn(upcoming, &probing.cache);
        let (points, ranges, cut) = self.install_window(built, w, &probing.cache)?;
        let setup = window_started.elapsed();
        probing.summary.phases.sessions += setup - capture - gptq;
        Ok((Installed { w, weights, quantizing, biases, points, ranges, cut, setup }, next))
    }

    /// The GPTQ-rounded weights of `probes`, into `weights` before anything else needs them:
    /// one pass of the float model (whatever the base) measures their layers' input moments on
    /// the run's items, as `quantize` does on the same items.
    fn round_gptq(&mut self, probes: &[Probe], weights: &mut Weights) -> Result<()> {
        let mut jobs: Vec<(usize, WeightFormat)> = probes
            .iter()
            .filter_map(|p| Some((p.layer, p.weight?)))
            .filter(|(_, form)| form.rounding() == Rounding::Gptq)
            .collect();
        jobs.dedup();
        let mut layers: Vec<usize> = jobs.iter().map(|&(layer, _)| layer).collect();
        layers.dedup();
        if layers.is_empty() {
            return Ok(());
        }
        let wanted = layers
            .iter()
            .map(|&l| {
                self.moments[l].clone().ok_or_else(|| {
                    SensitivityError::config("rounding", format!("layer '{}' takes no GPTQ", self.layers[l].name))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let options = self.session_options();
        let (model, all, scheme) = (&*self.model, &self.layers, &self.config.quantizer.weight);
        second_moments(self.workload.as_mut(), model, &wanted, &options, |i, moment| {
            for &(l, form) in jobs.iter().filter(|(l, _)| *l == layers[i]) {
                weights.insert((l, form), fake_quantized_weight(model, &all[l], scheme, form, Some(moment))?);
            }
            Ok::<(), SensitivityError>(())
        })
    }

    /// Measures `probe` in `window`, appends its row to the journal and counts it.
    fn probe(&mut self, probe: &Probe, window: &mut Installed, probing: &mut Probing<'_>) -> Result<()> {
        let probe_started = Instant::now();
        let weight_name = self.layers[probe.layer].weight.clone();
        let weight = match (probe.weight, &weight_name) {
            (Some(form), Some(name)) => {
                let key = (probe.layer, form);
                let started = Instant::now();
                window.quantizing.wait(key, &mut window.weights)?;
                probing.summary.phases.quantize += started.elapsed();
                window.weights.get(&key).map(|(w, bytes)| (name.as_str(), w, *bytes))
            }
            _ => None,
        };
        let at_base = match (&self.base, probe.weight, probe.a_bits) {
            (Some(base), Some(form), None) => base.holds(&self.layers[probe.layer], form),
            _ => false,
        };
        let scores = match probing.base_scores {
            Some(scores) if at_base => scores,
            _ => self.measure(probe, weight.map(|(name, w, _)| (name, w)), at_base, window, probing)?,
        };
        let row = self.row(probe, weight.map_or(0, |(_, _, bytes)| bytes), scores);
        let started = Instant::now();
        probing.journal.append(&row)?;
        let summary = &mut probing.summary;
        summary.phases.journal += started.elapsed();
        if !at_base || summary.at_base == 0 {
            summary.probe_times.push(probe_started.elapsed());
        }
        summary.computed += 1;
        summary.at_base += usize::from(at_base);
        summary.nonfinite += usize::from(row.nonfinite > 0);
        probing.progress.finished(&row);
        Ok(())
    }

    /// Scores `probe` with its quantized `weight`, its corrected bias and its activation
    /// quantizers; a probe `at_base` runs the base itself, and its scores stand for every other.
    fn measure(
        &mut self,
        probe: &Probe,
        weight: Option<(&str, &ArrayD<f32>)>,
        at_base: bool,
        window: &Installed,
        probing: &mut Probing<'_>,
    ) -> Result<Scores> {
        let steps = self.steps[probe.step_group].clone();
        let (weight, bias, act_params) = match probe.a_bits {
            _ if at_base => (None, None, ActParams::new()),
            None => (weight, window.bias(probe), ActParams::new()),
            Some(bits) => {
                let points: Vec<&FakeQuantPoint> = window.points.iter().filter(|p| p.layer == probe.layer).collect();
                let per_step = self.config.quantizer.activation.per_step;
                let layer = &self.layers[probe.layer].name;
                let params = score::act_params(bits, &points, &window.ranges, steps.clone(), per_step, layer)?;
                (weight, window.bias(probe), params)
            }
        };
        let below = Below { at: window.cut, window: window.w, cache: &probing.cache };
        let step_group = probe.step_group;
        let trial = Trial { step_group, steps, weight, bias, act_params, reference: &probing.reference, below };
        let (scores, times, cut_runs) = score::score(self.workload.as_mut(), &trial)?;
        probing.cache.stats.cut_runs += cut_runs;
        probing.cache.stats.whole_runs += probing.reference.len() - cut_runs;
        probing.summary.phases.runs += times.runs;
        probing.summary.phases.image_metrics += times.image_metrics;
        if at_base {
            probing.base_scores = Some(scores);
        }
        Ok(scores)
    }

    fn session_options(&self) -> SessionOptions {
        SessionOptions { device: self.device, ..SessionOptions::for_workload(&self.config.generation) }
    }

    /// What window `w`'s sessions are built from (on a thread of their own).
    fn window_build(&self, w: usize, cache: &CutCache) -> WindowBuild {
        WindowBuild {
            model: self.base.as_ref().map_or_else(|| Arc::clone(&self.model), |b| Arc::clone(&b.model)),
            float: Arc::clone(&self.model),
            layers: self.windows[w].layers.iter().map(|&l| (l, self.layers[l].clone())).collect(),
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
    fn cut_cache(&self) -> CutCache {
        let budget = self.config.cache_mb * 1_000_000;
        let model = self.base.as_ref().map_or(&*self.model, |b| &b.model);
        let crossing = self
            .windows
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
    fn calibrate(&mut self, points: &[FakeQuantPoint]) -> Result<Ranges> {
        let mut tensors: Vec<String> = points.iter().map(|p| p.tensor.clone()).collect();
        tensors.sort();
        tensors.dedup();
        let mut ranges = Ranges::new();
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

    /// The table row of `probe`, whose weight takes `weight_bytes` stored.
    fn row(&self, probe: &Probe, weight_bytes: u64, scores: Scores) -> ProbeRow {
        let (layer, group) = (&self.layers[probe.layer], self.groups[probe.layer]);
        let steps = &self.steps[probe.step_group];
        ProbeRow {
            probe: probe.index as u64,
            layer: layer.info(group),
            weight: probe.weight.unwrap_or(WeightFormat::Float),
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
