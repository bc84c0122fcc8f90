//! The integer program against exact answers found without it: exhaustive search on small
//! random instances (with step groups too), and a multiple-choice-knapsack dynamic program on
//! larger ones; every plan's budget use recomputed here from its bits and layer sizes.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_records::{Amount, Budget, Resource};
use bitsearch_solver::{
    LayerOptions, LossBasis, Method, Minimise, Precision, Problem, SolveOptions, SolverError, Status, solve, uniform,
};
use bitsearch_types::{Component, LayerInfo, MetricGroup, Role, WeightFormat};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BITS: [u32; 3] = [2, 4, 8];

/// A random problem: `layers` layers, the three weight bit-widths, `groups` step groups; losses
/// fall with bits (with noise, so the program has real trade-offs); a few layers are content.
fn random_problem(rng: &mut ChaCha8Rng, layers: usize, groups: usize) -> Problem {
    let layers = (0..layers)
        .map(|i| {
            let params: u64 = rng.random_range(1..=64);
            let base: f64 = rng.random_range(0.01..1.0);
            LayerOptions {
                layer: LayerInfo {
                    component: Component::Unet,
                    name: format!("l{i}"),
                    op: "Conv".into(),
                    role: Role::Conv,
                    group: if rng.random_bool(0.3) { MetricGroup::Content } else { MetricGroup::Quality },
                    params,
                    macs: Some(params * rng.random_range(1..=16)),
                    outputs: None,
                },
                protected: false,
                options: BITS.iter().map(|&w| Precision::plain(w, 32)).collect(),
                // Codes plus one f32 scale per layer.
                bytes: BITS.iter().map(|&w| (params * u64::from(w)).div_ceil(8) + 4).collect(),
                loss: BITS
                    .iter()
                    .map(|&w| (0..groups).map(|_| base * 4f64.powi(-(w as i32)) * rng.random_range(0.5..2.0)).collect())
                    .collect(),
                metric: vec![vec![0.0; groups]; BITS.len()],
                image_mse: vec![vec![0.0; groups]; BITS.len()],
            }
        })
        .collect::<Vec<_>>();
    let step_groups: Vec<[usize; 2]> = (0..groups).map(|g| [g, g]).collect();
    let scale = |group: MetricGroup| {
        let s: f64 = layers
            .iter()
            .filter(|l| l.layer.group == group)
            .map(|l| (0..groups).map(|g| l.loss.iter().map(|x| x[g]).fold(0.0, f64::max)).sum::<f64>())
            .sum();
        if s > 0.0 { s } else { 1.0 }
    };
    Problem {
        quality_scale: scale(MetricGroup::Quality),
        content_scale: scale(MetricGroup::Content),
        layers,
        steps_per_group: vec![1; groups],
        step_groups,
        ties: Vec::new(),
        basis: LossBasis::Decoupled,
        offset: Default::default(),
        shrunk: 0.0,
        fit: None,
    }
}

/// Memory, avg-bits and BOPs of an allocation given as bits per layer and group, recomputed
/// from the layer sizes (each distinct weight width stored once).
fn usage_by_hand(problem: &Problem, bits: &[Vec<u32>]) -> (f64, f64, f64) {
    let (mut memory, mut stored_bits, mut bops) = (0.0, 0.0, 0.0);
    for (layer, per_group) in problem.layers.iter().zip(bits) {
        let mut widths = per_group.clone();
        widths.sort_unstable();
        widths.dedup();
        for w in widths {
            memory += ((layer.layer.params * u64::from(w)).div_ceil(8) + 4) as f64;
            stored_bits += (layer.layer.params * u64::from(w)) as f64;
        }
        bops += per_group.iter().map(|&w| (layer.macs() * u64::from(w) * 32) as f64).sum::<f64>();
    }
    let params: u64 = problem.layers.iter().map(|l| l.layer.params).sum();
    (memory, stored_bits / params as f64, bops)
}

fn objective_by_hand(problem: &Problem, bits: &[Vec<u32>]) -> f64 {
    let mut total = 0.0;
    for (layer, per_group) in problem.layers.iter().zip(bits) {
        for (g, &w) in per_group.iter().enumerate() {
            let o = BITS.iter().position(|&b| b == w).unwrap();
            let scale =
                if layer.layer.group == MetricGroup::Content { problem.content_scale } else { problem.quality_scale };
            total += layer.loss[o][g] / scale;
        }
    }
    total
}

