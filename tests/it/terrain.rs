//! The real terrain consistency UNet: layer census, sampling equal to a direct ONNX Runtime
//! run, write-after-read identity, and weight overrides on one session.

use crate::common::{assert_success, bitsearch, terrain_model};
use bitsearch_onnx::{ExternalData, Model};
use bitsearch_pipeline::denoiser::{DenoiserConfig, DenoiserPipeline};
use bitsearch_pipeline::noise::gaussian;
use bitsearch_pipeline::sampler::SamplerKind;
use bitsearch_runtime::{Device, Session, SessionOptions};
use bitsearch_types::{Layer, LayerKind};
use ndarray::{ArrayD, IxDyn};

fn cpu(model: &Model, overridable: Vec<String>) -> Session {
    Session::new(model, &SessionOptions { device: Device::Cpu, overridable, ..Default::default() }).unwrap()
}

/// noisy = σ·z for seeds 0..batch, σ = 80, difficulty 0.5: the one-step consistency input.
fn one_step_inputs(batch: usize) -> [(&'static str, ArrayD<f32>); 3] {
    let mut noisy = ArrayD::zeros(IxDyn(&[batch, 1, 128, 128]));
    for (i, mut item) in noisy.outer_iter_mut().enumerate() {
        item.assign(&(gaussian(&[1, 128, 128], i as u64) * 80.0));
    }
    [
        ("noisy", noisy),
        ("sigma", ArrayD::from_elem(IxDyn(&[batch]), 80.0)),
        ("difficulty", ArrayD::from_elem(IxDyn(&[batch]), 0.5)),
    ]
}

fn run(
    session: &mut Session,
    inputs: &[(&'static str, ArrayD<f32>)],
    overrides: &[(&str, ndarray::ArrayViewD<f32>)],
) -> ArrayD<f32> {
    let feeds: Vec<_> = inputs.iter().map(|(n, a)| (*n, a.view())).collect();
    session.run(&feeds, overrides).unwrap().remove(0)
}

#[test]
fn inspect_finds_every_layer_with_roles_and_costs() {
    let out = bitsearch(&["inspect", terrain_model().to_str().unwrap(), "--format", "json"]);
    assert_success(&out);
    let layers: Vec<Layer> = serde_json::from_slice(&out.stdout).unwrap();
    let count = |op: &str, kind: LayerKind| layers.iter().filter(|l| l.op == op && l.kind == kind).count();
    assert_eq!(count("Conv", LayerKind::Weight), 196);
    assert_eq!(count("Gemm", LayerKind::Weight), 59);
    assert_eq!(count("Einsum", LayerKind::ActMatMul), 56);
    assert_eq!(layers.len(), 311);
    assert_eq!(layers.iter().map(|l| l.params).sum::<u64>(), 10_402_496);
    assert!(layers.iter().all(|l| l.macs.is_some_and(|m| m > 0)), "every layer has MACs");
    // Each of the 28 attention blocks: a fused qkv projection, scores, values, out projection.
    for role in ["attn_qkv", "attn_scores", "attn_values", "attn_out"] {
        assert_eq!(layers.iter().filter(|l| l.role.as_str() == role).count(), 28, "{role}");
    }
    // Every Gemm reads the time/difficulty embedding, never the noisy image.
    assert!(layers.iter().filter(|l| l.op == "Gemm").all(|l| l.role.as_str() == "embedding"));

    let table = bitsearch(&["inspect", terrain_model().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("10.46 M in the model"), "{text}");
    assert!(text.contains("255 (196 Conv, 59 Gemm)") && text.contains("56 (56 Einsum)"), "{text}");
}

#[test]
fn one_step_sample_equals_a_direct_onnx_runtime_run() {
    let model = Model::load(terrain_model()).unwrap();
    let inputs = one_step_inputs(2);
    let direct = run(&mut cpu(&model, vec![]), &inputs, &[]);

    let config = DenoiserConfig { conditions: vec![("difficulty".into(), 0.5)], ..Default::default() };
    let mut pipeline = DenoiserPipeline::new(cpu(&model, vec![]), &config).unwrap();
    let settings = pipeline.spec().settings(SamplerKind::Consistency, 1, 0.0);
    let sampled = pipeline.generate(&settings, &[0, 1]).unwrap();
    let diff = (&sampled - &direct).mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b));
    assert!(diff <= 1e-5, "pipeline and direct run differ by {diff}");
    // Sample 1 depends on its seed only, not on the batch it ran in.
    let alone = pipeline.generate(&settings, &[1]).unwrap();
    let diff = (&alone.index_axis(ndarray::Axis(0), 0) - &sampled.index_axis(ndarray::Axis(0), 1))
        .mapv(f32::abs)
        .fold(0.0f32, |a, &b| a.max(b));
    assert!(diff <= 1e-4, "batch composition changed a sample by {diff}");

    // The CLI writes the same height field (16-bit PNG: ±1 level of quantization).
    let dir = tempfile::tempdir().unwrap();
    let out = bitsearch(&[
        "sample",
        terrain_model().to_str().unwrap(),
        "--steps",
        "1",
        "--seed",
        "0",
        "--num",
        "2",
        "--condition",
        "difficulty=0.5",
        "--device",
        "cpu",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_success(&out);
    for i in 0..2 {
        let png = image::open(dir.path().join(format!("sample_{i:03}_height16.png"))).unwrap().to_luma16();
        assert!(dir.path().join(format!("sample_{i:03}.png")).is_file());
        for (x, y, pixel) in png.enumerate_pixels() {
            let expected = ((direct[[i, 0, y as usize, x as usize]].clamp(-1.0, 1.0) + 1.0) / 2.0 * 65535.0).round();
            assert!((f32::from(pixel[0]) - expected).abs() <= 1.0, "pixel ({x},{y}) of sample {i}");
        }
    }
}

#[test]
fn write_after_read_gives_identical_outputs() {
    let model = Model::load(terrain_model()).unwrap();
    let inputs = one_step_inputs(1);
    let reference = run(&mut cpu(&model, vec![]), &inputs, &[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, external) in
        [("inline.onnx", ExternalData::Inline), ("external.onnx", ExternalData::Always { min_bytes: 1024 })]
    {
        let path = dir.path().join(name);
        model.save(&path, external).unwrap();
        let reread = Model::load(&path).unwrap();
        assert_eq!(reread.proto, model.proto, "{name}");
        assert_eq!(run(&mut cpu(&reread, vec![]), &inputs, &[]), reference, "{name}");
    }
    // Inline writing reproduces the original bytes' meaning: same size to the byte.
    let original = std::fs::metadata(terrain_model()).unwrap().len();
    assert_eq!(std::fs::metadata(dir.path().join("inline.onnx")).unwrap().len(), original);
}

#[test]
fn one_session_takes_new_weights_per_run_and_restores_exactly() {
    let model = Model::load(terrain_model()).unwrap();
    let layers = bitsearch_onnx::discover_layers(&model, bitsearch_types::Component::Unet).unwrap();
    let view = bitsearch_onnx::GraphView::new(model.graph());
    let weights: Vec<&str> = layers.iter().filter_map(|l| l.weight.as_deref()).collect();
    let mut session = cpu(&model, weights.iter().map(|w| w.to_string()).collect());
    let inputs = one_step_inputs(1);
    let reference = run(&mut session, &inputs, &[]);
    // A convolution in the middle of the network and an embedding layer.
    for layer in [&layers[37], &layers[0]] {
        let name = layer.weight.as_deref().unwrap();
        let original = bitsearch_onnx::tensor_to_f32(view.initializer(name).unwrap()).unwrap();
        // Coarse rounding, as a quantizer would do.
        let scale = original.mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b)) / 7.0;
        let rounded = original.mapv(|v| (v / scale).round() * scale);
        let changed = run(&mut session, &inputs, &[(name, rounded.view())]);
        assert_ne!(changed, reference, "{}", layer.name);
        assert_eq!(run(&mut session, &inputs, &[]), reference, "{}: restore must be exact", layer.name);
    }
}
