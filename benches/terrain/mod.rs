//! Where the benchmarks on the real model find it; apart from `common` because only some
//! benchmarks load it, and each benchmark is its own crate.

use std::path::PathBuf;

/// The terrain UNet `make models` fetches (BITSEARCH_TERRAIN_MODEL overrides).
pub fn model() -> PathBuf {
    std::env::var_os("BITSEARCH_TERRAIN_MODEL")
        .map_or_else(|| PathBuf::from("models/terrain/terrain_consistency_unet_difficulty100.onnx"), PathBuf::from)
}