/// Every allocation of `problem`, as bits per layer and group.
fn all_allocations(problem: &Problem) -> Vec<Vec<Vec<u32>>> {
    let groups = problem.groups();
    let per_layer = BITS.len().pow(groups as u32);
    let total = per_layer.pow(problem.layers.len() as u32);
    (0..total)
        .map(|mut code| {
            problem
                .layers
                .iter()
                .map(|_| {
                    let mut c = code % per_layer;
                    code /= per_layer;
                    (0..groups)
                        .map(|_| {
                            let w = BITS[c % BITS.len()];
                            c /= BITS.len();
                            w
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn plan_bits(problem: &Problem, solved: &bitsearch_solver::Solved) -> Vec<Vec<u32>> {
    solved
        .assignment
        .iter()
        .zip(&problem.layers)
        .map(|(chosen, layer)| chosen.iter().map(|o| layer.options[o.unwrap()].w_bits()).collect())
        .collect()
}

fn options(budget: Budget, fill: f64) -> SolveOptions {
    SolveOptions { budgets: vec![budget], fill: Some(fill), ..Default::default() }
}

#[test]
fn the_program_finds_the_exhaustive_optimum() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in 0..40 {
        let groups = if case % 4 == 3 { 2 } else { 1 };
        let layers = if groups == 2 { rng.random_range(1..=4) } else { rng.random_range(1..=12) };
        let problem = random_problem(&mut rng, layers, groups);
        let resource = [Resource::Memory, Resource::AvgBits, Resource::Bops][case % 3];
        let full = problem.full_precision().get(resource);
        let cheapest = problem.evaluate(&problem.extreme(resource, false), 1.0).usage.get(resource);
        let dearest = problem.evaluate(&problem.extreme(resource, true), 1.0).usage.get(resource);
        let limit = rng.random_range(cheapest..=dearest);
        let fill = if case % 2 == 0 { 0.0 } else { 0.97 };
        let budget = Budget { resource, amount: Amount::OfFullPrecision(limit / full) };
        let solved = solve(&problem, &options(budget, fill)).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(solved.status, Status::Optimal);

        let pick = |u: (f64, f64, f64)| match resource {
            Resource::Memory => u.0,
            Resource::AvgBits => u.1,
            Resource::Bops => u.2,
        };
        let best_within = |lower: f64| {
            all_allocations(&problem)
                .into_iter()
                .filter(|bits| {
                    let used = pick(usage_by_hand(&problem, bits));
                    used <= limit * (1.0 + 1e-12) && used >= lower * (1.0 - 1e-12)
                })
                .map(|bits| objective_by_hand(&problem, &bits))
                .fold(f64::INFINITY, f64::min)
        };
        // The solver drops the lower bound when no plan lies between it and the limit.
        let mut lower = (fill * limit).min(dearest);
        let mut best = best_within(lower);
        if best.is_infinite() {
            lower = 0.0;
            best = best_within(0.0);
        }
        let bits = plan_bits(&problem, &solved);
        let found = objective_by_hand(&problem, &bits);
        assert!((found - best).abs() <= 1e-7 * best.max(1e-12), "case {case}: ILP {found} vs exhaustive {best}");
        assert!((solved.evaluation.objective - found).abs() <= 1e-9 * found.max(1e-12));
        // The plan's budget use, recomputed here, respects the limit.
        let used = pick(usage_by_hand(&problem, &bits));
        assert!(
            used <= limit * (1.0 + 1e-12) && used >= lower * (1.0 - 1e-12),
            "case {case}: {used} vs {lower}..{limit}"
        );
        assert!((solved.limits[0].used - used).abs() <= 1e-9 * used);
    }
}

/// The smallest memory (or mean bits, or BOPs) with the predicted objective under a cap — the program a quality
/// target solves — equals exhaustive search, with and without ties, with step groups too; tied
/// layers take one width in every group.
#[test]
fn the_smallest_plan_under_a_loss_cap_is_the_exhaustive_one_and_ties_hold() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for case in 0..40 {
        let groups = if case % 4 == 3 { 2 } else { 1 };
        let layers = if groups == 2 { rng.random_range(2..=4) } else { rng.random_range(2..=10) };
        let mut problem = random_problem(&mut rng, layers, groups);
        let tied = case % 2 == 1;
        if tied {
            problem.tie(&["l0+l1".to_string()]).unwrap();
            assert_eq!(problem.ties, vec![vec![0, 1]]);
        }
        let minimise = [Minimise::Memory, Minimise::AvgBits, Minimise::Bops][case % 3];
        let pick = |u: (f64, f64, f64)| match minimise {
            Minimise::AvgBits => u.1,
            Minimise::Bops => u.2,
            _ => u.0,
        };
        let lossless = problem.evaluate(&problem.least_loss(1.0), 1.0).objective;
        let worst = problem.evaluate(&problem.extreme(Resource::Memory, false), 1.0).objective;
        let cap = lossless + rng.random_range(0.0..1.0) * (worst - lossless);
        let options = SolveOptions { minimise, loss_cap: Some(cap), ..Default::default() };
        let solved = solve(&problem, &options).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(solved.status, Status::Optimal);
        let bits = plan_bits(&problem, &solved);
        let honours_ties = |bits: &[Vec<u32>]| !tied || bits[0] == bits[1];
        assert!(honours_ties(&bits), "case {case}: tie broken: {bits:?}");
        let best = all_allocations(&problem)
            .into_iter()
            .filter(|bits| honours_ties(bits) && objective_by_hand(&problem, bits) <= cap * (1.0 + 1e-9))
            .map(|bits| pick(usage_by_hand(&problem, &bits)))
            .fold(f64::INFINITY, f64::min);
        let found = pick(usage_by_hand(&problem, &bits));
        assert!((found - best).abs() <= 1e-9 * best, "case {case}: ILP {found} vs exhaustive {best}");
        assert!(objective_by_hand(&problem, &bits) <= cap * (1.0 + 1e-9));
    }
}

#[test]
fn a_cap_below_the_least_lossy_plan_is_refused_and_so_are_bad_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut problem = random_problem(&mut rng, 4, 1);
    let lossless = problem.evaluate(&problem.least_loss(1.0), 1.0).objective;
    let options = SolveOptions { minimise: Minimise::Memory, loss_cap: Some(lossless * 0.5), ..Default::default() };
    assert!(matches!(solve(&problem, &options), Err(SolverError::Unreachable { .. })));
    let uncapped = SolveOptions { minimise: Minimise::Memory, ..Default::default() };
    assert!(matches!(solve(&problem, &uncapped), Err(SolverError::Config { .. })));
    for bad in ["l0", "l0+nope", "conv+", "attn_q+attn_k"] {
        assert!(problem.tie(&[bad.to_string()]).is_err(), "{bad}");
    }
    problem.tie(&["l2+l3".to_string()]).unwrap();
    let greedy = SolveOptions {
        method: Method::Greedy,
        budgets: vec![Budget { resource: Resource::AvgBits, amount: Amount::Absolute(4.0) }],
        ..Default::default()
    };
    assert!(matches!(solve(&problem, &greedy), Err(SolverError::Config { .. })));
}

/// Minimum total loss with Σ params·bits ≤ capacity: the multiple-choice knapsack, exactly.
fn knapsack(problem: &Problem, capacity: usize) -> f64 {
    let mut best = vec![f64::INFINITY; capacity + 1];
    best[0] = 0.0;
    for (l, layer) in problem.layers.iter().enumerate() {
        let mut next = vec![f64::INFINITY; capacity + 1];
        for (used, &so_far) in best.iter().enumerate() {
            if !so_far.is_finite() {
                continue;
            }
            for (o, p) in layer.options.iter().enumerate() {
                let w = used + (layer.layer.params * u64::from(p.w_bits())) as usize;
                if w <= capacity {
                    let v = so_far + problem.cost(l, o, 0, 1.0);
                    if v < next[w] {
                        next[w] = v;
                    }
                }
            }
        }
        best = next;
    }
    best.into_iter().fold(f64::INFINITY, f64::min)
}

#[test]
fn the_program_matches_a_knapsack_dynamic_program_on_larger_instances() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for case in 0..6 {
        let problem = random_problem(&mut rng, 60, 1);
        let params: u64 = problem.layers.iter().map(|l| l.layer.params).sum();
        let avg_bits = rng.random_range(2.5..7.5);
        let budget = Budget { resource: Resource::AvgBits, amount: Amount::Absolute(avg_bits) };
        let solved = solve(&problem, &options(budget, 0.0)).unwrap();
        let capacity = (avg_bits * params as f64).floor() as usize;
        let exact = knapsack(&problem, capacity);
        assert!(
            (solved.evaluation.objective - exact).abs() <= 1e-7 * exact,
            "case {case}: {} vs {exact}",
            solved.evaluation.objective
        );
        assert!(solved.evaluation.usage.avg_bits <= avg_bits + 1e-12);
    }
}

#[test]
fn step_groups_let_a_layer_change_bits_and_pay_for_both_copies() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut problem = random_problem(&mut rng, 2, 2);
    // Layer 0 matters only during group 0, layer 1 only during group 1.
    for (l, quiet) in [(0, 1), (1, 0)] {
        for o in 0..BITS.len() {
            problem.layers[l].loss[o][quiet] *= 1e-12;
        }
    }
    let full = problem.full_precision().bops;
    // Enough BOPs for 8 bits in each layer's loud group and 2 bits in its quiet one.
    let bops: f64 = problem.layers.iter().map(|l| (l.macs() * 32 * (8 + 2)) as f64).sum();
    let budget = Budget { resource: Resource::Bops, amount: Amount::OfFullPrecision(bops / full) };
    let solved = solve(&problem, &options(budget, 0.0)).unwrap();
    let bits = plan_bits(&problem, &solved);
    assert_eq!(bits, vec![vec![8, 2], vec![2, 8]]);
    let (memory, _, _) = usage_by_hand(&problem, &bits);
    assert!((solved.evaluation.usage.memory - memory).abs() < 1e-9, "both copies of each weight are counted");
}

/// Under one budget on stored weights with step groups the program becomes a knapsack over each
/// layer's stored-width sets (solved there, or its bound prunes the options); a second budget
/// that binds nothing turns that off. Both must reach the same optimum, the first with fewer
/// variables.
#[test]
fn the_stored_width_sets_reach_the_optimum_of_the_whole_program() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for case in 0..6 {
        let problem = random_problem(&mut rng, 30, 2 + case % 3);
        let resource = [Resource::Memory, Resource::AvgBits][case % 2];
        let fraction = rng.random_range(0.15..0.4);
        let budget = Budget { resource, amount: Amount::OfFullPrecision(fraction) };
        let all_bops = Budget { resource: Resource::Bops, amount: Amount::OfFullPrecision(1.0) };
        let pruned = solve(&problem, &options(budget, 0.0)).unwrap_or_else(|e| panic!("case {case}: {e}"));
        let plain = SolveOptions { budgets: vec![budget, all_bops], ..options(budget, 0.0) };
        let whole = solve(&problem, &plain).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!((pruned.status, whole.status), (Status::Optimal, Status::Optimal), "case {case}");
        let (a, b) = (pruned.evaluation.objective, whole.evaluation.objective);
        assert!((a - b).abs() <= 1e-9 * b.max(1e-12), "case {case}: pruned {a} vs whole {b}");
        assert!(pruned.variables < whole.variables, "case {case}: {} vs {}", pruned.variables, whole.variables);
    }
}

#[test]
fn an_infeasible_budget_names_the_smallest_feasible_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let problem = random_problem(&mut rng, 5, 1);
    let budget = Budget { resource: Resource::AvgBits, amount: Amount::Absolute(1.5) };
    let error = solve(&problem, &options(budget, 0.0)).unwrap_err();
    assert!(matches!(error, SolverError::Infeasible { .. }));
    let message = error.to_string();
    assert!(message.contains("smallest feasible avg-bits budget is 2.0000bits"), "{message}");
}

