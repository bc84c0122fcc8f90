//! Sensitivity runs on graphs the tests build: monotonic error in weight bits, equality with a
//! computation done by hand, shards, NaN probes, text pipelines and config errors.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_metrics::ssim_per_item;
use bitsearch_onnx::builder::Dim;
use bitsearch_onnx::{DataType, GraphBuilder, Model, tensor_from_f32, tensor_to_f32};
use bitsearch_pipeline::denoiser::{DenoiserConfig, DenoiserPipeline, Network};
use bitsearch_pipeline::noise::{NoiseSource, batch_noise};
use bitsearch_pipeline::sampler::{self, Denoiser, SampleError};
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_quant::WeightQuantizer;
use bitsearch_records::{ProbeRow, SensitivityTable, Shard, merge, monotonicity};
use bitsearch_runtime::{Device, Session, SessionOptions};
use bitsearch_sensitivity::{Existing, PLAIN_EVERY, SensitivityConfig, SensitivityRun, Silent, run_to_table};
use bitsearch_types::quantizer::{ClipSearch, WeightScheme};
use bitsearch_types::{MetricGroup, QuantizerSpec, Role};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

fn save(model: &Model, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    model.save(&path, bitsearch_onnx::ExternalData::Inline).unwrap();
    path
}

/// One CPU thread, min-max clipping, and `generation` on top of that.
fn cpu_config(generation: WorkloadSpec) -> SensitivityConfig {
    let weight = WeightScheme { clipping: ClipSearch::Minmax, ..Default::default() };
    SensitivityConfig {
        quantizer: QuantizerSpec { weight, ..Default::default() },
        generation: WorkloadSpec { device: Device::Cpu, threads: Some(1), ..generation },
        ..Default::default()
    }
}

fn steps(steps: usize) -> WorkloadSpec {
    WorkloadSpec { steps: Some(steps), ..Default::default() }
}

fn measure(model: &Path, config: SensitivityConfig, shard: Shard, out: &Path) -> SensitivityTable {
    let mut run = SensitivityRun::open(model, config, shard).unwrap();
    run_to_table(&mut run, out, Existing::Overwrite, &mut Silent).unwrap().1
}

fn find<'a>(rows: &'a [ProbeRow], layer: &str, w_bits: u32, step_group: u32) -> &'a ProbeRow {
    rows.iter()
        .find(|r| r.layer.name == layer && r.weight.bits() == w_bits && r.step_group == step_group)
        .unwrap_or_else(|| panic!("no row for {layer} W{w_bits} group {step_group}"))
}

#[test]
fn error_grows_as_weight_bits_fall_on_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let model = save(&bitsearch_fixtures::attention_unet(false), dir.path(), "unet.onnx");
    let generation = WorkloadSpec { seeds: vec![0, 1], ..steps(4) };
    let config = SensitivityConfig { w_bits: vec![2, 4, 8], window: 4, ..cpu_config(generation) };
    let table = measure(&model, config, Shard::WHOLE, &dir.path().join("s.parquet"));
    let layers: std::collections::BTreeSet<&str> = table.rows.iter().map(|r| r.layer.name.as_str()).collect();
    assert_eq!(table.rows.len(), 3 * layers.len());
    let m = monotonicity(&table.rows);
    assert_eq!(m.checked, layers.len());
    assert!(m.sqnr_exceptions.is_empty(), "SQNR not monotonic for {:?}", m.sqnr_exceptions);
    assert!(m.ssim_exceptions.is_empty(), "SSIM not monotonic for {:?}", m.ssim_exceptions);
    // Strictly worse at 2 bits than at 8 on every layer: the probes really change the weights.
    for layer in layers {
        assert!(find(&table.rows, layer, 2, 0).sqnr_db < find(&table.rows, layer, 8, 0).sqnr_db, "{layer}");
    }
}

