//! The charging-station side of OCPP-J over WebSocket, on tokio.
//!
//! A [`Client`] keeps one station connected to its CSMS: it connects (ws or
//! wss, with HTTP Basic auth or a client certificate), sends the
//! BootNotification and honours Pending/Rejected with the returned interval,
//! sends heartbeats at the CSMS's interval, reconnects with exponential
//! backoff and jitter (2.0.1 `RetryBackOff*` semantics), and delivers
//! transaction-related messages through a durable [`OfflineStore`], in order,
//! after every reconnect. CSMS-initiated calls go to the same
//! `evproto_ocpp_rpc::Router` type the server uses.
//!
//! # What this crate does not do
//!
//! No charging logic: connectors, transactions and meters are the firmware's
//! (see the simulator in `examples/evproto`). Protocol decisions are
//! `ocpp-proto`'s.
//!
//! # Data flow
//!
//! ```text
//!  Client::start ─► supervisor task: connect ─► boot loop ─► heartbeats ─┐
//!        ▲              ▲  (backoff + jitter on failure)                 │
//!        │              └──────────────── connection closed ◄────────────┘
//!  call::<A>(req) ─────► current Peer ─► evproto_ocpp_rpc::Connection ─► CSMS
//!  call_durable::<A>(req) ─► OfflineStore ─► replay worker (in order, retries)
//! ```
//!
//! # Example
//!
//! ```no_run
//! use evproto_ocpp_client::{Client, ClientConfig, MemoryStore};
//! use evproto_ocpp_proto::ProtocolVersion;
//! use evproto_ocpp_rpc::Router;
//!
//! # async fn run() {
//! let config = ClientConfig::new("ws://127.0.0.1:9000/ocpp/", "CP001", ProtocolVersion::V201)
//!     .with_password("s3cret-password");
//! let boot = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
//! let client = Client::start(config, Router::station_v201().into_routes(), boot, MemoryStore::new());
//! client.wait_ready(std::time::Duration::from_secs(10)).await.unwrap();
//! let hb = client.call::<evproto_ocpp_types::v201::action::Heartbeat>(&Default::default()).await.unwrap();
//! # let _ = hb;
//! # }
//! ```
//!
//! # Cancel safety
//!
//! Dropping a [`Client::call`] future behaves as `evproto_ocpp_rpc::Peer::call`
//! documents. [`Client::call_durable`] has stored the message once it returns
//! `Ok`; dropping it before that may or may not have stored it.

#![forbid(unsafe_code)]

mod client;
mod store;

pub use client::{Backoff, Client, ClientConfig, ClientState, ConnectFailure, Error, FailureHook};
pub use store::{FileStore, MemoryStore, OfflineStore, QueuedMessage};

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
