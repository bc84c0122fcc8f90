//! `bitsearch sample` on a denoiser whose time input and output bitsearch cannot guess: the
//! fixture's exact VP score of Gaussian data, described with --time-input, --time-kind and
//! --prediction, must come out at the probability-flow ODE's closed-form end point.

use crate::common::{assert_clean_failure, assert_success, bitsearch};
use bitsearch_fixtures::{gaussian_flow_end, gaussian_score};
use bitsearch_pipeline::noise::batch_noise;
use bitsearch_pipeline::schedule::vp_alpha_cumprod;
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use std::path::{Path, PathBuf};

/// The fixture saved as `dir/score.onnx`.
fn score_model(dir: &Path) -> PathBuf {
    let path = dir.join("score.onnx");
    gaussian_score().save(&path, bitsearch_onnx::ExternalData::Inline).expect("the fixture saves");
    path
}

/// `bitsearch sample` of the fixture on the CPU with `flags`, writing to `dir/out`.
fn sample(dir: &Path, flags: &[&str]) -> (std::process::Output, PathBuf) {
    let (model, out) = (score_model(dir), dir.join("out"));
    let mut args = vec!["sample", model.to_str().unwrap(), "--device", "cpu", "--out", out.to_str().unwrap()];
    args.extend(flags);
    (bitsearch(&args), out)
}

#[test]
fn a_described_vp_score_model_samples_the_probability_flow_end() {
    let dir = tempfile::tempdir().unwrap();
    let described = "--time-input t --time-kind vp --prediction score --steps 50 --seed 0 --num 2 --npy";
    let (output, out) = sample(dir.path(), &described.split(' ').collect::<Vec<_>>());
    let stdout = assert_success(&output);
    assert!(stdout.contains("samples.npy"), "{stdout}");
    assert!(out.join("sample_001_height16.png").is_file());
    let samples = ArrayD::<f32>::read_npy(std::fs::File::open(out.join("samples.npy")).unwrap()).unwrap();
    // DDIM (the default for a discrete domain) starts from each seed's noise at t = 1.
    let noise = batch_noise(&[1, 8, 8], &[0, 1]);
    assert_eq!(samples.shape(), noise.shape());
    let a = vp_alpha_cumprod(1.0);
    let worst = samples.iter().zip(&noise).map(|(&x, &z)| (x - gaussian_flow_end(z, a)).abs()).fold(0.0, f32::max);
    // DDIM's own first-order error at 50 steps is about 0.029·|z|.
    assert!(worst < 0.1, "largest distance from the closed form {worst}");
}

#[test]
fn a_condition_on_the_time_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (output, out) = sample(dir.path(), &["--condition", "t=0.5"]);
    assert_clean_failure(&output, &["score.onnx", "--condition t", "time input", "--time-input"]);
    assert!(!out.exists());
}
