//! Integration tests of the `ocpi` crate (one test binary, topic modules).

mod ocpi {
    mod spec_examples;
}
