//! What a workload generates: items (condition values or prompts, times seeds), the sampler and
//! its settings, and how sessions are built. Read from YAML as part of a stage's config
//! (`generation:`), overridden by flags, and kept in the sensitivity table's run description;
//! unknown fields and out-of-range values are errors naming the field.

use super::{Device, Pairing, Prediction, SamplerKind, TimeKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A field of a workload spec is wrong: names the field and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for SpecError {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Denoising steps; default 1 for sigma (consistency) models, 10 for discrete-time ones.
    pub steps: Option<usize>,
    pub sampler: Option<SamplerKind>,
    pub eta: f64,
    /// Seeds of the initial noise; `pairing` says which prompts (or conditions) run with which.
    pub seeds: Vec<u64>,
    pub pairing: Pairing,
    /// Denoiser files: values of each condition input; the conditions are their product.
    pub conditions: BTreeMap<String, Vec<f32>>,
    /// Denoiser files: tensor conditions, each a float32 `.npy` file holding one item's value
    /// (a text embedding, a class vector), given to every item. Left out of the JSON when
    /// empty, so runs recorded before it existed still compare equal.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub condition_files: BTreeMap<String, PathBuf>,
    /// Diffusers folders: the prompts.
    pub prompts: Vec<String>,
    pub negative_prompt: Option<String>,
    pub guidance: f32,
    pub prediction: Option<Prediction>,
    /// Denoiser files: the time input, when its name (sigma, timestep, t) does not give it away.
    pub time_input: Option<String>,
    /// Denoiser files: what the time input measures (discrete, sigma, vp); default from its name.
    pub time_kind: Option<TimeKind>,
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// Sizes of symbolic input dimensions (e.g. height).
    pub dims: BTreeMap<String, usize>,
    /// Items per network run.
    pub batch: usize,
    pub device: Device,
    /// Intra-op threads of ONNX Runtime; default one per core.
    pub threads: Option<usize>,
    /// Quantized folders are loaded without checking their files' sha256s (`--no-verify`);
    /// a property of this run, never recorded.
    #[serde(skip)]
    pub unverified: bool,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            steps: None,
            sampler: None,
            eta: 0.0,
            seeds: vec![0],
            pairing: Pairing::Every,
            conditions: BTreeMap::new(),
            condition_files: BTreeMap::new(),
            prompts: Vec::new(),
            negative_prompt: None,
            guidance: 7.5,
            prediction: None,
            time_input: None,
            time_kind: None,
            sigma_min: 0.002,
            sigma_max: 80.0,
            dims: BTreeMap::new(),
            batch: 8,
            device: Device::Auto,
            threads: None,
            unverified: false,
        }
    }
}

