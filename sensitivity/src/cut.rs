//! Downstream-only probes: a probe changes one layer, so at its first quantized step (the inputs
//! still the full-precision ones) only the graph below its window needs to run, fed the values
//! that cross the window's cut in a full-precision pass. Those values are captured in passes
//! over the model and kept within a byte budget (`cache_mb`); a (window, batch) whose values
//! did not fit runs the whole model instead, as every probe did before.

use bitsearch_onnx::Model;
use bitsearch_pipeline::workload::{self, Workload};
use bitsearch_runtime::SessionOptions;
use ndarray::{ArrayD, ArrayViewD};
use std::collections::{HashMap, HashSet};

/// What the cache did over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The budget, bytes.
    pub budget: usize,
    /// The most the cached values held at once, bytes.
    pub peak: usize,
    /// Capture passes over the model.
    pub captures: usize,
    /// Probe runs of one batch whose first quantized step ran below the cut / ran the whole model.
    pub cut_runs: usize,
    pub whole_runs: usize,
}

/// The full-precision values crossing each window's cut, by (tensor, batch, step).
#[derive(Debug)]
pub(crate) struct CutCache {
    /// Per window of the run: the values crossing its cut (None: no cut, the whole model runs).
    crossing: Vec<Option<Vec<String>>>,
    /// The first step of each step group: where a probe's inputs are still the FP ones.
    starts: Vec<usize>,
    batches: usize,
    values: HashMap<(String, usize, usize), ArrayD<f32>>,
    bytes: usize,
    /// The window the last capture started at: one capture per window at most.
    captured_at: Option<usize>,
    pub stats: CacheStats,
}

impl CutCache {
    pub fn new(budget: usize, crossing: Vec<Option<Vec<String>>>, starts: Vec<usize>, batches: usize) -> Self {
        let stats = CacheStats { budget, ..Default::default() };
        Self { crossing, starts, batches, values: HashMap::new(), bytes: 0, captured_at: None, stats }
    }

    /// The values crossing window `w`'s cut.
    pub fn crossing(&self, w: usize) -> Option<&[String]> {
        self.crossing[w].as_deref()
    }

    /// The values to feed window `w`'s cut at batch `batch`, group `group`, if all are held.
    pub fn feeds(&self, w: usize, batch: usize, group: usize) -> Option<Vec<(&str, ArrayViewD<'_, f32>)>> {
        let step = self.starts[group];
        let names = self.crossing(w)?;
        names.iter().map(|n| Some((n.as_str(), self.values.get(&(n.clone(), batch, step))?.view()))).collect()
    }

    /// True when every (batch, group) of window `w` is held.
    pub fn holds_all(&self, w: usize) -> bool {
        (0..self.batches).all(|b| (0..self.starts.len()).all(|g| self.feeds(w, b, g).is_some()))
    }

    /// Before window `w`'s probes: drops what no window from `w` on reads, and when `w` lacks
    /// values, captures in one pass over `model` as many of the values of windows `w`, `w+1`, …
    /// as the budget holds, in window order. Returns whether it ran a pass.
    pub fn prepare(
        &mut self,
        w: usize,
        workload: &mut dyn Workload,
        model: &Model,
        options: &SessionOptions,
    ) -> Result<bool, bitsearch_pipeline::PipelineError> {
        let needed: HashSet<&String> = self.crossing[w..].iter().flatten().flatten().collect();
        let before = self.values.len();
        self.values.retain(|(name, _, _), _| needed.contains(name));
        if self.values.len() != before {
            self.bytes = self.values.values().map(|v| v.len() * size_of::<f32>()).sum();
        }
        if self.crossing[w].is_none() || self.holds_all(w) || self.captured_at == Some(w) {
            return Ok(false);
        }
        self.captured_at = Some(w);
        let mut tensors: Vec<String> = Vec::new();
        for name in self.crossing[w..].iter().flatten().flatten() {
            if !tensors.contains(name) {
                tensors.push(name.clone());
            }
        }
        let starts: HashSet<usize> = self.starts.iter().copied().collect();
        let budget = self.stats.budget;
        let (values, bytes) = (&mut self.values, &mut self.bytes);
        // Values arrive batch by batch, each in window order: a value that does not fit is
        // skipped, and what later windows need may still fit after it.
        workload::observe(workload, model, &tensors, options, |tensor, batch, step, value| {
            let size = value.len() * size_of::<f32>();
            let key = (tensor.to_string(), batch, step);
            if starts.contains(&step) && *bytes + size <= budget && !values.contains_key(&key) {
                values.insert(key, value.to_owned());
                *bytes += size;
            }
        })?;
        self.stats.captures += 1;
        self.stats.peak = self.stats.peak.max(self.bytes);
        Ok(true)
    }
}
