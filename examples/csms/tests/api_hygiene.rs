//! Issue 18 items 4 and 5: every list pages with a keyset cursor and
//! filters; bodies are validated; creates and updates answer 201 and 200;
//! every refusal (404, 405) is JSON; the data directory has one process at
//! a time; the log is JSON on request and has no colours in a file.
//!
//! Timeouts here are hang guards, far above anything under test.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use csms::config::Config;
use serde_json::{json, Value};

const KEY: &str = "api-hygiene-key-0123456789";
const PASSWORD: &str = "hygiene-station-password";
/// Hang guard.
const GUARD: Duration = Duration::from_secs(60);
/// Rows seeded to page through: more than the largest page.
const ROWS: usize = 2500;

struct Csms {
    admin: u16,
    dir: PathBuf,
    running: common::InProcess,
}

fn config(name: &str, profile: u8) -> Config {
    let dir = common::temp_dir(&format!("hygiene-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    Config {
        security_profile: profile,
        // the default: unknown identities are refused
        unknown_stations: csms::config::UnknownStations::Reject,
        ..common::lab_config(&dir, KEY)
    }
}

async fn start(config: Config) -> Csms {
    let dir = config.data_dir.clone();
    let running = tokio::time::timeout(GUARD, common::InProcess::start(config))
        .await
        .expect("started in time");
    Csms {
        admin: running.started.admin_port,
        dir,
        running,
    }
}

impl Csms {
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::api(KEY, self.admin, method, path, body).await
    }

    /// Every page of `path` (which has a `?`), `limit` rows at a time:
    /// the rows in order and the totals each page gave.
    async fn all_pages(&self, path: &str, limit: usize) -> (Vec<Value>, Vec<i64>) {
        let mut rows = Vec::new();
        let mut totals = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}&limit={limit}&cursor={c}"),
                None => format!("{path}&limit={limit}"),
            };
            let (s, page) = self.api("GET", &url, None).await;
            assert_eq!(s, 200, "{url}: {page}");
            let items = page["items"].as_array().expect("items").clone();
            assert!(items.len() <= limit, "{url}: {} rows", items.len());
            totals.push(page["total"].as_i64().expect("total"));
            rows.extend(items);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return (rows, totals),
            }
        }
    }

    async fn done(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("csms.db").display())
}

/// The start of seeded session `i`: two sessions share each second, so
/// the id breaks ties.
fn start_of(i: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    (base + chrono::Duration::seconds((i / 2) as i64))
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// [`ROWS`] sessions on stations P0-P2 (`i % 3`), every fifth Active, and
/// [`ROWS`] tokens, written straight into the store.
async fn seed(dir: &Path) {
    let store = csms::store::Store::open(&sqlite_url(dir)).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    for i in 0..ROWS {
        let status = if i % 5 == 0 { "Active" } else { "Completed" };
        sqlx::query(
            "INSERT INTO sessions (id, station_id, ocpp_tx_id, status, started_at, energy_wh, updated_at) \
             VALUES ($1, $2, $3, $4, $5, '0', $6)",
        )
        .bind(format!("P{}:{i:05}", i % 3))
        .bind(format!("P{}", i % 3))
        .bind(format!("{i:05}"))
        .bind(status)
        .bind(start_of(i))
        // updated in the opposite order: paging must not follow it
        .bind(start_of(ROWS - i))
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO tokens (id_token, token_type, status, created_at) VALUES ($1, 'ISO14443', $2, $3)",
        )
        .bind(format!("TK{i:05}"))
        .bind(if i % 4 == 0 { "Blocked" } else { "Accepted" })
        .bind(start_of(i))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// 2,500 sessions and tokens, a page of at most 1,000 at a time: each
/// exactly once, in order, with the total on every page; the filters
/// narrow the same way over many small pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_through_every_row_once() {
    let cfg = config("paging", 0);
    seed(&cfg.data_dir).await;
    let c = start(cfg).await;

    let (sessions, totals) = c.all_pages("/api/sessions?", 1000).await;
    assert_eq!(
        totals,
        vec![ROWS as i64; 3],
        "three pages, each with the total"
    );
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ROWS, "each once");
    assert_eq!(ids.len(), ROWS, "none twice");
    let keys: Vec<(&str, &str)> = sessions
        .iter()
        .map(|s| (s["started_at"].as_str().unwrap(), s["id"].as_str().unwrap()))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "latest start first, ties by id"
    );

    let (tokens, totals) = c.all_pages("/api/tokens?", 1000).await;
    assert_eq!(totals, vec![ROWS as i64; 3]);
    let ids: Vec<&str> = tokens
        .iter()
        .map(|t| t["id_token"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..ROWS).map(|i| format!("TK{i:05}")).collect();
    assert_eq!(ids, expected, "every token once, by id");

    // filters, over pages of 37
    let (p1, totals) = c.all_pages("/api/sessions?station=P1", 37).await;
    let want = (0..ROWS).filter(|i| i % 3 == 1).count();
    assert_eq!((p1.len(), totals[0]), (want, want as i64));
    assert!(p1.iter().all(|s| s["station_id"] == "P1"));
    let (active, _) = c.all_pages("/api/sessions?status=Active", 37).await;
    assert_eq!(active.len(), ROWS / 5);
    assert!(active.iter().all(|s| s["status"] == "Active"));
    let (window, totals) = c
        .all_pages(
            &format!(
                "/api/sessions?since={}&until={}",
                start_of(200),
                // the same instant written another way
                "2026-01-01T01:03:20%2B01:00"
            ),
            37,
        )
        .await;
    // starts 100 s to 200 s after the first: sessions 200..400
    assert_eq!((window.len(), totals[0]), (200, 200));
    let (blocked, _) = c.all_pages("/api/tokens?status=Blocked", 333).await;
    assert_eq!(blocked.len(), ROWS / 4);

    // what is not a page or a filter is a JSON 400 with the reason
    for (path, reason) in [
        ("/api/sessions?cursor=not-a-cursor", "cursor"),
        ("/api/sessions?cursor=WyJ4Il0", "cursor"), // ["x"]: a key of the wrong shape
        ("/api/sessions?limit=0", "limit"),
        ("/api/sessions?limit=1001", "limit"),
        ("/api/sessions?since=yesterday", "since"),
        ("/api/sessions?status=Lost", "status"),
        ("/api/tariffs?station=P1", "station"),
        ("/api/stations?since=2026-01-01T00:00:00Z", "since"),
        ("/api/cdrs?status=Active", "status"),
        ("/api/tokens?colour=red", "colour"),
    ] {
        let (s, v) = c.api("GET", path, None).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{path}: names {reason}: {v}"
        );
    }
    c.done().await;
}

