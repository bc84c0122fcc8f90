//! Tables at the edges of what records allow — lossless (+∞ dB) and hopeless (−∞ dB) probes,
//! ±1e308 metrics, zero and 1e308 image MSE, a single row, layers of 2^40 parameters — solve to
//! plans within their budgets with finite objectives, or fail with a typed error naming the
//! table or layer; never a panic or a HiGHS error.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_records::{FrontierPoint, Plan, ProbeRow, SensitivityTable, Sweep};
use bitsearch_solver::{DEFAULT_PROTECT, LossBasis, Problem, SolveOptions, SolverError, pareto, plan, solve};
use std::path::Path;

/// `table` written and read back, so the records' own checks have accepted every value.
fn legal(table: &SensitivityTable, dir: &Path) -> (SensitivityTable, std::path::PathBuf) {
    let path = dir.join("t.parquet");
    table.write(&path).unwrap();
    (SensitivityTable::read(&path).unwrap(), path)
}

/// Every row of layer `l` at `w_bits` changed by `change`.
fn set(table: &mut SensitivityTable, l: usize, w_bits: u32, change: impl Fn(&mut ProbeRow)) {
    let name = format!("layer_{l:04}");
    table.rows.iter_mut().filter(|r| r.layer.name == name && r.weight.bits() == w_bits).for_each(change);
}

fn protect(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

/// A JSON round trip that keeps every number (NaN as NaN).
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

/// Solves `table` under each budget on both loss bases; every plan meets its budgets with a
/// finite objective and survives JSON, and so do the sweep's and the uniform frontier points.
fn solves_within_budgets(table: &SensitivityTable, path: &Path, protect: &[String], budgets: &[&str]) {
    for basis in [LossBasis::Decoupled, LossBasis::Image] {
        let problem = Problem::from_table(table, protect, basis).unwrap();
        for budget in budgets {
            let options = SolveOptions { budgets: vec![budget.parse().unwrap()], ..Default::default() };
            let solved = solve(&problem, &options).unwrap_or_else(|e| panic!("{basis:?} {budget}: {e}"));
            assert!(solved.evaluation.objective.is_finite(), "{basis:?} {budget}: {:?}", solved.evaluation);
            let plan: Plan = plan(&problem, &solved, &options, table, path).unwrap();
            for limit in &plan.budgets {
                assert!(limit.used <= limit.limit * (1.0 + 1e-9), "{basis:?} {budget}: {limit:?}");
            }
            round_trips(&plan);
            let yaml = path.with_extension("yaml");
            plan.write(&yaml).unwrap();
            let back = Plan::read(&yaml).unwrap_or_else(|e| panic!("{basis:?} {budget}: {e}"));
            // Paths are written relative to the plan; the numbers must come back as they were.
            let numbers = |p: &Plan| serde_json::to_string(&(&p.prediction, &p.budgets, &p.summary)).unwrap();
            assert_eq!(numbers(&back), numbers(&plan), "{basis:?} {budget}");
        }
        let sweep: Sweep = "avg-bits=3..8:3".parse().unwrap();
        let mut points: Vec<FrontierPoint> = pareto::run(&problem, &sweep, &SolveOptions::default())
            .iter()
            .map(|(i, b, s)| {
                assert!(s.evaluation.objective.is_finite(), "{basis:?} {b}");
                pareto::point(
                    bitsearch_records::PointKind::Ilp,
                    format!("plan_{i}"),
                    sweep.resource,
                    s.limits[0].limit,
                    &s.evaluation,
                    s.status,
                )
            })
            .collect();
        assert!(!points.is_empty(), "{basis:?}: some budget of the sweep is met");
        points.extend(pareto::uniform_points(&problem, sweep.resource, 1.0));
        points.iter().for_each(round_trips);
    }
}

#[test]
fn infinite_and_huge_metrics_solve_to_finite_objectives() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = bitsearch_fixtures::sensitivity_table(7, 8, &[2, 4, 8], 2);
    // Layer 2 lossless everywhere; layer 3 hopeless at 2 bits; layer 4 at the edges of f64 at
    // 2 and 4 bits; layer 5 an image MSE of 1e308 at 2 bits.
    for w in [2, 4, 8] {
        set(&mut table, 2, w, |r| (r.sqnr_db, r.psnr_db, r.mse) = (f64::INFINITY, f64::INFINITY, 0.0));
    }
    set(&mut table, 3, 2, |r| (r.sqnr_db, r.psnr_db, r.mse) = (f64::NEG_INFINITY, f64::NEG_INFINITY, 1e308));
    set(&mut table, 4, 2, |r| (r.sqnr_db, r.psnr_db, r.mse) = (-1e308, -1e308, 1e308));
    set(&mut table, 4, 4, |r| (r.sqnr_db, r.psnr_db, r.mse) = (1e308, 1e308, 0.0));
    set(&mut table, 5, 2, |r| (r.mse, r.psnr_db) = (1e308, -1e308));
    let (table, path) = legal(&table, dir.path());
    solves_within_budgets(&table, &path, &protect(&DEFAULT_PROTECT), &["avg-bits=5", "memory=40%", "bops=40%"]);
}

