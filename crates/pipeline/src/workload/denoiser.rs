//! A single denoiser file (the terrain UNet, bare epsilon UNets): items are the product of the
//! condition values paired with the seeds, batched together whatever their conditions.

use super::{Result, StepControl, Workload, WorkloadSpec, batch_ranges, config_dims};
use crate::denoiser::{DenoiserConfig, DenoiserSpec, Network};
use crate::error::PipelineError;
use crate::noise::{NoiseSource, batch_noise};
use crate::sampler::{self, Denoiser, SampleError, SamplerSettings, TimeDomain};
use crate::sessions::DenoiserSessions;
use bitsearch_onnx::Model;
use bitsearch_runtime::{ActiveDevice, SessionOptions};
use ndarray::ArrayD;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Steps when the config names none: one for sigma (consistency-distilled) models, ten for
/// discrete-time ones.
const DEFAULT_SIGMA_STEPS: usize = 1;
const DEFAULT_DISCRETE_STEPS: usize = 10;

#[derive(Debug)]
pub struct DenoiserWorkload {
    path: PathBuf,
    sessions: DenoiserSessions,
    spec: DenoiserSpec,
    settings: SamplerSettings,
    items: Vec<String>,
    /// Per item: its seed and the value of each condition input (in `spec.conditions` order).
    seeds: Vec<u64>,
    values: Vec<Vec<f32>>,
    batches: Vec<Range<usize>>,
}

impl DenoiserWorkload {
    pub fn open(path: &Path, config: &WorkloadSpec) -> Result<Self> {
        if !config.prompts.is_empty() {
            return Err(PipelineError::spec(
                "prompts",
                format!("{} is a single denoiser file: it takes conditions, not prompts", path.display()),
            ));
        }
        // Files are read before the model, whose weights may take minutes to load.
        let tensors = config
            .condition_files
            .iter()
            .map(|(name, file)| Ok((name.clone(), read_condition(name, file)?)))
            .collect::<Result<Vec<_>>>()?;
        // The interface is checked on the graph (mapped, not read) before any session is built:
        // a real-size model's sessions take seconds to build. A quantize folder's denoiser, for
        // `model()`, is its manifest's first model.
        let folder = path;
        let path = &DenoiserSessions::first_file(folder)?;
        let model = Model::load(path)?;
        let inputs = bitsearch_runtime::declared_inputs(&model)?;
        let names: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).collect();
        let given = config.conditions.keys().chain(config.condition_files.keys());
        if let Some(name) = given.into_iter().find(|n| !names.contains(&n.as_str())) {
            return Err(PipelineError::spec(
                format!("conditions.{name}"),
                format!("the model has no such input (its inputs: {})", names.join(", ")),
            ));
        }
        let sets = config.condition_sets();
        let resolve_config = DenoiserConfig {
            time_input: config.time_input.clone(),
            time_kind: config.time_kind,
            prediction: config.prediction,
            sigma_min: config.sigma_min,
            sigma_max: config.sigma_max,
            conditions: sets[0].clone(),
            tensors,
            dims: {
                let symbols: Vec<_> = inputs.iter().map(|s| s.symbols.clone()).collect();
                config_dims(path, &symbols, config.dims.clone())?.0.into_iter().collect()
            },
            ..Default::default()
        };
        let spec = DenoiserSpec::resolve(&inputs, &resolve_config)?;
        let varies = |name: &str| config.conditions.get(name).is_some_and(|v| v.len() > 1);
        if let Some((input, _)) =
            spec.conditions.iter().find(|(input, _)| input.shape.is_empty() && varies(&input.name))
        {
            return Err(PipelineError::spec(
                format!("conditions.{}", input.name),
                "the input is a scalar shared by the batch: give it one value",
            ));
        }
        let kind = config.sampler.unwrap_or_else(|| spec.default_sampler());
        let default_steps = match spec.domain {
            TimeDomain::Sigma { .. } => DEFAULT_SIGMA_STEPS,
            TimeDomain::Discrete(_) => DEFAULT_DISCRETE_STEPS,
        };
        let settings = spec.settings(kind, config.steps.unwrap_or(default_steps), config.eta);
        sampler::timesteps(&settings).map_err(|e| PipelineError::spec("sampler", e.to_string()))?;
        let (mut items, mut seeds, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for (set, seed) in config.pairs(sets.len())? {
            let set = &sets[set];
            let described: Vec<String> = set.iter().map(|(n, v)| format!("{n}={v}")).collect();
            items.push(format!("{} seed={seed}", described.join(" ")).trim_start().to_string());
            seeds.push(seed);
            values.push(
                spec.conditions
                    .iter()
                    .map(|(input, v)| set.iter().find(|(n, _)| *n == input.name).map_or(*v, |(_, v)| *v))
                    .collect(),
            );
        }
        let batches = batch_ranges(items.len(), config.batch);
        // The noise of a batch is made before the network sees it: sized first.
        let largest = batches.iter().map(ExactSizeIterator::len).max().unwrap_or(0);
        let batch_shape: Vec<usize> = std::iter::once(largest).chain(spec.item_shape.iter().copied()).collect();
        if bitsearch_runtime::input_bytes(&batch_shape).is_none() {
            return Err(PipelineError::spec(
                "dims",
                format!(
                    "input '{}': a batch of {batch_shape:?} takes more than {} bytes of float32; lower --batch or \
                     the --dim sizes",
                    spec.sample_input,
                    bitsearch_runtime::MAX_INPUT_BYTES
                ),
            ));
        }
        let options = SessionOptions::for_workload(config);
        let mut sessions = DenoiserSessions::open(folder, &options)?;
        sessions.prepare(settings.steps)?;
        // Held until the sessions are built from the same file, so they share its one mapping.
        drop(model);
        Ok(Self { path: path.clone(), sessions, spec, settings, items, seeds, values, batches })
    }
}

