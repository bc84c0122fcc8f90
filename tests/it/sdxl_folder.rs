//! The binary on an SDXL folder in optimum's layout that the test writes itself (tiny random
//! weights, two text encoders): sample draws reproducible PNGs, sensitivity probes every layer
//! of the UNet, and a solved plan quantizes into a folder that keeps the SDXL layout, samples,
//! and is evaluated against the float folder on held-out prompts and seeds.

use crate::common::{assert_success, bitsearch, files};
use bitsearch_fixtures::zoo::Dtype;
use bitsearch_records::{Manifest, SensitivityTable, read_evals};
use std::collections::BTreeSet;
use std::path::Path;

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    bitsearch_fixtures::write_tiny_sdxl_pipeline(&dir.path().join("xl"), Dtype::F32).unwrap();
    dir
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `sample` of `model` into `out`: `num` images from seed `seed`, 3 Euler steps at guidance 5,
/// and `extra` flags.
fn sample_with(model: &Path, out: &Path, seed: u64, num: usize, extra: &[&str]) {
    let (seed, num) = (seed.to_string(), num.to_string());
    let args = ["sample", s(model), "--prompt", "a red cat in the snow", "--steps", "3", "--guidance", "5"];
    let rest = ["--seed", &seed, "--num", &num, "--batch", "2", "--out", s(out), "--quiet", "--device", "cpu"];
    assert_success(&bitsearch(&[&args[..], &rest, extra].concat()));
}

fn sample(model: &Path, out: &Path, seed: u64, num: usize) {
    sample_with(model, out, seed, num, &[]);
}

fn png(dir: &Path, i: usize) -> Vec<u8> {
    std::fs::read(dir.join(format!("sample_{i:03}.png"))).unwrap()
}

#[test]
fn sample_writes_reproducible_images_per_seed() {
    let dir = folder();
    let model = dir.path().join("xl");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    sample(&model, &a, 0, 3);
    sample(&model, &b, 0, 3);
    for i in 0..3 {
        let image = image::load_from_memory(&png(&a, i)).unwrap().to_rgb8();
        assert_eq!((image.width(), image.height()), (16, 16));
        assert_eq!(png(&a, i), png(&b, i), "sample {i}");
    }
    assert_ne!(png(&a, 0), png(&a, 1));
    // Seed 1 alone is the second image of the run from seed 0, batched with seed 0.
    let c = dir.path().join("c");
    sample(&model, &c, 1, 1);
    assert_eq!(png(&c, 0), png(&a, 1));
    // No negative prompt runs the unconditional half on zeros (force_zeros_for_empty_prompt);
    // an empty one is encoded, as in diffusers.
    let empty = dir.path().join("empty");
    sample_with(&model, &empty, 0, 1, &["--negative-prompt", ""]);
    assert_ne!(png(&empty, 0), png(&a, 0));
    // --dim gives the latent size: 4×6 latents, 8×12 images at the VAE's scale of 2.
    let small = dir.path().join("small");
    sample_with(&model, &small, 0, 1, &["--dim", "height=4", "--dim", "width=6"]);
    let image = image::open(small.join("sample_000.png")).unwrap();
    assert_eq!((image.width(), image.height()), (12, 8));
}

