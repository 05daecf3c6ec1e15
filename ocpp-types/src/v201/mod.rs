//! OCPP 2.0.1: all 64 actions, generated from `schemas/v201/`, with the
//! datatypes under their specification names (`...Type`, `...EnumType`).

#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic, unused_imports, unreachable_pub)]
mod generated;
pub use generated::*;

use crate::rpc::{Frame, FrameError, MessageType};
use crate::DecodeError;

crate::error_code::error_codes! {
    "2.0.1", "OCPP 2.0.1 Part 4 §4.3",
    /// Payload for Action is syntactically incorrect.
    FORMAT_VIOLATION = "FormatViolation",
    /// Any other error not covered by the more specific error codes in this table.
    GENERIC_ERROR = "GenericError",
    /// An internal error occurred and the receiver was not able to process the requested Action successfully.
    INTERNAL_ERROR = "InternalError",
    /// A message with a Message Type Number received that is not supported by this implementation.
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported",
    /// Requested Action is not known by receiver.
    NOT_IMPLEMENTED = "NotImplemented",
    /// Requested Action is recognized but not supported by the receiver.
    NOT_SUPPORTED = "NotSupported",
    /// Payload for Action is syntactically correct but at least one of the fields violates occurrence constraints.
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation",
    /// Payload is syntactically correct but at least one field contains an invalid value.
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation",
    /// Payload for Action is not conform the PDU structure.
    PROTOCOL_ERROR = "ProtocolError",
    /// Content of the call is not a valid RPC Request, for example: MessageId could not be read.
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError",
    /// During the processing of Action a security issue occurred preventing receiver from completing the Action successfully.
    SECURITY_ERROR = "SecurityError",
    /// Payload for Action is syntactically correct but at least one of the fields violates data type constraints (e.g. "somestring": 12).
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation",
}

impl ErrorCode {
    /// The code OCPP 2.0.1 Part 4 §4.3 prescribes for a payload that failed
    /// to decode (2.0.1 and 2.1 share the mapping):
    ///
    /// | rule broken | code | §4.3 wording |
    /// |---|---|---|
    /// | not JSON, repeated property | `FormatViolation` | "syntactically incorrect" |
    /// | unknown property (`additionalProperties: false`) | `ProtocolError` | "not conform the PDU structure" |
    /// | required property missing, `minItems`/`maxItems` | `OccurrenceConstraintViolation` | "violates occurrence constraints" |
    /// | wrong JSON type, `maxLength`, `date-time` format, integer beyond 32 bits | `TypeConstraintViolation` | "violates data type constraints" |
    /// | value outside the enumeration, `minimum`/`maximum` | `PropertyConstraintViolation` | "contains an invalid value" |
    /// | unknown action | `NotImplemented` | "not known by receiver" |
    pub fn for_decode_error(e: &DecodeError) -> Self {
        Self::from_wire(crate::v2x_code_for_decode_error(e))
    }

    /// The code for a frame that could not be parsed (Part 4 §4.3): an
    /// unreadable frame or message id is `RpcFrameworkError` (answered with
    /// message id `"-1"` when the id cannot be read), an unsupported message
    /// type `MessageTypeNotSupported`, a payload that is not an object
    /// `FormatViolation`.
    pub fn for_frame_error(e: &FrameError) -> Self {
        Self::from_wire(crate::v2x_code_for_frame_error(e))
    }
}

/// Parses a 2.0.1 frame: CALL, CALLRESULT or CALLERROR (types 5 and 6 are
/// 2.1's and get `MessageTypeNotSupported`).
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
