//! `make bench`: what a sensitivity probe costs next to a plain forward of the terrain UNet,
//! for several window sizes (layers whose weights one session can replace). Writes
//! out/bench/sensitivity.md and prints it.

mod common;

use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_records::Shard;
use bitsearch_runtime::Device;
use bitsearch_sensitivity::{Existing, PLAIN_EVERY, SensitivityConfig, SensitivityRun, Silent, run_to_table};

/// Layers probed per configuration: three windows of 16.
const LAYERS: usize = 48;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = common::terrain_model();
    let dir = tempfile::tempdir()?;
    let generation = WorkloadSpec {
        conditions: [("difficulty".to_string(), vec![0.2, 0.8])].into(),
        device: Device::Cpu,
        ..Default::default()
    };
    let base = SensitivityConfig { generation, ..Default::default() };
    let weight_layers: Vec<String> = SensitivityRun::open(&model, base.clone(), Shard::WHOLE)?
        .layers()
        .iter()
        .filter(|l| l.weight.is_some())
        .take(LAYERS)
        .map(|l| l.name.clone())
        .collect();
    let mut table = format!(
        "# Sensitivity benchmark\n\nterrain UNet, {LAYERS} weight layers × W4/W8, 2 conditions × 1 seed in one batch, 1 step, \
         MSE clipping, CPU ({} threads available). A probe is one pipeline run with one layer quantized; the ratio \
         divides the median probe wall time (quantization and metrics included, each window's session build \
         shared among its probes) by the median full-precision pass, timed among the probes (one every \
         {PLAIN_EVERY}) so that both see the same load. The shares split the probing time: window sessions and \
         calibration, weight quantization, pipeline runs, image metrics, plain passes.\n\n| window (layers per \
         session) | probes | plain passes | plain pass ms | probes/s | probe / plain | sessions | quantize | runs | \
         metrics | plain |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for window in [1, 16, LAYERS] {
        let config = SensitivityConfig { layers: weight_layers.clone(), window, ..base.clone() };
        let mut run = SensitivityRun::open(&model, config, Shard::WHOLE)?;
        let out = dir.path().join(format!("window{window}.parquet"));
        let (summary, _) = run_to_table(&mut run, &out, Existing::Overwrite, &mut Silent)?;
        table += &format!(
            "| {window} | {} | {} | {:.1} | {:.2} | {:.3} |",
            summary.computed,
            summary.plain_passes.len(),
            summary.plain_pass().as_secs_f64() * 1e3,
            summary.probes_per_second(),
            summary.probe_to_plain_ratio()
        );
        let p = &summary.phases;
        for time in [p.sessions, p.quantize, p.runs, p.image_metrics, p.plain] {
            table += &format!(" {:.1}% |", summary.share(time));
        }
        table += "\n";
    }
    table += &format!(
        "\npeak memory of the process: {:.1} MB resident\n",
        bitsearch_types::peak_resident_bytes() as f64 / 1e6
    );
    Ok(common::publish("sensitivity.md", &table)?)
}
