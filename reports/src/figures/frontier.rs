//! The Pareto frontier: predicted objective against budget for the ILP (or greedy) plans, with
//! the uniform plans (one bit-width everywhere) for comparison.

use super::{axes, legend, plan_line};
use crate::error::{ReportError, Result};
use crate::fonts::FAMILY;
use bitsearch_records::{FrontierPoint, PointKind};
use plotters::prelude::*;
use std::path::Path;

pub fn draw_frontier(points: &[FrontierPoint], path: &Path) -> Result<()> {
    let title = "Pareto frontier";
    let error = |e: &dyn std::fmt::Display| ReportError::figure(title, e);
    let resource = points.first().map_or("budget".to_string(), |p| p.resource.name().to_string());
    let x = |p: &FrontierPoint| if resource == "memory" { p.budget / 1e6 } else { p.budget };
    let finite: Vec<&FrontierPoint> = points.iter().filter(|p| p.objective.is_finite() && p.objective > 0.0).collect();
    let (x_lo, x_hi) =
        finite.iter().map(|p| x(p)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (y_lo, y_hi) =
        finite.iter().map(|p| p.objective).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if finite.is_empty() {
        return Err(error(&"no point with a positive finite objective"));
    }
    let pad = (x_hi - x_lo).max(1e-9) * 0.05;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let x_desc = match resource.as_str() {
        "memory" => "weight memory budget (MB)".to_string(),
        "avg-bits" => "average weight bits budget".to_string(),
        other => format!("{other} budget"),
    };
    let ranges = (x_lo - pad..x_hi + pad, (y_lo * 0.5..y_hi * 2.0).log_scale());
    let descs = (x_desc.as_str(), "predicted objective (normalised loss, lower is better)");
    let mut chart = axes(&root, title, 80, ranges, descs)?;
    let lines = [
        (PointKind::Ilp, "ILP plans", RGBColor(69, 117, 180)),
        (PointKind::Greedy, "greedy plans", RGBColor(26, 152, 80)),
    ];
    for (kind, label, colour) in lines {
        let line: Vec<(f64, f64)> = finite.iter().filter(|p| p.kind == kind).map(|p| (x(p), p.objective)).collect();
        if line.is_empty() {
            continue;
        }
        plan_line(&mut chart, title, label, colour, &line)?;
    }
    let red = RGBColor(215, 48, 39);
    let uniform: Vec<&&FrontierPoint> = finite.iter().filter(|p| p.kind == PointKind::Uniform).collect();
    chart
        .draw_series(uniform.iter().map(|p| TriangleMarker::new((x(p), p.objective), 7, red.filled())))
        .map_err(|e| error(&e))?
        .label("uniform bit-width")
        .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, red.filled()));
    chart
        .draw_series(uniform.iter().map(|p| {
            Text::new(p.plan.trim_start_matches("uniform-").to_string(), (x(p), p.objective * 1.3), (FAMILY, 12))
        }))
        .map_err(|e| error(&e))?;
    legend(&mut chart, title, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(|e| error(&e))
}
