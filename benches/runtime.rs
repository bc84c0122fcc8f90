//! `make bench`: what one forward of the terrain UNet costs, with and without replaced weights,
//! and what building a session costs — the numbers behind "probes reuse one session".
//! Writes a Markdown table to out/bench/runtime.md and prints it.

mod common;
mod terrain;

use bitsearch_onnx::{Model, discover_layers, tensor_to_f32};
use bitsearch_runtime::{Device, Session, SessionOptions};
use bitsearch_types::Component;
use ndarray::{ArrayD, IxDyn};
use std::time::{Duration, Instant};

const RUNS: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::load(terrain::model())?;
    let layers = discover_layers(&model, Component::Unet)?;
    let weights: Vec<String> = layers.iter().filter_map(|l| l.weight.clone()).collect();
    let cpu = |overridable: Vec<String>| {
        Session::new(&model, &SessionOptions { device: Device::Cpu, overridable, ..Default::default() })
    };
    let inputs = [
        ("noisy", ArrayD::from_elem(IxDyn(&[1, 1, 128, 128]), 0.5f32)),
        ("sigma", ArrayD::from_elem(IxDyn(&[1]), 80.0)),
        ("difficulty", ArrayD::from_elem(IxDyn(&[1]), 0.5)),
    ];
    let feeds: Vec<_> = inputs.iter().map(|(n, a)| (*n, a.view())).collect();
    // The largest weight: the worst case for copying an override in.
    let biggest = layers.iter().max_by_key(|l| l.params).and_then(|l| l.weight.clone()).ok_or("no weights")?;
    let view = bitsearch_onnx::GraphView::new(model.graph());
    let replacement = tensor_to_f32(view.initializer(&biggest).ok_or("weight not found")?)?.mapv(|v| v * 0.5);

    let mut rows = Vec::new();
    rows.push(("session build (plain)", time(|| cpu(vec![]).map(drop))?));
    rows.push(("session build (all weights overridable)", time(|| cpu(weights.clone()).map(drop))?));
    let mut plain = cpu(vec![])?;
    rows.push(("forward, plain session", time(|| plain.run(&feeds, &[]).map(drop))?));
    let mut probe = cpu(weights.clone())?;
    rows.push(("forward, overridable session, no override", time(|| probe.run(&feeds, &[]).map(drop))?));
    let overrides = [(biggest.as_str(), replacement.view())];
    rows.push(("forward, overridable session, one weight replaced", time(|| probe.run(&feeds, &overrides).map(drop))?));

    let base = rows[2].1.0.as_secs_f64();
    let mut table = format!(
        "# Runtime benchmark\n\nterrain UNet, batch 1, CPU, {} threads available; median and min of {RUNS} runs after 2 warm-ups.\n\n| what | median ms | min ms | × plain forward |\n|---|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (what, (median, min)) in &rows {
        let ratio = median.as_secs_f64() / base;
        table += &format!("| {what} | {:.1} | {:.1} | {ratio:.2} |\n", ms(*median), ms(*min));
    }
    Ok(common::publish("runtime.md", &table)?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and minimum wall time of `RUNS` calls after two warm-up calls.
fn time<E>(mut f: impl FnMut() -> Result<(), E>) -> Result<(Duration, Duration), E> {
    for _ in 0..2 {
        f()?;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed());
    }
    samples.sort();
    Ok((samples[RUNS / 2], samples[0]))
}
