//! The diffusers/optimum folder pipeline on the tiny SDXL fixture: the conditioning tensors are
//! what diffusers' `StableDiffusionXLPipeline` computes (penultimate hidden states of both
//! encoders side by side, the second's pooled projection, zeros for an empty negative prompt,
//! size ids from the image size), the UNet is fed them, and folders that do not fit are refused
//! naming the file and field.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_fixtures::zoo::Dtype;
use bitsearch_fixtures::{
    CLIP_BOS, CLIP_EOS, SDXL_TEXT_ENCODERS, SDXL_VAE_SCALING, clip_vocabulary, clip_words, sdxl_turbo_scheduler_config,
    write_tiny_sdxl_pipeline,
};
use bitsearch_onnx::Model;
use bitsearch_pipeline::diffusers::{DiffusersPipeline, GenerateRequest, PromptTokenizer, TextKind, UnetDenoiser};
use bitsearch_pipeline::noise::batch_noise;
use bitsearch_pipeline::sampler::{Denoiser, SamplerKind};
use bitsearch_runtime::{Device, Session, SessionOptions};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A fresh tiny SDXL folder at `<tempdir>/xl`.
fn tiny(dtype: Dtype) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("xl");
    write_tiny_sdxl_pipeline(&dir, dtype).unwrap();
    (temp, dir)
}

fn options() -> SessionOptions {
    SessionOptions { device: Device::Cpu, threads: Some(1), ..Default::default() }
}

fn open(dir: &Path) -> DiffusersPipeline {
    DiffusersPipeline::open(dir, &options()).unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn request(prompts: &[&str], seeds: &[u64], steps: usize, guidance: f32) -> GenerateRequest {
    GenerateRequest { steps, guidance, ..GenerateRequest::new(strings(prompts), seeds.to_vec()) }
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn rows(a: &ArrayD<f32>, range: std::ops::Range<usize>) -> ArrayD<f32> {
    a.slice_axis(Axis(0), Slice::from(range)).to_owned()
}

fn error_of<T: std::fmt::Debug>(result: Result<T, bitsearch_pipeline::PipelineError>) -> String {
    result.unwrap_err().to_string()
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap();
}

/// Every output of the text encoder in `dir/encoder` for `prompts`, by name, run directly.
fn raw_outputs(dir: &Path, tokenizer: &str, encoder: &str, prompts: &[&str]) -> Vec<(String, ArrayD<f32>)> {
    let ids = PromptTokenizer::open(&dir.join(tokenizer)).unwrap().encode(&strings(prompts)).unwrap();
    let flat: Vec<f32> = ids.iter().flatten().map(|&id| id as f32).collect();
    let ids = ArrayD::from_shape_vec(IxDyn(&[ids.len(), ids[0].len()]), flat).unwrap();
    let mut session = Session::new(&Model::load(dir.join(encoder).join("model.onnx")).unwrap(), &options()).unwrap();
    let outputs = session.run(&[("input_ids", ids.view())], &[]).unwrap();
    session.outputs().iter().cloned().zip(outputs).collect()
}

fn output<'a>(outputs: &'a [(String, ArrayD<f32>)], name: &str) -> &'a ArrayD<f32> {
    &outputs.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no output {name}")).1
}

#[test]
fn each_tokenizer_spells_a_word_as_one_token_and_pads_its_own_way() {
    let (_temp, dir) = tiny(Dtype::F32);
    let (vocabulary, _) = clip_vocabulary();
    let id = |token: &str| vocabulary.iter().position(|t| t == token).unwrap() as u32;
    let (bos, eos, bang) = (id(CLIP_BOS), id(CLIP_EOS), id("!"));
    assert_eq!(eos as usize, vocabulary.len() - 1, "the end token has the largest id, as CLIP's");
    let first = PromptTokenizer::open(&dir.join("tokenizer")).unwrap();
    let second = PromptTokenizer::open(&dir.join("tokenizer_2")).unwrap();
    for word in clip_words() {
        let expected = |pad| vec![bos, id(&format!("{word}</w>")), eos, pad, pad, pad, pad, pad];
        assert_eq!(first.encode(&strings(&[word])).unwrap()[0], expected(eos), "{word}");
        assert_eq!(second.encode(&strings(&[word])).unwrap()[0], expected(bang), "{word}");
    }
    // Lowercased; a word outside the vocabulary falls back to letters.
    let ids = first.encode(&strings(&["A Red CAT"])).unwrap();
    assert_eq!(ids[0][..5], [bos, id("a</w>"), id("red</w>"), id("cat</w>"), eos]);
    let ids = first.encode(&strings(&["zebra"])).unwrap();
    assert_eq!(ids[0][1..6], [id("z"), id("e"), id("b"), id("r"), id("a</w>")]);
}

