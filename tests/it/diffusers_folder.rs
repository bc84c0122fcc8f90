//! The binary on a diffusers/optimum folder that the test writes itself (tiny random weights):
//! inspect finds the text-conditioned roles, sample draws reproducible PNGs from a prompt.

use crate::common::{assert_clean_failure, assert_success, bitsearch};
use bitsearch_types::{Layer, MetricGroup};

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
    // Beside the model folder: an output inside an input is refused.
    let outputs = tempfile::tempdir().unwrap();
    let (a, b) = (outputs.path().join("a"), outputs.path().join("b"));
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

/// The SSIM of each cross-attention K/V probe at `act_bits` activations (weights at 8 bits), by
/// (layer, activation bits), with MixDQ's BOS-aware quantization of the text embedding or without.
fn kv_probe_ssim(model: &str, dir: &std::path::Path, bos_aware: bool, act_bits: &str) -> Vec<((String, u32), f64)> {
    let table = dir.join(if bos_aware { "bos.parquet" } else { "plain.parquet" });
    let mut args = vec!["sensitivity", model, "--prompt", "a red cat", "--prompt", "the blue house at night"];
    args.extend(["--steps", "3", "--guidance", "3", "--w-bits", "8", "--act-bits", act_bits]);
    args.extend(["--layers", "cross_attn_k,cross_attn_v", "--out", table.to_str().unwrap(), "--device", "cpu"]);
    if !bos_aware {
        args.push("--no-bos-aware");
    }
    assert_success(&bitsearch(&args));
    let rows = bitsearch_records::SensitivityTable::read(&table).unwrap().rows;
    rows.into_iter().map(|r| ((r.layer.name, r.a_bits), r.ssim)).collect()
}

#[test]
fn keeping_the_bos_row_in_float_protects_kv_quantization_from_its_outlier() {
    // The fixture's text encoder gives the BOS row 20× the magnitude of the others, as CLIP's
    // does: calibrated with it, a range leaves the other tokens a sixteenth of its levels.
    let (folder, dir) = (folder(), tempfile::tempdir().unwrap());
    let model = folder.path().to_str().unwrap();
    let (aware, plain) =
        (kv_probe_ssim(model, dir.path(), true, "4,8"), kv_probe_ssim(model, dir.path(), false, "4,8"));
    assert_eq!(aware.len(), 4);
    for ((key, a), (other, p)) in aware.iter().zip(&plain) {
        assert_eq!(key, other);
        assert!(a > p, "{key:?}: SSIM {a} with the BOS row in float, {p} without");
        // At 4 bits the outlier costs most of the image; in float it costs little.
        if key.1 == 4 {
            assert!(1.0 - a < 0.5 * (1.0 - p), "{key:?}: SSIM loss {} BOS-aware vs {} plain", 1.0 - a, 1.0 - p);
        }
    }
}

#[test]
fn a_bos_aware_w8a8_kv_plan_is_written_and_beats_the_plain_one_on_the_outlier() {
    let (folder, dir) = (folder(), tempfile::tempdir().unwrap());
    let model = folder.path().to_str().unwrap();
    kv_probe_ssim(model, dir.path(), true, "8");
    let (table, plan) = (dir.path().join("bos.parquet"), dir.path().join("w8a8.yaml"));
    let solve = ["solve", "--sensitivity", table.to_str().unwrap(), "--uniform", "8", "--protect", ""];
    assert_success(&bitsearch(&[&solve[..], &["--out", plan.to_str().unwrap()]].concat()));
    let quantize = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["quantize", model, "--plan", plan.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend(["--device", "cpu"]);
        args.extend(extra);
        assert_success(&bitsearch(&args));
    };
    let (aware, plain) = (dir.path().join("q-bos"), dir.path().join("q-plain"));
    quantize(&aware, &[]);
    quantize(&plain, &["--no-bos-aware"]);
    // Never into the folder it copies.
    let inside = folder.path().join("q");
    let args = ["quantize", model, "--plan", plan.to_str().unwrap(), "--out", inside.to_str().unwrap()];
    assert_clean_failure(&bitsearch(&args), &["lies inside the input"]);
    assert!(!inside.exists());
    let manifest = |d: &std::path::Path| bitsearch_records::Manifest::find(&d.join("unet")).unwrap().unwrap();
    assert!(manifest(&aware).corrections.bos_aware && !manifest(&plain).corrections.bos_aware);
    assert_eq!(manifest(&aware).activation_layers, 2);
    let record = dir.path().join("eval.parquet");
    let args = ["eval", model, aware.to_str().unwrap(), plain.to_str().unwrap(), "--out", record.to_str().unwrap()];
    assert_success(&bitsearch(&[&args[..], &["--repeats", "1", "--device", "cpu", "--steps", "3"]].concat()));
    let (_, records) = bitsearch_records::read_evals(&record).unwrap();
    let (a, p) = (&records[0], &records[1]);
    assert!(a.nonfinite == 0 && a.sqnr_db.is_finite(), "{a:?}");
    assert!(a.sqnr_db > p.sqnr_db + 3.0, "BOS-aware {} dB vs plain {} dB", a.sqnr_db, p.sqnr_db);
}
