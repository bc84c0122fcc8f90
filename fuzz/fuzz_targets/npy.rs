//! The `.npy` reader as `align --images`, `sample --latents` and `--condition NAME=@FILE` read
//! an array: header, type, shape against the bytes present, finite values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // An Err is a refused file; only panics, aborts, hangs and OOMs are findings.
    let _ = bitsearch_records::npy::from_bytes(data);
});
