//! What the classifier reads: its position slots and each attribute's values, in the order of
//! its output logits (`config.json` beside the model).

use crate::error::AlignmentError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The value range of the images the classifier takes, [low, high].
    pub image_range: [f32; 2],
    /// Position words, one per slot, in the order of the outputs' slot axis.
    pub slots: Vec<String>,
    /// Output giving [absent, present] logits per slot.
    pub presence: String,
    /// Output name (also the attribute's name) → its value words in logit order.
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl Schema {
    pub fn read(path: &Path) -> Result<Self, AlignmentError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| AlignmentError::file(path, format!("cannot read: {e}")))?;
        let schema: Schema =
            serde_json::from_str(&text).map_err(|e| AlignmentError::file(path, format!("invalid config: {e}")))?;
        schema.check().map_err(|message| AlignmentError::file(path, message))?;
        Ok(schema)
    }

    /// The classifier's outputs in the order readings use them: presence first, then each
    /// attribute; each with its number of logits per slot.
    pub fn outputs(&self) -> impl Iterator<Item = (&str, usize)> {
        let presence = std::iter::once((self.presence.as_str(), 2));
        presence.chain(self.attributes.iter().map(|(name, values)| (name.as_str(), values.len())))
    }

    fn check(&self) -> Result<(), String> {
        let [low, high] = self.image_range;
        // NaN bounds fail too: partial_cmp gives None.
        if low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
            return Err(format!("image_range must be [low, high] with low < high, got [{low}, {high}]"));
        }
        if self.slots.is_empty() {
            return Err("slots must name at least one position".into());
        }
        if self.attributes.is_empty() {
            return Err("attributes must name at least one attribute".into());
        }
        // A word may mean one thing only, or prompts become ambiguous.
        let mut seen = BTreeMap::new();
        let words = self.slots.iter().map(|w| ("slots", w));
        let words = words.chain(self.attributes.iter().flat_map(|(a, vs)| vs.iter().map(move |v| (a.as_str(), v))));
        for (field, word) in words {
            if let Some(other) = seen.insert(word.to_lowercase(), field) {
                return Err(format!("the word '{word}' is listed under both {other} and {field}"));
            }
        }
        if let Some((name, _)) = self.attributes.iter().find(|(_, values)| values.len() < 2) {
            return Err(format!("attribute '{name}' needs at least two values"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(json: &str) -> Result<Schema, String> {
        let schema: Schema = serde_json::from_str(json).map_err(|e| e.to_string())?;
        schema.check().map(|()| schema)
    }

    #[test]
    fn ambiguous_and_degenerate_schemas_are_refused() {
        let ok = r#"{"image_range":[-1,1],"slots":["left","right"],"presence":"p","attributes":{"shape":["circle","square"]}}"#;
        assert!(schema(ok).is_ok());
        let twice = ok.replace("\"square\"", "\"left\"");
        assert!(schema(&twice).unwrap_err().contains("'left' is listed under both slots and shape"));
        let single = ok.replace(",\"square\"", "");
        assert!(schema(&single).unwrap_err().contains("at least two values"));
        let range = ok.replace("[-1,1]", "[1,1]");
        assert!(schema(&range).unwrap_err().contains("low < high"));
        assert!(schema(&ok.replace("\"presence\"", "\"extra\":1,\"presence\"")).unwrap_err().contains("unknown field"));
    }
}
