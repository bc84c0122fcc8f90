//! The sensitivity table reader on raw bytes, as `solve`, `merge` and `report` read a file:
//! mutations mostly stop at the checksum of the pages or in the footer.
#![no_main]

use bitsearch_records::SensitivityTable;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

// main installs the same hook: a panic inside a decoding boundary is an error there, any other
// still reaches libFuzzer's aborting hook.
fuzz_target!(init: bitsearch_types::quiet_caught_panics(), |data: &[u8]| {
    // An Err is a refused table; only panics, aborts, hangs and OOMs are findings.
    let _ = SensitivityTable::from_bytes(data, Path::new("fuzz.parquet"));
});
