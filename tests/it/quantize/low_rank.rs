//! The low-rank branch end to end on the tiny UNet: probed beside the plain codes with its
//! float16 factors' bytes counted, better where the branch takes the weight's leading
//! directions, and written as a parallel branch that measures what its probe measured.

use super::{s, written_alone_measures_its_probe};
use crate::common::{assert_success, bitsearch, tiny_unet};
use bitsearch_onnx::Model;
use bitsearch_records::{Manifest, SensitivityTable};
use bitsearch_types::WeightFormat;

#[test]
fn a_branch_costs_its_factors_wins_on_most_layers_and_the_written_model_measures_its_probe() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_unet(dir.path());
    let table = dir.path().join("r.parquet");
    let args = ["sensitivity", s(&model), "--out", s(&table), "--w-bits", "3,8", "--ranks", "2"];
    assert_success(&bitsearch(&[&args[..], &["--steps", "2", "--device", "cpu"]].concat()));
    let rows = SensitivityTable::read(&table).unwrap().rows;
    let ranked: Vec<_> = rows.iter().filter(|r| r.weight.rank().is_some()).collect();
    assert!(ranked.len() >= 4, "{} rows with a branch", ranked.len());
    assert!(ranked.iter().all(|r| r.weight == WeightFormat::int(3).with_rank(Some(2)).unwrap()), "none at 8 bits");
    let mut gains = Vec::new();
    for row in &ranked {
        let plain = rows.iter().find(|r| r.layer == row.layer && r.weight == WeightFormat::int(3)).unwrap();
        let outputs = row.layer.outputs.unwrap();
        let branch = 2 * 2 * (outputs + row.layer.params / outputs);
        assert_eq!(row.weight_bytes, plain.weight_bytes + branch, "{}: codes, scales and factors", row.layer.name);
        gains.push((row.sqnr_db - plain.sqnr_db, *row));
    }
    let better = gains.iter().filter(|(gain, _)| *gain > 0.0).count();
    assert!(better * 4 >= gains.len() * 3, "the branch beats plain codes on {better} of {} layers", gains.len());

    // One layer with its branch, the rest in float: the written model carries the factors in
    // float16 and measures its probe.
    let out = written_alone_measures_its_probe(&model, &table, &gains, dir.path());
    let manifest = Manifest::find(&out).unwrap().unwrap();
    let written = Model::load(out.join(&manifest.models[0].file)).unwrap();
    let halves = written.graph().initializer.iter().filter(|t| t.name().contains("/lr/") && t.data_type() == 10);
    assert_eq!(halves.count(), 2, "L and R in float16");
}
