//! The denoiser-only pipeline: one ONNX network mapping (noisy sample, time, conditions) to a
//! prediction, as sigma-parameterised EDM/consistency models (the terrain UNet) and bare
//! epsilon-prediction UNets are shipped. Which input is which is read from the model; the
//! caller fills in what the model cannot say (condition values, a non-standard time input).

use crate::error::PipelineError;
use crate::noise::{NoiseSource, batch_noise};
use crate::sampler::{self, Denoiser, Prediction, SampleError, SamplerKind, SamplerSettings, TimeDomain};
use crate::schedule::{BetaSchedule, DiscreteSchedule};
use bitsearch_runtime::{InputSpec, RuntimeError, Session};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::collections::HashMap;

/// What the caller tells the pipeline beyond what the model declares.
#[derive(Debug, Clone)]
pub struct DenoiserConfig {
    /// The noisy-sample input; default: the float input of highest rank.
    pub sample_input: Option<String>,
    /// The time input; default: the input named sigma(s) or timestep(s).
    pub time_input: Option<String>,
    /// What the network outputs; default: `sample` for sigma models, `epsilon` otherwise.
    pub prediction: Option<Prediction>,
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub sigma_data: f64,
    /// Values of the remaining inputs (difficulty, class label…), broadcast over the batch.
    pub conditions: Vec<(String, f32)>,
    /// Sizes of symbolic sample dimensions other than the batch.
    pub dims: HashMap<String, usize>,
}

impl Default for DenoiserConfig {
    fn default() -> Self {
        Self {
            sample_input: None,
            time_input: None,
            prediction: None,
            sigma_min: 0.002,
            sigma_max: 80.0,
            sigma_data: 0.5,
            conditions: Vec::new(),
            dims: HashMap::new(),
        }
    }
}

/// How the network is driven, resolved from the model and the config.
#[derive(Debug, Clone)]
pub struct DenoiserSpec {
    pub sample_input: String,
    /// Shape of one sample, without the batch dimension.
    pub item_shape: Vec<usize>,
    pub time_input: String,
    /// Rank of the time input (0: a scalar shared by the batch, 1: one value per item).
    pub time_rank: usize,
    /// Each condition input with its value.
    pub conditions: Vec<(InputSpec, f32)>,
    pub prediction: Prediction,
    pub domain: TimeDomain,
}

/// Names that say an input is the noise level (inputs are matched by name only to decide
/// how to feed them; layer roles never use names).
const SIGMA_NAMES: [&str; 2] = ["sigma", "sigmas"];
const TIMESTEP_NAMES: [&str; 3] = ["timestep", "timesteps", "t"];

