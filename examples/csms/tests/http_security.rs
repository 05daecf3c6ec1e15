//! The HTTP side of the CSMS under a security review (issue 16, items 7
//! and 12–15): the operator API, dashboard and metrics on an admin port of
//! their own, the key in a header (except for the event stream) and
//! stored as a hash, uploads refused before their body is read, capped
//! while streaming, single-use and limited in number, downloads streamed
//! and limited in number, slow or stalled clients cut off, connections
//! capped.
//!
//! Timeouts here are hang guards, far above the limits under test.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use csms::config::Config;
use evproto_ocpp_client::{Client as Station, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::{Ctx, Router};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "http-security-key-0123456789";
/// Hang guard: far longer than any limit a test sets.
const GUARD: Duration = Duration::from_secs(30);

struct Csms {
    started: csms::Started,
    dir: PathBuf,
    config: Config,
    running: common::InProcess,
}

fn config(name: &str) -> Config {
    let dir = common::temp_dir(&format!("http-{name}"));
    Config {
        call_timeout: Duration::from_secs(10),
        ..common::lab_config(&dir, KEY)
    }
}

async fn start(config: Config) -> Csms {
    let running = common::InProcess::start(config.clone()).await;
    Csms {
        started: running.started.clone(),
        dir: config.data_dir.clone(),
        config,
        running,
    }
}

impl Csms {
    fn admin(&self) -> u16 {
        self.started.admin_port
    }
    fn public(&self) -> u16 {
        self.started.http_port
    }
    async fn stop(self) -> PathBuf {
        tokio::time::timeout(GUARD, self.running.stop())
            .await
            .expect("stopped in time");
        self.dir
    }
    /// Stops and removes the data directory.
    async fn done(self) {
        let _ = std::fs::remove_dir_all(self.stop().await);
    }
}

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::api(KEY, port, method, path, body).await
}

/// Reads what the server sends until it closes (or resets) the connection.
async fn read_all(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(GUARD, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server neither answered nor closed: {}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads up to the end of the response head.
async fn read_head(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(GUARD, s.read(&mut byte))
            .await
            .expect("a response head in time")
            .expect("read");
        assert!(
            n == 1,
            "closed before the head ended: {}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One request on a fresh connection (`Connection: close`): (status, whole response).
async fn exchange(port: u16, request: String) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let r = read_all(&mut s).await;
    (status(&r), r)
}

fn get(path: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\r\n")
}

fn put_head(path: &str, length: u64) -> String {
    format!("PUT {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n")
}

/// Item 14: the operator API, metrics and dashboard are not on the public
/// port; OCPI, downloads and uploads are not on the admin port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_routes_live_on_the_admin_port_only() {
    let c = start(config("ports")).await;
    assert_ne!(c.admin(), c.public());
    for path in ["/api/stations", "/metrics", "/", "/api/openapi.json"] {
        let (s, r) = exchange(c.public(), get(path, Some(KEY))).await;
        assert_eq!(s, 404, "{path} on the public port: {r}");
    }
    assert_eq!(api(c.admin(), "GET", "/api/stations", None).await.0, 200);
    let (s, r) = exchange(c.public(), get("/ocpi/versions", None)).await;
    assert!(
        s != 404 && s != 200,
        "OCPI stays on the public port, behind its own tokens: {r}"
    );
    let (s, _) = exchange(c.admin(), get("/ocpi/versions", None)).await;
    assert_eq!(s, 404);
    let (s, _) = exchange(c.admin(), get("/firmware/fw.bin", None)).await;
    assert_eq!(s, 404);
    c.done().await;
}

/// Item 14: `?key=` opens the event stream and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_goes_in_a_header_except_for_the_event_stream() {
    let c = start(config("query-key")).await;
    for path in ["/api/stations", "/api/tokens", "/metrics"] {
        let (s, r) = exchange(c.admin(), get(&format!("{path}?key={KEY}"), None)).await;
        assert_eq!(s, 401, "{path}?key=: {r}");
        assert!(r.contains("\"error\""), "{r}");
        let (s, _) = exchange(c.admin(), get(path, Some(KEY))).await;
        assert_eq!(s, 200, "{path} with the header");
    }
    let (s, _) = exchange(c.admin(), get("/api/events?key=wrong-key-0123456789", None)).await;
    assert_eq!(s, 401);
    let mut s = TcpStream::connect(("127.0.0.1", c.admin())).await.unwrap();
    s.write_all(get(&format!("/api/events?key={KEY}"), None).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    drop(s);
    c.done().await;
}

/// Item 14: the dashboard takes the key out of its address and keeps it
/// for the tab only; the page sends no referrer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_takes_the_key_out_of_its_address() {
    let c = start(config("dashboard")).await;
    let (s, page) = exchange(c.admin(), get(&format!("/?key={KEY}"), None)).await;
    assert_eq!(s, 200);
    let lower = page.to_ascii_lowercase();
    assert!(lower.contains("referrer-policy: no-referrer"), "{page}");
    assert!(lower.contains("cache-control: no-store"), "{page}");
    assert!(!page.contains(KEY), "the page echoes the key");
    // the console's key handling is in its api.js module (no inline script)
    let (s, page) = exchange(c.admin(), get("/console/js/api.js", None)).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("history.replaceState("),
        "the key stays in the address bar"
    );
    assert!(page.contains("params.delete('key')"));
    assert!(page.contains("sessionStorage.setItem('csms-key'"));
    assert!(
        !page.contains("localStorage.setItem"),
        "the key outlives the tab"
    );
    assert!(!page.contains(KEY), "the page echoes the key");
    c.done().await;
}

