//! `bitsearch report`: one self-contained HTML page with PNG figures (plotters, embedded
//! fonts) that a person reads to decide which plan to ship — a summary table, sensitivity
//! heatmaps, the bits each plan chose, the Pareto frontier, what the evaluated candidates
//! measured against what their plans predicted, and sample images side by side.
//! A missing input leaves its section with a note; an unreadable one is an error.

mod error;
mod figures;
mod fonts;
mod html;
mod measured;
pub mod names;

pub use error::{ReportError, Result};
pub use figures::{MAX_COLUMNS, MAX_LAYERS};

use bitsearch_records::{Plan, ProbeRow, SensitivityTable, read_evals, read_frontier};
use bitsearch_types::LayerInfo;
use figures::{Heatmap, bits_label, draw_frontier, draw_heatmap, draw_plan};
use html::Page;
use names::shorten;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the report is made from; everything but `out` may be missing.
#[derive(Debug, Clone, Default)]
pub struct ReportInputs {
    pub sensitivity: Option<PathBuf>,
    pub plans: Vec<PathBuf>,
    pub frontier: Option<PathBuf>,
    /// Folders of sample PNGs; the first is usually full precision.
    pub samples: Vec<PathBuf>,
    /// Evaluation records from `bitsearch eval`, one file per run.
    pub evals: Vec<PathBuf>,
    pub out: PathBuf,
}

/// SQNR colour range: below it the layer is broken anyway, above it is float rounding.
const SQNR_RANGE: (f64, f64) = (-10.0, 100.0);
/// SSIM is drawn as −log10(1 − SSIM) ("nines"), 0 to 6.
const SSIM_NINES: (f64, f64) = (0.0, 6.0);

/// Writes `index.html` and its figures into `inputs.out`; returns the page's path.
pub fn write_report(inputs: &ReportInputs) -> Result<PathBuf> {
    fonts::register();
    let out = &inputs.out;
    let table = inputs.sensitivity.as_deref().map(SensitivityTable::read).transpose()?;
    let plans = inputs.plans.iter().map(|p| Ok((p.clone(), Plan::read(p)?))).collect::<Result<Vec<_>>>()?;
    if let Some(table_path) = &inputs.sensitivity {
        let sha256 = bitsearch_types::sha256_file(table_path).map_err(|e| ReportError::file(table_path, e))?;
        if let Some((path, _)) = plans.iter().find(|(_, plan)| plan.source.sensitivity_sha256 != sha256) {
            return Err(ReportError::file(
                path,
                format!(
                    "source.sensitivity_sha256 does not match {} (the plan was solved from another table)",
                    table_path.display()
                ),
            ));
        }
    }
    let frontier = inputs.frontier.as_deref().map(read_frontier).transpose()?;
    let evals = inputs
        .evals
        .iter()
        .map(|p| read_evals(p).map(|(run, records)| (p.clone(), run, records)))
        .collect::<Result<Vec<_>, _>>()?;

    std::fs::create_dir_all(out).map_err(|e| ReportError::file(out, e))?;
    let mut page = Page::default();
    summary(&mut page, table.as_ref(), &plans);
    page.heading("Sensitivity");
    match &table {
        Some(table) => sensitivity(&mut page, table, out)?,
        None => page.note("No sensitivity table was given (--sensitivity), so there are no heatmaps."),
    }
    page.heading("Chosen bits");
    if plans.is_empty() {
        page.note("No plan was given (--plan), so no chosen bits are drawn.");
    }
    for (i, (path, plan)) in plans.iter().enumerate() {
        plan_section(&mut page, i, path, plan, out)?;
    }
    page.heading("Pareto frontier");
    match frontier.as_deref() {
        Some(points) if !points.is_empty() => {
            draw_frontier(points, &out.join("frontier.png"))?;
            let measured = if evals.is_empty() {
                "Measured SQNR joins in a figure of its own when the report is given evaluations (--eval)."
            } else {
                "The objective has no measured counterpart, so the measured SQNR of the evaluated candidates is \
                 drawn against mean bits, beside these plans' predicted SQNR, in the Measured section below."
            };
            page.figure(
                "frontier.png",
                "Pareto frontier",
                &format!(
                    "Predicted objective (log scale) against the budget. Each blue point is a plan the integer \
                     program found; red triangles are uniform plans (every quantized layer at one bit-width). Look \
                     for the knee where more budget stops buying much, and for how far below the uniform plans the \
                     frontier runs. {measured}"
                ),
            );
        }
        _ => page.note("No frontier was given (--frontier, from `bitsearch solve --sweep`)."),
    }
    measured::section(&mut page, &evals, frontier.as_deref().unwrap_or_default(), out)?;
    page.heading("Samples");
    samples(&mut page, &inputs.samples, out)?;
    let index = out.join("index.html");
    bitsearch_types::write_atomically(&index, page.render("bitsearch report").as_bytes())
        .map_err(|e| ReportError::file(&index, e))?;
    Ok(index)
}

