//! Command-line arguments. Definitions only; the commands live in `commands/`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "bitsearch", version, about = "Mixed-precision quantization search for ONNX diffusion models")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// Print debug logs.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Print warnings and errors only.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Args {
    pub fn log_level(&self) -> &'static str {
        if self.verbose {
            "debug"
        } else if self.quiet {
            "warn"
        } else {
            "info"
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the quantizable layers of a model with their role, parameters and MACs.
    Inspect(InspectArgs),
    /// Generate images (or height fields) with a model and write them as PNG.
    Sample(SampleArgs),
    /// Measure how much each layer suffers when it alone is quantized (a Parquet table).
    Sensitivity(Box<SensitivityArgs>),
    /// Join the tables of the shards of one sensitivity run.
    Merge(MergeArgs),
    /// Choose bits per layer (and step group) under a budget: an integer program, a YAML plan.
    Solve(SolveArgs),
    /// Apply a plan: write the low-bit ONNX model that ONNX Runtime runs.
    Quantize(QuantizeArgs),
    /// Measure models against full precision on held-out items: fidelity, size, memory, latency.
    Eval(Box<EvalArgs>),
    /// The resident memory opening one model adds to a fresh process (run by `eval` in a child).
    #[command(hide = true)]
    Memory(MemoryArgs),
    /// Write an HTML report with PNG figures from a sensitivity table, plans, a frontier and samples.
    Report(ReportArgs),
    /// Measure prompt-image alignment of a text-to-image folder with its attribute classifier,
    /// at full precision and with the whole UNet fake-quantized.
    Align(AlignArgs),
    /// Serve plans over HTTP/JSON from registered sensitivity tables (loopback unless told).
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (printed on start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Folder of the catalogue (SQLite database and table files), created if missing.
    #[arg(long, default_value = "bitsearch-data")]
    pub data: PathBuf,
    /// File holding the bearer token every request but /health must carry.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Plans solved at once; further requests queue.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Seconds HiGHS may spend on one plan request.
    #[arg(long, default_value_t = 20.0)]
    pub time_limit: f64,
    /// Largest request body in MB (10^6 bytes): the size of the largest table to register.
    #[arg(long, default_value_t = 64)]
    pub max_body_mb: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// `NAME=V1,V2,...`: a condition input and the values it takes.
pub fn parse_values(s: &str) -> Result<(String, Vec<f32>), String> {
    let (name, values) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=VALUE[,VALUE...]"))?;
    let values = values
        .split(',')
        .map(|v| v.trim().parse::<f32>().map_err(|e| format!("'{s}': '{v}': {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), values))
}

/// `NAME=VALUE` pairs.
pub fn parse_pair<T: std::str::FromStr>(s: &str) -> Result<(String, T), String>
where
    T::Err: std::fmt::Display,
{
    let (name, value) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=VALUE"))?;
    let value = value.parse::<T>().map_err(|e| format!("'{s}': {e}"))?;
    Ok((name.to_string(), value))
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// An .onnx file, or a diffusers/optimum folder (its unet/model.onnx is inspected).
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Size of a symbolic input dimension, e.g. --dim height=64 (unset ones are 1).
    #[arg(long = "dim", value_parser = parse_pair::<usize>)]
    pub dims: Vec<(String, usize)>,
}

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// An .onnx denoiser, or a diffusers/optimum ONNX folder.
    pub model: PathBuf,
    /// Denoising steps.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub steps: u16,
    /// Seed of the first image; image i uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of images.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub num: u16,
    /// Images per network run.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
    /// Value of a condition input of a denoiser, e.g. --condition difficulty=0.5.
    #[arg(long = "condition", value_parser = parse_pair::<f32>)]
    pub conditions: Vec<(String, f32)>,
    /// Text prompt (diffusers folders).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Negative prompt for classifier-free guidance (diffusers folders).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Classifier-free guidance scale (diffusers folders; 1 disables guidance).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f32,
    #[arg(long, help = bitsearch_pipeline::sampler::help())]
    pub sampler: Option<bitsearch_pipeline::sampler::SamplerKind>,
    /// DDIM eta (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f32,
    /// What the denoiser outputs: sample (a clean image), epsilon, v_prediction or score.
    #[arg(long)]
    pub prediction: Option<bitsearch_pipeline::sampler::Prediction>,
    /// The denoiser's time input, when its name (sigma, timestep, t) does not give it away.
    #[arg(long)]
    pub time_input: Option<String>,
    /// What the time input measures: discrete (Stable Diffusion timesteps), sigma (EDM noise
    /// level) or vp (t in [0, 1] of the VP SDE) [default: sigma for an input named sigma, else discrete].
    #[arg(long)]
    pub time_kind: Option<bitsearch_pipeline::denoiser::TimeKind>,
    /// Largest noise level of a sigma-parameterised denoiser.
    #[arg(long, default_value_t = 80.0)]
    pub sigma_max: f32,
    /// Smallest noise level of a sigma-parameterised denoiser.
    #[arg(long, default_value_t = 0.002)]
    pub sigma_min: f32,
    /// Size of a symbolic sample dimension, e.g. --dim height=64.
    #[arg(long = "dim", value_parser = parse_pair::<usize>)]
    pub dims: Vec<(String, usize)>,
    #[arg(long, default_value = "auto")]
    pub device: bitsearch_runtime::Device,
    /// Start from these latents (a float32 .npy of [num, channels, h, w]) instead of each
    /// seed's noise, e.g. to reproduce another implementation's run (diffusers folders).
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Also write the raw images, unclamped, as OUT/samples.npy (float32 [num, channels, H, W]).
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
    /// YAML file with any of the settings below (field names in snake_case, as in the README).
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
    /// Denoising steps [default: 1 for sigma models, 10 otherwise].
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, help = bitsearch_pipeline::sampler::help())]
    pub sampler: Option<bitsearch_pipeline::sampler::SamplerKind>,
    #[arg(long)]
    pub eta: Option<f64>,
    /// Seeds [default: 0]; --pairing says which prompts or conditions run with which.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// every: each prompt (or condition set) runs with every seed; zip: prompt i runs with seed i
    /// alone, so each item has noise of its own (one seed S stands for S, S+1, …) [default: every].
    #[arg(long)]
    pub pairing: Option<bitsearch_pipeline::workload::Pairing>,
    /// Values of a condition input, e.g. --condition difficulty=0.2,0.8 (the product is taken).
    #[arg(long = "condition", value_parser = parse_values)]
    pub conditions: Vec<(String, Vec<f32>)>,
    /// A prompt (diffusers folders); repeat for more.
    #[arg(long = "prompt")]
    pub prompts: Vec<String>,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Classifier-free guidance scale (diffusers folders) [default: 7.5].
    #[arg(long)]
    pub guidance: Option<f32>,
    /// What the denoiser outputs: sample, epsilon, v_prediction or score.
    #[arg(long)]
    pub prediction: Option<bitsearch_pipeline::sampler::Prediction>,
    /// The denoiser's time input, when its name (sigma, timestep, t) does not give it away.
    #[arg(long)]
    pub time_input: Option<String>,
    /// What the time input measures: discrete, sigma or vp (as for `sample`).
    #[arg(long)]
    pub time_kind: Option<bitsearch_pipeline::denoiser::TimeKind>,
    #[arg(long)]
    pub sigma_min: Option<f64>,
    #[arg(long)]
    pub sigma_max: Option<f64>,
    /// Size of a symbolic input dimension, e.g. --dim height=64.
    #[arg(long = "dim", value_parser = parse_pair::<usize>)]
    pub dims: Vec<(String, usize)>,
    /// Items (condition × seed) per network run [default: 8].
    #[arg(long)]
    pub batch: Option<usize>,
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
    #[arg(long)]
    pub device: Option<bitsearch_runtime::Device>,
    /// ONNX Runtime intra-op threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shard tables.
    #[arg(required = true)]
    pub tables: Vec<PathBuf>,
    /// The merged table.
    #[arg(long)]
    pub out: PathBuf,
}

/// Every field of the YAML config has a flag; a flag given replaces the config's value.
#[derive(Debug, clap::Args)]
pub struct SolveArgs {
    /// The sensitivity table (from `bitsearch sensitivity` or `merge`).
    #[arg(long)]
    pub sensitivity: PathBuf,
    /// The plan (YAML) to write; with --sweep, a folder for the plans and the frontier.
    #[arg(long)]
    pub out: PathBuf,
    /// YAML file with budgets, content_weight, content_share, protect, fill, time_limit, shrink.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A budget: avg-bits=4.0, memory=2.5MB, bops=1.2e12, or 4.0bits, 2.5MB, 1.2e12bops, 30%
    /// (of full precision); repeat for several limits. The first also gets a lower bound.
    #[arg(long = "budget")]
    pub budgets: Vec<String>,
    /// Solve at N budgets from FROM to TO, e.g. avg-bits=2.5..8:50, and write the frontier.
    #[arg(long)]
    pub sweep: Option<bitsearch_records::Sweep>,
    /// ilp (the integer program) or greedy (the marginal-loss baseline; one budget) [default: ilp].
    #[arg(long)]
    pub method: Option<bitsearch_solver::Method>,
    /// Leave these kinds of the table's weight options out, comma-separated: split (outlier
    /// split), groups (per-layer group sizes), fp8 (E4M3), half (float16).
    #[arg(long, value_delimiter = ',')]
    pub without: Vec<bitsearch_solver::Variant>,
    /// What the losses measure: decoupled (MixDQ: denoiser SQNR for quality layers, image SSIM
    /// for content layers) or image (the final image's MSE for every layer, predicting PSNR)
    /// [default: image with a --target psnr=…, else decoupled].
    #[arg(long)]
    pub loss: Option<bitsearch_solver::LossBasis>,
    /// Instead of solving, the uniform plan: every unprotected layer at B weight bits.
    #[arg(long, value_name = "B", conflicts_with_all = ["budgets", "sweep", "method"])]
    pub uniform: Option<u32>,
    /// Weight of the content layers' SSIM loss against the quality layers' SQNR loss [default: 1].
    #[arg(long)]
    pub content_weight: Option<f64>,
    /// Fraction of the first budget for content layers, or `search` (MixDQ's sweep).
    #[arg(long)]
    pub content_share: Option<bitsearch_solver::Fraction>,
    /// Layers kept in float (names, roles, `input`, `output`), comma-separated
    /// [default: input,output,embedding]; `--protect ''` protects nothing.
    #[arg(long, value_delimiter = ',')]
    pub protect: Option<Vec<String>>,
    /// Lower bound of the first budget, as a fraction of it [default: 0.02 bits under an
    /// avg-bits budget, 0.5% under the others].
    #[arg(long)]
    pub fill: Option<f64>,
    /// Seconds HiGHS may spend per program [default: 60].
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Shrink each layer's measured losses toward its size's share, by a fraction in [0, 1]:
    /// 0 trusts the table, 1 makes every parameter equally sensitive (uniform bits); or
    /// `search`: solve at 0, 0.25 … 1, measure each plan (simulated in float) on the sensitivity
    /// prompts with fresh seeds (--calibration-seeds), keep the largest shrinkage within one
    /// standard error of the best [default: 0].
    #[arg(long)]
    pub shrink: Option<bitsearch_solver::Fraction>,
    /// A quality the plan must measure on the calibration items: sqnr=30dB, psnr=30dB,
    /// ssim=0.99, caption=0.95 (repeat for several). The smallest plan that meets them all is
    /// searched by solving, measuring (the plan simulated in float) and re-solving.
    #[arg(long = "target", conflicts_with_all = ["sweep", "uniform"])]
    pub targets: Vec<bitsearch_records::Target>,
    /// What a target search minimises: memory, bops or avg-bits [default: memory].
    #[arg(long)]
    pub minimise: Option<bitsearch_solver::Minimise>,
    /// Measurements a target search may take.
    #[arg(long, default_value_t = 8)]
    pub rounds: usize,
    /// Seeds a target search measures on [default: the sensitivity run's, extended by the
    /// next small seeds to at least 8 items]; a shrinkage search [default: the two smallest
    /// seeds the sensitivity run did not use].
    #[arg(long, value_delimiter = ',')]
    pub calibration_seeds: Option<Vec<u64>>,
    /// Layers that must take one precision: NAME+NAME+… or ROLE+ROLE+… (each run of those roles
    /// in graph order, e.g. attn_q+attn_k+attn_v); repeat for several.
    #[arg(long = "tie")]
    pub ties: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// The .onnx denoiser or diffusers/optimum folder the plan was solved for.
    pub model: PathBuf,
    /// The plan from `bitsearch solve`.
    #[arg(long)]
    pub plan: PathBuf,
    /// Folder to write (written under a temporary name, then renamed).
    #[arg(long)]
    pub out: PathBuf,
    /// lowbit: weights stay low-bit in memory (DequantizeLinear); unpacked: turned into float
    /// weights at session start (small file, float speed).
    #[arg(long, default_value = "lowbit")]
    pub storage: bitsearch_records::Storage,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Bias correction: fold each quantized layer's mean output shift on the calibration items
    /// into its bias.
    #[arg(long)]
    pub bias_correction: bool,
    /// PTQD noise correction: fit, per step, the quantized denoiser's noise estimate against the
    /// float one on the calibration items; samplers (ddim, euler) apply it, and at eta > 0 also
    /// reduce their fresh noise by the residual's share.
    #[arg(long)]
    pub ptqd: bool,
    /// Quantize the first (BOS) token row of 8-bit cross-attention K/V inputs like the others,
    /// instead of running it through a float copy of the projection (MixDQ's BOS-aware default).
    #[arg(long)]
    pub no_bos_aware: bool,
    /// Seeds of the calibration (8-bit activations, --bias-correction, --ptqd)
    /// [default: the sensitivity run's items].
    #[arg(long, value_delimiter = ',')]
    pub calibration_seeds: Option<Vec<u64>>,
    #[arg(long, default_value = "auto")]
    pub device: bitsearch_runtime::Device,
    /// ONNX Runtime intra-op threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
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
    #[arg(long, default_value_t = 4)]
    pub num_seeds: u64,
    /// Values of a condition input, e.g. --condition difficulty=0.3,0.7 [default: the sensitivity run's].
    #[arg(long = "condition", value_parser = parse_values)]
    pub conditions: Vec<(String, Vec<f32>)>,
    /// Prompts, one per line [default: MODEL/heldout_prompts.txt, else the sensitivity run's].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Denoising steps [default: the sensitivity run's].
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM stochasticity in [0, 1] [default: the sensitivity run's].
    #[arg(long)]
    pub eta: Option<f64>,
    /// Items per network run [default: the sensitivity run's].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed passes over the items (latency is their median).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Write the final images of the reference and each candidate as PNG under this folder.
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Also write the measured table as Markdown (for the bench tables).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: bitsearch_runtime::Device,
    /// ONNX Runtime intra-op threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    pub model: PathBuf,
    /// The workload spec as JSON.
    #[arg(long)]
    pub spec: String,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The sensitivity table.
    #[arg(long)]
    pub sensitivity: Option<PathBuf>,
    /// A plan from `bitsearch solve`; repeat for several.
    #[arg(long = "plan")]
    pub plans: Vec<PathBuf>,
    /// The frontier from `bitsearch solve --sweep` (frontier.parquet or .csv).
    #[arg(long)]
    pub frontier: Option<PathBuf>,
    /// A folder of sample PNGs (full precision first, then one per plan); repeat for several.
    #[arg(long = "samples")]
    pub samples: Vec<PathBuf>,
    /// Evaluation records from `bitsearch eval` (EVAL.parquet); repeat for several.
    #[arg(long = "eval")]
    pub evals: Vec<PathBuf>,
    /// Folder for index.html and its figures.
    #[arg(long)]
    pub out: PathBuf,
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
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub seeds: u16,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub steps: u16,
    /// Classifier-free guidance scale (1 disables guidance).
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f32,
    /// Sampler [default: the one the scheduler config names].
    #[arg(long)]
    pub sampler: Option<bitsearch_pipeline::sampler::SamplerKind>,
    /// Also measure with every UNet weight fake-quantized at each of these bit-widths, e.g. 8,4
    /// (per-channel, MSE-searched clipping, as sensitivity probes do).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(2..=8))]
    pub w_bits: Vec<u8>,
    /// Score these images instead of generating any: a float32 .npy of [prompts × seeds, 3, H, W]
    /// in [-1, 1], image p·seeds + s being prompt p's seed s (the layout `sample --npy` writes),
    /// from any generator, e.g. another library's pipeline run on the same folder.
    #[arg(long, conflicts_with = "w_bits")]
    pub images: Option<PathBuf>,
    /// Images per pipeline run.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
    #[arg(long, default_value = "auto")]
    pub device: bitsearch_runtime::Device,
    /// Also write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
