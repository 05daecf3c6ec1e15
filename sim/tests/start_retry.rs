//! A 1.6 StartTransaction whose answer is lost (the CSMS commits it, then
//! the connection drops) is sent again once the station is back, and the
//! transaction goes on under the CSMS's id: the simulator keeps no
//! transaction the CSMS does not know, and the CSMS none the station does
//! not (OCPP 1.6 §4.8, transaction-related messages).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::model::Behaviour;
use evproto_sim::SimConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// What the fake CSMS saw.
#[derive(Default)]
struct Seen {
    starts: Vec<Value>,
    stops: Vec<Value>,
    connections: u32,
}

/// The upgrade's answer: subprotocol `ocpp1.6`.
#[allow(clippy::result_large_err)] // the callback's type is tungstenite's
fn ocpp16(_: &Request, mut r: Response) -> Result<Response, ErrorResponse> {
    r.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    Ok(r)
}

/// A 1.6 CSMS that accepts everything, and drops the connection instead of
/// answering the first StartTransaction (after "committing" it).
async fn fake_csms(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let ws = tokio_tungstenite::accept_hdr_async(tcp, ocpp16).await;
            let Ok(mut ws) = ws else { return };
            seen.lock().unwrap().connections += 1;
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                let call: Value = serde_json::from_str(&text).unwrap();
                let (id, action, payload) = (&call[1], call[2].as_str().unwrap(), &call[3]);
                let now = chrono::Utc::now().to_rfc3339();
                let answer = match action {
                    "BootNotification" => {
                        json!({"status": "Accepted", "currentTime": now, "interval": 300})
                    }
                    "Heartbeat" => json!({"currentTime": now}),
                    "Authorize" => json!({"idTagInfo": {"status": "Accepted"}}),
                    "StartTransaction" => {
                        let first = {
                            let mut s = seen.lock().unwrap();
                            s.starts.push(payload.clone());
                            s.starts.len() == 1
                        };
                        if first {
                            // committed, and the answer lost with the connection
                            let _ = ws.close(None).await;
                            return;
                        }
                        json!({"transactionId": 7, "idTagInfo": {"status": "Accepted"}})
                    }
                    "StopTransaction" => {
                        seen.lock().unwrap().stops.push(payload.clone());
                        json!({"idTagInfo": {"status": "Accepted"}})
                    }
                    _ => json!({}),
                };
                let frame = json!([3, id, answer]).to_string();
                if ws.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test]
async fn a_start_whose_answer_was_lost_is_sent_again_and_the_session_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = tokio::spawn(fake_csms(listener, seen.clone()));
    let config = SimConfig {
        url: format!("ws://127.0.0.1:{port}/ocpp/"),
        stations: 1,
        versions: vec![ProtocolVersion::V16],
        connectors: (1, 1),
        duration: Duration::from_secs(12),
        prefix: "RETRY".into(),
        behaviour: Behaviour {
            idle_ms: (200, 300),
            session_ms: (2_000, 2_500),
            meter_interval_ms: 1_000,
            fault_per_s: 0.0,
            disconnect_per_s: 0.0,
            tokens: vec!["TOKEN1".into()],
            ..Behaviour::default()
        },
        ..SimConfig::default()
    };
    let report = evproto_sim::run(config, None).await.unwrap();
    server.abort();
    let seen = seen.lock().unwrap();
    eprintln!("{}", report.to_json());
    assert!(seen.connections >= 2, "the station reconnected");
    assert!(report.start_retries >= 1, "{}", report.to_json());
    // the lost start and its replay: the same transaction, sent twice
    assert!(seen.starts.len() >= 2, "{:?}", seen.starts);
    assert_eq!(
        seen.starts[0], seen.starts[1],
        "the replay is the same message"
    );
    // the first transaction ran under the CSMS's id and was stopped
    assert!(!seen.stops.is_empty(), "{}", report.to_json());
    assert_eq!(seen.stops[0]["transactionId"], 7);
    assert_eq!(report.sessions_started, seen.starts.len() as u64 - 1);
    assert_eq!(report.sessions_completed, seen.stops.len() as u64);
    assert_eq!(report.error_count(), 0, "{}", report.to_json());
}
