//! `make bench`: how a sensitivity run scales with layers, bit-widths, items and steps, on
//! synthetic chain denoisers of 50 to 1000 convolutions (crates/fixtures), one factor at a time
//! from 200 layers × W4/W8 × 1 item × 1 step. Writes out/bench/scaling.md and prints it.

mod common;

use bitsearch_onnx::ExternalData;
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_records::Shard;
use bitsearch_runtime::Device;
use bitsearch_sensitivity::{Existing, PLAIN_EVERY, SensitivityConfig, SensitivityRun, Silent, run_to_table};

/// One run: layers, weight bit-widths, seeds (one item each), denoising steps.
struct Case {
    layers: usize,
    w_bits: Vec<u8>,
    items: usize,
    steps: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let base = || Case { layers: 200, w_bits: vec![4, 8], items: 1, steps: 1 };
    let cases = [
        Case { layers: 50, ..base() },
        base(),
        Case { layers: 1000, ..base() },
        Case { w_bits: vec![2, 3, 4, 8], ..base() },
        Case { items: 4, ..base() },
        Case { steps: 4, ..base() },
    ];
    let mut table = format!(
        "# How sensitivity scales\n\nSynthetic chain denoisers (conv_in, residual 16→16 3×3 convolutions, conv_out; \
         4×8×8 samples), every layer probed at each bit-width, default window, DDIM, items in one batch, CPU ({} \
         threads available), probes below the windows' cuts (the default). Probe and plain times are medians of the \
         same run (a plain pass every {PLAIN_EVERY} probes); the shares split the run's probing time: waits for the \
         window sessions (built on a thread during the previous window's probes), waits for quantized weights, \
         pipeline runs.\n\n\
         | layers | bits | items | steps | probes | plain pass ms | probe ms | probe / plain | run s | probes/s | \
         sessions (wait) | quantize (wait) | runs |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut per_layer_probe = Vec::new();
    for case in &cases {
        let model = dir.path().join(format!("chain{}.onnx", case.layers));
        if !model.exists() {
            bitsearch_fixtures::chain_unet(case.layers).save(&model, ExternalData::Inline)?;
        }
        let generation = WorkloadSpec {
            seeds: (0..case.items as u64).collect(),
            steps: Some(case.steps),
            device: Device::Cpu,
            ..Default::default()
        };
        let config = SensitivityConfig { w_bits: case.w_bits.clone(), generation, ..Default::default() };
        let mut run = SensitivityRun::open(&model, config, Shard::WHOLE)?;
        let out = dir.path().join("s.parquet");
        let (summary, _) = run_to_table(&mut run, &out, Existing::Overwrite, &mut Silent)?;
        let probe = summary.probe_to_plain_ratio() * summary.plain_pass().as_secs_f64();
        per_layer_probe.push((case.layers, probe / case.layers as f64));
        table += &format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.3} | {:.1} | {:.1} | {:.0}% | {:.0}% | {:.0}% |\n",
            case.layers,
            case.w_bits.len(),
            case.items,
            case.steps,
            summary.computed,
            summary.plain_pass().as_secs_f64() * 1e3,
            probe * 1e3,
            summary.probe_to_plain_ratio(),
            summary.probing.as_secs_f64(),
            summary.probes_per_second(),
            summary.share(summary.phases.sessions),
            summary.share(summary.phases.quantize),
            summary.share(summary.phases.runs),
        );
    }
    // A probe runs the graph below its window, half a chain on average: the run still grows as
    // layers × bit-widths × (a part of one forward, which grows with layers, items and steps).
    let (small, large) = (&per_layer_probe[0], &per_layer_probe[2]);
    table += &format!(
        "\nProbe time per layer of depth: {:.3} ms at {} layers, {:.3} ms at {} layers (a probe runs the chain below \
         its window, so a run grows with layers² × bit-widths × items × steps).\n",
        small.1 * 1e3,
        small.0,
        large.1 * 1e3,
        large.0
    );
    Ok(common::publish("scaling.md", &table)?)
}