/// Stations come in natural order of their identities, by a stored key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_sort_naturally() {
    let c = start(config("natural", 0)).await;
    for id in ["LOAD10", "LOAD2", "LOAD1", "A", "LOAD02x"] {
        let (s, v) = c
            .api("PUT", &format!("/api/stations/{id}"), Some(json!({})))
            .await;
        assert_eq!(s, 201, "{id}: {v}");
    }
    let (stations, totals) = c.all_pages("/api/stations?", 2).await;
    let ids: Vec<&str> = stations.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A", "LOAD1", "LOAD2", "LOAD02x", "LOAD10"]);
    assert_eq!(totals, vec![5; 3]);
    assert!(stations.iter().all(|s| s["connected"] == false));
    c.done().await;
}

/// Bodies are checked: under profile 1 a station needs a password (an
/// empty body is refused); tokens, stations, tariffs and wallets answer
/// 201 when created and 200 when updated; negative prices name the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_validated_and_creates_are_idempotent() {
    let c = start(config("validation", 1)).await;
    let empty = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{}/api/stations/S1", c.admin))
        .header("Authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status().as_u16(), 400);
    let v: Value = empty.json().await.unwrap();
    assert!(v["error"].is_string(), "{v}");
    let (s, v) = c.api("PUT", "/api/stations/S1", Some(json!({}))).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("password"), "{v}");
    let (s, v) = c.api("GET", "/api/stations/S1", None).await;
    assert_eq!(s, 404, "nothing was created: {v}");
    let (s, v) = c
        .api(
            "PUT",
            "/api/stations/S1",
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!((s, &v["has_password"]), (201, &json!(true)), "{v}");
    let location = json!({"location": {"name": "Depot"}});
    let (s, v) = c.api("PUT", "/api/stations/S1", Some(location)).await;
    assert_eq!(s, 200, "an update keeps the password: {v}");

    let token = json!({"id_token": "DUP1"});
    let (s, first) = c.api("POST", "/api/tokens", Some(token.clone())).await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = c.api("POST", "/api/tokens", Some(token)).await;
    assert_eq!(s, 200, "a duplicate is no create: {again}");
    assert_eq!(
        again["created_at"], first["created_at"],
        "the token as stored"
    );
    let (s, blocked) = c
        .api(
            "POST",
            "/api/tokens",
            Some(json!({"id_token": "DUP1", "status": "Blocked"})),
        )
        .await;
    assert_eq!((s, &blocked["status"]), (200, &json!("Blocked")));
    let (_, list) = c.api("GET", "/api/tokens?", None).await;
    assert_eq!(list["total"], 1, "{list}");

    let tariff = |price: Value| {
        json!({"currency": "EUR", "elements": [{"price_components": [
            {"type": "FLAT", "price": 1, "step_size": 1},
            {"type": "ENERGY", "price": price, "vat": 20, "step_size": 1}]}]})
    };
    let (s, v) = c
        .api("PUT", "/api/tariffs/T1", Some(tariff(json!(-0.3))))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("elements[0].price_components[1].price"),
        "the field is named: {v}"
    );
    let (s, v) = c
        .api("PUT", "/api/tariffs/T1", Some(tariff(json!("-1"))))
        .await;
    assert_eq!(s, 400, "a negative price as a string too: {v}");
    let (s, _) = c
        .api("PUT", "/api/tariffs/T1", Some(tariff(json!(0.3))))
        .await;
    assert_eq!(s, 201);
    let (s, _) = c
        .api("PUT", "/api/tariffs/T1", Some(tariff(json!(0.35))))
        .await;
    assert_eq!(s, 200);

    let wallet = json!({"balance": "10", "currency": "EUR"});
    let (s, _) = c
        .api("PUT", "/api/wallets/DUP1", Some(wallet.clone()))
        .await;
    assert_eq!(s, 201);
    let (s, w) = c.api("PUT", "/api/wallets/DUP1", Some(wallet)).await;
    assert_eq!((s, &w["balance"]), (200, &json!("10.00")), "{w}");
    c.done().await;
}