#[test]
fn greedy_plans_meet_their_budget_never_beat_the_optimum_and_improve_with_budget() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for trial in 0..12 {
        let problem = random_problem(&mut rng, 12, 1 + trial % 2);
        for resource in [Resource::AvgBits, Resource::Memory, Resource::Bops] {
            let usage = |most: bool| problem.evaluate(&problem.extreme(resource, most), 1.0).usage.get(resource);
            let (least, most) = (usage(false), usage(true));
            let mut previous = f64::INFINITY;
            for fraction in [0.0, 0.2, 0.45, 0.7, 1.0] {
                let limit = least + fraction * (most - least);
                let budgets = vec![Budget { resource, amount: Amount::Absolute(limit) }];
                let greedy = SolveOptions { method: Method::Greedy, budgets: budgets.clone(), ..Default::default() };
                let greedy = solve(&problem, &greedy).unwrap();
                assert!(
                    greedy.limits[0].used <= limit * (1.0 + 1e-9),
                    "{resource}: {} > {limit}",
                    greedy.limits[0].used
                );
                let exact = SolveOptions { budgets, fill: Some(0.0), ..Default::default() };
                let exact = solve(&problem, &exact).unwrap();
                let (g, e) = (greedy.evaluation.objective, exact.evaluation.objective);
                assert!(e <= g + 1e-9, "trial {trial}, {resource} at {fraction}: the ILP {e} lost to greedy {g}");
                assert!(g <= previous + 1e-12, "trial {trial}, {resource}: more budget, worse greedy plan");
                previous = g;
            }
        }
    }
}

