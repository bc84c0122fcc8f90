//! A window's sessions: the model with the window's weights overridable (and fake quantizers on
//! its layers' inputs when activations are probed), and the graph below the window where its
//! cut is fed. Everything a build needs is owned, so the next window's sessions are built on a
//! thread of their own while this window's probes run: on a large model a build costs as much
//! as several forwards.

use crate::error::Result;
use bitsearch_onnx::rewrite::{self, FakeQuantPoint};
use bitsearch_onnx::{GraphView, Model, tensor_to_f32};
use bitsearch_runtime::{Session, SessionOptions};
use bitsearch_types::Layer;
use ndarray::ArrayD;
use std::sync::Arc;
use std::thread::JoinHandle;

/// What one window's sessions are built from.
#[derive(Debug)]
pub(crate) struct WindowBuild {
    /// The model the probes run on: the base plan's, or the float one.
    pub model: Arc<Model>,
    /// The float model, which fake quantizers are inserted into.
    pub float: Arc<Model>,
    /// The window's layers, with their indices among the run's layers.
    pub layers: Vec<(usize, Layer)>,
    /// Fake quantizers on the layers' inputs (activation probes).
    pub activations: bool,
    /// MixDQ's BOS-aware quantizers on text-reading layers.
    pub bos_aware: bool,
    /// The layers' biases overridable too (bias correction).
    pub biases: bool,
    /// The values the cache captures for this window's cut; None: no cut.
    pub crossing: Option<Vec<String>>,
    /// More than one denoising step: the whole model runs the steps after a probe's first.
    pub whole_too: bool,
    pub options: SessionOptions,
}

/// A window's sessions, built.
pub(crate) struct WindowSessions {
    /// The whole model (when it runs), then the cut (when there is one).
    pub sessions: Vec<Session>,
    /// Which of `sessions` is the cut.
    pub cut: Option<usize>,
    /// The fake quantizers on the window's layers.
    pub points: Vec<FakeQuantPoint>,
    /// What a whole-model session is built from, for a one-step window whose cut turns out
    /// not to have all its values cached.
    pub model: Arc<Model>,
    pub options: SessionOptions,
}

/// A build running on its own thread.
pub(crate) struct Pending(JoinHandle<Result<WindowSessions>>);

impl WindowBuild {
    pub fn spawn(self) -> Pending {
        Pending(std::thread::spawn(move || self.build()))
    }

    fn build(self) -> Result<WindowSessions> {
        let mut options = self.options;
        options.overridable = self.layers.iter().filter_map(|(_, l)| l.weight.clone()).collect();
        if self.biases {
            let view = GraphView::new(self.float.graph());
            let biases = self.layers.iter().filter_map(|(_, l)| bias_of(&view, l));
            options.overridable.extend(biases.map(|(name, _)| name));
        }
        let (model, points) = if self.activations {
            let chosen: Vec<(usize, &Layer, bool)> =
                self.layers.iter().map(|(i, l)| (*i, l, self.bos_aware && l.role.reads_text())).collect();
            let (model, points) = rewrite::insert_fake_quantizers(&self.float, &chosen)?;
            options.overridable.extend(points.iter().flat_map(|p| p.parameters().map(str::to_string)));
            (Arc::new(model), points)
        } else {
            (self.model, Vec::new())
        };
        let nodes: Vec<&str> = self.layers.iter().map(|(_, l)| l.name.as_str()).collect();
        let sources: Vec<&str> = options.overridable.iter().map(String::as_str).collect();
        // The cut of the window's own model must read what the cache captured on the plain one.
        let cut = self.crossing.as_ref().and_then(|crossing| {
            let cut = rewrite::cut_below(&model, &nodes, &sources)?;
            let same = cut.fed.len() == crossing.len() && cut.fed.iter().all(|n| crossing.contains(n));
            same.then_some(cut)
        });
        let (sessions, at) = match cut {
            None => (vec![Session::new(&model, &options)?], None),
            Some(cut) if !self.whole_too => (vec![Session::new(&cut.model, &options)?], Some(0)),
            Some(cut) => (vec![Session::new(&model, &options)?, Session::new(&cut.model, &options)?], Some(1)),
        };
        Ok(WindowSessions { sessions, cut: at, points, model, options })
    }
}

impl Pending {
    /// True once the build is done (the thread no longer competes with the probes).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits for the sessions; a panic on the build thread goes on here.
    pub fn wait(self) -> Result<WindowSessions> {
        self.0.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The bias initializer of a Conv, ConvTranspose or Gemm layer (input 2) and its values.
pub(crate) fn bias_of(view: &GraphView<'_>, layer: &Layer) -> Option<(String, ArrayD<f32>)> {
    if !matches!(layer.op.as_str(), "Conv" | "ConvTranspose" | "Gemm") || layer.weight.is_none() {
        return None;
    }
    let node = (0..view.nodes().len()).find(|&i| view.node_name(i) == layer.name).map(|i| view.node(i))?;
    let name = node.input.get(2).filter(|b| !b.is_empty())?;
    let values = tensor_to_f32(view.initializer(name)?).ok()?;
    Some((name.clone(), values))
}
