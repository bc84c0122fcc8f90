//! The second moments of layers' inputs on a workload's items, which GPTQ rounds against: the
//! float model runs every batch, each layer's input is captured at every step, unfolded into
//! rows of features and summed as `x xᵀ`. Layers that read the same input the same way share one
//! moment; moments that would not fit in memory together take several passes.

use super::{Workload, observe};
use crate::PipelineError;
use bitsearch_onnx::{GraphView, Model};
use bitsearch_quant::{Hessian, Unfold};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::Layer;

/// Bytes the moments of one pass may take together (a 1280-channel 3×3 Conv's alone is 1.1 GB).
pub const PASS_BYTES: u64 = 2 << 30;

/// A layer whose input moment is wanted: the tensor it reads and how that unfolds.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub input: String,
    pub unfold: Unfold,
}

impl Wanted {
    /// The moment GPTQ needs for `layer` of the graph `view`; None where GPTQ does not apply.
    pub fn of(view: &GraphView<'_>, layer: &Layer) -> Option<Self> {
        Some(Self { input: layer.inputs.first()?.clone(), unfold: Unfold::of(view, layer)? })
    }
}

/// Runs `workload` on `model` once per pass; after each pass, `each` gets every entry of
/// `wanted` measured in it (its index and moment), and the pass's moments are dropped.
pub fn second_moments<E: From<PipelineError>>(
    workload: &mut dyn Workload,
    model: &Model,
    wanted: &[Wanted],
    options: &SessionOptions,
    mut each: impl FnMut(usize, &Hessian) -> Result<(), E>,
) -> Result<(), E> {
    let captures = workload.batches() * workload.steps();
    let mut keys: Vec<&Wanted> = Vec::new();
    let mut key_of = Vec::with_capacity(wanted.len());
    for w in wanted {
        let key = keys.iter().position(|k| k.input == w.input && k.unfold == w.unfold).unwrap_or_else(|| {
            keys.push(w);
            keys.len() - 1
        });
        key_of.push(key);
    }
    let mut start = 0;
    while start < keys.len() {
        let mut end = start + 1;
        let mut bytes = Hessian::bytes(keys[start].unfold.features());
        while let Some(next) = keys.get(end).map(|k| Hessian::bytes(k.unfold.features()))
            && bytes + next <= PASS_BYTES
        {
            bytes += next;
            end += 1;
        }
        let pass = &keys[start..end];
        let mut moments: Vec<Hessian> = pass.iter().map(|k| Hessian::new(k.unfold.features())).collect();
        let mut tensors: Vec<String> = pass.iter().map(|k| k.input.clone()).collect();
        tensors.sort();
        tensors.dedup();
        let mut failed = None;
        observe(workload, model, &tensors, options, |tensor, _, _, values| {
            for (moment, key) in moments.iter_mut().zip(pass).filter(|(_, k)| k.input == tensor) {
                let limit = Hessian::rows_per_capture(key.unfold.features(), captures);
                match key.unfold.rows(values.view(), limit) {
                    Ok((rows, count)) => moment.add(&rows, count),
                    Err(e) => failed = failed.take().or(Some(format!("the input '{tensor}' of a layer: {e}"))),
                }
            }
        })
        .map_err(E::from)?;
        if let Some(message) = failed {
            return Err(PipelineError::Request(message).into());
        }
        for (i, &key) in key_of.iter().enumerate() {
            if (start..end).contains(&key) {
                each(i, &moments[key - start])?;
            }
        }
        start = end;
    }
    Ok(())
}
