//! Whole-caption accuracy, for pipelines that ship an attribute classifier.

use crate::Result;
use bitsearch_alignment::{AttributeClassifier, ObjectSpec, Scorer, parse_prompt};
use bitsearch_pipeline::workload::WorkloadSpec;
use bitsearch_runtime::SessionOptions;
use ndarray::ArrayD;
use std::path::Path;

/// Whole-caption accuracy of a pipeline that ships an attribute classifier.
pub(crate) struct Captions {
    classifier: AttributeClassifier,
    /// The objects each item's prompt asks for, in item order.
    wanted: Vec<Vec<ObjectSpec>>,
}

impl Captions {
    /// None unless `model` is a pipeline folder with `classifier/`.
    pub fn open(model: &Path, spec: &WorkloadSpec) -> Result<Option<Self>> {
        let dir = model.join("classifier");
        if !dir.is_dir() || spec.prompts.is_empty() {
            return Ok(None);
        }
        let options = SessionOptions::for_workload(spec);
        let classifier = AttributeClassifier::open(&dir, &options)?;
        let objects: Vec<Vec<ObjectSpec>> =
            spec.prompts.iter().map(|p| parse_prompt(p, classifier.schema())).collect::<Result<_, _>>()?;
        let wanted = spec
            .pairs(objects.len())
            .map_err(bitsearch_pipeline::PipelineError::from)?
            .into_iter()
            .map(|(p, _)| objects[p].clone())
            .collect();
        Ok(Some(Self { classifier, wanted }))
    }

    pub fn accuracy(&mut self, images: &ArrayD<f32>) -> Result<f64> {
        let mut scorer = Scorer::new(self.classifier.schema().attributes.len());
        for (wanted, seen) in self.wanted.iter().zip(self.classifier.classify(images.view())?) {
            scorer.add(wanted, &seen);
        }
        Ok(scorer.caption.value())
    }
}