#[test]
fn the_context_is_both_penultimate_hidden_states_side_by_side_and_text_embeds_the_pooled_projection() {
    let (_temp, dir) = tiny(Dtype::F32);
    let prompts = ["a red cat", "the blue house at night"];
    let first = raw_outputs(&dir, "tokenizer", "text_encoder", &prompts);
    let second = raw_outputs(&dir, "tokenizer_2", "text_encoder_2", &prompts);
    // diffusers: hidden_states[-2] of each, torch.concat(dim=-1); optimum's list ends with
    // last_hidden_state, so [-2] is hidden_states.{num_hidden_layers - 1}.
    let [a, b] = SDXL_TEXT_ENCODERS;
    let penultimate = |outputs, layers| output(outputs, &format!("hidden_states.{}", layers - 1)).clone();
    let expected =
        ndarray::concatenate(Axis(2), &[penultimate(&first, a.layers).view(), penultimate(&second, b.layers).view()])
            .unwrap();
    let mut pipeline = open(&dir);
    let embeddings = pipeline.encode_prompts(&strings(&prompts)).unwrap();
    assert_eq!(embeddings.context.shape(), &[2, 8, a.width + b.width]);
    assert_eq!(embeddings.context, expected);
    assert_eq!(embeddings.pooled.as_ref(), Some(output(&second, "text_embeds")));
    // Not the last hidden states, and the pooled rows differ with the prompt.
    let last = output(&second, "last_hidden_state");
    assert!(
        max_abs_diff(&rows(&embeddings.context, 0..2).slice_axis(Axis(2), Slice::from(a.width..)).to_owned(), last)
            > 1e-2
    );
    let pooled = embeddings.pooled.unwrap();
    assert!(max_abs_diff(&rows(&pooled, 0..1), &rows(&pooled, 1..2)) > 1e-3);
}

#[test]
fn guidance_without_a_negative_prompt_runs_on_zeros_and_an_empty_one_is_encoded() {
    let (_temp, dir) = tiny(Dtype::F32);
    let mut pipeline = open(&dir);
    let prompts = ["a red cat", "a dog"];
    let cond = pipeline.encode_prompts(&strings(&prompts)).unwrap();
    let empty = pipeline.encode_prompts(&strings(&["", ""])).unwrap();
    let req = request(&prompts, &[1, 2], 2, 5.0);
    let conditioning = pipeline.conditioning(&req).unwrap();
    assert_eq!(conditioning.guidance, Some(5.0));
    let text_time = conditioning.text_time.as_ref().unwrap();
    assert!(rows(&conditioning.context, 0..2).iter().all(|&v| v == 0.0), "force_zeros_for_empty_prompt");
    assert!(rows(&text_time.text_embeds, 0..2).iter().all(|&v| v == 0.0));
    assert_eq!(rows(&conditioning.context, 2..4), cond.context);
    assert_eq!(rows(&text_time.text_embeds, 2..4), cond.pooled.clone().unwrap());

    // A negative prompt given, even an empty one, is encoded.
    let given = GenerateRequest { negative_prompt: Some(String::new()), ..req.clone() };
    let conditioning = pipeline.conditioning(&given).unwrap();
    assert_eq!(rows(&conditioning.context, 0..2), empty.context);
    assert_eq!(rows(&conditioning.text_time.unwrap().text_embeds, 0..2), empty.pooled.clone().unwrap());

    // Without force_zeros_for_empty_prompt the empty prompt stands in, as in SD.
    edit_json(&dir.join("model_index.json"), |v| v["force_zeros_for_empty_prompt"] = false.into());
    let mut pipeline = open(&dir);
    let conditioning = pipeline.conditioning(&req).unwrap();
    assert_eq!(rows(&conditioning.context, 0..2), empty.context);
    edit_json(&dir.join("model_index.json"), |v| v["force_zeros_for_empty_prompt"] = "yes".into());
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("xl/model_index.json: force_zeros_for_empty_prompt must be true or false"), "{message}");
}

