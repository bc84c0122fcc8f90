//! `bitsearch eval`: candidates against the full-precision reference on held-out items, a
//! Parquet record and a table with measured numbers beside the plan's predictions.

use super::quantize::sensitivity_generation;
use super::read_prompts;
use crate::cli::printer::{Align, Column, Printer, Table};
use crate::cli::{EvalArgs, MemoryArgs, paths, settings};
use anyhow::Context;
use bitsearch_eval::{Candidate, EvalOptions, Progress, evaluate, held_out, manifest_of, opening_memory};
use bitsearch_pipeline::image::save_samples;
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_records::{EvalRecord, Plan, write_evals};
use bitsearch_types::write_atomically;
use std::path::{Path, PathBuf};

/// Range of the images the pipelines produce.
const IMAGE_RANGE: (f32, f32) = (-1.0, 1.0);

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let mut outputs = vec![("--out", args.out.as_path())];
    outputs.extend(args.samples.as_deref().map(|p| ("--samples", p)));
    outputs.extend(args.markdown.as_deref().map(|p| ("--markdown", p)));
    let inputs = std::iter::once(&args.reference)
        .chain(&args.candidates)
        .chain(&args.simulate)
        .chain(&args.sensitivity)
        .chain(&args.prompts);
    paths::keep_apart(&outputs, inputs.map(PathBuf::as_path))?;
    for model in std::iter::once(&args.reference).chain(&args.candidates) {
        bitsearch_pipeline::workload::check_model_path(model)?;
    }
    let mut candidates: Vec<Candidate> = args.candidates.iter().cloned().map(Candidate::Model).collect();
    candidates.extend(args.simulate.iter().cloned().map(Candidate::Simulated));
    if candidates.is_empty() {
        anyhow::bail!("give at least one candidate model (or --simulate PLAN)");
    }
    let sensitivity = match &args.sensitivity {
        Some(table) => table.clone(),
        None => sensitivity_table(&candidates)?,
    };
    let base = sensitivity_generation(&sensitivity)?;
    let prompts = match &args.prompts {
        Some(path) => Some(read_prompts(path)?),
        None if !base.prompts.is_empty() && args.reference.join("heldout_prompts.txt").is_file() => {
            Some(read_prompts(&args.reference.join("heldout_prompts.txt"))?)
        }
        None => None,
    };
    let (spec, held) = settings::eval(args, base, |base| held_out(base, args.seeds.clone(), args.num_seeds, prompts));
    let mut out = Printer::stdout();
    out.line(format_args!("evaluation items: {held}"))?;
    let options = EvalOptions { spec, repeats: args.repeats, held_out: held };
    // Memory is measured in a fresh process per model (within one, freed sessions' memory is
    // reused), and first: a failure there costs seconds, not the evaluation's minutes.
    let reference_bytes = child_memory(&args.reference, &options.spec)?;
    let candidate_bytes = candidates
        .iter()
        .map(|c| match c {
            Candidate::Model(path) => child_memory(path, &options.spec).map(Some),
            Candidate::Simulated(_) => Ok(None),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut evaluation = evaluate(&args.reference, &candidates, &options, &mut Log)?;
    for (record, bytes) in evaluation.records.iter_mut().zip(candidate_bytes) {
        record.reference_cost.session_bytes = reference_bytes;
        if let Some(bytes) = bytes {
            record.cost.session_bytes = bytes;
        }
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    write_evals(&args.out, &evaluation.run, &evaluation.records)?;
    out.text(&table(&evaluation.records).text())?;
    out.text(&reference_line(&evaluation.records, false))?;
    if let Some(path) = &args.markdown {
        let text = format!(
            "Items: {}; {} on {}.\n\n{}{}",
            evaluation.run.held_out,
            evaluation.run.sampler,
            evaluation.run.device,
            table(&evaluation.records).markdown(),
            reference_line(&evaluation.records, true)
        );
        write_atomically(path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let Some(dir) = &args.samples {
        save_samples(evaluation.reference_images.view(), IMAGE_RANGE, &dir.join("reference"), "sample_", 0)?;
        for (i, images) in evaluation.candidate_images.iter().enumerate() {
            save_samples(images.view(), IMAGE_RANGE, &dir.join(format!("candidate_{i}")), "sample_", 0)?;
        }
        out.line(format_args!("samples: {}", dir.display()))?;
    }
    out.line(format_args!(
        "{}: {} item(s) on {}",
        args.out.display(),
        evaluation.run.items.len(),
        evaluation.run.device
    ))?;
    Ok(())
}

/// `bitsearch memory`: prints the bytes opening the model adds (see [`child_memory`]).
pub fn memory(args: &MemoryArgs) -> anyhow::Result<()> {
    let mut spec: WorkloadSpec = serde_json::from_str(&args.spec).context("--spec")?;
    spec.unverified = args.no_verify;
    Printer::stdout().line(opening_memory(&args.model, &spec)?)?;
    Ok(())
}

/// The resident memory opening `model` adds, measured by this binary in a child process (which
/// skips the files' sha256 check: `evaluate` checks them, and a child that fails only ends the run).
fn child_memory(model: &Path, spec: &WorkloadSpec) -> anyhow::Result<u64> {
    let exe = std::env::current_exe().context("the bitsearch binary")?;
    let output = std::process::Command::new(exe)
        .args([
            "memory",
            &model.display().to_string(),
            "--quiet",
            "--no-verify",
            "--spec",
            &serde_json::to_string(spec)?,
        ])
        .output()
        .context("running the memory measurement")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!("memory of {}: {}", model.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    stdout.trim().parse::<u64>().with_context(|| format!("memory of {}: '{}'", model.display(), stdout.trim()))
}

/// The sensitivity table behind the first candidate that comes from a plan.
fn sensitivity_table(candidates: &[Candidate]) -> anyhow::Result<PathBuf> {
    for candidate in candidates {
        let plan = match candidate {
            Candidate::Simulated(plan) => Some(plan.clone()),
            Candidate::Model(path) => manifest_of(path)?.map(|m| m.plan),
        };
        if let Some(plan) = plan {
            return Ok(Plan::read(&plan)?.source.sensitivity_table);
        }
    }
    anyhow::bail!("no candidate comes from a plan: name the sensitivity table whose items to avoid with --sensitivity")
}

/// The measured table: one row per candidate, measured beside predicted.
fn table(records: &[EvalRecord]) -> Table {
    const HEADER: [&str; 13] = [
        "candidate",
        "bits",
        "pred. SQNR dB",
        "SQNR dB",
        "SSIM",
        "pred. PSNR dB",
        "PSNR dB",
        "caption",
        "size MB",
        "size ×",
        "memory MB",
        "call ms",
        "time ×",
    ];
    let columns = HEADER
        .iter()
        .enumerate()
        .map(|(c, h)| Column::fit(h, if c == 0 { Align::Left } else { Align::Right }))
        .collect();
    let mut table = Table::new(columns, "  ");
    // Predictions a plan's loss basis does not make (or a candidate without a plan) print as "-".
    let predicted = |v: f64| if v.is_nan() { "-".into() } else { format!("{v:.2}") };
    // Candidates that describe alike (two plans at one budget) are told apart by file name.
    let label = |r: &EvalRecord| match Path::new(&r.candidate).file_name() {
        Some(name) if records.iter().filter(|o| o.label == r.label).count() > 1 => {
            format!("{} {}", r.label, name.to_string_lossy())
        }
        _ => r.label.clone(),
    };
    for r in records {
        table.push(vec![
            label(r),
            format!("{:.2}", r.avg_bits),
            predicted(r.predicted_sqnr_db),
            format!("{:.2}", r.sqnr_db),
            format!("{:.4}", r.ssim),
            predicted(r.predicted_psnr_db),
            format!("{:.2}", r.psnr_db),
            if r.caption.is_nan() { "-".into() } else { format!("{:.3}", r.caption) },
            mb(r.cost.file_bytes),
            format!("{:.3}", r.size_ratio()),
            if r.cost.session_bytes == 0 { "-".into() } else { mb(r.cost.session_bytes) },
            format!("{:.2}", r.cost.call_ms),
            format!("{:.3}", r.latency_ratio()),
        ]);
    }
    table
}

/// What the reference costs, after the table (a blank line before it in Markdown).
fn reference_line(records: &[EvalRecord], markdown: bool) -> String {
    let Some(r) = records.first() else { return String::new() };
    let caption =
        if r.reference_caption.is_nan() { String::new() } else { format!(", caption {:.3}", r.reference_caption) };
    format!(
        "{}reference: {} MB on disk, {} MB resident, start {:.2} s, {:.2} ms per denoiser call, {:.2} ms per image{caption}\n",
        if markdown { "\n" } else { "" },
        mb(r.reference_cost.file_bytes),
        mb(r.reference_cost.session_bytes),
        r.reference_cost.start_seconds,
        r.reference_cost.call_ms,
        r.reference_cost.image_ms,
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

/// Stage messages to the log.
struct Log;

impl Progress for Log {
    fn stage(&mut self, message: &str) {
        log::info!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitsearch_records::Cost;

    fn record(label: &str, candidate: &str) -> EvalRecord {
        let cost = Cost { file_bytes: 1000, session_bytes: 2000, start_seconds: 0.5, call_ms: 10.0, image_ms: 20.0 };
        EvalRecord {
            label: label.into(),
            candidate: candidate.into(),
            kind: "ilp".into(),
            avg_bits: 4.0,
            predicted_sqnr_db: f64::NAN,
            predicted_ssim: f64::NAN,
            predicted_psnr_db: 40.0,
            sqnr_db: 20.0,
            ssim: 0.99,
            psnr_db: 38.0,
            mse: 1e-4,
            nonfinite: 0,
            caption: 0.99,
            reference_caption: 0.98,
            cost,
            reference_cost: cost,
        }
    }

    #[test]
    fn candidates_that_describe_alike_are_told_apart_by_file_name() {
        let plan = "ilp 4.00 bits (lowbit)";
        let records = [record(plan, "out/q-all-4"), record(plan, "out/q-gptq-4"), record("uniform 4.00 bits", "out/u")];
        let markdown = table(&records).markdown();
        for label in [format!("{plan} q-all-4"), format!("{plan} q-gptq-4"), "uniform 4.00 bits".into()] {
            assert!(markdown.contains(&format!("| {label} |")), "{markdown}");
        }
        assert!(!markdown.contains("| uniform 4.00 bits u |"), "{markdown}");
    }
}