#[test]
fn a_uniform_plan_puts_every_layer_at_one_width() {
    let problem = random_problem(&mut ChaCha8Rng::seed_from_u64(5), 9, 2);
    let solved = uniform(&problem, 4, 1.0).unwrap();
    assert!(solved.assignment.iter().flatten().all(|o| o.is_some_and(|o| o == 1)), "option 1 is W4");
    assert_eq!(solved.evaluation.usage.avg_bits, 4.0);
    let message = uniform(&problem, 3, 1.0).unwrap_err().to_string();
    assert!(message.contains("layer 'unet/l0': the table has no W3 row"), "{message}");
}

#[test]
fn a_uniform_plan_rounds_to_nearest_unless_the_table_probed_gptq_alone() {
    let nearest = bitsearch_fixtures::sensitivity_table(3, 8, &[3, 4, 8], 1);
    let mut gptq = nearest.clone();
    for row in &mut gptq.rows {
        row.weight = row.weight.rounded(bitsearch_types::Rounding::Gptq).unwrap();
    }
    let mut both = nearest.clone();
    both.rows.extend(gptq.rows.iter().cloned());
    for (table, expected) in [(&gptq, bitsearch_types::Rounding::Gptq), (&both, bitsearch_types::Rounding::Nearest)] {
        let problem = Problem::from_table(table, &[], LossBasis::Decoupled).unwrap();
        let solved = uniform(&problem, 4, 1.0).unwrap();
        for (layer, chosen) in problem.layers.iter().zip(&solved.assignment) {
            let p = layer.options[chosen[0].expect("every layer quantized")];
            assert_eq!((p.w_bits(), p.weight.rounding()), (4, expected), "{}", layer.layer.name);
        }
    }
}

