//! `bitsearch solve`: settings from YAML and flags, one plan or a sweep, and a summary that
//! puts the plan next to the uniform bit-widths.

use super::Refused;
use crate::cli::SolveArgs;
use anyhow::bail;
use bitsearch_records::{PointKind, Resource, SensitivityTable, write_frontier};
use bitsearch_solver::pareto;
use bitsearch_solver::{Method, Problem, SolveConfig, Solved, plan, solve, uniform};

pub fn run(args: &SolveArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    let options = config.options()?;
    let mut table = SensitivityTable::read(&args.sensitivity)?;
    if args.no_outlier_split {
        table.rows.retain(|r| !r.w_split);
    }
    let problem = Problem::from_table(&table, &config.protect)?;
    let protected = problem.layers.iter().filter(|l| l.protected).count();
    log::info!(
        "{}: {} layers ({protected} protected), {} step groups",
        args.sensitivity.display(),
        problem.layers.len(),
        problem.groups()
    );
    if let Some(bits) = args.uniform {
        let solved = uniform(&problem, bits, options.content_weight)?;
        plan(&problem, &solved, &options, &table, &args.sensitivity)?.write(&args.out)?;
        print_summary(&args.out.display().to_string(), &problem, &solved, options.content_weight);
        return Ok(());
    }
    let Some(sweep) = args.sweep else {
        if options.budgets.is_empty() {
            bail!("give a budget (--budget avg-bits=4.0, memory=2.5MB, …) or a --sweep");
        }
        let solved = solve(&problem, &options)?;
        plan(&problem, &solved, &options, &table, &args.sensitivity)?.write(&args.out)?;
        print_summary(&args.out.display().to_string(), &problem, &solved, options.content_weight);
        return Ok(());
    };
    std::fs::create_dir_all(&args.out)?;
    let mut points = Vec::new();
    for (i, _, solved) in pareto::run(&problem, &sweep, &options) {
        let name = format!("plan_{i:03}.yaml");
        plan(&problem, &solved, &options, &table, &args.sensitivity)?.write(&args.out.join(&name))?;
        let limit = solved.limits[0].limit;
        let kind = match options.method {
            Method::Ilp => PointKind::Ilp,
            Method::Greedy => PointKind::Greedy,
        };
        points.push(pareto::point(kind, name, sweep.resource, limit, &solved.evaluation, &solved.status));
    }
    let solved = points.len();
    if solved == 0 {
        let message = format!("{}: none of the sweep's {} budgets can be met", args.out.display(), sweep.points);
        return Err(Refused(message).into());
    }
    points.extend(pareto::uniform_points(&problem, sweep.resource, options.content_weight));
    for name in ["frontier.parquet", "frontier.csv"] {
        write_frontier(&points, &args.out.join(name))?;
    }
    println!("{}: {solved} of {} budgets solved; frontier.parquet and frontier.csv", args.out.display(), sweep.points);
    Ok(())
}

/// The YAML config (or the defaults) with every given flag applied on top.
fn config(args: &SolveArgs) -> anyhow::Result<SolveConfig> {
    let mut c = match &args.config {
        Some(path) => SolveConfig::from_yaml_file(path)?,
        None => SolveConfig::default(),
    };
    if !args.budgets.is_empty() {
        c.budgets = args.budgets.clone();
    }
    if let Some(protect) = &args.protect {
        c.protect = protect.iter().filter(|p| !p.is_empty()).cloned().collect();
    }
    c.content_weight = args.content_weight.unwrap_or(c.content_weight);
    c.content_share = args.content_share.or(c.content_share);
    c.fill = args.fill.or(c.fill);
    c.time_limit = args.time_limit.unwrap_or(c.time_limit);
    c.method = args.method.unwrap_or(c.method);
    Ok(c)
}

fn print_summary(out: &str, problem: &Problem, solved: &Solved, content_weight: f64) {
    let e = &solved.evaluation;
    let full = problem.full_precision();
    println!(
        "{out}: {} in {:.2} s ({} variables, {} constraints)",
        solved.status, solved.seconds, solved.variables, solved.constraints
    );
    for limit in &solved.limits {
        let lower = limit.lower.map_or(String::new(), |l| format!(", at least {}", limit.resource.format(l)));
        println!(
            "  {}: used {} of {}{lower}",
            limit.resource,
            limit.resource.format(limit.used),
            limit.resource.format(limit.limit)
        );
    }
    println!(
        "  weights {} ({} in float, {:.2}x smaller), {:.3} bits on average, {} ",
        Resource::Memory.format(e.usage.memory),
        Resource::Memory.format(full.memory),
        full.memory / e.usage.memory.max(1.0),
        e.usage.avg_bits,
        Resource::Bops.format(e.usage.bops)
    );
    println!(
        "  predicted: objective {:.6}, denoiser SQNR {:.2} dB, image SSIM {:.5}",
        e.objective,
        e.predicted_sqnr_db(),
        e.predicted_ssim()
    );
    let split = problem
        .layers
        .iter()
        .zip(&solved.assignment)
        .filter(|(l, chosen)| chosen.iter().flatten().any(|&o| l.options[o].split))
        .count();
    if split > 0 {
        println!("  {split} layers take MPQ-DM's outlier split");
    }
    for point in pareto::uniform_points(problem, Resource::AvgBits, content_weight) {
        println!(
            "  {}: objective {:.6}, SQNR {:.2} dB, SSIM {:.5}, {:.3} bits",
            point.plan, point.objective, point.sqnr_db, point.ssim, point.avg_bits
        );
    }
}
