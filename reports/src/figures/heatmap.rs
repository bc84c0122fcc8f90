//! A layers × columns heatmap with a colour bar (sensitivity per bit-width or per step group).

use super::{LABELS, ROW, column_width, labelled, segments};
use crate::error::{ReportError, Result};
use crate::fonts::FAMILY;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Heatmap {
    pub title: String,
    /// One label per row, top to bottom.
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub x_desc: String,
    /// `values[row][column]`; None where nothing was measured.
    pub values: Vec<Vec<Option<f64>>>,
    /// What the colour encodes, for the colour bar.
    pub value_desc: String,
    /// Colour range; values outside are clamped.
    pub range: (f64, f64),
}

/// Draws `h`; the caller keeps it within [`super::MAX_LAYERS`] and [`super::MAX_COLUMNS`].
pub fn draw_heatmap(h: &Heatmap, path: &Path) -> Result<()> {
    let error = |e: &dyn std::fmt::Display| ReportError::figure(&h.title, e);
    let (nrows, ncols) = (h.rows.len(), h.columns.len().max(1));
    let height = 120 + ROW * nrows as u32;
    let width = LABELS + column_width(90, ncols) * ncols as u32 + 220;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let (main, bar) = root.split_horizontally(width - 120);
    let (lo, hi) = h.range;
    let color = |v: Option<f64>| match v {
        None => RGBColor(225, 225, 225),
        Some(v) if v.is_nan() => RGBColor(225, 225, 225),
        Some(v) => ViridisRGB::get_color(((v.clamp(lo, hi) - lo) / (hi - lo).max(f64::MIN_POSITIVE)) as f32),
    };
    let mut chart = ChartBuilder::on(&main)
        .caption(&h.title, (FAMILY, 18))
        .margin(10)
        .x_label_area_size(40)
        .top_x_label_area_size(30)
        .y_label_area_size(LABELS)
        .build_cartesian_2d(segments(ncols), segments(nrows))
        .map_err(|e| error(&e))?;
    let row_label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < nrows => h.rows[nrows - 1 - i].clone(),
        _ => String::new(),
    };
    let column_label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if labelled(*i, ncols) => h.columns.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(&h.x_desc)
        .y_desc("layer (graph order, grouped by role)")
        .y_labels(nrows)
        .x_labels(ncols)
        .y_label_formatter(&row_label)
        .x_label_formatter(&column_label)
        .label_style((FAMILY, 10))
        .axis_desc_style((FAMILY, 13))
        .draw()
        .map_err(|e| error(&e))?;
    chart
        .draw_series(h.values.iter().enumerate().flat_map(|(r, row)| {
            let y = nrows - 1 - r;
            row.iter().enumerate().map(move |(c, v)| {
                Rectangle::new(
                    [
                        (SegmentValue::Exact(c), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(c + 1), SegmentValue::Exact(y + 1)),
                    ],
                    color(*v).filled(),
                )
            })
        }))
        .map_err(|e| error(&e))?;
    // The colour bar: the range bottom to top.
    let mut scale = ChartBuilder::on(&bar)
        .margin_top(40)
        .margin_bottom(50)
        .margin_right(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, lo..hi)
        .map_err(|e| error(&e))?;
    scale
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(&h.value_desc)
        .label_style((FAMILY, 11))
        .axis_desc_style((FAMILY, 12))
        .draw()
        .map_err(|e| error(&e))?;
    let steps = 100;
    scale
        .draw_series((0..steps).map(|i| {
            let (a, b) = (lo + (hi - lo) * i as f64 / steps as f64, lo + (hi - lo) * (i + 1) as f64 / steps as f64);
            Rectangle::new([(0.0, a), (1.0, b)], color(Some(a)).filled())
        }))
        .map_err(|e| error(&e))?;
    root.present().map_err(|e| error(&e))
}
