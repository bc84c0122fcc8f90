//! Prompts to what the UNet is conditioned on: the one place where Stable Diffusion 1.x/2.x
//! and SDXL folders differ ([`TextKind`]).
//!
//! SD encodes a prompt with its one text encoder and hands the UNet `last_hidden_state`. SDXL
//! does what diffusers' `StableDiffusionXLPipeline.encode_prompt` does: each tokenizer feeds its
//! own encoder, the two penultimate hidden states (`hidden_states[-2]`) are concatenated on the
//! feature axis, and the second encoder's projected pooled output becomes `text_embeds`.

use crate::diffusers::layout::{self, TextKind};
use crate::diffusers::text::{Encoded, Outputs, TextEncoder};
use crate::diffusers::tokenizer::PromptTokenizer;
use crate::error::PipelineError;
use bitsearch_runtime::SessionOptions;
use ndarray::{ArrayD, Axis};
use std::path::Path;

/// SDXL's second text encoder output that becomes the UNet's `text_embeds`.
const TEXT_EMBEDS: &str = "text_embeds";

/// What prompts give the UNet.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptEmbeddings {
    /// Hidden states [prompts, tokens, width] for `encoder_hidden_states`.
    pub context: ArrayD<f32>,
    /// SDXL's pooled embedding [prompts, width] for `text_embeds`.
    pub pooled: Option<ArrayD<f32>>,
}

impl PromptEmbeddings {
    /// `first`'s prompts followed by `second`'s.
    pub(crate) fn stack(first: &Self, second: &Self) -> Result<Self, PipelineError> {
        let join = |a: &ArrayD<f32>, b: &ArrayD<f32>| {
            ndarray::concatenate(Axis(0), &[a.view(), b.view()])
                .map_err(|e| PipelineError::Request(format!("prompt embeddings of unequal shapes: {e}")))
        };
        let pooled = match (&first.pooled, &second.pooled) {
            (Some(a), Some(b)) => Some(join(a, b)?),
            _ => None,
        };
        Ok(Self { context: join(&first.context, &second.context)?, pooled })
    }
}

/// A tokenizer and the text encoder it feeds.
#[derive(Debug)]
pub(crate) struct Branch {
    tokenizer: PromptTokenizer,
    encoder: TextEncoder,
}

impl Branch {
    fn open(
        dir: &Path,
        (tokenizer, encoder): (&str, &str),
        outputs: Outputs<'_>,
        options: &SessionOptions,
    ) -> Result<Self, PipelineError> {
        let tokenizer = PromptTokenizer::open(&dir.join(tokenizer))?;
        let encoder = TextEncoder::open(&dir.join(encoder).join("model.onnx"), options, outputs)?;
        Ok(Self { tokenizer, encoder })
    }

    fn encode(&mut self, prompts: &[String]) -> Result<Encoded, PipelineError> {
        let ids = self.tokenizer.encode(prompts)?;
        self.encoder.encode(&ids)
    }
}

/// The tokenizers and text encoders of a folder.
#[derive(Debug)]
pub(crate) enum PromptEncoder {
    Single(Branch),
    /// The second branch is boxed: a branch is large and most folders have one.
    Dual {
        first: Branch,
        second: Box<Branch>,
        force_zeros: bool,
    },
}

impl PromptEncoder {
    /// Opens `tokenizer/` and `text_encoder/`, and for SDXL `tokenizer_2/` and `text_encoder_2/`.
    pub fn open(dir: &Path, kind: TextKind, options: &SessionOptions) -> Result<Self, PipelineError> {
        let last = Outputs { hidden: None, pooled: None };
        let (first, second) = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"));
        match kind {
            TextKind::Single => Ok(Self::Single(Branch::open(dir, first, last, options)?)),
            TextKind::Dual { force_zeros_for_empty_prompt } => {
                let penultimate = |encoder: &str| -> Result<String, PipelineError> {
                    let layers = layout::hidden_layers(&dir.join(encoder).join("config.json"))?;
                    Ok(format!("hidden_states.{}", layers - 1))
                };
                let (hidden_1, hidden_2) = (penultimate(first.1)?, penultimate(second.1)?);
                let outputs_1 = Outputs { hidden: Some(&hidden_1), pooled: None };
                let outputs_2 = Outputs { hidden: Some(&hidden_2), pooled: Some(TEXT_EMBEDS) };
                Ok(Self::Dual {
                    first: Branch::open(dir, first, outputs_1, options)?,
                    second: Box::new(Branch::open(dir, second, outputs_2, options)?),
                    force_zeros: force_zeros_for_empty_prompt,
                })
            }
        }
    }

    /// Closes the text encoders' sessions; they open again when prompts are next encoded.
    pub fn release(&mut self) {
        match self {
            Self::Single(branch) => branch.encoder.release(),
            Self::Dual { first, second, .. } => {
                first.encoder.release();
                second.encoder.release();
            }
        }
    }

    /// The tokenizer of `text_encoder/`.
    pub fn tokenizer(&self) -> &PromptTokenizer {
        match self {
            Self::Single(branch) | Self::Dual { first: branch, .. } => &branch.tokenizer,
        }
    }

    pub fn encode(&mut self, prompts: &[String]) -> Result<PromptEmbeddings, PipelineError> {
        match self {
            Self::Single(branch) => Ok(PromptEmbeddings { context: branch.encode(prompts)?.hidden, pooled: None }),
            Self::Dual { first, second, .. } => {
                let (a, b) = (first.encode(prompts)?, second.encode(prompts)?);
                let context = ndarray::concatenate(Axis(2), &[a.hidden.view(), b.hidden.view()]).map_err(|e| {
                    PipelineError::Request(format!(
                        "the two text encoders' hidden states do not stand side by side ({:?} and {:?}): {e}",
                        a.hidden.shape(),
                        b.hidden.shape()
                    ))
                })?;
                Ok(PromptEmbeddings { context, pooled: b.pooled })
            }
        }
    }

    /// The unconditional half of guidance for `prompts` prompts: `negative` (or the empty prompt)
    /// encoded, except that an SDXL folder forcing zeros for empty prompts gives zeros shaped
    /// like `conditional` when no negative prompt is given, as diffusers does.
    pub fn unconditional(
        &mut self,
        negative: Option<&str>,
        conditional: &PromptEmbeddings,
    ) -> Result<PromptEmbeddings, PipelineError> {
        if negative.is_none() && matches!(self, Self::Dual { force_zeros: true, .. }) {
            let zeros = |a: &ArrayD<f32>| ArrayD::zeros(a.raw_dim());
            return Ok(PromptEmbeddings {
                context: zeros(&conditional.context),
                pooled: conditional.pooled.as_ref().map(zeros),
            });
        }
        let prompts = conditional.context.shape()[0];
        self.encode(&vec![negative.unwrap_or_default().to_string(); prompts])
    }
}
