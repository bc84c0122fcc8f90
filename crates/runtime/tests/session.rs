//! Sessions on a tiny model the test builds: weight overrides without a rebuild, exact
//! restoration, input checking, device choice, and models read back from external data.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_onnx::{ExternalData, Model, discover_layers};
use bitsearch_runtime::{ActiveDevice, Device, RuntimeError, Session, SessionOptions};
use bitsearch_types::Component;
use ndarray::{ArrayD, IxDyn};

fn input(batch: usize) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[batch, 3, 8, 8]), |i| ((i[1] * 64 + i[2] * 8 + i[3] + i[0]) as f32 * 0.37).sin())
}

fn weights(model: &Model) -> Vec<(String, ArrayD<f32>)> {
    let view = bitsearch_onnx::GraphView::new(model.graph());
    discover_layers(model, Component::Unet)
        .unwrap()
        .into_iter()
        .filter_map(|l| l.weight)
        .map(|w| {
            let values = bitsearch_onnx::tensor_to_f32(view.initializer(&w).unwrap()).unwrap();
            (w, values)
        })
        .collect()
}

fn cpu_session(model: &Model, overridable: Vec<String>) -> Session {
    Session::new(model, &SessionOptions { device: Device::Cpu, overridable, ..Default::default() }).unwrap()
}

#[test]
fn overriding_a_weight_changes_the_output_and_dropping_it_restores_it_exactly() {
    let model = bitsearch_fixtures::conv_net();
    let weights = weights(&model);
    let names: Vec<String> = weights.iter().map(|(n, _)| n.clone()).collect();
    let mut session = cpu_session(&model, names);
    let x = input(2);
    let feeds = [("x", x.view())];
    let reference = session.run(&feeds, &[]).unwrap();
    for (name, original) in &weights {
        let halved = original.mapv(|v| v * 0.5);
        let changed = session.run(&feeds, &[(name, halved.view())]).unwrap();
        assert_ne!(changed[0], reference[0], "overriding {name} must change the output");
        // Same session: no override, then the stored values given explicitly.
        assert_eq!(session.run(&feeds, &[]).unwrap(), reference, "{name}: restoring must be bit-exact");
        assert_eq!(session.run(&feeds, &[(name, original.view())]).unwrap(), reference, "{name}");
    }
    // The overridable session computes what a plain session computes.
    let plain = cpu_session(&model, vec![]).run(&feeds, &[]).unwrap();
    let diff = (&plain[0] - &reference[0]).mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b));
    assert!(diff < 1e-5, "plain vs overridable session differ by {diff}");
}

#[test]
fn strided_views_feed_the_same_values_as_contiguous_ones() {
    // Contiguous f32 is lent to ONNX Runtime in place; any other layout is copied first.
    let model = bitsearch_fixtures::conv_net();
    let (weight, values) = weights(&model).remove(0);
    let mut session = cpu_session(&model, vec![weight.clone()]);
    let (x, halved) = (input(2), values.mapv(|v| v * 0.5));
    // Reversed axes of a reversed copy: the same values, not in standard layout.
    let (x_t, halved_t) = (x.t().as_standard_layout().into_owned(), halved.t().as_standard_layout().into_owned());
    let (x_strided, halved_strided) = (x_t.t(), halved_t.t());
    assert!(!x_strided.is_standard_layout() && !halved_strided.is_standard_layout());
    let contiguous = session.run(&[("x", x.view())], &[(&weight, halved.view())]).unwrap();
    let strided = session.run(&[("x", x_strided)], &[(&weight, halved_strided)]).unwrap();
    assert_eq!(contiguous, strided);
    assert_ne!(contiguous, session.run(&[("x", x.view())], &[]).unwrap(), "the override took effect");
}

#[test]
fn bad_inputs_and_overrides_are_errors_naming_the_input() {
    let model = bitsearch_fixtures::conv_net();
    let (weight, values) = weights(&model).remove(0);
    let mut session = cpu_session(&model, vec![weight.clone()]);
    let x = input(1);
    let wrong = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 4, 4]));
    type Feeds<'a> = Vec<(&'a str, ndarray::ArrayViewD<'a, f32>)>;
    let cases: Vec<(Feeds, Feeds, &str)> = vec![
        (vec![], vec![], "'x': missing"),
        (vec![("x", x.view()), ("y", x.view())], vec![], "'y': the model has no such input"),
        (vec![("x", wrong.view())], vec![], "does not match the declared [?, 3, 8, 8]"),
        (vec![("x", x.view())], vec![("head.bias", values.view())], "not an overridable weight"),
        (vec![("x", x.view())], vec![(weight.as_str(), wrong.view())], "override has shape"),
    ];
    for (inputs, overrides, expected) in cases {
        let err = session.run(&inputs, &overrides).unwrap_err();
        assert!(matches!(err, RuntimeError::Input { .. }), "{err}");
        assert!(err.to_string().contains(expected), "expected '{expected}' in: {err}");
    }
    let err = Session::new(&model, &SessionOptions { overridable: vec!["nope".into()], ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("'nope' is not an initializer"), "{err}");
}

