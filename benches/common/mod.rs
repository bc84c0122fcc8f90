//! Shared by the benchmarks: where tables go.

use std::path::PathBuf;

/// Writes `markdown` to out/bench/`name` and prints it.
pub fn publish(name: &str, markdown: &str) -> std::io::Result<()> {
    std::fs::create_dir_all("out/bench")?;
    bitsearch_types::write_atomically(&PathBuf::from("out/bench").join(name), markdown.as_bytes())?;
    println!("{markdown}");
    Ok(())
}
