//! The generation settings every generating stage shares and the sensitivity table records: the
//! workload spec and the names it is written with. Plain data, so records can hold it typed.

mod kinds;
mod spec;

pub use kinds::{Device, Pairing, Prediction, SamplerKind, TimeKind};
pub use spec::{SpecError, WorkloadSpec};