/// The speed record of a run: plain passes among the probes (one every PLAIN_EVERY), one time
/// per probe with the windows' builds shared out, and a ratio of their medians.
#[test]
fn plain_passes_are_timed_among_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let model = save(&bitsearch_fixtures::attention_unet(false), dir.path(), "unet.onnx");
    let config = SensitivityConfig { w_bits: vec![2, 3, 4, 8], step_groups: 2, window: 4, ..cpu_config(steps(2)) };
    let mut run = SensitivityRun::open(&model, config, Shard::WHOLE).unwrap();
    let (summary, table) =
        run_to_table(&mut run, &dir.path().join("s.parquet"), Existing::Overwrite, &mut Silent).unwrap();
    let n = summary.computed;
    assert!(n > 2 * PLAIN_EVERY, "{n} probes");
    assert_eq!(n, table.rows.len());
    assert_eq!(summary.plain_passes.len(), 3 + (n - 1) / PLAIN_EVERY);
    assert_eq!(summary.probe_times.len(), n);
    let timed: std::time::Duration = summary.probe_times.iter().sum();
    assert!(timed <= summary.probing, "{timed:?} of {:?}", summary.probing);
    // The phases are parts of the probing time, and every phase was timed.
    let phases: std::time::Duration = summary.phases.named().iter().map(|(_, t)| *t).sum();
    assert!(phases <= summary.probing, "{phases:?} of {:?}", summary.probing);
    assert!(summary.phases.named().iter().all(|(_, t)| !t.is_zero()), "{:?}", summary.phases);
    let ratio = summary.probe_to_plain_ratio();
    assert!(ratio.is_finite() && ratio > 0.0, "{ratio}");
}

/// The table of `config` run on the whole model (cache 0) and below the windows' cuts, row by
/// row within the float floor, and what the cache did.
fn below_the_cut_equals_the_whole_model(config: SensitivityConfig) -> bitsearch_sensitivity::CacheStats {
    let dir = tempfile::tempdir().unwrap();
    let model = save(&bitsearch_fixtures::attention_unet(false), dir.path(), "unet.onnx");
    let run = |config: SensitivityConfig, name: &str| {
        let mut run = SensitivityRun::open(&model, config, Shard::WHOLE).unwrap();
        run_to_table(&mut run, &dir.path().join(name), Existing::Overwrite, &mut Silent).unwrap()
    };
    let (whole_summary, whole) = run(SensitivityConfig { cache_mb: 0, ..config.clone() }, "whole.parquet");
    assert_eq!((whole_summary.cache.cut_runs, whole_summary.cache.captures), (0, 0));
    let (summary, cut) = run(config, "cut.parquet");
    assert_eq!(cut.rows.len(), whole.rows.len());
    for (a, b) in whole.rows.iter().zip(&cut.rows) {
        let what = format!("{} W{} A{} group {}", a.layer.name, a.weight.bits(), a.a_bits, a.step_group);
        assert_eq!((a.probe, a.weight_bytes, a.nonfinite), (b.probe, b.weight_bytes, b.nonfinite), "{what}");
        assert!(a.sqnr_db.is_finite() && a.sqnr_db < 80.0, "{what}: {} dB is not a real probe", a.sqnr_db);
        assert!((a.sqnr_db - b.sqnr_db).abs() < 1e-4, "{what}: SQNR {} vs {}", a.sqnr_db, b.sqnr_db);
        assert!((a.psnr_db - b.psnr_db).abs() < 1e-4, "{what}: PSNR {} vs {}", a.psnr_db, b.psnr_db);
        assert!((a.ssim - b.ssim).abs() < 1e-7, "{what}: SSIM {} vs {}", a.ssim, b.ssim);
    }
    assert!(summary.cache.peak <= summary.cache.budget, "{:?}", summary.cache);
    summary.cache
}

#[test]
fn probes_below_the_cut_equal_probes_of_the_whole_model() {
    // One step: every probe is one run below its window's cut.
    let generation = WorkloadSpec { seeds: vec![0, 1, 2], batch: 2, ..steps(1) };
    let config = SensitivityConfig { w_bits: vec![2, 4], window: 3, ..cpu_config(generation) };
    let stats = below_the_cut_equals_the_whole_model(config.clone());
    assert_eq!((stats.whole_runs, stats.captures), (0, 1), "{stats:?}");
    assert!(stats.cut_runs > 0 && stats.peak > 0);
    // Step groups, activation probes and bias correction: the first step of each group below the cut.
    let generation = WorkloadSpec { seeds: vec![0, 1], ..steps(4) };
    let config = SensitivityConfig {
        w_bits: vec![4],
        a_bits: vec![6],
        step_groups: 2,
        bias_correction: true,
        window: 4,
        ..cpu_config(generation)
    };
    let stats = below_the_cut_equals_the_whole_model(config);
    assert!(stats.cut_runs > 0 && stats.whole_runs == 0, "{stats:?}");
}

