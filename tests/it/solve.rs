//! `bitsearch solve` end to end: a sensitivity run on a tiny UNet, then plans whose budget use
//! is recomputed here from the plan's bits and the table's layer sizes, an infeasible budget,
//! and a Pareto sweep.

use crate::common::{assert_clean_failure, assert_refused, assert_success, bitsearch, tiny_table, tiny_unet};
use bitsearch_records::{Plan, PredictionFit, SensitivityTable, ShrinkRound, ShrinkSearch};
use bitsearch_types::Role;
use std::collections::HashMap;
use std::path::Path;

fn sensitivity(dir: &Path) -> std::path::PathBuf {
    tiny_table(dir).1
}

/// (avg-bits of the quantized layers, weight bytes) of a plan, from its bits and the table.
fn usage_by_hand(plan: &Plan, table: &SensitivityTable) -> (f64, f64) {
    let bytes: HashMap<(&str, u32), u64> =
        table.rows.iter().map(|r| ((r.layer.name.as_str(), r.weight.bits()), r.weight_bytes)).collect();
    let (mut bits, mut params, mut memory) = (0.0, 0.0, 0.0);
    for layer in &plan.layers {
        let w = layer.weights[0].bits();
        if layer.protected {
            assert_eq!(w, 32);
            memory += 4.0 * layer.layer.params as f64;
            continue;
        }
        bits += (layer.layer.params * u64::from(w)) as f64;
        params += layer.layer.params as f64;
        memory += bytes[&(layer.layer.name.as_str(), w)] as f64;
    }
    (bits / params, memory)
}

#[test]
fn plans_respect_their_budgets_and_beat_uniform_bits() {
    let dir = tempfile::tempdir().unwrap();
    let table_path = sensitivity(dir.path());
    let table = SensitivityTable::read(&table_path).unwrap();
    let plan_path = dir.path().join("plan.yaml");
    let solve = |budgets: &[&str]| {
        let mut args =
            vec!["solve", "--sensitivity", table_path.to_str().unwrap(), "--out", plan_path.to_str().unwrap()];
        for b in budgets {
            args.extend(["--budget", b]);
        }
        bitsearch(&args)
    };
    let output = solve(&["avg-bits=4.0"]);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let plan = Plan::read(&plan_path).unwrap();
    assert_eq!(plan.solver.status, "optimal");
    assert_eq!(plan.source.sensitivity_sha256, bitsearch_types::sha256_file(&table_path).unwrap());
    let (avg_bits, memory) = usage_by_hand(&plan, &table);
    assert!((3.98 - 1e-9..=4.0 + 1e-9).contains(&avg_bits), "avg bits {avg_bits}");
    assert!((plan.summary.bytes - memory).abs() < 0.5, "{} vs {memory}", plan.summary.bytes);
    // The uniform 4-bit plan meets the same budget, so the optimum can only be better.
    let uniform: f64 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("uniform-W4:"))
        .and_then(|l| l.split("objective ").nth(1)?.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no uniform-W4 line in {stdout}"));
    assert!(plan.prediction.objective < uniform, "{} vs uniform {uniform}", plan.prediction.objective);
    assert!(
        plan.layers.iter().any(|l| l.weights[0].bits() == 2) && plan.layers.iter().any(|l| l.weights[0].bits() == 8),
        "a mixed plan"
    );

    // Two budgets at once (the memory of the 4-bit plan binds a 5-bit one): both hold.
    let limit_bytes = memory;
    let output = solve(&["avg-bits=5.0", &format!("memory={limit_bytes}B")]);
    assert_success(&output);
    let plan = Plan::read(&plan_path).unwrap();
    let (avg_bits, memory) = usage_by_hand(&plan, &table);
    assert!(avg_bits <= 5.0 + 1e-9 && memory <= limit_bytes + 1e-6, "{avg_bits} bits, {memory} bytes");

    // An impossible budget: a clear error with the smallest feasible one, and no plan.
    std::fs::remove_file(&plan_path).unwrap();
    assert_refused(&solve(&["avg-bits=1.5"]), &["infeasible", "smallest feasible avg-bits budget is 2.0000bits"]);
    assert!(!plan_path.exists());
}

