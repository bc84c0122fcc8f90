//! `bitsearch quantize`: a plan applied as a low-bit ONNX model, and what was written.

use crate::cli::printer::Printer;
use crate::cli::{QuantizeArgs, paths};
use anyhow::Context;
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_quantize::{QuantizeOptions, quantize};
use bitsearch_records::{Plan, SensitivityTable};

pub fn run(args: &QuantizeArgs) -> anyhow::Result<()> {
    paths::keep_apart(&[("--out", &args.out)], [args.model.as_path(), &args.plan])?;
    let plan = Plan::read(&args.plan)?;
    let mut options = QuantizeOptions {
        storage: args.storage,
        calibration: WorkloadSpec::default(),
        bias_correction: args.bias_correction,
        ptqd: args.ptqd,
        bos_aware: !args.no_bos_aware,
        overwrite: args.overwrite,
    };
    // Calibration runs on the sensitivity run's items (never the evaluation's).
    if options.needs_calibration(&plan) {
        options.calibration = sensitivity_generation(&plan.source.sensitivity_table)?;
    }
    if let Some(seeds) = &args.calibration_seeds {
        options.calibration.pair_every_with(seeds.clone());
    }
    options.calibration.device = args.device;
    options.calibration.threads = args.threads.or(options.calibration.threads);
    let written = quantize(&args.model, &args.plan, &args.out, &options)?;
    let m = &written.manifest;
    let float_bytes = bitsearch_onnx::bytes_on_disk(&m.model)?;
    let mut out = Printer::stdout();
    out.line(format_args!(
        "{}: {} model(s) for {} step group(s), {} storage; {} layers with low-bit weights (integer codes or float16), {} with 8-bit activations",
        args.out.display(),
        m.models.len(),
        m.step_groups.len(),
        m.storage,
        m.quantized_layers,
        m.activation_layers
    ))?;
    if m.split_layers > 0 {
        out.line(format_args!(
            "outlier split: {} layers stored with one bit-width per output channel",
            m.split_layers
        ))?;
    }
    if m.corrections.bias_correction {
        out.line(format_args!("bias correction: each quantized layer's mean output shift folded into its bias"))?;
    }
    if let Some(file) = &m.corrections.noise_correction {
        out.line(format_args!(
            "PTQD noise correction: {file} beside the models, fitted on {} item(s)",
            m.calibration_items.len()
        ))?;
    }
    out.line(format_args!(
        "denoiser: {:.2} MB on disk ({:.3} of the float file's {:.2} MB); {} distinct tensors in {}",
        written.denoiser_bytes as f64 / 1e6,
        written.denoiser_bytes as f64 / float_bytes.max(1) as f64,
        float_bytes as f64 / 1e6,
        written.stored_tensors,
        m.weights
    ))?;
    // Other libraries load such a folder too, but know nothing of the manifest.
    let routed = m.models.len() > 1 || m.corrections.noise_correction.is_some();
    if routed && args.out.join("model_index.json").is_file() {
        out.line(format_args!(
            "note: diffusers and optimum run unet/{} at every step; the other step groups' models and PTQD's noise \
             correction take effect only in bitsearch's samplers",
            m.models.first().map_or("model.onnx", |model| model.file.as_str())
        ))?;
    }
    Ok(())
}

/// The generation settings of the sensitivity run at `table`: the items calibration (and, with
/// other seeds, evaluation) start from.
pub fn sensitivity_generation(table: &std::path::Path) -> anyhow::Result<WorkloadSpec> {
    let table = SensitivityTable::read(table).context("the plan's sensitivity table gives the calibration items")?;
    Ok(table.meta.config.generation())
}
