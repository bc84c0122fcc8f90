//! The diffusers/optimum folder pipeline on the tiny fixture folder: tokenization, text
//! encoding, guidance, per-seed determinism, samplers, hooks, and errors that name the file.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_fixtures::{BOS, EOS, PAD, UNK, UnetSpec, VOCABULARY, sd_unet, write_tiny_sd_pipeline, zoo};
use bitsearch_onnx::DataType;
use bitsearch_pipeline::diffusers::{DiffusersPipeline, GenerateRequest, PromptTokenizer, UnetDenoiser};
use bitsearch_pipeline::noise::batch_noise;
use bitsearch_pipeline::sampler::{Denoiser, SamplerKind};
use bitsearch_pipeline::workload::{self, Pairing, Unchanged, WorkloadSpec};
use bitsearch_runtime::{Device, SessionOptions};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use std::path::{Path, PathBuf};

/// A fresh tiny folder at `<tempdir>/tiny`.
fn tiny() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("temporary folder");
    let dir = temp.path().join("tiny");
    write_tiny_sd_pipeline(&dir).expect("tiny pipeline is written");
    (temp, dir)
}

fn options() -> SessionOptions {
    SessionOptions { device: Device::Cpu, threads: Some(1), ..Default::default() }
}

fn open(dir: &Path) -> DiffusersPipeline {
    DiffusersPipeline::open(dir, &options()).expect("tiny pipeline opens")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn id(word: &str) -> u32 {
    VOCABULARY.iter().position(|w| *w == word).expect("word in vocabulary") as u32
}

fn request(prompts: &[&str], seeds: &[u64], steps: usize, guidance: f32) -> GenerateRequest {
    GenerateRequest { steps, guidance, ..GenerateRequest::new(strings(prompts), seeds.to_vec()) }
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn error_of<T: std::fmt::Debug>(result: Result<T, bitsearch_pipeline::PipelineError>) -> String {
    result.expect_err("an error is expected").to_string()
}

#[test]
fn tokenization_puts_bos_first_eos_after_the_words_and_pads_to_eight() {
    let (_temp, dir) = tiny();
    let pipeline = open(&dir);
    let tokenizer = pipeline.tokenizer();
    assert_eq!(tokenizer.max_length(), 8);
    let ids = tokenizer.encode(&strings(&["A red CAT", "a zebra"])).expect("prompts tokenize");
    assert_eq!(ids[0], [BOS, id("a"), id("red"), id("cat"), EOS, PAD, PAD, PAD]);
    assert_eq!(ids[1], [BOS, id("a"), UNK, EOS, PAD, PAD, PAD, PAD]);
    // Too long: the words are cut, EOS stays last.
    let long = tokenizer.encode(&strings(&["a red cat in the snow at night under a blue sky"])).expect("tokenizes");
    assert_eq!(long[0], [BOS, id("a"), id("red"), id("cat"), id("in"), id("the"), id("snow"), EOS]);
}

#[test]
fn clip_slow_tokenizer_files_become_a_bpe_tokenizer() {
    let temp = tempfile::tempdir().expect("temporary folder");
    let vocab = r#"{"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "c": 3, "a": 4, "t</w>": 5,
        "ca": 6, "cat</w>": 7, "d": 8, "o": 9, "g</w>": 10, "do": 11, "dog</w>": 12, "!</w>": 13}"#;
    std::fs::write(temp.path().join("vocab.json"), vocab).expect("write vocab");
    std::fs::write(temp.path().join("merges.txt"), "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n")
        .expect("write merges");
    std::fs::write(temp.path().join("tokenizer_config.json"), r#"{"model_max_length": 8}"#).expect("write config");
    let tokenizer = PromptTokenizer::open(temp.path()).expect("CLIP-style tokenizer builds");
    // Lowercased, whitespace collapsed, `!` split off, padded with EOS as CLIP does.
    let ids = tokenizer.encode(&strings(&["  A   Cat dog!"])).expect("tokenizes");
    assert_eq!(ids[0], [0, 2, 7, 12, 13, 1, 1, 1]);
    let long = tokenizer.encode(&strings(&["a cat dog a cat dog a cat"])).expect("tokenizes");
    assert_eq!(long[0], [0, 2, 7, 12, 2, 7, 12, 1]);
}

#[test]
fn bos_row_of_the_text_encoder_output_is_an_outlier() {
    let (_temp, dir) = tiny();
    let mut pipeline = open(&dir);
    let embeddings = pipeline.encode_prompts(&strings(&["a photo of a cat", "a dog"])).expect("prompts encode");
    assert_eq!(embeddings.pooled, None, "an SD folder gives no text_embeds");
    let hidden = embeddings.context;
    assert_eq!(hidden.shape(), &[2, 8, 16]);
    for item in hidden.axis_iter(Axis(0)) {
        let norms: Vec<f32> =
            item.axis_iter(Axis(0)).map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt()).collect();
        let others = norms[1..].iter().copied().fold(0.0, f32::max);
        assert!(norms[0] > 5.0 * others, "BOS norm {} vs others up to {others}", norms[0]);
    }
}

#[test]
fn generation_is_deterministic_per_seed_whatever_the_batch() {
    let (_temp, dir) = tiny();
    let mut pipeline = open(&dir);
    let pair = request(&["a red cat", "a blue dog"], &[11, 22], 3, 4.0);
    let first = pipeline.generate(&pair).expect("generates");
    assert_eq!(first.images.shape(), &[2, 3, 16, 16]);
    assert_eq!(first.latents.shape(), &[2, 4, 8, 8]);
    let again = pipeline.generate(&pair).expect("generates");
    assert_eq!(first.images, again.images);
    let alone = pipeline.generate(&request(&["a blue dog"], &[22], 3, 4.0)).expect("generates");
    let second = first.images.index_axis(Axis(0), 1).to_owned().insert_axis(Axis(0));
    assert!(max_abs_diff(&second, &alone.images) < 1e-5, "{}", max_abs_diff(&second, &alone.images));
    assert!(max_abs_diff(&first.images.index_axis(Axis(0), 0).to_owned().insert_axis(Axis(0)), &alone.images) > 1e-3);
}

#[test]
fn guidance_scale_changes_the_image() {
    let (_temp, dir) = tiny();
    let mut pipeline = open(&dir);
    let plain = pipeline.generate(&request(&["a red cat"], &[5], 3, 1.0)).expect("generates");
    let guided = pipeline.generate(&request(&["a red cat"], &[5], 3, 4.0)).expect("generates");
    assert!(max_abs_diff(&plain.images, &guided.images) > 1e-3);
    let negative = GenerateRequest { negative_prompt: Some("snow".into()), ..request(&["a red cat"], &[5], 3, 4.0) };
    let negative = pipeline.generate(&negative).expect("generates");
    assert!(max_abs_diff(&negative.images, &guided.images) > 1e-4);
}

#[test]
fn guided_prediction_combines_two_separate_unet_runs() {
    let (_temp, dir) = tiny();
    let mut pipeline = open(&dir);
    let guidance = 4.0;
    let req =
        GenerateRequest { negative_prompt: Some("snow at night".into()), ..request(&["a red cat"], &[3], 1, guidance) };
    let cond = pipeline.encode_prompts(&strings(&["a red cat"])).expect("encodes").context;
    let uncond = pipeline.encode_prompts(&strings(&["snow at night"])).expect("encodes").context;
    let conditioning = pipeline.conditioning(&req).expect("conditioning");
    assert_eq!(conditioning.guidance, Some(guidance));
    assert_eq!(conditioning.context.slice_axis(Axis(0), Slice::from(0..1)), uncond);
    assert_eq!(conditioning.context.slice_axis(Axis(0), Slice::from(1..2)), cond);

    let x = batch_noise(&[4, 8, 8], &[3]);
    let t = 981.0;
    let combined = UnetDenoiser::new(pipeline.unet_mut(), conditioning).eval(0, &x, t).expect("denoiser runs");
    let time = ArrayD::from_elem(IxDyn(&[1]), t);
    let session = pipeline.unet_mut().session_mut();
    let mut run = |context: &ArrayD<f32>| {
        let feeds = [("sample", x.view()), ("timestep", time.view()), ("encoder_hidden_states", context.view())];
        session.run(&feeds, &[]).expect("unet runs").swap_remove(0)
    };
    let (eps_u, eps_c) = (run(&uncond), run(&cond));
    let manual = &eps_u + &((&eps_c - &eps_u) * guidance);
    assert!(max_abs_diff(&combined, &manual) < 1e-5, "{}", max_abs_diff(&combined, &manual));
    assert!(max_abs_diff(&eps_u, &eps_c) > 1e-3, "the text must matter");
}

#[test]
fn one_step_lcm_and_four_step_ddim_give_finite_images() {
    let (_temp, dir) = tiny();
    let mut pipeline = open(&dir);
    let lcm = GenerateRequest { sampler: Some(SamplerKind::Lcm), ..request(&["a cat", "a dog"], &[1, 2], 1, 1.5) };
    let ddim = request(&["a cat", "a dog"], &[1, 2], 4, 7.5);
    assert_eq!(pipeline.sampler_settings(&ddim).expect("settings").kind, SamplerKind::Ddim);
    for req in [lcm, ddim] {
        let images = pipeline.generate(&req).expect("generates").images;
        assert_eq!(images.shape(), &[2, 3, 16, 16]);
        assert!(images.iter().all(|v| v.is_finite()), "{:?}", req.sampler);
    }
}

#[test]
fn lcm_unet_gets_the_guidance_embedding_instead_of_a_guidance_batch() {
    let (_temp, dir) = tiny();
    let unet = sd_unet(&UnetSpec { text: true, timestep: DataType::I64, timestep_cond: Some(8) });
    std::fs::write(dir.join("unet/model.onnx"), unet.to_bytes()).expect("write unet");
    let scheduler = r#"{"_class_name": "LCMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "original_inference_steps": 50,
        "set_alpha_to_one": true, "steps_offset": 1, "timestep_scaling": 10.0}"#;
    std::fs::write(dir.join("scheduler/scheduler_config.json"), scheduler).expect("write scheduler");
    let mut pipeline = open(&dir);
    let req = request(&["a cat", "a dog"], &[1, 2], 2, 8.0);
    assert_eq!(pipeline.sampler_settings(&req).expect("settings").kind, SamplerKind::Lcm);
    let conditioning = pipeline.conditioning(&req).expect("conditioning");
    assert_eq!(conditioning.guidance, None);
    assert_eq!(conditioning.context.shape(), &[2, 8, 16]);
    let embedding = conditioning.timestep_cond.expect("timestep_cond is fed");
    assert_eq!(embedding.shape(), &[2, 8]);
    assert!((embedding[[0, 0]] - 7000f32.sin()).abs() < 1e-3, "w = guidance − 1, times 1000");
    let images = pipeline.generate(&req).expect("generates").images;
    assert!(images.iter().all(|v| v.is_finite()));
    let weaker = pipeline.generate(&request(&["a cat", "a dog"], &[1, 2], 2, 2.0)).expect("generates").images;
    assert!(max_abs_diff(&images, &weaker) > 1e-4);
}

