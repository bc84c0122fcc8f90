//! Damaged and hand-edited records through the commands that read them: a flipped bit in a
//! sensitivity table, values out of range in a table, a plan or a manifest. Each ends with exit
//! status 2 and one line naming the file and the field, never a panic, an abort or a hang.

use crate::common::{assert_clean_failure, bitsearch, tiny_table};
use bitsearch_records::{MANIFEST_FILE, ProbeRow, SensitivityTable};
use bitsearch_types::WeightFormat;
use std::path::Path;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn flipped_bits_in_a_table_are_refused_by_solve_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("s.parquet");
    bitsearch_fixtures::sensitivity_table(7, 4, &[4, 8], 1).write(&table).unwrap();
    let bytes = std::fs::read(&table).unwrap();
    let (flipped, plan) = (dir.path().join("flipped.parquet"), dir.path().join("plan.yaml"));
    // Bytes across the pages and the footer; each run either solves or refuses cleanly.
    let mut refused = 0;
    for at in (0..bytes.len()).step_by(bytes.len() / 24) {
        let mut copy = bytes.clone();
        copy[at] ^= 0x08;
        std::fs::write(&flipped, &copy).unwrap();
        let output = bitsearch(&["solve", "--sensitivity", s(&flipped), "--budget", "avg-bits=6", "--out", s(&plan)]);
        if !output.status.success() {
            assert_clean_failure(&output, &["flipped.parquet"]);
            refused += 1;
        }
    }
    assert!(refused > 12, "most flips land in the checksummed pages: {refused} of 25 refused");
}

#[test]
fn a_table_with_values_out_of_range_is_refused_naming_the_row_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("s.parquet");
    let plan = dir.path().join("plan.yaml");
    let good = bitsearch_fixtures::sensitivity_table(7, 4, &[4, 8], 1);
    type Edit = fn(&mut ProbeRow);
    let edits: [(Edit, &str); 5] = [
        (|r| r.weight = WeightFormat::int(9), "rows[2].w_bits"),
        (|r| r.ssim = 99.0, "rows[2].ssim"),
        (|r| r.mse = -1.0, "rows[2].mse"),
        (|r| r.layer.params = 1 << 63, "rows[2].params"),
        (|r| r.layer.name = String::new(), "rows[2].layer"),
    ];
    for (edit, field) in edits {
        let mut bad = SensitivityTable { meta: good.meta.clone(), rows: good.rows.clone() };
        edit(&mut bad.rows[2]);
        bad.write(&table).unwrap();
        let output = bitsearch(&["solve", "--sensitivity", s(&table), "--budget", "avg-bits=6", "--out", s(&plan)]);
        assert_clean_failure(&output, &["s.parquet", field]);
        assert!(!plan.exists());
    }
}

/// A plan and a quantized folder of the tiny UNet, both edited as text.
#[test]
fn edited_plans_and_manifests_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table) = tiny_table(dir.path());
    let plan = dir.path().join("plan.yaml");
    let solved = bitsearch(&["solve", "--sensitivity", s(&table), "--budget", "6bits", "--out", s(&plan)]);
    assert!(solved.status.success(), "{}", String::from_utf8_lossy(&solved.stderr));
    let text = std::fs::read_to_string(&plan).unwrap();
    let edited = dir.path().join("edited.yaml");
    let out = dir.path().join("q");
    let edits: [(&str, &str, &str); 3] = [
        ("clip_grid: 20", "clip_grid: 1000000000", "quantizer.weight.clip_grid"),
        ("- - 0\n  - 1\n", "- - 0\n  - 1000000000000\n", "steps: 1000000000001"),
        ("protected: false", "protected: true", ".protected"),
    ];
    for (from, to, field) in edits {
        assert!(text.contains(from), "{from} in {text}");
        std::fs::write(&edited, text.replacen(from, to, 1)).unwrap();
        let output = bitsearch(&["quantize", s(&model), "--plan", s(&edited), "--out", s(&out), "--device", "cpu"]);
        assert_clean_failure(&output, &["edited.yaml", field]);
        assert!(!out.exists());
    }

    let output = bitsearch(&["quantize", s(&model), "--plan", s(&plan), "--out", s(&out), "--device", "cpu"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest = out.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).unwrap();
    for steps in ["4611686018427387904", "1000000000000"] {
        std::fs::write(&manifest, text.replacen("steps: 2", &format!("steps: {steps}"), 1)).unwrap();
        let record = dir.path().join("eval.parquet");
        let output = bitsearch(&["eval", s(&model), s(&out), "--out", s(&record), "--device", "cpu"]);
        assert_clean_failure(&output, &[MANIFEST_FILE, "steps"]);
    }
}
