//! `bitsearch solve`: settings from YAML and flags, one plan, a sweep, the smallest plan that
//! meets measured targets, or the shrinkage chosen by measurement, and a summary that puts
//! the plan next to the uniform bit-widths.

use super::quantize::sensitivity_generation;
use super::read_prompts;
use crate::cli::printer::Printer;
use crate::cli::{SolveArgs, paths, settings};
use crate::exit::Refused;
use anyhow::{Context, bail};
use bitsearch_eval::{CALIBRATION_ITEMS, Candidate, EvalOptions, Reference, calibration, fresh};
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_records::{
    Curve, Metric, PredictionFit, RecordError, Resource, SensitivityTable, Sweep, Target, write_frontier,
};
use bitsearch_solver::bench::{Bench, Meter};
use bitsearch_solver::select::{Selected, Trial};
use bitsearch_solver::{AppliedFit, Problem, SolveOptions, Solved, plan, sha256, solve, uniform};
use bitsearch_solver::{Fraction, LossBasis, SolverError, pareto, target};
use std::path::Path;

pub fn run(args: &SolveArgs) -> anyhow::Result<()> {
    let inputs = [Some(args.sensitivity.as_path()), args.config.as_deref(), args.selection_prompts.as_deref()]
        .into_iter()
        .flatten();
    paths::keep_apart(&[("--out", &args.out)], inputs)?;
    let (config, options) = settings::solve(args)?;
    let mut table = SensitivityTable::read(&args.sensitivity)?;
    let missing = table.missing_probes();
    table.rows.retain(|r| !args.without.iter().any(|v| v.matches(r)));
    let mut problem =
        Problem::from_table(&table, &config.protect, config.basis(&args.targets, table.meta.decodes_images()))?;
    // Checked after the table's own holes, which name their layer: what is left are whole layers.
    if missing > 0 {
        let what = format!(
            "{}: {missing} of the run's {} probes are missing (a shard's table, or a merge without every shard)",
            args.sensitivity.display(),
            table.meta.probes_total
        );
        if !args.allow_partial {
            bail!("{what}: a plan would leave their layers in float; merge every shard first, or give --allow-partial");
        }
        log::warn!("{what}: their layers stay in float");
    }
    problem.tie(&config.ties)?;
    if let Some(path) = &args.prediction_fit {
        problem.fit = Some(applied_fit(path, &args.sensitivity)?);
    }
    let search_shrink = match config.shrink {
        Fraction::Fixed(lambda) => {
            problem.shrink(lambda)?;
            false
        }
        Fraction::Search(_) => true,
    };
    if search_shrink && (!args.targets.is_empty() || args.uniform.is_some()) {
        let message =
            "a search compares plans under a --budget or a --sweep: give --target and --uniform a fixed shrinkage";
        return Err(SolverError::Config { field: "shrink".into(), message: message.into() }.into());
    }
    if args.selection_prompts.is_some() && !(search_shrink || args.fit_prediction) {
        let message = "only a shrinkage search (--shrink search) and --fit-prediction measure on selection items";
        return Err(SolverError::Config { field: "selection_prompts".into(), message: message.into() }.into());
    }
    let protected = problem.layers.iter().filter(|l| l.protected).count();
    log::info!(
        "{}: {} layers ({protected} protected), {} step groups",
        args.sensitivity.display(),
        problem.layers.len(),
        problem.groups()
    );
    if !problem.ties.is_empty() {
        log::info!("{} ties over {} layers", problem.ties.len(), problem.ties.iter().map(Vec::len).sum::<usize>());
    }
    if args.fit_prediction {
        return fit_prediction(args, &problem, &table, &options, search_shrink);
    }
    if !args.targets.is_empty() {
        return target(args, &problem, &options, &table);
    }
    if let Some(bits) = args.uniform {
        let solved = uniform(&problem, bits, options.content_weight)?;
        plan(&problem, &solved, &options, &table, &args.sensitivity)?.write(&args.out)?;
        print_summary(&args.out.display().to_string(), &problem, &solved, options.content_weight)?;
        return Ok(());
    }
    let Some(sweep) = args.sweep else {
        if options.budgets.is_empty() {
            bail!("give a budget (--budget avg-bits=4.0, memory=2.5MB, …) or a --sweep");
        }
        if search_shrink {
            let mut bench = selection(args, &problem, &table)?;
            let (plan, selected) = bench.select_plan(&problem, &options)?;
            plan.write(&args.out)?;
            print_summary(
                &args.out.display().to_string(),
                &selected.problem,
                &selected.solved,
                options.content_weight,
            )?;
            print_shrinkages(&selected)?;
            return Ok(());
        }
        let solved = solve(&problem, &options)?;
        plan(&problem, &solved, &options, &table, &args.sensitivity)?.write(&args.out)?;
        print_summary(&args.out.display().to_string(), &problem, &solved, options.content_weight)?;
        return Ok(());
    };
    sweep_frontier(args, &problem, &table, &options, sweep, search_shrink)
}

