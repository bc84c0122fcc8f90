//! Measured against predicted: the SQNR `bitsearch eval` measured for each candidate next to
//! what its plan (and the frontier's plans) predicted, against mean weight bits; and measured
//! SQNR against predicted SQNR with the line where the two agree.

use super::{axes, legend, plan_line};
use crate::error::{ReportError, Result};
use crate::fonts::FAMILY;
use bitsearch_records::{EvalRecord, FrontierPoint, PointKind};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const BLUE: RGBColor = RGBColor(69, 117, 180);
const GREEN: RGBColor = RGBColor(26, 152, 80);
const RED: RGBColor = RGBColor(215, 48, 39);
const PURPLE: RGBColor = RGBColor(118, 42, 131);
const GREY: RGBColor = RGBColor(120, 120, 120);

/// A filled diamond of half-width `r` pixels around `(x, y)`: the marker of measured points.
fn diamond(x: i32, y: i32, r: i32, colour: RGBColor) -> Polygon<(i32, i32)> {
    Polygon::new(vec![(x, y - r), (x + r, y), (x, y + r), (x - r, y)], colour.filled())
}

/// A candidate's label beside its marker at `(x, y)`: to the right, or to the left in the
/// right third of the x range `(lo, hi)` so that the edge does not cut it off.
fn tag(label: &str, (x, y): (f64, f64), (lo, hi): (f64, f64)) -> Text<'static, (f64, f64), String> {
    let (gap, anchor) = ((hi - lo) * 0.015, x > lo + (hi - lo) * 2.0 / 3.0);
    let (x, h) = if anchor { (x - gap, HPos::Right) } else { (x + gap, HPos::Left) };
    Text::new(label.to_string(), (x, y), TextStyle::from((FAMILY, 11)).pos(Pos::new(h, VPos::Center)))
}

/// Points closer than this (in bits or dB) look like one on the figures.
const NEAR: f64 = 0.05;

/// One label per distinct point: candidates that land on the same spot (a quantized model and
/// its float simulation, typically) share one, their names joined, instead of overprinting.
fn tags(
    records: &[&EvalRecord],
    at: impl Fn(&EvalRecord) -> (f64, f64),
    range: (f64, f64),
) -> Vec<Text<'static, (f64, f64), String>> {
    let mut spots: Vec<((f64, f64), Vec<&str>)> = Vec::new();
    for r in records {
        let point = at(r);
        let same = |(x, y): (f64, f64)| (x - point.0).abs() < NEAR && (y - point.1).abs() < NEAR;
        match spots.iter_mut().find(|(p, _)| same(*p)) {
            Some((_, labels)) => labels.push(&r.label),
            None => spots.push((point, vec![&r.label])),
        }
    }
    spots.into_iter().map(|(point, labels)| tag(&labels.join("; "), point, range)).collect()
}

/// The colour of a candidate's kind, as the frontier draws plans of that kind.
fn kind_colour(kind: &str) -> RGBColor {
    match kind {
        "ilp" => BLUE,
        "greedy" => GREEN,
        "uniform" => RED,
        "simulated" => PURPLE,
        _ => GREY,
    }
}

/// The low and high ends of `values`, padded by 8% (at least 0.5) on each side.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad, hi + pad)
}

/// Whether the candidate can be placed on the mean-bits axis with its measured SQNR.
pub fn placed(r: &EvalRecord) -> bool {
    r.avg_bits.is_finite() && r.sqnr_db.is_finite()
}

