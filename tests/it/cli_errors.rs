//! Bad input never panics: a missing, truncated or non-ONNX file, or inputs the model does not
//! have, end with a non-zero exit and one line naming the file and the problem.

use crate::common::{assert_clean_failure, bitsearch, terrain_model};

#[test]
fn unreadable_or_foreign_files_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let terrain = std::fs::read(terrain_model()).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &terrain[..terrain.len() / 3]).unwrap();
    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "not a model at all\n").unwrap();
    let missing = dir.path().join("missing.onnx");
    let out = dir.path().join("out");
    for (path, problem) in [(&missing, "cannot read"), (&truncated, "not an ONNX model"), (&text, "not an ONNX model")]
    {
        let p = path.to_str().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_clean_failure(&bitsearch(&["inspect", p]), &[name, problem]);
        assert_clean_failure(&bitsearch(&["sample", p, "--out", out.to_str().unwrap()]), &[name, problem]);
    }
    assert!(!out.exists(), "nothing may be written for a bad model");
}

#[test]
fn inputs_the_model_does_not_have_or_lacks_fail_with_one_line() {
    let model = terrain_model();
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let file = "terrain_consistency_unet_difficulty100.onnx";
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--condition", "difficulty=0.5", "--condition", "colour=1"],
            &[file, "conditions.colour", "no such input", "difficulty"],
        ),
        (&[], &[file, "input 'difficulty' needs a value", "--condition difficulty=VALUE"]),
        (&["--condition", "difficulty=0.5", "--sampler", "ddim"], &[file, "ddim", "sigma-parameterised"]),
        // Rejected by the argument parser before the model is opened.
        (&["--condition", "difficulty=0.5", "--prediction", "noise"], &["noise"]),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["sample", model, "--out", out, "--quiet"];
        args.extend_from_slice(extra);
        assert_clean_failure(&bitsearch(&args), expected);
    }
    let steps = bitsearch(&["sample", model, "--out", out, "--steps", "0"]);
    assert!(!steps.status.success() && String::from_utf8_lossy(&steps.stderr).contains("--steps"));
}

#[test]
fn no_output_may_overwrite_contain_or_sit_inside_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let folder = dir.path().join("models");
    std::fs::create_dir(&folder).unwrap();
    let model = folder.join("m.onnx");
    std::fs::copy(terrain_model(), &model).unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let table = dir.path().join("t.parquet");
    bitsearch_fixtures::sensitivity_table(7, 4, &[4, 8], 1).write(&table).unwrap();
    let table_bytes = std::fs::read(&table).unwrap();
    let quantized = dir.path().join("q");
    std::fs::create_dir(&quantized).unwrap();
    let (m, f, t, q) = (s(&model), s(&folder), s(&table), s(&quantized));
    let manifest = s(&quantized.join("bitsearch-quantized.yaml"));
    let cases: [(Vec<&str>, &str); 6] = [
        (vec!["quantize", &m, "--plan", &t, "--out", &f, "--overwrite"], "contains the input"),
        (vec!["eval", &m, &m, "--out", &m], "is the input"),
        (vec!["eval", &m, &q, "--out", &manifest], "lies inside the input"),
        (vec!["solve", "--sensitivity", &t, "--budget", "avg-bits=6", "--out", &t], "is the input"),
        (vec!["sensitivity", &m, "--out", &m, "--overwrite", "--condition", "difficulty=0.5"], "is the input"),
        (vec!["merge", &t, "--out", &t], "is the input"),
    ];
    for (args, how) in cases {
        assert_clean_failure(&bitsearch(&args), &["--out", how, "write elsewhere"]);
    }
    assert_eq!(std::fs::read(&model).unwrap(), bytes, "the model is untouched");
    assert_eq!(std::fs::read(&table).unwrap(), table_bytes, "the table is untouched");
    assert!(!quantized.join("bitsearch-quantized.yaml").exists());
}
