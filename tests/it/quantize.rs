//! `bitsearch quantize` and `bitsearch eval` end to end on the fixtures: a plan applied as a
//! real low-bit model measures what its float simulation measures, a step-aware plan shares one
//! weight file between its models, bad plans, other models and existing folders are refused;
//! the corrections (bias correction, PTQD) are checked in `corrections`.

mod corrections;
mod gptq;
mod low_rank;

use crate::common::{
    assert_clean_failure, assert_each_tensor_stored_once, assert_success, bitsearch, four_then_eight_plan, tiny_table,
    tiny_unet,
};
use bitsearch_records::{EvalRecord, MANIFEST_FILE, Manifest, Plan, ProbeRow, SensitivityTable, read_evals};
use bitsearch_types::WeightFormat;
use std::path::{Path, PathBuf};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A W2/W4/W8 table of the tiny UNet and a 4-bit-average plan from it.
fn tiny_plan(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (model, table) = tiny_table(dir);
    let plan = dir.join("plan.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--budget", "4bits", "--out", s(&plan)]));
    (model, table, plan)
}

fn quantize(model: &Path, plan: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["quantize", s(model), "--plan", s(plan), "--out", s(out), "--device", "cpu"];
    args.extend(extra);
    bitsearch(&args)
}

/// The layer of the largest gain among `gains` (its probe's gain over a baseline, and the probe)
/// that a uniform 3-bit plan of `table` quantizes, alone at its probed form with every other
/// layer in float, written by `quantize` into DIR/q: it must measure, on the items the probe ran
/// (seed 0, 2 steps), what its probe measured. Returns the written folder.
fn written_alone_measures_its_probe(model: &Path, table: &Path, gains: &[(f64, &ProbeRow)], dir: &Path) -> PathBuf {
    let plan_path = dir.join("one.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(table), "--uniform", "3", "--out", s(&plan_path)]));
    let mut plan = Plan::read(&plan_path).unwrap();
    let open = |name: &str| plan.layers.iter().any(|l| l.layer.name == name && !l.protected);
    let (_, probe) = gains.iter().filter(|(_, r)| open(&r.layer.name)).max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    for layer in &mut plan.layers {
        let form = if layer.layer.name == probe.layer.name { probe.weight } else { WeightFormat::Float };
        layer.weights = vec![form];
    }
    plan.write(&plan_path).unwrap();
    let out = dir.join("q");
    assert_success(&quantize(model, &plan_path, &out, &[]));
    let record = dir.join("eval.parquet");
    let args = ["eval", s(model), s(&out), "--out", s(&record), "--seeds", "0", "--steps", "2", "--repeats", "0"];
    assert_success(&bitsearch(&[&args[..], &["--device", "cpu"]].concat()));
    let measured = read_evals(&record).unwrap().1[0].sqnr_db;
    assert!(
        (measured - probe.sqnr_db).abs() < 0.05,
        "{} at {}: the written model measures {measured} dB, its probe {} dB",
        probe.layer.name,
        probe.weight,
        probe.sqnr_db
    );
    out
}

/// Evaluates `candidates` and the simulation of `plan`; the records, simulation last.
fn eval(reference: &Path, candidates: &[&Path], plan: &Path, out: &Path) -> Vec<EvalRecord> {
    let record = out.join("eval.parquet");
    let mut args = vec!["eval", s(reference)];
    args.extend(candidates.iter().map(|c| s(c)));
    args.extend(["--simulate", s(plan), "--out", s(&record), "--repeats", "1", "--device", "cpu"]);
    let stdout = assert_success(&bitsearch(&args));
    assert!(stdout.contains("evaluation items: seeds [1000, 1001, 1002, 1003]"), "{stdout}");
    let (run, records) = read_evals(&record).unwrap();
    assert_eq!(run.items.len(), 4);
    assert!(run.held_out.contains("sensitivity and calibration: [0]"), "{}", run.held_out);
    records
}

/// Quantizes `plan` into DIR/q, checks that it measures what the plan's simulation does, and
/// returns its (first) model.
fn quantized_as_simulated(model: &Path, plan: &Path, dir: &Path) -> bitsearch_onnx::Model {
    let out = dir.join("q");
    assert_success(&quantize(model, plan, &out, &[]));
    let records = eval(model, &[&out], plan, dir);
    let (q, sim) = (&records[0], &records[1]);
    assert!((q.sqnr_db - sim.sqnr_db).abs() < 0.5, "quantized {} dB vs simulated {} dB", q.sqnr_db, sim.sqnr_db);
    let manifest = Manifest::find(&out).unwrap().unwrap();
    bitsearch_onnx::Model::load(out.join(&manifest.models[0].file)).unwrap()
}

#[test]
fn a_quantized_plan_measures_what_its_float_simulation_does_in_both_storage_modes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _, plan) = tiny_plan(dir.path());
    let (lowbit, unpacked) = (dir.path().join("q-lowbit"), dir.path().join("q-unpacked"));
    assert_success(&quantize(&model, &plan, &lowbit, &[]));
    assert_success(&quantize(&model, &plan, &unpacked, &["--storage", "unpacked"]));
    let records = eval(&model, &[&lowbit, &unpacked], &plan, dir.path());
    let (q, u, sim) = (&records[0], &records[1], &records[2]);
    assert_eq!((q.kind.as_str(), sim.kind.as_str()), ("ilp", "simulated"));
    assert!(sim.sqnr_db.is_finite() && sim.sqnr_db < 60.0, "4-bit weights must change the output: {}", sim.sqnr_db);
    for r in [q, u] {
        assert!((r.sqnr_db - sim.sqnr_db).abs() < 0.5, "{} {} dB vs simulated {} dB", r.label, r.sqnr_db, sim.sqnr_db);
        assert_eq!(r.nonfinite, 0);
        assert!(r.size_ratio() < 1.0, "{}: {} of the float file", r.label, r.size_ratio());
        assert_eq!(r.predicted_sqnr_db, sim.predicted_sqnr_db);
    }
    // A plan at a tighter budget loses more, measured.
    let plan3 = dir.path().join("plan3.yaml");
    let table = dir.path().join("s.parquet");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--budget", "2.5bits", "--out", s(&plan3)]));
    let tight = eval(&model, &[], &plan3, &dir.path().join("tight"));
    assert!(tight[0].sqnr_db < sim.sqnr_db, "{} dB at 2.5 bits vs {} dB at 4", tight[0].sqnr_db, sim.sqnr_db);
}