impl DenoiserSpec {
    pub fn resolve(inputs: &[InputSpec], config: &DenoiserConfig) -> Result<Self, PipelineError> {
        let names = || inputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
        let find = |name: &str| {
            inputs.iter().find(|s| s.name == name).ok_or_else(|| {
                PipelineError::Request(format!("the model has no input '{name}' (its inputs: {})", names()))
            })
        };
        let sample = match &config.sample_input {
            Some(name) => find(name)?,
            None => inputs
                .iter()
                .filter(|s| s.dtype.is_float())
                .rev()
                .max_by_key(|s| s.shape.len())
                .ok_or_else(|| PipelineError::Request("the model has no float input to denoise".into()))?,
        };
        let time = match &config.time_input {
            Some(name) => find(name)?,
            None => inputs
                .iter()
                .find(|s| SIGMA_NAMES.contains(&s.name.as_str()) || TIMESTEP_NAMES.contains(&s.name.as_str()))
                .ok_or_else(|| {
                    PipelineError::Request(format!(
                        "cannot tell which input is the time (inputs: {}); name it with --time-input",
                        names()
                    ))
                })?,
        };
        let item_shape = sample.shape[1..]
            .iter()
            .zip(&sample.symbols[1..])
            .map(|(dim, symbol)| {
                dim.or_else(|| symbol.as_ref().and_then(|s| config.dims.get(s).copied())).ok_or_else(|| {
                    PipelineError::Request(format!(
                        "input '{}' has a symbolic dimension '{}': give its size with --dim NAME=SIZE",
                        sample.name,
                        symbol.as_deref().unwrap_or("?")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let is_sigma = SIGMA_NAMES.contains(&time.name.as_str());
        let domain = if is_sigma {
            TimeDomain::Sigma {
                sigma_min: config.sigma_min,
                sigma_max: config.sigma_max,
                sigma_data: config.sigma_data,
            }
        } else {
            // Stable Diffusion's schedule, the common one for bare epsilon UNets.
            let mut schedule = DiscreteSchedule::new(1000, 0.00085, 0.012, BetaSchedule::ScaledLinear)?;
            schedule.steps_offset = 1;
            schedule.set_alpha_to_one = false;
            TimeDomain::Discrete(schedule)
        };
        let prediction = config.prediction.unwrap_or(if is_sigma { Prediction::Sample } else { Prediction::Epsilon });
        for (name, _) in &config.conditions {
            find(name)?;
        }
        let conditions = inputs
            .iter()
            .filter(|s| s.name != sample.name && s.name != time.name)
            .map(|s| {
                let value = config.conditions.iter().find(|(n, _)| *n == s.name).map(|(_, v)| *v).ok_or_else(|| {
                    PipelineError::Request(format!(
                        "input '{}' needs a value: pass --condition {}=VALUE",
                        s.name, s.name
                    ))
                })?;
                Ok((s.clone(), value))
            })
            .collect::<Result<Vec<_>, PipelineError>>()?;
        Ok(Self {
            sample_input: sample.name.clone(),
            item_shape,
            time_input: time.name.clone(),
            time_rank: time.shape.len(),
            conditions,
            prediction,
            domain,
        })
    }

    /// The sampler that suits the time domain when the user names none.
    pub fn default_sampler(&self) -> SamplerKind {
        match self.domain {
            TimeDomain::Sigma { .. } => SamplerKind::Consistency,
            TimeDomain::Discrete(_) => SamplerKind::Ddim,
        }
    }

    pub fn settings(&self, kind: SamplerKind, steps: usize, eta: f64) -> SamplerSettings {
        let mut settings = SamplerSettings::new(kind, steps, self.prediction, self.domain.clone());
        settings.eta = eta;
        settings
    }
}

/// A session driven as a denoiser.
#[derive(Debug)]
pub struct DenoiserPipeline {
    session: Session,
    spec: DenoiserSpec,
}

impl DenoiserPipeline {
    pub fn new(session: Session, config: &DenoiserConfig) -> Result<Self, PipelineError> {
        let spec = DenoiserSpec::resolve(session.inputs(), config)?;
        Ok(Self { session, spec })
    }

    pub fn spec(&self) -> &DenoiserSpec {
        &self.spec
    }

    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Generates one sample per seed in one batch; sample i depends only on `seeds[i]`.
    pub fn generate(&mut self, settings: &SamplerSettings, seeds: &[u64]) -> Result<ArrayD<f32>, PipelineError> {
        let initial = batch_noise(&self.spec.item_shape, seeds);
        let mut noise = NoiseSource::new(seeds);
        let mut network = Network::new(&mut self.session, &self.spec, seeds.len());
        Ok(sampler::sample(settings, &mut network, initial, &mut noise)?)
    }
}

/// One network call per `eval`, with the time and condition inputs laid out for a batch.
#[derive(Debug)]
pub struct Network<'a> {
    session: &'a mut Session,
    spec: &'a DenoiserSpec,
    conditions: Vec<(String, ArrayD<f32>)>,
}

impl<'a> Network<'a> {
    /// Every item of a `batch` gets the spec's condition values.
    pub fn new(session: &'a mut Session, spec: &'a DenoiserSpec, batch: usize) -> Self {
        let values: Vec<f32> = spec.conditions.iter().map(|(_, v)| *v).collect();
        Self::per_item(session, spec, &vec![values; batch])
    }

    /// Item `i` gets `values[i][j]` for condition `j` (in `spec.conditions` order), so items
    /// with different conditions share one batch. A scalar condition input takes item 0's value.
    pub fn per_item(session: &'a mut Session, spec: &'a DenoiserSpec, values: &[Vec<f32>]) -> Self {
        let conditions = spec
            .conditions
            .iter()
            .enumerate()
            .map(|(j, (input, default))| {
                let mut shape: Vec<usize> = input.shape.iter().map(|d| d.unwrap_or(1)).collect();
                if let Some(first) = shape.first_mut() {
                    *first = values.len();
                }
                let first = values.first().and_then(|v| v.get(j)).copied().unwrap_or(*default);
                let mut array = ArrayD::from_elem(IxDyn(&shape), first);
                if !shape.is_empty() {
                    for (i, mut row) in array.axis_iter_mut(ndarray::Axis(0)).enumerate() {
                        row.fill(values[i].get(j).copied().unwrap_or(*default));
                    }
                }
                (input.name.clone(), array)
            })
            .collect();
        Self { session, spec, conditions }
    }

    /// One run at time `t` with `overrides` replacing overridable weights: the prediction,
    /// then the session's extra outputs.
    pub fn run(
        &mut self,
        x: &ArrayD<f32>,
        t: f32,
        overrides: &[(&str, ArrayViewD<'_, f32>)],
    ) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
        let time_shape: &[usize] = if self.spec.time_rank == 0 { &[] } else { &x.shape()[..1] };
        let time = ArrayD::from_elem(IxDyn(time_shape), t);
        let mut feeds = vec![(self.spec.sample_input.as_str(), x.view()), (self.spec.time_input.as_str(), time.view())];
        feeds.extend(self.conditions.iter().map(|(n, v)| (n.as_str(), v.view())));
        self.session.run(&feeds, overrides)
    }
}

impl Denoiser for Network<'_> {
    fn eval(&mut self, _step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
        let mut outputs = self.run(x, t, &[]).map_err(|e| SampleError::Denoiser(e.to_string()))?;
        Ok(outputs.swap_remove(0))
    }
}