#[test]
fn the_program_takes_an_outlier_split_wherever_it_loses_less_at_the_same_cost() {
    // Split rows beside the W2 and W3 ones: better than plain on even layers, worse on odd ones.
    let mut table = bitsearch_fixtures::sensitivity_table(3, 24, &[2, 3, 4, 8], 1);
    let split: Vec<_> = table
        .rows
        .iter()
        .filter(|r| r.weight.bits() <= 3)
        .map(|r| {
            let even = r.layer.name.ends_with(['0', '2', '4', '6', '8']);
            let mut s = r.clone();
            s.weight = bitsearch_types::WeightFormat::Int {
                bits: r.weight.bits() as u8,
                split: true,
                group: None,
                rounding: bitsearch_types::Rounding::Nearest,
                rank: None,
            };
            s.sqnr_db += if even { 3.0 } else { -3.0 };
            s.ssim = if even { 1.0 - (1.0 - r.ssim) / 2.0 } else { 1.0 - (1.0 - r.ssim) * 2.0 };
            s
        })
        .collect();
    table.rows.extend(split);
    let problem = Problem::from_table(&table, &[], LossBasis::Decoupled).unwrap();
    let budget = Budget { resource: Resource::AvgBits, amount: Amount::Absolute(3.0) };
    let solved = solve(&problem, &options(budget, 0.0)).unwrap();
    let mut splits = 0;
    for (layer, chosen) in problem.layers.iter().zip(&solved.assignment) {
        let Some(o) = chosen[0] else { continue };
        let p = layer.options[o];
        let even = layer.layer.name.ends_with(['0', '2', '4', '6', '8']);
        // Same bits, same bytes: the program must take whichever of the two loses less.
        if p.w_bits() <= 3 {
            assert_eq!(p.weight.split(), even, "{} at {p}", layer.layer.name);
        } else {
            assert!(!p.weight.split());
        }
        splits += usize::from(p.weight.split());
    }
    assert!(splits > 0, "the 3-bit budget puts some even layer at 2 or 3 bits");
    // The plan records the split per step group; the uniform baseline never takes one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.parquet");
    table.write(&path).unwrap();
    let plan = bitsearch_solver::plan(&problem, &solved, &options(budget, 0.0), &table, &path).unwrap();
    let planned: Vec<bool> = plan.layers.iter().map(|l| l.weights[0].split()).collect();
    let chosen: Vec<bool> = problem
        .layers
        .iter()
        .zip(&solved.assignment)
        .map(|(l, c)| c[0].is_some_and(|o| l.options[o].weight.split()))
        .collect();
    assert_eq!(planned, chosen);
    let uniform = uniform(&problem, 3, 1.0).unwrap();
    assert!(
        problem.layers.iter().zip(&uniform.assignment).all(|(l, c)| c[0].is_none_or(|o| !l.options[o].weight.split()))
    );
}

