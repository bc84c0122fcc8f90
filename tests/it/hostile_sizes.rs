//! Hostile sizes and values through the commands (issue 39): a graph with a cycle, dimensions
//! and sweeps too large to allocate, an .npy header that lies about its size, unknown dimension
//! names and values that are not finite. Each ends with exit status 2 and one line naming the
//! file or flag and the field, before anything is allocated or written; never a panic, an
//! abort or a hang.

use crate::common::{assert_clean_failure, bitsearch, shapes_model, terrain_model};
use bitsearch_onnx::DataType;
use bitsearch_onnx::builder::{Dim, GraphBuilder};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `bitsearch sample MODEL --out OUT --device cpu` with `extra` flags.
fn sample_on_cpu(model: &Path, out: &Path, extra: &[&str]) -> Output {
    bitsearch(&[&["sample", s(model), "--out", s(out), "--device", "cpu"][..], extra].concat())
}

/// Runs bitsearch with `args`, killing it if it is still running after 60 s (a hang).
fn bitsearch_or_kill(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitsearch"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bitsearch binary runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("bitsearch {args:?} still ran after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A model whose node `a` reads `loop_input` beside its input: `x → a → b → c`.
fn model_reading(dir: &Path, loop_input: &str) -> std::path::PathBuf {
    let mut b = GraphBuilder::new("cyclic");
    let x = b.input("x", DataType::F32, &[Dim::sym("batch"), Dim::Fixed(4)]);
    let w = b.initializer("w", ndarray::ArrayD::from_elem(ndarray::IxDyn(&[4, 4]), 0.5));
    b.node("a", "Add", &[&x, loop_input], &[]);
    b.node("b", "MatMul", &["a", &w], &[]);
    b.node("c", "Relu", &["b"], &[]);
    b.output("c", DataType::F32, &[Dim::sym("batch"), Dim::Fixed(4)]);
    let path = dir.join(format!("reads_{loop_input}.onnx"));
    b.build().save(&path, bitsearch_onnx::ExternalData::Inline).unwrap();
    path
}

#[test]
fn a_graph_with_a_cycle_is_refused_naming_the_model_and_a_node_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A node reading its own output, then a cycle through two nodes (c only hangs below it).
    for (reads, expected) in [("a", "node 'a' (Add) reads its own output 'a'"), ("b", "lies on a cycle")] {
        let model = model_reading(dir.path(), reads);
        let name = model.file_name().unwrap().to_str().unwrap();
        assert_clean_failure(&bitsearch_or_kill(&["inspect", s(&model)]), &[name, expected, "no cycles"]);
        let sample = bitsearch_or_kill(&["sample", s(&model), "--out", s(&out), "--device", "cpu"]);
        assert_clean_failure(&sample, &[name, expected]);
    }
    assert!(!out.exists());
    // The same graph without the cycle is inspected.
    let acyclic = bitsearch_or_kill(&["inspect", s(&model_reading(dir.path(), "x"))]);
    assert!(acyclic.status.success(), "{}", String::from_utf8_lossy(&acyclic.stderr));
}

#[test]
fn input_sizes_past_memory_are_refused_before_anything_is_allocated() {
    let terrain = terrain_model();
    let shapes = shapes_model();
    let terrain_file = terrain.file_name().unwrap().to_str().unwrap();
    let cases: [(&Path, &str, &str); 3] = [
        (&terrain, terrain_file, "18446744073709551615"),
        (&terrain, terrain_file, "2000000000"),
        (&shapes, "unet/model.onnx", "2000000"),
    ];
    for (model, file, batch) in cases {
        let output = bitsearch(&["inspect", s(model), "--dim", &format!("batch={batch}")]);
        assert_clean_failure(&output, &[file, "input '", &format!("[batch={batch}"), "lower --dim batch"]);
    }

    // A dimension the model declares fixed at 2^31.
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("wide");
    let x = b.input("x", DataType::F32, &[Dim::Fixed(1 << 31), Dim::Fixed(4)]);
    let w = b.initializer("w", ndarray::ArrayD::from_elem(ndarray::IxDyn(&[4, 4]), 0.5));
    let y = b.node("mm", "MatMul", &[&x, &w], &[]);
    b.output(&y, DataType::F32, &[Dim::Fixed(1 << 31), Dim::Fixed(4)]);
    let model = dir.path().join("wide.onnx");
    b.build().save(&model, bitsearch_onnx::ExternalData::Inline).unwrap();
    let output = bitsearch(&["inspect", s(&model)]);
    assert_clean_failure(&output, &["wide.onnx", "input 'x'", "[2147483648, 4]", "the model declares these sizes"]);

    // A denoiser sized by --dim: its noise is refused before it is made.
    let mut b = GraphBuilder::new("denoiser");
    let image = [Dim::sym("batch"), Dim::Fixed(1), Dim::sym("height"), Dim::sym("width")];
    let x = b.input("noisy", DataType::F32, &image);
    b.input("sigma", DataType::F32, &[Dim::sym("batch")]);
    let y = b.node("out", "Identity", &[&x], &[]);
    b.output(&y, DataType::F32, &image);
    let model = dir.path().join("denoiser.onnx");
    b.build().save(&model, bitsearch_onnx::ExternalData::Inline).unwrap();
    let out = dir.path().join("out");
    let dims = ["--dim", "height=100000", "--dim", "width=100000", "--num", "2"];
    let output = bitsearch(&[&["sample", s(&model), "--out", s(&out)][..], &dims[..]].concat());
    assert_clean_failure(&output, &["dims", "input 'noisy'", "[2, 1, 100000, 100000]", "--batch", "--dim"]);
    assert!(!out.exists());
}

