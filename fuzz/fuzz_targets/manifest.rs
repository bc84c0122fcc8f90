//! The manifest reader as `eval`, `sample` and the pipelines read a quantized folder: YAML,
//! format, fields and the model of every step.
#![no_main]

use bitsearch_records::{MANIFEST_FILE, Manifest};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // Manifest::find refuses text that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    // An Err is a refused manifest; only panics, aborts, hangs and OOMs are findings.
    let _ = Manifest::from_yaml(text, &Path::new("fuzz").join(MANIFEST_FILE));
});
