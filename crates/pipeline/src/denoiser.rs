//! The denoiser-only pipeline: one ONNX network mapping (noisy sample, time, conditions) to a
//! prediction, as sigma-parameterised EDM/consistency models (the terrain UNet) and bare
//! epsilon-prediction UNets are shipped. Which input is which is read from the model; the
//! caller fills in what the model cannot say (condition values, a non-standard time input,
//! what that input measures and what the network outputs).

use crate::error::PipelineError;
use crate::noise::{NoiseSource, batch_noise};
use crate::sampler::{self, Denoiser, Prediction, SampleError, SamplerKind, SamplerSettings, TimeDomain};
use crate::schedule::{BetaSchedule, DiscreteSchedule, TimestepSpacing, vp_alpha_cumprod};
use bitsearch_runtime::{InputSpec, RuntimeError, Session};
pub use bitsearch_types::generation::TimeKind;
use ndarray::{ArrayD, ArrayViewD, Axis, Dimension, IxDyn, Slice};
use std::collections::HashMap;

/// What the caller tells the pipeline beyond what the model declares.
#[derive(Debug, Clone)]
pub struct DenoiserConfig {
    /// The noisy-sample input; default: the float input of highest rank.
    pub sample_input: Option<String>,
    /// The time input; default: the input named sigma(s), timestep(s) or t.
    pub time_input: Option<String>,
    /// What the time input measures; default: `sigma` for an input named sigma(s), else `discrete`.
    pub time_kind: Option<TimeKind>,
    /// What the network outputs; default: `sample` for sigma models, `epsilon` otherwise.
    pub prediction: Option<Prediction>,
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub sigma_data: f64,
    /// Values of the remaining inputs (difficulty, class label…), broadcast over the batch.
    pub conditions: Vec<(String, f32)>,
    /// Tensor values of remaining inputs (a text embedding): one item's, given to every item.
    pub tensors: Vec<(String, ArrayD<f32>)>,
    /// Sizes of symbolic sample dimensions other than the batch.
    pub dims: HashMap<String, usize>,
}

impl Default for DenoiserConfig {
    fn default() -> Self {
        Self {
            sample_input: None,
            time_input: None,
            time_kind: None,
            prediction: None,
            sigma_min: 0.002,
            sigma_max: 80.0,
            sigma_data: 0.5,
            conditions: Vec::new(),
            tensors: Vec::new(),
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
    /// What the time input receives for each of the sampler's time values.
    pub time_map: TimeMap,
    /// Each condition input with its value.
    pub conditions: Vec<(InputSpec, f32)>,
    /// Each tensor condition input with one item's value.
    pub tensors: Vec<(String, ArrayD<f32>)>,
    pub prediction: Prediction,
    pub domain: TimeDomain,
}

/// The samplers' time domain of a time input of `kind`, and what the network is fed for each of
/// their time values.
fn time_domain(kind: TimeKind, config: &DenoiserConfig) -> Result<(TimeDomain, TimeMap), PipelineError> {
    Ok(match kind {
        TimeKind::Sigma => (
            TimeDomain::Sigma {
                sigma_min: config.sigma_min,
                sigma_max: config.sigma_max,
                sigma_data: config.sigma_data,
            },
            TimeMap::IDENTITY,
        ),
        TimeKind::Discrete => {
            let mut schedule = DiscreteSchedule::new(1000, 0.00085, 0.012, BetaSchedule::ScaledLinear)?;
            schedule.steps_offset = 1;
            schedule.set_alpha_to_one = false;
            (TimeDomain::Discrete(schedule), TimeMap::IDENTITY)
        }
        TimeKind::Vp => {
            // The SDE is sampled on a grid so that every discrete sampler drives it unchanged.
            // Timestep i stands for t = (i+1)/N: the grid ends at t = 1 (pure noise) and
            // leaves out t = 0, whose ᾱ = 1 has no noise to predict; the step after the
            // last timestep still lands there (set_alpha_to_one).
            let n = VP_TIMESTEPS as f64;
            let map = TimeMap { scale: 1.0 / n, offset: 1.0 / n };
            let alphas = (0..VP_TIMESTEPS).map(|i| vp_alpha_cumprod(map.apply(i as f64))).collect();
            let mut schedule = DiscreteSchedule::from_alphas_cumprod(alphas)?;
            // Trailing spacing starts every run at timestep N−1, i.e. t = 1.
            schedule.spacing = TimestepSpacing::Trailing;
            (TimeDomain::Discrete(schedule), map)
        }
    })
}

/// Grid size of the VP time kind: the usual training length, so runs of up to 1000 steps work
/// and every step lands on a grid point.
const VP_TIMESTEPS: usize = 1000;

/// The value the time input receives for the sampler's time value `t`: `scale·t + offset`.
/// Samplers count time in the discrete schedule's timesteps (or sigma); a model that counts it
/// differently, as VP models do in [0, 1], gets it converted here rather than in every sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeMap {
    pub scale: f64,
    pub offset: f64,
}

impl TimeMap {
    /// The sampler's value as it is.
    pub const IDENTITY: Self = Self { scale: 1.0, offset: 0.0 };

