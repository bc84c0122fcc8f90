//! The PNG figures, drawn with plotters. Every figure labels its axes and carries a legend or
//! a colour bar.

mod frontier;
mod heatmap;
mod measured;
mod plan;

pub use frontier::draw_frontier;
pub use heatmap::{Heatmap, draw_heatmap};
pub use measured::{draw_measured_vs_predicted, draw_sqnr_bits, placed};
pub use plan::{PlanRow, draw_plan};

use crate::error::{ReportError, Result};
use crate::fonts::FAMILY;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, IntoSegmentedCoord, SegmentedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;

/// Height of one layer row in the per-layer figures, in pixels.
const ROW: u32 = 11;
/// Width of the layer-label column.
const LABELS: u32 = 200;
/// Most layers a per-layer figure draws: several times a large UNet's, and at [`ROW`] pixels
/// each a figure at most ~28,000 pixels tall.
pub const MAX_LAYERS: usize = 2560;
/// Most columns (precisions, step groups) a per-layer figure draws. Past 16 the columns narrow
/// to share the width of 16 and only every few is labelled, so a figure stays under ~1,900
/// pixels wide.
pub const MAX_COLUMNS: usize = 64;
/// Columns drawn at full width; more share their width.
const WIDE_COLUMNS: u32 = 16;

/// Why a per-layer figure of `layers` rows and `columns` columns (counted as `what`) is too
/// large to draw, as the end of a sentence; None when it is drawn.
pub fn oversized(layers: usize, columns: usize, what: &str) -> Option<String> {
    if layers > MAX_LAYERS {
        Some(format!("{layers} layers, and figures draw up to {MAX_LAYERS}"))
    } else if columns > MAX_COLUMNS {
        Some(format!("{columns} {what}, and figures draw up to {MAX_COLUMNS}"))
    } else {
        None
    }
}

/// Width in pixels of each of `n` columns that are `full` wide up to [`WIDE_COLUMNS`] of them.
fn column_width(full: u32, n: usize) -> u32 {
    full.min(full * WIDE_COLUMNS / n.max(1) as u32)
}

/// Whether column `i` of `n` gets a label: every column up to [`WIDE_COLUMNS`], else evenly
/// spaced ones so that labels do not overlap on narrowed columns.
fn labelled(i: usize, n: usize) -> bool {
    i.is_multiple_of(n.div_ceil(WIDE_COLUMNS as usize))
}

/// A colour per bit-width, from hot (few bits) to cold (many), grey for float.
pub fn bits_color(bits: u32) -> RGBColor {
    match bits {
        0..=2 => RGBColor(215, 48, 39),
        3 => RGBColor(244, 109, 67),
        4 => RGBColor(253, 174, 97),
        5 => RGBColor(254, 224, 144),
        6 => RGBColor(171, 217, 233),
        7 => RGBColor(116, 173, 209),
        8 => RGBColor(69, 117, 180),
        _ => RGBColor(150, 150, 150),
    }
}

/// `W4`, or `float` for 32.
pub fn bits_label(bits: u32) -> String {
    if bits >= 32 { "float".into() } else { format!("W{bits}") }
}

/// `n` cells, one segment each: plotters' integer ranges include their end, so `0..n` would
/// leave an empty cell after the last.
pub fn segments(n: usize) -> SegmentedCoord<RangedCoordusize> {
    (0..n.max(1) - 1).into_segmented()
}

/// A chart drawn into a PNG, over the coordinates `X` and `Y`.
pub type Chart<'a, 'b, X, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>;

/// A chart on `root` captioned `title`, over `ranges`, with its mesh drawn and the axes
/// described by `descs` (x, then y): the frame of the line and scatter figures. `y_labels` is
/// the width of the y label area in pixels. Errors name the figure `title`.
pub fn axes<'a, 'b, X, Y>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    y_labels: u32,
    ranges: (X, Y),
    (x_desc, y_desc): (&str, &str),
) -> Result<Chart<'a, 'b, X::CoordDescType, Y::CoordDescType>>
where
    X: AsRangedCoord,
    Y: AsRangedCoord,
    X::CoordDescType: ValueFormatter<X::Value>,
    Y::CoordDescType: ValueFormatter<Y::Value>,
{
    let error = |e: &dyn std::fmt::Display| ReportError::figure(title, e);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 18))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(ranges.0, ranges.1)
        .map_err(|e| error(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(|e| error(&e))?;
    Ok(chart)
}

/// The legend of the series drawn on `chart` so far, boxed at `position`. Errors name the
/// figure `title`.
pub fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    title: &str,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FAMILY, 13))
        .draw()
        .map_err(|e| ReportError::figure(title, e))
}

/// A family of plans on `chart`: a line through `points` in `colour`, a dot on each point and
/// the entry `label` in the legend. Errors name the figure `title`.
pub fn plan_line<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    title: &str,
    label: &str,
    colour: RGBColor,
    points: &[(f64, f64)],
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    let error = |e: &dyn std::fmt::Display| ReportError::figure(title, e);
    chart
        .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
        .map_err(|e| error(&e))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| error(&e))?;
    Ok(())
}
