//! `bitsearch`: mixed-precision quantization search for ONNX diffusion models. This binary is
//! a thin shell: arguments in `cli`, one file per subcommand in `commands`, the work in the
//! library crates.

mod cli;
mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(args.log_level()))
        .format_timestamp(None)
        .format_target(false)
        .init();
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever the libraries put in their messages.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("bitsearch: error: {message}");
            ExitCode::from(commands::exit_status(&error))
        }
    }
}
