//! The WebSocket under a connection: tokio-tungstenite (lean, no
//! compression) or yawc (RFC 7692 permessage-deflate, which OCPP 2.1 asks a
//! CSMS to support). [`Connection`](crate::Connection) runs over either.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// What arrived on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A text message (OCPP-J frames are text).
    Text(String),
    /// A binary message (not OCPP-J).
    Binary,
    /// The peer closed, with its close code.
    Close(Option<u16>),
    /// A ping or pong (pings are answered by the WebSocket layer).
    Control,
}

/// What kind of failure a [`TransportError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Reading or writing the socket failed (connection reset, broken pipe).
    Io,
    /// The peer broke the WebSocket protocol (RFC 6455): a malformed or
    /// oversized frame or message, or a text message that is not UTF-8.
    Protocol,
    /// The WebSocket was already closed.
    Closed,
    /// Any other failure of the WebSocket implementation.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportErrorKind::Io => "websocket i/o error",
            TransportErrorKind::Protocol => "websocket protocol error",
            TransportErrorKind::Closed => "websocket already closed",
            TransportErrorKind::Other => "websocket error",
        })
    }
}

/// A failure of the WebSocket under a connection: a [`TransportErrorKind`]
/// to match on, and the WebSocket library's error as the
/// [`source`](StdError::source).
///
/// The [`Display`](fmt::Display) text is for people, not for matching. Two
/// errors are equal when their kinds and their sources' messages are.
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    source: Arc<dyn StdError + Send + Sync + 'static>,
}

impl TransportError {
    /// An error of `kind`, caused by `source` (for a custom [`Transport`]).
    pub fn new(
        kind: TransportErrorKind,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            source: Arc::from(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// Whether reading or writing the socket failed.
    pub fn is_io(&self) -> bool {
        self.kind == TransportErrorKind::Io
    }

    /// Whether the peer broke the WebSocket protocol.
    pub fn is_protocol(&self) -> bool {
        self.kind == TransportErrorKind::Protocol
    }

    /// Whether the WebSocket was already closed.
    pub fn is_closed(&self) -> bool {
        self.kind == TransportErrorKind::Closed
    }

    /// The WebSocket library's error (downcast it for details).
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.source)
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

impl PartialEq for TransportError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && (Arc::ptr_eq(&self.source, &other.source)
                || self.source.to_string() == other.source.to_string())
    }
}

impl Eq for TransportError {}

impl From<tokio_tungstenite::tungstenite::Error> for TransportError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as E;
        let kind = match &e {
            E::ConnectionClosed | E::AlreadyClosed => TransportErrorKind::Closed,
            E::Io(_) => TransportErrorKind::Io,
            E::Protocol(_) | E::Capacity(_) | E::Utf8(_) | E::AttackAttempt => {
                TransportErrorKind::Protocol
            }
            _ => TransportErrorKind::Other,
        };
        Self::new(kind, e)
    }
}

impl From<yawc::WebSocketError> for TransportError {
    fn from(e: yawc::WebSocketError) -> Self {
        use yawc::WebSocketError as E;
        let kind = match &e {
            E::ConnectionClosed => TransportErrorKind::Closed,
            E::IoError(_) => TransportErrorKind::Io,
            E::InvalidFragment
            | E::FragmentTimeout
            | E::InvalidUTF8
            | E::InvalidContinuationFrame
            | E::InvalidCloseFrame
            | E::InvalidCloseCode
            | E::ReservedBitsNotZero
            | E::ControlFrameFragmented
            | E::PingFrameTooLarge
            | E::FrameTooLarge
            | E::InvalidOpCode(_)
            | E::CompressionNotSupported => TransportErrorKind::Protocol,
            _ => TransportErrorKind::Other,
        };
        Self::new(kind, e)
    }
}

