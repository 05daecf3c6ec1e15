//! Our client against our server over loopback sockets: every version, every
//! security profile, and the refusals.

use std::time::Duration;

use evproto_ocpp_client::{Backoff, Client, ClientConfig, ClientState, MemoryStore};
use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_rpc::{Ctx, Router, Routes};
use evproto_ocpp_server::{ErrorKind, Security, ServerConfig, ServerEvent};
use evproto_ocpp_types::{v16, v201, v21};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::csms::Running;
use crate::tls::Pki;

const PASSWORD: &str = "a-long-enough-test-password";

fn boot(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V16 => r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        _ => r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
    }
}

fn station_routes(v: ProtocolVersion) -> Routes {
    match v {
        ProtocolVersion::V16 => Router::station_v16()
            .on::<v16::action::GetConfiguration>(|_: Ctx<()>, _: v16::GetConfigurationRequest| async move {
                Ok(evproto_ocpp_types::from_str(r#"{"configurationKey":[{"key":"HeartbeatInterval","readonly":false,"value":"300"}]}"#).unwrap())
            })
            .into_routes(),
        ProtocolVersion::V201 => Router::station_v201()
            .on::<v201::action::GetVariables>(|_: Ctx<()>, _: v201::GetVariablesRequest| async move {
                Ok(evproto_ocpp_types::from_str(r#"{"getVariableResult":[{"attributeStatus":"Accepted","attributeValue":"300","component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#).unwrap())
            })
            .into_routes(),
        _ => Router::station_v21()
            .on::<v21::action::GetVariables>(|_: Ctx<()>, _: v21::GetVariablesRequest| async move {
                Ok(evproto_ocpp_types::from_str(r#"{"getVariableResult":[{"attributeStatus":"Accepted","attributeValue":"300","component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#).unwrap())
            })
            .into_routes(),
    }
}

fn fast_backoff() -> Backoff {
    let mut b = Backoff::default();
    b.wait_minimum = Duration::from_millis(50);
    b.random_range = Duration::from_millis(50);
    b.repeat_times = 1;
    b
}

/// Boot, heartbeat, and a CSMS-initiated call, for one version.
async fn session(running: &Running, config: ClientConfig) {
    let v = config.version;
    let id = config.identity.clone();
    let client = Client::start(
        config.with_backoff(fast_backoff()),
        station_routes(v),
        boot(v),
        MemoryStore::new(),
    );
    client
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{id} {v}: {e}"));
    let peer = client.peer().unwrap();
    peer.call_raw("Heartbeat", "{}".into()).await.unwrap();
    let station = running.server.station(&id).unwrap();
    assert_eq!(station.version(), v);
    let answer = match v {
        ProtocolVersion::V16 => json!(station
            .call::<v16::action::GetConfiguration>(&v16::GetConfigurationRequest { key: None })
            .await
            .unwrap()),
        ProtocolVersion::V201 => {
            let req = evproto_ocpp_types::from_str(r#"{"getVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#).unwrap();
            json!(station
                .call::<v201::action::GetVariables>(&req)
                .await
                .unwrap())
        }
        _ => {
            let req = evproto_ocpp_types::from_str(r#"{"getVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#).unwrap();
            json!(station
                .call::<v21::action::GetVariables>(&req)
                .await
                .unwrap())
        }
    };
    assert!(answer.to_string().contains("300"), "{answer}");
    assert_eq!(
        running.rec.actions(&id)[..2],
        ["BootNotification", "Heartbeat"]
    );
    client.shutdown().await;
}

#[tokio::test]
async fn every_version_with_profile_1() {
    let running = Running::start(
        Security::basic_auth(|_: &str, p: &[u8]| p == PASSWORD.as_bytes()),
        ServerConfig::default(),
    )
    .await;
    for (i, v) in ProtocolVersion::ALL.into_iter().enumerate() {
        let config =
            ClientConfig::new(running.url("ws"), format!("CP{i}"), v).with_password(PASSWORD);
        session(&running, config).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn profile_0_2_and_3() {
    let pki = Pki::new();
    // 0: unsecured
    let running = Running::start(Security::unsecured(), ServerConfig::default()).await;
    session(
        &running,
        ClientConfig::new(running.url("ws"), "P0", ProtocolVersion::V201),
    )
    .await;
    running.stop().await;
    // 2: TLS + Basic
    let running = Running::start(
        Security::tls_basic_auth(pki.server(), |_: &str, p: &[u8]| p == PASSWORD.as_bytes()),
        ServerConfig::default(),
    )
    .await;
    for v in ProtocolVersion::ALL {
        session(
            &running,
            ClientConfig::new(running.url("wss"), "P2", v)
                .with_password(PASSWORD)
                .with_tls(pki.client(None)),
        )
        .await;
    }
    running.stop().await;
    // 3: mutual TLS, the certificate's CN is the identity
    let running = Running::start(
        Security::mutual_tls(pki.server_mtls()),
        ServerConfig::default(),
    )
    .await;
    for v in ProtocolVersion::ALL {
        session(
            &running,
            ClientConfig::new(running.url("wss"), "P3", v).with_tls(pki.client(Some("P3"))),
        )
        .await;
    }
    // a certificate for another identity is refused with 401
    let mut events = running.server.subscribe();
    let client = Client::start(
        ClientConfig::new(running.url("wss"), "P3", ProtocolVersion::V201)
            .with_tls(pki.client(Some("SOMEONE-ELSE")))
            .with_backoff(fast_backoff()),
        station_routes(ProtocolVersion::V201),
        boot(ProtocolVersion::V201),
        MemoryStore::new(),
    );
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(ServerEvent::Refused { status, reason }) = events.recv().await {
                assert_eq!(reason.kind(), ErrorKind::CertificateMismatch, "{reason}");
                return status;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(refused, 401);
    assert!(client.wait_ready(Duration::from_millis(300)).await.is_err());
    client.shutdown().await;
    running.stop().await;
}

async fn raw_connect(
    port: u16,
    path: &str,
    protocols: &str,
    auth: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocols).unwrap(),
    );
    if let Some(a) = auth {
        req.headers_mut()
            .insert("Authorization", HeaderValue::from_str(a).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn refusals_get_their_http_status_and_the_server_keeps_serving() {
    let running = Running::start(
        Security::basic_auth(|_: &str, p: &[u8]| p == PASSWORD.as_bytes()),
        ServerConfig::default(),
    )
    .await;
    let port = running.port;
    let mut events = running.server.subscribe();
    // wrong password, username not the identity, no auth: 401
    assert_eq!(
        raw_connect(port, "/ocpp/CP1", "ocpp2.0.1", Some(&basic("CP1", "wrong")))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        raw_connect(
            port,
            "/ocpp/CP1",
            "ocpp2.0.1",
            Some(&basic("CP2", PASSWORD))
        )
        .await
        .err(),
        Some(401)
    );
    assert_eq!(
        raw_connect(port, "/ocpp/CP1", "ocpp2.0.1", None)
            .await
            .err(),
        Some(401)
    );
    // no common subprotocol: 400; a path outside /ocpp/: 404; a bad identity: 400
    assert_eq!(
        raw_connect(port, "/ocpp/CP1", "ocpp1.5", Some(&basic("CP1", PASSWORD)))
            .await
            .err(),
        Some(400)
    );
    assert_eq!(
        raw_connect(
            port,
            "/other/CP1",
            "ocpp2.0.1",
            Some(&basic("CP1", PASSWORD))
        )
        .await
        .err(),
        Some(404)
    );
    assert_eq!(
        raw_connect(
            port,
            "/ocpp/CP%2F1",
            "ocpp2.0.1",
            Some(&basic("CP/1", PASSWORD))
        )
        .await
        .err(),
        Some(400)
    );
    // each refusal is reported with a typed reason a caller can match on
    let mut refusals = Vec::new();
    while refusals.len() < 6 {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a Refused event per refusal")
            .unwrap();
        if let ServerEvent::Refused { status, reason } = ev {
            assert_eq!(status, reason.status(), "{reason}");
            refusals.push((status, reason.kind(), reason.is_unauthorized()));
        }
    }
    assert_eq!(
        refusals,
        [
            (401, ErrorKind::AuthenticationFailed, true),
            (401, ErrorKind::AuthenticationFailed, true),
            (401, ErrorKind::AuthenticationFailed, true),
            (400, ErrorKind::NoSubprotocol, false),
            (404, ErrorKind::NoEndpoint, false),
            (400, ErrorKind::InvalidIdentity, false),
        ]
    );
    // garbage instead of an HTTP upgrade: the connection is dropped
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .unwrap()
    .unwrap_or(0);
    assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 4"));
    // server preference: 2.1 over 2.0.1 over 1.6
    let mut ws = raw_connect(
        port,
        "/ocpp/CPX",
        "ocpp1.6, ocpp2.0.1",
        Some(&basic("CPX", PASSWORD)),
    )
    .await
    .unwrap();
    // malformed frames and unknown actions get CALLERRORs; the connection stays up
    for (send, expect) in [
        ("not json", r#"[4,"-1","RpcFrameworkError""#),
        (r#"[2,"u1","Teleport",{}]"#, r#"[4,"u1","NotImplemented""#),
        (
            r#"[2,"u2","BootNotification",{"reason":"PowerUp"}]"#,
            r#"[4,"u2","OccurrenceConstraintViolation""#,
        ),
        (r#"[2,"u3","Heartbeat",{}]"#, r#"[4,"u3","SecurityError""#),
    ] {
        ws.send(Message::text(send)).await.unwrap();
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("no answer to {send}")
        };
        assert!(t.as_str().starts_with(expect), "{send} -> {t}");
    }
    // an over-long field: TypeConstraintViolation with its pointer
    let long = format!(
        r#"[2,"u4","BootNotification",{{"reason":"PowerUp","chargingStation":{{"model":"{}","vendorName":"V"}}}}]"#,
        "M".repeat(21)
    );
    ws.send(Message::text(long)).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else {
        panic!()
    };
    assert!(
        t.as_str()
            .starts_with(r#"[4,"u4","TypeConstraintViolation""#),
        "{t}"
    );
    assert!(t.as_str().contains("/chargingStation/model"), "{t}");
    // everyone else is still served
    session(
        &running,
        ClientConfig::new(running.url("ws"), "CP9", ProtocolVersion::V16).with_password(PASSWORD),
    )
    .await;
    running.stop().await;
}

#[tokio::test]
async fn new_connection_replaces_the_old_one() {
    let running = Running::start(Security::unsecured(), ServerConfig::default()).await;
    let mut first = raw_connect(running.port, "/ocpp/DUP", "ocpp1.6", None)
        .await
        .unwrap();
    let _second = raw_connect(running.port, "/ocpp/DUP", "ocpp1.6", None)
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match first.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(closed);
    assert_eq!(running.server.connected(), vec!["DUP".to_owned()]);
    running.stop().await;
}

/// 2.0.1 B01–B03: the boot state belongs to the station. After a network
/// drop an accepted 2.x station reconnects without a new BootNotification
/// and its calls are answered, not refused with `SecurityError`.
#[tokio::test]
async fn accepted_station_reconnects_without_a_new_boot() {
    let running = Running::start(Security::unsecured(), ServerConfig::default()).await;
    for v in [ProtocolVersion::V201, ProtocolVersion::V21] {
        let id = format!("RB{}", v.subprotocol());
        let config =
            ClientConfig::new(running.url("ws"), id.clone(), v).with_backoff(fast_backoff());
        let client = Client::start(config, station_routes(v), boot(v), MemoryStore::new());
        client.wait_ready(Duration::from_secs(10)).await.unwrap();
        // the server drops the connection; the client comes back on its own
        running
            .server
            .station(&id)
            .unwrap()
            .close("network drop")
            .await;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let peer_ok = client.peer().is_some_and(|p| p.is_connected());
                let hb = if v == ProtocolVersion::V201 {
                    client
                        .call::<v201::action::Heartbeat>(&v201::HeartbeatRequest {
                            custom_data: None,
                        })
                        .await
                        .map(|_| ())
                } else {
                    client
                        .call::<v21::action::Heartbeat>(&v21::HeartbeatRequest {
                            custom_data: None,
                        })
                        .await
                        .map(|_| ())
                };
                match hb {
                    Ok(())
                        if peer_ok
                            && running
                                .rec
                                .actions(&id)
                                .iter()
                                .filter(|a| **a == "Heartbeat")
                                .count()
                                >= 1 =>
                    {
                        break
                    }
                    // a call on the wire when the old connection dropped is lost with it
                    Err(e) if !e.is_not_connected() && !e.is_connection_lost() => {
                        panic!("{v}: heartbeat after reconnect: {e}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .unwrap();
        let boots = running
            .rec
            .actions(&id)
            .iter()
            .filter(|a| **a == "BootNotification")
            .count();
        assert_eq!(boots, 1, "{v}: one boot, no new one after the reconnect");
        client.shutdown().await;
    }
    running.stop().await;
}

#[tokio::test]
async fn offline_queue_is_replayed_in_order_after_reconnect() {
    // Reserve a port, then start with the CSMS down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let v = ProtocolVersion::V201;
    let config = ClientConfig::new(format!("ws://127.0.0.1:{port}/ocpp/"), "Q1", v)
        .with_backoff(fast_backoff());
    let client = Client::start(config, station_routes(v), boot(v), MemoryStore::new());
    for seq in 0..5 {
        let ev: v201::TransactionEventRequest = evproto_ocpp_types::from_str(&format!(
            r#"{{"eventType":"{}","timestamp":"2024-01-01T00:00:0{seq}Z","triggerReason":"MeterValuePeriodic","seqNo":{seq},"transactionInfo":{{"transactionId":"T1"}}}}"#,
            if seq == 0 { "Started" } else { "Updated" }
        ))
        .unwrap();
        client
            .call_durable::<v201::action::TransactionEvent>(&ev)
            .await
            .unwrap();
    }
    assert_eq!(client.queued(), 5);
    assert_eq!(client.state(), ClientState::Disconnected);
    let running = Running::start_on(Security::unsecured(), ServerConfig::default(), port).await;
    client.wait_ready(Duration::from_secs(10)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.queued() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let seqs: Vec<i64> = running
        .rec
        .payloads("Q1", "TransactionEvent")
        .iter()
        .map(|p| p["seqNo"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4], "delivered once each, in order");
    // the CSMS restarts: the client reconnects without a new boot and keeps delivering
    running.stop().await;
    let running = Running::start_on(Security::unsecured(), ServerConfig::default(), port).await;
    client.wait_ready(Duration::from_secs(10)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.state() != ClientState::Connected(evproto_ocpp_proto::BootState::Accepted)
            || running.server.station("Q1").is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(
        !running.rec.actions("Q1").contains(&"BootNotification"),
        "no boot after a mere reconnect"
    );
    client.shutdown().await;
    running.stop().await;
}

#[tokio::test]
async fn handler_errors_reach_the_caller_typed() {
    let running = Running::start(Security::unsecured(), ServerConfig::default()).await;
    let v = ProtocolVersion::V201;
    let routes = Router::station_v201()
        .on::<v201::action::Reset>(|_: Ctx<()>, _: v201::ResetRequest| async move {
            Err(CallError::new("NotSupported", "no resets today"))
        })
        .into_routes();
    let client = Client::start(
        ClientConfig::new(running.url("ws"), "E1", v),
        routes,
        boot(v),
        MemoryStore::new(),
    );
    client.wait_ready(Duration::from_secs(10)).await.unwrap();
    let station = running.server.station("E1").unwrap();
    let req: v201::ResetRequest = evproto_ocpp_types::from_str(r#"{"type":"Immediate"}"#).unwrap();
    match station.call::<v201::action::Reset>(&req).await {
        Err(evproto_ocpp_server::CallFailure::CallError(e)) => assert_eq!(
            (e.code.as_str(), e.description.as_str()),
            ("NotSupported", "no resets today")
        ),
        other => panic!("{other:?}"),
    }
    // an action without a handler: NotImplemented
    let req: v201::ClearCacheRequest = evproto_ocpp_types::from_str("{}").unwrap();
    match station.call::<v201::action::ClearCache>(&req).await {
        Err(evproto_ocpp_server::CallFailure::CallError(e)) => assert_eq!(e.code, "NotImplemented"),
        other => panic!("{other:?}"),
    }
    // a 1.6 action on a 2.0.1 connection
    let wrong = station
        .call::<v16::action::ClearCache>(&v16::ClearCacheRequest::default())
        .await;
    assert!(
        matches!(
            wrong,
            Err(evproto_ocpp_server::CallFailure::WrongVersion { .. })
        ),
        "{wrong:?}"
    );
    assert!(running
        .server
        .station("NOPE")
        .unwrap_err()
        .is_not_connected());
    client.shutdown().await;
    running.stop().await;
}

#[tokio::test]
async fn with_and_without_permessage_deflate() {
    use tokio::io::AsyncReadExt;
    for server_deflate in [true, false] {
        let running = Running::start(
            Security::unsecured(),
            ServerConfig::default().with_permessage_deflate(server_deflate),
        )
        .await;
        // What the server answers to an offer of the extension.
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", running.port))
            .await
            .unwrap();
        tcp.write_all(
            b"GET /ocpp/RAW HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp2.1\r\n\
              Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed during handshake");
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("sec-websocket-protocol: ocpp2.1"), "{head}");
        assert_eq!(
            head.contains("permessage-deflate"),
            server_deflate,
            "{head}"
        );
        // by default the server imposes no context takeover both ways and
        // lends pooled compressors (memory per idle connection, BENCHMARKS.md)
        assert_eq!(
            head.contains("server_no_context_takeover")
                && head.contains("client_no_context_takeover"),
            server_deflate,
            "{head}"
        );
        drop(tcp);
        // Full sessions with the client offering it or not.
        for client_deflate in [true, false] {
            for v in ProtocolVersion::ALL {
                let mut config = ClientConfig::new(
                    running.url("ws"),
                    format!("D{}{}", u8::from(server_deflate), u8::from(client_deflate)),
                    v,
                );
                config = config.with_permessage_deflate(client_deflate);
                session(&running, config).await;
            }
        }
        running.stop().await;
    }
}

#[tokio::test]
async fn client_honours_pending_then_heartbeats_at_the_csms_interval() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let boots = Arc::new(AtomicUsize::new(0));
    let heartbeats = Arc::new(AtomicUsize::new(0));
    let routes = Router::csms_v201()
        .on::<v201::action::BootNotification>(|ctx: Ctx<(Arc<AtomicUsize>, Arc<AtomicUsize>)>, _: v201::BootNotificationRequest| async move {
            // first Pending with a 1 s retry interval, then Accepted with a 1 s heartbeat interval
            let status = if ctx.state.0.fetch_add(1, Ordering::SeqCst) == 0 { "Pending" } else { "Accepted" };
            Ok(evproto_ocpp_types::from_str(&format!(r#"{{"currentTime":"2024-01-01T00:00:00Z","interval":1,"status":"{status}"}}"#)).unwrap())
        })
        .on::<v201::action::Heartbeat>(|ctx: Ctx<(Arc<AtomicUsize>, Arc<AtomicUsize>)>, _: v201::HeartbeatRequest| async move {
            ctx.state.1.fetch_add(1, Ordering::SeqCst);
            Ok(evproto_ocpp_types::from_str(r#"{"currentTime":"2024-01-01T00:00:00Z"}"#).unwrap())
        })
        .with_state((boots.clone(), heartbeats.clone()));
    let server = evproto_ocpp_server::Server::builder(Security::unsecured())
        .v201(routes)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener, std::future::pending()).await });
    let v = ProtocolVersion::V201;
    let client = Client::start(
        ClientConfig::new(format!("ws://127.0.0.1:{port}/ocpp/"), "PB1", v),
        station_routes(v),
        boot(v),
        MemoryStore::new(),
    );
    let mut states = client.watch_state();
    // (the watch guard is dropped at once: holding it would block the client's state updates)
    let pending = tokio::time::timeout(
        Duration::from_secs(5),
        states.wait_for(|s| *s == ClientState::Connected(evproto_ocpp_proto::BootState::Pending)),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(pending, "the client reports Pending");
    // a call made while pending waits for acceptance instead of failing
    let early = {
        let peer = client.peer().unwrap();
        tokio::spawn(async move {
            peer.call::<v201::action::Heartbeat>(&Default::default())
                .await
        })
    };
    client.wait_ready(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        boots.load(Ordering::SeqCst),
        2,
        "one retry after the Pending interval"
    );
    assert!(early.await.unwrap().is_ok());
    // the early call plus at least one periodic heartbeat at the 1 s interval
    tokio::time::timeout(Duration::from_secs(10), async {
        while heartbeats.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("periodic heartbeat");
    client.shutdown().await;
}

/// OCPP 1.6 §4.10 and 2.0.1 E04: a CALLERROR to a transaction-related
/// message is the CSMS failing to process it (its store down, say); the
/// station sends it again, up to its message attempts, and then skips it.
#[tokio::test]
async fn a_queued_message_refused_with_a_callerror_is_retried_then_skipped() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use v201::action::{BootNotification, TransactionEvent};
    // the CSMS fails the first two deliveries of every TransactionEvent
    let seen: Arc<AtomicU32> = Arc::default();
    let counter = seen.clone();
    let routes =
        Router::csms_v201()
            .on::<BootNotification>(|_: Ctx<()>, _: v201::BootNotificationRequest| async move {
                Ok(evproto_ocpp_types::from_str::<v201::BootNotificationResponse>(
                r#"{"status":"Accepted","currentTime":"2024-01-01T00:00:00Z","interval":300}"#,
            )
            .unwrap())
            })
            .on::<TransactionEvent>(move |_: Ctx<()>, _: v201::TransactionEventRequest| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(CallError::new("InternalError", "store unavailable"))
                    } else {
                        Ok(
                            evproto_ocpp_types::from_str::<v201::TransactionEventResponse>("{}")
                                .unwrap(),
                        )
                    }
                }
            })
            .into_routes();
    let server = evproto_ocpp_server::Server::builder(Security::unsecured())
        .v201(routes)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    let ev = |seq: u32| -> v201::TransactionEventRequest {
        evproto_ocpp_types::from_str(&format!(
            r#"{{"eventType":"Updated","timestamp":"2024-01-01T00:00:0{seq}Z","triggerReason":"MeterValuePeriodic","seqNo":{seq},"transactionInfo":{{"transactionId":"T1"}}}}"#
        ))
        .unwrap()
    };
    let drained = |client: &Client| {
        let client = client.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while client.queued() > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("queue drained")
        }
    };
    // three attempts: refused, refused, accepted
    let v = ProtocolVersion::V201;
    let config = ClientConfig::new(format!("ws://127.0.0.1:{port}/ocpp/"), "R1", v)
        .with_backoff(fast_backoff())
        .with_message_retry_interval(Duration::from_millis(20));
    let client = Client::start(config, station_routes(v), boot(v), MemoryStore::new());
    client.wait_ready(Duration::from_secs(10)).await.unwrap();
    client
        .call_durable::<TransactionEvent>(&ev(0))
        .await
        .unwrap();
    drained(&client).await;
    assert_eq!(seen.load(Ordering::SeqCst), 3, "sent until processed");
    client.shutdown().await;
    // two attempts allowed: refused twice, then skipped (the queue moves on)
    seen.store(0, Ordering::SeqCst);
    let mut config = ClientConfig::new(format!("ws://127.0.0.1:{port}/ocpp/"), "R2", v)
        .with_backoff(fast_backoff())
        .with_message_retry_interval(Duration::from_millis(20));
    config.message_attempts = 2;
    let client = Client::start(config, station_routes(v), boot(v), MemoryStore::new());
    client.wait_ready(Duration::from_secs(10)).await.unwrap();
    client
        .call_durable::<TransactionEvent>(&ev(1))
        .await
        .unwrap();
    drained(&client).await;
    assert_eq!(seen.load(Ordering::SeqCst), 2, "skipped after two attempts");
    client.shutdown().await;
    let _ = stop.send(());
    let _ = task.await;
}
