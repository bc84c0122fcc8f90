//! Accuracy counts: per attribute and position over the objects prompts ask for, and whole
//! captions over images (every object right, and no object where none was asked for).

use crate::caption::ObjectSpec;
use crate::classifier::SlotReading;

/// Hits and trials of one measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accuracy {
    pub hits: usize,
    pub total: usize,
}

impl Accuracy {
    fn add(&mut self, hit: bool) {
        self.hits += usize::from(hit);
        self.total += 1;
    }

    /// hits / total; NaN when nothing was counted.
    pub fn value(&self) -> f64 {
        self.hits as f64 / self.total as f64
    }
}

/// Running counts over many images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scorer {
    /// Per attribute, schema order.
    pub attributes: Vec<Accuracy>,
    /// An object was found at the asked-for slot.
    pub position: Accuracy,
    pub caption: Accuracy,
}

impl Scorer {
    pub fn new(attributes: usize) -> Self {
        Self {
            attributes: vec![Accuracy::default(); attributes],
            position: Accuracy::default(),
            caption: Accuracy::default(),
        }
    }

    /// Counts one image against the objects its prompt asked for. An attribute counts as right
    /// only where an object was found in its slot.
    pub fn add(&mut self, wanted: &[ObjectSpec], seen: &[SlotReading]) {
        let mut whole = true;
        for object in wanted {
            let reading = &seen[object.slot];
            self.position.add(reading.present);
            whole &= reading.present;
            for (k, (&want, &got)) in object.values.iter().zip(&reading.values).enumerate() {
                let hit = reading.present && want == got;
                self.attributes[k].add(hit);
                whole &= hit;
            }
        }
        let extra = seen.iter().enumerate().any(|(slot, r)| r.present && !wanted.iter().any(|o| o.slot == slot));
        self.caption.add(whole && !extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(present: bool, values: &[usize]) -> SlotReading {
        SlotReading { present, values: values.to_vec() }
    }

    #[test]
    fn whole_caption_needs_every_attribute_and_no_extra_object() {
        let wanted = [ObjectSpec { slot: 0, values: vec![1, 2] }, ObjectSpec { slot: 2, values: vec![0, 0] }];
        let absent = reading(false, &[0, 0]);
        let mut scorer = Scorer::new(2);
        // Exactly right.
        scorer.add(&wanted, &[reading(true, &[1, 2]), absent.clone(), reading(true, &[0, 0])]);
        // Second attribute of the first object wrong.
        scorer.add(&wanted, &[reading(true, &[1, 0]), absent.clone(), reading(true, &[0, 0])]);
        // Right objects, plus one nobody asked for.
        scorer.add(&wanted, &[reading(true, &[1, 2]), reading(true, &[0, 0]), reading(true, &[0, 0])]);
        // Second object missing: its attributes count as wrong even if the logits happen to match.
        scorer.add(&wanted, &[reading(true, &[1, 2]), absent.clone(), reading(false, &[0, 0])]);
        assert_eq!(scorer.caption, Accuracy { hits: 1, total: 4 });
        assert_eq!(scorer.position, Accuracy { hits: 7, total: 8 });
        assert_eq!(scorer.attributes[0], Accuracy { hits: 7, total: 8 });
        assert_eq!(scorer.attributes[1], Accuracy { hits: 6, total: 8 });
        assert!((scorer.attributes[1].value() - 0.75).abs() < 1e-12);
    }
}