#[test]
fn a_sweep_writes_plans_and_the_frontier() {
    let dir = tempfile::tempdir().unwrap();
    let table_path = sensitivity(dir.path());
    let out = dir.path().join("sweep");
    let args = [
        "solve",
        "--sensitivity",
        table_path.to_str().unwrap(),
        "--sweep",
        "avg-bits=2..8:5",
        "--out",
        out.to_str().unwrap(),
    ];
    let output = bitsearch(&args);
    assert_success(&output);
    let csv = std::fs::read_to_string(out.join("frontier.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("kind,plan,resource,budget,objective"), "{}", lines[0]);
    let ilp: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("ilp,")).collect();
    assert_eq!(ilp.len(), 5);
    assert_eq!(lines.iter().filter(|l| l.starts_with("uniform,")).count(), 3);
    // More budget never predicts a worse objective.
    let objective = |l: &str| l.split(',').nth(4).unwrap().parse::<f64>().unwrap();
    assert!(ilp.windows(2).all(|w| objective(w[1]) <= objective(w[0]) + 1e-12), "{csv}");
    assert!(out.join("plan_004.yaml").is_file() && out.join("frontier.parquet").is_file());
}

#[test]
fn tables_with_holes_or_nan_are_refused_by_layer() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = bitsearch_fixtures::sensitivity_table(4, 6, &[2, 4, 8], 1);
    let path = dir.path().join("t.parquet");
    let solve = |path: &Path| {
        bitsearch(&[
            "solve",
            "--sensitivity",
            path.to_str().unwrap(),
            "--budget",
            "4bits",
            "--out",
            dir.path().join("p.yaml").to_str().unwrap(),
        ])
    };
    let removed = table.rows.iter().position(|r| r.layer.name == "layer_0003" && r.weight.bits() == 4).unwrap();
    let mut holed = table.clone();
    holed.rows.remove(removed);
    holed.write(&path).unwrap();
    assert_clean_failure(&solve(&path), &["layer 'unet/layer_0003'", "no row for W4AF"]);
    table.rows[removed].sqnr_db = f64::NAN;
    table.write(&path).unwrap();
    assert_clean_failure(&solve(&path), &["t.parquet", &format!("rows[{removed}].sqnr_db: is NaN")]);
    std::fs::write(&path, b"garbage").unwrap();
    assert_clean_failure(&solve(&path), &["t.parquet", "not a Parquet file"]);
}

#[test]
fn a_table_without_some_of_its_runs_layers_is_refused_unless_partial_is_allowed() {
    // A shard's table: every probe of two layers absent, the run's probe count unchanged.
    let dir = tempfile::tempdir().unwrap();
    let mut table = bitsearch_fixtures::sensitivity_table(5, 6, &[4, 8], 1);
    let before = table.rows.len();
    table.rows.retain(|r| !["layer_0001", "layer_0004"].contains(&r.layer.name.as_str()));
    let missing = before - table.rows.len();
    let path = dir.path().join("shard.parquet");
    table.write(&path).unwrap();
    let out = dir.path().join("p.yaml");
    let solve = |extra: &[&str]| {
        let mut args = vec!["solve", "--sensitivity", path.to_str().unwrap(), "--budget", "6bits"];
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        bitsearch(&args)
    };
    let expected = format!("{missing} of the run's {before} probes are missing");
    assert_clean_failure(&solve(&[]), &["shard.parquet", &expected, "--allow-partial"]);
    assert!(!out.exists(), "a refused table writes no plan");
    assert_success(&solve(&["--allow-partial"]));
    let plan = Plan::read(&out).unwrap();
    assert!(plan.layers.iter().all(|l| !["layer_0001", "layer_0004"].contains(&l.layer.name.as_str())));
}

