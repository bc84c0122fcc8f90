//! `bitsearch serve`: the service's settings from flags, then the server until interrupted.

use crate::cli::ServeArgs;
use anyhow::{Context, bail};
use bitsearch_serve::{ServeConfig, serve};

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("--token-file {}", path.display()))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                bail!("--token-file {}: the file holds no token", path.display());
            }
            Some(token)
        }
        None => None,
    };
    if args.workers == 0 {
        bail!("--workers: must be at least 1");
    }
    if args.time_limit.is_nan() || args.time_limit <= 0.0 {
        bail!("--time-limit: must be a positive number of seconds");
    }
    let config = ServeConfig {
        listen: args.listen,
        data: args.data.clone(),
        token,
        workers: args.workers,
        time_limit: args.time_limit,
        max_body: args.max_body_mb * 1_000_000,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("the async runtime")?;
    Ok(runtime.block_on(serve(config))?)
}
