//! Every OCPP 1.6J, 2.0.1 and 2.1 message as a Rust type, generated from the
//! official OCA JSON schemas, with OCPP-J RPC framing and decoding that
//! validates exactly what the schemas validate: a value that parses is valid,
//! and every rejection maps to the CALLERROR code its version prescribes.
//!
//! # What this crate does not do
//!
//! No sockets, no clocks, no async: it turns text into typed values and back.
//! Correlating calls, timeouts and WebSockets are `ocpp-proto`'s and the
//! server/client crates' job.
//!
//! # Data flow
//!
//! ```text
//!  WebSocket text ──► rpc::Frame::parse ──► Frame::Call { id, action, payload: &RawValue }
//!                         │ FrameError                      │
//!                         ▼                                 ▼
//!              vXX::ErrorCode::for_frame_error   vXX::Request::decode(action, payload)
//!                                                           │ DecodeError { kind, pointer }
//!                                                           ▼
//!                     typed request  ◄──────  ok      vXX::ErrorCode::for_decode_error
//! ```
//!
//! # Example
//!
//! ```
//! use evproto_ocpp_types::rpc::Frame;
//! use evproto_ocpp_types::v201::{self, BootReasonEnumType, ErrorCode, Request};
//!
//! let text = r#"[2,"19223201","BootNotification",
//!     {"reason":"PowerUp","chargingStation":{"model":"SingleSocketCharger","vendorName":"VendorX"}}]"#;
//! let Frame::Call { id, action, payload } = v201::parse_frame(text)? else { unreachable!() };
//! let Request::BootNotification(boot) = Request::decode(&action, payload.get())? else { unreachable!() };
//! assert_eq!(boot.reason, BootReasonEnumType::PowerUp);
//! assert_eq!(boot.charging_station.model.as_str(), "SingleSocketCharger");
//! assert_eq!(id, "19223201");
//!
//! // A model name over its 20-character bound is refused, with the CALLERROR code to send.
//! let bad = r#"{"reason":"PowerUp","chargingStation":{"model":"A model name far too long","vendorName":"V"}}"#;
//! let err = Request::decode("BootNotification", bad).unwrap_err();
//! assert_eq!(err.pointer(), "/chargingStation/model");
//! assert_eq!(ErrorCode::for_decode_error(&err), ErrorCode::TYPE_CONSTRAINT_VIOLATION);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Types
//!
//! - Names are the schemas' (`BootNotificationRequest`, `ChargingStationType`,
//!   `BootReasonEnumType`); 1.6's inline types get their §7 names (`IdTagInfo`).
//! - Integers are OCPP's 32-bit `i32`; decimals are exact [`rust_decimal::Decimal`]
//!   (a JSON number with more precision than a decimal holds, such as `5e-324`
//!   or `1.2e-40` from a charger printing an `f64`, is rounded to the nearest
//!   decimal, at most 28 places, ties to even, so tiny magnitudes become 0; only
//!   a magnitude beyond ±79228162514264337593543950335 is refused, as
//!   [`DecodeErrorKind::OutOfTypeRange`]; `minimum` and `maximum` are checked
//!   on the number as sent, `multipleOf` on the decimal);
//!   times are `chrono::DateTime<Utc>`; length-limited strings are
//!   [`BoundedString<N>`]; enumerations are closed `#[non_exhaustive]` enums.
//! - `customData` (2.x) is kept, with its vendor properties.
//! - Each action has a marker implementing [`Action`] (or [`SendAction`]) that
//!   ties its name, request, response, schemas and direction together, and each
//!   version has `Request`/`Response` enums and an `ACTIONS` table.
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---|---|---|
//! | `v16` | yes | OCPP 1.6J (`evproto_ocpp_types::v16`) |
//! | `v201` | yes | OCPP 2.0.1 (`evproto_ocpp_types::v201`) |
//! | `v21` | yes | OCPP 2.1 (`evproto_ocpp_types::v21`) |
//! | `arbitrary` | no | `arbitrary::Arbitrary` for every message (schema-valid random values) |
//!
//! The schemas are (c) Open Charge Alliance and ship unmodified under
//! `schemas/`; see `schemas/README.md`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod action;
pub mod codec;
mod error;
mod error_code;
pub mod lenient;
pub mod rpc;
mod strings;

