//! `bitsearch quantize`: a plan applied as a low-bit ONNX model, and what was written.

use crate::cli::QuantizeArgs;
use anyhow::Context;
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_quantize::{QuantizeOptions, quantize};
use bitsearch_records::{Plan, SensitivityTable};
use bitsearch_types::FLOAT_BITS;

pub fn run(args: &QuantizeArgs) -> anyhow::Result<()> {
    let plan = Plan::read(&args.plan)?;
    // Only activation ranges need items: the sensitivity run's (never the evaluation's).
    let mut calibration = if plan.layers.iter().any(|l| l.a_bits.iter().any(|&a| a != FLOAT_BITS)) {
        sensitivity_generation(&plan.source.sensitivity_table)?
    } else {
        WorkloadSpec::default()
    };
    if let Some(seeds) = &args.calibration_seeds {
        calibration.seeds = seeds.clone();
    }
    calibration.device = args.device;
    calibration.threads = args.threads.or(calibration.threads);
    let options = QuantizeOptions { storage: args.storage, calibration, overwrite: args.overwrite };
    let written = quantize(&args.model, &args.plan, &args.out, &options)?;
    let m = &written.manifest;
    let float_bytes = std::fs::metadata(&m.model).map(|f| f.len()).unwrap_or(0);
    println!(
        "{}: {} model(s) for {} step group(s), {} storage; {} layers with integer weights, {} with 8-bit activations",
        args.out.display(),
        m.models.len(),
        m.step_groups.len(),
        m.storage,
        m.quantized_layers,
        m.activation_layers
    );
    println!(
        "denoiser: {:.2} MB on disk ({:.3} of the float file's {:.2} MB); {} distinct tensors in {}",
        written.denoiser_bytes as f64 / 1e6,
        written.denoiser_bytes as f64 / float_bytes.max(1) as f64,
        float_bytes as f64 / 1e6,
        written.stored_tensors,
        m.weights
    );
    Ok(())
}

/// The generation settings of the sensitivity run at `table`: the items calibration (and, with
/// other seeds, evaluation) start from.
pub fn sensitivity_generation(table: &std::path::Path) -> anyhow::Result<WorkloadSpec> {
    let table = SensitivityTable::read(table).context("the plan's sensitivity table gives the calibration items")?;
    let generation = table.meta.config.get("generation").cloned().unwrap_or_default();
    serde_json::from_value(generation).context("the sensitivity table's generation settings")
}
