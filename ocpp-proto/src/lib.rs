//! A sans-IO OCPP-J RPC endpoint: one per WebSocket connection, for either
//! side (CSMS or charging station), any version (1.6, 2.0.1, 2.1).
//!
//! It correlates CALLs with their results, keeps at most one outstanding CALL
//! per direction with a bounded queue behind it, enforces per-call deadlines,
//! drops late and unknown results (never matching them to another call),
//! answers malformed frames, unknown actions and calls before boot with the
//! CALLERROR each version prescribes, and tracks the boot state.
//!
//! # What this crate does not do
//!
//! No sockets, no clock, no randomness, no async: the caller passes `now`,
//! moves text in and out, and sleeps until [`Endpoint::poll_timeout`]. Typed
//! payloads are `ocpp-types`'; WebSockets are `ocpp-server`/`ocpp-client`'s.
//!
//! # Data flow
//!
//! ```text
//!   text from peer ─► handle_text(now, ..) ─┐            ┌─► poll_transmit() ─► text to peer
//!   send_call(now, ..) / respond(..) ───────┼─► Endpoint ┼─► poll_event()    ─► IncomingCall, CallCompleted, ..
//!   handle_timeout(now) ────────────────────┘            └─► poll_timeout()  ─► when to call handle_timeout
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use evproto_ocpp_proto::{BootState, Config, Endpoint, Event, ProtocolVersion, Role};
//!
//! let now = Instant::now();
//! let mut csms = Endpoint::new(Role::Csms, ProtocolVersion::V201, Config::default());
//! let mut cs = Endpoint::new(Role::ChargingStation, ProtocolVersion::V201, Config::default());
//!
//! let boot = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
//! let call = cs.send_call(now, "BootNotification", boot.to_owned())?;
//! // move the frame across "the wire"
//! csms.handle_text(now, &cs.poll_transmit().unwrap());
//! let Some(Event::IncomingCall { id, action, .. }) = csms.poll_event() else { panic!() };
//! assert_eq!(action, "BootNotification");
//! csms.respond(&id, Ok(r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#.into()))?;
//! cs.handle_text(now + Duration::from_millis(5), &csms.poll_transmit().unwrap());
//! let events: Vec<Event> = std::iter::from_fn(|| cs.poll_event()).collect();
//! assert!(events.contains(&Event::BootStateChanged(BootState::Accepted)));
//! assert!(matches!(&events[1], Event::CallCompleted { handle, result: Ok(_), .. } if *handle == call));
//! # Ok::<(), evproto_ocpp_proto::ApiMisuse>(())
//! ```
//!
//! # Feature flags
//!
//! None: every version is always available here (`ocpp-types` carries the
//! version features).

#![forbid(unsafe_code)]

mod endpoint;
mod error;

pub use endpoint::{
    BootState, CallHandle, Config, Endpoint, Event, IdGenerator, Role, SequentialIds,
};
pub use error::{ApiMisuse, CallError, PeerMisbehaved, PeerMisbehavedKind, ProtocolVersion};

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