#[test]
fn time_ids_are_the_image_size_around_a_zero_crop_corner() {
    let (_temp, dir) = tiny(Dtype::F32);
    let mut pipeline = open(&dir);
    // unet/config.json's sample_size 8 times the VAE's factor 2.
    let conditioning = pipeline.conditioning(&request(&["a cat"], &[1], 2, 3.0)).unwrap();
    let time_ids = conditioning.text_time.unwrap().time_ids;
    assert_eq!(time_ids.shape(), &[2, 6], "both guidance halves");
    assert!(time_ids.rows().into_iter().all(|r| r.to_vec() == [16.0, 16.0, 0.0, 0.0, 16.0, 16.0]));
    let sized = GenerateRequest { size: Some((24, 32)), ..request(&["a cat", "a dog"], &[1, 2], 2, 1.0) };
    let conditioning = pipeline.conditioning(&sized).unwrap();
    let time_ids = conditioning.text_time.unwrap().time_ids;
    assert_eq!(conditioning.guidance, None);
    assert!(time_ids.rows().into_iter().all(|r| r.to_vec() == [24.0, 32.0, 0.0, 0.0, 24.0, 32.0]), "{time_ids:?}");
    let generated = pipeline.generate(&sized).unwrap();
    assert_eq!(generated.images.shape(), &[2, 3, 24, 32]);
    assert_eq!(generated.latents.shape(), &[2, 4, 12, 16]);
    // The size ids reach the UNet: other ids denoise the same noise otherwise.
    let mut shifted = pipeline.conditioning(&sized).unwrap();
    shifted.text_time.as_mut().unwrap().time_ids.fill(64.0);
    let moved = pipeline.generate_from(&sized, shifted, |d, s, x, t| d.eval(s, x, t)).unwrap();
    assert!(max_abs_diff(&generated.latents, &moved.latents) > 1e-4);
}

#[test]
fn the_guided_prediction_is_two_unet_runs_fed_their_own_text_embeds_and_time_ids() {
    let (_temp, dir) = tiny(Dtype::F32);
    let mut pipeline = open(&dir);
    let guidance = 4.0;
    let req = GenerateRequest { negative_prompt: Some("snow".into()), ..request(&["a red cat"], &[3], 1, guidance) };
    let cond = pipeline.encode_prompts(&strings(&["a red cat"])).unwrap();
    let uncond = pipeline.encode_prompts(&strings(&["snow"])).unwrap();
    let conditioning = pipeline.conditioning(&req).unwrap();
    let x = batch_noise(&[4, 8, 8], &[3]);
    let t = 981.0;
    let combined = UnetDenoiser::new(pipeline.unet_mut(), conditioning).eval(0, &x, t).unwrap();
    let time = ArrayD::from_elem(IxDyn(&[1]), t);
    let ids = ArrayD::from_shape_vec(IxDyn(&[1, 6]), vec![16.0, 16.0, 0.0, 0.0, 16.0, 16.0]).unwrap();
    let session = pipeline.unet_mut().session_mut();
    let mut run = |e: &bitsearch_pipeline::diffusers::PromptEmbeddings| {
        let pooled = e.pooled.clone().unwrap();
        let feeds = [
            ("sample", x.view()),
            ("timestep", time.view()),
            ("encoder_hidden_states", e.context.view()),
            ("text_embeds", pooled.view()),
            ("time_ids", ids.view()),
        ];
        session.run(&feeds, &[]).unwrap().swap_remove(0)
    };
    let (eps_u, eps_c) = (run(&uncond), run(&cond));
    let manual = &eps_u + &((&eps_c - &eps_u) * guidance);
    // Batch 2 against two runs of batch 1: kernels may round differently, by float noise.
    assert!(max_abs_diff(&combined, &manual) < 1e-4, "{}", max_abs_diff(&combined, &manual));
    assert!(max_abs_diff(&eps_u, &eps_c) > 1e-3, "the text must matter");
}

