//! A plan drawn per layer: a strip of cells coloured by weight bits (one column per step
//! group) next to a bar of the layer's stored weight size.

use super::{LABELS, ROW, bits_color, bits_label, column_width, labelled, segments};
use crate::error::{ReportError, Result};
use crate::fonts::FAMILY;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::path::Path;

/// One layer of a plan figure: its label, bits per step group and stored kilobytes.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub label: String,
    pub bits: Vec<u32>,
    pub kilobytes: f64,
}

/// Draws the plan; the caller keeps it within [`super::MAX_LAYERS`] and [`super::MAX_COLUMNS`].
pub fn draw_plan(title: &str, rows: &[PlanRow], groups: usize, path: &Path) -> Result<()> {
    let error = |e: &dyn std::fmt::Display| ReportError::figure(title, e);
    let nrows = rows.len();
    let height = 140 + ROW * nrows as u32;
    // Two empty columns to the right of the groups hold the legend.
    let strip = LABELS + 60 + column_width(50, groups + 2) * (groups as u32 + 2);
    let width = strip + 420;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let root = root.titled(title, (FAMILY, 18)).map_err(|e| error(&e))?;
    let (left, right) = root.split_horizontally(strip);
    let y = |r: usize| nrows - 1 - r;
    let mut chart = ChartBuilder::on(&left)
        .margin(10)
        .x_label_area_size(40)
        .top_x_label_area_size(30)
        .y_label_area_size(LABELS)
        .build_cartesian_2d(segments(groups + 2), segments(nrows))
        .map_err(|e| error(&e))?;
    let row_label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < nrows => rows[nrows - 1 - i].label.clone(),
        _ => String::new(),
    };
    let group_label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(g) if *g < groups && labelled(*g, groups) => format!("g{g}"),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("step group")
        .y_desc("layer (graph order, grouped by role)")
        .y_labels(nrows)
        .x_labels(groups + 2)
        .y_label_formatter(&row_label)
        .x_label_formatter(&group_label)
        .label_style((FAMILY, 10))
        .axis_desc_style((FAMILY, 13))
        .draw()
        .map_err(|e| error(&e))?;
    let mut widths: Vec<u32> = rows.iter().flat_map(|r| r.bits.iter().copied()).collect();
    widths.sort_unstable();
    widths.dedup();
    for w in widths {
        let cells = rows.iter().enumerate().flat_map(|(r, row)| {
            row.bits.iter().enumerate().filter(move |(_, b)| **b == w).map(move |(g, _)| {
                Rectangle::new(
                    [
                        (SegmentValue::Exact(g), SegmentValue::Exact(y(r))),
                        (SegmentValue::Exact(g + 1), SegmentValue::Exact(y(r) + 1)),
                    ],
                    bits_color(w).filled(),
                )
            })
        });
        chart
            .draw_series(cells)
            .map_err(|e| error(&e))?
            .label(bits_label(w))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], bits_color(w).filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FAMILY, 11))
        .draw()
        .map_err(|e| error(&e))?;

    let most = rows.iter().map(|r| r.kilobytes).fold(1.0, f64::max);
    let mut bars = ChartBuilder::on(&right)
        .margin(10)
        .margin_left(0)
        .x_label_area_size(40)
        .top_x_label_area_size(30)
        .build_cartesian_2d(0.0..most * 1.05, segments(nrows))
        .map_err(|e| error(&e))?;
    bars.configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("stored weight (KB)")
        .label_style((FAMILY, 10))
        .axis_desc_style((FAMILY, 13))
        .draw()
        .map_err(|e| error(&e))?;
    bars.draw_series(rows.iter().enumerate().map(|(r, row)| {
        let color = bits_color(row.bits.iter().copied().max().unwrap_or(32));
        Rectangle::new(
            [(0.0, SegmentValue::Exact(y(r))), (row.kilobytes, SegmentValue::Exact(y(r) + 1))],
            color.filled(),
        )
    }))
    .map_err(|e| error(&e))?;
    root.present().map_err(|e| error(&e))
}
