//! The corrections of `bitsearch quantize` on the calibration items: bias correction removes the
//! mean shift of a quantized layer, PTQD is fitted, stored and applied by the sampler.

use super::{eval, quantize, s, tiny_plan};
use crate::common::{assert_clean_failure, assert_success, bitsearch, tiny_unet};
use bitsearch_pipeline::sampler::SampleError;
use bitsearch_pipeline::workload::{self, Evaluate, StepControl, WorkloadSpec};
use bitsearch_records::{Manifest, NoiseCorrection, Plan, SensitivityTable};
use ndarray::{ArrayD, Axis};
use std::path::Path;

/// The calibration items of `table` (its sensitivity run's generation settings) on the CPU.
fn calibration_spec(table: &Path) -> WorkloadSpec {
    let meta = SensitivityTable::read(table).unwrap().meta;
    let mut spec = meta.config.generation();
    spec.device = bitsearch_runtime::Device::Cpu;
    spec
}

/// The network's raw output at every step of every batch of `spec`, run from `model`.
fn raw_outputs(model: &Path, spec: &WorkloadSpec) -> Vec<ArrayD<f32>> {
    struct Record(Vec<ArrayD<f32>>);
    impl StepControl for Record {
        fn step(&mut self, _: usize, _: usize, evaluate: &mut Evaluate<'_>) -> Result<ArrayD<f32>, SampleError> {
            let out = evaluate(&[])?.swap_remove(0);
            self.0.push(out.clone());
            Ok(out)
        }
    }
    let mut workload = workload::open(model, spec).unwrap();
    let mut record = Record(Vec::new());
    for b in 0..workload.batches() {
        workload.run(b, &mut record).unwrap();
    }
    record.0
}

/// Per channel (axis 1), the mean of `a − b`.
fn channel_mean_error(a: &ArrayD<f32>, b: &ArrayD<f32>) -> Vec<f64> {
    let d = a - b;
    d.axis_iter(Axis(1)).map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / c.len() as f64).collect()
}

#[test]
fn bias_correction_removes_the_mean_shift_a_quantized_layer_adds() {
    // One step, and only the output convolution quantized (at 2 bits, the largest shift): its
    // input is then the float one, so on the calibration items the corrected output's mean error
    // per channel must vanish.
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let table = dir.path().join("s1.parquet");
    let args = ["sensitivity", s(&model), "--out", s(&table), "--w-bits", "2,8", "--steps", "1", "--device", "cpu"];
    assert_success(&bitsearch(&args));
    let solved = dir.path().join("solved.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--uniform", "8", "--out", s(&solved)]));
    let mut plan = Plan::read(&solved).unwrap();
    for layer in &mut plan.layers {
        // The output layer, protected by default, is the one quantized here.
        let chosen = layer.layer.name.contains("conv_out");
        layer.protected &= !chosen;
        layer.weights = vec![bitsearch_types::WeightFormat::of_bits(if chosen { 2 } else { 32 })];
    }
    assert_eq!(plan.layers.iter().filter(|l| l.weights[0].bits() == 2).count(), 1);
    let plan_path = dir.path().join("plan.yaml");
    plan.write(&plan_path).unwrap();
    let (plain, corrected) = (dir.path().join("q"), dir.path().join("q-bc"));
    assert_success(&quantize(&model, &plan_path, &plain, &[]));
    let stdout = assert_success(&quantize(&model, &plan_path, &corrected, &["--bias-correction"]));
    assert!(stdout.contains("bias correction"), "{stdout}");
    let manifest = Manifest::find(&corrected).unwrap().unwrap();
    assert!(manifest.corrections.bias_correction && !manifest.calibration_items.is_empty());

    let spec = calibration_spec(&table);
    let fp = &raw_outputs(&model, &spec)[0];
    let before = channel_mean_error(&raw_outputs(&plain, &spec)[0], fp);
    let after = channel_mean_error(&raw_outputs(&corrected, &spec)[0], fp);
    let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(largest(&before) > 1e-3, "2-bit weights must shift the output: {before:?}");
    assert!(largest(&after) < 1e-3 * largest(&before).max(1e-2), "before {before:?}, after {after:?}");

    // The probe with bias correction simulates exactly that model on the same items, and taking
    // the mean out of the error can only lower its power.
    let corrected_table = dir.path().join("s1-bc.parquet");
    let args = ["sensitivity", s(&model), "--out", s(&corrected_table), "--w-bits", "2", "--steps", "1"];
    assert_success(&bitsearch(
        &[&args[..], &["--layers", "conv_out", "--bias-correction", "--device", "cpu"]].concat(),
    ));
    let probe = |table: &Path| {
        let rows = SensitivityTable::read(table).unwrap().rows;
        rows.into_iter().find(|r| r.layer.name.contains("conv_out") && r.weight.bits() == 2).unwrap().sqnr_db
    };
    let (plain_db, corrected_db) = (probe(&table), probe(&corrected_table));
    let q = &raw_outputs(&corrected, &spec)[0];
    let signal: f64 = fp.iter().map(|&v| f64::from(v).powi(2)).sum();
    let noise: f64 = (q - fp).iter().map(|&v| f64::from(v).powi(2)).sum();
    let measured_db = 10.0 * (signal / noise).log10();
    assert!(corrected_db > plain_db, "probe {corrected_db} dB with bias correction vs {plain_db} dB without");
    assert!((measured_db - corrected_db).abs() < 0.05, "model {measured_db} dB vs its probe {corrected_db} dB");
}

