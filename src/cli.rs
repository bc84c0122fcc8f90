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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
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
    /// Sampler: ddim, euler, lcm (discrete-time models), consistency, edm-euler (sigma models).
    #[arg(long)]
    pub sampler: Option<bitsearch_pipeline::sampler::SamplerKind>,
    /// DDIM eta (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f32,
    /// What the denoiser outputs: sample (a clean image), epsilon or v_prediction.
    #[arg(long)]
    pub prediction: Option<bitsearch_pipeline::sampler::Prediction>,
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
    /// Output folder for the PNG files.
    #[arg(long)]
    pub out: PathBuf,
}