#[test]
fn unknown_dimension_names_are_refused_listing_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let terrain = terrain_model();
    let name = terrain.file_name().unwrap().to_str().unwrap();
    let expected = [name, "--dim colour", "no symbolic dimension", "batch"];
    assert_clean_failure(&bitsearch(&["inspect", s(&terrain), "--dim", "colour=3"]), &expected);
    let sample = sample_on_cpu(&terrain, &out, &["--condition", "difficulty=0.5", "--dim", "colour=3"]);
    assert_clean_failure(&sample, &expected);
    // A diffusers folder is sized by height and width alone.
    let shapes = shapes_model();
    let output = sample_on_cpu(&shapes, &out, &["--prompt", "a small red circle on the left", "--dim", "colour=3"]);
    assert_clean_failure(&output, &["--dim colour", "height and width"]);
    assert!(!out.exists());
}

#[test]
fn a_sweep_of_a_billion_points_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("s.parquet");
    bitsearch_fixtures::sensitivity_table(7, 4, &[4, 8], 1).write(&table).unwrap();
    let out = dir.path().join("sweep");
    let output =
        bitsearch(&["solve", "--sensitivity", s(&table), "--sweep", "avg-bits=4..8:1000000000", "--out", s(&out)]);
    assert_clean_failure(&output, &["--sweep", "1000000000 points", "2..=10000"]);
    assert!(!out.exists());
}

/// A float32 .npy file of `shape` with `values`, its header as numpy writes it.
fn npy(path: &Path, shape: &str, values: &[f32]) {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend(header.bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_files_that_lie_about_their_size_or_hold_nan_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = shapes_model();
    let json = dir.path().join("align.json");
    // 200 bytes whose header claims 1e11 images.
    let lying = dir.path().join("lying.npy");
    npy(&lying, "(100000000000, 3, 32, 32)", &[0.5; 30]);
    assert!(std::fs::metadata(&lying).unwrap().len() < 250);
    let nan = dir.path().join("nan.npy");
    let mut values = vec![0.5; 2 * 3 * 2 * 2];
    values[17] = f32::NAN;
    npy(&nan, "(2, 3, 2, 2)", &values);
    let cases =
        [(&lying, "shape: [100000000000, 3, 32, 32] needs 1228800000000000 bytes"), (&nan, "values[1, 1, 0, 1]: NaN")];
    for (file, expected) in cases {
        let output = bitsearch(&["align", s(&shapes), "--images", s(file), "--json", s(&json), "--device", "cpu"]);
        assert_clean_failure(&output, &[s(file), expected]);
    }
    assert!(!json.exists());
    // The same reader takes sample's latents.
    let out = dir.path().join("out");
    let latents = ["--prompt", "a small red circle on the left", "--latents", s(&lying)];
    let output = sample_on_cpu(&shapes, &out, &latents);
    assert_clean_failure(&output, &["lying.npy", "shape: [100000000000"]);
    assert!(!out.exists());
}

#[test]
fn values_that_are_not_finite_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let terrain = terrain_model();
    let shapes = shapes_model();
    let sample = |model: &Path, extra: &[&str]| sample_on_cpu(model, &out, extra);
    for value in ["nan", "inf"] {
        let condition = format!("difficulty={value}");
        assert_clean_failure(&sample(&terrain, &["--condition", &condition]), &["conditions.difficulty", "finite"]);
        let prompt = ["--prompt", "a small red circle on the left", "--guidance", value];
        assert_clean_failure(&sample(&shapes, &prompt), &["guidance", "is not a finite number"]);
    }
    let sigma = ["--condition", "difficulty=0.5", "--sigma-max", "nan"];
    assert_clean_failure(&sample(&terrain, &sigma), &["sigma_max: NaN is not a finite number above sigma_min (0.002)"]);
    assert!(!out.exists());
}
