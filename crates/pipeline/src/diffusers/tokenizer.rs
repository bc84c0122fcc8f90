//! Prompt tokenization as the text encoder expects it: BOS, the words, EOS, then padding to
//! the fixed length, truncating long prompts so that EOS stays last.
//!
//! A `tokenizer/tokenizer.json` (Hugging Face fast tokenizer) is used as is. Stable Diffusion
//! folders often ship only CLIP's slow-tokenizer files, `vocab.json` and `merges.txt`; from
//! those the same tokenizer CLIP's fast version uses is assembled: whitespace-collapsed,
//! lowercased text split by CLIP's word pattern, byte-level BPE with `</w>` ending each word.

use crate::diffusers::layout::read_optional_json;
use crate::error::PipelineError;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence, Strip};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, Model as _, PaddingDirection, PaddingParams, PaddingStrategy, SplitDelimiterBehavior, Tokenizer,
    TruncationDirection, TruncationParams, TruncationStrategy,
};

/// CLIP's token length, the default when `tokenizer_config.json` gives none.
const DEFAULT_MAX_LENGTH: usize = 77;
/// HF writes a huge sentinel (1e30) for "no limit"; no text encoder takes this many tokens.
const LONGEST_PLAUSIBLE: f64 = 1e6;
const CLIP_BOS: &str = "<|startoftext|>";
const CLIP_EOS: &str = "<|endoftext|>";
/// CLIP's word pattern (contractions, letter runs, single digits, other symbol runs).
const CLIP_WORDS: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A tokenizer that always yields `max_length` ids per prompt.
#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    inner: Tokenizer,
    max_length: usize,
    pad_id: u32,
    /// The file the vocabulary came from, for error messages.
    source: PathBuf,
}

/// The special tokens and length in `tokenizer_config.json`.
#[derive(Debug, Default)]
struct TokenizerConfig {
    max_length: Option<usize>,
    pad: Option<String>,
    bos: Option<String>,
    eos: Option<String>,
    unk: Option<String>,
}

impl PromptTokenizer {
    /// Loads the tokenizer in `dir` (the pipeline's `tokenizer/` folder).
    pub fn open(dir: &Path) -> Result<Self, PipelineError> {
        let config = read_config(&dir.join("tokenizer_config.json"))?;
        let json = dir.join("tokenizer.json");
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let (mut inner, source) = if json.exists() {
            let inner =
                Tokenizer::from_file(&json).map_err(|e| PipelineError::file(&json, format!("not a tokenizer: {e}")))?;
            (inner, json)
        } else if vocab.exists() && merges.exists() {
            (clip_bpe(&vocab, &merges, &config)?, vocab)
        } else {
            return Err(PipelineError::file(
                dir,
                "no tokenizer found: expected tokenizer.json, or vocab.json and merges.txt (CLIP's slow tokenizer)",
            ));
        };
        let max_length = config.max_length.unwrap_or(DEFAULT_MAX_LENGTH);
        // CLIP pads with its end token when the config names no pad token.
        let pad_token = config.pad.or(config.eos).unwrap_or_else(|| CLIP_EOS.to_string());
        let pad_id = inner.token_to_id(&pad_token).ok_or_else(|| {
            PipelineError::file(&source, format!("the pad token '{pad_token}' is not in the vocabulary"))
        })?;
        let truncation = TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        // Truncation leaves room for the special tokens the post-processor adds, so EOS stays.
        inner.with_truncation(Some(truncation)).map_err(|e| PipelineError::file(&source, e.to_string()))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        Ok(Self { inner, max_length, pad_id, source })
    }

