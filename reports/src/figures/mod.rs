//! The PNG figures, drawn with plotters. Every figure labels its axes and carries a legend or
//! a colour bar.

mod frontier;
mod heatmap;
mod plan;

pub use frontier::draw_frontier;
pub use heatmap::{Heatmap, draw_heatmap};
pub use plan::{PlanRow, draw_plan};

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentedCoord};
use plotters::coord::types::RangedCoordusize;
use plotters::style::RGBColor;

/// Height of one layer row in the per-layer figures, in pixels.
const ROW: u32 = 11;
/// Width of the layer-label column.
const LABELS: u32 = 200;

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