#[test]
fn bad_plans_other_models_and_existing_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _, plan) = tiny_plan(dir.path());
    let out = dir.path().join("q");

    // A plan made for another model.
    let other = dir.path().join("other.onnx");
    bitsearch_fixtures::attention_unet(true).save(&other, bitsearch_onnx::ExternalData::Inline).unwrap();
    assert_clean_failure(
        &quantize(&other, &plan, &out, &[]),
        &["plan.yaml", "was made for", "unet.onnx", "other.onnx"],
    );

    // A corrupt field and a layer the model lacks.
    let text = std::fs::read_to_string(&plan).unwrap();
    let first_bits = text.find("w_bits:").unwrap();
    let corrupt = dir.path().join("corrupt.yaml");
    std::fs::write(
        &corrupt,
        format!("{}w_bits: [9]\n  a_bits{}", &text[..first_bits], &text[first_bits..].split_once("a_bits").unwrap().1),
    )
    .unwrap();
    assert_clean_failure(&quantize(&model, &corrupt, &out, &[]), &["corrupt.yaml", "layers[0].w_bits", "9 bits"]);
    let plan_read = Plan::read(&plan).unwrap();
    let renamed = dir.path().join("renamed.yaml");
    let name = &plan_read.layers[1].layer.name;
    std::fs::write(&renamed, text.replace(&format!("name: {name}\n"), "name: no_such_layer\n")).unwrap();
    assert_clean_failure(
        &quantize(&model, &renamed, &out, &[]),
        &["renamed.yaml", "unet/no_such_layer", "is not a layer of"],
    );
    assert!(!out.exists(), "a refused run writes nothing");

    // An existing folder, unless --overwrite.
    assert_success(&quantize(&model, &plan, &out, &[]));
    assert_clean_failure(&quantize(&model, &plan, &out, &[]), &["already exists", "--overwrite"]);
    assert_success(&quantize(&model, &plan, &out, &["--overwrite"]));
    assert!(out.join(MANIFEST_FILE).is_file());
}

