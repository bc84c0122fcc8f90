//! The configuration a sensitivity run recorded in its table: the generation settings typed (the
//! items calibration and evaluation start from), every other field kept as the JSON it was, to
//! compare runs (resume, merge). Written exactly as the whole config was before it was typed.

use bitsearch_types::generation::WorkloadSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The key of the generation settings in a stage's config.
const GENERATION: &str = "generation";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunConfig {
    /// The `generation` section: items, sampler and sessions (None: the config had none, as
    /// synthetic tables; read it with [`RunConfig::generation`]).
    pub generation: Option<WorkloadSpec>,
    /// Every other field of the stage's config, by name.
    pub rest: Map<String, Value>,
}

impl RunConfig {
    /// The config `value` (a JSON object) with its `generation` section read as a workload spec.
    pub fn from_value(value: Value) -> serde_json::Result<Self> {
        let mut rest: Map<String, Value> = serde_json::from_value(value)?;
        let generation = rest.remove(GENERATION).map(serde_json::from_value).transpose()?;
        Ok(Self { generation, rest })
    }

    /// The generation settings the run used: a config without them generated with the default spec.
    pub fn generation(&self) -> WorkloadSpec {
        self.generation.clone().unwrap_or_default()
    }

    /// The whole config as one JSON object, the generation section among the other fields.
    pub fn to_value(&self) -> serde_json::Result<Value> {
        let mut all = self.rest.clone();
        if let Some(generation) = &self.generation {
            all.insert(GENERATION.to_string(), serde_json::to_value(generation)?);
        }
        Ok(Value::Object(all))
    }
}

impl Serialize for RunConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().map_err(serde::ser::Error::custom)?.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RunConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitsearch_types::generation::{Pairing, SamplerKind};

    #[test]
    fn the_config_is_written_as_the_json_it_was_read_from() {
        let json = r#"{"a_bits":[],"generation":{"batch":2,"conditions":{"difficulty":[1.0]},"device":"cpu","dims":{},"eta":0.0,"guidance":7.5,"negative_prompt":null,"pairing":"zip","prediction":null,"prompts":[],"sampler":"edm-euler","seeds":[3],"sigma_max":80.0,"sigma_min":0.002,"steps":4,"threads":null,"time_input":null,"time_kind":null},"w_bits":[4,8]}"#;
        let config: RunConfig = serde_json::from_str(json).unwrap();
        let generation = config.generation();
        assert_eq!(generation.sampler, Some(SamplerKind::EdmEuler));
        assert_eq!((generation.pairing, generation.batch), (Pairing::Zip, 2));
        assert_eq!(config.rest.len(), 2);
        assert_eq!(serde_json::to_string(&config).unwrap(), json);
    }

    #[test]
    fn a_config_without_generation_stays_without_and_reads_the_default_spec() {
        let json = serde_json::json!({"w_bits": [4]});
        let config = RunConfig::from_value(json.clone()).unwrap();
        assert_eq!(config.generation(), WorkloadSpec::default());
        assert_eq!(config.to_value().unwrap(), json);
        assert!(RunConfig::from_value(serde_json::json!({"generation": {"stpes": 4}})).is_err());
    }
}
