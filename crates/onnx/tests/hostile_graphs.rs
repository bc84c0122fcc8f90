//! Malformed graphs that hung or panicked layer discovery (found while adding `make fuzz`): each is
//! now refused or read, in bounded time.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_onnx::builder::{Dim, GraphBuilder};
use bitsearch_onnx::pb::TensorProto;
use bitsearch_onnx::{DataType, Model, discover_layers, tensor_to_f32};
use bitsearch_types::Component;
use std::path::Path;
use std::time::Duration;

/// `discover_layers` on the model decoded from its bytes, as the loader sees a file; a hang
/// fails after 10 s instead of stalling the tests.
fn discover(model: Model) -> Result<usize, String> {
    let bytes = model.to_bytes();
    within_seconds(move || {
        let model = Model::from_bytes(&bytes, Path::new("hostile.onnx")).map_err(|e| e.to_string())?;
        discover_layers(&model, Component::Unet).map(|l| l.len()).map_err(|e| e.to_string())
    })
}

/// `work`'s answer, failing the test when it takes past 10 s (a hang).
fn within_seconds(work: impl FnOnce() -> Result<usize, String> + Send + 'static) -> Result<usize, String> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(work());
    });
    receive.recv_timeout(Duration::from_secs(10)).expect("discover_layers returns")
}

/// x → Conv(w) → y, `w` an initializer of `dims` with no data.
fn conv_with_weight_dims(dims: Vec<i64>) -> Model {
    let mut b = GraphBuilder::new("hostile");
    let x = b.input("x", DataType::F32, &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)]);
    let w = b.initializer("w", ndarray::ArrayD::zeros(ndarray::IxDyn(&[1, 1, 1, 1])));
    let y = b.node("conv", "Conv", &[&x, &w], &[]);
    b.output(&y, DataType::F32, &[Dim::Fixed(1)]);
    let mut model = b.build();
    model.graph_mut().initializer[0] = TensorProto { dims, raw_data: None, ..model.graph().initializer[0].clone() };
    model
}

#[test]
fn a_value_that_feeds_the_node_writing_it_is_refused_on_load_and_ends_the_role_walk() {
    // Identity(loop) → loop: walking back from the Conv's input through transparent ops once
    // never reached a producer outside the cycle; the loader now refuses the graph first.
    let mut b = GraphBuilder::new("cycle");
    let x = b.input("x", DataType::F32, &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)]);
    let w = b.initializer("w", ndarray::ArrayD::zeros(ndarray::IxDyn(&[1, 1, 1, 1])));
    let mut model = {
        let y = b.node("conv", "Conv", &[&x, &w], &[]);
        b.output(&y, DataType::F32, &[Dim::Fixed(1)]);
        b.build()
    };
    let graph = model.graph_mut();
    graph.node[0].input[0] = "loop".into();
    let identity = bitsearch_onnx::pb::NodeProto {
        op_type: Some("Identity".into()),
        input: vec!["loop".into()],
        output: vec!["loop".into()],
        ..Default::default()
    };
    graph.node.insert(0, identity);
    // A graph built in memory skips the loader's checks: the walk itself must still end.
    let in_memory = model.clone();
    assert_eq!(
        within_seconds(move || discover_layers(&in_memory, Component::Unet)
            .map(|l| l.len())
            .map_err(|e| e.to_string())),
        Ok(1)
    );
    let message = discover(model).unwrap_err();
    assert!(message.contains("'Identity_0' (Identity) reads its own output 'loop'"), "{message}");
}

#[test]
fn a_weight_shape_past_any_memory_is_refused_naming_the_tensor() {
    for dims in [vec![1 << 32, 1 << 32], vec![1 << 62, 4], vec![1 << 61, 1, 1, 1]] {
        let message = discover(conv_with_weight_dims(dims.clone())).unwrap_err();
        assert!(message.contains("'w'") && message.contains("more values"), "{dims:?}: {message}");
    }
    // One value in range, the data's length still decides.
    let t = TensorProto { dims: vec![1 << 60, 2], data_type: Some(DataType::F64.to_onnx()), ..Default::default() };
    assert!(tensor_to_f32(&t).unwrap_err().to_string().contains("more values"));
}

#[test]
fn declared_input_shapes_past_any_memory_still_rank_the_inputs() {
    let mut model = conv_with_weight_dims(vec![1, 1, 1, 1]);
    let huge = bitsearch_onnx::builder::value_info(
        "x",
        DataType::F32,
        &(0..4).map(|_| Dim::Fixed(1 << 40)).collect::<Vec<_>>(),
    );
    model.graph_mut().input[0] = huge;
    assert_eq!(discover(model), Ok(1));
}