#[test]
fn a_model_written_with_external_data_runs_identically() {
    let model = bitsearch_fixtures::conv_net();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.onnx");
    model.save(&path, ExternalData::Always { min_bytes: 0 }).unwrap();
    let reloaded = Model::load(&path).unwrap();
    let x = input(3);
    let a = cpu_session(&model, vec![]).run(&[("x", x.view())], &[]).unwrap();
    let b = cpu_session(&reloaded, vec![]).run(&[("x", x.view())], &[]).unwrap();
    assert_eq!(a, b);
}

#[test]
fn device_auto_falls_back_to_cpu_and_cuda_is_strict() {
    let model = bitsearch_fixtures::conv_net();
    let auto = Session::new(&model, &SessionOptions::default()).unwrap();
    match Session::new(&model, &SessionOptions { device: Device::Cuda, ..Default::default() }) {
        // A machine with the GPU build: auto must have picked CUDA too.
        Ok(cuda) => assert_eq!((cuda.device(), auto.device()), (ActiveDevice::Cuda, ActiveDevice::Cuda)),
        Err(err) => {
            assert_eq!(auto.device(), ActiveDevice::Cpu);
            assert!(err.to_string().contains("CUDA provider"), "{err}");
        }
    }
}

#[test]
fn a_graph_input_asked_for_as_an_output_comes_back_as_fed() {
    // ONNX Runtime returns a graph input as the caller's own buffer, gone once the run's inputs
    // are dropped; the session returns it through a copy, under the name it was asked by.
    let model = bitsearch_fixtures::conv_net();
    let output = model.graph().output[0].name().to_string();
    let extra = vec!["x".to_string(), output.clone(), "x".to_string()];
    let options = SessionOptions { device: Device::Cpu, extra_outputs: extra, ..Default::default() };
    let mut session = Session::new(&model, &options).unwrap();
    assert_eq!(session.outputs(), [output.clone(), "x".into(), output, "x".into()]);
    for batch in [1, 3, 2] {
        let x = input(batch);
        let out = session.run(&[("x", x.view())], &[]).unwrap();
        assert_eq!((&out[1], &out[3]), (&x, &x), "batch {batch}");
        assert_eq!(out[0], out[2]);
    }
}

/// `y = (x · W + b) · cast(H)` with W, b f32 and H stored f16, each weight large enough
/// (256 KiB, 128 KiB) that a session over the file shares it rather than copying it.
fn wide_model() -> Model {
    use bitsearch_onnx::DataType;
    use bitsearch_onnx::builder::{Attr, Dim, GraphBuilder};
    let n = 256;
    let values = |seed: f32| ArrayD::from_shape_fn(IxDyn(&[n, n]), |i| ((i[0] * n + i[1]) as f32 * seed).sin() * 0.1);
    let mut b = GraphBuilder::new("wide");
    let x = b.input("x", DataType::F32, &[Dim::sym("batch"), Dim::Fixed(n)]);
    let w = b.initializer("w", values(0.37));
    let bias = b.initializer("bias", ArrayD::from_elem(IxDyn(&[n]), 0.25));
    let h = b.initializer_typed("h", &values(0.11), DataType::F16);
    let y = b.node("linear", "MatMul", &[&x, &w], &[]);
    let y = b.node("add_bias", "Add", &[&y, &bias], &[]);
    let h = b.node("cast_h", "Cast", &[&h], &[Attr::Int("to", i64::from(DataType::F32.to_onnx()))]);
    let y = b.node("out", "MatMul", &[&y, &h], &[]);
    b.output(&y, DataType::F32, &[Dim::sym("batch"), Dim::Fixed(n)]);
    b.build()
}

#[test]
fn weights_read_in_place_from_the_data_file_compute_what_copied_weights_compute() {
    let model = wide_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.onnx");
    model.save(&path, ExternalData::Always { min_bytes: 1024 }).unwrap();
    let loaded = Model::load(&path).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[3, 256]), |i| ((i[0] * 256 + i[1]) as f32 * 0.013).cos());
    let feeds = [("x", x.view())];
    let copied = cpu_session(&model, vec![]).run(&feeds, &[]).unwrap();
    // The Cast of `h` is folded while the session is built: the folding must read the file's
    // bytes, not a stand-in.
    let mut shared = cpu_session(&loaded, vec!["w".into()]);
    let in_place = shared.run(&feeds, &[]).unwrap();
    let diff = (&copied[0] - &in_place[0]).mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b));
    assert!(diff < 1e-5, "weights read in place differ from copied ones by {diff}");
    // A shared weight stays overridable, and its stored values come back exactly.
    let zeros = ArrayD::zeros(IxDyn(&[256, 256]));
    let overridden = shared.run(&feeds, &[("w", zeros.view())]).unwrap();
    assert_ne!(overridden[0], in_place[0]);
    assert_eq!(shared.run(&feeds, &[]).unwrap(), in_place);
    // Sessions outlive the model they were built from: they hold the mapping themselves.
    drop(loaded);
    assert_eq!(shared.run(&feeds, &[]).unwrap(), in_place);
}