#[test]
fn hook_sees_every_step_and_can_swap_weights_and_capture_values() {
    let (_temp, dir) = tiny();
    let options = SessionOptions {
        overridable: vec!["conv_out.weight".into()],
        extra_outputs: vec!["attn2.softmax".into()],
        ..options()
    };
    let mut pipeline = DiffusersPipeline::open(&dir, &options).expect("opens");
    let req = request(&["a cat"], &[9], 3, 3.0);
    let plain = pipeline.generate(&req).expect("generates");
    let mut steps = Vec::new();
    let mut captured = Vec::new();
    let zeroed = pipeline
        .generate_with(&req, |denoiser: &mut UnetDenoiser<'_>, step, x, t| {
            steps.push(step);
            denoiser.set_overrides(vec![("conv_out.weight".into(), ArrayD::zeros(IxDyn(&[4, 16, 3, 3])))]);
            let out = denoiser.eval(step, x, t);
            captured.push(denoiser.extra_outputs()[0].shape().to_vec());
            out
        })
        .expect("generates");
    assert_eq!(steps, [0, 1, 2]);
    // Both guidance halves, 2 heads, 64 pixels attending to 8 tokens.
    assert_eq!(captured, vec![vec![2, 2, 64, 8]; 3]);
    assert!(max_abs_diff(&plain.latents, &zeroed.latents) > 1e-3);
    assert_eq!(pipeline.generate(&req).expect("generates").latents, plain.latents, "overrides do not persist");
}

