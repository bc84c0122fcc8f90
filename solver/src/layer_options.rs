//! One layer's options read off its table rows: the precisions it may take, what each stores,
//! and the loss each is predicted to cause; protection from the protect list.

use crate::error::{Result, SolverError};
use crate::precision::Precision;
use crate::problem::{INPUT, OUTPUT};
use bitsearch_records::ProbeRow;
use bitsearch_types::{HALF_BITS, LayerInfo, LossBasis, MetricGroup, Role};
use std::collections::BTreeMap;

/// Bytes per parameter of a float32 weight.
const FLOAT_BYTES: u64 = 4;

/// Largest loss (or image MSE) an option may have: an SQNR of −300 dB, an MSE of 1e30 on images
/// whose values lie within ±1. Past it the probe destroyed the output, and the option is
/// forbidden as a NaN/Inf probe is. Below it, sums over every cell of a table stay finite, so
/// the normalised costs, the objective and the predictions do too.
pub const MAX_LOSS: f64 = 1e30;

/// `value`, or +∞ (forbidden) past [`MAX_LOSS`].
fn bounded(value: f64) -> f64 {
    if value <= MAX_LOSS { value } else { f64::INFINITY }
}

/// One layer's options.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerOptions {
    pub layer: LayerInfo,
    /// Protected layers stay in float and have no options.
    pub protected: bool,
    pub options: Vec<Precision>,
    /// Stored bytes of the weight at each option.
    pub bytes: Vec<u64>,
    /// `loss[option][step_group]`; +∞ where the probe gave NaN/Inf or a loss past [`MAX_LOSS`]
    /// (the option is forbidden).
    pub loss: Vec<Vec<f64>>,
    /// The measured metric behind each loss (SQNR dB, SSIM or PSNR dB), for the plan's record.
    pub metric: Vec<Vec<f64>>,
    /// `image_mse[option][step_group]`: the final image's MSE, whatever the basis (the PSNR the
    /// plan predicts); +∞ past [`MAX_LOSS`].
    pub image_mse: Vec<Vec<f64>>,
}

impl LayerOptions {
    pub fn float_bytes(&self) -> u64 {
        self.layer.params * FLOAT_BYTES
    }

    /// MACs of one forward, 0 where the table does not know them.
    pub fn macs(&self) -> u64 {
        self.layer.macs.unwrap_or(0)
    }

    /// Bits per weight value at option `o`: the codes' width, plus the float16 values of a
    /// low-rank branch spread over the weight's (the branch runs beside the layer, so it costs
    /// MACs in the same proportion).
    pub fn value_bits(&self, o: usize) -> f64 {
        let p = &self.options[o];
        let branch = self.layer.branch_values(&p.weight) as f64 / self.layer.params.max(1) as f64;
        f64::from(p.w_bits()) + f64::from(HALF_BITS) * branch
    }
}

pub(crate) fn metric_group(basis: LossBasis, layer: &LayerInfo) -> MetricGroup {
    match basis {
        LossBasis::Decoupled => layer.group,
        LossBasis::Image => MetricGroup::Quality,
    }
}

/// Protection of each layer, from the protect list.
pub(crate) fn protected_layers(by_layer: &[(&LayerInfo, Vec<&ProbeRow>)], protect: &[String]) -> Result<Vec<bool>> {
    // The model's input and output layers: the first and last image-path layers in graph order.
    let image_path: Vec<usize> =
        (0..by_layer.len()).filter(|&i| by_layer[i].0.role != Role::Embedding && by_layer[i].0.params > 0).collect();
    let mut protected = vec![false; by_layer.len()];
    for entry in protect {
        let matched: Vec<usize> = match entry.as_str() {
            INPUT => image_path.first().copied().into_iter().collect(),
            OUTPUT => image_path.last().copied().into_iter().collect(),
            other => {
                let role = other.parse::<Role>().ok();
                let matched: Vec<usize> = (0..by_layer.len())
                    .filter(|&i| by_layer[i].0.is_named(other) || Some(by_layer[i].0.role) == role)
                    .collect();
                if matched.is_empty() && role.is_none() {
                    return Err(SolverError::Config {
                        field: "protect".into(),
                        message: format!("'{other}' is not a layer of the table, a role, '{INPUT}' or '{OUTPUT}'"),
                    });
                }
                matched
            }
        };
        for i in matched {
            protected[i] = true;
        }
    }
    Ok(protected)
}