/// An unknown route is a JSON 404, a known one with the wrong method a
/// JSON 405 with `Allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_json() {
    let c = start(config("refusals", 0)).await;
    let http = reqwest::Client::new();
    for (method, path, status) in [
        ("GET", "/api/nope", 404),
        ("DELETE", "/api/sessions", 405),
        ("POST", "/api/stations", 405),
        ("PATCH", "/api/tokens", 405),
    ] {
        let r = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("http://127.0.0.1:{}{path}", c.admin),
            )
            .header("Authorization", format!("Bearer {KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path}"
        );
        if status == 405 {
            let allow = r.headers().get("allow").expect("Allow").to_str().unwrap();
            assert!(allow.contains("GET"), "{method} {path}: Allow {allow}");
        }
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }
    c.done().await;
}

/// A `csms` process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `csms` binary in `dir` (its data directory `dir/data`), stderr to
/// `log`; returns once it listens (its admin port).
fn spawn(dir: &Path, log: &Path, args: &[&str]) -> (Process, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_csms"))
        .current_dir(dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--ocpp-port",
            "0",
            "--http-port",
            "0",
            "--admin-port",
            "0",
            "--security-profile",
            "0",
        ])
        .args(args)
        .env("CSMS_API_KEY", KEY)
        .env("RUST_LOG", "debug")
        .env_remove("DATABASE_URL")
        .env_remove("NO_COLOR")
        .env_remove("CSMS_LOG_FORMAT")
        .env_remove("CSMS_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut p = Process(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx.recv_timeout(GUARD).unwrap_or_else(|_| {
            let _ = p.0.kill();
            panic!(
                "csms did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "listening" {
            return (p, v["admin_port"].as_u64().unwrap() as u16);
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("csms-hygiene-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A second `csms` on the same data directory stops at once, exit 2,
/// naming the PID that holds it; the first keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_data_directory_exits_2() {
    let dir = temp_dir("lock");
    let (first, admin) = spawn(&dir, &dir.join("first.log"), &[]);
    let second_log = dir.join("second.log");
    let mut second = Process(
        Command::new(env!("CARGO_BIN_EXE_csms"))
            .current_dir(&dir)
            .args([
                "--bind",
                "127.0.0.1",
                "--ocpp-port",
                "0",
                "--http-port",
                "0",
            ])
            .args(["--admin-port", "0", "--security-profile", "0"])
            .env("CSMS_API_KEY", KEY)
            .env_remove("DATABASE_URL")
            .env_remove("CSMS_DATA_DIR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&second_log).unwrap())
            .spawn()
            .unwrap(),
    );
    // hang guard: without the lock the second one starts and serves
    let mut status = None;
    for _ in 0..600 {
        status = second.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = std::fs::read_to_string(&second_log).unwrap();
    let status = status.unwrap_or_else(|| panic!("the second instance kept running: {stderr}"));
    assert_eq!(status.code(), Some(2), "{stderr}");
    let want = format!("data directory data is in use by PID {}", first.0.id());
    assert!(stderr.contains(&want), "{want:?} in {stderr:?}");
    let (s, _) = common::api(KEY, admin, "GET", "/api/stations", None).await;
    assert_eq!(s, 200, "the first keeps serving");
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--log-format json`: every stderr line is a JSON object; the text
/// format written to a file has no ANSI escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_json_on_request_and_plain_in_a_file() {
    let dir = temp_dir("log");
    for format in ["json", "text"] {
        let log = dir.join(format!("{format}.log"));
        let (p, admin) = spawn(&dir, &log, &["--log-format", format]);
        // requests and queries log at debug
        let (s, _) = common::api(KEY, admin, "GET", "/api/sessions?", None).await;
        assert_eq!(s, 200);
        drop(p);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{format}: something was logged");
        assert!(!text.contains('\u{1b}'), "{format}: no ANSI escape: {text}");
        if format == "json" {
            for l in &lines {
                let v: Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
            }
        } else {
            assert!(
                lines
                    .iter()
                    .any(|l| serde_json::from_str::<Value>(l).is_err()),
                "text is not JSON"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