#[test]
fn a_budget_too_small_for_every_batch_runs_the_rest_on_the_whole_model() {
    // The values crossing a cut of this UNet take a few kB per batch: 1 MB holds those of 40
    // batches for some windows only, so later windows capture again, and what still does not
    // fit runs on the whole model.
    let generation = WorkloadSpec { seeds: (0..40).collect(), batch: 1, ..steps(1) };
    let config = SensitivityConfig { w_bits: vec![4], window: 2, cache_mb: 1, ..cpu_config(generation) };
    let stats = below_the_cut_equals_the_whole_model(config);
    assert!(stats.cut_runs > 0 && stats.whole_runs > 0 && stats.captures > 1, "{stats:?}");
}

/// Runs the DDIM pipeline by hand: the network of `fp` outside `quantized_steps`, the one of
/// `quantized` inside; returns every step's prediction and the final samples.
fn by_hand(
    fp: &Model,
    quantized: &Model,
    steps: usize,
    quantized_steps: std::ops::Range<usize>,
    seeds: &[u64],
) -> (Vec<ArrayD<f32>>, ArrayD<f32>) {
    let options = SessionOptions { device: Device::Cpu, threads: Some(1), ..Default::default() };
    let mut sessions = [Session::new(fp, &options).unwrap(), Session::new(quantized, &options).unwrap()];
    let pipeline = DenoiserPipeline::new(Session::new(fp, &options).unwrap(), &DenoiserConfig::default()).unwrap();
    let spec = pipeline.spec().clone();
    let settings = spec.settings(spec.default_sampler(), steps, 0.0);

    struct Switching<'a> {
        sessions: &'a mut [Session; 2],
        spec: &'a bitsearch_pipeline::denoiser::DenoiserSpec,
        quantized_steps: std::ops::Range<usize>,
        outputs: Vec<ArrayD<f32>>,
        batch: usize,
    }
    impl Denoiser for Switching<'_> {
        fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
            let session = &mut self.sessions[usize::from(self.quantized_steps.contains(&step))];
            let out = Network::new(session, self.spec, self.batch).eval(step, x, t)?;
            self.outputs.push(out.clone());
            Ok(out)
        }
    }
    let mut denoiser =
        Switching { sessions: &mut sessions, spec: &spec, quantized_steps, outputs: Vec::new(), batch: seeds.len() };
    let images =
        sampler::sample(&settings, &mut denoiser, batch_noise(&spec.item_shape, seeds), &mut NoiseSource::new(seeds))
            .unwrap();
    (denoiser.outputs, images)
}

#[test]
fn a_probe_equals_quantizing_the_weight_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let fp = bitsearch_fixtures::attention_unet(false);
    let path = save(&fp, dir.path(), "unet.onnx");
    let (steps, seeds) = (4, vec![3u64, 5]);
    let config = SensitivityConfig {
        w_bits: vec![4],
        step_groups: 2,
        layers: vec!["unet/ff.fc1".into()],
        quantizer: QuantizerSpec::default(),
        ..cpu_config(WorkloadSpec { steps: Some(steps), seeds: seeds.clone(), ..Default::default() })
    };
    let quantizer = WeightQuantizer::new(&config.quantizer.weight, 4, 1);
    let table = measure(&path, config, Shard::WHOLE, &dir.path().join("s.parquet"));
    assert_eq!(table.rows.len(), 2);

    // The weight quantized here, written into a copy of the model, run without bitsearch's engine.
    let mut quantized = fp.clone();
    let weight = quantized.graph_mut().initializer.iter_mut().find(|t| t.name() == "ff.fc1.weight").unwrap();
    let fq = quantizer.fake_quantize(tensor_to_f32(weight).unwrap().view()).unwrap();
    *weight = tensor_from_f32("ff.fc1.weight", &fq, DataType::F32);
    let (fp_outputs, reference) = by_hand(&fp, &fp, steps, 0..0, &seeds);
    for (group, range) in [(0u32, 0..2), (1, 2..4)] {
        let (outputs, images) = by_hand(&fp, &quantized, steps, range, &seeds);
        let (signal, noise) = fp_outputs.iter().zip(&outputs).fold((0.0f64, 0.0f64), |(s, n), (y, q)| {
            let s = s + y.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
            (s, n + y.iter().zip(q.iter()).map(|(&a, &b)| (f64::from(b) - f64::from(a)).powi(2)).sum::<f64>())
        });
        let sqnr = 10.0 * (signal / noise).log10();
        let ssim: Vec<f64> = ssim_per_item(reference.view(), images.view());
        let ssim = ssim.iter().sum::<f64>() / ssim.len() as f64;
        let row = find(&table.rows, "ff.fc1", 4, group);
        assert!((row.sqnr_db - sqnr).abs() < 1e-3, "group {group}: SQNR {} vs by hand {sqnr}", row.sqnr_db);
        assert!((row.ssim - ssim).abs() < 1e-3, "group {group}: SSIM {} vs by hand {ssim}", row.ssim);
        assert!(row.sqnr_db.is_finite() && row.ssim < 1.0);
    }
}