pub(crate) fn layer_options(
    layer: &LayerInfo,
    rows: &[&ProbeRow],
    groups: usize,
    protected: bool,
    basis: LossBasis,
) -> Result<LayerOptions> {
    let layer_error = |message: String| SolverError::Layer { layer: layer.id(), message };
    let group = metric_group(basis, layer);
    let mut cells: BTreeMap<Precision, Vec<Option<&ProbeRow>>> = BTreeMap::new();
    for row in rows {
        for (column, value) in
            [("sqnr_db", row.sqnr_db), ("ssim", row.ssim), ("mse", row.mse), ("psnr_db", row.psnr_db)]
        {
            if value.is_nan() {
                return Err(layer_error(format!("{column} is NaN at {}", Precision::of_row(row))));
            }
        }
        let g = row.step_group as usize;
        if g >= groups {
            return Err(layer_error(format!("step group {g} is not one of the run's {groups}")));
        }
        let slots = cells.entry(Precision::of_row(row)).or_insert_with(|| vec![None; groups]);
        if slots[g].replace(row).is_some() {
            return Err(layer_error(format!("two rows for {} in step group {g}", Precision::of_row(row))));
        }
    }
    let (mut options, mut bytes): (Vec<Precision>, Vec<u64>) = Default::default();
    let (mut loss, mut metric, mut image_mse) = (Vec::new(), Vec::new(), Vec::<Vec<f64>>::new());
    for (p, slots) in cells {
        let (mut per_group_loss, mut per_group_metric, mut per_group_mse) = (Vec::new(), Vec::new(), Vec::new());
        for (g, slot) in slots.iter().enumerate() {
            let row = slot.ok_or_else(|| {
                layer_error(format!("no row for {p} in step group {g} (an unfinished run, or shards not merged?)"))
            })?;
            let mse = if row.nonfinite > 0 { f64::INFINITY } else { bounded(row.mse) };
            let (value, l) = match (basis, group) {
                (LossBasis::Image, _) => (row.psnr_db, mse),
                (LossBasis::Decoupled, MetricGroup::Quality) => (row.sqnr_db, 10f64.powf(-row.sqnr_db / 10.0)),
                (LossBasis::Decoupled, MetricGroup::Content) => (row.ssim, (1.0 - row.ssim).max(0.0)),
            };
            per_group_loss.push(if row.nonfinite > 0 { f64::INFINITY } else { bounded(l) });
            per_group_metric.push(value);
            per_group_mse.push(mse);
        }
        options.push(p);
        bytes.push(slots.iter().flatten().next().map_or(0, |r| r.weight_bytes));
        loss.push(per_group_loss);
        metric.push(per_group_metric);
        image_mse.push(per_group_mse);
    }
    if !protected && (0..groups).any(|g| loss.iter().all(|l| !l[g].is_finite())) {
        return Err(layer_error(format!(
            "every precision gave NaN/Inf or a loss past {MAX_LOSS:e}: protect the layer (keep it in float)"
        )));
    }
    Ok(LayerOptions { layer: layer.clone(), protected, options, bytes, loss, metric, image_mse })
}

/// Every weight layer must offer the precisions any weight layer offers (and likewise for
/// activation-only layers): a hole means an unfinished run or a missing shard. Variants are
/// exempt (layers with fewer than ten output channels have no outlier split).
pub(crate) fn check_complete(layers: &[LayerOptions]) -> Result<()> {
    for weights in [true, false] {
        let kind: Vec<&LayerOptions> = layers.iter().filter(|l| (l.layer.params > 0) == weights).collect();
        let all: std::collections::BTreeSet<Precision> =
            kind.iter().flat_map(|l| l.options.iter().copied()).filter(|p| !p.variant()).collect();
        for layer in kind {
            if let Some(missing) = all.iter().find(|p| !layer.options.contains(p)) {
                return Err(SolverError::Layer {
                    layer: layer.layer.id(),
                    message: format!(
                        "no row for {missing}, which other layers have (an unfinished run, or shards not merged?)"
                    ),
                });
            }
        }
    }
    Ok(())
}
