//! OCPP 1.6J: the 28 core actions and the 11 actions of the Security
//! Whitepaper (edition 3), generated from `schemas/v16/`.
//!
//! 1.6 schemas inline their datatypes; the generator names them as the
//! specification's §7 does (`IdTagInfo`, `ChargePointStatus`, ...). The
//! Security Whitepaper's own names keep their `...EnumType` suffixes.

#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic, unused_imports, unreachable_pub)]
mod generated;
pub use generated::*;

use crate::rpc::{Frame, FrameError, FrameErrorKind, MessageType};
use crate::{DecodeError, DecodeErrorKind};

crate::error_code::error_codes! {
    "1.6", "OCPP-J 1.6 §4.2.3",
    /// Requested Action is not known by receiver.
    NOT_IMPLEMENTED = "NotImplemented",
    /// Requested Action is recognized but not supported by the receiver.
    NOT_SUPPORTED = "NotSupported",
    /// An internal error occurred and the receiver was not able to process the requested Action successfully.
    INTERNAL_ERROR = "InternalError",
    /// Payload for Action is incomplete.
    PROTOCOL_ERROR = "ProtocolError",
    /// During the processing of Action a security issue occurred preventing receiver from completing the Action successfully.
    SECURITY_ERROR = "SecurityError",
    /// Payload for Action is syntactically incorrect or not conform the PDU structure for Action.
    FORMATION_VIOLATION = "FormationViolation",
    /// Payload is syntactically correct but at least one field contains an invalid value.
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation",
    /// Payload for Action is syntactically correct but at least one of the fields violates occurence constraints (sic).
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation",
    /// Payload for Action is syntactically correct but at least one of the fields violates data type constraints (e.g. "somestring": 12).
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation",
    /// Any other error not covered by the previous ones.
    GENERIC_ERROR = "GenericError",
}

impl ErrorCode {
    /// The code OCPP-J 1.6 §4.2.3 prescribes for a payload that failed to
    /// decode. The one place 1.6 maps schema rules to codes:
    ///
    /// | rule broken | code | §4.2.3 wording |
    /// |---|---|---|
    /// | not JSON, unknown or repeated property | `FormationViolation` | "syntactically incorrect or not conform the PDU structure" |
    /// | required property missing | `ProtocolError` | "Payload for Action is incomplete" |
    /// | `minItems`/`maxItems` | `OccurenceConstraintViolation` | "violates occurence constraints" |
    /// | wrong JSON type, `maxLength`, `date-time`/`uri` format, integer beyond 32 bits | `TypeConstraintViolation` | "violates data type constraints" |
    /// | value outside the enumeration, `minimum`/`maximum`/`multipleOf` | `PropertyConstraintViolation` | "contains an invalid value" |
    /// | unknown action | `NotImplemented` | "not known by receiver" |
    pub fn for_decode_error(e: &DecodeError) -> Self {
        match e.kind() {
            DecodeErrorKind::Syntax
            | DecodeErrorKind::UnknownField
            | DecodeErrorKind::DuplicateField => Self::FORMATION_VIOLATION,
            DecodeErrorKind::MissingField => Self::PROTOCOL_ERROR,
            DecodeErrorKind::ItemCount => Self::OCCURENCE_CONSTRAINT_VIOLATION,
            DecodeErrorKind::TypeMismatch
            | DecodeErrorKind::TooLong
            | DecodeErrorKind::Format
            | DecodeErrorKind::OutOfTypeRange => Self::TYPE_CONSTRAINT_VIOLATION,
            DecodeErrorKind::UnknownEnumValue | DecodeErrorKind::OutOfRange => {
                Self::PROPERTY_CONSTRAINT_VIOLATION
            }
            DecodeErrorKind::UnknownAction => Self::NOT_IMPLEMENTED,
        }
    }

    /// The code for a frame that could not be parsed. 1.6 has no
    /// `RpcFrameworkError` or `MessageTypeNotSupported`: every frame fault is
    /// "not conform the PDU structure", `FormationViolation` (§4.2.3).
    pub fn for_frame_error(e: &FrameError) -> Self {
        match e.kind() {
            FrameErrorKind::NotJson
            | FrameErrorKind::NotArray
            | FrameErrorKind::BadMessageType
            | FrameErrorKind::UnknownMessageType
            | FrameErrorKind::BadMessageId
            | FrameErrorKind::BadStructure
            | FrameErrorKind::PayloadNotObject => Self::FORMATION_VIOLATION,
        }
    }
}

/// Parses a 1.6 frame: CALL, CALLRESULT or CALLERROR (types 5 and 6 are 2.1's).
///
/// # Errors
///
/// [`FrameError`]; map it with [`ErrorCode::for_frame_error`].
pub fn parse_frame(text: &str) -> Result<Frame<'_>, FrameError> {
    crate::rpc::parse_for(
        text,
        &[
            MessageType::Call,
            MessageType::CallResult,
            MessageType::CallError,
        ],
    )
}