impl WorkloadSpec {
    /// Checks every value that does not depend on the model.
    pub fn validate(&self) -> Result<(), SpecError> {
        let positive = |field: &str, value: usize| -> Result<(), SpecError> {
            if value == 0 { Err(SpecError::new(field, "must be at least 1")) } else { Ok(()) }
        };
        positive("batch", self.batch)?;
        if let Some(steps) = self.steps {
            positive("steps", steps)?;
        }
        if let Some(t) = self.threads {
            positive("threads", t)?;
        }
        if self.seeds.is_empty() {
            return Err(SpecError::new("seeds", "needs at least one seed"));
        }
        if self.seeds.iter().enumerate().any(|(i, s)| self.seeds[..i].contains(s)) {
            return Err(SpecError::new("seeds", "lists a seed twice"));
        }
        self.pairs(self.sets())?;
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(SpecError::new("eta", format!("{} is outside [0, 1]", self.eta)));
        }
        // Positive tests, so that NaN fails them.
        if !(self.sigma_min > 0.0 && self.sigma_min.is_finite()) {
            return Err(SpecError::new("sigma_min", format!("{} is not a positive number", self.sigma_min)));
        }
        if !(self.sigma_max > self.sigma_min && self.sigma_max.is_finite()) {
            return Err(SpecError::new(
                "sigma_max",
                format!("{} is not a finite number above sigma_min ({})", self.sigma_max, self.sigma_min),
            ));
        }
        if !self.guidance.is_finite() {
            return Err(SpecError::new("guidance", format!("{} is not a finite number", self.guidance)));
        }
        for (name, values) in &self.conditions {
            if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
                return Err(SpecError::new(format!("conditions.{name}"), "needs one or more finite values"));
            }
        }
        if let Some(name) = self.condition_files.keys().find(|name| self.conditions.contains_key(*name)) {
            return Err(SpecError::new(
                format!("condition_files.{name}"),
                "the input also has values: give one or the other",
            ));
        }
        Ok(())
    }

    /// The items as (index into `sets` prompts or condition sets, seed), in order.
    pub fn pairs(&self, sets: usize) -> Result<Vec<(usize, u64)>, SpecError> {
        match self.pairing {
            Pairing::Every => Ok((0..sets).flat_map(|set| self.seeds.iter().map(move |&s| (set, s))).collect()),
            Pairing::Zip => match self.seeds[..] {
                [first] => (0..sets)
                    .map(|set| first.checked_add(set as u64).map(|seed| (set, seed)))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        SpecError::new("seeds", format!("{first}: {sets} seeds from it run past the largest seed"))
                    }),
                _ if self.seeds.len() == sets => Ok(self.seeds.iter().copied().enumerate().collect()),
                _ => Err(SpecError::new(
                    "seeds",
                    format!(
                        "pairing zip takes one seed per prompt or condition set ({sets}) or a single first seed; got {}",
                        self.seeds.len()
                    ),
                )),
            },
        }
    }

    /// Every prompt (or condition set) with each of `seeds`: what seeds given for other items
    /// (held-out, calibration) mean, whatever the pairing of the run they came from.
    pub fn pair_every_with(&mut self, seeds: Vec<u64>) {
        self.pairing = Pairing::Every;
        self.seeds = seeds;
    }

    /// How many prompts or condition sets the seeds pair with.
    pub fn sets(&self) -> usize {
        if self.prompts.is_empty() { self.condition_sets().len() } else { self.prompts.len() }
    }

    /// Every seed the items use, once each, in order of first use; empty when the seeds do not
    /// fit the pairing.
    pub fn item_seeds(&self) -> Vec<u64> {
        let mut seeds = Vec::new();
        for (_, seed) in self.pairs(self.sets()).unwrap_or_default() {
            if !seeds.contains(&seed) {
                seeds.push(seed);
            }
        }
        seeds
    }

    /// The seeds in a few words: `[0, 1]`, or `0..=127, one per item` under zip.
    pub fn describe_seeds(&self) -> String {
        match (self.pairing, &self.item_seeds()[..]) {
            (Pairing::Zip, [first, .., last]) => format!("{first}..={last}, one per item"),
            _ => format!("{:?}", self.seeds),
        }
    }

    /// Every combination of condition values, in the order of the names then the values.
    pub fn condition_sets(&self) -> Vec<Vec<(String, f32)>> {
        self.conditions.iter().fold(vec![Vec::new()], |sets, (name, values)| {
            sets.iter()
                .flat_map(|set| {
                    values.iter().map(move |&v| {
                        let mut next = set.clone();
                        next.push((name.clone(), v));
                        next
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_sets_are_the_product_of_the_values() {
        let mut spec = WorkloadSpec::default();
        spec.conditions.insert("a".into(), vec![1.0, 2.0]);
        spec.conditions.insert("b".into(), vec![0.5, 0.6, 0.7]);
        let sets = spec.condition_sets();
        assert_eq!(sets.len(), 6);
        assert_eq!(sets[1], vec![("a".to_string(), 1.0), ("b".to_string(), 0.6)]);
        assert_eq!(WorkloadSpec::default().condition_sets(), vec![Vec::new()]);
    }

    #[test]
    fn zip_gives_each_item_a_seed_of_its_own() {
        let mut spec = WorkloadSpec { seeds: vec![5, 9], ..Default::default() };
        assert_eq!(spec.pairs(2).unwrap(), vec![(0, 5), (0, 9), (1, 5), (1, 9)]);
        spec.pairing = Pairing::Zip;
        assert_eq!(spec.pairs(2).unwrap(), vec![(0, 5), (1, 9)]);
        let err = spec.pairs(3).unwrap_err().to_string();
        assert!(err.starts_with("seeds:") && err.contains("(3)"), "{err}");
        spec.seeds = vec![7];
        assert_eq!(spec.pairs(3).unwrap(), vec![(0, 7), (1, 8), (2, 9)]);
        spec.prompts = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(spec.item_seeds(), vec![7, 8, 9]);
        assert_eq!(spec.describe_seeds(), "7..=9, one per item");
        spec.seeds = vec![u64::MAX - 1];
        let err = spec.pairs(3).unwrap_err().to_string();
        assert!(err.starts_with("seeds:") && err.contains("largest seed"), "{err}");
        assert_eq!("zip".parse::<Pairing>(), Ok(Pairing::Zip));
    }

    #[test]
    fn bad_values_are_named() {
        let message = |edit: fn(&mut WorkloadSpec)| {
            let mut spec = WorkloadSpec::default();
            edit(&mut spec);
            spec.validate().unwrap_err().to_string()
        };
        assert!(message(|s| s.batch = 0).starts_with("batch:"));
        assert!(message(|s| s.seeds = vec![1, 1]).starts_with("seeds:"));
        assert!(message(|s| s.eta = 2.0).starts_with("eta:"));
        assert_eq!(
            message(|s| s.sigma_max = f64::NAN),
            "sigma_max: NaN is not a finite number above sigma_min (0.002)"
        );
        assert!(message(|s| s.sigma_min = -1.0).starts_with("sigma_min: -1"));
        assert!(message(|s| s.guidance = f32::INFINITY).starts_with("guidance: inf"));
        assert!(
            message(|s| drop(s.conditions.insert("difficulty".into(), vec![f32::NAN])))
                .starts_with("conditions.difficulty:")
        );
        assert!(
            message(|s| drop(s.conditions.insert("difficulty".into(), vec![]))).starts_with("conditions.difficulty:")
        );
    }
}
