//! A window's quantized weights, computed on a worker thread of their own in probe order while
//! the window's sessions are built and its probes run: the quantization (and its clipping
//! search) leaves the critical path, but for the wait of a probe that overtakes it.

use crate::error::{Result, SensitivityError};
use bitsearch_onnx::Model;
use bitsearch_quant::{ApplyError, fake_quantized_weight};
use bitsearch_types::quantizer::WeightScheme;
use bitsearch_types::{Layer, WeightFormat};
use ndarray::ArrayD;
use std::collections::HashMap;
use std::sync::{Arc, mpsc};

/// Per (layer, form): the fake-quantized weight and its stored bytes.
pub(crate) type Weights = HashMap<(usize, WeightFormat), (ArrayD<f32>, u64)>;

/// The worker quantizing a window's weights.
pub(crate) struct Quantizing {
    done: mpsc::Receiver<QuantizedJob>,
    worker: std::thread::JoinHandle<()>,
}

/// A (layer, form) quantized: the fake-quantized weight and its stored bytes.
type QuantizedJob = ((usize, WeightFormat), std::result::Result<(ArrayD<f32>, u64), ApplyError>);

impl Quantizing {
    /// Starts quantizing each (layer, form) of `jobs`, in order, from `model`.
    pub fn start(model: &Arc<Model>, layers: &[Layer], scheme: WeightScheme, jobs: Vec<(usize, WeightFormat)>) -> Self {
        let (send, done) = mpsc::channel();
        let model = Arc::clone(model);
        let jobs: Vec<((usize, WeightFormat), Layer)> = jobs.into_iter().map(|k| (k, layers[k.0].clone())).collect();
        // Detached: once the window is done (or failed) the receiver is gone and the worker
        // stops at its next weight.
        let worker = std::thread::spawn(move || {
            for (key, layer) in jobs {
                if send.send((key, fake_quantized_weight(&model, &layer, &scheme, key.1, None))).is_err() {
                    return;
                }
            }
        });
        Self { done, worker }
    }

    /// True once every weight is quantized.
    pub fn is_finished(&self) -> bool {
        self.worker.is_finished()
    }

    /// Waits until `weights` holds `key`, keeping whatever the worker finished before it.
    pub fn wait(&self, key: (usize, WeightFormat), weights: &mut Weights) -> Result<()> {
        while !weights.contains_key(&key) {
            let (finished, weight) = self.done.recv().map_err(|_| SensitivityError::QuantizerStopped)?;
            weights.insert(finished, weight?);
        }
        Ok(())
    }
}