/// `--sweep`: a plan per budget (each budget's shrinkage searched with `search_shrink`), and
/// the frontier of those met beside the uniform points.
fn sweep_frontier(
    args: &SolveArgs,
    problem: &Problem,
    table: &SensitivityTable,
    options: &SolveOptions,
    sweep: Sweep,
    search_shrink: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let mut bench = if search_shrink { Some(selection(args, problem, table)?) } else { None };
    let mut points = Vec::new();
    for (i, budget, options) in pareto::budgets(&sweep, options) {
        let chosen = match &mut bench {
            Some(bench) => bench.select_plan(problem, &options).map(|(plan, selected)| (plan, selected.solved)),
            None => solve(problem, &options)
                .map_err(anyhow::Error::from)
                .and_then(|s| Ok((plan(problem, &s, &options, table, &args.sensitivity)?, s))),
        };
        let (plan, solved) = match chosen {
            Ok(chosen) => chosen,
            // One budget the program cannot meet does not cost the frontier.
            Err(e) if e.is::<SolverError>() => {
                log::warn!("sweep point {budget}: {e}; left out");
                continue;
            }
            Err(e) => return Err(e),
        };
        let name = format!("plan_{i:03}.yaml");
        plan.write(&args.out.join(&name))?;
        let limit = solved.limits[0].limit;
        let kind = options.method.kind();
        points.push(pareto::point(kind, name, sweep.resource, limit, &solved.evaluation, solved.status));
    }
    let solved = points.len();
    if solved == 0 {
        let message = format!("{}: none of the sweep's {} budgets can be met", args.out.display(), sweep.points);
        return Err(Refused(message).into());
    }
    points.extend(pareto::uniform_points(problem, sweep.resource, options.content_weight));
    for name in ["frontier.parquet", "frontier.csv"] {
        write_frontier(&points, &args.out.join(name))?;
    }
    Printer::stdout().line(format_args!(
        "{}: {solved} of {} budgets solved; frontier.parquet and frontier.csv",
        args.out.display(),
        sweep.points
    ))?;
    Ok(())
}

/// The fit at `path`, which must have been fitted on the table at `table`.
fn applied_fit(path: &Path, table: &Path) -> anyhow::Result<AppliedFit> {
    let fit = PredictionFit::read(path)?;
    let table_sha256 = sha256(table)?;
    if fit.sensitivity_sha256 != table_sha256 {
        let message = format!(
            "sensitivity_sha256: fitted on another table ({}), not {} ({table_sha256}); fit it on this one with `solve --fit-prediction`",
            fit.sensitivity_sha256,
            table.display()
        );
        return Err(RecordError::file(path, message).into());
    }
    Ok(AppliedFit { curves: fit.curves, file: path.to_path_buf(), sha256: sha256(path)? })
}

/// `--fit-prediction`: the sweep's plans measured on the selection items, the fit of how their
/// single-layer losses combine written to `--out`.
fn fit_prediction(
    args: &SolveArgs,
    problem: &Problem,
    table: &SensitivityTable,
    options: &SolveOptions,
    search_shrink: bool,
) -> anyhow::Result<()> {
    let sweep = args.sweep.context("--fit-prediction measures the plans of a --sweep")?;
    if search_shrink {
        let message = "a fit measures one plan per budget: give --fit-prediction a fixed shrinkage";
        return Err(SolverError::Config { field: "shrink".into(), message: message.into() }.into());
    }
    let mut bench = selection(args, problem, table)?;
    let fit = bench.fit_prediction(problem, &sweep, options)?;
    fit.write(&args.out)?;
    let mut printer = Printer::stdout();
    printer.line(format_args!(
        "{}: fitted on {} plans measured on the {}",
        args.out.display(),
        fit.plans.len(),
        fit.items
    ))?;
    let curves = &fit.curves;
    for (name, curve) in [("SQNR", &curves.sqnr), ("PSNR", &curves.psnr), ("1 - SSIM", &curves.ssim)] {
        printer.line(format_args!("  {name}: {}", curve_words(curve.as_ref())))?;
    }
    for p in &fit.plans {
        printer.line(format_args!(
            "  {}: {:.3} bits; additive SQNR {:>6.2} dB, PSNR {:>6.2} dB; measured SQNR {:>6.2} dB, SSIM {:.4}, PSNR {:>6.2} dB",
            p.budget, p.avg_bits, p.additive_sqnr_db, p.additive_psnr_db, p.measured.sqnr_db, p.measured.ssim, p.measured.psnr_db
        ))?;
    }
    Ok(())
}

