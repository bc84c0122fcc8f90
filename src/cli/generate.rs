//! Arguments of the commands that generate: `sample`, `sensitivity`, `eval`, `align` (and the
//! hidden `memory`). Their shared flags are the flattened groups of `workload`.

use super::workload::{DenoiserArgs, PromptArgs, WorkloadArgs};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// An .onnx denoiser, or a diffusers/optimum ONNX folder.
    pub model: PathBuf,
    /// Seed of the first image; image i uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of images.
    #[arg(long, default_value_t = 4, value_parser = super::workload::positive)]
    pub num: usize,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub denoiser: DenoiserArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Start from these latents (a float32 .npy of [num, channels, h, w]) instead of each
    /// seed's noise, e.g. to reproduce another implementation's run (diffusers folders).
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Also write the raw images, unclamped, as OUT/samples.npy (float32 [num, channels, H, W]);
    /// for samples that are no picture (a lone latent denoiser's 4 channels), the only output.
    #[arg(long)]
    pub npy: bool,
    /// Output folder for the PNG files.
    #[arg(long)]
    pub out: PathBuf,
}

/// Every field of the YAML config has a flag; a flag given replaces the config's value.
#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// An .onnx denoiser, or a diffusers/optimum ONNX folder.
    pub model: PathBuf,
    /// The Parquet table to write; its journal goes beside it (`OUT.journal.jsonl`).
    #[arg(long)]
    pub out: PathBuf,
    /// YAML file with any of the settings below (field names in snake_case, as docs/sensitivity.md lists them).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run recorded beside --out, skipping finished probes.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Start over even if --out or its journal exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Compute part i of N of the probe list (0-based), e.g. --shard 0/4; join with `merge`.
    /// `auto` takes i and N from a Slurm job array's variables, `auto/N` i from a Kubernetes
    /// Indexed Job's JOB_COMPLETION_INDEX (or checks Slurm's count against N).
    #[arg(long)]
    pub shard: Option<bitsearch_records::ShardSpec>,
    /// Weight bit-widths to probe, e.g. 2,4,8; 16 keeps the weight in float16 [default: 4,8].
    #[arg(long, value_delimiter = ',')]
    pub w_bits: Option<Vec<u8>>,
    /// Also probe MPQ-DM's outlier split at 2 and 3 weight bits: a tenth of each layer's output
    /// channels (highest weight kurtosis) one bit wider, as many (lowest) one bit narrower.
    #[arg(long)]
    pub outlier_split: bool,
    /// Also probe per-group scales of these sizes at each integer width below 8, e.g. 32,64,128:
    /// a group size chosen per layer by `solve`.
    #[arg(long, value_delimiter = ',')]
    pub w_groups: Option<Vec<usize>>,
    /// Also probe 8-bit float weights (E4M3, per-channel scales) for every weight layer.
    #[arg(long)]
    pub fp8: bool,
    /// How integer codes are rounded, each a probed option: `nearest`, and `gptq` (error
    /// compensation against each layer's input moments on the run's items; Gemm, MatMul and
    /// ungrouped 2-D Conv) [default: nearest].
    #[arg(long, value_delimiter = ',')]
    pub rounding: Option<Vec<bitsearch_types::Rounding>>,
    /// Also probe a low-rank float16 branch of these ranks beside each integer form below 8
    /// bits, e.g. 8,16 (SVDQuant: the codes carry the weight less its leading singular
    /// directions; Gemm, MatMul and ungrouped Conv; the branch's bytes and MACs are counted).
    #[arg(long, value_delimiter = ',')]
    pub ranks: Option<Vec<u16>>,
    /// Quantize the first (BOS) token row of cross-attention K/V inputs like the others, instead
    /// of keeping it in float and out of the range calibration (MixDQ's BOS-aware default).
    #[arg(long)]
    pub no_bos_aware: bool,
    /// Bias-correct each probe (Conv and Gemm layers): the quantized weight's mean output shift
    /// on the probe items comes out of the layer's bias, as `quantize --bias-correction` does.
    #[arg(long)]
    pub bias_correction: bool,
    /// Probe around this plan instead of the float model: every layer it quantizes keeps its
    /// planned weight and each probe changes one layer from there (e.g. a uniform W4 plan
    /// before solving a 4-bit budget). Weights only, one step group.
    #[arg(long, value_name = "PLAN")]
    pub base: Option<PathBuf>,
    /// Activation bit-widths (2 to 16) to probe with each weight bit-width, e.g. 8 [default: none].
    #[arg(long, value_delimiter = ',')]
    pub act_bits: Option<Vec<u8>>,
    /// Quantize each layer during one of G consecutive groups of steps at a time [default: 1].
    #[arg(long)]
    pub step_groups: Option<usize>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Seeds [default: 0]; --pairing says which prompts or conditions run with which.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// every: each prompt (or condition set) runs with every seed; zip: prompt i runs with seed i
    /// alone, so each item has noise of its own (one seed S stands for S, S+1, …) [default: every].
    #[arg(long)]
    pub pairing: Option<bitsearch_pipeline::workload::Pairing>,
    #[command(flatten)]
    pub denoiser: DenoiserArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Weight clipping: minmax or mse [default: mse].
    #[arg(long)]
    pub clipping: Option<bitsearch_types::quantizer::ClipSearch>,
    /// Clip ratios the MSE search tries [default: 20].
    #[arg(long)]
    pub clip_grid: Option<usize>,
    /// Quantize weights per group of this many values instead of per output channel.
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Layers to probe, by name or role, comma-separated [default: all weight layers].
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<String>>,
    /// Layers per session [default: 16].
    #[arg(long)]
    pub window: Option<usize>,
    /// Megabytes for the values crossing the windows' cuts, so that a probe runs only the graph
    /// below its window; 0 runs every probe on the whole model [default: 2000].
    #[arg(long)]
    pub cache_mb: Option<usize>,
}

