//! The zoo's tiny real architectures (crates/fixtures/src/zoo) as users bring them: a folder
//! holding `unet/` or `transformer/` alone, float16 or float32, run through the whole chain.

use crate::common::{assert_clean_failure, assert_success, bitsearch};
use bitsearch_fixtures::zoo::{self, Dtype};
use bitsearch_onnx::{DataType, Model, declared_elem_type};
use bitsearch_records::{SensitivityTable, read_evals};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `preset` written as `dir/name/{unet,transformer}/`; the folder.
fn write(preset: &str, dtype: Dtype, dir: &Path, name: &str) -> PathBuf {
    let folder = dir.join(name);
    zoo::write_denoiser(&zoo::preset(preset).unwrap(), dtype, 3, &folder).unwrap();
    folder
}

/// The weight layers `inspect` lists for a model folder.
fn layers(folder: &Path) -> BTreeSet<String> {
    let json = assert_success(&bitsearch(&["inspect", s(folder), "--format", "json"]));
    let layers: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    layers.iter().filter(|l| !l["weight"].is_null()).map(|l| l["name"].as_str().unwrap().to_string()).collect()
}

/// sensitivity → solve at 6 mean bits → quantize → eval on held-out seeds, for a denoiser folder
/// taking a text condition; returns the quantized folder and the SQNR eval measured.
fn chain(folder: &Path, dir: &Path, text_len: &str) -> (PathBuf, f64) {
    let (table, plan, out, record) =
        (dir.join("s.parquet"), dir.join("plan.yaml"), dir.join("q"), dir.join("eval.parquet"));
    assert_success(&bitsearch(&[
        "sensitivity",
        s(folder),
        "--out",
        s(&table),
        "--w-bits",
        "4,8",
        "--condition",
        "encoder_hidden_states=0.1",
        "--dim",
        &format!("sequence_length={text_len}"),
        "--prediction",
        "epsilon",
        "--device",
        "cpu",
    ]));
    let probed: BTreeSet<String> =
        SensitivityTable::read(&table).unwrap().rows.iter().map(|r| r.layer.name.clone()).collect();
    assert_eq!(probed, layers(folder), "every weight layer is probed");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--budget", "avg-bits=6", "--out", s(&plan)]));
    assert_success(&bitsearch(&["quantize", s(folder), "--plan", s(&plan), "--out", s(&out), "--device", "cpu"]));
    let args = ["eval", s(folder), s(&out), "--out", s(&record), "--seeds", "100,101", "--repeats", "1"];
    assert_success(&bitsearch(&[&args[..], &["--device", "cpu"]].concat()));
    let (_, records) = read_evals(&record).unwrap();
    assert_eq!(records[0].nonfinite, 0);
    (out, records[0].sqnr_db)
}

#[test]
fn a_float16_unet_is_quantized_in_its_own_float_type() {
    let dir = tempfile::tempdir().unwrap();
    let f16 = write("tiny-sd15", Dtype::F16, dir.path(), "f16");
    let f32 = write("tiny-sd15", Dtype::F32, dir.path(), "f32");
    // Weights stored in float16 are quantizable layers, the same ones as in float32.
    assert!(layers(&f16).len() > 20);
    assert_eq!(layers(&f16), layers(&f32));
    let (out, sqnr) = chain(&f16, dir.path(), "4");
    assert!(sqnr > 10.0, "a 6-bit plan keeps {sqnr} dB");
    // The written graph reads and writes float16, as the model it came from.
    let quantized = Model::load(bitsearch_pipeline::workload::denoiser_file(&out)).unwrap();
    let sample = quantized.graph().input.iter().find(|i| i.name() == "sample").unwrap();
    assert_eq!(declared_elem_type(sample).and_then(DataType::from_onnx), Some(DataType::F16));
}

