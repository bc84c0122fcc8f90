//! The VAE decoder: latents divided by the VAE's scaling factor in, images out, left as the
//! network gives them (nominally in [-1, 1]).

use crate::diffusers::layout::VaeConfig;
use crate::error::PipelineError;
use bitsearch_onnx::Model;
use bitsearch_runtime::{Session, SessionOptions};
use ndarray::ArrayD;
use std::path::Path;

#[derive(Debug)]
pub(crate) struct VaeDecoder {
    session: Session,
    input: String,
    config: VaeConfig,
}

impl VaeDecoder {
    pub fn open(path: &Path, config: VaeConfig, options: &SessionOptions) -> Result<Self, PipelineError> {
        let session = Session::new(&Model::load(path)?, options)?;
        let input = match session.inputs() {
            [only] => only.name.clone(),
            inputs => {
                let names: Vec<_> = inputs.iter().map(|s| s.name.as_str()).collect();
                return Err(PipelineError::file(
                    path,
                    format!("the VAE decoder must take one input (latent_sample), it takes [{}]", names.join(", ")),
                ));
            }
        };
        Ok(Self { session, input, config })
    }

    pub fn config(&self) -> VaeConfig {
        self.config
    }

    /// Images [batch, channels, height, width] from latents [batch, channels, h, w].
    pub fn decode(&mut self, latents: &ArrayD<f32>) -> Result<ArrayD<f32>, PipelineError> {
        let scaled = latents / self.config.scaling_factor;
        let mut outputs = self.session.run(&[(self.input.as_str(), scaled.view())], &[])?;
        Ok(outputs.swap_remove(0))
    }
}
