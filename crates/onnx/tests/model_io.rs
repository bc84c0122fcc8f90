//! Reading and writing models: inline and external data round trips, and the errors a user
//! sees for files that are not ONNX models.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_onnx::builder::{Attr, Dim, GraphBuilder};
use bitsearch_onnx::{DataType, ExternalData, Model, OnnxError, discover_layers};
use bitsearch_types::{Component, LayerKind, Role};
use ndarray::{ArrayD, IxDyn};

fn ramp(shape: &[usize], scale: f32) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| ((i * 7919) % 97) as f32 * scale - 0.3).collect()).unwrap()
}

/// x[B,2,6,6] → Conv(4, 3×3) → Relu → Flatten → Gemm(transB) → y[B,3]
fn small_model() -> Model {
    let mut b = GraphBuilder::new("small");
    let x = b.input("x", DataType::F32, &[Dim::sym("batch"), Dim::Fixed(2), Dim::Fixed(6), Dim::Fixed(6)]);
    let w = b.initializer("conv.weight", ramp(&[4, 2, 3, 3], 0.01));
    let bias = b.initializer("conv.bias", ramp(&[4], 0.1));
    let c = b.node("conv", "Conv", &[&x, &w, &bias], &[Attr::Ints("pads", vec![1, 1, 1, 1])]);
    let r = b.node("relu", "Relu", &[&c], &[]);
    let f = b.node("flatten", "Flatten", &[&r], &[Attr::Int("axis", 1)]);
    let fc = b.initializer_typed("fc.weight", &ramp(&[3, 144], 0.001), DataType::F16);
    let fc_f32 = b.node("fc.cast", "Cast", &[&fc], &[Attr::Int("to", 1)]);
    let y = b.node("fc", "Gemm", &[&f, &fc_f32], &[Attr::Int("transB", 1)]);
    b.output(&y, DataType::F32, &[Dim::sym("batch"), Dim::Fixed(3)]);
    b.build()
}

#[test]
fn inline_save_then_load_gives_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model();
    let path = dir.path().join("m.onnx");
    model.save(&path, ExternalData::Inline).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.proto, model.proto);
    assert_eq!(std::fs::read(&path).unwrap(), model.to_bytes());
}

#[test]
fn external_data_round_trips_and_keeps_the_model_file_small() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model();
    let path = dir.path().join("m.onnx");
    model.save(&path, ExternalData::Always { min_bytes: 16 }).unwrap();
    let data = dir.path().join("m.onnx.data");
    let weights = 4 * (4 * 2 * 9 + 4) + 2 * 3 * 144;
    // Each tensor starts 64-byte aligned, so a reader can use the mapped bytes in place.
    let stored = std::fs::metadata(&data).unwrap().len();
    assert!(stored >= weights && stored < weights + 64 * 4, "{stored} bytes for {weights} of weights");
    for t in &bitsearch_onnx::Model::load(&path).unwrap().graph().initializer {
        if let Some(raw) = t.raw_data.as_ref().filter(|r| r.len() >= 16) {
            assert_eq!(raw.as_ptr().align_offset(64), 0, "{}", t.name());
        }
    }
    assert!(std::fs::metadata(&path).unwrap().len() < 1000, "weights must live in the data file");
    assert_eq!(Model::load(&path).unwrap().proto, model.proto);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn damaged_external_data_is_reported_with_the_tensor_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    small_model().save(&path, ExternalData::Always { min_bytes: 16 }).unwrap();
    let data = dir.path().join("m.onnx.data");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let message = Model::load(&path).unwrap_err().to_string();
    assert!(message.contains("m.onnx") && message.contains("fc.weight") && message.contains("bytes"), "{message}");
    std::fs::remove_file(&data).unwrap();
    let message = Model::load(&path).unwrap_err().to_string();
    assert!(message.contains("cannot open") && message.contains("conv.weight"), "{message}");
}

#[test]
fn external_locations_outside_the_model_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = small_model();
    let tensor = &mut model.graph_mut().initializer[0];
    tensor.raw_data = None;
    tensor.set_data_location(bitsearch_onnx::pb::tensor_proto::DataLocation::External);
    tensor.external_data = vec![bitsearch_onnx::pb::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("../secret.bin".into()),
    }];
    let path = dir.path().join("m.onnx");
    model.save(&path, ExternalData::Inline).unwrap();
    let err = Model::load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::ExternalData { .. }), "{err}");
    assert!(err.to_string().contains("relative path inside the model folder"), "{err}");
}

#[test]
fn files_that_are_not_onnx_models_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_model().to_bytes();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("empty.onnx", vec![], "empty"),
        ("text.onnx", b"this is not a model\n".to_vec(), "not an ONNX model"),
        ("truncated.onnx", bytes[..bytes.len() - 300].to_vec(), "not an ONNX model"),
        ("nograph.onnx", vec![0x08, 0x08], "no graph"),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let message = Model::load(&path).unwrap_err().to_string();
        assert!(message.contains(name) && message.contains(expected), "{name}: {message}");
    }
    let missing = Model::load(dir.path().join("missing.onnx")).unwrap_err().to_string();
    assert!(missing.contains("missing.onnx") && missing.contains("cannot read"), "{missing}");
}

#[test]
fn layers_carry_weights_channel_axes_and_parameter_counts() {
    let layers = discover_layers(&small_model(), Component::Unet).unwrap();
    // The Gemm's weight passes through a Cast: it is not an initializer, so not overridable.
    assert_eq!(layers.len(), 1, "{layers:?}");
    let conv = &layers[0];
    assert_eq!((conv.op.as_str(), conv.role, conv.kind), ("Conv", Role::Conv, LayerKind::Weight));
    assert_eq!((conv.params, conv.channel_axis, conv.weight.as_deref()), (72, Some(0), Some("conv.weight")));
}

#[test]
fn gemm_and_matmul_channel_axes_follow_the_weight_layout() {
    let mut b = GraphBuilder::new("linear");
    let x = b.input("x", DataType::F32, &[Dim::Fixed(2), Dim::Fixed(8)]);
    let w1 = b.initializer("w1", ramp(&[8, 5], 0.01));
    let h = b.node("gemm", "Gemm", &[&x, &w1], &[]);
    let w2 = b.initializer("w2", ramp(&[3, 5], 0.01));
    let g = b.node("gemm_t", "Gemm", &[&h, &w2], &[Attr::Int("transB", 1)]);
    let w3 = b.initializer("w3", ramp(&[3, 4], 0.01));
    let y = b.node("matmul", "MatMul", &[&g, &w3], &[]);
    b.output(&y, DataType::F32, &[Dim::Fixed(2), Dim::Fixed(4)]);
    let layers = discover_layers(&b.build(), Component::Unet).unwrap();
    let axes: Vec<_> = layers.iter().map(|l| (l.name.as_str(), l.channel_axis, l.params)).collect();
    assert_eq!(axes, [("gemm", Some(1), 40), ("gemm_t", Some(0), 15), ("matmul", Some(1), 12)]);
}
