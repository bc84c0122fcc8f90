//! `make bench`: how long the bit-allocation program takes at the sizes the solver promises —
//! 1000 layers × 4 bit-widths × 8 step groups to proven optimality, and a 50-point Pareto sweep
//! over 255 layers (the terrain UNet's count). Writes out/bench/solver.md and prints it.

mod common;

use bitsearch_records::{Budget, Sweep};
use bitsearch_solver::pareto;
use bitsearch_solver::{DEFAULT_PROTECT, LossBasis, Problem, SolveOptions, Status, solve};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protect: Vec<String> = DEFAULT_PROTECT.iter().map(|s| s.to_string()).collect();
    let mut table = String::from(
        "# Solver benchmark\n\nSynthetic sensitivity tables (crates/fixtures), default protection, HiGHS with zero gap \
         tolerance, 1 thread. Times include building the program.\n\n| instance | budget | status | gap | variables | constraints | seconds |\n|---|---|---|---:|---:|---:|---:|\n",
    );
    let big = Problem::from_table(
        &bitsearch_fixtures::sensitivity_table(1, 1000, &[2, 3, 4, 8], 8),
        &protect,
        LossBasis::Decoupled,
    )?;
    // BOPs is the step-aware budget; a memory-like one over step groups also has to count every
    // stored copy of a weight (z variables), which makes a much harder program.
    for (budget, time_limit) in [("bops=12%", 60.0), ("avg-bits=4.5", 20.0)] {
        let options = SolveOptions { budgets: vec![budget.parse::<Budget>()?], time_limit, ..Default::default() };
        let solved = solve(&big, &options)?;
        table += &format!(
            "| 1000 layers × 4 bits × 8 step groups | {budget} | {} | {:.1e} | {} | {} | {:.3} |\n",
            solved.status, solved.gap, solved.variables, solved.constraints, solved.seconds
        );
    }
    let terrain_sized = Problem::from_table(
        &bitsearch_fixtures::sensitivity_table(2, 255, &[2, 4, 8], 1),
        &protect,
        LossBasis::Decoupled,
    )?;
    let sweep: Sweep = "avg-bits=2.5..8:50".parse()?;
    let started = Instant::now();
    let solved = pareto::run(&terrain_sized, &sweep, &SolveOptions::default());
    let seconds = started.elapsed().as_secs_f64();
    let optimal = solved.iter().filter(|(_, _, s)| s.status == Status::Optimal).count();
    table += &format!(
        "| 255 layers × 3 bits, 50-point sweep | {sweep_text} | {optimal}/{} optimal | - | {} | {} | {seconds:.3} |\n",
        solved.len(),
        solved.first().map_or(0, |(_, _, s)| s.variables),
        solved.first().map_or(0, |(_, _, s)| s.constraints),
        sweep_text = "avg-bits=2.5..8:50",
    );
    Ok(common::publish("solver.md", &table)?)
}