#[test]
fn image_size_follows_the_unet_and_rejects_other_sizes() {
    let (_temp, dir) = tiny();
    let mut pipeline = open(&dir);
    let sized = GenerateRequest { size: Some((16, 16)), ..request(&["a cat"], &[1], 1, 1.0) };
    assert_eq!(pipeline.generate(&sized).expect("generates").images.shape(), &[1, 3, 16, 16]);
    let other = GenerateRequest { size: Some((32, 32)), ..sized.clone() };
    assert!(error_of(pipeline.generate(&other)).contains("8×8 latents"));
    let mismatch = request(&["a", "b", "c"], &[1, 2], 1, 1.0);
    assert!(error_of(pipeline.generate(&mismatch)).contains("3 prompts for 2 seeds"));
}

#[test]
fn missing_unet_model_is_an_error_naming_the_file() {
    let (_temp, dir) = tiny();
    std::fs::remove_file(dir.join("unet/model.onnx")).expect("remove unet");
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("tiny/unet/model.onnx"), "{message}");
}

#[test]
fn corrupt_or_unsupported_scheduler_config_is_an_error_naming_the_file() {
    let (_temp, dir) = tiny();
    let config = dir.join("scheduler/scheduler_config.json");
    std::fs::write(&config, "{ \"_class_name\": \"DDIMScheduler\", ").expect("write");
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("tiny/scheduler/scheduler_config.json") && message.contains("invalid JSON"), "{message}");
    std::fs::write(&config, r#"{"_class_name": "DDIMScheduler", "beta_schedule": "cosine"}"#).expect("write");
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(
        message.ends_with(
            "tiny/scheduler/scheduler_config.json: beta_schedule 'cosine' is not supported \
             (expected linear, scaled_linear or squaredcos_cap_v2)"
        ),
        "{message}"
    );
}