#[test]
fn a_plan_of_the_unet_quantizes_into_an_sdxl_folder_that_samples_and_evaluates() {
    let dir = folder();
    let model = dir.path().join("xl");
    let path = |name: &str| dir.path().join(name);
    assert_success(&bitsearch(&[
        "sensitivity",
        s(&model),
        "--prompt",
        "a red cat",
        "--prompt",
        "the blue house at night",
        "--steps",
        "2",
        "--guidance",
        "5",
        "--w-bits",
        "4,8",
        "--out",
        s(&path("s.parquet")),
        "--device",
        "cpu",
        // One thread probes the tiny UNet fastest.
        "--threads",
        "1",
    ]));
    // The table covers every weight layer of the UNet, at both widths.
    let table = SensitivityTable::read(&path("s.parquet")).unwrap();
    let unet = bitsearch_onnx::Model::load(model.join("unet/model.onnx")).unwrap();
    let layers: BTreeSet<String> = bitsearch_onnx::discover_layers(&unet, bitsearch_types::Component::Unet)
        .unwrap()
        .into_iter()
        .filter(|l| l.kind == bitsearch_types::LayerKind::Weight)
        .map(|l| l.name)
        .collect();
    let probed: BTreeSet<String> = table.rows.iter().map(|r| r.layer.name.clone()).collect();
    assert!(layers.len() > 50, "{} layers", layers.len());
    assert_eq!(probed, layers);
    assert_eq!(table.rows.len(), 2 * layers.len());
    assert!(table.rows.iter().all(|r| r.ssim.is_finite()));
    for needle in ["add_embedding.linear_1", "attn2.to_k", "conv_in", "time_embedding.linear_1"] {
        assert!(probed.iter().any(|l| l.contains(needle)), "{needle} not probed");
    }

    let plan = path("plan.yaml");
    assert_success(&bitsearch(&[
        "solve",
        "--sensitivity",
        s(&path("s.parquet")),
        "--budget",
        "6bits",
        "--out",
        s(&plan),
    ]));
    let q = path("q");
    assert_success(&bitsearch(&["quantize", s(&model), "--plan", s(&plan), "--out", s(&q), "--device", "cpu"]));
    // The SDXL layout stays: every file but the UNet's models is the source's, byte for byte.
    let written = files(&q);
    for file in files(&model).iter().filter(|f| !f.starts_with("unet") || f.extension().is_some_and(|e| e == "json")) {
        assert!(written.contains(file), "{} missing", file.display());
        assert!(std::fs::read(model.join(file)).unwrap() == std::fs::read(q.join(file)).unwrap(), "{}", file.display());
    }
    for component in ["text_encoder_2/model.onnx", "tokenizer_2/merges.txt"] {
        assert!(written.contains(Path::new(component)), "{component}");
    }
    let manifest = Manifest::find(&q.join("unet")).unwrap().unwrap();
    let interface = |path: &Path| {
        let model = bitsearch_onnx::Model::load(path).unwrap();
        (model.graph().input.clone(), model.graph().output.clone())
    };
    let source = interface(&model.join("unet/model.onnx"));
    assert!(source.0.iter().any(|i| i.name() == "time_ids"));
    for entry in &manifest.models {
        assert_eq!(interface(&q.join("unet").join(&entry.file)), source);
    }

    // The quantized folder samples, reproducibly, close to the float one but not equal.
    let (float, low, again) = (path("float"), path("low"), path("again"));
    sample(&model, &float, 7, 2);
    sample(&q, &low, 7, 2);
    sample(&q, &again, 7, 2);
    assert_eq!(png(&low, 0), png(&again, 0));
    assert_ne!(png(&low, 0), png(&float, 0));

    // On held-out prompts and seeds, the quantized folder measures what the plan's float
    // simulation does: the SDXL conditions reach the low-bit UNet as they reach the float one.
    let prompts = path("prompts.txt");
    std::fs::write(&prompts, "a green bird\na dog at sunset\n").unwrap();
    let stdout = assert_success(&bitsearch(&[
        "eval",
        s(&model),
        s(&q),
        "--simulate",
        s(&plan),
        "--prompts",
        s(&prompts),
        "--num-seeds",
        "1",
        "--steps",
        "2",
        "--guidance",
        "5",
        "--repeats",
        "1",
        "--out",
        s(&path("eval.parquet")),
        "--device",
        "cpu",
    ]));
    assert!(stdout.contains("2 held-out prompts (0 of them among the 2 sensitivity prompts)"), "{stdout}");
    let (_, records) = read_evals(&path("eval.parquet")).unwrap();
    let (quantized, simulated) = (&records[0], &records[1]);
    assert_eq!(simulated.kind, "simulated");
    assert_eq!(quantized.nonfinite, 0);
    assert!(quantized.sqnr_db.is_finite() && quantized.ssim < 1.0, "{quantized:?}");
    assert!((quantized.sqnr_db - simulated.sqnr_db).abs() < 0.5, "{records:?}");
    assert!(quantized.cost.file_bytes < quantized.reference_cost.file_bytes, "{quantized:?}");
}

#[test]
fn a_one_step_run_probes_below_each_windows_cut() {
    // One step (SDXL-Turbo's way): a window's cut alone runs the probes, fed the values crossing
    // into it, so the UNet's sessions read inputs other than its own.
    let dir = folder();
    let model = dir.path().join("xl");
    let table = dir.path().join("s.parquet");
    let args = ["sensitivity", s(&model), "--prompt", "a red cat", "--steps", "1", "--guidance", "0"];
    let rest = ["--w-bits", "4", "--shard", "1/4", "--out", s(&table), "--device", "cpu", "--threads", "1"];
    let report = assert_success(&bitsearch(&[&args[..], &rest].concat()));
    assert!(report.contains("below the cut:") && !report.contains("below the cut: 0 of"), "{report}");
    assert!(!SensitivityTable::read(&table).unwrap().rows.is_empty());
}
