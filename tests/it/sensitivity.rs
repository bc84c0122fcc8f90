//! `bitsearch sensitivity` and `merge` end to end: a run killed with SIGKILL and resumed, and
//! probes of the real terrain model checked against ONNX Runtime run by hand.

use crate::common::{assert_clean_failure, assert_success, bitsearch, terrain_model, tiny_unet};
use bitsearch_metrics::ssim_per_item;
use bitsearch_onnx::{DataType, Model, tensor_from_f32, tensor_to_f32};
use bitsearch_pipeline::noise::batch_noise;
use bitsearch_quant::WeightQuantizer;
use bitsearch_records::{SensitivityTable, Shard, monotonicity};
use bitsearch_runtime::{Device, Session, SessionOptions};
use bitsearch_sensitivity::journal_path;
use bitsearch_types::QuantizerSpec;
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

/// The scheduler variables `--shard auto` reads, removed from the tasks' environment but for
/// those a test sets.
const SCHEDULER_VARIABLES: [&str; 6] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
];

/// Starts `program` with `args` as array task of a scheduler that sets `variables`, with the
/// bitsearch binary on the PATH.
fn array_task(program: &str, args: &[String], variables: Vec<(&str, String)>) -> std::process::Child {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_bitsearch")).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let mut command = std::process::Command::new(program);
    command.args(args).env("PATH", path).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for name in SCHEDULER_VARIABLES {
        command.env_remove(name);
    }
    command.envs(variables).spawn().expect("the array task starts")
}

/// Waits for the tasks, then merges the shard tables in `tables` and returns the merged table.
fn merged(tasks: Vec<std::process::Child>, tables: &std::path::Path) -> SensitivityTable {
    for task in tasks {
        assert_success(&task.wait_with_output().unwrap());
    }
    let mut shards: Vec<String> =
        std::fs::read_dir(tables).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    shards.retain(|p| p.ends_with(".parquet"));
    let count = shards.len();
    let mut indices: Vec<Shard> =
        shards.iter().map(|p| SensitivityTable::read(p.as_ref()).unwrap().meta.shard).collect();
    indices.sort_by_key(|s| s.index);
    assert_eq!(indices, (0..count).map(|index| Shard { index, count }).collect::<Vec<_>>());
    let out = tables.join("merged.table");
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(String::as_str));
    args.extend(["--out", out.to_str().unwrap()]);
    assert_success(&bitsearch(&args));
    SensitivityTable::read(&out).unwrap()
}

