//! The baseline for `evproto load` saturation runs: a bare tokio-tungstenite
//! server that reads each CALL's message id and answers a fixed CALLRESULT,
//! with no OCPP validation, routing or correlation: the ceiling an OCPP server
//! on the same WebSocket stack can approach.
//!
//! ```text
//! cargo run --release -p evproto --example echo_server -- 9100
//! ```

#![allow(missing_docs)]

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const ANSWER: &str = r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#;

/// The id of `[2,"id",...`: the second JSON string's content.
fn call_id(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
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
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
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
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    if let Some(id) = call_id(t.as_str()) {
                        let answer = format!("[3,\"{id}\",{ANSWER}]");
                        if ws.send(Message::text(answer)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}
