//! The baseline for `evproto load` saturation runs: a bare tokio-tungstenite
//! server that reads each CALL's message id and action and answers a fixed
//! CALLRESULT per action (and per OCPP version, from the negotiated
//! subprotocol), with no OCPP validation, routing or correlation: the ceiling
//! an OCPP server on the same WebSocket stack can approach.
//!
//! It answers both of `evproto load`'s mixes with valid responses: Boot,
//! Heartbeat, StatusNotification, MeterValues, and Authorize,
//! StartTransaction (a new transactionId each), StopTransaction and
//! TransactionEvent with the token Accepted. Any other action gets the
//! BootNotification answer.
//!
//! ```text
//! cargo run --release -p evproto --example echo_server -- 9100
//! ```

#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const BOOT: &str = r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#;
const HEARTBEAT: &str = r#"{"currentTime":"2024-01-01T00:00:00Z"}"#;
const ID_TAG_INFO: &str = r#"{"idTagInfo":{"status":"Accepted"}}"#;
const ID_TOKEN_INFO: &str = r#"{"idTokenInfo":{"status":"Accepted"}}"#;

/// The id and the action of `[2,"id","Action",...`: the first two JSON
/// strings' contents.
fn call_id_action(text: &str) -> Option<(&str, &str)> {
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    let id = &text[start..start + len];
    let rest = &text[start + len + 1..];
    let a_start = rest.find('"')? + 1;
    let a_len = rest[a_start..].find('"')?;
    Some((id, &rest[a_start..a_start + a_len]))
}

/// The CALLRESULT frame for `action` in OCPP 1.6 (`v16`) or 2.x.
fn answer(id: &str, action: &str, v16: bool, next_tx: &AtomicI32) -> String {
    let payload = match (action, v16) {
        ("Heartbeat", _) => HEARTBEAT,
        ("StatusNotification" | "MeterValues", _) => "{}",
        ("Authorize" | "StopTransaction", true) => ID_TAG_INFO,
        ("StartTransaction", true) => {
            let tx = next_tx.fetch_add(1, Ordering::Relaxed);
            return format!(
                "[3,\"{id}\",{{\"transactionId\":{tx},\"idTagInfo\":{{\"status\":\"Accepted\"}}}}]"
            );
        }
        ("Authorize" | "TransactionEvent", false) => ID_TOKEN_INFO,
        _ => BOOT,
    };
    format!("[3,\"{id}\",{payload}]")
}

/// Serves connections on `listener` until it fails.
pub(crate) async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let next_tx = Arc::new(AtomicI32::new(1));
    loop {
        let (tcp, _) = listener.accept().await?;
        let next_tx = next_tx.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let v16 = AtomicBool::new(false);
            // The error type is tungstenite's, not ours to shrink.
            #[allow(clippy::result_large_err)]
            let callback = |req: &Request, mut resp: Response| {
                let offered = req
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if let Some(first) = offered
                    .split(',')
                    .next()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    v16.store(first == "ocpp1.6", Ordering::Relaxed);
                    if let Ok(v) = HeaderValue::from_str(first) {
                        resp.headers_mut().insert("Sec-WebSocket-Protocol", v);
                    }
                }
                Ok(resp)
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let Ok(mut ws) =
                tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
            else {
                return;
            };
            let v16 = v16.load(Ordering::Relaxed);
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    // CALLs only: a CALLERROR the load generator returns
                    // for a CSMS-initiated call needs no answer
                    if !t.as_str().trim_start().starts_with("[2") {
                        continue;
                    }
                    if let Some((id, action)) = call_id_action(t.as_str()) {
                        let frame = answer(id, action, v16, &next_tx);
                        if ws.send(Message::text(frame)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9100);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "{{\"event\":\"listening\",\"port\":{}}}",
        listener.local_addr()?.port()
    );
    serve(listener).await
}
