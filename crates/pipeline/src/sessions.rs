//! The denoiser's sessions: one for a float model, or one per step-group configuration of a
//! step-aware quantized model, whose manifest says which runs which denoising step (and names
//! the noise correction its samplers apply).

use crate::error::PipelineError;
use bitsearch_onnx::Model;
use bitsearch_records::{Manifest, NoiseCorrection};
use bitsearch_runtime::{Session, SessionOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
pub struct DenoiserSessions {
    sessions: Vec<Session>,
    manifest: Option<Manifest>,
    correction: Option<Arc<NoiseCorrection>>,
    /// The session of each step of the current run; empty: the first runs every step.
    by_step: Vec<usize>,
}

impl DenoiserSessions {
    pub fn single(session: Session) -> Self {
        Self { sessions: vec![session], manifest: None, correction: None, by_step: Vec::new() }
    }

    /// One session per model in memory, `by_step[s]` running step `s` (empty: the first runs
    /// every step).
    pub fn from_models(models: &[Model], by_step: Vec<usize>, options: &SessionOptions) -> Result<Self, PipelineError> {
        Self::check_steps(models.len(), &by_step)?;
        let sessions = models.iter().map(|m| Session::new(m, options)).collect::<Result<_, _>>()?;
        Self::from_sessions(sessions, by_step)
    }

    /// Sessions built elsewhere (on another thread, while the current ones still run),
    /// `by_step[s]` running step `s` (empty: the first runs every step).
    pub fn from_sessions(sessions: Vec<Session>, by_step: Vec<usize>) -> Result<Self, PipelineError> {
        Self::check_steps(sessions.len(), &by_step)?;
        Ok(Self { sessions, manifest: None, correction: None, by_step })
    }

    fn check_steps(models: usize, by_step: &[usize]) -> Result<(), PipelineError> {
        if models == 0 || by_step.iter().any(|&m| m >= models) {
            return Err(PipelineError::Request(format!("{models} denoiser models cannot run the steps {by_step:?}")));
        }
        Ok(())
    }

    /// The sessions of the denoiser at `path`: a `quantize` folder, or a file with such a
    /// folder's manifest beside it, gives every model the manifest lists; any other file itself.
    /// The files are memory-mapped and their weights read in place (see `Session::new`).
    pub fn open(path: &Path, options: &SessionOptions) -> Result<Self, PipelineError> {
        let dir = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
        let manifest = Manifest::find(dir).map_err(|e| PipelineError::file(dir, e.to_string()))?;
        let Some(manifest) = manifest else {
            if path.is_dir() {
                return Err(PipelineError::file(path, "is a folder without a bitsearch quantization manifest"));
            }
            return Ok(Self::single(Session::new(&Model::load(path)?, options)?));
        };
        let files: Vec<PathBuf> = manifest.models.iter().map(|m| dir.join(&m.file)).collect();
        if !path.is_dir() && !files.iter().any(|f| f == path) {
            return Err(PipelineError::file(path, "is not one of the models its folder's manifest lists"));
        }
        if !options.unverified {
            manifest.verify_files(dir).map_err(|e| PipelineError::file(dir, e.to_string()))?;
        }
        let sessions =
            files.iter().map(|f| Ok(Session::new(&Model::load(f)?, options)?)).collect::<Result<_, PipelineError>>()?;
        log::info!("{}: {} quantized model(s), switched by step", dir.display(), manifest.models.len());
        let correction = match &manifest.corrections.noise_correction {
            Some(file) => Some(Arc::new(
                NoiseCorrection::read(&dir.join(file)).map_err(|e| PipelineError::file(dir, e.to_string()))?,
            )),
            None => None,
        };
        Ok(Self { sessions, manifest: Some(manifest), correction, by_step: Vec::new() })
    }

    /// The file [`DenoiserSessions::open`] builds the first session from: a `quantize`
    /// folder's first listed model, else `path` itself.
    pub fn first_file(path: &Path) -> Result<PathBuf, PipelineError> {
        if !path.is_dir() {
            return Ok(path.to_path_buf());
        }
        let manifest = Manifest::find(path).map_err(|e| PipelineError::file(path, e.to_string()))?;
        let first = manifest.as_ref().and_then(|m| m.models.first());
        let first =
            first.ok_or_else(|| PipelineError::file(path, "is a folder without a bitsearch quantization manifest"))?;
        Ok(path.join(&first.file))
    }

    /// Sets which session runs each of the `steps` steps of the next runs.
    pub fn prepare(&mut self, steps: usize) -> Result<(), PipelineError> {
        if let Some(manifest) = &self.manifest {
            self.by_step = manifest.models_by_step(steps).map_err(PipelineError::Request)?;
        }
        Ok(())
    }

    /// The session that runs `step`.
    pub fn for_step(&mut self, step: usize) -> &mut Session {
        let index = self.by_step.get(step).copied().unwrap_or(0);
        &mut self.sessions[index]
    }

    /// The session of model `model` where a caller chooses one (a [`StepControl::model`]),
    /// else the one that runs `step`.
    ///
    /// [`StepControl::model`]: crate::workload::StepControl::model
    pub fn routed(&mut self, step: usize, model: Option<usize>) -> Result<&mut Session, String> {
        match model {
            None => Ok(self.for_step(step)),
            Some(m) => {
                let count = self.sessions.len();
                self.sessions.get_mut(m).ok_or_else(|| format!("step {step}: no model {m} among the {count} loaded"))
            }
        }
    }

    /// The first session (the one that declares the inputs every model shares).
    pub fn first(&self) -> &Session {
        &self.sessions[0]
    }

    pub fn first_mut(&mut self) -> &mut Session {
        &mut self.sessions[0]
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The noise correction the manifest names, which samplers of this denoiser apply.
    pub fn correction(&self) -> Option<Arc<NoiseCorrection>> {
        self.correction.clone()
    }
}
