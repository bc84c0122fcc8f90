//! GPTQ rounding end to end on the tiny UNet: probed beside nearest rounding at the same bytes,
//! better on the items it was measured on, and written as the very codes its probe measured.

use super::{s, written_alone_measures_its_probe};
use crate::common::{assert_success, bitsearch, tiny_unet};
use bitsearch_records::SensitivityTable;
use bitsearch_types::{Rounding, WeightFormat};

#[test]
fn gptq_costs_what_nearest_does_wins_on_its_items_and_the_written_model_measures_its_probe() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let table = dir.path().join("g.parquet");
    let args = ["sensitivity", s(&model), "--out", s(&table), "--w-bits", "3", "--rounding", "nearest,gptq"];
    let stdout = assert_success(&bitsearch(&[&args[..], &["--steps", "2", "--device", "cpu"]].concat()));
    assert!(stdout.contains("GPTQ moments and rounding"), "{stdout}");
    let rows = SensitivityTable::read(&table).unwrap().rows;
    let gptq: Vec<_> = rows.iter().filter(|r| r.weight.rounding() == Rounding::Gptq).collect();
    assert!(gptq.len() * 2 >= rows.len() - gptq.len(), "{} GPTQ rows of {}", gptq.len(), rows.len());
    let mut gains = Vec::new();
    for row in &gptq {
        let nearest = rows.iter().find(|r| r.layer == row.layer && r.weight == WeightFormat::int(3)).unwrap();
        assert_eq!(row.weight_bytes, nearest.weight_bytes, "{}: same codes container, same scales", row.layer.name);
        gains.push((row.sqnr_db - nearest.sqnr_db, *row));
    }
    let better = gains.iter().filter(|(gain, _)| *gain > 0.0).count();
    assert!(better * 4 >= gains.len() * 3, "GPTQ beats nearest on {better} of {} layers", gains.len());

    // One layer at its GPTQ form, the rest in float: the written model measures its probe.
    written_alone_measures_its_probe(&model, &table, &gains, dir.path());

    // Its simulation needs the table its moments come from: without it, eval refuses before
    // running the reference (a regression: it used to fail after the reference's minutes).
    let (plan, moved) = (dir.path().join("one.yaml"), dir.path().join("moved.parquet"));
    std::fs::rename(&table, &moved).unwrap();
    let record = dir.path().join("refused.parquet");
    let args = ["eval", s(&model), "--simulate", s(&plan), "--sensitivity", s(&moved)];
    let output =
        bitsearch(&[&args[..], &["--out", s(&record), "--seeds", "0", "--steps", "2", "--device", "cpu"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("g.parquet") && !stderr.contains("reference"), "{stderr}");
}
