//! `bitsearch sensitivity`: the config from YAML and flags, a progress bar, and the summary.

use crate::cli::printer::Printer;
use crate::cli::{SensitivityArgs, paths, settings};
use bitsearch_records::{ProbeRow, Shard, monotonicity, split_gains};
use bitsearch_sensitivity::{Existing, Progress, SensitivityRun, run_to_table};
use indicatif::{ProgressBar, ProgressStyle};

pub fn run(args: &SensitivityArgs) -> anyhow::Result<()> {
    paths::keep_apart(&[("--out", &args.out)], std::iter::once(args.model.as_path()).chain(args.config.as_deref()))?;
    let config = settings::sensitivity(args)?;
    let shard =
        args.shard.map(|s| s.resolve(|name| std::env::var(name).ok())).transpose().map_err(anyhow::Error::msg)?;
    let mut run = SensitivityRun::open(&args.model, config, shard.unwrap_or(Shard::WHOLE))?;
    let meta = run.meta();
    log::info!(
        "{}: {} sampler, {} steps, {} items, {} probes{} on {}",
        args.model.display(),
        meta.sampler,
        meta.steps,
        meta.items.len(),
        run.probes(),
        shard.map_or(String::new(), |s| format!(" (shard {s} of {} in all)", meta.probes_total)),
        meta.device
    );
    log::info!("{}", meta.metric_groups);
    if let Some(base) = &meta.base {
        log::info!("probes start from the base plan {} ({} layers quantized)", base.plan, base.layers.len());
    }
    let existing = match (args.resume, args.overwrite) {
        (true, _) => Existing::Resume,
        (_, true) => Existing::Overwrite,
        _ => Existing::Refuse,
    };
    let mut bar = Bar::default();
    let (summary, table) = run_to_table(&mut run, &args.out, existing, &mut bar)?;
    bar.0.finish_and_clear();
    let m = monotonicity(&table.rows);
    let mut out = Printer::stdout();
    out.line(format_args!(
        "{}: {} probes ({} computed now, {} from the journal)",
        args.out.display(),
        table.rows.len(),
        summary.computed,
        summary.skipped
    ))?;
    if summary.at_base > 0 {
        out.line(format_args!(
            "{} probes were of a layer at its base form: one pass of the base answered them",
            summary.at_base
        ))?;
    }
    if summary.computed > 0 {
        out.line(format_args!(
            "speed: {:.2} probes/s; probe / plain forward = {:.3} (medians of {} probes and {} plain passes among \
             them; plain pass {:.3} s)",
            summary.probes_per_second(),
            summary.probe_to_plain_ratio(),
            summary.probe_times.len(),
            summary.plain_passes.len(),
            summary.plain_pass().as_secs_f64()
        ))?;
        let phases: Vec<String> =
            summary.phases.named().iter().map(|&(name, time)| format!("{name} {:.1}%", summary.share(time))).collect();
        out.line(format_args!("probing time: {}", phases.join(", ")))?;
        let cache = &summary.cache;
        out.line(format_args!(
            "below the cut: {} of {} batch runs, their values captured in {} passes, at most {:.1} of {:.0} MB held",
            cache.cut_runs,
            cache.cut_runs + cache.whole_runs,
            cache.captures,
            cache.peak as f64 / 1e6,
            cache.budget as f64 / 1e6
        ))?;
    }
    if m.checked > 0 {
        out.line(format_args!(
            "monotonic in weight bits: {} layers checked; fewer bits scored better on SQNR for {}, on SSIM for {}",
            m.checked,
            m.sqnr_exceptions.len(),
            m.ssim_exceptions.len()
        ))?;
    }
    for g in split_gains(&table.rows) {
        out.line(format_args!(
            "outlier split at W{}: {} of {} layers gain SQNR; median change {:+.2} dB SQNR, {:+.5} SSIM",
            g.w_bits, g.improved, g.layers, g.median_sqnr_db, g.median_ssim
        ))?;
    }
    if summary.nonfinite > 0 {
        out.line(format_args!("{} probes produced NaN/Inf and were recorded as worst sensitivity", summary.nonfinite))?;
    }
    Ok(())
}

/// A progress bar with ETA on a terminal; stage messages go to the log as well.
struct Bar(ProgressBar);

impl Default for Bar {
    fn default() -> Self {
        Self(ProgressBar::hidden())
    }
}

impl Progress for Bar {
    fn start(&mut self, total: usize, done: usize) {
        self.0 = ProgressBar::new(total as u64).with_position(done as u64);
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} probes  {per_sec}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        self.0.set_style(style);
        self.0.reset_eta();
        if done > 0 {
            log::info!("resuming: {done} of {total} probes already in the journal");
        }
    }

    fn stage(&mut self, message: &str) {
        self.0.suspend(|| log::info!("{message}"));
    }

    fn finished(&mut self, row: &ProbeRow) {
        let split = if row.weight.split() { " split" } else { "" };
        self.0.set_message(format!("{} W{}A{}{split}", row.layer.name, row.weight.bits(), row.a_bits));
        self.0.inc(1);
    }
}
