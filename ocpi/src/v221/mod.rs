//! OCPI 2.2.1 objects: every object, class and enum of the specification's
//! modules, generated from the vendored text in `ocpi/spec/v221/` (field
//! names, cardinalities, bounds and descriptions as the spec writes them).

// The descriptions are the spec's own text, bare URLs included.
#[rustfmt::skip]
#[allow(rustdoc::bare_urls)]
mod generated;

pub use generated::*;

crate::types::version_details!();
