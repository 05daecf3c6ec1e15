//! The handshake's security hooks over real sockets, on both WebSocket
//! paths (hyper + yawc with permessage-deflate, tokio-tungstenite without):
//! the password check is awaited off the runtime's workers
//! (`PasswordCheck::verify`), `ServerBuilder::admit` refuses authenticated
//! identities that are not registered, and `Server::disconnect` closes a
//! live connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evproto_ocpp_rpc::Router;
use evproto_ocpp_server::{
    ErrorKind, PasswordCheck, Security, Server, ServerConfig, ServerEvent, Verdict,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const PASSWORD: &str = "a-long-enough-test-password";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server on a free port until the returned sender is dropped.
async fn start(server: &Server) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(listener, async {
            let _ = stopped.await;
        })
        .await
    });
    (port, stop)
}

fn build(security: Security, deflate: bool) -> evproto_ocpp_server::ServerBuilder {
    Server::builder(security)
        .v201(Router::csms_v201().into_routes())
        .config(ServerConfig::default().with_permessage_deflate(deflate))
}

/// Connects as `identity` with `password`: the socket, or the HTTP status.
async fn connect(port: u16, identity: &str, password: &str) -> Result<Ws, u16> {
    use base64::Engine as _;
    let mut req = format!("ws://127.0.0.1:{port}/ocpp/{identity}")
        .into_client_request()
        .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{identity}:{password}"));
    let headers = req.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp2.0.1"),
    );
    headers.insert(
        "Authorization",
        HeaderValue::from_str(&format!("Basic {auth}")).unwrap(),
    );
    let connecting = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(Duration::from_secs(20), connecting)
        .await
        .expect("the handshake ends")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// A check whose blocking `check` refuses everything and whose `verify`
/// answers only after an await: connecting proves the server awaited
/// `verify` rather than calling `check` on its worker.
struct AsyncOnly {
    verified: AtomicUsize,
}

impl PasswordCheck for AsyncOnly {
    fn check(&self, _: &str, _: &[u8]) -> bool {
        false
    }

    fn verify(self: Arc<Self>, _identity: String, password: Vec<u8>) -> Verdict {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.verified.fetch_add(1, Ordering::SeqCst);
            password == PASSWORD.as_bytes()
        })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_password_check_is_awaited_on_both_websocket_paths() {
    for deflate in [true, false] {
        let check = Arc::new(AsyncOnly {
            verified: AtomicUsize::new(0),
        });
        let server = build(Security::basic_auth(ArcCheck(check.clone())), deflate).build();
        let (port, _stop) = start(&server).await;
        assert!(
            connect(port, "CP1", PASSWORD).await.is_ok(),
            "deflate {deflate}"
        );
        assert_eq!(
            connect(port, "CP1", "wrong-password-xx").await.err(),
            Some(401)
        );
        assert_eq!(
            check.verified.load(Ordering::SeqCst),
            2,
            "deflate {deflate}"
        );
    }
}

/// Hands an `Arc` check to `Security::basic_auth` (which wraps its own).
struct ArcCheck(Arc<AsyncOnly>);

impl PasswordCheck for ArcCheck {
    fn check(&self, identity: &str, password: &[u8]) -> bool {
        self.0.check(identity, password)
    }

    fn verify(self: Arc<Self>, identity: String, password: Vec<u8>) -> Verdict {
        self.0.clone().verify(identity, password)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocking_check_runs_off_the_worker_of_a_single_threaded_runtime() {
    // the default `verify` runs `check` on the blocking pool. This check
    // blocks until a task of this one-thread runtime has seen it start: on
    // the worker it would wait for itself (and refuse after the guard)
    for deflate in [true, false] {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let started_tx = std::sync::Mutex::new(Some(started_tx));
        let go_rx = std::sync::Mutex::new(go_rx);
        let server = build(
            Security::basic_auth(move |_: &str, p: &[u8]| {
                if let Some(tx) = started_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                let waited = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(30));
                waited.is_ok() && p == PASSWORD.as_bytes()
            }),
            deflate,
        )
        .build();
        let (port, _stop) = start(&server).await;
        let release = tokio::spawn(async move {
            if started_rx.await.is_ok() {
                let _ = go_tx.send(());
            }
        });
        assert!(
            connect(port, "CP1", PASSWORD).await.is_ok(),
            "deflate {deflate}"
        );
        release.await.unwrap();
    }
}

#[tokio::test]
async fn admit_refuses_authenticated_identities_that_are_not_registered() {
    for deflate in [true, false] {
        let server = build(
            Security::basic_auth(|_: &str, p: &[u8]| p == PASSWORD.as_bytes()),
            deflate,
        )
        .admit(|id: &str| id == "REGISTERED")
        .build();
        let mut events = server.subscribe();
        let (port, _stop) = start(&server).await;
        assert!(connect(port, "REGISTERED", PASSWORD).await.is_ok());
        assert_eq!(connect(port, "DELETED", PASSWORD).await.err(), Some(401));
        let kind = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(ServerEvent::Refused { reason, .. }) = events.recv().await {
                    return reason.kind();
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(kind, ErrorKind::NotAdmitted, "deflate {deflate}");
        // a wrong password is refused as authentication, before admission
        assert_eq!(
            connect(port, "REGISTERED", "wrong-password-xx").await.err(),
            Some(401)
        );
    }
}

#[tokio::test]
async fn disconnect_closes_the_live_connection() {
    use futures_util::StreamExt as _;
    let server = build(Security::unsecured(), true).build();
    let mut events = server.subscribe();
    let (port, _stop) = start(&server).await;
    let mut ws = connect(port, "CP1", PASSWORD).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(events.recv().await, Ok(ServerEvent::Connected { .. })) {}
    })
    .await
    .unwrap();
    assert!(!server.disconnect("NOT-CONNECTED", "x").await);
    assert!(server.disconnect("CP1", "credentials changed").await);
    // the station sees the close frame, then the end of the stream
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None => return,
                Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was closed");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(events.recv().await, Ok(ServerEvent::Disconnected { .. })) {}
    })
    .await
    .unwrap();
    assert!(server.connected().is_empty());
}
