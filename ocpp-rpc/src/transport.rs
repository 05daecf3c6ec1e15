//! The WebSocket under a connection: tokio-tungstenite (lean, no
//! compression) or yawc (RFC 7692 permessage-deflate, which OCPP 2.1 asks a
//! CSMS to support). [`Connection`](crate::Connection) runs over either.

use std::future::Future;

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

/// A message-oriented WebSocket.
pub trait Transport: Send + 'static {
    /// The next message; `None` when the stream has ended.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, String>>> + Send;
    /// Queues a text message (sent on the next flush).
    fn feed_text(&mut self, text: String) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends what was queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends a ping.
    fn ping(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends a close frame with `code` and `reason`.
    fn close(&mut self, code: u16, reason: &str) -> impl Future<Output = ()> + Send;
    /// Whether messages are compressed (permessage-deflate negotiated).
    fn compressed(&self) -> bool {
        false
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for WebSocketStream<S> {
    async fn recv(&mut self) -> Option<Result<Incoming, String>> {
        Some(match self.next().await? {
            Ok(Message::Text(t)) => Ok(Incoming::Text(t.as_str().to_owned())),
            Ok(Message::Binary(_)) => Ok(Incoming::Binary),
            Ok(Message::Close(f)) => Ok(Incoming::Close(f.map(|f| u16::from(f.code)))),
            Ok(_) => Ok(Incoming::Control),
            Err(e) => Err(e.to_string()),
        })
    }
    async fn feed_text(&mut self, text: String) -> Result<(), String> {
        self.feed(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }
    async fn flush(&mut self) -> Result<(), String> {
        SinkExt::flush(self).await.map_err(|e| e.to_string())
    }
    async fn ping(&mut self) -> Result<(), String> {
        self.send(Message::Ping(Default::default()))
            .await
            .map_err(|e| e.to_string())
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
    async fn recv(&mut self) -> Option<Result<Incoming, String>> {
        let frame = self.next().await?;
        Some(Ok(match frame.opcode() {
            yawc::OpCode::Text => match std::str::from_utf8(frame.payload()) {
                Ok(t) => Incoming::Text(t.to_owned()),
                Err(e) => return Some(Err(format!("text frame is not UTF-8: {e}"))),
            },
            yawc::OpCode::Binary => Incoming::Binary,
            yawc::OpCode::Close => Incoming::Close(frame.close_code().map(u16::from)),
            _ => Incoming::Control,
        }))
    }
    async fn feed_text(&mut self, text: String) -> Result<(), String> {
        self.feed(yawc::Frame::text(text))
            .await
            .map_err(|e| e.to_string())
    }
    async fn flush(&mut self) -> Result<(), String> {
        SinkExt::flush(self).await.map_err(|e| e.to_string())
    }
    async fn ping(&mut self) -> Result<(), String> {
        self.send(yawc::Frame::ping(Vec::new()))
            .await
            .map_err(|e| e.to_string())
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
