//! The sensitivity table reader behind its checksum: each input gets the checksum of its own
//! pages first, so mutations reach the Parquet decoder and the field checks.
#![no_main]

use bitsearch_records::SensitivityTable;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

// main installs the same hook: a panic inside a decoding boundary is an error there, any other
// still reaches libFuzzer's aborting hook.
fuzz_target!(init: bitsearch_types::quiet_caught_panics(), |data: &[u8]| {
    let mut bytes = data.to_vec();
    // Inputs without a checksum slot go through unchanged, as in `table`.
    bitsearch_records::fuzzing::reseal_parquet(&mut bytes);
    // An Err is a refused table; only panics, aborts, hangs and OOMs are findings.
    let _ = SensitivityTable::from_bytes(&bytes, Path::new("fuzz.parquet"));
});
