//! Command-line arguments, declared once: the shared generation flags in `workload`, each
//! command's own in `generate` and `plan`; `settings` merges config files with flags, `printer`
//! writes every table and message. The commands live in `commands/`.

mod generate;
pub mod paths;
mod plan;
pub mod printer;
pub mod settings;
mod workload;

pub use generate::{AlignArgs, EvalArgs, MemoryArgs, SampleArgs, SensitivityArgs};
pub use plan::{InspectArgs, MergeArgs, QuantizeArgs, ReportArgs, ServeArgs, SolveArgs};
pub use printer::Format;

use clap::{Parser, Subcommand};

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

/// What a condition input is given: values (their product with the other conditions makes the
/// items) or a tensor file.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionArg {
    Values(Vec<f32>),
    File(std::path::PathBuf),
}

/// `NAME=V1,V2,...` or `NAME=@FILE.npy`: a condition input and what it is given.
pub fn parse_condition(s: &str) -> Result<(String, ConditionArg), String> {
    let (name, given) =
        s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=VALUE[,VALUE...] or NAME=@FILE.npy"))?;
    if let Some(file) = given.strip_prefix('@') {
        return Ok((name.to_string(), ConditionArg::File(file.into())));
    }
    let values = given
        .split(',')
        .map(|v| v.trim().parse::<f32>().map_err(|e| format!("'{s}': '{v}': {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), ConditionArg::Values(values)))
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
