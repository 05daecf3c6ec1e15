//! Cross-crate and peer-interop tests live in `integration/`; this crate has no library code.
