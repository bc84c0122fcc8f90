//! `make bench`: what a sensitivity probe costs next to a plain forward of the terrain UNet, all
//! 255 weight layers at W4/W8 with the default settings, at batch 1 and 2: probes below the
//! windows' cuts (the default) and on the whole model (`cache_mb: 0`, the engine before cuts),
//! with the largest difference between their tables. Writes out/bench/sensitivity.md and
//! prints it.

mod common;
mod terrain;

use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_records::{SensitivityTable, Shard};
use bitsearch_runtime::Device;
use bitsearch_sensitivity::{Existing, PLAIN_EVERY, SensitivityConfig, SensitivityRun, Silent, run_to_table};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = terrain::model();
    let dir = tempfile::tempdir()?;
    let mut table = format!(
        "# Sensitivity benchmark\n\nterrain UNet, every weight layer × W4/W8, 2 conditions × 1 seed, 1 step, default \
         settings (16-layer windows, MSE clipping), CPU ({} threads available). A probe is one pipeline run with one \
         layer quantized; the ratio divides the median probe wall time (quantization and metrics included, each \
         window's sessions and capture shared among its probes) by the median full-precision pass, timed among the \
         probes (one every {PLAIN_EVERY}, 30 ms after the last probe and once no thread of the run builds or \
         quantizes beside it) so that both see the same load. \"below the cut\" runs each probe on the \
         graph below its window fed the captured full-precision values; \"whole model\" is `--cache-mb 0`. The \
         shares split the probing time.\n\n| batch | probes run | probes | plain pass ms | probes/s | probe / plain \
         | capture | sessions | quantize (wait) | runs | metrics | plain | cache MB |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut differences = Vec::new();
    let mut below_cut_ratio = None;
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
            if batch == 1 && cache_mb > 0 {
                below_cut_ratio = Some(summary.probe_to_plain_ratio());
            }
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
    let ratio = below_cut_ratio.ok_or("no batch-1 run below the cut")?;
    table += &sdxl_estimate(ratio, build_seconds_per_gb(&model)?);
    table += &format!(
        "\npeak memory of the process: {:.1} MB resident\n",
        bitsearch_types::peak_resident_bytes() as f64 / 1e6
    );
    Ok(common::publish("sensitivity.md", &table)?)
}

/// Median seconds ONNX Runtime takes to build a CPU session of the terrain UNet, per GB of its
/// float weights: what one window's session build costs on a model of another size.
fn build_seconds_per_gb(model: &std::path::Path) -> Result<f64, Box<dyn std::error::Error>> {
    let model = bitsearch_onnx::Model::load(model)?;
    let options = bitsearch_runtime::SessionOptions { device: Device::Cpu, ..Default::default() };
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let started = std::time::Instant::now();
            bitsearch_runtime::Session::new(&model, &options).map(|_| started.elapsed().as_secs_f64())
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[1] / (model.tensor_bytes() as f64 / 1e9))
}

/// What a sensitivity run of an SDXL-size UNet (about 800 weight layers, 2.6 B parameters,
/// 10.4 GB in float32) would take, from this bench's measurements on terrain: the probe / plain
/// ratio below the cut (batch 1) and the session build time per GB. A probe runs below the cut
/// at its first quantized step only, so each further step is a whole forward. No GPU was
/// measured here: times are in forwards of one batch of items, then in minutes for two forward
/// times stated as assumptions.
fn sdxl_estimate(ratio: f64, build_s_per_gb: f64) -> String {
    const LAYERS: usize = 800;
    const GB: f64 = 10.4;
    const WINDOW: usize = 16;
    let probes = LAYERS * 2;
    let windows = LAYERS.div_ceil(WINDOW);
    let plain = 3 + probes.div_ceil(PLAIN_EVERY);
    let mut text = format!(
        "\n## Estimate: an SDXL-size UNet\n\n{LAYERS} weight layers × W4/W8 = {probes} probes in {windows} windows, one \
         batch of items, one step group, from the terrain measurements above: probe / plain below the cut {ratio:.3} \
         (batch 1), session build {build_s_per_gb:.2} s per GB of float32 weights on this CPU, so at most {:.0} s \
         per window session (the whole {GB} GB; a cut holds less). A probe costs {ratio:.3} forwards at its first step and one forward at each later \
         step; the run adds {plain} plain passes of every step (3 before the probes, one every \
         {PLAIN_EVERY} probes among them). `--shard i/N` gives each of N GPUs every N-th window, and each shard \
         its own reference passes. The next window's sessions build while this window's probes run, so builds \
         cost time only where they outlast a window's probes (and need memory for two windows' sessions). The \
         forward time F of one batch on a GPU is not measured here (no GPU was lent); the minutes are for F = 0.1 s \
         and F = 0.5 s.\n\n| steps | GPUs | forwards per GPU | minutes at F = 0.1 s | minutes at F = 0.5 s | \
         window builds per GPU, minutes |\n|---:|---:|---:|---:|---:|---:|\n",
        build_s_per_gb * GB,
    );
    for steps in [1usize, 4, 20] {
        for gpus in [1usize, 8] {
            let share = windows.div_ceil(gpus) as f64 / windows as f64;
            let probe_forwards = probes as f64 * share * (ratio + (steps - 1) as f64);
            let plain_forwards = (3.0 + (plain - 3) as f64 * share) * steps as f64;
            let forwards = probe_forwards + plain_forwards;
            // One session below the cut per window, and the whole model beside it past one step.
            let sessions = if steps > 1 { 2.0 } else { 1.0 };
            let builds = windows.div_ceil(gpus) as f64 * sessions * build_s_per_gb * GB / 60.0;
            text += &format!(
                "| {steps} | {gpus} | {forwards:.0} | {:.0} | {:.0} | {builds:.0} |\n",
                forwards * 0.1 / 60.0,
                forwards * 0.5 / 60.0
            );
        }
    }
    text
}
