//! Fault injection (issue 16): an OCPI partner down for a while. The
//! reference CSMS as CPO, an in-process eMSP on `ocpi` behind a gate that
//! answers 503 or stops listening, and an OCPP 1.6 station whose roaming
//! sessions complete while the eMSP is down.
//!
//! Pushes go through the outbox: while the partner is down they are
//! retried with exponential backoff (one probe for all of the partner's
//! pushes, every attempt counted), and once it answers again every session
//! and every CDR arrives, each CDR exactly once.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use evproto_ocpi::auth::TokenEncoding;
use evproto_ocpi::client::{Client, Peer};
use evproto_ocpi::credentials::{Own, UrlPolicy};
use evproto_ocpi::server::{Config as OcpiConfig, MemoryStore, NoHandler, Role, Server};
use evproto_ocpp_client::{Client as Station, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::Router;
use serde_json::{json, Value};

const KEY: &str = "roaming-faults-api-key-012";

/// The first retry delay the CSMS is configured with.
const BASE: Duration = Duration::from_millis(100);

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::api(KEY, port, method, path, body).await
}

/// Waits (at most a minute: a hang guard) until `f` gives a value.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the eMSP's gate lets through and counts.
#[derive(Default)]
struct Gate {
    /// Answer every request 503.
    down: AtomicBool,
    /// Requests answered 503.
    refused: AtomicUsize,
    /// CDR POSTs that reached the eMSP and succeeded, by CDR id.
    cdr_posts: Mutex<BTreeMap<String, usize>>,
}

async fn gate(State(g): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if g.down.load(Ordering::SeqCst) {
        g.refused.fetch_add(1, Ordering::SeqCst);
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "down for maintenance",
        )
            .into_response();
    }
    let is_cdr_post = req.method() == axum::http::Method::POST
        && req.uri().path().trim_end_matches('/').ends_with("/cdrs");
    if !is_cdr_post {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let id = serde_json::from_slice::<Value>(&bytes).unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if resp.status().is_success() {
        *g.cdr_posts.lock().unwrap().entry(id).or_default() += 1;
    }
    resp
}

/// The eMSP: its server on `addr` until `stop` fires.
fn serve_emsp(
    listener: tokio::net::TcpListener,
    server: &Server,
    g: &Arc<Gate>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let app = axum::Router::new()
        .nest("/ocpi", server.router())
        .layer(axum::middleware::from_fn_with_state(g.clone(), gate));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (stop, task)
}

/// Every object of a module in the eMSP's store.
async fn objects(store: &MemoryStore, module: &str) -> Vec<Value> {
    use evproto_ocpi::server::Store as _;
    let page = evproto_ocpi::pagination::Page {
        offset: 0,
        limit: 1000,
        date_from: None,
        date_to: None,
    };
    store
        .list_objects(module, &[String::new()], &page)
        .await
        .unwrap()
        .0
}

/// The CSMS's pending push entries: (their attempts, how many).
async fn pushes(db: &sqlx::SqlitePool) -> (i64, i64) {
    use sqlx::Row;
    let r = sqlx::query(
        "SELECT COALESCE(SUM(attempts), 0), COUNT(*) FROM outbox WHERE kind = 'ocpi_push' AND done_at IS NULL",
    )
    .fetch_one(db)
    .await
    .unwrap();
    (r.get(0), r.get(1))
}