#[test]
fn ptqd_is_fitted_on_the_calibration_items_stored_and_applied_by_the_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table, plan) = tiny_plan(dir.path());
    let (plain, corrected) = (dir.path().join("q"), dir.path().join("q-ptqd"));
    assert_success(&quantize(&model, &plan, &plain, &[]));
    let stdout = assert_success(&quantize(&model, &plan, &corrected, &["--ptqd"]));
    assert!(stdout.contains("PTQD noise correction: noise_correction.yaml"), "{stdout}");
    let manifest = Manifest::find(&corrected).unwrap().unwrap();
    let file = manifest.corrections.noise_correction.as_deref().unwrap();
    let noise = NoiseCorrection::read(&corrected.join(file)).unwrap();
    assert_eq!((noise.sampler.as_str(), noise.prediction.as_str(), noise.steps.len()), ("ddim", "epsilon", 2));
    for step in &noise.steps {
        // A least-squares fit with an intercept per channel never leaves more than it started with.
        assert!(step.sigma <= step.rms_error + 1e-9 && step.k >= 0.0, "{step:?}");
    }

    // At the first step both runs see the same input, which the fit saw: what the correction
    // leaves of the quantized estimate is exactly the residual it measured, σ/(1 + k).
    let spec = calibration_spec(&table);
    let (fp, q) = (&raw_outputs(&model, &spec)[0], &raw_outputs(&corrected, &spec)[0]);
    let mse = |a: &ArrayD<f32>| (a - fp).iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / a.len() as f64;
    let step = &noise.steps[0];
    let left = mse(&bitsearch_pipeline::ptqd::correct(step, q.clone()).unwrap());
    let expected = (step.sigma / (1.0 + step.k)).powi(2);
    assert!((left - expected).abs() <= 1e-4 * expected.max(1e-9), "left {left}, fitted {expected}");
    assert!(left < mse(q), "the correction must reduce the error it was fitted on");

    // The sampler applies it: same network outputs at step 0, other final images; a run with
    // other timesteps is refused with the ones it was fitted for.
    let records = eval(&model, &[&plain, &corrected], &plan, dir.path());
    assert!(records[1].label.contains("PTQD"), "{}", records[1].label);
    assert_ne!(records[0].mse, records[1].mse);
    let out = dir.path().join("e3.parquet");
    let args =
        ["eval", s(&model), s(&corrected), "--steps", "3", "--out", s(&out), "--repeats", "1", "--device", "cpu"];
    assert_clean_failure(&bitsearch(&args), &["fitted for ddim 2 steps; this run is ddim 3 steps"]);
}
