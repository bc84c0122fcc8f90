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
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let model = Model::from_bytes(&bytes, Path::new("hostile.onnx")).map_err(|e| e.to_string());
        let _ = send.send(model.and_then(|m| discover_layers(&m, Component::Unet).map_err(|e| e.to_string())));
    });
    let layers = receive.recv_timeout(Duration::from_secs(10)).expect("discover_layers returns");
    layers.map(|l| l.len())
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
fn a_value_that_feeds_the_node_writing_it_ends_the_role_walk() {
    // Identity(loop) → loop: walking back from the Conv's input through transparent ops
    // never reached a producer outside the cycle.
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
    assert_eq!(discover(model), Ok(1));
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
