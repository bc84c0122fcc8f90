//! `bitsearch inspect`: the quantizable layers of a model, their roles and costs.

use crate::cli::printer::{Align, Column, Printer, Table};
use crate::cli::{Format, InspectArgs};
use anyhow::Context;
use bitsearch_onnx::Model;
use bitsearch_types::{Layer, LayerKind};
use std::collections::BTreeMap;

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let path = bitsearch_pipeline::workload::denoiser_file(&args.model);
    let model = Model::load(&path)?;
    let dims = bitsearch_pipeline::workload::measuring_dims(&path, &model, &args.dims)?;
    let layers = bitsearch_runtime::layers_with_costs(&model, bitsearch_types::Component::Unet, &dims)
        .with_context(|| format!("{}: measuring layer shapes", path.display()))?;
    let mut out = Printer::stdout();
    match args.format {
        Format::Table | Format::Markdown => {
            out.table(&table(&layers), args.format)?;
            out.text(&summary(&model, &layers))?;
        }
        Format::Csv => out.table(&records(&layers), Format::Csv)?,
        Format::Json => out.json(&layers)?,
    }
    Ok(())
}

/// One row per layer, in graph order.
fn table(layers: &[Layer]) -> Table {
    let name = Column { min: 4, max: 60, ..Column::fit("name", Align::Left) };
    let columns = vec![
        Column::fixed("#", Align::Right, 4),
        name,
        Column::fixed("op", Align::Left, 13),
        Column::fixed("role", Align::Left, 17),
        Column::fixed("group", Align::Left, 7),
        Column::fixed("weight", Align::Left, 18),
        Column::fixed("params", Align::Right, 10),
        Column::fixed("MACs", Align::Right, 14),
    ];
    let mut table = Table::new(columns, "  ");
    for (i, l) in layers.iter().enumerate() {
        let shape = if l.weight_shape.is_empty() { "-".to_string() } else { format!("{:?}", l.weight_shape) };
        table.push(vec![
            i.to_string(),
            l.name.clone(),
            l.op.clone(),
            l.role.as_str().to_string(),
            l.role.metric_group().to_string(),
            shape,
            l.params.to_string(),
            l.macs.map_or("?".to_string(), |m| m.to_string()),
        ]);
    }
    table
}

/// Counts by kind, op and role, and the model's parameters and MACs.
fn summary(model: &Model, layers: &[Layer]) -> String {
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
    format!(
        "\nweight layers:        {}\nactivation products:  {}\nroles:                {}\n\
         parameters:           {:.2} M in the model ({model_params}), {:.2} M in weight layers ({params})\n\
         MACs per forward:     {macs} ({:.3} G, batch 1)\n",
        count(LayerKind::Weight),
        count(LayerKind::ActMatMul),
        roles.join(", "),
        model_params as f64 / 1e6,
        params as f64 / 1e6,
        macs as f64 / 1e9
    )
}

/// Every field of every layer, for CSV.
fn records(layers: &[Layer]) -> Table {
    const HEADER: [&str; 9] = ["name", "op", "kind", "role", "group", "weight", "weight_shape", "params", "macs"];
    let mut table = Table::new(HEADER.iter().map(|h| Column::fit(h, Align::Left)).collect(), ",");
    for l in layers {
        let shape: Vec<String> = l.weight_shape.iter().map(|d| d.to_string()).collect();
        let kind = match l.kind {
            LayerKind::Weight => "weight",
            LayerKind::ActMatMul => "act_matmul",
        };
        table.push(vec![
            l.name.clone(),
            l.op.clone(),
            kind.to_string(),
            l.role.as_str().to_string(),
            l.role.metric_group().to_string(),
            l.weight.clone().unwrap_or_default(),
            shape.join("x"),
            l.params.to_string(),
            l.macs.map_or(String::new(), |m| m.to_string()),
        ]);
    }
    table
}
