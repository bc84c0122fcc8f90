//! A text encoder: token ids in, hidden states per token out (the sequence the UNet's
//! cross-attention reads), and for SDXL's second encoder a pooled embedding per prompt.

use crate::error::PipelineError;
use bitsearch_onnx::Model;
use bitsearch_runtime::{Session, SessionOptions};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use std::path::{Path, PathBuf};

/// The hidden states a Stable Diffusion 1.x/2.x UNet reads; exporters put `pooler_output`
/// beside it.
const LAST_HIDDEN_STATE: &str = "last_hidden_state";
const IDS: &str = "input_ids";

#[derive(Debug)]
pub(crate) struct TextEncoder {
    /// None once released: the next encode opens it again.
    session: Option<Session>,
    options: SessionOptions,
    path: PathBuf,
    /// Output index of the hidden states the UNet reads.
    hidden: usize,
    /// Output index of the pooled embedding, where one is read.
    pooled: Option<usize>,
}

/// Which outputs of a text encoder are read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outputs<'a> {
    /// The hidden states by name; None: `last_hidden_state`, or else the first output.
    pub hidden: Option<&'a str>,
    /// The pooled embedding [prompts, width] by name.
    pub pooled: Option<&'a str>,
}

/// One batch of prompts through a text encoder.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// [prompts, tokens, width].
    pub hidden: ArrayD<f32>,
    /// [prompts, width], when the encoder was opened to read one.
    pub pooled: Option<ArrayD<f32>>,
}

impl TextEncoder {
    pub fn open(path: &Path, options: &SessionOptions, outputs: Outputs<'_>) -> Result<Self, PipelineError> {
        let session = Session::new(&Model::load(path)?, options)?;
        if let Some(other) = session.inputs().iter().find(|s| s.name != IDS) {
            return Err(PipelineError::file(
                path,
                format!("input '{}' is not supported: the text encoder must take only '{IDS}'", other.name),
            ));
        }
        if session.inputs().is_empty() {
            return Err(PipelineError::file(path, format!("the text encoder has no input '{IDS}'")));
        }
        let names = session.outputs();
        let find = |name: &str, what: &str| {
            names.iter().position(|o| o == name).ok_or_else(|| {
                PipelineError::file(path, format!("no output '{name}' ({what}); its outputs: {}", names.join(", ")))
            })
        };
        let hidden = match outputs.hidden {
            Some(name) => find(name, "the hidden states the UNet reads")?,
            None => names.iter().position(|o| o == LAST_HIDDEN_STATE).unwrap_or(0),
        };
        let pooled = outputs.pooled.map(|name| find(name, "the pooled text embedding the UNet reads")).transpose()?;
        Ok(Self { session: Some(session), options: options.clone(), path: path.to_path_buf(), hidden, pooled })
    }

    /// Closes the session (and lets its weights go); the next encode opens it again.
    pub fn release(&mut self) {
        self.session = None;
    }

    /// The outputs read for each row of token ids.
    pub fn encode(&mut self, ids: &[Vec<u32>]) -> Result<Encoded, PipelineError> {
        let length = ids.first().map_or(0, Vec::len);
        let prompts = ids.len();
        // Ids stay exact in f32 up to 2^24, far above any vocabulary; the runtime casts to int64.
        let flat: Vec<f32> = ids.iter().flatten().map(|&id| id as f32).collect();
        let ids = ArrayD::from_shape_vec(IxDyn(&[prompts, length]), flat)
            .map_err(|e| PipelineError::Request(format!("token ids of unequal lengths: {e}")))?;
        let session = match &mut self.session {
            Some(session) => session,
            None => self.session.insert(Session::new(&Model::load(&self.path)?, &self.options)?),
        };
        let outputs = session.run(&[(IDS, ids.view())], &[])?;
        let names = session.outputs();
        let take = |index: usize, rank: usize, layout: &str| {
            outputs.get(index).filter(|o| o.ndim() == rank && o.shape()[0] == prompts).cloned().ok_or_else(|| {
                let shape = outputs.get(index).map(|o| format!("{:?}", o.shape())).unwrap_or_default();
                PipelineError::file(
                    &self.path,
                    format!("output '{}' has shape {shape}, expected {layout} for {prompts} prompts", names[index]),
                )
            })
        };
        let hidden = take(self.hidden, 3, "[prompts, tokens, width]")?;
        let pooled = self.pooled.map(|index| take(index, 2, "[prompts, width]")).transpose()?;
        Ok(Encoded { hidden, pooled })
    }
}

/// How the first (BOS) row of text-encoder outputs compares with the other rows. MixDQ saw
/// CLIP's BOS row far larger than the rest, so that one quantization range for the whole
/// output wastes its levels on a row that carries no prompt information.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenNorms {
    /// Mean L2 norm of the BOS rows.
    pub bos: f64,
    /// Median L2 norm of every other row (words, EOS and padding).
    pub others_median: f64,
    /// Largest L2 norm of any other row.
    pub others_max: f64,
}

/// Row norms of hidden states [prompts, tokens, width] (at least two tokens).
pub fn token_norms(hidden: ArrayViewD<'_, f32>) -> TokenNorms {
    let norm = |row: ArrayViewD<'_, f32>| row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    let (mut bos, mut others) = (Vec::new(), Vec::new());
    for prompt in hidden.axis_iter(Axis(0)) {
        for (t, row) in prompt.axis_iter(Axis(0)).enumerate() {
            if t == 0 { bos.push(norm(row)) } else { others.push(norm(row)) }
        }
    }
    others.sort_by(f64::total_cmp);
    TokenNorms {
        bos: bos.iter().sum::<f64>() / bos.len().max(1) as f64,
        others_median: others.get(others.len() / 2).copied().unwrap_or(f64::NAN),
        others_max: others.last().copied().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bos_row_is_measured_apart_from_the_rest() {
        // Two prompts of three tokens, width 2: BOS rows of norm 5 and 10, others 1, 2, 1, 3.
        let hidden =
            ArrayD::from_shape_vec(IxDyn(&[2, 3, 2]), vec![3.0, 4.0, 1.0, 0.0, 0.0, 2.0, 6.0, 8.0, 0.0, 1.0, 3.0, 0.0])
                .unwrap();
        let norms = token_norms(hidden.view());
        assert_eq!((norms.bos, norms.others_median, norms.others_max), (7.5, 2.0, 3.0));
    }
}