/// Largest tensor condition read: far above any text embedding (SDXL's is 0.6 MB, a T5's
/// 4.9 MB), far below what would strain memory.
const MAX_CONDITION_BYTES: u64 = 256 << 20;

/// The float32 `.npy` file of condition `name`, every value finite.
fn read_condition(name: &str, file: &Path) -> Result<ArrayD<f32>> {
    let refuse = |message: String| PipelineError::spec(format!("conditions.{name}"), message);
    let values = bitsearch_records::npy::read(file, MAX_CONDITION_BYTES).map_err(|e| refuse(e.to_string()))?;
    ArrayD::from_shape_vec(values.shape, values.values).map_err(|e| refuse(format!("{}: {e}", file.display())))
}

impl Workload for DenoiserWorkload {
    fn model(&self) -> Result<Model> {
        Ok(Model::load(&self.path)?)
    }

    fn kind(&self) -> &'static str {
        "denoiser"
    }

    fn items(&self) -> &[String] {
        &self.items
    }

    fn batches(&self) -> usize {
        self.batches.len()
    }

    fn steps(&self) -> usize {
        self.settings.steps
    }

    fn sampler(&self) -> String {
        self.settings.kind.to_string()
    }

    fn settings(&self) -> Result<SamplerSettings> {
        Ok(self.settings.clone())
    }

    fn device(&self) -> ActiveDevice {
        self.sessions.first().device()
    }

    fn install(&mut self, sessions: DenoiserSessions) -> Result<()> {
        self.sessions = sessions;
        Ok(())
    }

    fn run(&mut self, batch: usize, control: &mut dyn StepControl) -> Result<ArrayD<f32>> {
        let range = self.batches[batch].clone();
        let seeds = &self.seeds[range.clone()];
        let initial = batch_noise(&self.spec.item_shape, seeds);
        let mut noise = NoiseSource::new(seeds);
        self.settings.correction = self.sessions.correction();
        let mut controlled =
            Controlled { sessions: &mut self.sessions, spec: &self.spec, values: &self.values[range], control, batch };
        Ok(sampler::sample(&self.settings, &mut controlled, initial, &mut noise)?)
    }
}

/// The network of each step (its step's session) with every evaluation routed through a
/// [`StepControl`].
struct Controlled<'n, 'c> {
    sessions: &'n mut DenoiserSessions,
    spec: &'n DenoiserSpec,
    values: &'n [Vec<f32>],
    control: &'c mut dyn StepControl,
    batch: usize,
}

impl Denoiser for Controlled<'_, '_> {
    fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> std::result::Result<ArrayD<f32>, SampleError> {
        let session =
            self.sessions.routed(step, self.control.model(self.batch, step)).map_err(SampleError::Denoiser)?;
        let mut network = Network::per_item(session, self.spec, self.values);
        self.control.step(self.batch, step, &mut |overrides| {
            network.run(x, t, overrides).map_err(|e| SampleError::Denoiser(format!("step {step}: {e}")))
        })
    }
}