/// Items default to the sensitivity run's conditions (or the folder's held-out prompts) with
/// seeds that neither the sensitivity run nor calibration used.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The full-precision model: an .onnx denoiser or a diffusers/optimum folder.
    pub reference: PathBuf,
    /// Models to measure: `quantize` outputs or any ONNX model of the same interface.
    pub candidates: Vec<PathBuf>,
    /// Also measure this plan simulated in float (weights fake-quantized); repeat for several.
    #[arg(long = "simulate")]
    pub simulate: Vec<PathBuf>,
    /// The evaluation record (Parquet) to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The sensitivity table whose items the evaluation must avoid and whose sampler it
    /// reuses [default: the table of the first candidate's plan].
    #[arg(long)]
    pub sensitivity: Option<PathBuf>,
    /// Seeds [default: 1000, 1001, ... (--num-seeds of them)].
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Number of held-out seeds when --seeds is not given.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub num_seeds: u64,
    /// Prompts, one per line [default: MODEL/heldout_prompts.txt, else the sensitivity run's].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub denoiser: DenoiserArgs,
    /// Timed passes over the items (latency is their median); 0 runs one untimed pass and
    /// leaves latency unmeasured.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Write the final images of the reference and each candidate as PNG under this folder.
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Also write the measured table as Markdown (for the bench tables).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    pub model: PathBuf,
    /// The workload spec as JSON.
    #[arg(long)]
    pub spec: String,
    /// Skip the quantized folder's sha256 check (the parent process made it).
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, clap::Args)]
pub struct AlignArgs {
    /// A diffusers/optimum ONNX folder with a text encoder.
    pub model: PathBuf,
    /// Prompts, one per line [default: MODEL/heldout_prompts.txt].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Folder of the attribute classifier (model.onnx and config.json) [default: MODEL/classifier].
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Images per prompt; image s of every prompt uses seed + s.
    #[arg(long, default_value_t = 4, value_parser = super::workload::positive)]
    pub seeds: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Also measure with every UNet weight fake-quantized at each of these bit-widths, e.g. 8,4
    /// (per-channel, MSE-searched clipping, as sensitivity probes do).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(2..=8))]
    pub w_bits: Vec<u8>,
    /// Score these images instead of generating any: a float32 .npy of [prompts × seeds, 3, H, W]
    /// in [-1, 1], image p·seeds + s being prompt p's seed s (the layout `sample --npy` writes),
    /// from any generator, e.g. another library's pipeline run on the same folder.
    #[arg(long, conflicts_with = "w_bits")]
    pub images: Option<PathBuf>,
    /// Also write the results as JSON (the alignment crate's versioned `AlignReport`).
    #[arg(long)]
    pub json: Option<PathBuf>,
}
