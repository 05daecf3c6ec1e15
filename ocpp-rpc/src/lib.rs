//! The tokio shell shared by `ocpp-server` (CSMS) and `ocpp-client`
//! (charging station): a typed, axum-style [`Router`] per version and side,
//! the per-connection task ([`Connection`]) that moves WebSocket text through
//! the sans-IO `evproto_ocpp_proto::Endpoint`, and [`Peer`] handles for typed calls.
//!
//! # What this crate does not do
//!
//! No listening, connecting, TLS or authentication (the server and client
//! crates do those), and no protocol decisions: correlation, timeouts and
//! error codes are `ocpp-proto`'s and `ocpp-types`'.
//!
//! # Data flow
//!
//! ```text
//!  WebSocket ─text─► Connection ─handle_text─► Endpoint ─IncomingCall─► Routes::dispatch ─► your handler
//!      ▲                 │   ▲                                                       │
//!      └──poll_transmit──┘   └──────────────── respond(id, result) ◄─────────────────┘
//!  Peer::call::<A>(req) ─Command─► Connection ─send_call─► Endpoint ─CallCompleted─► typed response
//! ```
//!
//! # Example
//!
//! ```
//! use evproto_ocpp_proto::CallError;
//! use evproto_ocpp_rpc::{Ctx, Router};
//! use evproto_ocpp_types::v16::{self, action};
//!
//! #[derive(Clone)]
//! struct App { interval: i32 }
//!
//! async fn boot(ctx: Ctx<App>, req: v16::BootNotificationRequest) -> Result<v16::BootNotificationResponse, CallError> {
//!     let _ = req.charge_point_model;
//!     Ok(v16::BootNotificationResponse {
//!         current_time: chrono::Utc::now(),
//!         interval: ctx.state.interval,
//!         status: v16::RegistrationStatus::Accepted,
//!     })
//! }
//!
//! let routes = Router::csms_v16().on::<action::BootNotification>(boot).with_state(App { interval: 300 });
//! assert_eq!(routes.version(), evproto_ocpp_proto::ProtocolVersion::V16);
//! ```
//!
//! # Cancel safety
//!
//! [`Peer::call`] may be dropped at any point; see its docs. [`Connection::run`]
//! owns the socket and must be polled to completion (spawn it).

#![forbid(unsafe_code)]

mod connection;
mod peer;
mod router;
mod transport;

pub use connection::{Closed, Connection, ConnectionConfig, ConnectionEvent, EventSink};
pub use peer::{CallFailure, Peer};
pub use router::{BoxFuture, CsmsSide, Ctx, Handler, Handles, Router, Routes, StationSide};
pub use transport::{Incoming, Transport, TransportError, TransportErrorKind};

#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
mod handlers;
pub use handlers::{
    ChargingStation16, ChargingStation201, ChargingStation21, Csms16, Csms201, Csms21,
};

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
