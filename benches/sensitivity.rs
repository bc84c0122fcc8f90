//! `make bench`: what a sensitivity probe costs next to a plain forward of the terrain UNet, all
//! 255 weight layers at W4/W8 with the default settings, at batch 1 and 2: probes below the
//! windows' cuts (the default) and on the whole model (`cache_mb: 0`, the engine before cuts),
//! with the largest difference between their tables. Writes out/bench/sensitivity.md and
//! prints it.

mod common;

use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_records::{SensitivityTable, Shard};
use bitsearch_runtime::Device;
use bitsearch_sensitivity::{Existing, PLAIN_EVERY, SensitivityConfig, SensitivityRun, Silent, run_to_table};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = common::terrain_model();
    let dir = tempfile::tempdir()?;
    let mut table = format!(
        "# Sensitivity benchmark\n\nterrain UNet, every weight layer × W4/W8, 2 conditions × 1 seed, 1 step, default \
         settings (16-layer windows, MSE clipping), CPU ({} threads available). A probe is one pipeline run with one \
         layer quantized; the ratio divides the median probe wall time (quantization and metrics included, each \
         window's sessions and capture shared among its probes) by the median full-precision pass, timed among the \
         probes (one every {PLAIN_EVERY}) so that both see the same load. \"below the cut\" runs each probe on the \
         graph below its window fed the captured full-precision values; \"whole model\" is `--cache-mb 0`. The \
         shares split the probing time.\n\n| batch | probes run | probes | plain pass ms | probes/s | probe / plain \
         | capture | sessions | quantize (wait) | runs | metrics | plain | cache MB |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut differences = Vec::new();
    for batch in [1, 2] {
        let generation = WorkloadSpec {
            conditions: [("difficulty".to_string(), vec![0.2, 0.8])].into(),
            device: Device::Cpu,
            batch,
            ..Default::default()
        };
        let mut tables: Vec<SensitivityTable> = Vec::new();
        for (how, cache_mb) in [("below the cut", SensitivityConfig::default().cache_mb), ("whole model", 0)] {
            let config = SensitivityConfig { generation: generation.clone(), cache_mb, ..Default::default() };
            let mut run = SensitivityRun::open(&model, config, Shard::WHOLE)?;
            let out = dir.path().join(format!("b{batch}-{cache_mb}.parquet"));
            let (summary, rows) = run_to_table(&mut run, &out, Existing::Overwrite, &mut Silent)?;
            tables.push(rows);
            table += &format!(
                "| {batch} | {how} | {} | {:.1} | {:.2} | {:.3} |",
                summary.computed,
                summary.plain_pass().as_secs_f64() * 1e3,
                summary.probes_per_second(),
                summary.probe_to_plain_ratio()
            );
            let p = &summary.phases;
            for time in [p.capture, p.sessions, p.quantize, p.runs, p.image_metrics, p.plain] {
                table += &format!(" {:.1}% |", summary.share(time));
            }
            table += &format!(" {:.1} |\n", summary.cache.peak as f64 / 1e6);
        }
        let (cut, whole) = (&tables[0].rows, &tables[1].rows);
        // Below 60 dB a probe's noise dwarfs the float floor (about 130 dB here); above it two
        // runs of the same probe differ by the floor itself.
        let largest = |f: fn(&bitsearch_records::ProbeRow) -> f64, below: f64| {
            let rows = cut.iter().zip(whole).filter(|(a, b)| a.sqnr_db.min(b.sqnr_db) < below);
            rows.map(|(a, b)| (f(a) - f(b)).abs()).fold(0.0f64, f64::max)
        };
        let floor = cut.iter().filter(|r| r.sqnr_db >= 60.0).count();
        differences.push(format!(
            "batch {batch}: largest difference between the two tables over the {} rows below 60 dB: SQNR {:.2e} dB, \
             PSNR {:.2e} dB, SSIM {:.2e}; over all {} rows (the other {floor} measure 60–131 dB, at or near the float \
             floor): SQNR {:.2e} dB, SSIM {:.2e}",
            cut.len() - floor,
            largest(|r| r.sqnr_db, 60.0),
            largest(|r| r.psnr_db, 60.0),
            largest(|r| r.ssim, 60.0),
            cut.len(),
            largest(|r| r.sqnr_db, f64::INFINITY),
            largest(|r| r.ssim, f64::INFINITY)
        ));
    }
    table += &format!("\n{}\n", differences.join("\n"));
    table += &format!(
        "\npeak memory of the process: {:.1} MB resident\n",
        bitsearch_types::peak_resident_bytes() as f64 / 1e6
    );
    Ok(common::publish("sensitivity.md", &table)?)
}
