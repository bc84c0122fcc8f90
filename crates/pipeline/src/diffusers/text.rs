//! The text encoder: token ids in, one hidden state per token out (`last_hidden_state`, the
//! sequence the UNet's cross-attention reads).

use crate::error::PipelineError;
use bitsearch_onnx::Model;
use bitsearch_runtime::{Session, SessionOptions};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

/// The output the UNet consumes; exporters put `pooler_output` beside it.
const HIDDEN_STATES: &str = "last_hidden_state";
const IDS: &str = "input_ids";

#[derive(Debug)]
pub(crate) struct TextEncoder {
    session: Session,
    path: PathBuf,
    output: usize,
}

impl TextEncoder {
    pub fn open(path: &Path, options: &SessionOptions) -> Result<Self, PipelineError> {
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
        let output = session.outputs().iter().position(|o| o == HIDDEN_STATES).unwrap_or(0);
        Ok(Self { session, path: path.to_path_buf(), output })
    }

    /// Hidden states [prompts, tokens, width] of each row of token ids.
    pub fn encode(&mut self, ids: &[Vec<u32>]) -> Result<ArrayD<f32>, PipelineError> {
        let length = ids.first().map_or(0, Vec::len);
        // Ids stay exact in f32 up to 2^24, far above any vocabulary; the runtime casts to int64.
        let flat: Vec<f32> = ids.iter().flatten().map(|&id| id as f32).collect();
        let ids = ArrayD::from_shape_vec(IxDyn(&[ids.len(), length]), flat)
            .map_err(|e| PipelineError::Request(format!("token ids of unequal lengths: {e}")))?;
        let mut outputs = self.session.run(&[(IDS, ids.view())], &[])?;
        if outputs.len() <= self.output || outputs[self.output].ndim() != 3 {
            return Err(PipelineError::file(
                &self.path,
                format!("expected '{HIDDEN_STATES}' of shape [batch, tokens, width] among the outputs"),
            ));
        }
        Ok(outputs.swap_remove(self.output))
    }
}