/// Item 12: `/metrics` needs the key and counts in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_key() {
    let c = start(config("metrics")).await;
    let (s, r) = exchange(c.admin(), get("/metrics", None)).await;
    assert_eq!(s, 401, "{r}");
    assert!(
        r.to_ascii_lowercase().contains("www-authenticate: bearer"),
        "{r}"
    );
    assert_eq!(
        api(
            c.admin(),
            "POST",
            "/api/tokens",
            Some(json!({"id_token": "M1"}))
        )
        .await
        .0,
        201
    );
    let (s, m) = exchange(c.admin(), get("/metrics", Some(KEY))).await;
    assert_eq!(s, 200, "{m}");
    for line in [
        "csms_tokens 1",
        "csms_stations 0",
        "csms_alerts_open 0",
        "csms_sessions_active 0",
    ] {
        assert!(m.contains(&format!("\n{line}\n")), "{line} missing: {m}");
    }
    c.done().await;
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("csms.db").display())
}

/// Item 14: a generated key is handed out once and only its hash is
/// stored; a plain key stored by an older version becomes its hash and
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_stored_as_its_hash() {
    let mut first = config("key-hash");
    first.api_key = None;
    let c = start(first.clone()).await;
    let key = c
        .started
        .api_key
        .clone()
        .expect("a generated key is handed out");
    assert!(key.len() >= 32);
    let port = c.admin();
    let (s, _) = common::api(&key, port, "GET", "/api/stations", None).await;
    assert_eq!(s, 200);
    let dir = c.stop().await;
    let store = csms::store::Store::open(&sqlite_url(&dir)).await.unwrap();
    let settings = store.settings_with_prefix("").await.unwrap();
    assert!(
        settings.iter().all(|(_, v)| !v.contains(&key)),
        "the key is stored in plain text: {settings:?}"
    );
    assert_eq!(
        store.setting("api_key_sha256").await.unwrap(),
        Some(csms::api::ApiKey::of(&key).to_hex())
    );
    // as an older version left it: the key itself
    store.delete_setting("api_key_sha256").await.unwrap();
    store
        .put_setting("api_key", "legacy-plain-key-0123456789")
        .await
        .unwrap();
    drop(store);
    let again = start(first).await;
    assert_eq!(
        again.started.api_key, None,
        "a stored key cannot be handed out again"
    );
    let (s, _) = common::api(
        "legacy-plain-key-0123456789",
        again.admin(),
        "GET",
        "/api/stations",
        None,
    )
    .await;
    assert_eq!(s, 200, "the migrated key still works");
    let (s, _) = common::api(&key, again.admin(), "GET", "/api/stations", None).await;
    assert_eq!(s, 401);
    let dir = again.stop().await;
    let store = csms::store::Store::open(&sqlite_url(&dir)).await.unwrap();
    assert_eq!(
        store.setting("api_key").await.unwrap(),
        None,
        "the plain key is gone"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A 2.0.1 station that accepts GetLog, and the upload URL the CSMS gave it.
async fn station_with_upload_url(c: &Csms, id: &str) -> (Station, String) {
    let station = Station::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{}/ocpp/", c.started.ocpp_port),
            id,
            ProtocolVersion::V201,
        ),
        Router::station_v201()
            .on::<evproto_ocpp_types::v201::action::GetLog>(
                |_: Ctx<()>, _: evproto_ocpp_types::v201::GetLogRequest| async move {
                    Ok(evproto_ocpp_types::from_str(
                        r#"{"status":"Accepted","filename":"diag.log"}"#,
                    )
                    .unwrap())
                },
            )
            .with_state(()),
        r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
        Queue::default(),
    );
    station.wait_ready(GUARD).await.unwrap();
    let (s, logs) = api(c.admin(), "POST", &format!("/api/stations/{id}/logs"), None).await;
    assert_eq!(s, 200, "{logs}");
    let url = logs["upload_url"].as_str().unwrap().to_owned();
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    (station, path)
}