#[test]
fn a_killed_run_leaves_no_half_written_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _, plan) = tiny_plan(dir.path());
    let out = dir.path().join("q");
    let partial = dir.path().join(".q.partial");
    // Kill the run as soon as its temporary folder exists, many times over: whenever the kill
    // lands, `q` is either absent or complete.
    for _ in 0..5 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bitsearch"))
            .args(["quantize", s(&model), "--plan", s(&plan), "--out", s(&out), "--device", "cpu", "--overwrite"])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !partial.exists() && child.try_wait().unwrap().is_none() {
            std::thread::yield_now();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if out.exists() {
            assert!(Manifest::find(&out).unwrap().is_some(), "a folder in place is a complete one");
        }
    }
    // The next run cleans up what a killed one left and finishes.
    assert_success(&quantize(&model, &plan, &out, &["--overwrite"]));
    assert!(!partial.exists());
    assert!(Manifest::find(&out).unwrap().is_some());
}

/// A 2-step-group plan of the tiny pipeline folder whose groups differ (4 then 8 bits).
#[test]
fn a_step_aware_plan_shares_one_weight_file_and_switches_models_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("pipe");
    bitsearch_fixtures::write_tiny_sd_pipeline(&folder).unwrap();
    let table = dir.path().join("s.parquet");
    assert_success(&bitsearch(&[
        "sensitivity",
        s(&folder),
        "--out",
        s(&table),
        "--w-bits",
        "4,8",
        "--steps",
        "4",
        "--step-groups",
        "2",
        "--prompt",
        "a small red circle on the left",
        "--guidance",
        "3",
        "--device",
        "cpu",
    ]));
    let plan_path = four_then_eight_plan(&table, dir.path());
    assert_eq!(Plan::read(&plan_path).unwrap().step_groups, vec![[0, 1], [2, 3]]);
    let out = dir.path().join("q");
    assert_success(&quantize(&folder, &plan_path, &out, &[]));

    // The other components are copied, the UNet folder holds two models and one weight file.
    for file in ["model_index.json", "text_encoder/model.onnx", "vae_decoder/model.onnx", "unet/config.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let manifest = Manifest::find(&out.join("unet")).unwrap().unwrap();
    assert_eq!(manifest.models.len(), 2);
    assert_eq!(manifest.models_by_step(4).unwrap(), vec![0, 0, 1, 1]);
    assert_each_tensor_stored_once(&out.join("unet"), &manifest);

    // The sampler switches models by step: the quantized folder measures what the simulation does.
    let record = dir.path().join("eval.parquet");
    assert_success(&bitsearch(&[
        "eval",
        s(&folder),
        s(&out),
        "--simulate",
        s(&plan_path),
        "--out",
        s(&record),
        "--num-seeds",
        "2",
        "--repeats",
        "1",
        "--device",
        "cpu",
    ]));
    let (_, records) = read_evals(&record).unwrap();
    assert!((records[0].sqnr_db - records[1].sqnr_db).abs() < 0.5, "{} vs {}", records[0].sqnr_db, records[1].sqnr_db);
    // (ONNX Runtime may run the low-bit MatMuls as MatMulNBits, whose int8 compute rounds a
    // little differently; the untrained fixture amplifies any difference.)
    assert!((records[0].ssim - records[1].ssim).abs() < 0.01, "{records:?}");
    // Asking for another number of steps than the groups cover is refused.
    let refused = bitsearch(&[
        "eval",
        s(&folder),
        s(&out),
        "--out",
        s(&record),
        "--steps",
        "6",
        "--repeats",
        "1",
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&refused, &["4 steps; 6 steps were asked for"]);
}

/// Sessions built from a file find ONNX Runtime the way every other session does: without
/// ORT_DYLIB_PATH, in `.local/` above the executable.
#[test]
fn eval_finds_onnx_runtime_without_the_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table, plan) = tiny_plan(dir.path());
    let out = dir.path().join("e.parquet");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bitsearch"))
        .args(["eval", s(&model), s(&model), "--simulate", s(&plan), "--sensitivity", s(&table)])
        .args(["--out", s(&out), "--repeats", "1", "--device", "cpu"])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    assert_success(&output);
    let (_, records) = read_evals(&out).unwrap();
    assert_eq!(records[0].kind, "model");
    assert!(records[0].sqnr_db.is_infinite(), "the model against itself is exact: {}", records[0].sqnr_db);
}

