//! The attribute classifier: images in, per slot a presence decision and each attribute's most
//! likely value out.

use crate::error::AlignmentError;
use crate::schema::Schema;
use bitsearch_onnx::Model;
use bitsearch_runtime::{Session, SessionOptions};
use ndarray::{ArrayD, ArrayViewD, Axis, Ix3};
use std::path::{Path, PathBuf};

const INPUT: &str = "image";

/// What the classifier sees in one slot of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReading {
    pub present: bool,
    /// Per attribute (schema order), the index of the most likely value.
    pub values: Vec<usize>,
}

#[derive(Debug)]
pub struct AttributeClassifier {
    session: Session,
    schema: Schema,
    path: PathBuf,
    /// Session output index of each of [`Schema::outputs`].
    outputs: Vec<usize>,
}

impl AttributeClassifier {
    /// Loads `dir/model.onnx` and `dir/config.json`.
    pub fn open(dir: &Path, options: &SessionOptions) -> Result<Self, AlignmentError> {
        let schema = Schema::read(&dir.join("config.json"))?;
        let path = dir.join("model.onnx");
        let session = Session::new(&Model::load(&path)?, options)?;
        if session.inputs().len() != 1 || session.inputs()[0].name != INPUT {
            return Err(AlignmentError::file(&path, format!("the classifier must take one input, '{INPUT}'")));
        }
        let outputs = schema
            .outputs()
            .map(|(name, _)| {
                session.outputs().iter().position(|o| o == name).ok_or_else(|| {
                    AlignmentError::file(
                        &path,
                        format!(
                            "config.json names the output '{name}', the model has [{}]",
                            session.outputs().join(", ")
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { session, schema, path, outputs })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Readings [image][slot] of `images` [batch, 3, H, W], clamped first to the classifier's
    /// image range (what a viewer of the saved image would see).
    pub fn classify(&mut self, images: ArrayViewD<'_, f32>) -> Result<Vec<Vec<SlotReading>>, AlignmentError> {
        let [low, high] = self.schema.image_range;
        let clamped = images.mapv(|v| v.clamp(low, high));
        let outputs = self.session.run(&[(INPUT, clamped.view())], &[])?;
        let batch = images.shape().first().copied().unwrap_or(0);
        let slots = self.schema.slots.len();
        let mut logits = Vec::with_capacity(self.outputs.len());
        for (&index, (name, values)) in self.outputs.iter().zip(self.schema.outputs()) {
            let output: &ArrayD<f32> = &outputs[index];
            if output.shape() != [batch, slots, values] {
                return Err(AlignmentError::file(
                    &self.path,
                    format!("output '{name}' has shape {:?}, expected [{batch}, {slots}, {values}]", output.shape()),
                ));
            }
            logits.push(output.view().into_dimensionality::<Ix3>().map_err(|e| AlignmentError::Images(e.to_string()))?);
        }
        let argmax = |row: ndarray::ArrayView1<'_, f32>| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
                .0
        };
        Ok((0..batch)
            .map(|b| {
                (0..slots)
                    .map(|s| {
                        let at =
                            |l: &ndarray::ArrayView3<'_, f32>| argmax(l.index_axis(Axis(0), b).index_axis(Axis(0), s));
                        SlotReading { present: at(&logits[0]) == 1, values: logits[1..].iter().map(at).collect() }
                    })
                    .collect()
            })
            .collect())
    }
}
