//! The allocation problem read off a sensitivity table: for every layer (and step group) the
//! precisions it may take, what each costs in memory and BOPs, and the loss each is predicted
//! to cause. Two bases: MixDQ's decoupled metrics turned into additive losses — quality layers
//! `10^(−SQNR/10)` (noise power relative to the signal, which adds up across layers when their
//! errors are independent), content layers `1 − SSIM` — or the final image's mean squared error
//! for every layer (which adds up the same way and predicts the image's PSNR).

pub use crate::layer_options::{LayerOptions, MAX_LOSS};
pub use crate::precision::{Precision, Variant};

use crate::error::{Result, SolverError};
use crate::layer_options::{check_complete, layer_options, metric_group, protected_layers};
use bitsearch_records::{BasePoint, Combination, ProbeRow, SensitivityTable};
use bitsearch_types::{LayerInfo, LossBasis, MetricGroup, Role};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Protect-list words for the first and last image-path layers (the model's input and output
/// convolutions, as found in graph order).
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";
/// ModelOpt's default: the model's input and output layers and the time/condition embeddings
/// stay in full precision.
pub const DEFAULT_PROTECT: [&str; 3] = [INPUT, OUTPUT, "embedding"];

/// Everything the integer program needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub layers: Vec<LayerOptions>,
    /// `[first, last]` step of each group, and how many steps each runs.
    pub step_groups: Vec<[usize; 2]>,
    pub steps_per_group: Vec<u64>,
    /// Loss of the group when every layer takes its worst finite option, so that both groups'
    /// losses are fractions of their worst and can be added.
    pub quality_scale: f64,
    pub content_scale: f64,
    /// Sets of layers (indices into `layers`) that must take the same precision in every group.
    pub ties: Vec<Vec<usize>>,
    pub basis: LossBasis,
    /// What the losses of a table probed around a base plan count too often (zero otherwise).
    pub offset: BaseOffset,
    /// How far the losses have been shrunk toward each layer's size's share ([`Problem::shrink`]).
    pub shrunk: f64,
    /// How the summed losses combine into predicted metrics (`solve --prediction-fit`); None:
    /// the additive prediction.
    pub fit: Option<AppliedFit>,
}

/// A fit of how single-layer losses combine, read from `file`, as a problem's predictions use it.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedFit {
    pub curves: Combination,
    pub file: PathBuf,
    pub sha256: String,
}

/// A table probed around a base plan (`sensitivity --base`) gives each layer's options the
/// base's loss plus the option's change from it. Summed over n layers the base is counted n
/// times; the prediction is the base plus every change, so n − 1 of them come off. The
/// program's objective keeps them (a constant does not move its optimum).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BaseOffset {
    pub quality: f64,
    pub content: f64,
    pub image_mse: f64,
}

impl Problem {
    /// Builds the problem from `table` with losses on `basis`; `protect` lists layer names,
    /// roles, `input` and `output`. A layer missing a precision that others have, or NaN
    /// metrics, is an error naming the layer.
    pub fn from_table(table: &SensitivityTable, protect: &[String], basis: LossBasis) -> Result<Self> {
        let step_groups = table.meta.step_groups.clone();
        if step_groups.is_empty() {
            return Err(SolverError::Table("the table's run metadata lists no step groups".into()));
        }
        let mut by_layer: Vec<(&LayerInfo, Vec<&ProbeRow>)> = Vec::new();
        for row in &table.rows {
            match by_layer
                .iter_mut()
                .find(|(layer, _)| layer.component == row.layer.component && layer.name == row.layer.name)
            {
                Some((_, rows)) => rows.push(row),
                None => by_layer.push((&row.layer, vec![row])),
            }
        }
        if by_layer.is_empty() {
            return Err(SolverError::Table("the table has no rows".into()));
        }
        let protected = protected_layers(&by_layer, protect)?;
        let mut layers = Vec::new();
        for ((layer, rows), protected) in by_layer.iter().zip(protected) {
            layers.push(layer_options(layer, rows, step_groups.len(), protected, basis)?);
        }
        check_complete(&layers)?;
        let scale = |group: MetricGroup| {
            let worst: f64 = layers
                .iter()
                .filter(|l| metric_group(basis, &l.layer) == group && !l.protected)
                .map(|l| {
                    (0..step_groups.len())
                        .map(|g| l.loss.iter().map(|loss| loss[g]).filter(|v| v.is_finite()).fold(0.0, f64::max))
                        .sum::<f64>()
                })
                .sum();
            if worst > 0.0 { worst } else { 1.0 }
        };
        let (quality_scale, content_scale) = (scale(MetricGroup::Quality), scale(MetricGroup::Content));
        let steps_per_group = step_groups.iter().map(|[a, b]| (b + 1 - a) as u64).collect();
        let mut problem = Self {
            layers,
            step_groups,
            steps_per_group,
            quality_scale,
            content_scale,
            ties: Vec::new(),
            basis,
            offset: BaseOffset::default(),
            shrunk: 0.0,
            fit: None,
        };
        if let Some(base) = &table.meta.base {
            problem.offset = problem.base_offset(table, base)?;
        }
        Ok(problem)
    }