/// A message-oriented WebSocket.
pub trait Transport: Send + 'static {
    /// The next message; `None` when the stream has ended.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, TransportError>>> + Send;
    /// Queues a text message (sent on the next flush).
    fn feed_text(
        &mut self,
        text: String,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Sends what was queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Sends a ping.
    fn ping(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Sends a close frame with `code` and `reason`.
    fn close(&mut self, code: u16, reason: &str) -> impl Future<Output = ()> + Send;
    /// Whether messages are compressed (permessage-deflate negotiated).
    fn compressed(&self) -> bool {
        false
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for WebSocketStream<S> {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        Some(match self.next().await? {
            Ok(Message::Text(t)) => Ok(Incoming::Text(t.as_str().to_owned())),
            Ok(Message::Binary(_)) => Ok(Incoming::Binary),
            Ok(Message::Close(f)) => Ok(Incoming::Close(f.map(|f| u16::from(f.code)))),
            Ok(_) => Ok(Incoming::Control),
            Err(e) => Err(e.into()),
        })
    }
    async fn feed_text(&mut self, text: String) -> Result<(), TransportError> {
        self.feed(Message::text(text))
            .await
            .map_err(TransportError::from)
    }
    async fn flush(&mut self) -> Result<(), TransportError> {
        SinkExt::flush(self).await.map_err(TransportError::from)
    }
    async fn ping(&mut self) -> Result<(), TransportError> {
        self.send(Message::Ping(Default::default()))
            .await
            .map_err(TransportError::from)
    }
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = WebSocketStream::close(self, Some(frame)).await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for yawc::WebSocket<S> {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        let frame = self.next().await?;
        Some(Ok(match frame.opcode() {
            yawc::OpCode::Text => match std::str::from_utf8(frame.payload()) {
                Ok(t) => Incoming::Text(t.to_owned()),
                Err(e) => return Some(Err(TransportError::new(TransportErrorKind::Protocol, e))),
            },
            yawc::OpCode::Binary => Incoming::Binary,
            yawc::OpCode::Close => Incoming::Close(frame.close_code().map(u16::from)),
            _ => Incoming::Control,
        }))
    }
    async fn feed_text(&mut self, text: String) -> Result<(), TransportError> {
        self.feed(yawc::Frame::text(text))
            .await
            .map_err(TransportError::from)
    }
    async fn flush(&mut self) -> Result<(), TransportError> {
        SinkExt::flush(self).await.map_err(TransportError::from)
    }
    async fn ping(&mut self) -> Result<(), TransportError> {
        self.send(yawc::Frame::ping(Vec::new()))
            .await
            .map_err(TransportError::from)
    }
    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .send(yawc::Frame::close(
                yawc::close::CloseCode::from(code),
                reason,
            ))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
    use tokio_tungstenite::tungstenite::Error as WsError;

    #[test]
    fn websocket_errors_get_a_kind_and_keep_their_source() {
        let e = TransportError::from(WsError::Io(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset by peer",
        )));
        assert!(e.is_io() && !e.is_protocol() && !e.is_closed());
        let io = e
            .source()
            .and_then(|s| s.downcast_ref::<WsError>())
            .and_then(|w| match w {
                WsError::Io(io) => Some(io.kind()),
                _ => None,
            });
        assert_eq!(io, Some(io::ErrorKind::ConnectionReset));
        assert_eq!(
            e.to_string(),
            "websocket i/o error: IO error: reset by peer"
        );

        let cases = [
            (WsError::ConnectionClosed, TransportErrorKind::Closed),
            (WsError::AlreadyClosed, TransportErrorKind::Closed),
            (
                WsError::Protocol(ProtocolError::NonZeroReservedBits),
                TransportErrorKind::Protocol,
            ),
            (
                WsError::Capacity(CapacityError::MessageTooLong {
                    size: 2,
                    max_size: 1,
                }),
                TransportErrorKind::Protocol,
            ),
            (WsError::Utf8("bad".into()), TransportErrorKind::Protocol),
        ];
        for (ws, kind) in cases {
            assert_eq!(TransportError::from(ws).kind(), kind);
        }
        for (ws, kind) in [
            (
                yawc::WebSocketError::ConnectionClosed,
                TransportErrorKind::Closed,
            ),
            (
                yawc::WebSocketError::FrameTooLarge,
                TransportErrorKind::Protocol,
            ),
            (
                yawc::WebSocketError::InvalidUTF8,
                TransportErrorKind::Protocol,
            ),
            (
                yawc::WebSocketError::IoError(io::ErrorKind::BrokenPipe.into()),
                TransportErrorKind::Io,
            ),
        ] {
            assert_eq!(TransportError::from(ws).kind(), kind);
        }
    }

    #[test]
    fn equal_by_kind_and_message() {
        let a = TransportError::new(TransportErrorKind::Protocol, "bad frame");
        assert_eq!(a, a.clone());
        assert_eq!(
            a,
            TransportError::new(TransportErrorKind::Protocol, "bad frame")
        );
        assert_ne!(
            a,
            TransportError::new(TransportErrorKind::Other, "bad frame")
        );
        assert_ne!(
            a,
            TransportError::new(TransportErrorKind::Protocol, "other")
        );
        assert_eq!(a.get_ref().to_string(), "bad frame");
    }
}
