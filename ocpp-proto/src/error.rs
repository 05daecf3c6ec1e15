//! Errors by blame: the peer's ([`PeerMisbehaved`]), the local caller's
//! ([`ApiMisuse`]), and what goes on the wire ([`CallError`]).

use std::fmt;

use evproto_ocpp_types::rpc::FrameError;
use evproto_ocpp_types::{ActionInfo, DecodeError};

/// The OCPP version of a connection, chosen at the WebSocket handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// OCPP 1.6J (`ocpp1.6`).
    V16,
    /// OCPP 2.0.1 (`ocpp2.0.1`).
    V201,
    /// OCPP 2.1 (`ocpp2.1`).
    V21,
}

impl ProtocolVersion {
    /// Every version, newest first.
    pub const ALL: [ProtocolVersion; 3] = [
        ProtocolVersion::V21,
        ProtocolVersion::V201,
        ProtocolVersion::V16,
    ];

    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            ProtocolVersion::V16 => "ocpp1.6",
            ProtocolVersion::V201 => "ocpp2.0.1",
            ProtocolVersion::V21 => "ocpp2.1",
        }
    }

    /// The version for a subprotocol name.
    pub fn from_subprotocol(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.subprotocol() == s)
    }

    /// The version's action table.
    pub fn actions(self) -> &'static [ActionInfo] {
        match self {
            ProtocolVersion::V16 => evproto_ocpp_types::v16::ACTIONS,
            ProtocolVersion::V201 => evproto_ocpp_types::v201::ACTIONS,
            ProtocolVersion::V21 => evproto_ocpp_types::v21::ACTIONS,
        }
    }

    /// Looks up an action of this version.
    pub fn action(self, name: &str) -> Option<&'static ActionInfo> {
        evproto_ocpp_types::find_action(self.actions(), name)
    }

    /// The CALLERROR code for a payload that failed to decode, in this
    /// version's spelling (`evproto_ocpp_types::vXX::ErrorCode::for_decode_error`).
    pub fn code_for_decode_error(self, e: &DecodeError) -> String {
        match self {
            ProtocolVersion::V16 => {
                evproto_ocpp_types::v16::ErrorCode::for_decode_error(e).to_string()
            }
            ProtocolVersion::V201 => {
                evproto_ocpp_types::v201::ErrorCode::for_decode_error(e).to_string()
            }
            ProtocolVersion::V21 => {
                evproto_ocpp_types::v21::ErrorCode::for_decode_error(e).to_string()
            }
        }
    }

    pub(crate) fn code_for_frame_error(self, e: &FrameError) -> String {
        match self {
            ProtocolVersion::V16 => {
                evproto_ocpp_types::v16::ErrorCode::for_frame_error(e).to_string()
            }
            ProtocolVersion::V201 => {
                evproto_ocpp_types::v201::ErrorCode::for_frame_error(e).to_string()
            }
            ProtocolVersion::V21 => {
                evproto_ocpp_types::v21::ErrorCode::for_frame_error(e).to_string()
            }
        }
    }

    pub(crate) fn parse_frame(
        self,
        text: &str,
    ) -> Result<evproto_ocpp_types::rpc::Frame<'_>, FrameError> {
        match self {
            ProtocolVersion::V16 => evproto_ocpp_types::v16::parse_frame(text),
            ProtocolVersion::V201 => evproto_ocpp_types::v201::parse_frame(text),
            ProtocolVersion::V21 => evproto_ocpp_types::v21::parse_frame(text),
        }
    }

    pub(crate) fn is_known_code(self, code: &str) -> bool {
        match self {
            ProtocolVersion::V16 => evproto_ocpp_types::v16::ErrorCode::from_wire(code).is_known(),
            ProtocolVersion::V201 => {
                evproto_ocpp_types::v201::ErrorCode::from_wire(code).is_known()
            }
            ProtocolVersion::V21 => evproto_ocpp_types::v21::ErrorCode::from_wire(code).is_known(),
        }
    }

    /// `FormationViolation` (1.6) or `FormatViolation` (2.x).
    /// The code for a CALL that breaks the RPC framework's rules: 2.x
    /// `RpcFrameworkError`; 1.6 has none and its catch-all is `GenericError`.
    pub(crate) fn rpc_framework_error(self) -> &'static str {
        match self {
            ProtocolVersion::V16 => "GenericError",
            _ => "RpcFrameworkError",
        }
    }

    pub(crate) fn format_violation(self) -> &'static str {
        match self {
            ProtocolVersion::V16 => "FormationViolation",
            _ => "FormatViolation",
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V16 => "1.6",
            ProtocolVersion::V201 => "2.0.1",
            ProtocolVersion::V21 => "2.1",
        })
    }
}

