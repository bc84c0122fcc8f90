//! The JSON files of a diffusers/optimum ONNX folder: `model_index.json`, the scheduler config
//! and the UNet/VAE configs. Every error names the file, and the field where one is at fault.

use crate::error::PipelineError;
use crate::schedule::SchedulerConfig;
use serde_json::Value;
use std::path::Path;

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::file(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| PipelineError::file(path, format!("invalid JSON: {e}")))
}

/// Reads a JSON file that exporters may leave out; `None` when it does not exist.
pub(crate) fn read_optional_json(path: &Path) -> Result<Option<Value>, PipelineError> {
    if path.exists() { read_json(path).map(Some) } else { Ok(None) }
}

/// What `model_index.json` says about the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIndex {
    /// `_class_name`, e.g. `OnnxStableDiffusionPipeline` or `StableDiffusionXLPipeline`.
    pub class_name: String,
    /// How prompts condition the UNet, from the components the index lists.
    pub text: TextKind,
}

/// The text side of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// One tokenizer and text encoder whose last hidden state the UNet reads (Stable Diffusion
    /// 1.x/2.x, LCM).
    Single,
    /// SDXL's two tokenizers and text encoders, plus the pooled text embedding and size ids the
    /// UNet also takes. With `force_zeros_for_empty_prompt`, guidance without a negative prompt
    /// runs its unconditional half on zeros instead of the encoded empty prompt.
    Dual { force_zeros_for_empty_prompt: bool },
}

pub(crate) fn model_index(path: &Path) -> Result<ModelIndex, PipelineError> {
    let value = read_json(path)?;
    let object = value.as_object().ok_or_else(|| PipelineError::file(path, "expected a JSON object"))?;
    let class_name = object.get("_class_name").and_then(Value::as_str).unwrap_or_default().to_string();
    // diffusers and optimum write an absent component as [null, null].
    let listed = |field: &str| object.get(field).is_some_and(|v| !v.is_null() && v.get(0).is_none_or(|c| !c.is_null()));
    if !listed("text_encoder_2") {
        return Ok(ModelIndex { class_name, text: TextKind::Single });
    }
    if !listed("text_encoder") {
        return Err(PipelineError::file(
            path,
            "lists text_encoder_2 without text_encoder (an SDXL refiner): only pipelines with both text encoders \
             are supported",
        ));
    }
    let flag = |field: &str, default: bool| match object.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(PipelineError::file(path, format!("{field} must be true or false, got {other}"))),
    };
    // The refiner's aesthetic score takes the place of the target size in its time ids.
    if flag("requires_aesthetics_score", false)? {
        return Err(PipelineError::file(path, "requires_aesthetics_score (an SDXL refiner) is not supported"));
    }
    // diffusers' and optimum's SDXL pipelines default it to true.
    let force_zeros_for_empty_prompt = flag("force_zeros_for_empty_prompt", true)?;
    Ok(ModelIndex { class_name, text: TextKind::Dual { force_zeros_for_empty_prompt } })
}

/// `num_hidden_layers` of a text encoder's `config.json`: SDXL reads the hidden state before
/// the last layer's, which optimum exports as `hidden_states.{num_hidden_layers - 1}`.
pub(crate) fn hidden_layers(path: &Path) -> Result<usize, PipelineError> {
    let value = read_json(path)?;
    match value.get("num_hidden_layers") {
        Some(v) => v.as_u64().filter(|&n| (1..=10_000).contains(&n)).map(|n| n as usize).ok_or_else(|| {
            PipelineError::file(path, format!("num_hidden_layers must be a positive whole number, got {v}"))
        }),
        None => Err(PipelineError::file(
            path,
            "no num_hidden_layers: it says which hidden_states.N output is the penultimate layer's",
        )),
    }
}

/// Allowed values of the scheduler's string fields, in the words of the error message.
const CHOICES: [(&str, &[&str]); 3] = [
    ("beta_schedule", &["linear", "scaled_linear", "squaredcos_cap_v2"]),
    ("prediction_type", &["epsilon", "v_prediction", "sample"]),
    ("timestep_spacing", &["leading", "trailing", "linspace"]),
];

/// Reads `scheduler_config.json`, checking the fields the schedule depends on so an error says
/// which field holds what, then builds the schedule once to catch impossible values early.
pub(crate) fn scheduler_config(path: &Path) -> Result<SchedulerConfig, PipelineError> {
    let value = read_json(path)?;
    if !value.is_object() {
        return Err(PipelineError::file(path, "expected a JSON object"));
    }
    for (field, allowed) in CHOICES {
        match value.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => {}
            Some(other) => {
                let shown = other.as_str().map_or_else(|| other.to_string(), |s| format!("'{s}'"));
                let (last, rest) = allowed.split_last().unwrap_or((&"", &[]));
                return Err(PipelineError::file(
                    path,
                    format!("{field} {shown} is not supported (expected {} or {last})", rest.join(", ")),
                ));
            }
        }
    }
    if value.get("trained_betas").is_some_and(|v| !v.is_null()) {
        return Err(PipelineError::file(
            path,
            "trained_betas is not supported (describe the schedule with beta_start, beta_end and beta_schedule)",
        ));
    }
    let config: SchedulerConfig = serde_json::from_value(value)
        .map_err(|e| PipelineError::file(path, format!("invalid scheduler config: {e}")))?;
    config.schedule().map_err(|e| PipelineError::file(path, e.to_string()))?;
    Ok(config)
}

/// The fields of `vae_decoder/config.json` decoding needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeConfig {
    /// Latents are divided by it before decoding (0.18215 for Stable Diffusion 1.x/2.x).
    pub scaling_factor: f32,
    /// Image pixels per latent pixel along each side: 2^(len(block_out_channels) − 1).
    pub scale_factor: usize,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self { scaling_factor: 0.18215, scale_factor: 8 }
    }
}

/// Reads the VAE config; absent file or fields take Stable Diffusion's values.
pub(crate) fn vae_config(path: &Path) -> Result<VaeConfig, PipelineError> {
    let mut config = VaeConfig::default();
    let Some(value) = read_optional_json(path)? else { return Ok(config) };
    if let Some(v) = value.get("scaling_factor") {
        config.scaling_factor =
            v.as_f64().filter(|s| *s > 0.0).ok_or_else(|| {
                PipelineError::file(path, format!("scaling_factor must be a positive number, got {v}"))
            })? as f32;
    }
    if let Some(v) = value.get("block_out_channels") {
        let blocks = v.as_array().filter(|b| !b.is_empty() && b.len() < 16).ok_or_else(|| {
            PipelineError::file(path, format!("block_out_channels must be a non-empty list, got {v}"))
        })?;
        config.scale_factor = 1 << (blocks.len() - 1);
    }
    Ok(config)
}

/// `sample_size` from `unet/config.json` as (height, width) in latent pixels, if given.
pub(crate) fn unet_sample_size(path: &Path) -> Result<Option<(usize, usize)>, PipelineError> {
    let Some(value) = read_optional_json(path)? else { return Ok(None) };
    let bad = |v: &Value| PipelineError::file(path, format!("sample_size must be a size or [height, width], got {v}"));
    let size = |v: &Value| v.as_u64().filter(|&s| s > 0).map(|s| s as usize);
    match value.get("sample_size") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(pair)) => match pair.as_slice() {
            [h, w] => Ok(Some((size(h).ok_or_else(|| bad(h))?, size(w).ok_or_else(|| bad(w))?))),
            _ => Err(bad(&Value::Array(pair.clone()))),
        },
        Some(v) => size(v).map(|s| Some((s, s))).ok_or_else(|| bad(v)),
    }
}
