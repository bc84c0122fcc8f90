//! A score-SDE model through the denoiser pipeline. The fixture outputs the exact score of
//! Gaussian data under the VP SDE, so the probability-flow ODE has a closed-form end point
//! ([`gaussian_flow_end`]). Deterministic samplers must land there when told the model's time
//! kind and prediction, and do not with the name-based guess.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_fixtures::{gaussian_flow_end, gaussian_score};
use bitsearch_pipeline::denoiser::{DenoiserConfig, DenoiserPipeline, TimeKind};
use bitsearch_pipeline::noise::batch_noise;
use bitsearch_pipeline::sampler::{Prediction, SamplerKind};
use bitsearch_pipeline::schedule::vp_alpha_cumprod;
use bitsearch_pipeline::workload::{self, Unchanged, WorkloadSpec};
use bitsearch_runtime::{Device, Session, SessionOptions};

const SEEDS: [u64; 4] = [0, 1, 2, 3];

/// What the fixture is: its time input `t` on the VP SDE, its output the score.
fn described() -> DenoiserConfig {
    DenoiserConfig {
        time_input: Some("t".into()),
        time_kind: Some(TimeKind::Vp),
        prediction: Some(Prediction::Score),
        ..Default::default()
    }
}

/// Largest distance of a `steps`-step run of `kind` from the exact end point.
fn error(config: &DenoiserConfig, kind: SamplerKind, steps: usize) -> f32 {
    let options = SessionOptions { device: Device::Cpu, threads: Some(1), ..Default::default() };
    let session = Session::new(&gaussian_score(), &options).expect("the fixture loads");
    let mut pipeline = DenoiserPipeline::new(session, config).expect("the fixture's inputs resolve");
    let settings = pipeline.spec().settings(kind, steps, 0.0);
    let samples = pipeline.generate(&settings, &SEEDS).expect("sampling runs");
    let noise = batch_noise(&pipeline.spec().item_shape, &SEEDS);
    // Runs start at t = 1: DDIM at x_T = z, Euler at σ_max·z in its x0 + σ·ε view, which is
    // √(1−ᾱ)·z as x_T.
    let a = vp_alpha_cumprod(1.0);
    let start = if kind == SamplerKind::Euler { (1.0 - a).sqrt() as f32 } else { 1.0 };
    let expected = noise.mapv(|z| gaussian_flow_end(start * z, a));
    samples.iter().zip(&expected).map(|(x, e)| (x - e).abs()).fold(0.0, f32::max)
}

#[test]
fn ddim_on_a_vp_score_model_converges_to_the_probability_flow_end() {
    let errors = [10, 50, 250].map(|steps| error(&described(), SamplerKind::Ddim, steps));
    eprintln!("ddim: max error {:.2e} at 10 steps, {:.2e} at 50, {:.2e} at 250", errors[0], errors[1], errors[2]);
    // DDIM is first order: each 5× more steps cut the error about 5× (the exact scalar
    // recursion gives 0.39, 0.086 and 0.018 at the largest |z| of 3).
    assert!(errors[1] < 0.1 && errors[2] < 0.02, "max errors {errors:?}");
    assert!(errors[1] < errors[0] / 4.0 && errors[2] < errors[1] / 4.0, "not first order: {errors:?}");
}

#[test]
fn euler_on_a_vp_score_model_reaches_the_probability_flow_end() {
    // Deterministic Euler in σ is the same first-order scheme as DDIM, with the same error.
    let fine = error(&described(), SamplerKind::Euler, 50);
    eprintln!("euler: max error {fine:.2e} at 50 steps");
    assert!(fine < 0.1, "50 steps: max error {fine}");
}

#[test]
fn the_name_based_guess_gets_a_vp_score_model_wrong() {
    // `t` alone reads as a Stable Diffusion timestep and the output as epsilon.
    let wrong = error(&DenoiserConfig::default(), SamplerKind::Ddim, 50);
    eprintln!("guessed: max error {wrong:.2e}");
    assert!(wrong > 0.5, "the guess came within {wrong} of the right answer");
}

#[test]
fn a_workload_spec_describes_the_model_as_the_pipeline_config_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("score.onnx");
    gaussian_score().save(&path, bitsearch_onnx::ExternalData::Inline).unwrap();
    let spec = WorkloadSpec {
        steps: Some(50),
        seeds: SEEDS.to_vec(),
        time_input: Some("t".into()),
        time_kind: Some(TimeKind::Vp),
        prediction: Some(Prediction::Score),
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let mut workload = workload::open(&path, &spec).unwrap();
    assert_eq!((workload.batches(), workload.sampler().as_str()), (1, "ddim"));
    let images = workload.run(0, &mut Unchanged).unwrap();

    let options = SessionOptions { device: Device::Cpu, threads: Some(1), ..Default::default() };
    let mut pipeline = DenoiserPipeline::new(Session::new(&gaussian_score(), &options).unwrap(), &described()).unwrap();
    let settings = pipeline.spec().settings(SamplerKind::Ddim, 50, 0.0);
    assert_eq!(images, pipeline.generate(&settings, &SEEDS).unwrap());

    // The time kind belongs to denoiser files: a diffusers folder refuses it, naming the field.
    let folder = WorkloadSpec { prompts: vec!["a cat".into()], ..spec };
    let pipeline_dir = tempfile::tempdir().unwrap();
    bitsearch_fixtures::write_tiny_sd_pipeline(pipeline_dir.path()).unwrap();
    let message = workload::open(pipeline_dir.path(), &folder).unwrap_err().to_string();
    assert!(message.starts_with("time_input:"), "{message}");
}