    pub fn apply(self, t: f64) -> f64 {
        self.scale * t + self.offset
    }
}

/// Names that say an input is the noise level (inputs are matched by name only to decide
/// how to feed them; layer roles never use names).
const SIGMA_NAMES: [&str; 2] = ["sigma", "sigmas"];
const TIMESTEP_NAMES: [&str; 3] = ["timestep", "timesteps", "t"];

/// `tensor` as one item of `input`: the input's shape without its batch axis (or with a batch
/// axis of 1), each fixed dimension matching.
fn one_item(input: &InputSpec, tensor: &ArrayD<f32>) -> Result<ArrayD<f32>, PipelineError> {
    let item = match tensor.shape() {
        [1, rest @ ..] if rest.len() + 1 == input.shape.len() => tensor.index_axis(Axis(0), 0).to_owned(),
        _ => tensor.clone(),
    };
    let fits = input.shape.len() == item.ndim() + 1
        && input.shape[1..].iter().zip(item.shape()).all(|(dim, &size)| dim.is_none_or(|d| d == size));
    if !fits {
        let dims: Vec<String> =
            input.shape.iter().skip(1).map(|d| d.map_or_else(|| "?".to_string(), |d| d.to_string())).collect();
        return Err(PipelineError::Request(format!(
            "--condition {}: the file holds shape {:?}; one item of the input is [{}]",
            input.name,
            tensor.shape(),
            dims.join(", ")
        )));
    }
    Ok(item)
}

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
        let kind = config.time_kind.unwrap_or(if SIGMA_NAMES.contains(&time.name.as_str()) {
            TimeKind::Sigma
        } else {
            TimeKind::Discrete
        });
        let (domain, time_map) = time_domain(kind, config)?;
        let prediction =
            config.prediction.unwrap_or(if kind == TimeKind::Sigma { Prediction::Sample } else { Prediction::Epsilon });
        let given = config.conditions.iter().map(|(n, _)| n).chain(config.tensors.iter().map(|(n, _)| n));
        for name in given {
            // A value for an input the sampler drives would be overwritten at every step.
            if *name == sample.name {
                return Err(PipelineError::Request(format!(
                    "--condition {name}: '{name}' is the sample input, which bitsearch fills with the noisy sample \
                     at every step, so it takes no condition"
                )));
            }
            if *name == time.name {
                let hint = if config.time_input.is_none() {
                    " (if another input is the time, name it with --time-input)"
                } else {
                    ""
                };
                return Err(PipelineError::Request(format!(
                    "--condition {name}: '{name}' is the time input, which bitsearch fills with each step's noise \
                     level, so it takes no condition{hint}"
                )));
            }
            find(name)?;
        }
        let (mut conditions, mut tensors) = (Vec::new(), Vec::new());
        for input in inputs.iter().filter(|s| s.name != sample.name && s.name != time.name) {
            if let Some((_, value)) = config.conditions.iter().find(|(n, _)| *n == input.name) {
                conditions.push((input.clone(), *value));
            } else if let Some((_, tensor)) = config.tensors.iter().find(|(n, _)| *n == input.name) {
                tensors.push((input.name.clone(), one_item(input, tensor)?));
            } else {
                return Err(PipelineError::Request(format!(
                    "input '{0}' needs a value: pass --condition {0}=VALUE or --condition {0}=@FILE.npy",
                    input.name
                )));
            }
        }
        Ok(Self {
            sample_input: sample.name.clone(),
            item_shape,
            time_input: time.name.clone(),
            time_rank: time.shape.len(),
            time_map,
            conditions,
            tensors,
            prediction,
            domain,
        })
    }

    /// The sampler that suits the time domain when the user names none.
    pub fn default_sampler(&self) -> SamplerKind {
        sampler::default_for(&self.domain)
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
            .chain(spec.tensors.iter().map(|(name, item)| {
                let mut shape = vec![values.len()];
                shape.extend_from_slice(item.shape());
                (name.clone(), ArrayD::from_shape_fn(IxDyn(&shape), |index| item[&index.slice()[1..]]))
            }))
            .collect();
        Self { session, spec, conditions }
    }

    /// One run at the sampler's time `t` (mapped by the spec's time map) with `overrides`
    /// replacing overridable weights: the prediction, then the session's extra outputs.
    pub fn run(
        &mut self,
        x: &ArrayD<f32>,
        t: f32,
        overrides: &[(&str, ArrayViewD<'_, f32>)],
    ) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
        let time_shape: &[usize] = if self.spec.time_rank == 0 { &[] } else { &x.shape()[..1] };
        let time = ArrayD::from_elem(IxDyn(time_shape), self.spec.time_map.apply(f64::from(t)) as f32);
        let mut feeds = vec![(self.spec.sample_input.as_str(), x.view()), (self.spec.time_input.as_str(), time.view())];
        feeds.extend(self.conditions.iter().map(|(n, v)| (n.as_str(), v.view())));
        let mut outputs = self.session.run(&feeds, overrides)?;
        // Learned-variance models (DiT, PixArt) stack a variance interpolation after the
        // prediction on the channel axis; samplers use the prediction alone, as diffusers' do.
        if let Some(prediction) = outputs.first_mut() {
            let channels = x.shape().get(1).copied().unwrap_or(0);
            if prediction.ndim() == x.ndim() && prediction.ndim() > 1 && prediction.shape()[1] == 2 * channels {
                *prediction = prediction.slice_axis(Axis(1), Slice::from(..channels)).to_owned();
            }
        }
        Ok(outputs)
    }
}