#[test]
fn missing_folder_or_model_index_is_an_error_naming_the_path() {
    let (temp, dir) = tiny();
    let message = error_of(DiffusersPipeline::open(temp.path().join("absent"), &options()));
    assert!(message.contains("absent"), "{message}");
    std::fs::remove_file(dir.join("model_index.json")).expect("remove index");
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("tiny/model_index.json"), "{message}");
}

#[test]
fn an_sdxl_unet_in_a_one_encoder_folder_or_half_its_inputs_are_refused_by_name() {
    let (_temp, dir) = tiny();
    let sdxl = zoo::tiny_sdxl().build(zoo::Dtype::F32, 1);
    std::fs::write(dir.join("unet/model.onnx"), sdxl.to_bytes()).expect("write unet");
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(
        message.contains("tiny/unet/model.onnx")
            && message.contains("takes text_embeds and time_ids")
            && message.contains("lists one text encoder"),
        "{message}"
    );
    // An SD UNet given an (unused) text_embeds input alone.
    let mut unet = sd_unet(&UnetSpec { text: true, timestep: DataType::I64, timestep_cond: None });
    let graph = unet.graph_mut();
    let mut extra = graph.input[1].clone();
    extra.name = Some("text_embeds".into());
    graph.input.push(extra);
    std::fs::write(dir.join("unet/model.onnx"), unet.to_bytes()).expect("write unet");
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("takes 'text_embeds' but not 'time_ids'"), "{message}");
}

#[test]
fn zip_pairing_gives_each_prompt_its_own_noise_and_matches_that_item_alone() {
    let (_temp, dir) = tiny();
    let spec = |prompts: &[&str], seeds: &[u64], pairing| WorkloadSpec {
        steps: Some(3),
        guidance: 4.0,
        prompts: strings(prompts),
        seeds: seeds.to_vec(),
        pairing,
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let mut zipped = workload::open(&dir, &spec(&["a red cat", "a red cat"], &[11], Pairing::Zip)).unwrap();
    assert_eq!(zipped.items(), ["\"a red cat\" seed=11", "\"a red cat\" seed=12"]);
    let images = zipped.run(0, &mut Unchanged).unwrap();
    let mut alone = workload::open(&dir, &spec(&["a red cat"], &[12], Pairing::Every)).unwrap();
    let second = images.index_axis(Axis(0), 1).to_owned().insert_axis(Axis(0));
    assert!(max_abs_diff(&second, &alone.run(0, &mut Unchanged).unwrap()) < 1e-5);
    // One prompt twice, yet two noises: the images differ.
    assert!(max_abs_diff(&images.index_axis(Axis(0), 0).to_owned().insert_axis(Axis(0)), &second) > 1e-3);
    let err = workload::open(&dir, &spec(&["a red cat", "a blue dog", "a cat"], &[1, 2], Pairing::Zip)).unwrap_err();
    assert!(err.to_string().starts_with("seeds:"), "{err}");
}
