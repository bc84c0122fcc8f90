//! `bitsearch sensitivity`: the config from YAML and flags, a progress bar, and the summary.

use crate::cli::SensitivityArgs;
use bitsearch_records::{ProbeRow, Shard, monotonicity, split_gains};
use bitsearch_sensitivity::{Existing, Progress, SensitivityConfig, SensitivityRun, run_to_table};
use indicatif::{ProgressBar, ProgressStyle};

pub fn run(args: &SensitivityArgs) -> anyhow::Result<()> {
    let config = config(args)?;
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
    println!(
        "{}: {} probes ({} computed now, {} from the journal)",
        args.out.display(),
        table.rows.len(),
        summary.computed,
        summary.skipped
    );
    if summary.at_base > 0 {
        println!("{} probes were of a layer at its base form: one pass of the base answered them", summary.at_base);
    }
    if summary.computed > 0 {
        println!(
            "speed: {:.2} probes/s; probe / plain forward = {:.3} (medians of {} probes and {} plain passes among \
             them; plain pass {:.3} s)",
            summary.probes_per_second(),
            summary.probe_to_plain_ratio(),
            summary.probe_times.len(),
            summary.plain_passes.len(),
            summary.plain_pass().as_secs_f64()
        );
        let phases: Vec<String> =
            summary.phases.named().iter().map(|&(name, time)| format!("{name} {:.1}%", summary.share(time))).collect();
        println!("probing time: {}", phases.join(", "));
        let cache = &summary.cache;
        println!(
            "below the cut: {} of {} batch runs, their values captured in {} passes, at most {:.1} of {:.0} MB held",
            cache.cut_runs,
            cache.cut_runs + cache.whole_runs,
            cache.captures,
            cache.peak as f64 / 1e6,
            cache.budget as f64 / 1e6
        );
        println!("peak memory: {:.1} MB resident", bitsearch_types::peak_resident_bytes() as f64 / 1e6);
    }
    if m.checked > 0 {
        println!(
            "monotonic in weight bits: {} layers checked; fewer bits scored better on SQNR for {}, on SSIM for {}",
            m.checked,
            m.sqnr_exceptions.len(),
            m.ssim_exceptions.len()
        );
    }
    for g in split_gains(&table.rows) {
        println!(
            "outlier split at W{}: {} of {} layers gain SQNR; median change {:+.2} dB SQNR, {:+.5} SSIM",
            g.w_bits, g.improved, g.layers, g.median_sqnr_db, g.median_ssim
        );
    }
    if summary.nonfinite > 0 {
        println!("{} probes produced NaN/Inf and were recorded as worst sensitivity", summary.nonfinite);
    }
    Ok(())
}

/// The YAML config (or the defaults) with every given flag applied on top, then validated.
fn config(args: &SensitivityArgs) -> anyhow::Result<SensitivityConfig> {
    let mut c = match &args.config {
        Some(path) => SensitivityConfig::from_yaml_file(path)?,
        None => SensitivityConfig::default(),
    };
    fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
        if let Some(value) = flag {
            *field = value.clone();
        }
    }
    set(&mut c.w_bits, &args.w_bits);
    c.outlier_split |= args.outlier_split;
    set(&mut c.w_groups, &args.w_groups);
    c.fp8 |= args.fp8;
    c.bos_aware &= !args.no_bos_aware;
    c.bias_correction |= args.bias_correction;
    set(&mut c.a_bits, &args.act_bits);
    set(&mut c.step_groups, &args.step_groups);
    set(&mut c.layers, &args.layers);
    set(&mut c.window, &args.window);
    set(&mut c.cache_mb, &args.cache_mb);
    c.base = args.base.clone().or(c.base.take());
    let w = &mut c.quantizer.weight;
    set(&mut w.clipping, &args.clipping);
    set(&mut w.clip_grid, &args.clip_grid);
    w.group_size = args.group_size.or(w.group_size);
    let g = &mut c.generation;
    set(&mut g.eta, &args.eta);
    set(&mut g.seeds, &args.seeds);
    set(&mut g.pairing, &args.pairing);
    set(&mut g.guidance, &args.guidance);
    set(&mut g.sigma_min, &args.sigma_min);
    set(&mut g.sigma_max, &args.sigma_max);
    set(&mut g.batch, &args.batch);
    set(&mut g.device, &args.device);
    g.steps = args.steps.or(g.steps);
    g.sampler = args.sampler.or(g.sampler);
    g.prediction = args.prediction.or(g.prediction);
    g.time_input = args.time_input.clone().or(g.time_input.take());
    g.time_kind = args.time_kind.or(g.time_kind);
    g.threads = args.threads.or(g.threads);
    g.negative_prompt = args.negative_prompt.clone().or(g.negative_prompt.take());
    g.conditions.extend(args.conditions.iter().cloned());
    if !args.prompts.is_empty() {
        g.prompts = args.prompts.clone();
    }
    g.dims.extend(args.dims.iter().cloned());
    c.validate()?;
    Ok(c)
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