    /// Ids per prompt (the text encoder's sequence length).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of each prompt, exactly `max_length` of them.
    pub fn encode(&self, prompts: &[String]) -> Result<Vec<Vec<u32>>, PipelineError> {
        prompts
            .iter()
            .map(|prompt| {
                let encoding = self.inner.encode(prompt.as_str(), true).map_err(|e| {
                    PipelineError::file(&self.source, format!("cannot tokenize prompt {prompt:?}: {e}"))
                })?;
                let ids = encoding.get_ids().to_vec();
                if ids.len() != self.max_length {
                    return Err(PipelineError::file(
                        &self.source,
                        format!("prompt {prompt:?} gave {} tokens instead of {}", ids.len(), self.max_length),
                    ));
                }
                Ok(ids)
            })
            .collect()
    }
}

fn read_config(path: &Path) -> Result<TokenizerConfig, PipelineError> {
    let Some(value) = read_optional_json(path)? else { return Ok(TokenizerConfig::default()) };
    // Special tokens are plain strings or AddedToken objects with a `content` field.
    let token = |field: &str| -> Result<Option<String>, PipelineError> {
        match value.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => v
                .get("content")
                .and_then(Value::as_str)
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| PipelineError::file(path, format!("{field} must be a token string, got {v}"))),
        }
    };
    let max_length = match value.get("model_max_length") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(n) if n >= LONGEST_PLAUSIBLE => None,
            Some(n) if n >= 2.0 && n.fract() == 0.0 => Some(n as usize),
            _ => {
                return Err(PipelineError::file(
                    path,
                    format!("model_max_length must be a whole number of at least 2 (room for BOS and EOS), got {v}"),
                ));
            }
        },
    };
    Ok(TokenizerConfig {
        max_length,
        pad: token("pad_token")?,
        bos: token("bos_token")?,
        eos: token("eos_token")?,
        unk: token("unk_token")?,
    })
}

/// CLIP's fast tokenizer assembled from its slow-tokenizer files.
fn clip_bpe(vocab: &Path, merges: &Path, config: &TokenizerConfig) -> Result<Tokenizer, PipelineError> {
    let utf8 = |p: &Path| p.to_str().map(str::to_string).ok_or_else(|| PipelineError::file(p, "path is not UTF-8"));
    let bos = config.bos.clone().unwrap_or_else(|| CLIP_BOS.to_string());
    let eos = config.eos.clone().unwrap_or_else(|| CLIP_EOS.to_string());
    let unk = config.unk.clone().unwrap_or_else(|| CLIP_EOS.to_string());
    let bpe = BPE::from_file(&utf8(vocab)?, &utf8(merges)?)
        .end_of_word_suffix("</w>".into())
        .unk_token(unk)
        .build()
        .map_err(|e| PipelineError::file(vocab, format!("cannot build a BPE tokenizer with merges.txt: {e}")))?;
    let id = |token: &str| {
        bpe.token_to_id(token)
            .ok_or_else(|| PipelineError::file(vocab, format!("the token '{token}' is not in the vocabulary")))
    };
    let (bos_id, eos_id) = (id(&bos)?, id(&eos)?);
    let regex_error = |e: tokenizers::Error| PipelineError::file(vocab, format!("tokenizer pattern: {e}"));
    let normalizer = NormalizerSequence::new(vec![
        NFC.into(),
        Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(regex_error)?.into(),
        Strip::new(true, true).into(),
        Lowercase.into(),
    ]);
    let words = Split::new(SplitPattern::Regex(CLIP_WORDS.into()), SplitDelimiterBehavior::Removed, true)
        .map_err(regex_error)?;
    let pre_tokenizer = PreTokenizerSequence::new(vec![words.into(), ByteLevel::new(false, true, false).into()]);
    let template = TemplateProcessing::builder()
        .try_single(format!("{bos} $A {eos}"))
        .and_then(|b| {
            b.special_tokens(vec![(bos.as_str(), bos_id), (eos.as_str(), eos_id)]).build().map_err(|e| e.to_string())
        })
        .map_err(|e| PipelineError::file(vocab, format!("special-token template: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_post_processor(Some(template))
        .with_decoder(Some(ByteLevel::default()));
    tokenizer.add_special_tokens(&[AddedToken::from(bos, true), AddedToken::from(eos, true)]);
    Ok(tokenizer)
}
