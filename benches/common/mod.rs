//! Shared by the benchmarks: where the terrain model is, and where tables go.

#![allow(dead_code)] // each benchmark uses its own subset

use std::path::PathBuf;

/// The terrain UNet `make models` fetches (BITSEARCH_TERRAIN_MODEL overrides).
pub fn terrain_model() -> PathBuf {
    std::env::var_os("BITSEARCH_TERRAIN_MODEL")
        .map_or_else(|| PathBuf::from("models/terrain/terrain_consistency_unet_difficulty100.onnx"), PathBuf::from)
}

/// Writes `markdown` to out/bench/`name` and prints it.
pub fn publish(name: &str, markdown: &str) -> std::io::Result<()> {
    std::fs::create_dir_all("out/bench")?;
    bitsearch_types::write_atomically(&PathBuf::from("out/bench").join(name), markdown.as_bytes())?;
    println!("{markdown}");
    Ok(())
}
