//! The end-to-end tests, one binary: the bitsearch executable on the fixtures, the real terrain
//! model and the committed shapes-t2i pipeline. `cargo test --test it solve` runs one module.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

mod cli_errors;
mod common;
mod diffusers_folder;
mod folder_integrity;
mod hostile_records;
mod hostile_sizes;
mod quantize;
mod score_model;
mod sdxl_folder;
mod sensitivity;
mod serve;
mod serve_hostile;
mod shapes_t2i;
mod solve;
mod terrain;
mod zoo;