#[cfg(any(test, feature = "arbitrary"))]
pub use action::{arbitrary_json, ArbitraryFn};
pub use action::{
    find_action, to_json, validate, validate_with, Action, ActionInfo, Direction,
    FromChargingStation, FromCsms, Message, SendAction, ValidateFn, ValidateWithFn, Version, V16,
    V201, V21,
};
pub use error::{from_slice, from_str, DecodeError, DecodeErrorKind};
pub use strings::{BoundedString, TooLong};

#[cfg(feature = "v16")]
pub mod v16;
#[cfg(feature = "v201")]
pub mod v201;
#[cfg(feature = "v21")]
pub mod v21;

#[cfg(test)]
mod tests;

/// A string that is not one of an enumeration's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {enumeration} value `{value}`")]
pub struct UnknownEnumValue {
    /// The enumeration's schema name.
    pub enumeration: &'static str,
    /// The value given.
    pub value: String,
}

impl UnknownEnumValue {
    /// The error for `value` not in enumeration `T`.
    pub fn new<T: codec::WireEnum>(value: &str) -> Self {
        Self {
            enumeration: T::NAME,
            value: value.to_owned(),
        }
    }
}

/// 2.0.1 and 2.1 (Part 4 §4.3) share one mapping from schema rule to code:
///
/// | rule broken | code | §4.3 wording |
/// |---|---|---|
/// | not JSON, repeated property | `FormatViolation` | "syntactically incorrect" |
/// | unknown property (`additionalProperties: false`) | `ProtocolError` | "not conform the PDU structure" |
/// | required property missing, `minItems`/`maxItems` | `OccurrenceConstraintViolation` | "violates occurrence constraints" |
/// | wrong JSON type, `maxLength`, `date-time` format, integer beyond 32 bits | `TypeConstraintViolation` | "violates data type constraints" |
/// | value outside the enumeration, `minimum`/`maximum` | `PropertyConstraintViolation` | "contains an invalid value" |
/// | unknown action | `NotImplemented` | "not known by receiver" |
#[cfg(any(feature = "v201", feature = "v21"))]
fn v2x_code_for_decode_error(e: &DecodeError) -> &'static str {
    match e.kind() {
        DecodeErrorKind::Syntax | DecodeErrorKind::DuplicateField => "FormatViolation",
        DecodeErrorKind::UnknownField => "ProtocolError",
        DecodeErrorKind::MissingField | DecodeErrorKind::ItemCount => {
            "OccurrenceConstraintViolation"
        }
        DecodeErrorKind::TypeMismatch
        | DecodeErrorKind::TooLong
        | DecodeErrorKind::Format
        | DecodeErrorKind::OutOfTypeRange => "TypeConstraintViolation",
        DecodeErrorKind::UnknownEnumValue | DecodeErrorKind::OutOfRange => {
            "PropertyConstraintViolation"
        }
        DecodeErrorKind::UnknownAction => "NotImplemented",
    }
}

/// 2.x frame faults (Part 4 §4.3): an unreadable frame or id is
/// `RpcFrameworkError` (answered with message id `"-1"` when the id is
/// unreadable), an unsupported message type `MessageTypeNotSupported`, a
/// payload that is not an object `FormatViolation`.
#[cfg(any(feature = "v201", feature = "v21"))]
fn v2x_code_for_frame_error(e: &rpc::FrameError) -> &'static str {
    use rpc::FrameErrorKind as K;
    match e.kind() {
        K::NotJson | K::NotArray | K::BadMessageType | K::BadMessageId | K::BadStructure => {
            "RpcFrameworkError"
        }
        K::UnknownMessageType => "MessageTypeNotSupported",
        K::PayloadNotObject => "FormatViolation",
    }
}

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
