//! The plan reader as `quantize`, `eval` and `report` read a plan file: YAML, format, fields.
#![no_main]

use bitsearch_records::Plan;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // Plan::read refuses text that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    // An Err is a refused plan; only panics, aborts, hangs and OOMs are findings.
    let _ = Plan::from_yaml(text, Path::new("fuzz/plan.yaml"));
});
