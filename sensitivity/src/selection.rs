//! Layer selection: which layers a run probes, which metric scores each (MixDQ's groups with
//! the config's overrides), and the note that tells the user.

use crate::config::SensitivityConfig;
use crate::error::{Result, SensitivityError};
use bitsearch_types::{Layer, LayerKind, MetricGroup, Role};
use std::collections::HashSet;

/// The layers to probe, in graph order: those the config names (by layer name or role), else
/// every weight layer, and every activation product when activations are probed.
pub(crate) fn select(layers: &[Layer], config: &SensitivityConfig) -> Result<Vec<usize>> {
    let probes_acts = !config.a_bits.is_empty();
    if config.layers.is_empty() {
        return Ok((0..layers.len()).filter(|&i| layers[i].kind == LayerKind::Weight || probes_acts).collect());
    }
    let mut chosen = HashSet::new();
    for entry in &config.layers {
        let role = entry.parse::<Role>().ok();
        let matched: Vec<usize> =
            (0..layers.len()).filter(|&i| layers[i].is_named(entry) || Some(layers[i].role) == role).collect();
        if matched.is_empty() && role.is_none() {
            return Err(SensitivityError::config(
                "layers",
                format!("'{entry}' is neither a layer of the model nor a role (see `bitsearch inspect`)"),
            ));
        }
        if !probes_acts && matched.iter().any(|&i| layers[i].kind == LayerKind::ActMatMul && layers[i].is_named(entry))
        {
            return Err(SensitivityError::config(
                "layers",
                format!("'{entry}' has no weights: probing it needs activation bits (a_bits)"),
            ));
        }
        chosen.extend(matched.into_iter().filter(|&i| layers[i].kind == LayerKind::Weight || probes_acts));
    }
    let mut chosen: Vec<usize> = chosen.into_iter().collect();
    chosen.sort_unstable();
    Ok(chosen)
}

/// MixDQ's grouping from the roles, with the config's overrides (layer names before roles).
pub(crate) fn metric_groups(layers: &[Layer], config: &SensitivityConfig) -> Result<Vec<MetricGroup>> {
    for key in config.groups.keys() {
        if key.parse::<Role>().is_err() && !layers.iter().any(|l| l.is_named(key)) {
            return Err(SensitivityError::config(
                format!("groups.{key}"),
                "is neither a layer of the model nor a role (see `bitsearch inspect`)",
            ));
        }
    }
    Ok(layers
        .iter()
        .map(|l| {
            config
                .groups
                .iter()
                .find(|(key, _)| l.is_named(key))
                .map(|(_, group)| group)
                .or_else(|| config.groups.get(l.role.as_str()))
                .copied()
                .unwrap_or_else(|| l.role.metric_group())
        })
        .collect())
}

/// Which metric drives which probed layers, for the table and the user.
pub(crate) fn describe_groups(layers: &[Layer], selected: &[usize], groups: &[MetricGroup]) -> String {
    let count = |g: MetricGroup| selected.iter().filter(|&&i| groups[i] == g).count();
    let text = !layers.iter().any(|l| matches!(l.role, Role::CrossAttnK | Role::CrossAttnV));
    let mut note = format!(
        "content group (scored by SSIM of the final image): {} layers; quality group (scored by SQNR of the denoiser \
         output): {} layers",
        count(MetricGroup::Content),
        count(MetricGroup::Quality)
    );
    if text {
        note.push_str(
            "; the model has no text conditioning, so it has no cross-attention layers and only feed-forward layers \
             can be content layers",
        );
    }
    note
}