#[test]
fn array_tasks_of_the_docs_slurm_script_and_indexed_job_merge_into_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let flags = ["--steps", "2", "--window", "1"].map(String::from);
    let whole = dir.path().join("whole.parquet");
    let mut args = vec!["sensitivity", model.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--device", "cpu"];
    args.extend(flags.iter().map(String::as_str));
    assert_success(&bitsearch(&args));
    let whole = SensitivityTable::read(&whole).unwrap();

    // `sbatch --array=1-3 docs/cluster/slurm-sensitivity.sh --steps 2 --window 1`, its three
    // tasks at once.
    let tables = dir.path().join("slurm");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cluster/slurm-sensitivity.sh").to_string();
    let tasks = (1..=3)
        .map(|id| {
            let args: Vec<String> = std::iter::once(script.clone()).chain(flags.iter().cloned()).collect();
            let variables = vec![
                ("SLURM_ARRAY_TASK_ID", id.to_string()),
                ("SLURM_ARRAY_TASK_MIN", "1".into()),
                ("SLURM_ARRAY_TASK_MAX", "3".into()),
                ("SLURM_ARRAY_TASK_COUNT", "3".into()),
                ("MODEL", model.display().to_string()),
                ("TABLES", tables.display().to_string()),
                ("DEVICE", "cpu".into()),
            ];
            array_task("bash", &args, variables)
        })
        .collect();
    assert_eq!(merged(tasks, &tables), whole, "Slurm array");

    // The Indexed Job's command, on this machine's paths and CPU, one process per completion.
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cluster/sensitivity-indexed-job.yaml"));
    let job: serde_norway::Value = serde_norway::from_str(&manifest.unwrap()).unwrap();
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_u64().unwrap() as usize;
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"].as_u64(), Some(1), "one GPU per task");
    let command = container["args"][0].as_str().unwrap();
    assert!(command.contains(&format!("--shard auto/{completions}")), "the count must equal completions: {command}");
    let tables = dir.path().join("indexed");
    let command = command
        .replace("/data/models/unet.onnx", model.to_str().unwrap())
        .replace("/data/tables", tables.to_str().unwrap())
        .replace("--device cuda", "--device cpu")
        + " "
        + &flags.join(" ");
    let tasks = (0..completions)
        .map(|index| {
            array_task("sh", &["-c".into(), command.clone()], vec![("JOB_COMPLETION_INDEX", index.to_string())])
        })
        .collect();
    assert_eq!(merged(tasks, &tables), whole, "Indexed Job");

    // Outside an array the run refuses, naming what it looked for.
    let mut args = args.clone();
    args.extend(["--shard", "auto"]);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = array_task(env!("CARGO_BIN_EXE_bitsearch"), &args, Vec::new()).wait_with_output().unwrap();
    assert_clean_failure(&output, &["--shard auto", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]);
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

    let model = Model::load(&model_path).unwrap();
    let fp = terrain_output(&model);
    for layer in ["node_conv2d_24", "node_linear"] {
        let row = table.rows.iter().find(|r| r.layer.name == layer && r.weight.bits() == 4).unwrap();
        let probe = terrain_output(&with_weight(&model, &model, layer, 4));
        let (sqnr, ssim) = (sqnr_db(&fp, &probe), ssim_per_item(fp.view(), probe.view()).iter().sum::<f64>() / 2.0);
        assert!((row.sqnr_db - sqnr).abs() < 1e-3, "{layer}: SQNR {} vs by hand {sqnr}", row.sqnr_db);
        assert!((row.ssim - ssim).abs() < 1e-3, "{layer}: SSIM {} vs by hand {ssim}", row.ssim);
    }
}

/// Probes around a base plan: every layer of a uniform W4 plan holds its 4-bit weight and each
/// probe changes one layer from there; checked against ONNX Runtime on hand-built models, and
/// the solver predicts the base itself exactly from the table.
#[test]
fn probes_around_a_base_plan_equal_the_plan_with_one_layer_changed_by_hand() {
    let model_path = terrain_model();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let layers = TERRAIN_LAYERS.join(",");
    let sensitivity = |out: &str, w_bits: &str, base: Option<&str>| {
        let mut args = vec!["sensitivity", model_path.to_str().unwrap(), "--out", out, "--condition"];
        args.extend(["difficulty=0.3", "--seeds", "0,1", "--w-bits", w_bits, "--layers", &layers, "--device", "cpu"]);
        args.extend(base.map(|b| ["--base", b]).into_iter().flatten());
        assert_success(&bitsearch(&args))
    };
    let (first, base, table) = (path("w4.parquet"), path("u4.yaml"), path("around.parquet"));
    sensitivity(&first, "4", None);
    assert_success(&bitsearch(&["solve", "--sensitivity", &first, "--uniform", "4", "--protect", "", "--out", &base]));
    let stdout = sensitivity(&table, "2,4,8", Some(&base));
    assert!(stdout.contains("5 probes were of a layer at its base form"), "{stdout}");
    let table = SensitivityTable::read(Path::new(&table)).unwrap();
    let point = table.meta.base.clone().expect("the table records its base");
    assert_eq!(point.layers.len(), TERRAIN_LAYERS.len());

    let model = Model::load(&model_path).unwrap();
    let (based, _) = bitsearch_quantize::simulate(&model_path, Path::new(&base)).unwrap();
    let fp = terrain_output(&model);
    let at_base = sqnr_db(&fp, &terrain_output(&based[0]));
    for row in &table.rows {
        let expected = if row.weight.bits() == 4 {
            at_base
        } else {
            sqnr_db(&fp, &terrain_output(&with_weight(&based[0], &model, &row.layer.name, row.weight.bits() as u8)))
        };
        assert_eq!(point.is_base(row), row.weight.bits() == 4);
        let name = &row.layer.name;
        assert!(
            (row.sqnr_db - expected).abs() < 1e-3,
            "{name} W{}: {} vs by hand {expected}",
            row.weight.bits(),
            row.sqnr_db
        );
    }
    // Moving a layer to 2 bits costs SQNR and to 8 bits gains it, all from the same base.
    for layer in TERRAIN_LAYERS {
        let sqnr = |bits| table.rows.iter().find(|r| r.layer.name == layer && r.weight.bits() == bits).unwrap().sqnr_db;
        assert!(sqnr(2) < sqnr(4) && sqnr(4) < sqnr(8), "{layer}: {} {} {}", sqnr(2), sqnr(4), sqnr(8));
    }

    // Solved from this table, the base plan predicts what it measured.
    let again = path("again.yaml");
    let around = path("around.parquet");
    assert_success(&bitsearch(&[
        "solve",
        "--sensitivity",
        &around,
        "--uniform",
        "4",
        "--protect",
        "",
        "--out",
        &again,
    ]));
    let predicted = bitsearch_records::Plan::read(Path::new(&again)).unwrap().prediction.sqnr_db;
    assert!((predicted - at_base).abs() < 1e-3, "predicted {predicted} dB, measured {at_base} dB");
    // Keeping a layer the base quantizes in float is a plan the table cannot predict.
    let refused = bitsearch(&["solve", "--sensitivity", &around, "--budget", "avg-bits=4", "--out", &again]);
    assert_clean_failure(&refused, &["protect", "base plan"]);
}

