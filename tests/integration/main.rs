#![allow(unreachable_pub, missing_docs)]

//! Cross-crate tests: our client against our server over real sockets, and
//! interop with real peers (the Python `ocpp` package).
//!
//! One test binary with topic modules, to keep link time down on 2 cores.

mod csms;
mod josev;
mod loopback;
mod node;
mod ocpi_extrawest;
mod peers;
mod python;
mod tls;