#[test]
fn a_dit_transformer_folder_runs_the_chain_and_samples_its_prediction_half() {
    let dir = tempfile::tempdir().unwrap();
    let dit = write("tiny-pixart", Dtype::F32, dir.path(), "dit");
    let names = layers(&dit);
    assert!(names.iter().any(|n| n.contains("attn1.to_q")) && names.iter().any(|n| n.contains("ff.net")), "{names:?}");
    // Learned sigma: 8 output channels for a 4-channel latent; samples keep the first 4.
    let samples = dir.path().join("samples");
    let args = ["sample", s(&dit), "--out", s(&samples), "--num", "1", "--npy", "--device", "cpu"];
    assert_success(&bitsearch(
        &[&args[..], &["--condition", "encoder_hidden_states=0.1", "--dim", "sequence_length=3"]].concat(),
    ));
    let values: ndarray::ArrayD<f32> = ndarray_npy::read_npy(samples.join("samples.npy")).unwrap();
    assert_eq!(values.shape(), &[1, 4, 8, 8]);
    let (lowbit, sqnr) = chain(&dit, dir.path(), "3");
    assert!(sqnr > 10.0, "a 6-bit plan keeps {sqnr} dB");

    // The same plan with its MatMul layers as MatMulNBits computes what the plan simulated in
    // float computes (ONNX Runtime's own fusion of the lowbit form computes in int8 instead).
    let nbits = dir.path().join("nbits");
    let plan = dir.path().join("plan.yaml");
    let args = ["quantize", s(&dit), "--plan", s(&plan), "--out", s(&nbits), "--storage", "matmulnbits"];
    assert_success(&bitsearch(&[&args[..], &["--device", "cpu"]].concat()));
    let count = |folder: &Path| {
        let model = Model::load(bitsearch_pipeline::workload::denoiser_file(folder)).unwrap();
        model.graph().node.iter().filter(|n| n.op_type() == "MatMulNBits").count()
    };
    let int = |l: &&bitsearch_records::PlanLayer| {
        matches!(l.weight_form(0), Some(bitsearch_types::WeightFormat::Int { bits: 4 | 8, split: false, .. }))
    };
    let layers = bitsearch_records::Plan::read(&plan).unwrap().layers;
    let quantized_matmuls = layers.iter().filter(int).filter(|l| l.layer.op == "MatMul").count();
    assert!(quantized_matmuls > 5, "the plan quantizes MatMul layers");
    assert_eq!(count(&nbits), quantized_matmuls, "every 4- and 8-bit MatMul layer is a MatMulNBits node");
    assert_eq!(count(&lowbit), 0);
    let record = dir.path().join("nbits.parquet");
    let args = ["eval", s(&dit), s(&nbits), "--simulate", s(&plan), "--out", s(&record), "--seeds", "100,101"];
    assert_success(&bitsearch(&[&args[..], &["--repeats", "0", "--device", "cpu"]].concat()));
    let (_, records) = read_evals(&record).unwrap();
    let (written, simulated) = (records[0].sqnr_db, records[1].sqnr_db);
    assert!((written - simulated).abs() < 0.01, "MatMulNBits {written} dB, simulated {simulated} dB");
}
#[test]
fn a_lone_denoiser_without_a_config_names_the_sizes_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write("tiny-sd15", Dtype::F32, dir.path(), "unet");
    std::fs::remove_file(folder.join("unet/config.json")).unwrap();
    let model = folder.join("unet/model.onnx");
    assert_clean_failure(&bitsearch(&["inspect", s(&model)]), &["height, width", "--dim height=SIZE"]);
    let given = bitsearch(&["inspect", s(&model), "--dim", "height=8", "--dim", "width=8"]);
    assert_success(&given);
}

