//! OCPI 2.3.0 objects: every object, class and enum of the specification's
//! modules, generated from the vendored text in `ocpi/spec/v230/` (field
//! names, cardinalities, bounds and descriptions as the spec writes them).

#[rustfmt::skip]
mod generated;

pub use generated::*;

use serde::{Deserialize, Serialize};

/// The version details endpoint's data: this version's endpoints
/// (`version_information_endpoint`, "Version details endpoint").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDetails {
    /// The version number.
    pub version: VersionNumber,
    /// The endpoints this party offers in this version.
    #[serde(deserialize_with = "crate::types::non_empty")]
    pub endpoints: Vec<Endpoint>,
    /// Fields this version does not define, kept and sent back unchanged.
    #[serde(flatten)]
    pub extra: crate::types::Extra,
}