#[test]
fn an_outlier_split_is_probed_solved_and_stored_in_the_plain_widths_space() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let table = dir.path().join("s.parquet");
    let args = ["sensitivity", s(&model), "--out", s(&table), "--w-bits", "3,8", "--outlier-split", "--device", "cpu"];
    assert_success(&bitsearch(&args));
    let rows = SensitivityTable::read(&table).unwrap().rows;
    let split: Vec<&str> = rows.iter().filter(|r| r.weight.split()).map(|r| r.layer.name.as_str()).collect();
    assert!(!split.is_empty() && rows.iter().all(|r| !r.weight.split() || r.weight.bits() == 3), "{split:?}");

    // Every layer that has a split row at 3 bits, split; the same plan unsplit for comparison.
    let solved = dir.path().join("solved.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--uniform", "3", "--out", s(&solved)]));
    let mut plan = Plan::read(&solved).unwrap();
    let plain_path = dir.path().join("plain.yaml");
    plan.write(&plain_path).unwrap();
    for layer in plan.layers.iter_mut().filter(|l| !l.protected && split.contains(&l.layer.name.as_str())) {
        layer.weights = vec![bitsearch_types::WeightFormat::Int {
            bits: 3,
            split: true,
            group: None,
            rounding: bitsearch_types::Rounding::Nearest,
            rank: None,
        }];
    }
    let split_path = dir.path().join("plan.yaml");
    plan.write(&split_path).unwrap();
    assert!(std::fs::read_to_string(&split_path).unwrap().contains("w_split"));
    let (q_split, q_plain) = (dir.path().join("q-split"), dir.path().join("q-plain"));
    assert!(assert_success(&quantize(&model, &split_path, &q_split, &[])).contains("outlier split"));
    assert_eq!(
        Manifest::find(&q_split).unwrap().unwrap().split_layers,
        plan.layers.iter().filter(|l| l.weights[0].split()).count()
    );
    assert_success(&quantize(&model, &plain_path, &q_plain, &[]));
    // Same mean bits in the same int4 containers: the weight files are the same size.
    let size = |d: &Path| std::fs::metadata(d.join("weights.bin")).unwrap().len();
    assert_eq!(size(&q_split), size(&q_plain));

    let records = eval(&model, &[&q_split], &split_path, dir.path());
    let (q, sim) = (&records[0], &records[1]);
    assert!(q.label.contains("split on"), "{}", q.label);
    assert!((q.sqnr_db - sim.sqnr_db).abs() < 0.5, "stored {} dB vs simulated {} dB", q.sqnr_db, sim.sqnr_db);
    let plain = eval(&model, &[], &plain_path, &dir.path().join("plain"));
    assert_ne!(plain[0].sqnr_db, sim.sqnr_db, "the split must change the weights");
}