#[test]
fn a_lossless_table_predicts_infinite_sqnr_that_survives_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = bitsearch_fixtures::sensitivity_table(8, 5, &[4, 8], 1);
    table
        .rows
        .iter_mut()
        .for_each(|r| (r.sqnr_db, r.psnr_db, r.mse, r.ssim) = (f64::INFINITY, f64::INFINITY, 0.0, 1.0));
    let (table, path) = legal(&table, dir.path());
    solves_within_budgets(&table, &path, &protect(&DEFAULT_PROTECT), &["avg-bits=4", "memory=60%"]);
}

#[test]
fn a_layer_hopeless_at_every_width_is_a_typed_error_naming_it() {
    let mut table = bitsearch_fixtures::sensitivity_table(9, 6, &[4, 8], 1);
    for w in [4, 8] {
        set(&mut table, 3, w, |r| {
            (r.sqnr_db, r.psnr_db, r.mse) = (f64::NEG_INFINITY, f64::NEG_INFINITY, f64::INFINITY)
        });
    }
    for basis in [LossBasis::Decoupled, LossBasis::Image] {
        match Problem::from_table(&table, &protect(&DEFAULT_PROTECT), basis) {
            Err(SolverError::Layer { layer, message }) => {
                assert!(layer.contains("layer_0003") && message.contains("protect the layer"), "{layer}: {message}")
            }
            other => panic!("{basis:?}: {other:?}"),
        }
    }
}

#[test]
fn a_single_row_table_solves_or_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (table, path) = legal(&bitsearch_fixtures::sensitivity_table(10, 1, &[4], 1), dir.path());
    assert_eq!(table.rows.len(), 1);
    solves_within_budgets(&table, &path, &[], &["avg-bits=4", "memory=20%", "bops=50%"]);
    // The one layer is an embedding, protected by default: nothing is left to quantize (and no
    // quantized parameters for an avg-bits row to divide by, which HiGHS refused).
    let problem = Problem::from_table(&table, &protect(&DEFAULT_PROTECT), LossBasis::Decoupled).unwrap();
    let options = SolveOptions { budgets: vec!["avg-bits=4".parse().unwrap()], ..Default::default() };
    match solve(&problem, &options) {
        Err(SolverError::Config { field, message }) => {
            assert!(field == "protect" && message.contains("nothing to quantize"), "{field}: {message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn layers_of_the_most_parameters_a_record_allows_solve() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = bitsearch_fixtures::sensitivity_table(11, 6, &[2, 4, 8], 2);
    let most = 1u64 << 40;
    for r in table.rows.iter_mut().filter(|r| ["layer_0002", "layer_0004"].contains(&r.layer.name.as_str())) {
        r.layer.params = most;
        r.layer.macs = Some(most << 20);
        r.weight_bytes = most * u64::from(r.weight.bits()) / 8 + 4;
    }
    let (table, path) = legal(&table, dir.path());
    solves_within_budgets(&table, &path, &protect(&DEFAULT_PROTECT), &["avg-bits=5", "memory=40%", "bops=40%"]);
}

#[test]
fn an_extreme_content_weight_is_refused_or_solved() {
    let table = bitsearch_fixtures::sensitivity_table(12, 8, &[2, 4, 8], 1);
    let problem = Problem::from_table(&table, &protect(&DEFAULT_PROTECT), LossBasis::Decoupled).unwrap();
    for weight in [1e300, 1e30, 1e12, 1e6, 1e-300] {
        let config = bitsearch_solver::SolveConfig {
            budgets: vec!["avg-bits=5".into()],
            content_weight: weight,
            ..Default::default()
        };
        match config.options() {
            Ok(options) => {
                let solved = solve(&problem, &options).unwrap_or_else(|e| panic!("{weight}: {e}"));
                assert!(solved.evaluation.objective.is_finite(), "{weight}");
            }
            Err(e) => assert!(matches!(e, SolverError::Config { .. }), "{weight}: {e}"),
        }
    }
}
