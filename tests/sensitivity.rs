//! `bitsearch sensitivity` and `merge` end to end: a run killed with SIGKILL and resumed, and
//! probes of the real terrain model checked against ONNX Runtime run by hand.

mod common;

use bitsearch_metrics::ssim_per_item;
use bitsearch_onnx::{DataType, Model, tensor_from_f32, tensor_to_f32};
use bitsearch_pipeline::noise::batch_noise;
use bitsearch_quant::WeightQuantizer;
use bitsearch_records::{SensitivityTable, monotonicity};
use bitsearch_runtime::{Device, Session, SessionOptions};
use bitsearch_sensitivity::journal_path;
use bitsearch_types::QuantizerSpec;
use common::{assert_clean_failure, assert_success, bitsearch, terrain_model, tiny_unet};
use ndarray::{ArrayD, IxDyn};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn as_str(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.matches('\n').count())
}

#[test]
fn a_killed_run_resumes_without_recomputing_and_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let model = model.to_str().unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "sensitivity",
            model,
            "--out",
            out.to_str().unwrap(),
            "--w-bits",
            "2,3,4,5,6,7,8",
            "--steps",
            "4",
            "--step-groups",
            "2",
        ]
        .into_iter()
        .chain(["--seeds", "0,1", "--window", "3", "--device", "cpu", "--threads", "1"])
        .map(String::from)
        .collect()
    };

    let whole = dir.path().join("whole.parquet");
    let output = bitsearch(&as_str(&args(&whole)));
    assert_success(&output);
    let expected = SensitivityTable::read(&whole).unwrap();
    let total = expected.rows.len();

    let part = dir.path().join("part.parquet");
    let journal = journal_path(&part);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitsearch"))
        .args(args(&part))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while complete_lines(&journal) < 6 {
        assert!(Instant::now() < deadline, "the run wrote no probes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = complete_lines(&journal) - 1;
    assert!(done < total, "the kill came after the last probe ({done} of {total})");
    assert!(!part.exists(), "no table is written before the run ends");

    // Without --resume the earlier run is not touched.
    assert_clean_failure(&bitsearch(&as_str(&args(&part))), &["--resume", "--overwrite"]);
    assert_eq!(complete_lines(&journal), done + 1);

    let mut resumed = args(&part);
    resumed.push("--resume".into());
    let output = bitsearch(&as_str(&resumed));
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let computed = total - done;
    assert!(stdout.contains(&format!("{computed} computed now, {done} from the journal")), "{stdout}");
    // Every probe appended exactly once: the header plus one line per probe.
    assert_eq!(complete_lines(&journal), total + 1);
    assert_eq!(SensitivityTable::read(&part).unwrap(), expected);
}

#[test]
fn merge_joins_shards_and_refuses_a_corrupt_table() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let run = |out: &str, shard: Option<&str>| {
        let out = dir.path().join(out);
        let mut args = vec![
            "sensitivity",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--window",
            "2",
        ];
        args.extend(["--device", "cpu"]);
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = bitsearch(&args);
        assert_success(&output);
        out
    };
    let whole = run("whole.parquet", None);
    let shards = [run("a.parquet", Some("0/2")), run("b.parquet", Some("1/2"))];
    let merged = dir.path().join("merged.parquet");
    let output = bitsearch(&[
        "merge",
        shards[1].to_str().unwrap(),
        shards[0].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_success(&output);
    assert_eq!(SensitivityTable::read(&merged).unwrap(), SensitivityTable::read(&whole).unwrap());

    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"not a table").unwrap();
    let output = bitsearch(&["merge", corrupt.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_clean_failure(&output, &["corrupt.parquet", "not a Parquet file"]);
}

#[test]
fn a_bad_config_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "w_bits: [4, 8]\nstep_group: 2\n").unwrap();
    let out = dir.path().join("s.parquet");
    let args = ["sensitivity", "m.onnx", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()];
    assert_clean_failure(&bitsearch(&args), &["c.yaml", "step_group"]);
    std::fs::write(&config, "w_bits: [4, 12]\n").unwrap();
    assert_clean_failure(&bitsearch(&args), &["c.yaml", "w_bits", "12 bits"]);
    std::fs::write(&config, "generation:\n  batch: 0\n").unwrap();
    assert_clean_failure(&bitsearch(&args), &["c.yaml", "generation.batch", "at least 1"]);
}

/// Layers of the terrain UNet from each role: time embedding, a plain conv, the attention
/// projections, and the output conv.
const TERRAIN_LAYERS: [&str; 5] =
    ["node_linear", "node_conv2d_11", "node_conv2d_24", "node_conv2d_25", "node_conv2d_195"];

#[test]
fn terrain_probes_equal_onnx_runtime_on_a_hand_quantized_model() {
    let model_path = terrain_model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("terrain.parquet");
    let layers = TERRAIN_LAYERS.join(",");
    let output = bitsearch(&[
        "sensitivity",
        model_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--condition",
        "difficulty=0.3",
        "--seeds",
        "0,1",
        "--w-bits",
        "2,4,8",
        "--layers",
        &layers,
        "--device",
        "cpu",
    ]);
    assert_success(&output);
    let table = SensitivityTable::read(&out).unwrap();
    assert_eq!(table.rows.len(), 15);
    assert_eq!(table.meta.model_sha256, "95be54b4a39d58320e187a7ec533351c957f16a00be58773c86074828ee67887");
    assert!(table.meta.metric_groups.contains("no text conditioning"), "{}", table.meta.metric_groups);
    let m = monotonicity(&table.rows);
    assert_eq!((m.checked, m.sqnr_exceptions.len(), m.ssim_exceptions.len()), (5, 0, 0), "{m:?}");

    // One step of the consistency model: the image is the network's output at sigma_max.
    let model = Model::load(&model_path).unwrap();
    let options = SessionOptions { device: Device::Cpu, ..Default::default() };
    let seeds = [0u64, 1];
    let noisy = batch_noise(&[1, 128, 128], &seeds) * 80.0f32;
    let sigma = ArrayD::from_elem(IxDyn(&[2]), 80.0f32);
    let difficulty = ArrayD::from_elem(IxDyn(&[2]), 0.3f32);
    let run = |model: &Model| {
        let mut session = Session::new(model, &options).unwrap();
        let feeds = [("noisy", noisy.view()), ("sigma", sigma.view()), ("difficulty", difficulty.view())];
        session.run(&feeds, &[]).unwrap().swap_remove(0)
    };
    let fp = run(&model);
    let spec = QuantizerSpec::default();
    for (layer, weight, axis) in [("node_conv2d_24", 0), ("node_linear", 0)].map(|(l, a)| (l, weight_of(&model, l), a))
    {
        let row = table.rows.iter().find(|r| r.layer.name == layer && r.w_bits == 4).unwrap();
        let mut quantized = model.clone();
        let tensor = quantized.graph_mut().initializer.iter_mut().find(|t| t.name() == weight).unwrap();
        let quantizer = WeightQuantizer::new(&spec.weight, 4, axis);
        let fq = quantizer.fake_quantize(tensor_to_f32(tensor).unwrap().view()).unwrap();
        *tensor = tensor_from_f32(&weight, &fq, DataType::F32);
        let probe = run(&quantized);
        let signal: f64 = fp.iter().map(|&v| f64::from(v).powi(2)).sum();
        let noise: f64 = fp.iter().zip(probe.iter()).map(|(&a, &b)| (f64::from(b) - f64::from(a)).powi(2)).sum();
        let sqnr = 10.0 * (signal / noise).log10();
        let ssim = ssim_per_item(fp.view(), probe.view()).iter().sum::<f64>() / 2.0;
        assert!((row.sqnr_db - sqnr).abs() < 1e-3, "{layer}: SQNR {} vs by hand {sqnr}", row.sqnr_db);
        assert!((row.ssim - ssim).abs() < 1e-3, "{layer}: SSIM {} vs by hand {ssim}", row.ssim);
    }
}

/// The weight initializer read by the node named `layer`.
fn weight_of(model: &Model, layer: &str) -> String {
    let node = model.graph().node.iter().find(|n| n.name() == layer).unwrap();
    node.input[1].clone()
}