#[test]
fn shards_merged_equal_the_unsharded_table() {
    let dir = tempfile::tempdir().unwrap();
    let model = save(&bitsearch_fixtures::attention_unet(false), dir.path(), "unet.onnx");
    let config = SensitivityConfig { window: 3, ..cpu_config(steps(2)) };
    let whole = measure(&model, config.clone(), Shard::WHOLE, &dir.path().join("whole.parquet"));
    let shards: Vec<(PathBuf, SensitivityTable)> = (0..2)
        .map(|i| {
            let path = dir.path().join(format!("shard{i}.parquet"));
            (path.clone(), measure(&model, config.clone(), Shard { index: i, count: 2 }, &path))
        })
        .collect();
    assert!(shards.iter().all(|(_, t)| !t.rows.is_empty() && t.rows.len() < whole.rows.len()));
    let merged = merge(shards).unwrap();
    assert_eq!(merged, whole);
}

/// `y = x / (x·W1 − x·W2)` with W1 = W2 but for one small entry that 4-bit rounding zeroes: the
/// 4-bit probe of `w1` divides by zero, the 8-bit one does not.
fn fragile_denoiser() -> Model {
    let mut b = GraphBuilder::new("fragile");
    let x = b.input("sample", DataType::F32, &[Dim::sym("batch"), Dim::Fixed(8)]);
    b.input("timestep", DataType::F32, &[Dim::sym("batch")]);
    let mut w = vec![0.0f32; 8];
    w[0] = 1.0;
    let w2 = b.initializer("w2", ArrayD::from_shape_vec(IxDyn(&[8, 1]), w.clone()).unwrap());
    w[1] = 0.01;
    let w1 = b.initializer("w1", ArrayD::from_shape_vec(IxDyn(&[8, 1]), w).unwrap());
    let a = b.node("abs", "Abs", &[&x], &[]);
    let h1 = b.node("gemm1", "Gemm", &[&a, &w1], &[]);
    let h2 = b.node("gemm2", "Gemm", &[&a, &w2], &[]);
    let d = b.node("gap", "Sub", &[&h1, &h2], &[]);
    let y = b.node("out", "Div", &[&x, &d], &[]);
    b.output(&y, DataType::F32, &[Dim::sym("batch"), Dim::Fixed(8)]);
    b.build()
}

#[test]
fn a_nonfinite_probe_is_the_worst_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let model = save(&fragile_denoiser(), dir.path(), "fragile.onnx");
    let config = cpu_config(WorkloadSpec { seeds: vec![0, 1, 2], ..steps(2) });
    let table = measure(&model, config, Shard::WHOLE, &dir.path().join("s.parquet"));
    assert_eq!(table.rows.len(), 4, "every probe of both layers is recorded");
    let broken = find(&table.rows, "gemm1", 4, 0);
    assert!(broken.nonfinite > 0);
    assert_eq!((broken.sqnr_db, broken.ssim, broken.psnr_db), (f64::NEG_INFINITY, -1.0, f64::NEG_INFINITY));
    assert_eq!(broken.mse, f64::INFINITY);
    let fine = find(&table.rows, "gemm1", 8, 0);
    assert!(fine.nonfinite == 0 && fine.sqnr_db.is_finite() && fine.ssim > -1.0, "{fine:?}");
    // w2 is exactly representable: its probes match full precision.
    assert_eq!(find(&table.rows, "gemm2", 4, 0).sqnr_db, f64::INFINITY);
}

