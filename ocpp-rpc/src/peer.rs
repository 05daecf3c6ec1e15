//! A cloneable handle for typed calls to the peer of one connection.

use std::fmt;
use std::sync::Arc;

use evproto_ocpp_proto::{ApiMisuse, CallError, ProtocolVersion};
use evproto_ocpp_types::{Action, DecodeError, Version};
use tokio::sync::{mpsc, oneshot};

/// Commands from handles to the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    /// A handler's answer to an incoming call.
    Respond {
        id: String,
        result: Result<String, CallError>,
    },
    Call {
        action: &'static str,
        payload: String,
        reply: oneshot::Sender<Result<String, CallFailure>>,
    },
    Send {
        action: &'static str,
        payload: String,
        reply: oneshot::Sender<Result<(), CallFailure>>,
    },
    Close {
        reason: String,
    },
}

/// Why a call did not produce a typed response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallFailure {
    /// The peer answered with a CALLERROR.
    #[error("peer answered with CALLERROR {0}")]
    CallError(CallError),
    /// No answer before the deadline (the call may still have happened).
    #[error("call timed out")]
    Timeout,
    /// The peer is not connected, or the connection closed before the call
    /// went out: the peer did not receive it.
    #[error("not connected")]
    NotConnected,
    /// The connection closed after the call went out and before its answer
    /// came back: the peer may have received it and acted on it (a
    /// transaction-related message is sent again, and recognized as a
    /// replay by the other side).
    #[error("connection lost before the answer (the call may have happened)")]
    ConnectionLost,
    /// The action belongs to another OCPP version than the connection's.
    #[error("action is OCPP {action_version}, the connection speaks {connection}")]
    WrongVersion {
        /// The action's version.
        action_version: &'static str,
        /// The connection's version.
        connection: ProtocolVersion,
    },
    /// The peer's CALLRESULT broke the response schema.
    #[error("invalid response: {0}")]
    InvalidResponse(DecodeError),
    /// The call could not be queued (queue full, an action this version
    /// does not define, or one this side may not send).
    #[error("call refused: {0}")]
    Refused(ApiMisuse),
}

impl CallFailure {
    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CallFailure::Timeout)
    }
    /// Whether the peer was not connected.
    pub fn is_not_connected(&self) -> bool {
        matches!(self, CallFailure::NotConnected)
    }
    /// Whether the connection closed while the call was on the wire.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, CallFailure::ConnectionLost)
    }
}

/// A handle to one connection's peer: typed calls from any task.
///
/// # Cancel safety
///
/// Dropping a `call` future before it completes does not unsend the CALL: if
/// it was already on the wire the connection keeps its slot until the answer
/// or deadline and then discards the answer; if it was still queued it is
/// sent anyway and its answer discarded.
#[derive(Clone)]
pub struct Peer {
    pub(crate) identity: Arc<str>,
    pub(crate) version: ProtocolVersion,
    pub(crate) tx: mpsc::Sender<Box<Command>>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("identity", &self.identity)
            .field("version", &self.version)
            .finish()
    }
}

impl Peer {
    /// The peer's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The connection's version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Calls action `A` and waits for its typed response.
    ///
    /// # Errors
    ///
    /// [`CallFailure`]: a CALLERROR, a timeout, not connected, a version
    /// mismatch, or a response that breaks its schema.
    pub async fn call<A: Action>(&self, request: &A::Request) -> Result<A::Response, CallFailure> {
        self.check_version(A::Version::SUBPROTOCOL, A::Version::NAME)?;
        let text = self
            .call_raw(A::NAME, evproto_ocpp_types::to_json(request))
            .await?;
        evproto_ocpp_types::from_str::<A::Response>(&text).map_err(CallFailure::InvalidResponse)
    }

    /// Calls an action by name with a JSON payload; the response payload as JSON text.
    ///
    /// # Errors
    ///
    /// As [`Peer::call`], without the response decoding.
    pub async fn call_raw(&self, action: &str, payload: String) -> Result<String, CallFailure> {
        let info = self
            .version
            .action(action)
            .ok_or_else(|| CallFailure::Refused(ApiMisuse::UnknownAction(action.to_owned())))?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Call {
                action: info.name,
                payload,
                reply,
            }))
            .await
            .map_err(|_| CallFailure::NotConnected)?;
        rx.await.map_err(|_| CallFailure::NotConnected)?
    }

    /// Sends a 2.1 SEND message.
    ///
    /// # Errors
    ///
    /// [`CallFailure::NotConnected`], or [`CallFailure::Refused`] for a
    /// non-SEND action.
    pub async fn send<A: evproto_ocpp_types::SendAction>(
        &self,
        payload: &A::Payload,
    ) -> Result<(), CallFailure> {
        self.check_version(A::Version::SUBPROTOCOL, A::Version::NAME)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Send {
                action: A::NAME,
                payload: evproto_ocpp_types::to_json(payload),
                reply,
            }))
            .await
            .map_err(|_| CallFailure::NotConnected)?;
        rx.await.map_err(|_| CallFailure::NotConnected)?
    }

    /// Closes the connection (WebSocket close 1000, with `reason`).
    pub async fn close(&self, reason: &str) {
        let _ = self
            .tx
            .send(Box::new(Command::Close {
                reason: reason.to_owned(),
            }))
            .await;
    }

    fn check_version(&self, subprotocol: &str, name: &'static str) -> Result<(), CallFailure> {
        if subprotocol == self.version.subprotocol() {
            Ok(())
        } else {
            Err(CallFailure::WrongVersion {
                action_version: name,
                connection: self.version,
            })
        }
    }
}
