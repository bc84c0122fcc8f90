//! The prediction-fit reader as `solve --prediction-fit` reads a fit file: YAML, format, fields.
#![no_main]

use bitsearch_records::PredictionFit;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // PredictionFit::read refuses text that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    // An Err is a refused fit; only panics, aborts, hangs and OOMs are findings.
    let _ = PredictionFit::from_yaml(text, Path::new("fuzz/prediction-fit.yaml"));
});