#[test]
fn a_tensor_condition_comes_from_an_npy_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write("tiny-sd15", Dtype::F32, dir.path(), "unet");
    let npy = |name: &str, values: ndarray::ArrayD<f32>| {
        let path = dir.path().join(name);
        ndarray_npy::write_npy(&path, &values).unwrap();
        path
    };
    let sample = |name: &str, condition: &[&str]| {
        let out = dir.path().join(name);
        let args = ["sample", s(&folder), "--out", s(&out), "--num", "2", "--npy", "--device", "cpu"];
        assert_success(&bitsearch(&[&args[..], condition].concat()));
        ndarray_npy::read_npy::<_, ndarray::ArrayD<f32>>(out.join("samples.npy")).unwrap()
    };
    // Three tokens of 32 features (the UNet's cross-attention width), the same value everywhere:
    // what the constant condition feeds at sequence_length 3.
    let constant = npy("constant.npy", ndarray::ArrayD::from_elem(ndarray::IxDyn(&[3, 32]), 0.1));
    let from_file = sample("file", &["--condition", &format!("encoder_hidden_states=@{}", s(&constant))]);
    let from_value = sample("value", &["--condition", "encoder_hidden_states=0.1", "--dim", "sequence_length=3"]);
    let largest = from_file.iter().zip(&from_value).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(largest < 1e-5, "file and value differ by {largest}");
    let varied = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[1, 3, 32]), |i| (i[1] * 32 + i[2]) as f32 / 96.0);
    let varied = npy("varied.npy", varied);
    let other = sample("varied", &["--condition", &format!("encoder_hidden_states=@{}", s(&varied))]);
    assert!(other.iter().zip(&from_value).any(|(a, b)| (a - b).abs() > 1e-3), "the tensor reaches the model");

    // Hostile files are refused by name before anything runs.
    let refuse = |file: &Path, expected: &[&str]| {
        let out = dir.path().join("refused");
        let condition = format!("encoder_hidden_states=@{}", s(file));
        let args = ["sample", s(&folder), "--out", s(&out), "--npy", "--condition", &condition, "--device", "cpu"];
        assert_clean_failure(&bitsearch(&args), expected);
    };
    let nan = npy("nan.npy", ndarray::ArrayD::from_elem(ndarray::IxDyn(&[3, 32]), f32::NAN));
    refuse(&nan, &["conditions.encoder_hidden_states", "nan.npy", "values[0, 0]: NaN is not finite"]);
    let wrong = npy("wrong.npy", ndarray::ArrayD::from_elem(ndarray::IxDyn(&[3, 31]), 0.1));
    refuse(&wrong, &["encoder_hidden_states", "[3, 31]", "[?, 32]"]);
    // A header that claims far more values than the file holds.
    let mut lying = std::fs::read(&constant).unwrap();
    let at = lying.windows(7).position(|w| w == b"(3, 32)").unwrap();
    lying.splice(at..at + 7, *b"(900000, 900000)");
    // The header keeps its length: as many of its padding spaces go.
    let end = at + lying[at..].iter().position(|&b| b == b'\n').unwrap();
    lying.drain(end - 9..end);
    let lying_path = dir.path().join("lying.npy");
    std::fs::write(&lying_path, &lying).unwrap();
    refuse(&lying_path, &["conditions.encoder_hidden_states", "lying.npy", "shape: [900000, 900000] needs"]);
    refuse(&dir.path().join("absent.npy"), &["conditions.encoder_hidden_states", "absent.npy", "cannot read"]);
}

#[test]
fn a_lone_denoisers_inputs_are_checked_before_any_session_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write("tiny-sd15", Dtype::F32, dir.path(), "unet");
    // A node no runtime knows: building a session fails, reading the graph does not.
    let file = folder.join("unet/model.onnx");
    let mut model = Model::load(&file).unwrap();
    let graph = model.graph_mut();
    graph.node.push(bitsearch_onnx::pb::NodeProto {
        name: Some("unknown".into()),
        op_type: Some("NoSuchOperator".into()),
        input: vec!["sample".into()],
        output: vec!["unknown_out".into()],
        ..Default::default()
    });
    let edited = dir.path().join("edited.onnx");
    model.save(&edited, bitsearch_onnx::ExternalData::Inline).unwrap();
    let out = dir.path().join("out");
    let args = ["sample", s(&edited), "--out", s(&out), "--npy", "--dim", "height=8", "--dim", "width=8"];
    let missing = bitsearch(&[&args[..], &["--device", "cpu"]].concat());
    assert_clean_failure(&missing, &["input 'encoder_hidden_states' needs a value"]);
    let unknown = bitsearch(&[&args[..], &["--condition", "colour=1", "--device", "cpu"]].concat());
    assert_clean_failure(&unknown, &["conditions.colour", "no such input"]);
    // Given every input, the session is built and refuses the node.
    let given = bitsearch(&[&args[..], &["--condition", "encoder_hidden_states=0.1", "--device", "cpu"]].concat());
    assert_clean_failure(&given, &["NoSuchOperator"]);
}