async fn stored_files(c: &Csms, id: &str) -> Vec<Value> {
    let (_, logs) = api(c.admin(), "GET", &format!("/api/stations/{id}/logs"), None).await;
    logs["files"].as_array().cloned().unwrap_or_default()
}

fn incoming(c: &Csms) -> usize {
    std::fs::read_dir(c.config.data_dir.join("incoming")).map_or(0, |d| d.count())
}

/// Items 7 and 13: a wrong token, or a declared size over the cap, is
/// answered before the body is read (the client here never sends it), and
/// a token works once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_before_their_body_and_tokens_work_once() {
    let mut cfg = config("upload-token");
    cfg.max_file_bytes = 1024 * 1024;
    let c = start(cfg).await;
    let (_station, path) = station_with_upload_url(&c, "UP1").await;
    assert!(path.starts_with("/upload/UP1/"), "{path}");
    // a wrong token with a 50 MB body announced and none sent: refused at once
    let (s, r) = exchange(
        c.public(),
        put_head("/upload/UP1/0123456789abcdef/diag.log", 50_000_000),
    )
    .await;
    assert_eq!(s, 403, "{r}");
    assert!(r.contains("\"error\""), "{r}");
    // the right token, a size over the cap announced: refused at once too
    let (s, r) = exchange(
        c.public(),
        put_head(&format!("{path}/diag.log"), 2 * 1024 * 1024),
    )
    .await;
    assert_eq!(s, 413, "{r}");
    // the upload itself
    let body = "log line\n".repeat(100);
    let (s, r) = exchange(
        c.public(),
        format!(
            "{}{body}",
            put_head(&format!("{path}/diag.log"), body.len() as u64)
        ),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let files = stored_files(&c, "UP1").await;
    assert_eq!(files, vec![json!({"file": "diag.log", "size": body.len()})]);
    // used up
    let (s, r) = exchange(c.public(), put_head(&format!("{path}/again.log"), 0)).await;
    assert_eq!(s, 403, "{r}");
    assert_eq!(stored_files(&c, "UP1").await.len(), 1);
    assert_eq!(incoming(&c), 0, "a temporary file was left behind");
    c.done().await;
}