#[test]
fn generation_is_deterministic_per_seed_whatever_the_batch() {
    let (_temp, dir) = tiny(Dtype::F32);
    let mut pipeline = open(&dir);
    assert_eq!(pipeline.model_index().text, TextKind::Dual { force_zeros_for_empty_prompt: true });
    assert_eq!(pipeline.vae_config().scaling_factor, SDXL_VAE_SCALING);
    assert_eq!(pipeline.sampler_settings(&request(&["a"], &[1], 3, 5.0)).unwrap().kind, SamplerKind::Euler);
    let pair = request(&["a red cat", "a blue dog"], &[11, 22], 3, 5.0);
    let first = pipeline.generate(&pair).unwrap();
    assert_eq!(first.images.shape(), &[2, 3, 16, 16]);
    assert!(first.images.iter().all(|v| v.is_finite()));
    assert_eq!(pipeline.generate(&pair).unwrap().images, first.images);
    let alone = pipeline.generate(&request(&["a blue dog"], &[22], 3, 5.0)).unwrap();
    assert!(max_abs_diff(&rows(&first.images, 1..2), &alone.images) < 1e-5);
    assert!(max_abs_diff(&rows(&first.images, 0..1), &alone.images) > 1e-3);
}

#[test]
fn turbo_settings_take_one_step_from_timestep_999_without_guidance() {
    let (_temp, dir) = tiny(Dtype::F32);
    let timesteps = |dir: &Path| {
        let mut pipeline = open(dir);
        let req = request(&["a red cat"], &[4], 1, 0.0);
        assert_eq!(pipeline.conditioning(&req).unwrap().context.shape()[0], 1, "no guidance batch");
        let mut seen = Vec::new();
        let images = pipeline
            .generate_with(&req, |d, s, x, t| {
                seen.push(t);
                d.eval(s, x, t)
            })
            .unwrap()
            .images;
        assert!(images.iter().all(|v| v.is_finite()));
        seen
    };
    // SDXL base's leading spacing starts one step at timestep 1 (steps_offset): Turbo needs trailing.
    assert_eq!(timesteps(&dir), [1.0]);
    let config = serde_json::to_vec(&sdxl_turbo_scheduler_config()).unwrap();
    std::fs::write(dir.join("scheduler/scheduler_config.json"), config).unwrap();
    assert_eq!(timesteps(&dir), [999.0]);
}

