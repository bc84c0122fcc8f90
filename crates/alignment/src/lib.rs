//! Prompt-image alignment, the content metric of text-to-image pipelines that bitsearch can
//! measure without CLIP: an attribute classifier shipped with the model reads, for each
//! position slot of an image, whether an object is there and its attributes (shape, colour,
//! size…); each prompt is parsed into the objects it asks for; accuracy is counted per
//! attribute and for whole captions.
//!
//! The classifier folder holds `model.onnx` (input `image` [batch, 3, H, W]; one output for
//! presence and one per attribute, each [batch, slots, values]) and `config.json`:
//!
//! ```json
//! { "image_range": [-1.0, 1.0], "slots": ["left", "right", "top", "bottom"], "presence": "presence",
//!   "attributes": { "shape": ["circle", "square", "triangle"], "colour": ["red", "green"] } }
//! ```

mod caption;
mod classifier;
mod error;
mod evaluate;
mod report;
mod schema;
mod score;

pub use caption::{ObjectSpec, parse_prompt};
pub use classifier::{AttributeClassifier, SlotReading};
pub use error::AlignmentError;
pub use evaluate::{Evaluation, PromptSet, evaluate, score_images};
pub use report::{ALIGN_REPORT_FORMAT, AlignGeneration, AlignReport, AlignRow};
pub use schema::Schema;
pub use score::{Accuracy, Scorer};