/// A fitted curve in words: the form that predicts, its lines, the leave-one-out errors.
fn curve_words(curve: Option<&Curve>) -> String {
    let Some(c) = curve else { return "no curve (the additive prediction stays)".into() };
    let scale = c.scale.map_or("no scale".into(), |l| {
        format!("scale: measured dB = additive dB {:+.2} (rms residual {:.2} dB)", l.intercept_db, l.rms_residual_db)
    });
    let line = c.line.map_or("no monotone line".into(), |l| {
        format!(
            "line: measured dB = {:.2} + {:.3} x additive dB (rms residual {:.2} dB)",
            l.intercept_db, l.slope, l.rms_residual_db
        )
    });
    format!(
        "{scale}; {line}; {} knots; left out one at a time, scale {:.2} dB, line {:.2} dB, knots {:.2} dB rms: predicting by the {}",
        c.knots.len(),
        c.loo_scale_db,
        c.loo_line_db,
        c.loo_knots_db,
        c.form.name()
    )
}

/// The reference measuring plans simulated in float.
struct Simulated(Reference);

impl Meter for Simulated {
    type Error = anyhow::Error;

    fn measure(&mut self, plan: &Path, metric: Metric) -> anyhow::Result<Trial> {
        let measurement = self.0.measure(&Candidate::Simulated(plan.to_path_buf()), 0)?;
        Ok(Trial { measured: measurement.record.measured(), errors: measurement.errors.of(metric).to_vec() })
    }
}

/// Plans simulated in float and measured against the reference on the items of `spec`: what the
/// target and shrinkage searches measure their rounds with.
fn bench<'a>(
    args: &'a SolveArgs,
    table: &'a SensitivityTable,
    spec: WorkloadSpec,
    items: String,
    needs: Vec<Metric>,
) -> anyhow::Result<Bench<'a, Simulated>> {
    let eval = EvalOptions { spec, repeats: 0, held_out: items.clone() };
    let reference = Reference::open(Path::new(&table.meta.model), &eval)?;
    Bench::new((table, &args.sensitivity), Simulated(reference), items, needs)
        .context("a scratch folder for the rounds' plans")
}

/// The bench of `--shrink search` and `--fit-prediction`: the sensitivity prompts (or
/// `--selection-prompts`) on fresh seeds, measuring the metric the problem's losses predict.
fn selection<'a>(
    args: &'a SolveArgs,
    problem: &Problem,
    table: &'a SensitivityTable,
) -> anyhow::Result<Bench<'a, Simulated>> {
    let base = sensitivity_generation(&args.sensitivity)?;
    let prompts = match &args.selection_prompts {
        Some(_) if base.prompts.is_empty() => {
            let message = "the table's items have no prompts (a denoiser file's table): nothing to replace";
            return Err(SolverError::Config { field: "selection_prompts".into(), message: message.into() }.into());
        }
        Some(path) => Some(read_prompts(path)?),
        None => None,
    };
    let (spec, items) = fresh(&base, args.calibration_seeds.clone(), CALIBRATION_ITEMS, prompts);
    let metric = target::basis_metric(problem.basis);
    log::info!("selection: measuring {metric} of plans simulated in float on the {items}");
    bench(args, table, spec, items, vec![metric])
}

fn print_shrinkages(selected: &Selected) -> std::io::Result<()> {
    let mut printer = Printer::stdout();
    printer.line(format_args!(
        "  shrinkages (measured on the selection items; kept: the largest within one standard error of the best):"
    ))?;
    for (i, r) in selected.rounds.iter().enumerate() {
        let m = &r.measured;
        printer.line(format_args!(
            "  {} {:.2}: {:.3} MB, {:.3} bits, measured SQNR {:>6.2} dB, SSIM {:.4}, PSNR {:>6.2} dB{}, s.e. {:.2} dB{}",
            if i == selected.chosen { "*" } else { " " },
            r.shrink,
            r.bytes / 1e6,
            r.avg_bits,
            m.sqnr_db,
            m.ssim,
            m.psnr_db,
            m.caption_words(),
            r.below_best_se_db,
            r.same_as.map_or(String::new(), |first| format!(" (the plan of {:.2})", selected.rounds[first].shrink)),
        ))?;
    }
    Ok(())
}

