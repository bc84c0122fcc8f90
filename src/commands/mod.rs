//! One file per subcommand; each turns parsed arguments into library calls and output.

mod align;
mod eval;
mod inspect;
mod merge;
mod quantize;
mod report;
mod sample;
mod sensitivity;
mod serve;
mod solve;

use crate::cli::{Args, Command};
use anyhow::Context;
use bitsearch_pipeline::workload::prompt_lines;
use std::path::Path;

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Inspect(a) => inspect::run(&a),
        Command::Sample(a) => sample::run(&a),
        Command::Sensitivity(a) => sensitivity::run(&a),
        Command::Merge(a) => merge::run(&a),
        Command::Solve(a) => solve::run(&a),
        Command::Quantize(a) => quantize::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Memory(a) => eval::memory(&a),
        Command::Report(a) => report::run(&a),
        Command::Align(a) => align::run(&a),
        Command::Serve(a) => serve::run(&a),
    }
}

/// A prompts file: one per line, blank lines and `#` comments skipped.
fn read_prompts(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    prompt_lines(&text).map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))
}
