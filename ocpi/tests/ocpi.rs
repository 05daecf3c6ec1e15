//! Integration tests of the `ocpi` crate (one test binary, topic modules).

mod ocpi {
    mod props;
    mod server;
    mod spec_examples;
    mod ssrf;
}
