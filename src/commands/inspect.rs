//! `bitsearch inspect`: the quantizable layers of a model, their roles and costs.

use crate::cli::{Format, InspectArgs};
use anyhow::Context;
use bitsearch_onnx::Model;
use bitsearch_types::{Layer, LayerKind};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let path = bitsearch_pipeline::workload::denoiser_file(&args.model);
    let model = Model::load(&path)?;
    let dims: HashMap<String, usize> = args.dims.iter().cloned().collect();
    let layers = bitsearch_runtime::layers_with_costs(&model, bitsearch_types::Component::Unet, &dims)
        .with_context(|| format!("{}: measuring layer shapes", path.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Table => write_table(&mut out, &model, &layers)?,
        Format::Csv => write_csv(&mut out, &layers)?,
        Format::Json => serde_json::to_writer_pretty(&mut out, &layers).map(|_| writeln!(out))??,
    }
    Ok(())
}

fn write_table(out: &mut impl Write, model: &Model, layers: &[Layer]) -> anyhow::Result<()> {
    let width = layers.iter().map(|l| l.name.len()).max().unwrap_or(4).clamp(4, 60);
    writeln!(
        out,
        "{:>4}  {:<width$}  {:<13}  {:<17}  {:<7}  {:<18}  {:>10}  {:>14}",
        "#", "name", "op", "role", "group", "weight", "params", "MACs"
    )?;
    for (i, l) in layers.iter().enumerate() {
        let shape = if l.weight_shape.is_empty() { "-".to_string() } else { format!("{:?}", l.weight_shape) };
        let macs = l.macs.map_or("?".to_string(), |m| m.to_string());
        writeln!(
            out,
            "{i:>4}  {:<width$}  {:<13}  {:<17}  {:<7}  {:<18}  {:>10}  {:>14}",
            l.name,
            l.op,
            l.role.as_str(),
            l.role.metric_group().to_string(),
            shape,
            l.params,
            macs
        )?;
    }
    let count = |kind: LayerKind| {
        let mut by_op: BTreeMap<&str, usize> = BTreeMap::new();
        layers.iter().filter(|l| l.kind == kind).for_each(|l| *by_op.entry(&l.op).or_default() += 1);
        let total: usize = by_op.values().sum();
        let parts: Vec<String> = by_op.iter().map(|(op, n)| format!("{n} {op}")).collect();
        format!("{total} ({})", parts.join(", "))
    };
    let mut by_role: BTreeMap<&str, usize> = BTreeMap::new();
    layers.iter().for_each(|l| *by_role.entry(l.role.as_str()).or_default() += 1);
    let roles: Vec<String> = by_role.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let params: u64 = layers.iter().map(|l| l.params).sum();
    let model_params: u64 =
        model.graph().initializer.iter().map(|t| t.dims.iter().product::<i64>().max(0) as u64).sum();
    let macs: u64 = layers.iter().filter_map(|l| l.macs).sum();
    writeln!(out)?;
    writeln!(out, "weight layers:        {}", count(LayerKind::Weight))?;
    writeln!(out, "activation products:  {}", count(LayerKind::ActMatMul))?;
    writeln!(out, "roles:                {}", roles.join(", "))?;
    writeln!(
        out,
        "parameters:           {:.2} M in the model ({model_params}), {:.2} M in weight layers ({params})",
        model_params as f64 / 1e6,
        params as f64 / 1e6
    )?;
    writeln!(out, "MACs per forward:     {macs} ({:.3} G, batch 1)", macs as f64 / 1e9)?;
    Ok(())
}

fn write_csv(out: &mut impl Write, layers: &[Layer]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["name", "op", "kind", "role", "group", "weight", "weight_shape", "params", "macs"])?;
    for l in layers {
        let shape: Vec<String> = l.weight_shape.iter().map(|d| d.to_string()).collect();
        let kind = match l.kind {
            LayerKind::Weight => "weight",
            LayerKind::ActMatMul => "act_matmul",
        };
        w.write_record([
            l.name.as_str(),
            &l.op,
            kind,
            l.role.as_str(),
            &l.role.metric_group().to_string(),
            l.weight.as_deref().unwrap_or(""),
            &shape.join("x"),
            &l.params.to_string(),
            &l.macs.map_or(String::new(), |m| m.to_string()),
        ])?;
    }
    w.flush()?;
    Ok(())
}
