//! The report draws text with DejaVu Sans embedded in the binary: no system font is needed.

use std::sync::Once;

/// Font family every figure names.
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded fonts with plotters (once per process).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use plotters::style::{FontStyle, register_font};
        // The embedded TTF files are valid; a failure would only lose text, so it is logged.
        for (style, bytes) in [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())] {
            if register_font(FAMILY, style, bytes).is_err() {
                log::warn!("the embedded DejaVu font could not be registered; figures will lack text");
            }
        }
    });
}