#[test]
fn step_aware_tables_give_bits_per_step_group_within_the_bops_budget() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let table_path = dir.path().join("s.parquet");
    let args = ["--w-bits", "2,8", "--steps", "4", "--step-groups", "2", "--device", "cpu"];
    let mut sensitivity = vec!["sensitivity", model.to_str().unwrap(), "--out", table_path.to_str().unwrap()];
    sensitivity.extend(args);
    assert_success(&bitsearch(&sensitivity));
    let plan_path = dir.path().join("plan.yaml");
    let output = bitsearch(&[
        "solve",
        "--sensitivity",
        table_path.to_str().unwrap(),
        "--budget",
        "bops=50%",
        "--out",
        plan_path.to_str().unwrap(),
    ]);
    assert_success(&output);
    let plan = Plan::read(&plan_path).unwrap();
    assert_eq!(plan.step_groups, vec![[0, 1], [2, 3]]);
    let table = SensitivityTable::read(&table_path).unwrap();
    let macs: HashMap<&str, u64> =
        table.rows.iter().map(|r| (r.layer.name.as_str(), r.layer.macs.unwrap_or(0))).collect();
    // BOPs by hand: each step group runs two steps.
    let bops: f64 = plan
        .layers
        .iter()
        .map(|l| {
            l.weights
                .iter()
                .zip(&l.a_bits)
                .map(|(w, a)| (macs[l.layer.name.as_str()] * u64::from(w.bits() * a) * 2) as f64)
                .sum::<f64>()
        })
        .sum();
    let budget = &plan.budgets[0];
    assert!(bops <= budget.limit * (1.0 + 1e-12), "{bops} > {}", budget.limit);
    assert!((bops - budget.used).abs() <= 1e-9 * bops);
    assert!(plan.layers.iter().all(|l| l.weights.len() == 2));
}

#[test]
fn records_of_an_older_bitsearch_are_bad_input_naming_the_command_to_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let mut table = bitsearch_fixtures::sensitivity_table(1, 4, &[4, 8], 1);
    table.meta.format = 1;
    table.write(Path::new(&path("old.parquet"))).unwrap();
    let solve =
        bitsearch(&["solve", "--sensitivity", &path("old.parquet"), "--budget", "6bits", "--out", &path("p.yaml")]);
    assert_clean_failure(&solve, &["old.parquet", "sensitivity table format 1", "rerun `bitsearch sensitivity`"]);
    std::fs::write(path("old.yaml"), "bitsearch_plan: 1\nlayers: []\n").unwrap();
    let report = bitsearch(&["report", "--plan", &path("old.yaml"), "--out", &path("report")]);
    assert_clean_failure(&report, &["old.yaml", "plan format 1", "rerun `bitsearch solve`"]);
}

#[test]
fn greedy_and_uniform_plans_are_baselines_in_the_same_format() {
    let dir = tempfile::tempdir().unwrap();
    let table_path = sensitivity(dir.path());
    let table = SensitivityTable::read(&table_path).unwrap();
    let table_arg = table_path.to_str().unwrap();
    let plan = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["solve", "--sensitivity", table_arg, "--out", out.to_str().unwrap()];
        args.extend(extra);
        assert_success(&bitsearch(&args));
        Plan::read(&out).unwrap()
    };
    let greedy = plan("greedy.yaml", &["--method", "greedy", "--budget", "avg-bits=5"]);
    let exact = plan("ilp.yaml", &["--budget", "avg-bits=5", "--fill", "0"]);
    assert!(greedy.solver.name.starts_with("greedy") && greedy.solver.status == "greedy");
    assert!(usage_by_hand(&greedy, &table).0 <= 5.0 + 1e-9);
    assert!(exact.prediction.objective <= greedy.prediction.objective + 1e-12);

    let uniform = plan("uniform.yaml", &["--uniform", "4"]);
    assert!(uniform.budgets.is_empty());
    assert!(
        uniform.layers.iter().filter(|l| !l.protected).all(|l| l.weights == [bitsearch_types::WeightFormat::int(4)])
    );
    assert_eq!(usage_by_hand(&uniform, &table).0, 4.0);

    let out = dir.path().join("x.yaml");
    let two = ["avg-bits=5", "memory=90%"].map(|b| ["--budget", b]).concat();
    let mut args = vec!["solve", "--sensitivity", table_arg, "--method", "greedy", "--out", out.to_str().unwrap()];
    args.extend(two);
    assert_clean_failure(&bitsearch(&args), &["budget", "exactly one budget"]);
    let conflict = ["solve", "--sensitivity", table_arg, "--uniform", "4", "--budget", "4bits", "--out", "x.yaml"];
    assert_eq!(bitsearch(&conflict).status.code(), Some(2));
}