/// A CALLERROR as the peer sees it: code, description, details.
///
/// Build codes from the version's `ErrorCode` constants
/// (`evproto_ocpp_types::v201::ErrorCode::NOT_SUPPORTED.to_string()`). Descriptions are
/// cut to 255 characters (the 2.x limit) when sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The `errorCode`, spelled as the connection's version spells it.
    pub code: String,
    /// The `errorDescription` (may be empty).
    pub description: String,
    /// The `errorDetails` object, as JSON text (`{}` when none).
    pub details: String,
}

impl CallError {
    /// A CALLERROR with empty details.
    pub fn new(code: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            description: description.into(),
            details: "{}".to_owned(),
        }
    }

    /// The CALLERROR for a request payload that failed to decode, in `version`'s spelling.
    pub fn for_decode_error(version: ProtocolVersion, e: &DecodeError) -> Self {
        let details = serde_json::json!({ "pointer": e.pointer() }).to_string();
        Self {
            code: version.code_for_decode_error(e),
            description: e.message().to_owned(),
            details,
        }
    }

    /// `InternalError` with a fixed description: internal failure text never reaches the wire.
    pub fn internal() -> Self {
        Self::new("InternalError", "internal error")
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.description.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.description)
        }
    }
}

impl std::error::Error for CallError {}

/// How the peer broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerMisbehavedKind {
    /// A frame that could not be parsed (answered with a CALLERROR when its id was readable).
    MalformedFrame,
    /// A frame larger than [`crate::Config::max_message_size`].
    Oversized,
    /// A CALLRESULT or CALLERROR for a call that timed out: dropped.
    LateResult,
    /// A CALLRESULT or CALLERROR for an id never sent or already answered: dropped.
    UnknownResult,
    /// A CALL repeating the id of a call still being handled: ignored.
    DuplicateCall,
    /// A CALL whose id was answered recently: the stored answer was sent again.
    RetransmittedCall,
    /// A CALL before the boot was accepted (2.x: answered `SecurityError`).
    CallBeforeBoot,
    /// A CALL for an action this version does not define (answered `NotImplemented`).
    UnknownAction,
    /// A CALL for an action the peer's role may not send (answered `NotSupported`).
    WrongDirection,
    /// A CALLERROR whose code is not in the version's list.
    UnknownErrorCode,
    /// A SEND the version or action does not allow: dropped (a SEND gets no answer).
    BadSend,
    /// A CALL while one of the peer's calls is unanswered: handled (the
    /// peer's earlier call may have timed out on its side), or, past
    /// [`Config::max_incoming_calls`](crate::Config::max_incoming_calls),
    /// answered `RpcFrameworkError` (1.6 `GenericError`) and not handled.
    ConcurrentCall,
}

/// The peer broke the protocol; the endpoint already did what the spec says
/// (answered or dropped), this is a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMisbehaved {
    /// What happened.
    pub kind: PeerMisbehavedKind,
    /// The message id involved, when known.
    pub id: Option<String>,
    /// A short description.
    pub detail: String,
}

impl fmt::Display for PeerMisbehaved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

/// The local caller used the endpoint wrongly. Never sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// The action is not defined in this connection's version.
    #[error("action `{0}` does not exist in this OCPP version")]
    UnknownAction(String),
    /// This side's role may not send this action.
    #[error("action `{0}` may not be sent by this side")]
    WrongDirection(String),
    /// The queue of calls waiting behind the outstanding one is full.
    #[error("call queue full")]
    QueueFull,
    /// `respond` for an id that is not an unanswered incoming call.
    #[error("no unanswered incoming call with id `{0}`")]
    UnknownIncomingCall(String),
    /// `send_message` for an action that is not a SEND message, or
    /// `send_call` for one that is.
    #[error("action `{0}` is not sent this way")]
    WrongMessageType(String),
    /// `result_error` on a version without CALLRESULTERROR (before 2.1).
    #[error("this OCPP version has no CALLRESULTERROR")]
    NotInVersion,
}
