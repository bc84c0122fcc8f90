//! Arguments of the commands that read and write records without generating: `inspect`,
//! `merge`, `solve`, `quantize`, `report` and `serve`.

use super::{Format, parse_pair};
use bitsearch_records::Budget;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// An .onnx file, or a diffusers/optimum folder (its unet/model.onnx is inspected).
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Size of a symbolic input dimension, e.g. --dim height=64. Unset spatial ones come from
    /// the config.json beside the model (sample_size); batch and sequence ones are 1.
    #[arg(long = "dim", value_parser = parse_pair::<usize>)]
    pub dims: Vec<(String, usize)>,
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
    pub budgets: Vec<Budget>,
    /// Solve a table that lacks some of its run's probes (a shard's), their layers kept in float.
    #[arg(long)]
    pub allow_partial: bool,
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
    /// [default: image on a pipeline folder's table or with a --target psnr=…, else decoupled].
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
    /// Prompts, one per line, that a shrinkage search and --fit-prediction measure on instead
    /// of the sensitivity prompts: drawn as the deployment's are, none of them held out
    /// (pipeline tables only).
    #[arg(long, value_name = "FILE")]
    pub selection_prompts: Option<PathBuf>,
    /// Layers that must take one precision: NAME+NAME+… or ROLE+ROLE+… (each run of those roles
    /// in graph order, e.g. attn_q+attn_k+attn_v); repeat for several.
    #[arg(long = "tie")]
    pub ties: Vec<String>,
    /// Instead of writing plans, measure the plan of each --sweep budget (at most 8) simulated
    /// in float on the selection items (the sensitivity prompts or --selection-prompts on fresh
    /// seeds, --calibration-seeds) and fit how single-layer losses combine; --out is the fit (YAML).
    #[arg(long, requires = "sweep", conflicts_with_all = ["targets", "uniform", "prediction_fit"])]
    pub fit_prediction: bool,
    /// A fit from `--fit-prediction` on this table: every predicted metric (plans, frontier,
    /// target rounds and the target search's first cap) goes through it.
    #[arg(long, value_name = "FIT")]
    pub prediction_fit: Option<PathBuf>,
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
    /// weights at session start (small file, float speed); matmulnbits: lowbit, with MatMul
    /// layers written as ONNX Runtime's MatMulNBits where their codes and shape allow.
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
    /// Seconds HiGHS may spend on one plan (each point of a sweep included).
    #[arg(long, default_value_t = 20.0)]
    pub time_limit: f64,
    /// Seconds of solving one request may take in all, a whole sweep included.
    #[arg(long, default_value_t = LIMITS.request_time.as_secs_f64())]
    pub request_time_limit: f64,
    /// Requests that may wait for a worker; one more is answered 503 with Retry-After.
    #[arg(long, default_value_t = LIMITS.queue)]
    pub queue: usize,
    /// Largest table upload in MB (10^6 bytes).
    #[arg(long, default_value_t = LIMITS.table_bytes / 1_000_000)]
    pub max_body_mb: usize,
    /// Largest plan or frontier request in KiB.
    #[arg(long, default_value_t = LIMITS.request_bytes / 1024)]
    pub max_request_kb: usize,
    /// Most rows of a table to register.
    #[arg(long, default_value_t = LIMITS.table_rows)]
    pub max_table_rows: usize,
    /// Largest run description (items, step groups, settings) of a table to register, KiB.
    #[arg(long, default_value_t = LIMITS.table_meta_bytes / 1024)]
    pub max_table_meta_kb: usize,
    /// Most step groups of a table to register.
    #[arg(long, default_value_t = LIMITS.step_groups)]
    pub max_step_groups: usize,
    /// Most points of one sweep.
    #[arg(long, default_value_t = LIMITS.sweep_points)]
    pub max_sweep_points: usize,
    /// Most budgets of one request.
    #[arg(long, default_value_t = LIMITS.budgets)]
    pub max_budgets: usize,
    /// Seconds a connection may take to send a request's head, or sit idle between requests.
    #[arg(long, default_value_t = LIMITS.header_timeout.as_secs_f64())]
    pub header_timeout: f64,
    /// Seconds a request's body may take to arrive.
    #[arg(long, default_value_t = LIMITS.body_timeout.as_secs_f64())]
    pub body_timeout: f64,
    /// Most open connections; more wait to be accepted.
    #[arg(long, default_value_t = LIMITS.connections)]
    pub max_connections: usize,
}

/// The service's defaults, which the flags above show.
const LIMITS: bitsearch_serve::Limits = bitsearch_serve::Limits::DEFAULT;