#[test]
fn float16_is_an_option_probed_solved_and_stored_at_half_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let table = dir.path().join("s16.parquet");
    let args = ["sensitivity", s(&model), "--out", s(&table), "--w-bits", "4,16", "--steps", "2", "--device", "cpu"];
    assert_success(&bitsearch(&args));
    let rows = SensitivityTable::read(&table).unwrap().rows;
    for row in rows.iter().filter(|r| r.weight.bits() == 16) {
        // Two bytes per value, and float16 rounding is far below 4-bit noise.
        assert_eq!(row.weight_bytes, 2 * row.layer.params, "{}", row.layer.name);
        let w4 = rows
            .iter()
            .find(|r| r.weight.bits() == 4 && r.layer == row.layer && r.step_group == row.step_group)
            .unwrap();
        assert!(row.sqnr_db > w4.sqnr_db + 20.0, "{}: {} vs {} dB", row.layer.name, row.sqnr_db, w4.sqnr_db);
    }
    // A budget between the two widths keeps some layers in float16 and quantizes the rest.
    let plan = dir.path().join("plan.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--budget", "10bits", "--out", s(&plan)]));
    let layers = Plan::read(&plan).unwrap().layers;
    let widths: std::collections::BTreeSet<u32> =
        layers.iter().filter(|l| !l.protected).flat_map(|l| l.weights.iter().map(|w| w.bits())).collect();
    assert_eq!(widths, [4, 16].into(), "{widths:?}");
    let onnx = quantized_as_simulated(&model, &plan, dir.path());
    let halves = onnx.graph().initializer.iter().filter(|t| t.name().ends_with("/w16/half")).count();
    assert_eq!(halves, layers.iter().filter(|l| l.weights[0].bits() == 16).count());
}

#[test]
fn group_sizes_and_float8_are_probed_costed_stored_and_measured_as_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let table = dir.path().join("groups.parquet");
    let args = ["sensitivity", s(&model), "--out", s(&table), "--w-bits", "3,8", "--w-groups", "8", "--fp8"];
    assert_success(&bitsearch(&[&args[..], &["--steps", "2", "--device", "cpu"]].concat()));
    let rows = SensitivityTable::read(&table).unwrap().rows;
    let find = |layer: &bitsearch_types::LayerInfo, bits: u32, group: u32, fp8: bool| {
        rows.iter()
            .find(|r| &r.layer == layer && r.weight.columns() == (bits, false, group, fp8, false, 0))
            .unwrap_or_else(|| panic!("{}: no W{bits} g{group} fp8={fp8} row", layer.name))
    };
    let mut better = 0;
    let plain3: Vec<_> = rows.iter().filter(|r| r.weight.bits() == 3 && !r.weight.variant()).collect();
    for plain in &plain3 {
        let grouped = find(&plain.layer, 3, 8, false);
        // Three-bit codes take an int4 container; the group scales are f32 each.
        let scales = grouped.weight_bytes - plain.layer.params.div_ceil(2);
        assert!(scales > plain.weight_bytes - plain.layer.params.div_ceil(2), "{}", plain.layer.name);
        assert_eq!(scales % 4, 0);
        better += usize::from(grouped.sqnr_db > plain.sqnr_db);
        let fp8 = find(&plain.layer, 8, 0, true);
        assert_eq!(
            fp8.weight_bytes,
            find(&plain.layer, 8, 0, false).weight_bytes,
            "one byte a value, one scale a channel"
        );
        assert!(fp8.sqnr_db > plain.sqnr_db, "{}: E4M3 {} vs W3 {} dB", plain.layer.name, fp8.sqnr_db, plain.sqnr_db);
    }
    assert!(
        better * 4 >= plain3.len() * 3,
        "groups of 8 beat per-channel scales on {better} of {} layers",
        plain3.len()
    );

    // A plan that stores both kinds: quantized = simulated, with the tensors each kind implies.
    let plan = dir.path().join("plan.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--uniform", "3", "--out", s(&plan)]));
    let mut written = Plan::read(&plan).unwrap();
    for (i, layer) in written.layers.iter_mut().filter(|l| !l.protected).enumerate() {
        if i % 2 == 0 {
            layer.weights = vec![bitsearch_types::WeightFormat::Int {
                bits: 3,
                split: false,
                group: Some(8),
                rounding: bitsearch_types::Rounding::Nearest,
                rank: None,
            }];
        } else {
            layer.weights = vec![bitsearch_types::WeightFormat::E4M3];
        }
    }
    written.write(&plan).unwrap();
    let onnx = quantized_as_simulated(&model, &plan, dir.path());
    let graph = onnx.graph();
    let fp8 = graph.initializer.iter().filter(|t| t.name().ends_with("/w8e4m3/codes")).collect::<Vec<_>>();
    assert!(!fp8.is_empty() && fp8.iter().all(|t| t.data_type() == 17), "FLOAT8E4M3FN codes");
    let blocked = graph
        .node
        .iter()
        .filter(|n| n.name().ends_with("/w3g8/dequantize"))
        .filter(|n| n.attribute.iter().any(|a| a.name() == "block_size" && a.i() == 8))
        .count();
    assert!(blocked > 0, "grouped layers dequantize blocked");
    // Group sizes on 8-bit activations have no integer kernel: refused, naming the layer.
    let refused = dir.path().join("a8.yaml");
    let mut a8 = Plan::read(&plan).unwrap();
    let layer = a8.layers.iter_mut().find(|l| l.weights[0].group().is_some()).unwrap();
    layer.a_bits = vec![8];
    let name = layer.layer.name.clone();
    a8.write(&refused).unwrap();
    let output = quantize(&model, &refused, &dir.path().join("q8"), &[]);
    assert_clean_failure(&output, &[&name, "per-channel scales"]);
}

