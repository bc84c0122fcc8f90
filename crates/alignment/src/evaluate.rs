//! Generation and scoring in one pass: every prompt with every seed, in batches, each batch
//! decoded, classified and counted.

use crate::caption::{ObjectSpec, parse_prompt};
use crate::classifier::AttributeClassifier;
use crate::error::AlignmentError;
use crate::score::Scorer;
use bitsearch_pipeline::diffusers::{DiffusersPipeline, GenerateRequest};
use bitsearch_pipeline::workload::prompt_lines;
use ndarray::{ArrayD, ArrayViewD, Axis};
use std::path::Path;

/// Prompts read from a file, one per line, each parsed into the objects it asks for.
#[derive(Debug, Clone)]
pub struct PromptSet {
    pub prompts: Vec<String>,
    pub objects: Vec<Vec<ObjectSpec>>,
}

impl PromptSet {
    /// Reads `path` (blank lines and lines starting with `#` skipped) and parses every prompt
    /// against the classifier's schema, so a bad prompt fails before any generation.
    pub fn read(path: &Path, classifier: &AttributeClassifier) -> Result<Self, AlignmentError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| AlignmentError::file(path, format!("cannot read: {e}")))?;
        let prompts = prompt_lines(&text).map_err(|message| AlignmentError::file(path, message))?;
        let objects = prompts.iter().map(|p| parse_prompt(p, classifier.schema())).collect::<Result<_, _>>()?;
        Ok(Self { prompts, objects })
    }
}

/// The counts and the images they were made from.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub scorer: Scorer,
    /// [prompts × seeds, 3, H, W], prompt-major: image `p·seeds + s` is prompt `p` with seed `s`.
    pub images: ArrayD<f32>,
}

/// Generates every prompt of `set` with each of `seeds` (the rest of `template` as given) in
/// batches of at most `batch` images, and scores them with `classifier`. `progress` is called
/// with the number of images done after each batch.
pub fn evaluate(
    pipeline: &mut DiffusersPipeline,
    classifier: &mut AttributeClassifier,
    set: &PromptSet,
    seeds: &[u64],
    template: &GenerateRequest,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Evaluation, AlignmentError> {
    let jobs: Vec<(usize, u64)> = (0..set.prompts.len()).flat_map(|p| seeds.iter().map(move |&s| (p, s))).collect();
    let mut parts = Vec::new();
    let mut done = 0;
    for chunk in jobs.chunks(batch.max(1)) {
        let mut request = template.clone();
        request.prompts = chunk.iter().map(|&(p, _)| set.prompts[p].clone()).collect();
        request.seeds = chunk.iter().map(|&(_, s)| s).collect();
        parts.push(pipeline.generate(&request)?.images);
        done += chunk.len();
        progress(done);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let images = ndarray::concatenate(Axis(0), &views).map_err(|e| AlignmentError::Images(e.to_string()))?;
    let scorer = score_images(classifier, set, images.view(), seeds.len(), batch)?;
    Ok(Evaluation { scorer, images })
}

/// Scores images made by any generator (another pipeline, a client library): `images`
/// [prompts × seeds, 3, H, W] in the classifier's range, prompt-major as in
/// [`Evaluation::images`], classified `batch` at a time.
pub fn score_images(
    classifier: &mut AttributeClassifier,
    set: &PromptSet,
    images: ArrayViewD<'_, f32>,
    seeds: usize,
    batch: usize,
) -> Result<Scorer, AlignmentError> {
    let expected = set.prompts.len() * seeds;
    if images.ndim() != 4 || images.shape()[0] != expected || images.shape()[1] != 3 {
        return Err(AlignmentError::Images(format!(
            "images of shape {:?}, expected [{expected}, 3, height, width]: {} prompts × {seeds} seeds",
            images.shape(),
            set.prompts.len()
        )));
    }
    let batch = batch.max(1);
    let mut scorer = Scorer::new(classifier.schema().attributes.len());
    for (k, chunk) in images.axis_chunks_iter(Axis(0), batch).enumerate() {
        for (i, seen) in classifier.classify(chunk)?.iter().enumerate() {
            scorer.add(&set.objects[(k * batch + i) / seeds], seen);
        }
    }
    Ok(scorer)
}