/// SQNR against mean weight bits: the frontier's predictions (lines and triangles as on the
/// frontier), each evaluated candidate's prediction (hollow circle) and measurement (diamond),
/// joined by a dashed segment. Candidates without mean bits (`model`) are left out.
pub fn draw_sqnr_bits(frontier: &[FrontierPoint], evals: &[EvalRecord], path: &Path) -> Result<()> {
    let title = "SQNR against mean weight bits";
    let error = |e: &dyn std::fmt::Display| ReportError::figure(title, e);
    let predicted: Vec<&FrontierPoint> =
        frontier.iter().filter(|p| p.avg_bits.is_finite() && p.sqnr_db.is_finite()).collect();
    let measured: Vec<&EvalRecord> = evals.iter().filter(|r| placed(r)).collect();
    if measured.is_empty() {
        return Err(error(&"no candidate with mean bits and a finite measured SQNR"));
    }
    let has_prediction = |r: &&&EvalRecord| r.predicted_sqnr_db.is_finite();
    let xs = predicted.iter().map(|p| p.avg_bits).chain(measured.iter().map(|r| r.avg_bits));
    let ys = predicted.iter().map(|p| p.sqnr_db).chain(measured.iter().map(|r| r.sqnr_db));
    let ys = ys.chain(measured.iter().filter(has_prediction).map(|r| r.predicted_sqnr_db));
    let ((x_lo, x_hi), (y_lo, y_hi)) = (span(xs), span(ys));
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let descs = ("mean weight bits of the quantized layers", "denoiser-output SQNR (dB, higher is better)");
    let mut chart = axes(&root, title, 70, (x_lo..x_hi, y_lo..y_hi), descs)?;
    for (kind, label, colour) in
        [(PointKind::Ilp, "ILP plans, predicted", BLUE), (PointKind::Greedy, "greedy plans, predicted", GREEN)]
    {
        let mut line: Vec<(f64, f64)> =
            predicted.iter().filter(|p| p.kind == kind).map(|p| (p.avg_bits, p.sqnr_db)).collect();
        if line.is_empty() {
            continue;
        }
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        plan_line(&mut chart, title, label, colour, &line)?;
    }
    let uniform: Vec<&&FrontierPoint> = predicted.iter().filter(|p| p.kind == PointKind::Uniform).collect();
    if !uniform.is_empty() {
        chart
            .draw_series(uniform.iter().map(|p| TriangleMarker::new((p.avg_bits, p.sqnr_db), 7, RED.filled())))
            .map_err(|e| error(&e))?
            .label("uniform bit-width, predicted")
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, RED.filled()));
    }
    let with_prediction: Vec<&&EvalRecord> = measured.iter().filter(has_prediction).collect();
    chart
        .draw_series(with_prediction.iter().map(|r| {
            DashedPathElement::new(
                [(r.avg_bits, r.predicted_sqnr_db), (r.avg_bits, r.sqnr_db)],
                4,
                3,
                GREY.stroke_width(1),
            )
        }))
        .map_err(|e| error(&e))?;
    if !with_prediction.is_empty() {
        chart
            .draw_series(
                with_prediction
                    .iter()
                    .map(|r| Circle::new((r.avg_bits, r.predicted_sqnr_db), 6, BLACK.stroke_width(2))),
            )
            .map_err(|e| error(&e))?
            .label("evaluated plan, predicted")
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, BLACK.stroke_width(2)));
    }
    chart
        .draw_series(measured.iter().map(|r| EmptyElement::at((r.avg_bits, r.sqnr_db)) + diamond(0, 0, 7, BLACK)))
        .map_err(|e| error(&e))?
        .label("measured")
        .legend(move |(x, y)| diamond(x + 10, y, 6, BLACK));
    chart.draw_series(tags(&measured, |r| (r.avg_bits, r.sqnr_db), (x_lo, x_hi))).map_err(|e| error(&e))?;
    legend(&mut chart, title, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| error(&e))
}

/// Measured SQNR against the plan's predicted SQNR, one diamond per candidate coloured by its
/// kind, with the line where measurement equals prediction.
pub fn draw_measured_vs_predicted(evals: &[EvalRecord], path: &Path) -> Result<()> {
    let title = "Measured against predicted SQNR";
    let error = |e: &dyn std::fmt::Display| ReportError::figure(title, e);
    let points: Vec<&EvalRecord> =
        evals.iter().filter(|r| r.predicted_sqnr_db.is_finite() && r.sqnr_db.is_finite()).collect();
    if points.is_empty() {
        return Err(error(&"no candidate with a finite predicted and measured SQNR"));
    }
    // One square range for both axes, so the y = x line is the diagonal.
    let (lo, hi) = span(points.iter().flat_map(|r| [r.predicted_sqnr_db, r.sqnr_db]));
    let root = BitMapBackend::new(path, (620, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let descs = ("predicted SQNR (dB, additive model)", "measured SQNR (dB)");
    let mut chart = axes(&root, title, 70, (lo..hi, lo..hi), descs)?;
    chart
        .draw_series(DashedLineSeries::new([(lo, lo), (hi, hi)], 6, 4, GREY.stroke_width(1)))
        .map_err(|e| error(&e))?
        .label("measured = predicted")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY.stroke_width(1)));
    let mut kinds: Vec<&str> = points.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let colour = kind_colour(kind);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|r| r.kind == kind)
                    .map(|r| EmptyElement::at((r.predicted_sqnr_db, r.sqnr_db)) + diamond(0, 0, 7, colour)),
            )
            .map_err(|e| error(&e))?
            .label(format!("measured, {kind}"))
            .legend(move |(x, y)| diamond(x + 10, y, 6, colour));
    }
    chart.draw_series(tags(&points, |r| (r.predicted_sqnr_db, r.sqnr_db), (lo, hi))).map_err(|e| error(&e))?;
    legend(&mut chart, title, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(|e| error(&e))
}