/// The terrain model's one-step image (seeds 0 and 1 at sigma 80, difficulty 0.3): the
/// network's output.
fn terrain_output(model: &Model) -> ArrayD<f32> {
    let options = SessionOptions { device: Device::Cpu, ..Default::default() };
    let seeds = [0u64, 1];
    let noisy = batch_noise(&[1, 128, 128], &seeds) * 80.0f32;
    let sigma = ArrayD::from_elem(IxDyn(&[2]), 80.0f32);
    let difficulty = ArrayD::from_elem(IxDyn(&[2]), 0.3f32);
    let mut session = Session::new(model, &options).unwrap();
    let feeds = [("noisy", noisy.view()), ("sigma", sigma.view()), ("difficulty", difficulty.view())];
    session.run(&feeds, &[]).unwrap().swap_remove(0)
}

/// `model` with the weight of `layer` replaced by `float`'s, fake-quantized at `bits` (default
/// quantizer, scales per output channel).
fn with_weight(model: &Model, float: &Model, layer: &str, bits: u8) -> Model {
    let weight = weight_of(float, layer);
    let original = float.graph().initializer.iter().find(|t| t.name() == weight).unwrap();
    let quantizer = WeightQuantizer::new(&QuantizerSpec::default().weight, bits, 0);
    let fq = quantizer.fake_quantize(tensor_to_f32(original).unwrap().view()).unwrap();
    let mut changed = model.clone();
    let tensor = changed.graph_mut().initializer.iter_mut().find(|t| t.name() == weight).unwrap();
    *tensor = tensor_from_f32(&weight, &fq, DataType::F32);
    changed
}

fn sqnr_db(fp: &ArrayD<f32>, probe: &ArrayD<f32>) -> f64 {
    let signal: f64 = fp.iter().map(|&v| f64::from(v).powi(2)).sum();
    let noise: f64 = fp.iter().zip(probe.iter()).map(|(&a, &b)| (f64::from(b) - f64::from(a)).powi(2)).sum();
    10.0 * (signal / noise).log10()
}

/// The weight initializer read by the node named `layer`.
fn weight_of(model: &Model, layer: &str) -> String {
    let node = model.graph().node.iter().find(|n| n.name() == layer).unwrap();
    node.input[1].clone()
}