/// SQNR of `plans` simulated in float on `seeds` of the tiny table's items, as `eval` measures it.
fn simulated_sqnr(model: &Path, plans: &[&Path], seeds: &str, dir: &Path) -> Vec<f64> {
    let record = dir.join("eval.parquet");
    let mut args = vec!["eval", model.to_str().unwrap(), "--seeds", seeds, "--repeats", "0", "--device", "cpu"];
    for plan in plans {
        args.extend(["--simulate", plan.to_str().unwrap()]);
    }
    args.extend(["--out", record.to_str().unwrap()]);
    assert_success(&bitsearch(&args));
    bitsearch_records::read_evals(&record).unwrap().1.iter().map(|r| r.sqnr_db).collect()
}

#[test]
fn a_target_search_finds_a_plan_that_measures_the_target_and_is_smaller_than_uniform() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table) = tiny_table(dir.path());
    let t = table.to_str().unwrap();
    let uniform = dir.path().join("uniform-8.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", t, "--uniform", "8", "--out", uniform.to_str().unwrap()]));
    let seeds = "0,1,2,3";
    // A target below what uniform W8 measures, so that something smaller meets it.
    let w8 = simulated_sqnr(&model, &[&uniform], seeds, dir.path())[0];
    let target = format!("sqnr={:.2}dB", w8 - 12.0);
    let plan_path = dir.path().join("target.yaml");
    let p = plan_path.to_str().unwrap();
    let args = ["solve", "--sensitivity", t, "--target", &target, "--calibration-seeds", seeds, "--out", p];
    let stdout = assert_success(&bitsearch(&args));
    assert!(stdout.contains("rounds (target"), "{stdout}");
    let plan = Plan::read(&plan_path).unwrap();
    let search = plan.target.as_ref().expect("the plan records its rounds");
    let chosen = &search.rounds[search.chosen];
    assert!(chosen.meets && chosen.measured.sqnr_db >= w8 - 12.0, "{chosen:?}");
    // Every round that met the target is at least as large as the chosen one.
    assert!(search.rounds.iter().filter(|r| r.meets).all(|r| r.bytes >= chosen.bytes));
    let w8_bytes = Plan::read(&uniform).unwrap().summary.bytes;
    assert!(plan.summary.bytes < w8_bytes, "{} vs uniform W8 {w8_bytes} (W8 {w8} dB): {stdout}", plan.summary.bytes);
    // The round's measurement is what `eval` measures of the plan on the same items.
    let measured = simulated_sqnr(&model, &[&plan_path], seeds, dir.path())[0];
    assert!((measured - chosen.measured.sqnr_db).abs() < 1e-6, "{measured} vs {}", chosen.measured.sqnr_db);

    // A target no plan reaches is refused with the best measured value.
    let args = ["solve", "--sensitivity", t, "--target", "sqnr=150dB", "--rounds", "3", "--out", p];
    assert_refused(&bitsearch(&args), &["no plan met sqnr=150dB", "best measured plan"]);
    let args = ["solve", "--sensitivity", t, "--target", "caption=0.9", "--rounds", "1", "--out", p];
    assert_clean_failure(&bitsearch(&args), &["caption"]);
}