fn summary(page: &mut Page, table: Option<&SensitivityTable>, plans: &[(PathBuf, Plan)]) {
    page.heading("Summary");
    if let Some(t) = table {
        let m = &t.meta;
        let layers = t.rows.iter().map(|r| r.layer.id()).collect::<std::collections::BTreeSet<_>>().len();
        page.table(&[
            vec!["model".into(), m.model.clone()],
            vec!["model sha256".into(), m.model_sha256.clone()],
            vec!["layers probed".into(), layers.to_string()],
            vec!["probes".into(), format!("{} of {}", t.rows.len(), m.probes_total)],
            vec!["pipeline, sampler, steps".into(), format!("{}, {}, {}", m.pipeline, m.sampler, m.steps)],
            vec!["items (condition or prompt, seed)".into(), m.items.join("; ")],
            vec!["device, tool version".into(), format!("{}, bitsearch {}", m.device, m.tool_version)],
            vec!["metric groups".into(), m.metric_groups.clone()],
        ]);
    }
    if plans.is_empty() {
        return;
    }
    let mut rows = vec![
        ["plan", "budgets", "weights", "compression", "avg bits", "BOPs", "pred. SQNR", "pred. SSIM", "solver"]
            .map(String::from)
            .to_vec(),
    ];
    for (path, plan) in plans {
        let s = &plan.summary;
        let budgets: Vec<String> =
            plan.budgets.iter().map(|b| format!("{} ≤ {}", b.resource, b.resource.format(b.limit))).collect();
        rows.push(vec![
            file_name(path),
            budgets.join(", "),
            format!("{:.2} MB of {:.2} MB", s.bytes / 1e6, s.float_bytes / 1e6),
            format!("{:.2}×", s.compression),
            format!("{:.3}", s.avg_bits),
            format!("{:.3e}", s.bops),
            format!("{:.2} dB", plan.prediction.sqnr_db),
            format!("{:.5}", plan.prediction.ssim),
            format!("{}, gap {:.1e}, {:.2} s", plan.solver.status, plan.solver.gap, plan.solver.seconds),
        ]);
    }
    page.table(&rows);
}

/// Layers in graph order, grouped by role (roles in order of first appearance).
fn layer_order<'a>(layers: impl Iterator<Item = &'a LayerInfo>) -> Vec<&'a LayerInfo> {
    let mut seen: Vec<&LayerInfo> = Vec::new();
    for layer in layers {
        if !seen.iter().any(|l| l.component == layer.component && l.name == layer.name) {
            seen.push(layer);
        }
    }
    let mut roles = Vec::new();
    for layer in &seen {
        if !roles.contains(&layer.role) {
            roles.push(layer.role);
        }
    }
    let mut ordered = Vec::with_capacity(seen.len());
    for role in roles {
        ordered.extend(seen.iter().filter(|l| l.role == role).copied());
    }
    ordered
}

