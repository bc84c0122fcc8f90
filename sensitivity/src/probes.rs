//! The probe list: every (layer, weight form, activation bits, step group) to measure, in a fixed order that shards, resumes and merges rely on, cut into windows of layers
//! that share one session.

use crate::config::SensitivityConfig;
use bitsearch_quant::{SPLIT_BITS, split_channels};
use bitsearch_records::Shard;
use bitsearch_types::{Layer, LayerKind, Rounding, WeightFormat};
use std::ops::Range;

/// One measurement: layer `layer` (an index into the run's layers) with its weight in `weight`
/// (None: left in float) and `a_bits` input activations (None: left in float) during the steps
/// of `step_group`, every other layer in float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Position in the full probe list; the key of a table row.
    pub index: usize,
    pub layer: usize,
    pub weight: Option<WeightFormat>,
    pub a_bits: Option<u8>,
    pub step_group: usize,
}

/// Consecutive layers whose probes run on one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub layers: Vec<usize>,
    pub probes: Vec<Probe>,
}

/// The steps `0..steps` cut into `groups` consecutive ranges whose sizes differ by at most one
/// (earlier groups take the extra steps).
pub fn step_groups(steps: usize, groups: usize) -> Vec<Range<usize>> {
    let (base, extra) = (steps / groups, steps % groups);
    let mut start = 0;
    (0..groups)
        .map(|g| {
            let len = base + usize::from(g < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// The probes of `selected` layers, windowed. Weight layers run at every `w_bits`, each followed
/// by its variants: split (with `outlier_split`, where the width allows it and the layer has
/// channels to move), then each of `w_groups` (integer widths below 8); then E4M3 with `fp8`.
/// Each integer form below 8 bits comes plain and with a low-rank branch of each of the config's
/// ranks that fits the layer, and each integer form in each of the config's roundings; GPTQ and
/// branches only where `unfolds[layer]` (the others take nearest rounding, once). Activation
/// products run only when activation bits are probed. Within a layer the order is weight form,
/// activation bits, step group.
pub fn plan(layers: &[Layer], selected: &[usize], unfolds: &[bool], config: &SensitivityConfig) -> Vec<Window> {
    let a_bits: Vec<Option<u8>> =
        if config.a_bits.is_empty() { vec![None] } else { config.a_bits.iter().copied().map(Some).collect() };
    let mut index = 0;
    let mut windows = Vec::new();
    for chunk in selected.chunks(config.window) {
        let mut probes = Vec::new();
        for &layer in chunk {
            let l = &layers[layer];
            let channels = l.channel_axis.and_then(|axis| l.weight_shape.get(axis)).copied().unwrap_or(0);
            let splits = config.outlier_split && split_channels(channels) > 0;
            let unfolds = unfolds.get(layer).copied().unwrap_or(false);
            let inputs = l.params / (channels as u64).max(1);
            let ranked = move |form: WeightFormat| {
                let ranks = config.ranks.iter().filter(move |_| unfolds && form.bits() < 8);
                let branched = ranks.filter_map(move |&r| form.with_rank(Some(r)));
                std::iter::once(form).chain(branched.filter(move |f| f.fits(channels as u64, inputs)))
            };
            let weights: Vec<Option<WeightFormat>> = match l.kind {
                LayerKind::Weight => config
                    .w_bits
                    .iter()
                    .flat_map(|&w| {
                        let plain = WeightFormat::of_bits(u32::from(w));
                        let split = (splits && SPLIT_BITS.contains(&w)).then_some(WeightFormat::Int {
                            bits: w,
                            split: true,
                            group: None,
                            rounding: Rounding::Nearest,
                            rank: None,
                        });
                        let groups = config
                            .w_groups
                            .iter()
                            .filter(move |_| matches!(plain, WeightFormat::Int { .. }) && w < 8)
                            .map(move |&g| WeightFormat::Int {
                                bits: w,
                                split: false,
                                group: Some(g),
                                rounding: Rounding::Nearest,
                                rank: None,
                            });
                        std::iter::once(plain).chain(split).chain(groups)
                    })
                    .flat_map(ranked)
                    .flat_map(|form| rounded(form, &config.rounding, unfolds))
                    .chain(config.fp8.then_some(WeightFormat::E4M3))
                    .map(Some)
                    .collect(),
                LayerKind::ActMatMul => vec![None],
            };
            for &weight in &weights {
                for &a in &a_bits {
                    for step_group in 0..config.step_groups {
                        probes.push(Probe { index, layer, weight, a_bits: a, step_group });
                        index += 1;
                    }
                }
            }
        }
        windows.push(Window { layers: chunk.to_vec(), probes });
    }
    windows
}

/// `form` in each of `roundings` it can take: integer forms in all of them (GPTQ only where
/// `gptq_ok`, nearest once otherwise), any other form once.
fn rounded(form: WeightFormat, roundings: &[Rounding], gptq_ok: bool) -> Vec<WeightFormat> {
    let mut forms: Vec<WeightFormat> =
        roundings.iter().filter(|&&r| r == Rounding::Nearest || gptq_ok).filter_map(|&r| form.rounded(r)).collect();
    if forms.is_empty() {
        forms.push(form);
    }
    forms
}

/// The windows a shard computes: whole windows, so that a probe runs on the same session
/// whichever process computes it (and sharded results equal unsharded ones bit for bit).
pub fn shard(windows: Vec<Window>, shard: Shard) -> Vec<Window> {
    windows.into_iter().enumerate().filter(|(i, _)| i % shard.count == shard.index).map(|(_, w)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitsearch_types::Role;

    fn layer(name: &str, kind: LayerKind) -> Layer {
        Layer {
            component: Default::default(),
            name: name.into(),
            op: "Conv".into(),
            kind,
            role: Role::Conv,
            weight: None,
            weight_shape: Vec::new(),
            channel_axis: None,
            params: 0,
            macs: None,
            inputs: Vec::new(),
            output: String::new(),
        }
    }

    #[test]
    fn step_groups_cover_every_step_once() {
        assert_eq!(step_groups(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(step_groups(1, 1), vec![0..1]);
        assert_eq!(step_groups(4, 4), vec![0..1, 1..2, 2..3, 3..4]);
    }

    #[test]
    fn plan_enumerates_the_product_in_a_fixed_order() {
        let layers =
            vec![layer("a", LayerKind::Weight), layer("s", LayerKind::ActMatMul), layer("b", LayerKind::Weight)];
        let config = SensitivityConfig { w_bits: vec![4, 8], window: 2, step_groups: 2, ..Default::default() };
        let windows = plan(&layers, &[0, 2], &[], &config);
        assert_eq!(windows.len(), 1);
        let probes = &windows[0].probes;
        assert_eq!(probes.len(), 8);
        assert!(probes.iter().enumerate().all(|(i, p)| p.index == i));
        let bits = |p: &Probe| p.weight.map(|w| w.bits());
        assert_eq!((bits(&probes[1]), probes[1].step_group), (Some(4), 1));
        assert_eq!((probes[4].layer, bits(&probes[4])), (2, Some(4)));

        let with_acts = SensitivityConfig { a_bits: vec![8], window: 2, ..config.clone() };
        let windows = plan(&layers, &[0, 1, 2], &[], &with_acts);
        assert_eq!(windows.iter().map(|w| w.layers.len()).collect::<Vec<_>>(), vec![2, 1]);
        let act_only: Vec<_> = windows.iter().flat_map(|w| &w.probes).filter(|p| p.layer == 1).collect();
        assert_eq!(act_only.len(), 2);
        assert!(act_only.iter().all(|p| p.weight.is_none() && p.a_bits == Some(8)));
    }

    #[test]
    fn split_probes_follow_their_bit_width_where_a_split_exists() {
        let mut wide = layer("wide", LayerKind::Weight);
        (wide.weight_shape, wide.channel_axis) = (vec![20, 3], Some(0));
        let mut narrow = layer("narrow", LayerKind::Weight);
        (narrow.weight_shape, narrow.channel_axis) = (vec![9, 3], Some(0));
        let config = SensitivityConfig { w_bits: vec![2, 4], outlier_split: true, ..Default::default() };
        let probes: Vec<Probe> =
            plan(&[wide, narrow], &[0, 1], &[], &config).into_iter().flat_map(|w| w.probes).collect();
        let described: Vec<(usize, Option<u8>, bool)> = probes
            .iter()
            .map(|p| (p.layer, p.weight.map(|w| w.bits() as u8), p.weight.is_some_and(|w| w.split())))
            .collect();
        // 4 bits has no split (5-bit channels), a 9-channel layer no channel to move.
        assert_eq!(
            described,
            vec![
                (0, Some(2), false),
                (0, Some(2), true),
                (0, Some(4), false),
                (1, Some(2), false),
                (1, Some(4), false)
            ]
        );
        assert!(probes.iter().enumerate().all(|(i, p)| p.index == i));
    }

    #[test]
    fn group_sizes_follow_the_integer_widths_below_8_and_fp8_comes_last() {
        let mut conv = layer("conv", LayerKind::Weight);
        (conv.weight_shape, conv.channel_axis) = (vec![20, 64], Some(0));
        let config = SensitivityConfig {
            w_bits: vec![4, 8, 16],
            w_groups: vec![32, 128],
            fp8: true,
            outlier_split: true,
            ..Default::default()
        };
        let labels: Vec<String> = plan(&[conv], &[0], &[], &config)
            .into_iter()
            .flat_map(|w| w.probes)
            .map(|p| p.weight.map(|w| w.label()).unwrap_or_default())
            .collect();
        assert_eq!(labels, vec!["w4", "w4g32", "w4g128", "w8", "w16", "w8e4m3"]);
    }

    #[test]
    fn each_integer_form_comes_in_each_rounding_where_the_layer_takes_gptq() {
        let mut conv = layer("conv", LayerKind::Weight);
        (conv.weight_shape, conv.channel_axis) = (vec![20, 64], Some(0));
        let config = SensitivityConfig {
            w_bits: vec![4, 16],
            w_groups: vec![32],
            fp8: true,
            rounding: vec![Rounding::Nearest, Rounding::Gptq],
            ..Default::default()
        };
        let labels = |gptq: &[bool]| -> Vec<String> {
            plan(&[conv.clone(), conv.clone()], &[0, 1], gptq, &config)
                .into_iter()
                .flat_map(|w| w.probes)
                .filter(|p| p.layer == 0)
                .map(|p| p.weight.map(|w| w.label()).unwrap_or_default())
                .collect()
        };
        assert_eq!(labels(&[true]), ["w4", "w4-gptq", "w4g32", "w4g32-gptq", "w16", "w8e4m3"]);
        assert_eq!(labels(&[false]), ["w4", "w4g32", "w16", "w8e4m3"]);
        // GPTQ alone: a layer without it still gets its integer forms, rounded to nearest.
        let only = SensitivityConfig { rounding: vec![Rounding::Gptq], ..config.clone() };
        let probes = plan(&[conv.clone()], &[0], &[false], &only);
        let forms: Vec<String> = probes[0].probes.iter().map(|p| p.weight.unwrap().to_string()).collect();
        assert_eq!(forms, ["w4", "w4g32", "f16", "e4m3"]);
    }

    #[test]
    fn a_branch_is_probed_below_8_bits_where_the_layer_takes_one_and_it_fits() {
        let mut conv = layer("conv", LayerKind::Weight);
        (conv.weight_shape, conv.channel_axis, conv.params) = (vec![20, 64], Some(0), 1280);
        // Rank 2 keeps 2·84 values (at most a quarter of 1280); rank 4 would keep 336.
        let config = SensitivityConfig {
            w_bits: vec![4, 8],
            ranks: vec![2, 4],
            rounding: vec![Rounding::Nearest, Rounding::Gptq],
            ..Default::default()
        };
        let labels = |unfolds: bool| -> Vec<String> {
            let windows = plan(&[conv.clone()], &[0], &[unfolds], &config);
            windows[0].probes.iter().map(|p| p.weight.unwrap().to_string()).collect()
        };
        assert_eq!(labels(true), ["w4", "w4-gptq", "w4r2", "w4r2-gptq", "w8", "w8-gptq"]);
        assert_eq!(labels(false), ["w4", "w8"]);
    }

    #[test]
    fn shards_partition_the_windows() {
        let layers: Vec<Layer> = (0..7).map(|i| layer(&format!("l{i}"), LayerKind::Weight)).collect();
        let selected: Vec<usize> = (0..7).collect();
        let config = SensitivityConfig { window: 2, ..Default::default() };
        let all = plan(&layers, &selected, &[], &config);
        let mut joined: Vec<Probe> =
            (0..3).flat_map(|i| shard(all.clone(), Shard { index: i, count: 3 })).flat_map(|w| w.probes).collect();
        joined.sort_by_key(|p| p.index);
        assert_eq!(joined, all.iter().flat_map(|w| w.probes.clone()).collect::<Vec<_>>());
    }
}