#[test]
fn folders_that_do_not_fit_sdxl_are_refused_naming_the_file_and_field() {
    let (_temp, dir) = tiny(Dtype::F32);
    let config = dir.join("text_encoder_2/config.json");
    edit_json(&config, |v| {
        v.as_object_mut().unwrap().remove("num_hidden_layers");
    });
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("xl/text_encoder_2/config.json: no num_hidden_layers"), "{message}");
    edit_json(&config, |v| v["num_hidden_layers"] = 9.into());
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("xl/text_encoder_2/model.onnx: no output 'hidden_states.8'"), "{message}");
    edit_json(&config, |v| v["num_hidden_layers"] = 3.into());

    // An SD UNet in an SDXL folder.
    let sd = bitsearch_fixtures::sd_unet(&bitsearch_fixtures::UnetSpec {
        text: true,
        timestep: bitsearch_onnx::DataType::I64,
        timestep_cond: None,
    });
    let unet = dir.join("unet/model.onnx");
    let sdxl = std::fs::read(&unet).unwrap();
    std::fs::write(&unet, sd.to_bytes()).unwrap();
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(
        message.contains("takes no text_embeds or time_ids") && message.contains("lists two text encoders"),
        "{message}"
    );
    std::fs::write(&unet, sdxl).unwrap();

    // A first text encoder narrower than the UNet's cross-attention expects: refused before any run.
    let narrow = bitsearch_fixtures::ClipText { width: 8, ..SDXL_TEXT_ENCODERS[0] };
    let encoder = dir.join("text_encoder/model.onnx");
    let original = std::fs::read(&encoder).unwrap();
    std::fs::write(&encoder, bitsearch_fixtures::clip_text_encoder(&narrow, bitsearch_onnx::DataType::F32).to_bytes())
        .unwrap();
    let message = error_of(open(&dir).conditioning(&request(&["a cat"], &[1], 1, 1.0)));
    assert!(
        message
            .contains("xl/unet/model.onnx: UNet input 'encoder_hidden_states' is 48 wide, the text encoders give 40"),
        "{message}"
    );
    std::fs::write(&encoder, original).unwrap();

    // The refiner's layout.
    edit_json(&dir.join("model_index.json"), |v| v["text_encoder"] = serde_json::json!([null, null]));
    let message = error_of(DiffusersPipeline::open(&dir, &options()));
    assert!(message.contains("xl/model_index.json: lists text_encoder_2 without text_encoder"), "{message}");
}

/// optimum's `--dtype fp16` export: every model in float16, fed and read back as float32.
#[test]
fn a_float16_folder_generates_what_the_float32_one_does() {
    let ((_a, full_dir), (_b, half_dir)) = (tiny(Dtype::F32), tiny(Dtype::F16));
    let unet = Model::load(half_dir.join("unet/model.onnx")).unwrap();
    let text = Model::load(half_dir.join("text_encoder_2/model.onnx")).unwrap();
    let float16 = bitsearch_onnx::DataType::F16.to_onnx();
    assert!(unet.graph().initializer.iter().chain(&text.graph().initializer).any(|t| t.data_type() == float16));
    let req = request(&["a red cat", "a blue dog"], &[5, 6], 3, 5.0);
    let (full, half) = (open(&full_dir).generate(&req).unwrap(), open(&half_dir).generate(&req).unwrap());
    // Float16 rounding stays a small fraction of what another seed changes.
    let error = max_abs_diff(&full.images, &half.images);
    let seeds = max_abs_diff(&rows(&full.images, 0..1), &rows(&full.images, 1..2));
    assert!(error < 0.05 * seeds, "float16 moves the images by {error}, another seed by {seeds}");
}

#[test]
fn a_workload_generates_at_the_latent_size_dims_give() {
    use bitsearch_pipeline::workload::{self, Unchanged, WorkloadSpec};
    let (_temp, dir) = tiny(Dtype::F32);
    let spec = |dims: &[(&str, usize)]| WorkloadSpec {
        steps: Some(1),
        prompts: strings(&["a red cat"]),
        dims: dims.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    // sample_size 8 and a VAE of scale 2: 16×16 images unless told.
    let mut default = workload::open(&dir, &spec(&[])).unwrap();
    assert_eq!(default.run(0, &mut Unchanged).unwrap().shape(), &[1, 3, 16, 16]);
    let mut small = workload::open(&dir, &spec(&[("height", 4), ("width", 6)])).unwrap();
    assert_eq!(small.run(0, &mut Unchanged).unwrap().shape(), &[1, 3, 8, 12]);
    let err = workload::open(&dir, &spec(&[("height", 4)])).unwrap_err().to_string();
    assert!(err.starts_with("dims:") && err.contains("--dim width=W"), "{err}");
}

#[test]
fn released_text_encoders_reopen_and_encode_the_same() {
    let (_temp, dir) = tiny(Dtype::F32);
    let mut pipeline = open(&dir);
    let prompts = strings(&["a red cat", "the blue house at night"]);
    let before = pipeline.encode_prompts(&prompts).unwrap();
    pipeline.release_text_encoders();
    assert_eq!(pipeline.encode_prompts(&prompts).unwrap(), before);
}
