//! `bitsearch`: mixed-precision quantization search for ONNX diffusion models. This binary is
//! a thin shell: arguments in `cli`, one file per subcommand in `commands`, exit statuses in
//! `exit`, the work in the library crates.

mod cli;
mod commands;
mod exit;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(args.log_level()))
        .format_timestamp(None)
        .format_target(false)
        .init();
    exit::finish(commands::run(args))
}
