//! What a candidate is: a model on disk or a simulated plan, its label and record kind, what
//! its plan predicted, and how many bytes it takes.

use crate::{EvalError, Result};
use bitsearch_records::{Manifest, Plan, PointKind};
use bitsearch_types::tree_bytes;
use std::path::{Path, PathBuf};

/// One model to measure against the reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidate {
    /// A model on disk: an ONNX file, a `quantize` output folder, or a diffusers folder.
    Model(PathBuf),
    /// A plan simulated in float: the reference with its quantized weights fake-quantized.
    Simulated(PathBuf),
}

/// The folder of a pipeline's denoiser (`unet/`, `transformer/`); `path` itself otherwise.
fn denoiser_dir(path: &Path) -> PathBuf {
    let file = bitsearch_pipeline::workload::denoiser_file(path);
    match file.parent() {
        Some(dir) if path.is_dir() && dir.is_dir() => dir.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// Bytes of the denoiser a model path stands for: the file and its external data, the
/// quantized folder, or a pipeline's `unet/` (or `transformer/`) folder.
pub(crate) fn model_bytes(path: &Path) -> Result<u64> {
    let target = denoiser_dir(path);
    let error = |message: String| EvalError::File { path: target.clone(), message };
    if target.is_dir() {
        return tree_bytes(&target).map_err(|e| error(format!("cannot read: {e}")));
    }
    // A single file comes with the external-data files it names.
    bitsearch_onnx::bytes_on_disk(&target).map_err(|e| error(e.to_string()))
}

/// The manifest of a `quantize` folder: in the folder itself (a denoiser) or its `unet/` (a
/// pipeline); None for any other model.
pub fn manifest_of(path: &Path) -> Result<Option<Manifest>> {
    Ok(Manifest::find(path)?.or(Manifest::find(&denoiser_dir(path))?))
}

/// What a plan predicted: mean weight bits, SQNR, SSIM, PSNR (NaN without a plan).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Predicted {
    pub avg_bits: f64,
    pub sqnr_db: f64,
    pub ssim: f64,
    pub psnr_db: f64,
}

impl Predicted {
    pub const NONE: Self = Self { avg_bits: f64::NAN, sqnr_db: f64::NAN, ssim: f64::NAN, psnr_db: f64::NAN };
}

/// A candidate's label, its record kind and what its plan predicted.
pub(crate) fn describe(candidate: &Candidate) -> Result<(String, String, Predicted)> {
    Ok(match candidate {
        Candidate::Simulated(plan) => {
            let plan = Plan::read(plan)?;
            let p = &plan.prediction;
            let avg_bits = plan.summary.avg_bits;
            let label = format!("{} {avg_bits:.2} bits (simulated)", kind_of(&plan.solver.name));
            (label, "simulated".into(), Predicted { avg_bits, sqnr_db: p.sqnr_db, ssim: p.ssim, psnr_db: p.psnr_db })
        }
        Candidate::Model(path) => match manifest_of(path)? {
            Some(m) => {
                let kind = kind_of(&m.method).to_string();
                let activations = match m.activation_layers {
                    0 => String::new(),
                    n => format!(", A8 on {n} layers"),
                };
                let mut corrections = String::new();
                if m.split_layers > 0 {
                    corrections.push_str(&format!(", split on {} layers", m.split_layers));
                }
                if m.corrections.bos_aware {
                    corrections.push_str(", BOS-aware");
                }
                if m.corrections.bias_correction {
                    corrections.push_str(", bias-corrected");
                }
                if m.corrections.noise_correction.is_some() {
                    corrections.push_str(", PTQD");
                }
                let label = format!("{kind} {:.2} bits{activations}{corrections} ({})", m.avg_bits, m.storage);
                let predicted = Predicted {
                    avg_bits: m.avg_bits,
                    sqnr_db: m.predicted_sqnr_db,
                    ssim: m.predicted_ssim,
                    psnr_db: m.predicted_psnr_db,
                };
                (label, kind, predicted)
            }
            None => {
                let label = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
                (label, "model".into(), Predicted::NONE)
            }
        },
    })
}

/// The frontier kind of a recorded solver name; a name no solver writes is taken for the
/// integer program's.
fn kind_of(solver: &str) -> PointKind {
    PointKind::of_solver(solver).unwrap_or(PointKind::Ilp)
}
