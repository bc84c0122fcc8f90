//! The generation flags, declared once and flattened into every command that generates
//! (`sample`, `sensitivity`, `eval`, `align`): one name, one type, one meaning each.

use super::{ConditionArg, parse_condition};
use bitsearch_pipeline::denoiser::TimeKind;
use bitsearch_pipeline::sampler::{Prediction, SamplerKind};
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_runtime::Device;

/// Sampler, steps, batch and sessions. Unset flags keep the command's default, which each
/// flag names: `sample` and `align` have fixed ones, `sensitivity` takes its config's, `eval`
/// the sensitivity run's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WorkloadArgs {
    /// Denoising steps [default: sample 1, align 20, sensitivity 1 for sigma models and 10
    /// otherwise, eval the sensitivity run's].
    #[arg(long, value_parser = positive)]
    pub steps: Option<usize>,
    // The sampler names come from the registry, so a new sampler needs no edit here.
    #[arg(long, help = format!("{} [default: the model's (or the scheduler config's); eval the sensitivity run's]", bitsearch_pipeline::sampler::help()))]
    pub sampler: Option<SamplerKind>,
    /// DDIM stochasticity in [0, 1], 0 being deterministic [default: 0; eval the sensitivity run's].
    #[arg(long)]
    pub eta: Option<f64>,
    /// Classifier-free guidance scale, diffusers folders (1 disables guidance) [default: sample
    /// and sensitivity 7.5, align 4; eval the sensitivity run's].
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Items per network run [default: sample 4, align 64, sensitivity 8, eval the sensitivity run's].
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
    /// auto, cpu or cuda [default: auto].
    #[arg(long)]
    pub device: Option<Device>,
    /// ONNX Runtime intra-op threads [default: one per core].
    #[arg(long, value_parser = positive)]
    pub threads: Option<usize>,
    /// Load quantized folders without checking their files against the sha256s in their
    /// manifest (saves reading very large files once more).
    #[arg(long)]
    pub no_verify: bool,
}

impl WorkloadArgs {
    /// Every given flag replaces the spec's value.
    pub fn apply(&self, spec: &mut WorkloadSpec) {
        spec.steps = self.steps.or(spec.steps);
        spec.sampler = self.sampler.or(spec.sampler);
        spec.eta = self.eta.unwrap_or(spec.eta);
        spec.guidance = self.guidance.unwrap_or(spec.guidance);
        spec.batch = self.batch.unwrap_or(spec.batch);
        spec.device = self.device.unwrap_or(spec.device);
        spec.threads = self.threads.or(spec.threads);
        spec.unverified |= self.no_verify;
    }
}

/// What a single denoiser file cannot say about itself: its condition inputs, time input,
/// prediction, noise levels and symbolic dimensions (diffusers folders' configs set them).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DenoiserArgs {
    /// Values of a condition input, e.g. --condition difficulty=0.2,0.8 (the product is taken;
    /// sample takes one value each), or a float32 .npy file holding one item's tensor, e.g.
    /// --condition encoder_hidden_states=@text.npy [default: eval the sensitivity run's].
    #[arg(long = "condition", value_parser = parse_condition)]
    pub conditions: Vec<(String, ConditionArg)>,
    /// What the denoiser outputs: sample (a clean image), epsilon, v_prediction or score.
    #[arg(long)]
    pub prediction: Option<Prediction>,
    /// The denoiser's time input, when its name (sigma, timestep, t) does not give it away.
    #[arg(long)]
    pub time_input: Option<String>,
    /// What the time input measures: discrete (Stable Diffusion timesteps), sigma (EDM noise
    /// level) or vp (t in [0, 1] of the VP SDE) [default: sigma for an input named sigma, else discrete].
    #[arg(long)]
    pub time_kind: Option<TimeKind>,
    /// Smallest noise level of a sigma-parameterised denoiser [default: 0.002; eval the
    /// sensitivity run's].
    #[arg(long)]
    pub sigma_min: Option<f64>,
    /// Largest noise level of a sigma-parameterised denoiser [default: 80; eval the
    /// sensitivity run's].
    #[arg(long)]
    pub sigma_max: Option<f64>,
    /// Size of a symbolic sample dimension, e.g. --dim height=64.
    #[arg(long = "dim", value_parser = super::parse_pair::<usize>)]
    pub dims: Vec<(String, usize)>,
}

impl DenoiserArgs {
    /// Every given flag replaces the spec's value; conditions and dimensions add to its own.
    pub fn apply(&self, spec: &mut WorkloadSpec) {
        spec.prediction = self.prediction.or(spec.prediction);
        spec.time_input = self.time_input.clone().or(spec.time_input.take());
        spec.time_kind = self.time_kind.or(spec.time_kind);
        spec.sigma_min = self.sigma_min.unwrap_or(spec.sigma_min);
        spec.sigma_max = self.sigma_max.unwrap_or(spec.sigma_max);
        for (name, given) in &self.conditions {
            // A flag replaces what the config gave the input, values or file.
            spec.conditions.remove(name);
            spec.condition_files.remove(name);
            match given {
                ConditionArg::Values(values) => {
                    spec.conditions.insert(name.clone(), values.clone());
                }
                ConditionArg::File(file) => {
                    spec.condition_files.insert(name.clone(), file.clone());
                }
            }
        }
        spec.dims.extend(self.dims.iter().cloned());
    }

    /// Whether any flag that only a single denoiser file takes was given.
    pub fn any(&self) -> bool {
        !self.conditions.is_empty()
            || self.prediction.is_some()
            || self.time_input.is_some()
            || self.time_kind.is_some()
    }
}

/// The prompts of a diffusers folder, given on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PromptArgs {
    /// A text prompt (diffusers folders); repeat for more (sample takes one).
    #[arg(long = "prompt")]
    pub prompts: Vec<String>,
    /// Negative prompt for classifier-free guidance (diffusers folders) [default: none].
    #[arg(long)]
    pub negative_prompt: Option<String>,
}

impl PromptArgs {
    /// Given prompts replace the spec's.
    pub fn apply(&self, spec: &mut WorkloadSpec) {
        if !self.prompts.is_empty() {
            spec.prompts = self.prompts.clone();
        }
        spec.negative_prompt = self.negative_prompt.clone().or(spec.negative_prompt.take());
    }
}

/// A count that must be at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
