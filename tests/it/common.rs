//! Helpers shared by the end-to-end tests: the real terrain model and running the binary.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The terrain consistency UNet fetched by `make models` (BITSEARCH_TERRAIN_MODEL overrides).
/// Missing it is a failure, not a skip: `make test` always fetches it first.
pub fn terrain_model() -> PathBuf {
    let path = std::env::var_os("BITSEARCH_TERRAIN_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/terrain/terrain_consistency_unet_difficulty100.onnx")
    });
    assert!(path.is_file(), "{} is missing: run `make models` (or `make test`, which fetches it)", path.display());
    path
}

/// The committed shapes-t2i text-to-image folder.
pub fn shapes_model() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/shapes-t2i");
    assert!(path.join("model_index.json").is_file(), "{} is missing (it is committed)", path.display());
    path
}

/// The tiny attention UNet of the fixtures, saved as `dir/unet.onnx`.
pub fn tiny_unet(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("unet.onnx");
    bitsearch_fixtures::attention_unet(false)
        .save(&path, bitsearch_onnx::ExternalData::Inline)
        .expect("the fixture saves");
    path
}

/// A W2/W4/W8 sensitivity table of the tiny UNet (2 steps), as `dir/s.parquet`, and the model.
pub fn tiny_table(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let model = tiny_unet(dir);
    let table = dir.join("s.parquet");
    let (m, t) = (model.to_str().unwrap(), table.to_str().unwrap());
    assert_success(&bitsearch(&["sensitivity", m, "--out", t, "--w-bits", "2,4,8", "--steps", "2", "--device", "cpu"]));
    (model, table)
}

/// A plan of a 2-step-group `table` with two known configurations: solved at 6 bits, then
/// every quantized layer set to 4 bits in the first group and 8 in the second. Written as
/// `dir/plan.yaml`.
pub fn four_then_eight_plan(table: &std::path::Path, dir: &std::path::Path) -> PathBuf {
    let solved = dir.join("solved.yaml");
    let (t, s) = (table.to_str().unwrap(), solved.to_str().unwrap());
    assert_success(&bitsearch(&["solve", "--sensitivity", t, "--budget", "6bits", "--out", s]));
    let mut plan = bitsearch_records::Plan::read(&solved).unwrap();
    assert_eq!(plan.step_groups.len(), 2);
    for layer in plan.layers.iter_mut().filter(|l| !l.protected) {
        layer.weights = vec![bitsearch_types::WeightFormat::int(4), bitsearch_types::WeightFormat::int(8)];
    }
    let path = dir.join("plan.yaml");
    plan.write(&path).unwrap();
    path
}

/// Asserts that every tensor name of the models a manifest in `dir` lists points at one place
/// of the shared weight file, whichever model reads it, that both widths of a 4-then-8 plan are
/// there, and that the file holds nothing but those tensors and their alignment padding.
pub fn assert_each_tensor_stored_once(dir: &std::path::Path, manifest: &bitsearch_records::Manifest) {
    use bitsearch_onnx::pb::tensor_proto::DataLocation;
    let mut places: std::collections::HashMap<String, (u64, u64)> = std::collections::HashMap::new();
    for m in &manifest.models {
        let bytes = std::fs::read(dir.join(&m.file)).unwrap();
        let model = bitsearch_onnx::Model::from_bytes(&bytes, std::path::Path::new(&m.file)).unwrap();
        for t in model.graph().initializer.iter().filter(|t| t.data_location() == DataLocation::External) {
            let get = |k: &str| t.external_data.iter().find(|e| e.key() == k).unwrap().value().parse::<u64>().unwrap();
            let place = (get("offset"), get("length"));
            if let Some(seen) = places.insert(t.name().to_string(), place) {
                assert_eq!(seen, place, "{} is stored twice", t.name());
            }
        }
    }
    assert!(places.keys().any(|n| n.contains("/w4/")) && places.keys().any(|n| n.contains("/w8/")));
    let stored: u64 = places.values().map(|p| p.1).sum();
    // The writer aligns tensors of 64 KiB or more to pages and the others to 64 bytes.
    let padding: u64 = places.values().map(|p| if p.1 >= 1 << 16 { 4096 } else { 64 }).sum();
    let file = std::fs::metadata(dir.join(&manifest.weights)).unwrap().len();
    assert!(file >= stored && file <= stored + padding, "{file} bytes for {stored} stored");
}

/// Every file under `root`, relative to it.
pub fn files(root: &std::path::Path) -> std::collections::BTreeSet<PathBuf> {
    let mut found = std::collections::BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.insert(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found
}

/// Runs the bitsearch binary with `args`.
pub fn bitsearch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitsearch")).args(args).output().expect("the bitsearch binary runs")
}

/// Asserts a run succeeded (showing its stderr if not) and returns its stdout.
pub fn assert_success(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The README's exit statuses: the answer is no, and bad input or any other error.
pub const EXIT_REFUSED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

/// Asserts a run failed cleanly on bad input: exit status 2, no panic, exactly one error line
/// that contains every string of `expected`.
pub fn assert_clean_failure(output: &Output, expected: &[&str]) {
    assert_failure(output, EXIT_ERROR, expected);
}

/// Asserts a run ended with the answer no: exit status 1 and one error line saying why.
pub fn assert_refused(output: &Output, expected: &[&str]) {
    assert_failure(output, EXIT_REFUSED, expected);
}

fn assert_failure(output: &Output, status: i32, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "expected exit status {status}, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    for e in expected {
        assert!(errors[0].contains(e), "'{e}' missing from: {}", errors[0]);
    }
}