impl Denoiser for Network<'_> {
    fn eval(&mut self, _step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
        let mut outputs = self.run(x, t, &[]).map_err(|e| SampleError::Denoiser(e.to_string()))?;
        Ok(outputs.swap_remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitsearch_onnx::DataType;

    /// A float input; `None` dimensions are the symbolic batch.
    fn input(name: &str, shape: &[Option<usize>]) -> InputSpec {
        let symbols = shape.iter().map(|d| d.is_none().then(|| "batch".to_string())).collect();
        InputSpec { name: name.into(), dtype: DataType::F32, shape: shape.to_vec(), symbols }
    }

    /// A score-SDE-like model: `x` [batch, 1, 8, 8] and `t` [batch].
    fn inputs() -> Vec<InputSpec> {
        vec![input("x", &[None, Some(1), Some(8), Some(8)]), input("t", &[None])]
    }

    fn resolve(config: DenoiserConfig) -> Result<DenoiserSpec, PipelineError> {
        DenoiserSpec::resolve(&inputs(), &config)
    }

    fn schedule(spec: &DenoiserSpec) -> &DiscreteSchedule {
        match &spec.domain {
            TimeDomain::Discrete(schedule) => schedule,
            other => panic!("expected a discrete domain, got {other:?}"),
        }
    }

    #[test]
    fn without_a_time_kind_the_input_name_decides_as_before() {
        let spec = resolve(DenoiserConfig::default()).unwrap();
        assert_eq!((spec.time_input.as_str(), spec.time_rank), ("t", 1));
        assert_eq!((spec.prediction, spec.time_map), (Prediction::Epsilon, TimeMap::IDENTITY));
        let sd = schedule(&spec);
        assert_eq!((sd.steps_offset, sd.set_alpha_to_one), (1, false));
        assert!((sd.alphas_cumprod()[999] - 0.004_660_098_513_077_238).abs() < 1e-12);

        let sigma = DenoiserSpec::resolve(
            &[input("x", &[None, Some(1), Some(8), Some(8)]), input("sigma", &[None])],
            &DenoiserConfig::default(),
        )
        .unwrap();
        assert!(matches!(sigma.domain, TimeDomain::Sigma { .. }));
        assert_eq!((sigma.prediction, sigma.time_map), (Prediction::Sample, TimeMap::IDENTITY));
    }

    #[test]
    fn vp_time_runs_the_discrete_machinery_on_a_grid_of_the_sde() {
        let config = DenoiserConfig { time_kind: Some(TimeKind::Vp), ..Default::default() };
        let spec = resolve(config).unwrap();
        assert_eq!(spec.prediction, Prediction::Epsilon);
        let vp = schedule(&spec);
        assert_eq!(vp.num_train_timesteps(), 1000);
        for i in [0, 1, 499, 999] {
            let t = (i + 1) as f64 / 1000.0;
            assert_eq!(vp.alphas_cumprod()[i], vp_alpha_cumprod(t));
            assert!((spec.time_map.apply(i as f64) - t).abs() < 1e-15);
        }
        assert_eq!(vp.final_alpha_cumprod(), 1.0);
        let ddim = spec.settings(SamplerKind::Ddim, 10, 0.0);
        let times = sampler::timesteps(&ddim).unwrap();
        assert_eq!((times[0], times[9]), (999.0, 99.0));
    }

    #[test]
    fn a_condition_on_the_sample_or_time_input_is_an_error() {
        for (name, expect) in [("x", "sample input"), ("t", "time input")] {
            let config = DenoiserConfig { conditions: vec![(name.into(), 0.5)], ..Default::default() };
            let message = resolve(config).unwrap_err().to_string();
            assert!(message.starts_with(&format!("--condition {name}: '{name}' is the {expect}")), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let named =
            DenoiserConfig { time_input: Some("t".into()), conditions: vec![("t".into(), 0.5)], ..Default::default() };
        assert!(!resolve(named).unwrap_err().to_string().contains("--time-input"));
    }
}
