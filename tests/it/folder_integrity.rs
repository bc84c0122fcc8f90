//! What a quantized folder and an output path promise: files changed after `quantize` are
//! refused by their sha256, `--overwrite` replaces only an earlier output of the same command,
//! and eval names a missing or unfinished folder as such.

use crate::common::{assert_clean_failure, assert_success, bitsearch, tiny_table};
use bitsearch_records::MANIFEST_FILE;
use std::path::Path;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_quantized_folder_whose_files_changed_is_refused_unless_told_not_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table) = tiny_table(dir.path());
    let plan = dir.path().join("plan.yaml");
    assert_success(&bitsearch(&["solve", "--sensitivity", s(&table), "--budget", "6bits", "--out", s(&plan)]));
    let out = dir.path().join("q");
    let quantize = |extra: &[&str]| {
        let mut args = vec!["quantize", s(&model), "--plan", s(&plan), "--out", s(&out), "--device", "cpu"];
        args.extend(extra);
        bitsearch(&args)
    };
    assert_success(&quantize(&[]));
    let record = dir.path().join("eval.parquet");
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", s(&model), s(&out), "--out", s(&record), "--num-seeds", "1", "--repeats", "1"];
        args.extend(["--device", "cpu"]);
        args.extend(extra);
        bitsearch(&args)
    };

    // The float model in the quantized model's place, then one flipped byte of the weights.
    let quantized = std::fs::read(out.join("model.onnx")).unwrap();
    std::fs::copy(&model, out.join("model.onnx")).unwrap();
    assert_clean_failure(&eval(&[]), &[MANIFEST_FILE, "files.model.onnx", "--no-verify"]);
    assert!(!record.exists());
    assert_success(&eval(&["--no-verify"]));
    std::fs::write(out.join("model.onnx"), quantized).unwrap();
    let mut weights = std::fs::read(out.join("weights.bin")).unwrap();
    let middle = weights.len() / 2;
    weights[middle] ^= 0x10;
    std::fs::write(out.join("weights.bin"), weights).unwrap();
    assert_clean_failure(&eval(&[]), &[MANIFEST_FILE, "files.weights.bin"]);

    // --overwrite replaces an earlier output, never a folder holding files of someone else.
    assert_success(&quantize(&["--overwrite"]));
    assert_success(&eval(&[]));
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    assert_clean_failure(&quantize(&["--overwrite"]), &["--overwrite refused", "notes.txt"]);
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("a.png"), b"png").unwrap();
    let output = bitsearch(&["quantize", s(&model), "--plan", s(&plan), "--out", s(&foreign), "--overwrite"]);
    assert_clean_failure(&output, &["photos", "holds no bitsearch-quantized.yaml"]);
    assert!(foreign.join("a.png").is_file());
}

#[test]
fn sensitivity_overwrite_replaces_only_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::common::tiny_unet(dir.path());
    let notes = dir.path().join("notes.parquet");
    std::fs::write(&notes, b"not a table").unwrap();
    let output = bitsearch(&["sensitivity", s(&model), "--out", s(&notes), "--overwrite", "--device", "cpu"]);
    assert_clean_failure(&output, &["notes.parquet", "is not a sensitivity table"]);
    assert_eq!(std::fs::read(&notes).unwrap(), b"not a table");
}

#[test]
fn eval_names_missing_and_unfinished_folders_and_refuses_zero_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::common::tiny_unet(dir.path());
    let record = dir.path().join("eval.parquet");
    let missing = dir.path().join("nowhere");
    let partial = dir.path().join(".q.partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("model_index.json"), b"{}").unwrap();
    for (candidate, expected) in [(&missing, "no such file or folder"), (&partial, "unfinished output of a quantize")] {
        let output = bitsearch(&["eval", s(&model), s(candidate), "--out", s(&record)]);
        assert_clean_failure(&output, &[s(candidate), expected]);
    }
    let output = bitsearch(&["eval", s(&model), s(&model), "--out", s(&record), "--num-seeds", "0"]);
    assert_clean_failure(&output, &["--num-seeds"]);
    assert!(!record.exists());
}
