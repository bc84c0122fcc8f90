//! JSON has no infinities, and serde_json writes them (and NaN) as `null`, which no `f64` reads
//! back: `#[serde(with = "float_text")]` writes non-finite floats as the strings `inf`, `-inf`
//! and `NaN` and finite ones as numbers, and reads either; a `null` (what a record stored before
//! this was written) reads as NaN, the value it can no longer tell apart.

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() { serializer.serialize_f64(*value) } else { serializer.serialize_str(&value.to_string()) }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
        Null,
    }
    match Repr::deserialize(deserializer)? {
        Repr::Number(v) => Ok(v),
        Repr::Null => Ok(f64::NAN),
        Repr::Text(s) => s.parse().map_err(|_| serde::de::Error::custom(format!("'{s}' is not a number"))),
    }
}