/// Item 13: a body without a declared size is cut off at the cap while it
/// streams, nothing of it is kept, and its token stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_cap_is_cut_off_while_streaming() {
    let mut cfg = config("upload-cap");
    cfg.max_file_bytes = 64 * 1024;
    let c = start(cfg).await;
    let (_station, path) = station_with_upload_url(&c, "UP2").await;
    let mut s = TcpStream::connect(("127.0.0.1", c.public())).await.unwrap();
    s.write_all(
        format!("PUT {path}/big.log HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        // 8 × 16 KiB = twice the cap; the server may stop reading half way
        for _ in 0..8 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(GUARD, rd.read_to_end(&mut answer))
        .await
        .expect("answered or closed in time");
    let _ = writer.await;
    let answer = String::from_utf8_lossy(&answer);
    // 413, or a reset that lost it: either way not stored
    assert!(answer.is_empty() || status(&answer) == 413, "{answer}");
    assert!(stored_files(&c, "UP2").await.is_empty());
    assert_eq!(incoming(&c), 0, "the partial file was kept");
    // the token was not used up by the refused upload
    let (s, r) = exchange(
        c.public(),
        format!("{}small", put_head(&format!("{path}/small.log"), 5)),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    c.done().await;
}

/// Item 13: uploads beyond `max_uploads` get 503 while one streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_limit_are_turned_away() {
    let mut cfg = config("upload-slots");
    cfg.max_uploads = 1;
    let c = start(cfg).await;
    let (_station, path) = station_with_upload_url(&c, "UP3").await;
    // A announces 1000 bytes and sends 10: it holds the only slot
    let mut a = TcpStream::connect(("127.0.0.1", c.public())).await.unwrap();
    a.write_all(format!("{}0123456789", put_head(&format!("{path}/a.log"), 1000)).as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(GUARD, async {
        while incoming(&c) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("A's upload started");
    let (s, r) = exchange(c.public(), put_head(&format!("{path}/b.log"), 0)).await;
    assert_eq!(s, 503, "{r}");
    a.write_all(&[b'a'; 990]).await.unwrap();
    let r = read_all(&mut a).await;
    assert_eq!(status(&r), 201, "{r}");
    c.done().await;
}

/// Puts a firmware image of 24 MiB (more than socket buffers absorb, so a
/// client that stops reading stalls the server) and starts downloading it
/// on a connection that then reads nothing more.
async fn stalled_download(c: &Csms) -> TcpStream {
    let put = reqwest::Client::new()
        .put(format!(
            "http://127.0.0.1:{}/api/firmware/big.bin",
            c.admin()
        ))
        .header("Authorization", format!("Bearer {KEY}"))
        .body(vec![7u8; IMAGE])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    let mut a = TcpStream::connect(("127.0.0.1", c.public())).await.unwrap();
    a.write_all(get("/firmware/big.bin", None).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut a).await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {IMAGE}")),
        "{head}"
    );
    a
}

const IMAGE: usize = 24 * 1024 * 1024;

/// Waits (within the guard) for a whole download to go through.
async fn download_goes_through(c: &Csms) {
    let body = tokio::time::timeout(GUARD, async {
        loop {
            let r = reqwest::get(format!("http://127.0.0.1:{}/firmware/big.bin", c.public()))
                .await
                .unwrap();
            if r.status().as_u16() == 200 {
                return r.bytes().await.unwrap();
            }
            assert_eq!(r.status().as_u16(), 503);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a download slot came back");
    assert_eq!(body.len(), IMAGE);
    assert!(body.iter().all(|&b| b == 7));
}

/// Item 13: firmware downloads stream from disk, at most `max_downloads`
/// at once (503 beyond); the slot comes back when a download ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_beyond_the_limit_are_turned_away() {
    let mut cfg = config("downloads");
    cfg.max_downloads = 1;
    let c = start(cfg).await;
    let a = stalled_download(&c).await;
    let (s, r) = exchange(c.public(), get("/firmware/big.bin", None)).await;
    assert_eq!(s, 503, "{r}");
    assert!(r.to_ascii_lowercase().contains("retry-after"), "{r}");
    drop(a);
    download_goes_through(&c).await;
    c.done().await;
}

/// Items 13 and 15: a client that stops reading a download is dropped
/// after the idle limit and its slot serves the next station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_gives_its_slot_back() {
    let mut cfg = config("stalled");
    cfg.max_downloads = 1;
    cfg.http_idle_timeout = Duration::from_secs(1);
    let c = start(cfg).await;
    let a = stalled_download(&c).await;
    // A stays open and reads nothing
    download_goes_through(&c).await;
    drop(a);
    c.done().await;
}

/// Item 15: half a request line is cut off after the header timeout, on
/// both ports; so is a kept-alive connection that idles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_disconnected() {
    let mut cfg = config("slowloris");
    cfg.http_header_timeout = Duration::from_secs(1);
    let c = start(cfg).await;
    for port in [c.public(), c.admin()] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /api/health HT").await.unwrap();
        // read_all fails the test unless the server closes within the guard
        let r = read_all(&mut s).await;
        assert!(!r.contains("200 OK"), "{r}");
    }
    let mut s = TcpStream::connect(("127.0.0.1", c.admin())).await.unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status(&head), 200);
    let rest = read_all(&mut s).await;
    assert!(rest.contains("\"ok\""), "{rest}");
    c.done().await;
}

/// Item 15: connections beyond `http_max_connections` are answered 503
/// and closed; a freed slot is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    let mut cfg = config("conn-cap");
    cfg.http_max_connections = 2;
    cfg.http_header_timeout = Duration::from_secs(120);
    let c = start(cfg).await;
    let port = c.admin();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /api/hea").await.unwrap();
        held.push(s);
    }
    let (s, r) = exchange(port, get("/api/health", None)).await;
    assert_eq!(s, 503, "{r}");
    assert!(r.contains("too many connections"), "{r}");
    held.pop();
    tokio::time::timeout(GUARD, async {
        loop {
            let (s, _) = exchange(port, get("/api/health", None)).await;
            if s == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the freed slot is used again");
    drop(held);
    c.done().await;
}

/// Refusals are JSON with a reason: a malformed or unknown query parameter
/// (`?colour=red` was silently ignored) and a partner URL that is not one
/// are 400s, not plain text or a 502 (found by the schemathesis run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_urls_are_json_400s() {
    let c = start(config("queries")).await;
    for path in [
        "/api/sessions?colour=red",
        "/api/sessions?status=Lost",
        "/api/sessions?limit=many",
        "/api/cdrs?limit=null",
        "/api/alerts?status=perhaps",
        "/api/stations/X/reports?limit=-",
    ] {
        let (s, v) = api(c.admin(), "GET", path, None).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: a JSON reason: {v}");
    }
    let (s, v) = api(c.admin(), "GET", "/api/sessions?station=X&limit=5", None).await;
    assert_eq!(s, 200, "known filters still work: {v}");
    for url in ["", "versions", "https://", "ftp://partner.example/ocpi"] {
        let (s, v) = api(
            c.admin(),
            "POST",
            "/api/ocpi/partners",
            Some(json!({"versions_url": url, "token": "t"})),
        )
        .await;
        assert_eq!(s, 400, "{url:?}: {v}");
        assert!(v["error"].as_str().unwrap().contains("versions_url"), "{v}");
    }
    c.done().await;
}
