//! One file per subcommand; each turns parsed arguments into library calls and output.

mod align;
mod inspect;
mod merge;
mod report;
mod sample;
mod sensitivity;
mod solve;

use crate::cli::{Args, Command};

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Inspect(a) => inspect::run(&a),
        Command::Sample(a) => sample::run(&a),
        Command::Sensitivity(a) => sensitivity::run(&a),
        Command::Merge(a) => merge::run(&a),
        Command::Solve(a) => solve::run(&a),
        Command::Report(a) => report::run(&a),
        Command::Align(a) => align::run(&a),
    }
}

/// The denoiser file of `path`: the file itself, or `unet/model.onnx` in a diffusers folder.
pub fn denoiser_file(path: &std::path::Path) -> std::path::PathBuf {
    if path.is_dir() { path.join("unet").join("model.onnx") } else { path.to_path_buf() }
}