#[test]
fn two_bit_codes_are_stored_four_per_byte_at_opset_25_and_measure_as_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table, _) = tiny_plan(dir.path());
    let uniform = |bits: &str| {
        let plan = dir.path().join(format!("w{bits}.yaml"));
        assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--uniform", bits, "--out", s(&plan)]));
        plan
    };
    // Half the layers per-group: int2 codes behind a blocked DequantizeLinear too.
    let w2 = uniform("2");
    let mut plan = Plan::read(&w2).unwrap();
    for layer in plan.layers.iter_mut().filter(|l| !l.protected).step_by(2) {
        layer.weights = vec![bitsearch_types::WeightFormat::Int {
            bits: 2,
            split: false,
            group: Some(8),
            rounding: bitsearch_types::Rounding::Nearest,
            rank: None,
        }];
    }
    plan.write(&w2).unwrap();
    let onnx = quantized_as_simulated(&model, &w2, &dir.path().join("two"));
    assert_eq!(bitsearch_onnx::rewrite::default_opset(&onnx), 25);
    let int2 = onnx.graph().initializer.iter().filter(|t| t.data_type() == 26).count();
    assert_eq!(int2, plan.layers.iter().filter(|l| !l.protected).count(), "every quantized weight as INT2");
    let unpacked = dir.path().join("q2-unpacked");
    let mut per_channel = Plan::read(&w2).unwrap();
    per_channel
        .layers
        .iter_mut()
        .flat_map(|l| l.weights.iter_mut())
        .for_each(|w| *w = bitsearch_types::WeightFormat::of_bits(w.bits()));
    let w2c = dir.path().join("w2c.yaml");
    per_channel.write(&w2c).unwrap();
    assert_success(&quantize(&model, &w2c, &unpacked, &["--storage", "unpacked"]));
    let records = eval(&model, &[&unpacked], &w2c, &dir.path().join("unpacked"));
    assert!((records[0].sqnr_db - records[1].sqnr_db).abs() < 0.5, "{} vs {}", records[0].sqnr_db, records[1].sqnr_db);

    // A quarter of a byte per value: the 2-bit file is smaller than the 4-bit one by about a
    // quarter of the quantized values' count in bytes.
    let w4 = uniform("4");
    let (q2, q4) = (dir.path().join("q2"), dir.path().join("q4"));
    assert_success(&quantize(&model, &w2c, &q2, &[]));
    assert_success(&quantize(&model, &w4, &q4, &[]));
    // Small tensors stay inside the .onnx file, large ones go to weights.bin: count both.
    let size = |d: &Path| -> u64 {
        ["model.onnx", "weights.bin"].iter().map(|f| std::fs::metadata(d.join(f)).map_or(0, |m| m.len())).sum()
    };
    let values: u64 = per_channel.layers.iter().filter(|l| !l.protected).map(|l| l.layer.params).sum();
    let saved = size(&q4) - size(&q2);
    assert!(saved.abs_diff(values / 4) <= values / 64, "saved {saved} bytes of {values} values");
}
