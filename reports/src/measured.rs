//! The Measured section: what `bitsearch eval` measured of each candidate against the
//! full-precision reference on held-out items, next to what its plan predicted — a sentence
//! per evaluation file, one table row per candidate, and the figures that put measured SQNR
//! beside the predictions.

use crate::error::Result;
use crate::figures::{draw_measured_vs_predicted, draw_sqnr_bits, placed};
use crate::html::Page;
use bitsearch_records::{EvalRecord, EvalRun, FrontierPoint};
use std::path::{Path, PathBuf};

/// Items listed by name in the sentence; more are counted only.
const LISTED_ITEMS: usize = 8;

/// One evaluation file as read.
pub type Evaluation = (PathBuf, EvalRun, Vec<EvalRecord>);

pub fn section(page: &mut Page, evals: &[Evaluation], frontier: &[FrontierPoint], out: &Path) -> Result<()> {
    page.heading("Measured");
    if evals.is_empty() {
        page.note(
            "No evaluation was given (--eval, from `bitsearch eval`), so nothing measured is shown: every SQNR and \
             SSIM above is a prediction.",
        );
        return Ok(());
    }
    for (path, run, records) in evals {
        page.paragraph(&sentence(path, run, records));
    }
    let records: Vec<(&Path, &EvalRecord)> =
        evals.iter().flat_map(|(path, _, records)| records.iter().map(move |r| (path.as_path(), r))).collect();
    if records.is_empty() {
        page.note("The evaluation files hold no candidate.");
        return Ok(());
    }
    page.table(&table(&records, evals.len() > 1));
    let all: Vec<EvalRecord> = records.iter().map(|(_, r)| (*r).clone()).collect();
    if all.iter().any(placed) {
        draw_sqnr_bits(frontier, &all, &out.join("measured_sqnr_bits.png"))?;
        page.figure("measured_sqnr_bits.png", "SQNR against mean weight bits", &bits_caption(!frontier.is_empty()));
    }
    if all.iter().any(|r| r.predicted_sqnr_db.is_finite() && r.sqnr_db.is_finite()) {
        draw_measured_vs_predicted(&all, &out.join("measured_vs_predicted.png"))?;
        page.figure(
            "measured_vs_predicted.png",
            "Measured against predicted SQNR",
            "Each diamond is one candidate with a plan: its predicted SQNR across, the measured one up, coloured by \
             kind. On the dashed diagonal the additive model was exact; below it the layers' noise added up to more \
             than predicted (they interact), above it to less. A common offset still ranks the plans right; points \
             that swap order across the diagonal mean the prediction ranks them wrong.",
        );
    }
    Ok(())
}

/// What an evaluation file measured on, in one sentence.
fn sentence(path: &Path, run: &EvalRun, records: &[EvalRecord]) -> String {
    let n = run.items.len();
    let mut items = run.items.iter().take(LISTED_ITEMS).cloned().collect::<Vec<_>>().join("; ");
    if n > LISTED_ITEMS {
        items.push_str(&format!("; … {} more", n - LISTED_ITEMS));
    }
    if !items.is_empty() {
        items.insert_str(0, ": ");
    }
    let reference = match records.first() {
        Some(r) => format!(
            " ({} on disk, {} per denoiser call)",
            size(r.reference_cost.file_bytes),
            milliseconds(r.reference_cost.call_ms)
        ),
        None => String::new(),
    };
    format!(
        "{}: {} candidate{} measured against the reference {}{reference} on {}, {} sampler, {} steps, over {n} \
         held-out item{} — {}{items}.",
        crate::file_name(path),
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        run.reference,
        run.device,
        run.sampler,
        run.steps,
        if n == 1 { "" } else { "s" },
        run.held_out,
    )
}