#[test]
fn the_program_takes_a_low_rank_branch_only_where_it_wins_for_its_bits() {
    // Two 256×256 layers at W3, W3 with a rank-8 branch (8·512 float16 values: one more bit per
    // value, so as dear as W4), W4 and W8. The branch removes most of layer 0's error and little
    // of layer 1's.
    let w3r8 = WeightFormat::int(3).with_rank(Some(8)).unwrap();
    let formats = [WeightFormat::int(3), w3r8, WeightFormat::int(4), WeightFormat::int(8)];
    let layer = |i: usize, losses: [f64; 4]| {
        let info = LayerInfo {
            component: Component::Unet,
            name: format!("l{i}"),
            op: "Conv".into(),
            role: Role::Conv,
            group: MetricGroup::Quality,
            params: 256 * 256,
            macs: Some(256 * 256 * 64),
            outputs: Some(256),
        };
        let bytes = formats
            .iter()
            .map(|f| (info.params * f.container_bits()).div_ceil(8) + 256 * 4 + 2 * info.branch_values(f))
            .collect();
        LayerOptions {
            layer: info,
            protected: false,
            options: formats.iter().map(|&weight| Precision { weight, a_bits: 32 }).collect(),
            bytes,
            loss: losses.iter().map(|&l| vec![l]).collect(),
            metric: vec![vec![0.0]; 4],
            image_mse: vec![vec![0.0]; 4],
        }
    };
    let problem = Problem {
        layers: vec![layer(0, [1.0, 0.05, 0.5, 0.01]), layer(1, [1.0, 0.9, 0.2, 0.01])],
        step_groups: vec![[0, 0]],
        steps_per_group: vec![1],
        quality_scale: 2.0,
        content_scale: 1.0,
        ties: Vec::new(),
        basis: LossBasis::Decoupled,
        offset: Default::default(),
        shrunk: 0.0,
        fit: None,
    };
    assert_eq!(problem.layers[0].value_bits(1), 4.0);
    let usage = |a: &[[usize; 1]; 2]| problem.evaluate(&a.iter().map(|&[o]| vec![Some(o)]).collect(), 1.0).usage;
    // In bits and BOPs the branch costs what W4 costs; in bytes W3 takes W4's int4 container, so
    // the branch costs its own bytes on top.
    assert_eq!(usage(&[[1], [2]]).avg_bits, usage(&[[2], [2]]).avg_bits);
    assert_eq!(usage(&[[1], [2]]).bops, usage(&[[2], [2]]).bops);
    assert_eq!(usage(&[[1], [2]]).memory, usage(&[[2], [2]]).memory + 2.0 * 8.0 * 512.0);
    for resource in [Resource::AvgBits, Resource::Bops, Resource::Memory] {
        let limit = usage(&[[1], [2]]).get(resource) * 1.0001;
        let solved = solve(&problem, &options(Budget { resource, amount: Amount::Absolute(limit) }, 0.0)).unwrap();
        let chosen: Vec<WeightFormat> = (0..2).map(|l| formats[solved.assignment[l][0].unwrap()]).collect();
        assert_eq!(chosen, [w3r8, WeightFormat::int(4)], "under {resource:?}");
        assert!(solved.evaluation.usage.get(resource) <= limit);
    }
    // Without room for the branch's bits, layer 0 goes back to plain codes.
    let budget = Budget { resource: Resource::AvgBits, amount: Amount::Absolute(3.0) };
    let solved = solve(&problem, &options(budget, 0.0)).unwrap();
    assert!(solved.assignment.iter().all(|a| formats[a[0].unwrap()] == WeightFormat::int(3)));
}