/// `--target`: the smallest plan whose simulation meets every target on the calibration items
/// (the sensitivity run's), searched round by round; exits with [`Refused`] if none does.
fn target(args: &SolveArgs, problem: &Problem, options: &SolveOptions, table: &SensitivityTable) -> anyhow::Result<()> {
    let base = sensitivity_generation(&args.sensitivity)?;
    let (spec, items) = calibration(&base, args.calibration_seeds.clone(), CALIBRATION_ITEMS);
    log::info!("target {}: measuring plans simulated in float on the {items}", list(&args.targets));
    let needs = args.targets.iter().map(|t| t.metric).collect();
    let mut bench = bench(args, table, spec, items, needs)?;
    let searched = bench.search(problem, options, &args.targets, args.rounds)?;
    let Some((plan, solved)) = bench.target_plan(problem, options, &args.targets, &searched)? else {
        return Err(Refused(target::unmet(&searched, &args.targets).to_string()).into());
    };
    let chosen = searched.chosen.as_ref().map(|(index, _)| *index);
    plan.write(&args.out)?;
    print_summary(&args.out.display().to_string(), problem, &solved, options.content_weight)?;
    let mut printer = Printer::stdout();
    printer.line(format_args!("  rounds (target {}; measured on the calibration items):", list(&args.targets)))?;
    let metric = target::basis_metric(problem.basis);
    let name = metric.to_string().to_uppercase();
    for r in &searched.rounds {
        printer.line(format_args!(
            "  {} {:>2}: cap {:.3e}, predicted {name} {:>6.2} dB, measured SQNR {:>6.2} dB, SSIM {:.4}, PSNR {:>6.2} dB{}, margin {:+.2} dB, {:.3} MB, {:.3} bits",
            if Some(r.round) == chosen { "*" } else { " " },
            r.round,
            r.loss_cap,
            r.predicted_db(metric),
            r.measured.sqnr_db,
            r.measured.ssim,
            r.measured.psnr_db,
            r.measured.caption_words(),
            r.margin_db,
            r.bytes / 1e6,
            r.avg_bits
        ))?;
    }
    Ok(())
}

fn list(targets: &[Target]) -> String {
    targets.iter().map(Target::to_string).collect::<Vec<_>>().join(", ")
}

fn print_summary(out: &str, problem: &Problem, solved: &Solved, content_weight: f64) -> std::io::Result<()> {
    let mut printer = Printer::stdout();
    let e = &solved.evaluation;
    let full = problem.full_precision();
    printer.line(format_args!(
        "{out}: {} in {:.2} s ({} variables, {} constraints)",
        solved.status, solved.seconds, solved.variables, solved.constraints
    ))?;
    for limit in &solved.limits {
        let lower = limit.lower.map_or(String::new(), |l| format!(", at least {}", limit.resource.format(l)));
        printer.line(format_args!(
            "  {}: used {} of {}{lower}",
            limit.resource,
            limit.resource.format(limit.used),
            limit.resource.format(limit.limit)
        ))?;
    }
    printer.line(format_args!(
        "  weights {} ({} in float, {:.2}x smaller), {:.3} bits on average, {} ",
        Resource::Memory.format(e.usage.memory),
        Resource::Memory.format(full.memory),
        full.memory / e.usage.memory.max(1.0),
        e.usage.avg_bits,
        Resource::Bops.format(e.usage.bops)
    ))?;
    let words = predicted(e.basis, e.predicted_sqnr_db(), e.predicted_ssim(), e.predicted_psnr_db());
    printer.line(format_args!("  predicted: objective {:.6}, {words}", e.objective))?;
    if e.beyond_base {
        log::warn!(
            "the plan's changes from the table's base plan add up to less noise than none: the linear model around \
             the base does not reach this far, so its prediction means nothing (measure the plan with `eval`)"
        );
    }
    let split = problem
        .layers
        .iter()
        .zip(&solved.assignment)
        .filter(|(l, chosen)| chosen.iter().flatten().any(|&o| l.options[o].weight.split()))
        .count();
    if split > 0 {
        printer.line(format_args!("  {split} layers take MPQ-DM's outlier split"))?;
    }
    for p in pareto::uniform_points(problem, Resource::AvgBits, content_weight) {
        let words = predicted(problem.basis, p.sqnr_db, p.ssim, p.psnr_db);
        printer.line(format_args!("  {}: objective {:.6}, {words}, {:.3} bits", p.plan, p.objective, p.avg_bits))?;
    }
    Ok(())
}

/// What a plan's losses predict, in words: denoiser SQNR and image SSIM (decoupled), or the
/// image's PSNR (image MSE), which both bases predict.
fn predicted(basis: LossBasis, sqnr_db: f64, ssim: f64, psnr_db: f64) -> String {
    match basis {
        LossBasis::Decoupled => {
            format!("denoiser SQNR {sqnr_db:.2} dB, image SSIM {ssim:.5} (image PSNR {psnr_db:.2} dB)")
        }
        LossBasis::Image => format!("image PSNR {psnr_db:.2} dB"),
    }
}