    /// The offset of a table probed around `base`. Every layer the base quantizes must be
    /// quantized by the plans too: the table has no row for moving it back to float.
    fn base_offset(&self, table: &SensitivityTable, base: &BasePoint) -> Result<BaseOffset> {
        if let Some(l) = self.layers.iter().find(|l| l.protected && base.quantizes(l.layer.component, &l.layer.name)) {
            return Err(SolverError::Config {
                field: "protect".into(),
                message: format!(
                    "'{}' is quantized in the table's base plan {}, and the table cannot predict it in float: \
                     protect only layers the base keeps in float",
                    l.layer.id(),
                    base.plan
                ),
            });
        }
        let row = table.rows.iter().find(|r| base.is_base(r)).ok_or_else(|| {
            SolverError::Table(format!("no row measures the base plan {} (an unfinished run?)", base.plan))
        })?;
        let cells = |group: Option<MetricGroup>| {
            let layers = (0..self.layers.len()).filter(|&l| !self.layers[l].protected);
            (layers.filter(|&l| group.is_none_or(|g| self.group(l) == g)).count() * self.groups()) as f64
        };
        // n layers count the base n times; the prediction wants it once.
        let extra = |group: Option<MetricGroup>| cells(group) - 1.0;
        let (quality, content) = match self.basis {
            LossBasis::Image => (row.mse, 0.0),
            LossBasis::Decoupled => (10f64.powf(-row.sqnr_db / 10.0), (1.0 - row.ssim).max(0.0)),
        };
        // Every loss of the table holds the base's, so past the ceiling no option is usable.
        if !(quality <= MAX_LOSS && row.mse <= MAX_LOSS) {
            return Err(SolverError::Table(format!(
                "the base plan {} measured SQNR {} dB and image MSE {}, a loss past {MAX_LOSS:e}: nothing can be \
                 predicted around it",
                base.plan, row.sqnr_db, row.mse
            )));
        }
        Ok(BaseOffset {
            quality: extra(Some(MetricGroup::Quality)) * quality,
            content: extra(Some(MetricGroup::Content)) * content,
            image_mse: extra(None) * row.mse,
        })
    }