/// The table: a header and one row per candidate; the caption and non-finite columns only
/// when some candidate has them, the file column only for several files.
fn table(records: &[(&Path, &EvalRecord)], with_file: bool) -> Vec<Vec<String>> {
    let captions = records.iter().any(|(_, r)| r.caption.is_finite());
    let nonfinite = records.iter().any(|(_, r)| r.nonfinite > 0);
    let mut header: Vec<&str> = Vec::new();
    if with_file {
        header.push("evaluation");
    }
    header.extend(["candidate", "kind", "mean bits", "pred. SQNR", "SQNR", "SQNR − pred.", "SSIM", "PSNR"]);
    if captions {
        header.push("caption acc. (reference)");
    }
    if nonfinite {
        header.push("non-finite outputs");
    }
    header.extend(["file size (× ref.)", "session memory (× ref.)", "per denoiser call (× ref.)"]);
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for (path, r) in records {
        let mut row = Vec::new();
        if with_file {
            row.push(crate::file_name(path));
        }
        let (ref_cost, cost) = (&r.reference_cost, &r.cost);
        row.extend([
            r.label.clone(),
            r.kind.clone(),
            number(r.avg_bits, |v| format!("{v:.3}")),
            number(r.predicted_sqnr_db, |v| format!("{v:.2} dB")),
            number(r.sqnr_db, |v| format!("{v:.2} dB")),
            number(r.sqnr_db - r.predicted_sqnr_db, |v| format!("{v:+.2} dB")),
            number(r.ssim, |v| format!("{v:.5}")),
            number(r.psnr_db, |v| format!("{v:.2} dB")),
        ]);
        if captions {
            row.push(number(r.caption, |v| {
                format!("{v:.3}{}", number_or_empty(r.reference_caption, |c| format!(" ({c:.3})")))
            }));
        }
        if nonfinite {
            row.push(r.nonfinite.to_string());
        }
        let ratio = |v: f64| number_or_empty(v, |v| format!(" ({v:.2}×)"));
        row.extend([
            format!("{}{}", size(cost.file_bytes), ratio(r.size_ratio())),
            // 0: not measured (a float simulation runs inside the evaluating process).
            if cost.session_bytes == 0 {
                "—".to_string()
            } else {
                format!(
                    "{}{}",
                    size(cost.session_bytes),
                    ratio(cost.session_bytes as f64 / ref_cost.session_bytes as f64)
                )
            },
            format!("{}{}", milliseconds(cost.call_ms), ratio(r.latency_ratio())),
        ]);
        rows.push(row);
    }
    rows
}

/// A finite value formatted, or a dash.
fn number(v: f64, format: impl Fn(f64) -> String) -> String {
    if v.is_finite() { format(v) } else { "—".into() }
}

/// A finite value formatted, or nothing.
fn number_or_empty(v: f64, format: impl Fn(f64) -> String) -> String {
    if v.is_finite() { format(v) } else { String::new() }
}

/// Bytes in the unit people read (decimal).
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} KB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

fn milliseconds(ms: f64) -> String {
    number(ms, |v| format!("{v:.1} ms"))
}

fn bits_caption(with_frontier: bool) -> String {
    let predicted = if with_frontier {
        "Lines and triangles are the frontier's plans at their predicted SQNR (ILP, greedy, uniform bit-widths). "
    } else {
        ""
    };
    format!(
        "Measured SQNR is drawn here rather than on the frontier, whose axis is the predicted objective: a \
         normalised loss that mixes the quality and content terms and has no measured counterpart. Across is the \
         mean weight bits of the quantized layers, up the denoiser-output SQNR. {predicted}Each black diamond is a \
         candidate as measured on the held-out items, joined by a dashed segment to the hollow circle of its \
         plan's prediction: the length of the segment is what the additive model missed. Candidates without a plan \
         have no mean bits and are in the table only."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_their_unit() {
        assert_eq!(size(250), "250 B");
        assert_eq!(size(1_500), "1.5 KB");
        assert_eq!(size(8_970_000), "8.97 MB");
        assert_eq!(size(3_200_000_000), "3.20 GB");
    }
}