#[test]
fn a_shrinkage_search_keeps_the_most_shrunk_plan_within_noise_of_the_best_on_fresh_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table) = tiny_table(dir.path());
    let plan_path = dir.path().join("shrunk.yaml");
    let (t, p) = (table.to_str().unwrap(), plan_path.to_str().unwrap());
    let seeds = "7,8";
    let args = ["solve", "--sensitivity", t, "--budget", "4bits", "--shrink", "search", "--calibration-seeds", seeds];
    let stdout = assert_success(&bitsearch(&[&args[..], &["--out", p]].concat()));
    assert!(stdout.contains("shrinkages (measured on the selection items;"), "{stdout}");
    let plan = Plan::read(&plan_path).unwrap();
    let search = plan.shrink_search.as_ref().expect("the plan records the shrinkages");
    assert_eq!(search.rounds.iter().map(|r| r.shrink).collect::<Vec<_>>(), [0.0, 0.25, 0.5, 0.75, 1.0]);
    assert!(search.items.starts_with("selection items: seeds [7, 8]"), "{}", search.items);
    let chosen = assert_one_standard_error_rule(search, "4bits");
    assert!(search.rounds.iter().all(|r| (3.98 - 1e-9..=4.0 + 1e-9).contains(&r.avg_bits)), "{search:?}");
    assert_eq!(plan.prediction.shrink, chosen.shrink);
    // The chosen round's measurement is what `eval` measures of the written plan on those seeds.
    let measured = simulated_sqnr(&model, &[&plan_path], seeds, dir.path())[0];
    assert!((measured - chosen.measured.sqnr_db).abs() < 1e-6, "{measured} vs {}", chosen.measured.sqnr_db);

    // A sweep searches every budget's shrinkage.
    let sweep = dir.path().join("sweep");
    let s = sweep.to_str().unwrap();
    let args = ["solve", "--sensitivity", t, "--sweep", "avg-bits=3..5:2", "--shrink", "search", "--out", s];
    assert_success(&bitsearch(&args));
    for name in ["plan_000.yaml", "plan_001.yaml"] {
        let plan = Plan::read(&sweep.join(name)).unwrap();
        let search = plan.shrink_search.as_ref().expect("each plan records its shrinkages");
        assert_one_standard_error_rule(search, name);
        assert!(search.rounds.iter().all(|r| (r.avg_bits - plan.summary.avg_bits).abs() < 0.03), "{name}");
    }

    // A search compares plans under budgets: a target or a uniform plan takes a fixed shrinkage.
    let args = ["solve", "--sensitivity", t, "--shrink", "search", "--target", "sqnr=20dB", "--out", p];
    assert_clean_failure(&bitsearch(&args), &["shrink", "--budget"]);
    let args = ["solve", "--sensitivity", t, "--shrink", "search", "--uniform", "4", "--out", p];
    assert_clean_failure(&bitsearch(&args), &["shrink", "--budget"]);
    let args = ["solve", "--sensitivity", t, "--budget", "4bits", "--shrink", "1.5", "--out", p];
    assert_clean_failure(&bitsearch(&args), &["1.5", "fraction"]);
}

