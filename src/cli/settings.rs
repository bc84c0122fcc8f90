//! Config files and flags merged once per command: a flag given replaces the config's (or the
//! recorded run's, or the command's default) value. The commands read the merged settings only.

use super::{AlignArgs, EvalArgs, SampleArgs, SensitivityArgs, SolveArgs};
use anyhow::bail;
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_runtime::Device;
use bitsearch_sensitivity::SensitivityConfig;
use bitsearch_solver::{Minimise, SolveConfig, SolveOptions};

/// `sample`'s workload: its defaults (one step, four images a run, guidance 7.5) under the
/// flags. A single denoiser file takes one value per condition and no prompt; a folder one prompt.
pub fn sample(args: &SampleArgs) -> anyhow::Result<WorkloadSpec> {
    let mut spec = WorkloadSpec { steps: Some(1), batch: 4, ..WorkloadSpec::default() };
    args.workload.apply(&mut spec);
    args.denoiser.apply(&mut spec);
    args.prompt.apply(&mut spec);
    if let Some((name, _)) = spec.conditions.iter().find(|(_, values)| values.len() != 1) {
        bail!("--condition {name}: `sample` takes one value per condition");
    }
    if spec.prompts.len() > 1 {
        bail!("--prompt: `sample` draws one prompt; give it once");
    }
    // A diffusers folder's run reaches no other check of these values.
    spec.validate()?;
    Ok(spec)
}

/// `align`'s workload: 20 steps, guidance 4, 64 images a run unless told.
pub fn align(args: &AlignArgs) -> anyhow::Result<WorkloadSpec> {
    let mut spec = WorkloadSpec { steps: Some(20), guidance: 4.0, batch: 64, ..WorkloadSpec::default() };
    args.workload.apply(&mut spec);
    spec.validate()?;
    Ok(spec)
}

/// The YAML config (or the defaults) with every given flag applied on top, then validated.
pub fn sensitivity(args: &SensitivityArgs) -> anyhow::Result<SensitivityConfig> {
    let mut c = match &args.config {
        Some(path) => SensitivityConfig::from_yaml_file(path)?,
        None => SensitivityConfig::default(),
    };
    set(&mut c.w_bits, &args.w_bits);
    c.outlier_split |= args.outlier_split;
    set(&mut c.w_groups, &args.w_groups);
    c.fp8 |= args.fp8;
    set(&mut c.rounding, &args.rounding);
    set(&mut c.ranks, &args.ranks);
    c.bos_aware &= !args.no_bos_aware;
    c.bias_correction |= args.bias_correction;
    set(&mut c.a_bits, &args.act_bits);
    set(&mut c.step_groups, &args.step_groups);
    set(&mut c.layers, &args.layers);
    set(&mut c.window, &args.window);
    set(&mut c.cache_mb, &args.cache_mb);
    c.base = args.base.clone().or(c.base.take());
    let w = &mut c.quantizer.weight;
    set(&mut w.clipping, &args.clipping);
    set(&mut w.clip_grid, &args.clip_grid);
    w.group_size = args.group_size.or(w.group_size);
    let g = &mut c.generation;
    set(&mut g.seeds, &args.seeds);
    set(&mut g.pairing, &args.pairing);
    args.workload.apply(g);
    args.denoiser.apply(g);
    args.prompt.apply(g);
    c.validate()?;
    Ok(c)
}

/// `eval`'s items: the sensitivity run's workload under the denoiser flags (given conditions
/// replace the run's), held out by `held_out`, then the workload flags. The device is the
/// flag's (auto unless told), never the recorded run's.
pub fn eval(
    args: &EvalArgs,
    mut base: WorkloadSpec,
    held_out: impl FnOnce(&WorkloadSpec) -> (WorkloadSpec, String),
) -> (WorkloadSpec, String) {
    if !args.denoiser.conditions.is_empty() {
        base.conditions.clear();
        base.condition_files.clear();
    }
    args.denoiser.apply(&mut base);
    let (mut spec, held) = held_out(&base);
    args.workload.apply(&mut spec);
    spec.device = args.workload.device.unwrap_or(Device::Auto);
    (spec, held)
}

/// The YAML config (or the defaults) with every given flag applied on top, and the solver
/// options it makes (budgets from the flags replace the config's).
pub fn solve(args: &SolveArgs) -> anyhow::Result<(SolveConfig, SolveOptions)> {
    let mut c = match &args.config {
        Some(path) => SolveConfig::from_yaml_file(path)?,
        None => SolveConfig::default(),
    };
    if !args.budgets.is_empty() {
        // Parsed already: the config's strings give way before they are parsed.
        c.budgets.clear();
    }
    if let Some(protect) = &args.protect {
        c.protect = protect.iter().filter(|p| !p.is_empty()).cloned().collect();
    }
    c.content_weight = args.content_weight.unwrap_or(c.content_weight);
    c.loss = args.loss.or(c.loss);
    c.content_share = args.content_share.or(c.content_share);
    c.fill = args.fill.or(c.fill);
    c.time_limit = args.time_limit.unwrap_or(c.time_limit);
    c.shrink = args.shrink.unwrap_or(c.shrink);
    c.method = args.method.unwrap_or(c.method);
    c.ties.extend(args.ties.iter().cloned());
    c.minimise = match (args.minimise, args.targets.is_empty()) {
        (Some(m), _) => m,
        // A target search minimises memory unless told otherwise.
        (None, false) if c.minimise == Minimise::Loss => Minimise::Memory,
        (None, _) => c.minimise,
    };
    let mut options = c.options()?;
    if !args.budgets.is_empty() {
        options.budgets = args.budgets.clone();
    }
    Ok((c, options))
}

fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *field = value.clone();
    }
}
