//! Plain vocabulary that every bitsearch stage shares: what a quantizable layer is, the role the
//! graph analysis gave it and the component it lives in, the one description of a quantizer and
//! its bit ranges, the generation settings (workload spec), and atomic file writes. No heavy dependencies, so any stage can use it.

mod atomic;
mod format;
pub mod generation;
mod layer;
mod named;
mod process;
pub mod quantizer;

pub use atomic::{
    is_staging_folder, sha256_file, sha256_hex, staging_folder, tree_bytes, write_atomically, write_atomically_with,
};
pub use format::{FP8_BITS, FormatColumns, LOW_RANKS, WeightFormat, check_rank};
pub use layer::{Component, Layer, LayerInfo, LayerKind, LossBasis, MetricGroup, Role, TOKEN_AXIS};
pub use process::{catch_panic, peak_resident_bytes, quiet_caught_panics};
pub use quantizer::{ACTIVATION_BITS, FLOAT_BITS, HALF_BITS, QuantizerSpec, Rounding, WEIGHT_BITS};