/// The chosen round measures within its standard error of the best (SQNR: the tiny UNet's
/// losses are decoupled), every larger shrinkage does not, and every round's error was read.
#[test]
fn a_fit_on_the_selection_items_moves_the_predictions_and_not_the_plans() {
    let dir = tempfile::tempdir().unwrap();
    let (_, table) = tiny_table(dir.path());
    let fit_path = dir.path().join("prediction-fit.yaml");
    let (t, f) = (table.to_str().unwrap(), fit_path.to_str().unwrap());
    let fit_args = ["solve", "--sensitivity", t, "--fit-prediction", "--calibration-seeds", "7,8", "--out", f];
    let stdout = assert_success(&bitsearch(&[&fit_args[..], &["--sweep", "avg-bits=2.2..8:4"]].concat()));
    assert!(stdout.contains("fitted on") && stdout.contains("SQNR: "), "{stdout}");
    let fit = PredictionFit::read(&fit_path).unwrap();
    assert!(fit.items.starts_with("selection items: seeds [7, 8]"), "{}", fit.items);
    assert!(fit.plans.len() >= 2 && fit.curves.sqnr.is_some(), "{fit:?}");

    // With and without the fit: the same plan, the prediction through the fit, the fit named.
    let (plain, fitted) = (dir.path().join("plain.yaml"), dir.path().join("fitted.yaml"));
    let solve = ["solve", "--sensitivity", t, "--budget", "4bits", "--out"];
    assert_success(&bitsearch(&[&solve[..], &[plain.to_str().unwrap()]].concat()));
    let with_fit = [fitted.to_str().unwrap(), "--prediction-fit", f];
    let stdout = assert_success(&bitsearch(&[&solve[..], &with_fit].concat()));
    let (plain, fitted) = (Plan::read(&plain).unwrap(), Plan::read(&fitted).unwrap());
    assert_eq!(plain.layers, fitted.layers);
    let used = fitted.prediction.fit.as_ref().expect("the plan names its fit");
    assert_eq!(used.sha256, bitsearch_types::sha256_file(&fit_path).unwrap());
    assert_eq!(used.additive_sqnr_db, plain.prediction.sqnr_db);
    assert_eq!(fitted.prediction.sqnr_db, fit.curves.sqnr_db(plain.prediction.sqnr_db));
    assert!(stdout.contains(&format!("denoiser SQNR {:.2} dB", fitted.prediction.sqnr_db)), "{stdout}");

    // A fit of another table, a damaged fit, too many budgets, a searched shrinkage: refused.
    let text = std::fs::read_to_string(&fit_path).unwrap();
    let other = text.replace(&fit.sensitivity_sha256, &"0".repeat(64));
    let damaged = text.replacen("    knots:\n    - - ", "    knots:\n    - - .nan\n      - 0.0\n    - - ", 1);
    for (name, text, expected) in [
        ("other.yaml", other, "sensitivity_sha256: fitted on another table"),
        ("damaged.yaml", damaged, "curves.sqnr.knots[0]: is NaN"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let args = [&solve[..], &["p.yaml", "--prediction-fit", path.to_str().unwrap()]].concat();
        assert_clean_failure(&bitsearch(&args), &[name, expected]);
    }
    assert_clean_failure(
        &bitsearch(&[&fit_args[..], &["--sweep", "avg-bits=2.2..8:9"]].concat()),
        &["sweep: 9 budgets"],
    );
    let search = [&fit_args[..], &["--sweep", "avg-bits=2.2..8:4", "--shrink", "search"]].concat();
    assert_clean_failure(&bitsearch(&search), &["shrink", "fixed shrinkage"]);
}

fn assert_one_standard_error_rule<'s>(search: &'s ShrinkSearch, what: &str) -> &'s ShrinkRound {
    let best = search.rounds.iter().map(|r| r.measured.sqnr_db).fold(f64::NEG_INFINITY, f64::max);
    let chosen = &search.rounds[search.chosen];
    assert!(best - chosen.measured.sqnr_db <= chosen.below_best_se_db + 1e-9, "{what}: {search:?}");
    for r in search.rounds.iter().filter(|r| r.shrink > chosen.shrink) {
        assert!(best - r.measured.sqnr_db > r.below_best_se_db, "{what}: {search:?}");
    }
    assert!(search.rounds.iter().all(|r| r.below_best_se_db.is_finite()), "{what}: {search:?}");
    chosen
}

#[test]
fn tied_layers_take_one_precision() {
    let dir = tempfile::tempdir().unwrap();
    let table = sensitivity(dir.path());
    let plan_path = dir.path().join("plan.yaml");
    let (t, p) = (table.to_str().unwrap(), plan_path.to_str().unwrap());
    let args = ["solve", "--sensitivity", t, "--budget", "3bits", "--tie", "attn_q+attn_k+attn_v", "--out", p];
    assert_success(&bitsearch(&args));
    let plan = Plan::read(&plan_path).unwrap();
    let roles = [Role::AttnQ, Role::AttnK, Role::AttnV];
    let projections: Vec<&bitsearch_records::PlanLayer> =
        plan.layers.iter().filter(|l| roles.contains(&l.layer.role)).collect();
    assert!(projections.len() >= 3, "the tiny UNet has attention projections");
    for run in projections.chunks(3) {
        assert!(
            run.iter().all(|l| l.weights == run[0].weights),
            "{:?}",
            run.iter().map(|l| &l.weights).collect::<Vec<_>>()
        );
    }
    let args = ["solve", "--sensitivity", t, "--budget", "3bits", "--tie", "attn_q+nothing", "--out", p];
    assert_clean_failure(&bitsearch(&args), &["tie", "nothing"]);
}