fn label(layer: &LayerInfo) -> String {
    format!("{} [{}]", shorten(&layer.name), layer.role)
}

fn sensitivity(page: &mut Page, table: &SensitivityTable, out: &Path) -> Result<()> {
    let order = layer_order(table.rows.iter().map(|r| &r.layer));
    let rows: Vec<String> = order.iter().map(|l| label(l)).collect();
    let groups = table.meta.step_groups.len().max(1);
    let mut precisions: Vec<(u32, bool, u32)> =
        table.rows.iter().map(|r| (r.weight.bits(), r.weight.split(), r.a_bits)).collect();
    precisions.sort_unstable();
    precisions.dedup();
    let columns: Vec<String> = precisions
        .iter()
        .map(|&(w, split, a)| {
            let w = if split { format!("{} split", bits_label(w)) } else { bits_label(w) };
            if a >= 32 { w } else { format!("{w}A{a}") }
        })
        .collect();
    let index: BTreeMap<(String, u32, bool, u32, u32), &ProbeRow> = table
        .rows
        .iter()
        .map(|r| ((r.layer.id(), r.weight.bits(), r.weight.split(), r.a_bits, r.step_group), r))
        .collect();
    let cell = |layer: &LayerInfo, (w, split, a): (u32, bool, u32), g: u32, f: fn(&ProbeRow) -> f64| {
        index.get(&(layer.id(), w, split, a, g)).map(|r| f(r))
    };
    let nines = |r: &ProbeRow| if r.ssim >= 1.0 { SSIM_NINES.1 } else { -(1.0 - r.ssim).log10() };
    let first_group = if groups > 1 { " (probes quantizing during the first step group)" } else { "" };
    for (file, title, desc, f, range, caption) in [
        (
            "sensitivity_sqnr.png",
            "SQNR of the denoiser output",
            "SQNR (dB)",
            (|r: &ProbeRow| r.sqnr_db) as fn(&ProbeRow) -> f64,
            SQNR_RANGE,
            "Each cell is one probe: that layer alone quantized at that precision, everything else in float. Dark \
             cells are sensitive layers (low SQNR: the denoiser output changes most); they are the ones a plan \
             should keep at more bits. Quality-group layers are allocated by this metric.",
        ),
        (
            "sensitivity_ssim.png",
            "SSIM of the final image",
            "−log10(1 − SSIM)",
            nines,
            SSIM_NINES,
            "The same probes scored by the final image's SSIM against full precision, drawn as its nines (3 means \
             SSIM 0.999). Dark cells change what is drawn; content-group layers (cross-attention, feed-forward) are \
             allocated by this metric.",
        ),
    ] {
        if let Some(why) = figures::oversized(order.len(), precisions.len(), "precisions") {
            page.note(&format!("The figure \"{title}\" is left out: the table has {why}."));
            continue;
        }
        let heatmap = Heatmap {
            title: format!("{title}{first_group}"),
            rows: rows.clone(),
            columns: columns.clone(),
            x_desc: "precision (weight bits, activation bits)".into(),
            values: order.iter().map(|l| precisions.iter().map(|&p| cell(l, p, 0, f)).collect()).collect(),
            value_desc: desc.into(),
            range,
        };
        draw_heatmap(&heatmap, &out.join(file))?;
        page.figure(file, title, caption);
    }
    if groups > 1 {
        if let Some(why) = figures::oversized(order.len(), groups, "step groups") {
            page.note(&format!("The figure \"SQNR per step group\" is left out: the table has {why}."));
            return Ok(());
        }
        let lowest = precisions[0];
        let heatmap = Heatmap {
            title: format!("SQNR per step group at {}", columns[0]),
            rows,
            columns: table.meta.step_groups.iter().map(|[a, b]| format!("steps {a}-{b}")).collect(),
            x_desc: "step group the layer is quantized in".into(),
            values: order
                .iter()
                .map(|l| (0..groups as u32).map(|g| cell(l, lowest, g, |r| r.sqnr_db)).collect())
                .collect(),
            value_desc: "SQNR (dB)".into(),
            range: SQNR_RANGE,
        };
        draw_heatmap(&heatmap, &out.join("sensitivity_steps.png"))?;
        page.figure(
            "sensitivity_steps.png",
            "SQNR per step group",
            "Each layer quantized at its fewest bits during one step group only. Columns that stay bright are \
             steps where the layer can be quantized hard (PTQD's step awareness); a step-aware plan spends its bits \
             on the dark columns.",
        );
    }
    Ok(())
}

