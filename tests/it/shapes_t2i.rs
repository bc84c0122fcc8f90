//! The committed shapes-t2i pipeline (models/shapes-t2i, trained by `make train-shapes`):
//! bitsearch reproduces the reference generations that the training script made with ONNX
//! Runtime from Python, and its alignment metric separates full precision from low-bit UNets.

use crate::common::{
    assert_clean_failure, assert_each_tensor_stored_once, assert_success, bitsearch, four_then_eight_plan,
};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn shapes_model() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/shapes-t2i");
    assert!(path.join("model_index.json").is_file(), "{} is missing (it is committed)", path.display());
    path
}

/// Every file under `root`, relative to it.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found
}

fn read_npy(path: &Path) -> ArrayD<f32> {
    ArrayD::<f32>::read_npy(std::fs::File::open(path).expect("the file opens")).expect("a float32 .npy")
}

#[test]
fn sample_matches_the_python_reference_generations() {
    let model = shapes_model();
    let reference = model.join("reference");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(reference.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for (k, case) in cases.iter().enumerate() {
        let out = tempfile::tempdir().unwrap();
        let field = |name: &str| case[name].to_string().trim_matches('"').to_string();
        let output = bitsearch(&[
            "sample",
            model.to_str().unwrap(),
            "--prompt",
            &field("prompt"),
            "--steps",
            &field("steps"),
            "--guidance",
            &field("guidance"),
            "--seed",
            &field("seed"),
            "--num",
            "1",
            "--sampler",
            "ddim",
            "--latents",
            reference.join(field("noise")).to_str().unwrap(),
            "--npy",
            "--out",
            out.path().to_str().unwrap(),
        ]);
        assert_success(&output);
        let ours = read_npy(&out.path().join("samples.npy"));
        let theirs = read_npy(&reference.join(field("image")));
        assert_eq!(ours.shape(), theirs.shape(), "case {k}");
        let worst = ours.iter().zip(theirs.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!("case {k}: largest difference {worst:e}");
        assert!(worst < 1e-4, "case {k} ({}): largest difference {worst}", field("prompt"));
        // The PNG written beside it is the same image.
        assert!(out.path().join("sample_000.png").is_file());
    }
}

#[test]
fn alignment_is_high_at_full_precision_and_psnr_falls_with_bits() {
    let model = shapes_model();
    let dir = tempfile::tempdir().unwrap();
    // The first single-object and the first two-object held-out prompts.
    let all = std::fs::read_to_string(model.join("heldout_prompts.txt")).unwrap();
    let prompts: Vec<&str> = all.lines().take(4).chain(all.lines().filter(|l| l.contains(" and ")).take(4)).collect();
    let prompts_path = dir.path().join("prompts.txt");
    std::fs::write(&prompts_path, prompts.join("\n")).unwrap();
    let json = dir.path().join("align.json");
    let output = bitsearch(&[
        "align",
        model.to_str().unwrap(),
        "--prompts",
        prompts_path.to_str().unwrap(),
        "--seeds",
        "2",
        "--w-bits",
        "8,3",
        "--json",
        json.to_str().unwrap(),
    ]);
    let text = assert_success(&output);
    assert!(text.contains("BOS / median"), "{text}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["weights"].as_str().unwrap()).collect::<Vec<_>>(), ["fp32", "W8", "W3"]);
    let caption = |r: &Value| r["caption"].as_f64().unwrap();
    let psnr = |r: &Value| r["psnr_db"].as_f64().unwrap();
    assert!(caption(&rows[0]) >= 0.75, "full-precision caption accuracy {}", caption(&rows[0]));
    for (_, accuracy) in
        rows[0]["attributes"].as_array().unwrap().iter().map(|a| (a[0].clone(), a[1].as_f64().unwrap()))
    {
        assert!(accuracy >= 0.8, "{text}");
    }
    assert!(psnr(&rows[1]) > psnr(&rows[2]) + 6.0, "W8 {} dB vs W3 {} dB", psnr(&rows[1]), psnr(&rows[2]));
    assert!(psnr(&rows[1]) > 25.0, "W8 is {} dB from full precision", psnr(&rows[1]));
}

/// Images made elsewhere score as the same images generated by `align` itself: two prompts,
/// two seeds each, generated one prompt at a time by `sample --npy` and scored by `--images`.
#[test]
fn given_images_score_as_generated_ones() {
    let model = shapes_model();
    let dir = tempfile::tempdir().unwrap();
    let prompts =
        ["a large red circle on the left and a small blue triangle at the top", "a small yellow square at the bottom"];
    let prompts_path = dir.path().join("prompts.txt");
    std::fs::write(&prompts_path, prompts.join("\n")).unwrap();
    let common = ["--steps", "6", "--guidance", "4", "--seed", "3"];
    let mut parts = Vec::new();
    for (k, prompt) in prompts.iter().enumerate() {
        let out = dir.path().join(format!("sample-{k}"));
        let mut args = vec!["sample", model.to_str().unwrap(), "--prompt", prompt, "--num", "2", "--npy"];
        args.extend(common);
        args.extend(["--out", out.to_str().unwrap()]);
        assert_success(&bitsearch(&args));
        parts.push(read_npy(&out.join("samples.npy")));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let images = dir.path().join("images.npy");
    ndarray::concatenate(ndarray::Axis(0), &views).unwrap().write_npy(std::fs::File::create(&images).unwrap()).unwrap();

    let score = |extra: &[&str], json: &str| -> Value {
        let json = dir.path().join(json);
        let mut args =
            vec!["align", model.to_str().unwrap(), "--prompts", prompts_path.to_str().unwrap(), "--seeds", "2"];
        args.extend(extra);
        args.extend(["--json", json.to_str().unwrap()]);
        assert_success(&bitsearch(&args));
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
    };
    let generated = score(&common, "generated.json");
    let given = score(&["--images", images.to_str().unwrap()], "given.json");
    let accuracies = |report: &Value| {
        let row = &report["rows"][0];
        (row["attributes"].clone(), row["position"].as_f64(), row["caption"].as_f64())
    };
    assert_eq!(accuracies(&given), accuracies(&generated));
    assert!(generated["rows"][0]["caption"].as_f64().unwrap() > 0.0, "{generated}");
    assert_eq!(given["images"].as_str(), images.to_str());

    // Four images where two prompts of one seed each want two: refused, naming the file.
    let output = bitsearch(&[
        "align",
        model.to_str().unwrap(),
        "--prompts",
        prompts_path.to_str().unwrap(),
        "--seeds",
        "1",
        "--images",
        images.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["images.npy", "expected [2, 3, height, width]"]);
}

/// What diffusers' OnnxStableDiffusionPipeline and optimum's ORTStableDiffusionPipeline read
/// beyond what bitsearch needs (`make client-check` runs both on this folder).
#[test]
fn the_folder_carries_what_the_client_pipelines_read() {
    let model = shapes_model();
    let json =
        |name: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(model.join(name)).unwrap()).unwrap() };
    let text = bitsearch_runtime::Session::new(
        &bitsearch_onnx::Model::load(model.join("text_encoder/model.onnx")).unwrap(),
        &bitsearch_runtime::SessionOptions::default(),
    )
    .unwrap();
    assert_eq!(text.inputs()[0].name, "input_ids");
    assert_eq!(text.inputs()[0].dtype, bitsearch_onnx::DataType::I32, "both clients feed int32 token ids");
    assert!(json("text_encoder/config.json")["num_hidden_layers"].is_u64(), "optimum's text encoder reads it");
    assert!(json("unet/config.json").get("time_cond_proj_dim").is_some());
    assert_eq!(json("vae_decoder/config.json")["scaling_factor"], 0.18215, "diffusers' ONNX pipeline hard-codes it");
    assert_eq!(json("scheduler/scheduler_config.json")["steps_offset"], 1);
    for (component, value) in json("model_index.json").as_object().unwrap() {
        if value.as_array().is_some_and(|v| v[0].is_string())
            && !["scheduler", "tokenizer"].contains(&component.as_str())
        {
            for file in ["model.onnx", "config.json"] {
                assert!(model.join(component).join(file).is_file(), "{component}/{file}");
            }
        }
    }
}

#[test]
fn prompts_outside_the_classifier_vocabulary_are_refused_before_generating() {
    let model = shapes_model();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "a small red circle on the left\na purple circle on the left\n").unwrap();
    let output = bitsearch(&["align", model.to_str().unwrap(), "--prompts", prompts.to_str().unwrap()]);
    assert_clean_failure(&output, &["a purple circle on the left", "names no colour"]);
}

#[test]
fn latents_of_the_wrong_shape_are_a_clear_error() {
    let model = shapes_model();
    let out = tempfile::tempdir().unwrap();
    let noise = model.join("reference/noise_0.npy");
    let output = bitsearch(&[
        "sample",
        model.to_str().unwrap(),
        "--prompt",
        "a small red circle on the left",
        "--num",
        "2",
        "--latents",
        noise.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["noise_0.npy", "expected 2 of them"]);
}

/// A 2-step-group plan of shapes-t2i (early steps at 4 bits, late ones at 8 on the convs and
/// cross-attention K/V), quantized: two models over one weight file, switched by step, measuring
/// on held-out prompts what the plan's float simulation measures, caption accuracy included.
#[test]
fn a_step_aware_plan_runs_as_two_models_over_one_weight_file() {
    let model = shapes_model();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    assert_success(&bitsearch(&[
        "sensitivity",
        model.to_str().unwrap(),
        "--out",
        &path("s.parquet"),
        "--w-bits",
        "4,8",
        "--steps",
        "4",
        "--step-groups",
        "2",
        "--guidance",
        "4",
        "--layers",
        "conv,cross_attn_k,cross_attn_v",
        "--prompt",
        "a small green circle at the bottom",
        "--prompt",
        "a large blue circle on the right",
        "--device",
        "cpu",
    ]));
    four_then_eight_plan(&dir.path().join("s.parquet"), dir.path());
    let stdout = assert_success(&bitsearch(&[
        "quantize",
        model.to_str().unwrap(),
        "--plan",
        &path("plan.yaml"),
        "--out",
        &path("q"),
        "--device",
        "cpu",
    ]));
    assert!(stdout.contains("diffusers and optimum run unet/model.onnx at every step"), "{stdout}");
    let manifest = bitsearch_records::Manifest::find(&dir.path().join("q/unet")).unwrap().unwrap();
    assert_eq!(manifest.models_by_step(4).unwrap(), vec![0, 0, 1, 1]);
    assert_each_tensor_stored_once(&dir.path().join("q/unet"), &manifest);
    // Every other file is the source's, byte for byte, and the UNet's models keep its interface,
    // so that the folder loads wherever the source did (diffusers, optimum: `make client-check`).
    let written = dir.path().join("q");
    let copied = files(&model);
    assert!(copied.iter().any(|f| f.starts_with("classifier")), "the other components are copied");
    for file in copied.iter().filter(|f| !f.starts_with("unet") || f.extension().is_some_and(|e| e == "json")) {
        assert!(
            std::fs::read(model.join(file)).unwrap() == std::fs::read(written.join(file)).unwrap(),
            "{}",
            file.display()
        );
    }
    let interface = |path: &Path| {
        let model = bitsearch_onnx::Model::load(path).unwrap();
        (model.graph().input.clone(), model.graph().output.clone())
    };
    for entry in &manifest.models {
        assert_eq!(interface(&written.join("unet").join(&entry.file)), interface(&model.join("unet/model.onnx")));
    }

    let prompts = dir.path().join("prompts.txt");
    let held_out = std::fs::read_to_string(model.join("heldout_prompts.txt")).unwrap();
    std::fs::write(&prompts, held_out.lines().take(6).collect::<Vec<_>>().join("\n")).unwrap();
    let stdout = assert_success(&bitsearch(&[
        "eval",
        model.to_str().unwrap(),
        &path("q"),
        "--simulate",
        &path("plan.yaml"),
        "--prompts",
        prompts.to_str().unwrap(),
        "--num-seeds",
        "1",
        "--repeats",
        "1",
        "--out",
        &path("eval.parquet"),
        "--device",
        "cpu",
    ]));
    assert!(stdout.contains("6 held-out prompts (0 of them among the 2 sensitivity prompts)"), "{stdout}");
    let (_, records) = bitsearch_records::read_evals(Path::new(&path("eval.parquet"))).unwrap();
    let (quantized, simulated) = (&records[0], &records[1]);
    assert!((quantized.sqnr_db - simulated.sqnr_db).abs() < 0.5, "{records:?}");
    assert!((0.0..=1.0).contains(&quantized.caption) && (0.0..=1.0).contains(&quantized.reference_caption));
    assert!(quantized.cost.file_bytes < quantized.reference_cost.file_bytes);
}
