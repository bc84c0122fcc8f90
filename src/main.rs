//! `bitsearch`: mixed-precision quantization search for ONNX diffusion models. This binary is
//! a thin shell: arguments in `cli`, one file per subcommand in `commands`, exit statuses in
//! `exit`, the work in the library crates.

mod cli;
mod commands;
mod exit;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A decoder's panic caught at a record reader's boundary is reported once, as the error.
    bitsearch_types::quiet_caught_panics();
    let args = cli::Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(args.log_level()))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let started = std::time::Instant::now();
    let result = commands::run(args);
    // Every command that succeeds says what it cost: on models of gigabytes memory is the
    // first limit met.
    if result.is_ok() {
        log::info!(
            "{:.1} s, peak memory {:.1} MB resident",
            started.elapsed().as_secs_f64(),
            bitsearch_types::peak_resident_bytes() as f64 / 1e6
        );
    }
    exit::finish(result)
}