fn plan_section(page: &mut Page, i: usize, path: &Path, plan: &Plan, out: &Path) -> Result<()> {
    let order = layer_order(plan.layers.iter().map(|l| &l.layer));
    let rows: Vec<figures::PlanRow> = order
        .iter()
        .filter_map(|info| {
            let layer = plan.layers.iter().find(|l| l.layer == **info)?;
            Some(figures::PlanRow {
                label: label(info),
                bits: layer.weights.iter().map(|w| w.bits()).collect(),
                kilobytes: layer.weight_bytes as f64 / 1e3,
            })
        })
        .collect();
    let file = format!("plan_{i}.png");
    let title = format!(
        "Plan {}: {:.3} bits on average, {:.2} MB",
        file_name(path),
        plan.summary.avg_bits,
        plan.summary.bytes / 1e6
    );
    let groups = plan.step_groups.len().max(1);
    if let Some(why) = figures::oversized(rows.len(), groups, "step groups") {
        page.note(&format!("The figure of plan {} is left out: the plan has {why}.", file_name(path)));
        return Ok(());
    }
    draw_plan(&title, &rows, groups, &out.join(&file))?;
    page.figure(
        &file,
        &title,
        "Weight bits per layer (and per step group) as the plan chose them, grey for layers kept in float \
         (protected), with each layer's stored weight size. Sensitive layers from the heatmaps should sit at \
         the cold colours; the large bars show where the memory goes.",
    );
    Ok(())
}

/// The sample grid: one column per folder, one row per sample file name (16-bit height maps
/// left out), images copied next to the page so the report travels as one folder.
fn samples(page: &mut Page, folders: &[PathBuf], out: &Path) -> Result<()> {
    if folders.is_empty() {
        page.note("No sample folders were given (--samples DIR, full precision first, then one per plan).");
        return Ok(());
    }
    let mut names: Vec<String> = Vec::new();
    let mut columns = Vec::new();
    for (c, folder) in folders.iter().enumerate() {
        let entries = std::fs::read_dir(folder).map_err(|e| ReportError::file(folder, e))?;
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".png") && !n.ends_with("_height16.png"))
            .collect();
        files.sort();
        let dest = out.join("samples").join(format!("{c}"));
        std::fs::create_dir_all(&dest).map_err(|e| ReportError::file(&dest, e))?;
        for f in &files {
            let png = std::fs::read(folder.join(f)).map_err(|e| ReportError::file(&folder.join(f), e))?;
            bitsearch_types::write_atomically(&dest.join(f), &png).map_err(|e| ReportError::file(&dest.join(f), e))?;
            if !names.contains(f) {
                names.push(f.clone());
            }
        }
        columns.push((file_name(folder), c, files));
    }
    names.sort();
    let header: Vec<String> = columns.iter().map(|(label, ..)| label.clone()).collect();
    let rows: Vec<(String, Vec<Option<String>>)> = names
        .iter()
        .map(|n| {
            let cells =
                columns.iter().map(|(_, c, files)| files.contains(n).then(|| format!("samples/{c}/{n}"))).collect();
            (n.trim_end_matches(".png").to_string(), cells)
        })
        .collect();
    page.paragraph(
        "Samples of the same seeds side by side: the first column is usually full precision, the others the \
         quantized plans. Look for changed content (what is drawn) as well as noise or banding (quality).",
    );
    page.image_grid(&header, &rows);
    Ok(())
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
