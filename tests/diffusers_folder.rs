//! The binary on a diffusers/optimum folder that the test writes itself (tiny random weights):
//! inspect finds the text-conditioned roles, sample draws reproducible PNGs from a prompt.

mod common;

use bitsearch_types::{Layer, MetricGroup};
use common::{assert_clean_failure, assert_success, bitsearch};

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    bitsearch_fixtures::write_tiny_sd_pipeline(dir.path()).unwrap();
    dir
}

#[test]
fn inspect_reads_the_unet_and_finds_cross_attention() {
    let dir = folder();
    let out = bitsearch(&["inspect", dir.path().to_str().unwrap(), "--format", "json"]);
    assert_success(&out);
    let layers: Vec<Layer> = serde_json::from_slice(&out.stdout).unwrap();
    let roles: Vec<&str> = layers.iter().map(|l| l.role.as_str()).collect();
    for role in ["cross_attn_k", "cross_attn_v", "cross_attn_scores", "feed_forward", "attn_q", "embedding"] {
        assert!(roles.contains(&role), "{role} missing from {roles:?}");
    }
    assert!(layers.iter().any(|l| l.role.metric_group() == MetricGroup::Content));
}

#[test]
fn sample_writes_reproducible_images_from_a_prompt() {
    let dir = folder();
    let model = dir.path().to_str().unwrap();
    let run = |out: &std::path::Path| {
        let args = [
            "sample",
            model,
            "--prompt",
            "a small red circle on the left",
            "--steps",
            "3",
            "--guidance",
            "3",
            "--num",
            "3",
            "--batch",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        let output = bitsearch(&args);
        assert_success(&output);
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&a);
    run(&b);
    for i in 0..3 {
        let name = format!("sample_{i:03}.png");
        let image = image::open(a.join(&name)).unwrap().to_rgb8();
        assert_eq!((image.width(), image.height()), (16, 16));
        assert_eq!(std::fs::read(a.join(&name)).unwrap(), std::fs::read(b.join(&name)).unwrap(), "{name}");
    }
    assert_ne!(std::fs::read(a.join("sample_000.png")).unwrap(), std::fs::read(a.join("sample_001.png")).unwrap());

    let no_prompt = bitsearch(&["sample", model, "--out", a.to_str().unwrap()]);
    assert_clean_failure(&no_prompt, &["needs --prompt"]);
}
