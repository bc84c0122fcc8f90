//! Prompts as lists of objects: clauses joined by "and", each naming one position slot and one
//! value of every attribute ("a small red circle on the left and a large blue square at the top").

use crate::error::AlignmentError;
use crate::schema::Schema;

/// One object a prompt asks for: its slot and, per attribute (in the schema's order), the
/// index of the value it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    pub slot: usize,
    pub values: Vec<usize>,
}

/// The objects of `prompt`. Every clause must name exactly one slot and one value of each
/// attribute; two objects may not share a slot.
pub fn parse_prompt(prompt: &str, schema: &Schema) -> Result<Vec<ObjectSpec>, AlignmentError> {
    let error = |message: String| AlignmentError::Prompt { prompt: prompt.to_string(), message };
    let lowered = prompt.to_lowercase();
    let words: Vec<&str> = lowered.split_whitespace().collect();
    let mut objects: Vec<ObjectSpec> = Vec::new();
    for clause in words.split(|w| *w == "and") {
        let shown = clause.join(" ");
        let find = |what: &str, choices: &[String]| -> Result<usize, AlignmentError> {
            let found: Vec<usize> = (0..choices.len()).filter(|&i| clause.contains(&choices[i].as_str())).collect();
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(error(format!("'{shown}' names no {what} (expected one of {})", choices.join(", ")))),
                _ => Err(error(format!("'{shown}' names more than one {what}"))),
            }
        };
        let slot = find("position", &schema.slots)?;
        let values = schema.attributes.iter().map(|(name, values)| find(name, values)).collect::<Result<_, _>>()?;
        if objects.iter().any(|o| o.slot == slot) {
            return Err(error(format!("two objects at the position '{}'", schema.slots[slot])));
        }
        objects.push(ObjectSpec { slot, values });
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn shapes_schema() -> Schema {
        let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        Schema {
            image_range: [-1.0, 1.0],
            slots: words(&["left", "right", "top", "bottom"]),
            presence: "presence".into(),
            attributes: BTreeMap::from([
                ("colour".to_string(), words(&["red", "green", "blue", "yellow"])),
                ("shape".to_string(), words(&["circle", "square", "triangle"])),
                ("size".to_string(), words(&["small", "large"])),
            ]),
        }
    }

    #[test]
    fn two_clauses_become_two_objects_in_schema_order() {
        let schema = shapes_schema();
        let objects =
            parse_prompt("A small red circle on the left and a large blue square at the top", &schema).unwrap();
        // Attributes in BTreeMap order: colour, shape, size.
        assert_eq!(
            objects,
            vec![ObjectSpec { slot: 0, values: vec![0, 0, 0] }, ObjectSpec { slot: 2, values: vec![2, 1, 1] }]
        );
    }

    #[test]
    fn prompts_the_schema_cannot_score_are_errors_naming_the_clause() {
        let schema = shapes_schema();
        let message = |p: &str| parse_prompt(p, &schema).unwrap_err().to_string();
        assert!(
            message("a red circle on the left")
                .contains("'a red circle on the left' names no size (expected one of small, large)")
        );
        assert!(message("a small red blue circle on the left").contains("names more than one colour"));
        assert!(message("a small red circle").contains("names no position"));
        assert!(
            message("a small red circle on the left and a large red square on the left")
                .contains("two objects at the position 'left'")
        );
    }
}
