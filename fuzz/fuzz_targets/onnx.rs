//! The ONNX loader as `inspect`, `sensitivity` and `quantize` start: decode and check a model,
//! discover its layers and read their weights.
#![no_main]

use bitsearch_onnx::{Model, discover_layers, tensor_to_f32};
use bitsearch_types::Component;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

// main installs the same hook: a panic inside a decoding boundary is an error there, any other
// still reaches libFuzzer's aborting hook.
fuzz_target!(init: bitsearch_types::quiet_caught_panics(), |data: &[u8]| {
    // An Err is a refused model; only panics, aborts, hangs and OOMs are findings.
    let Ok(model) = Model::from_bytes(data, Path::new("fuzz.onnx")) else { return };
    let Ok(layers) = discover_layers(&model, Component::Unet) else { return };
    for name in layers.iter().filter_map(|l| l.weight.as_deref()) {
        if let Some(t) = model.graph().initializer.iter().find(|t| t.name() == name) {
            let _ = tensor_to_f32(t);
        }
    }
});
