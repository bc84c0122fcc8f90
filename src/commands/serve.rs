//! `bitsearch serve`: the service's settings from flags, then the server until interrupted.

use crate::cli::ServeArgs;
use anyhow::{Context, bail};
use bitsearch_serve::{Limits, ServeConfig};
use std::time::Duration;

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
    let workers = at_least_one("--workers", args.workers)?;
    let limits = Limits {
        table_bytes: at_least_one("--max-body-mb", args.max_body_mb)? * 1_000_000,
        request_bytes: at_least_one("--max-request-kb", args.max_request_kb)? * 1024,
        table_rows: at_least_one("--max-table-rows", args.max_table_rows)?,
        table_meta_bytes: at_least_one("--max-table-meta-kb", args.max_table_meta_kb)? * 1024,
        step_groups: at_least_one("--max-step-groups", args.max_step_groups)?,
        sweep_points: at_least_one("--max-sweep-points", args.max_sweep_points)?,
        budgets: at_least_one("--max-budgets", args.max_budgets)?,
        queue: args.queue,
        request_time: seconds("--request-time-limit", args.request_time_limit)?,
        header_timeout: seconds("--header-timeout", args.header_timeout)?,
        body_timeout: seconds("--body-timeout", args.body_timeout)?,
        connections: at_least_one("--max-connections", args.max_connections)?,
    };
    seconds("--time-limit", args.time_limit)?;
    let config = ServeConfig {
        listen: args.listen,
        data: args.data.clone(),
        token,
        workers,
        time_limit: args.time_limit,
        limits,
    };
    Ok(bitsearch_serve::run(config)?)
}

fn at_least_one(flag: &str, value: usize) -> anyhow::Result<usize> {
    if value == 0 {
        bail!("{flag}: must be at least 1");
    }
    Ok(value)
}

/// A positive, finite number of seconds (a day at most).
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value > 0.0 && value <= 86_400.0) {
        bail!("{flag}: must be a positive number of seconds, at most 86400");
    }
    Ok(Duration::from_secs_f64(value))
}
