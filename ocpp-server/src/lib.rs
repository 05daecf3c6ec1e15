//! The CSMS side of OCPP-J over WebSocket, on tokio.
//!
//! A [`Server`] accepts charging stations at `ws(s)://host/ocpp/{identity}`,
//! negotiates the subprotocol (`ocpp2.1`, `ocpp2.0.1`, `ocpp1.6`, in the
//! server's order of preference among those it has routes for), enforces the
//! security profile, and runs each connection through the sans-IO
//! `evproto_ocpp_proto::Endpoint`. Any task can call a connected station through
//! [`Server::station`].
//!
//! # What this crate does not do
//!
//! Protocol decisions (correlation, timeouts, CALLERROR codes) are
//! `ocpp-proto`'s; payload validation is `ocpp-types`'. Storage, billing and
//! the rest of a CSMS are yours (see `examples/csms` in the workspace).
//!
//! # Data flow
//!
//! ```text
//!  TCP ─► [TLS (profiles 2, 3)] ─► HTTP upgrade: path → identity, subprotocol, Basic auth / client cert
//!                                      │ 400 / 401 / 404 on refusal (ServerEvent::Refused, a typed Error)
//!                                      ▼
//!                       evproto_ocpp_rpc::Connection (one task per station) ◄── Server::station(id).call::<A>(..)
//!                                      │
//!                                      ▼
//!                              your Router handlers
//! ```
//!
//! # Example
//!
//! ```no_run
//! use evproto_ocpp_proto::CallError;
//! use evproto_ocpp_rpc::{Ctx, Router};
//! use evproto_ocpp_server::{Security, Server};
//! use evproto_ocpp_types::v201::{self, action};
//!
//! async fn boot(_: Ctx<()>, _: v201::BootNotificationRequest) -> Result<v201::BootNotificationResponse, CallError> {
//!     Ok(v201::BootNotificationResponse {
//!         current_time: chrono::Utc::now(),
//!         interval: 300,
//!         status: v201::RegistrationStatusEnumType::Accepted,
//!         status_info: None,
//!         custom_data: None,
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::builder(Security::basic_auth(|identity: &str, password: &[u8]| {
//!         identity == "CP001" && password == b"s3cret-password"
//!     }))
//!     .v201(Router::csms_v201().on::<action::BootNotification>(boot).into_routes())
//!     .build();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:9000").await?;
//! server.serve(listener, std::future::pending()).await
//! # }
//! ```
//!
//! # Security profiles
//!
//! The profile is a required argument of [`Server::builder`], so it is always
//! a decision: [`Security::basic_auth`] (1: HTTP Basic over plain WebSocket),
//! [`Security::tls_basic_auth`] (2: TLS, then Basic), [`Security::mutual_tls`]
//! (3: TLS with a client certificate whose subject CN must equal the
//! identity). Profile 0 (no authentication) exists only as
//! [`Security::unsecured`], for tests and closed networks.
//!
//! # TLS libraries
//!
//! TLS is rustls by default. OCPP also requires a CSMS to offer the
//! static-RSA suites `TLS_RSA_WITH_AES_128/256_GCM_SHA256/384` (2.0.1
//! A00.FR.318), which rustls does not implement: with the feature
//! `tls-openssl`, `tls_openssl::acceptor` builds an OpenSSL listener with
//! every suite OCPP names and an ECDSA and an RSA certificate at once,
//! served by [`Server::serve_on`] with `Tls::OpenSsl`.
//!
//! # permessage-deflate
//!
//! See [`ServerConfig`]: the WebSocket crate in use (tokio-tungstenite) does
//! not implement RFC 7692, so the extension is not negotiated and stations
//! fall back to uncompressed frames, which RFC 6455 requires them to accept.
//!
//! # Cancel safety
//!
//! [`Server::serve`] stops accepting when its shutdown future completes, then
//! closes every connection (close code 1001) and waits for them to end.
//! `Peer::call` futures may be dropped at any time (see `evproto_ocpp_rpc::Peer`).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod security;
mod server;
#[cfg(feature = "tls-openssl")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls-openssl")))]
pub mod tls_openssl;

pub use error::{Error, ErrorKind};
pub use evproto_ocpp_rpc::{CallFailure, Peer};
pub use security::{PasswordCheck, Security, Verdict};
pub use server::{Server, ServerBuilder, ServerConfig, ServerEvent, Tls};

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