#[test]
fn text_pipelines_score_cross_attention_and_feed_forward_as_content() {
    let dir = tempfile::tempdir().unwrap();
    bitsearch_fixtures::write_tiny_sd_pipeline(dir.path()).unwrap();
    let prompts = vec!["a red circle".into(), "a blue square".into()];
    let config = SensitivityConfig { w_bits: vec![4], ..cpu_config(WorkloadSpec { prompts, ..steps(2) }) };
    let table = measure(dir.path(), config, Shard::WHOLE, &dir.path().join("s.parquet"));
    assert_eq!(table.meta.pipeline, "diffusers");
    assert_eq!(table.meta.items.len(), 2);
    assert!(!table.meta.metric_groups.contains("no text conditioning"), "{}", table.meta.metric_groups);
    for row in &table.rows {
        let content = row.layer.role.as_str().starts_with("cross_attn") || row.layer.role == Role::FeedForward;
        assert_eq!(row.layer.group, if content { MetricGroup::Content } else { MetricGroup::Quality }, "{row:?}");
        assert!(row.sqnr_db.is_finite() && row.ssim.is_finite(), "{row:?}");
    }
    assert!(table.rows.iter().any(|r| r.layer.group == MetricGroup::Content));
}

#[test]
fn activation_probes_quantize_inputs_and_products() {
    let dir = tempfile::tempdir().unwrap();
    let model = save(&bitsearch_fixtures::attention_unet(false), dir.path(), "unet.onnx");
    let config = SensitivityConfig { w_bits: vec![8], a_bits: vec![4, 8], ..cpu_config(steps(2)) };
    let table = measure(&model, config, Shard::WHOLE, &dir.path().join("s.parquet"));
    let scores: Vec<&ProbeRow> = table.rows.iter().filter(|r| r.layer.role == Role::AttnScores).collect();
    assert_eq!(scores.len(), 2, "the attention product is probed at both activation bit-widths");
    assert!(scores.iter().all(|r| r.weight.bits() == 32 && r.weight_bytes == 0));
    let mut worse_at_4 = 0;
    let layers: std::collections::BTreeSet<&str> = table.rows.iter().map(|r| r.layer.name.as_str()).collect();
    for layer in &layers {
        let at = |bits: u32| table.rows.iter().find(|r| r.layer.name == *layer && r.a_bits == bits).unwrap().sqnr_db;
        assert!(at(8).is_finite() && at(8) > 20.0, "{layer}: 8-bit activations at {} dB", at(8));
        worse_at_4 += usize::from(at(4) < at(8));
    }
    assert_eq!(worse_at_4, layers.len(), "4-bit activations hurt more than 8-bit ones on every layer");
}

#[test]
fn config_fields_that_do_not_fit_the_model_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = save(&bitsearch_fixtures::attention_unet(false), dir.path(), "unet.onnx");
    let error = |config: SensitivityConfig| SensitivityRun::open(&model, config, Shard::WHOLE).unwrap_err().to_string();
    let default = || cpu_config(WorkloadSpec::default());
    let groups = SensitivityConfig { groups: [("nonsense".to_string(), MetricGroup::Content)].into(), ..default() };
    assert!(error(groups).starts_with("groups.nonsense:"));
    let layers = SensitivityConfig { layers: vec!["conv_inn".into()], ..default() };
    assert!(error(layers).starts_with("layers: 'conv_inn'"));
    let conditions = WorkloadSpec { conditions: [("difficulty".to_string(), vec![0.5])].into(), ..Default::default() };
    assert!(error(cpu_config(conditions)).starts_with("generation.conditions.difficulty:"));
    let groups_too_many = SensitivityConfig { step_groups: 3, ..cpu_config(steps(2)) };
    assert!(error(groups_too_many).starts_with("step_groups:"));
    let prompts = WorkloadSpec { prompts: vec!["a cat".into()], ..Default::default() };
    assert!(error(cpu_config(prompts)).starts_with("generation.prompts:"));
}