    /// Shrinks every layer's measured losses toward what its size alone predicts: a fraction
    /// `lambda` of each loss is replaced by the layer's parameters times the mean loss per
    /// parameter of its metric group at that option and step group. Under that prior every
    /// parameter is equally sensitive and a uniform plan is the best one, so `lambda` runs
    /// from trusting the table (0) to uniform bits (1). The losses each option sums to over the
    /// layers are unchanged, and so is the prediction of every uniform plan; shrinking twice
    /// composes (`shrunk` records the total). Errors on a table probed around a base plan,
    /// whose losses hold the base's loss in every layer.
    pub fn shrink(&mut self, lambda: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&lambda) {
            return Err(SolverError::Config { field: "shrink".into(), message: format!("{lambda} is not in [0, 1]") });
        }
        if lambda == 0.0 {
            return Ok(());
        }
        if self.offset != BaseOffset::default() {
            return Err(SolverError::Config {
                field: "shrink".into(),
                message: "a table probed around a base plan holds changes from it, not losses to shrink".into(),
            });
        }
        let groups = self.groups();
        // (metric group, option, step group) → (Σ loss, Σ image MSE, Σ parameters), finite cells only.
        let mut sums: BTreeMap<(MetricGroup, Precision, usize), [f64; 3]> = BTreeMap::new();
        // Activation-only layers have no parameters to share a weight's loss by.
        for (l, layer) in self.layers.iter().enumerate().filter(|(_, l)| !l.protected && l.layer.params > 0) {
            for (o, &p) in layer.options.iter().enumerate() {
                for g in 0..groups {
                    let (loss, mse) = (layer.loss[o][g], layer.image_mse[o][g]);
                    if loss.is_finite() && mse.is_finite() {
                        let s = sums.entry((self.group(l), p, g)).or_default();
                        s[0] += loss;
                        s[1] += mse;
                        s[2] += layer.layer.params as f64;
                    }
                }
            }
        }
        for l in 0..self.layers.len() {
            let group = self.group(l);
            let layer = &mut self.layers[l];
            if layer.protected || layer.layer.params == 0 {
                continue;
            }
            let params = layer.layer.params as f64;
            for (o, &p) in layer.options.iter().enumerate() {
                for g in 0..groups {
                    let Some(&[loss, mse, n]) = sums.get(&(group, p, g)) else { continue };
                    let blend = |own: f64, total: f64| (1.0 - lambda) * own + lambda * params * total / n;
                    if layer.loss[o][g].is_finite() && layer.image_mse[o][g].is_finite() {
                        layer.loss[o][g] = blend(layer.loss[o][g], loss);
                        layer.image_mse[o][g] = blend(layer.image_mse[o][g], mse);
                    }
                }
            }
        }
        self.shrunk = 1.0 - (1.0 - self.shrunk) * (1.0 - lambda);
        Ok(())
    }

    /// Adds the ties `specs` declare: `a+b+…` with every part a layer name ties those layers;
    /// with every part a role (e.g. `attn_q+attn_k+attn_v`), each run of layers with those roles
    /// in graph order, one layer of each role (the projections of one attention), is tied. Tied
    /// layers must offer the same precisions; a tie of protected layers is dropped, one mixing
    /// protected and quantized layers is an error.
    pub fn tie(&mut self, specs: &[String]) -> Result<()> {
        let error = |message: String| SolverError::Config { field: "tie".into(), message };
        for spec in specs {
            let parts: Vec<&str> = spec.split('+').map(str::trim).collect();
            if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
                return Err(error(format!("'{spec}' is not a tie: expected two or more names or roles joined by '+'")));
            }
            let roles: Option<Vec<Role>> = parts.iter().map(|p| p.parse::<Role>().ok()).collect();
            let sets = match roles {
                Some(roles) => self.role_runs(&roles),
                None => {
                    let named = parts
                        .iter()
                        .map(|&p| {
                            (0..self.layers.len()).find(|&l| self.layers[l].layer.is_named(p)).ok_or_else(|| {
                                error(format!(
                                    "'{p}' in '{spec}' is not a layer of the table (nor are all parts roles)"
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    vec![named]
                }
            };
            if sets.is_empty() {
                return Err(error(format!("'{spec}': no layers of the table have those roles")));
            }
            for set in sets {
                let names = || set.iter().map(|&l| self.layers[l].layer.id()).collect::<Vec<_>>().join(", ");
                let protected = set.iter().filter(|&&l| self.layers[l].protected).count();
                if protected == set.len() {
                    continue;
                }
                if protected > 0 {
                    return Err(error(format!("{} mix protected and quantized layers", names())));
                }
                let offered = |l: usize| {
                    let mut o = self.layers[l].options.clone();
                    o.sort();
                    o
                };
                if set.iter().any(|&l| offered(l) != offered(set[0])) {
                    return Err(error(format!("{} do not offer the same precisions", names())));
                }
                self.ties.push(set);
            }
        }
        Ok(())
    }

    /// Runs of layers with roles in `roles`, in graph order: a run ends when a role repeats.
    /// Runs of one layer tie nothing and are left out.
    fn role_runs(&self, roles: &[Role]) -> Vec<Vec<usize>> {
        let mut runs: Vec<Vec<usize>> = Vec::new();
        let mut run: Vec<usize> = Vec::new();
        for (l, layer) in self.layers.iter().enumerate().filter(|(_, l)| roles.contains(&l.layer.role)) {
            if run.iter().any(|&m| self.layers[m].layer.role == layer.layer.role) {
                runs.push(std::mem::take(&mut run));
            }
            run.push(l);
        }
        runs.push(run);
        runs.retain(|r| r.len() > 1);
        runs
    }

    /// The curves the predictions go through (none: additive).
    pub fn combination(&self) -> Combination {
        self.fit.as_ref().map_or_else(Combination::default, |f| f.curves.clone())
    }

    pub fn groups(&self) -> usize {
        self.step_groups.len()
    }

    pub fn total_steps(&self) -> u64 {
        self.steps_per_group.iter().sum()
    }

    /// Parameters of the layers the plan quantizes (the denominator of avg-bits).
    pub fn quantized_params(&self) -> u64 {
        self.layers.iter().filter(|l| !l.protected).map(|l| l.layer.params).sum()
    }

    /// The metric group whose loss layer `l` adds to: its own under decoupled losses, quality
    /// (the one image loss) under image losses.
    pub fn group(&self, l: usize) -> MetricGroup {
        metric_group(self.basis, &self.layers[l].layer)
    }

    /// The normalised, weighted loss of `option` of layer `l` in step group `g`.
    pub fn cost(&self, l: usize, option: usize, g: usize, content_weight: f64) -> f64 {
        let layer = &self.layers[l];
        let loss = layer.loss[option][g];
        match self.group(l) {
            MetricGroup::Quality => loss / self.quality_scale,
            MetricGroup::Content => content_weight * loss / self.content_scale,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitsearch_records::BaseLayer;
    use bitsearch_types::FLOAT_BITS;
    use bitsearch_types::{Component, WeightFormat};

    /// `n` quality layers of growing size at W2/W4/W8, losses falling 4× per bit.
    pub fn synthetic(n: usize) -> Problem {
        const BITS: [u32; 3] = [2, 4, 8];
        let layers: Vec<LayerOptions> = (0..n)
            .map(|i| {
                let params = 16 * (i as u64 + 1);
                LayerOptions {
                    layer: LayerInfo {
                        component: Component::Unet,
                        name: format!("l{i}"),
                        op: "Conv".into(),
                        role: if i % 3 == 0 {
                            Role::AttnQ
                        } else if i % 3 == 1 {
                            Role::AttnK
                        } else {
                            Role::Conv
                        },
                        group: MetricGroup::Quality,
                        params,
                        macs: Some(params * 4),
                        outputs: None,
                    },
                    protected: false,
                    options: BITS.iter().map(|&w_bits| Precision::plain(w_bits, FLOAT_BITS)).collect(),
                    bytes: BITS.iter().map(|&w| params * u64::from(w) / 8).collect(),
                    loss: BITS.iter().map(|&w| vec![(1.0 + (i % 5) as f64) * 4f64.powi(-(w as i32))]).collect(),
                    metric: vec![vec![0.0]; BITS.len()],
                    image_mse: vec![vec![0.0]; BITS.len()],
                }
            })
            .collect();
        let quality_scale = layers.iter().map(|l| l.loss[0][0]).sum();
        Problem {
            layers,
            step_groups: vec![[0, 0]],
            steps_per_group: vec![1],
            quality_scale,
            content_scale: 1.0,
            ties: Vec::new(),
            basis: LossBasis::Decoupled,
            offset: BaseOffset::default(),
            shrunk: 0.0,
            fit: None,
        }
    }

    /// A table probed around uniform W4 (three layers at W2/W4/W8): every W4 row measures the
    /// base, the others the base with that one layer changed.
    fn base_table() -> SensitivityTable {
        let mut table = bitsearch_fixtures::sensitivity_table(3, 3, &[2, 4, 8], 1);
        let base_mse = 0.01;
        for row in &mut table.rows {
            let l: u32 = row.layer.name.trim_start_matches("layer_").parse().expect("fixture names");
            row.mse = match row.weight.bits() {
                2 => base_mse + 0.001 * f64::from(l + 1),
                4 => base_mse,
                _ => base_mse - 0.0001 * f64::from(l + 1),
            };
        }
        let layers = table.rows.iter().filter(|r| r.weight.bits() == 4);
        let layers = layers.map(|r| BaseLayer::new(r.layer.component, &r.layer.name, WeightFormat::int(4))).collect();
        table.meta.base = Some(BasePoint { plan: "u4.yaml".into(), plan_sha256: "0".repeat(64), layers });
        table
    }

    #[test]
    fn around_a_base_plan_the_prediction_is_the_base_plus_each_change() {
        let table = base_table();
        let problem = Problem::from_table(&table, &[], LossBasis::Image).expect("problem");
        let mse = |a: &crate::allocation::Assignment| problem.evaluate(a, 1.0).image_mse;
        let uniform = problem.uniform(4).expect("W4");
        assert!((mse(&uniform) - 0.01).abs() < 1e-15, "the base predicts itself: {}", mse(&uniform));
        let option = |l: usize, bits: u32| problem.layers[l].options.iter().position(|p| p.w_bits() == bits);
        let mut changed = uniform.clone();
        changed[0][0] = option(0, 2);
        assert!((mse(&changed) - 0.011).abs() < 1e-15, "one change: {}", mse(&changed));
        changed[2][0] = option(2, 8);
        assert!((mse(&changed) - (0.011 - 0.0003)).abs() < 1e-15, "two changes add: {}", mse(&changed));
        assert!(!problem.evaluate(&changed, 1.0).beyond_base);
        // Two changes that each claim to remove nine tenths of the base's noise overshoot it.
        let mut far = problem.clone();
        for l in [1, 2] {
            let o = option(l, 8).expect("W8");
            far.layers[l].loss[o][0] = 0.001;
            far.layers[l].image_mse[o][0] = 0.001;
        }
        let eight = far.uniform(8).expect("W8");
        let e = far.evaluate(&eight, 1.0);
        assert!(e.beyond_base && e.image_mse == 0.0, "{e:?}");

        // layer_0000 is the time embedding: the default protection would keep it in float,
        // which the table cannot predict.
        let protect: Vec<String> = DEFAULT_PROTECT.iter().map(|p| p.to_string()).collect();
        let message = Problem::from_table(&table, &protect, LossBasis::Image).unwrap_err().to_string();
        assert!(message.starts_with("protect: ") && message.contains("base plan u4.yaml"), "{message}");
    }

    #[test]
    fn shrinking_keeps_uniform_predictions_and_ends_at_uniform_bits() {
        let mut raw = synthetic(12);
        // The smallest layers the most sensitive per parameter, so the table wants mixed bits.
        for (i, l) in raw.layers.iter_mut().enumerate() {
            for loss in &mut l.loss {
                loss[0] *= 2f64.powi(12 - i as i32);
            }
            l.image_mse = l.loss.clone();
        }
        let options = crate::SolveOptions {
            budgets: vec!["avg-bits=4".parse().expect("budget")],
            ..crate::SolveOptions::default()
        };
        let bits = |p: &Problem| {
            let solved = crate::solve(p, &options).expect("solve");
            solved.assignment.iter().zip(&p.layers).map(|(a, l)| l.options[a[0].expect("quantized")].w_bits()).collect()
        };
        let mixed: Vec<u32> = bits(&raw);
        assert!(mixed.iter().any(|&b| b != 4), "the table alone mixes bits: {mixed:?}");
        for lambda in [0.0, 0.3, 1.0] {
            let mut p = raw.clone();
            p.shrink(lambda).expect("shrink");
            for w in [2, 4, 8] {
                let (a, b) = (raw.evaluate(&raw.uniform(w).unwrap(), 1.0), p.evaluate(&p.uniform(w).unwrap(), 1.0));
                assert!((a.quality_loss - b.quality_loss).abs() <= 1e-12 * a.quality_loss, "W{w} at {lambda}");
                assert!((a.image_mse - b.image_mse).abs() <= 1e-12 * a.image_mse, "W{w} at {lambda}");
            }
            // Each loss is the blend of its own and its size's share of the option's total.
            for (l, (shrunk, own)) in p.layers.iter().zip(&raw.layers).enumerate() {
                for o in 0..own.options.len() {
                    let total: f64 = raw.layers.iter().map(|x| x.loss[o][0]).sum();
                    let params: u64 = raw.layers.iter().map(|x| x.layer.params).sum();
                    let share = total * own.layer.params as f64 / params as f64;
                    let want = (1.0 - lambda) * own.loss[o][0] + lambda * share;
                    assert!((shrunk.loss[o][0] - want).abs() <= 1e-12 * want, "layer {l} option {o} at {lambda}");
                }
            }
            if lambda == 0.0 {
                assert_eq!(p, raw);
            }
            if lambda == 1.0 {
                assert!(bits(&p).iter().all(|&b| b == 4), "every parameter equally sensitive: uniform W4");
            }
        }
        // Shrinking twice by a half is shrinking once by three quarters.
        let (mut twice, mut once) = (raw.clone(), raw.clone());
        twice.shrink(0.5).and_then(|()| twice.shrink(0.5)).expect("shrink");
        once.shrink(0.75).expect("shrink");
        assert_eq!(twice.shrunk, 0.75);
        for (a, b) in twice.layers.iter().zip(&once.layers) {
            for (x, y) in a.loss.iter().flatten().zip(b.loss.iter().flatten()) {
                assert!((x - y).abs() <= 1e-12 * y, "{x} vs {y}");
            }
        }
        let message = raw.clone().shrink(1.5).unwrap_err().to_string();
        assert!(message.starts_with("shrink: "), "{message}");
        let based = Problem::from_table(&base_table(), &[], LossBasis::Image).expect("problem");
        assert!(based.clone().shrink(0.5).unwrap_err().to_string().contains("base plan"));
    }

    #[test]
    fn a_role_tie_joins_the_projections_of_each_attention() {
        let mut problem = synthetic(7);
        // Roles: q k conv q k conv q — two complete runs, the last q alone.
        problem.tie(&["attn_q+attn_k".to_string()]).expect("tie");
        assert_eq!(problem.ties, vec![vec![0, 1], vec![3, 4]]);
        problem.layers[0].protected = true;
        assert!(problem.tie(&["l0+l1".to_string()]).is_err(), "a tie of protected and quantized layers");
    }
}