async fn dump(db: &sqlx::SqlitePool) -> Vec<String> {
    use sqlx::Row;
    sqlx::query("SELECT id || ' ' || subject || ' ' || COALESCE(done_at, '-') || ' ' || attempts || ' ' || COALESCE(last_error, '') || ' ' || COALESCE(next_attempt_at, '') FROM outbox")
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

fn at(min_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(min_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn call(station: &Station, action: &'static str, payload: Value) -> Value {
    let peer = station.peer().unwrap();
    serde_json::from_str(&peer.call_raw(action, payload.to_string()).await.unwrap()).unwrap()
}

/// The `n`-th roaming driver's session on connector 1, started and
/// stopped (each at its own time: a start with the time of another is a
/// retransmission of it).
async fn session(station: &Station, n: i64) {
    let s = call(
        station,
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "ROAM1", "meterStart": 1000, "timestamp": at(60 - 10 * n)}),
    )
    .await;
    assert_eq!(s["idTagInfo"]["status"], "Accepted", "{s}");
    let tx = s["transactionId"].as_i64().unwrap();
    call(
        station,
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 6000, "timestamp": at(55 - 10 * n), "reason": "Local"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_down_for_a_while_gets_everything_once() {
    let dir = common::temp_dir("roaming-faults");
    let config = csms::config::Config {
        call_timeout: Duration::from_secs(10),
        ocpi_allow_private_urls: true,
        outbox_retry_base: BASE,
        ..common::lab_config(&dir, KEY)
    };
    let running = common::InProcess::start(config).await;
    let started = running.started.clone();
    let http = started.admin_port;
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.30, "step_size": 1}]}]});
    assert_eq!(
        api(http, "PUT", "/api/tariffs/default", Some(tariff))
            .await
            .0,
        201
    );

    // The eMSP behind its gate, registered from the operator API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}/ocpi");
    let mut own = Own::with_role(&format!("{base}/versions"), "DE", "EMS", "EMSP", "eMSP");
    own.policy = UrlPolicy::lab();
    let store = Arc::new(MemoryStore::new());
    let emsp = Server::new(
        OcpiConfig {
            role: Role::Emsp,
            base_url: base.clone(),
            own,
            max_limit: 100,
            token_encoding: TokenEncoding::Lenient,
            trailing_slash: false,
            storage_version: None,
        },
        store.clone(),
        Arc::new(NoHandler),
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let g = Arc::new(Gate::default());
    let (emsp_stop, emsp_task) = serve_emsp(listener, &emsp, &g);
    let st: &MemoryStore = &store;
    let gt: &Gate = &g;
    let token_a = emsp.issue_token_a("csms").await.unwrap();
    let (s, reg) = api(
        http,
        "POST",
        "/api/ocpi/partners",
        Some(json!({"versions_url": format!("{base}/versions"), "token": token_a})),
    )
    .await;
    assert_eq!(s, 201, "{reg}");
    let party = store
        .parties()
        .into_iter()
        .find(|p| p.id == "csms" && !p.token_a)
        .unwrap();
    let cpo: Peer = Client::new(UrlPolicy::lab())
        .unwrap()
        .peer(party.registration.unwrap())
        .from_party("DE", "EMS");
    let roam = json!({"country_code": "DE", "party_id": "EMS", "uid": "ROAM1", "type": "RFID",
        "contract_id": "DE-EMS-ROAM1", "issuer": "EMS", "valid": true, "whitelist": "ALLOWED",
        "last_updated": "2024-01-01T00:00:00Z"});
    cpo.put("tokens", &["DE", "EMS", "ROAM1"], &roam)
        .await
        .unwrap();

    // The station boots and reports; its Location reaches the eMSP.
    let station = Station::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{}/ocpp/", started.ocpp_port),
            "RF1",
            ProtocolVersion::V16,
        ),
        Router::station_v16().with_state(()),
        r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        Queue::default(),
    );
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    call(
        &station,
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    )
    .await;
    eventually("the Location", || async move {
        objects(st, "locations").await.into_iter().next()
    })
    .await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("csms.db").display()))
        .await
        .unwrap();
    let db = &pool;
    eventually("the first pushes done", || async move {
        let (_, pending) = pushes(db).await;
        (pending == 0).then_some(())
    })
    .await;

    // 1. The eMSP answers 503: two sessions complete meanwhile.
    g.down.store(true, Ordering::SeqCst);
    session(&station, 1).await;
    session(&station, 2).await;
    eventually("a refused push", || async move {
        (gt.refused.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    // Backoff: probes come at least BASE, 2 BASE, 4 BASE, ... apart (one for
    // all the partner's pushes), so a window of 3 s holds at most 5 of them
    // whenever it starts; retrying at a fixed BASE would be 30.
    let c0 = gt.refused.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_window = gt.refused.load(Ordering::SeqCst) - c0;
    assert!(
        in_window <= 6,
        "{in_window} attempts in 3 s with a base of {BASE:?}: no backoff"
    );
    // ... and they go on, each one counted on its entry.
    eventually("more attempts", || async move {
        (gt.refused.load(Ordering::SeqCst) > c0 + in_window).then_some(())
    })
    .await;
    eventually("every refused attempt counted", || async move {
        let (attempts, pending) = pushes(db).await;
        let refused = i64::try_from(gt.refused.load(Ordering::SeqCst)).unwrap();
        assert!(
            pending >= 4,
            "two sessions and two CDRs wait: {pending} {:?}",
            dump(db).await
        );
        (attempts == refused).then_some(())
    })
    .await;
    assert!(objects(&store, "cdrs").await.is_empty());

    // 2. The eMSP is not listening at all: a third session completes.
    let _ = emsp_stop.send(());
    tokio::time::timeout(Duration::from_secs(30), emsp_task)
        .await
        .expect("the eMSP did not stop")
        .unwrap();
    let refused = i64::try_from(gt.refused.load(Ordering::SeqCst)).unwrap();
    session(&station, 3).await;
    eventually("a push that found nobody listening", || async move {
        let (attempts, _) = pushes(db).await;
        (attempts > refused).then_some(())
    })
    .await;

    // 3. The eMSP is back on the same address and answers.
    g.down.store(false, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (_emsp_stop, _emsp_task) = serve_emsp(listener, &emsp, &g);
    let sessions = eventually("three completed sessions at the eMSP", || async move {
        let s = objects(st, "sessions").await;
        (s.len() == 3 && s.iter().all(|s| s["status"] == "COMPLETED")).then_some(s)
    })
    .await;
    eventually("every push done", || async move {
        let (_, pending) = pushes(db).await;
        (pending == 0).then_some(())
    })
    .await;
    let cdrs = objects(&store, "cdrs").await;
    assert_eq!(cdrs.len(), 3, "{cdrs:?}");
    let posts = g.cdr_posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert!(
        posts.values().all(|n| *n == 1),
        "a CDR POSTed twice: {posts:?}"
    );
    for c in &cdrs {
        assert_eq!(posts.get(c["id"].as_str().unwrap()), Some(&1), "{c}");
        assert!(
            sessions.iter().any(|s| s["id"] == c["session_id"]),
            "the CDR's session arrived: {c}"
        );
    }

    station.shutdown().await;
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
