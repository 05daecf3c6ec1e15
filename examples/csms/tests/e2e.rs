//! The `csms` binary end to end, against SQLite and PostgreSQL:
//!
//! - the Python `ocpp` package's charging station (1.6, 2.0.1, 2.1) runs a
//!   session with Basic auth; the stored session, its energy and its stop
//!   reason are checked through the API, and a CSMS-initiated call goes
//!   through `POST /api/stations/{id}/ocpp/{Action}`;
//! - refusals: wrong password, unknown station, no API key, malformed and
//!   invalid bodies, a station that is not connected;
//! - crash and restart: the CSMS is killed mid-transaction, the station
//!   keeps queueing, the CSMS restarts on the same store, the station
//!   replays, and the session completes once with the right energy.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::peers::python;

const KEY: &str = "e2e-api-key-0123456789";
const PASSWORD: &str = "e2e-station-password-1";
/// 0.30 per kWh + 1.00 per session, 20 % VAT on the energy.
const TARIFF: &str = r#"{"currency": "EUR", "elements": [{"price_components": [
    {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1},
    {"type": "FLAT", "price": 1.00, "step_size": 1}]}]}"#;

struct Csms {
    child: Child,
    ocpp: u16,
    /// The admin port (operator API, metrics, dashboard).
    http: u16,
    _lines: Receiver<String>,
}

impl Drop for Csms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, db: Option<&str>, ports: Option<(u16, u16)>) -> Csms {
    let (o, h) = ports.unwrap_or((0, 0));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_csms"));
    cmd.current_dir(dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--ocpp-port",
            &o.to_string(),
            "--http-port",
            "0",
            "--admin-port",
            &h.to_string(),
        ])
        .env("CSMS_API_KEY", KEY)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = db {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // owned at once, so a failed start still kills the process
    let mut csms = Csms {
        child,
        ocpp: 0,
        http: 0,
        _lines: rx,
    };
    loop {
        let line = csms
            ._lines
            .recv_timeout(Duration::from_secs(60))
            .expect("csms did not start");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "listening" {
            csms.ocpp = v["ocpp_port"].as_u64().unwrap() as u16;
            csms.http = v["admin_port"].as_u64().unwrap() as u16;
            return csms;
        }
    }
}

/// A minimal HTTP/1.1 client (one request per connection): (status, JSON body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (
        status,
        serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("csms-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop/python")
        .join(name)
}

/// Runs the Python station for `version` against the CSMS; once its session
/// is done, asks it something through the API; returns its exit status and stdout.
fn python_session(
    csms: &Csms,
    id: &str,
    version: &str,
    password: &str,
) -> (bool, String, Option<(u16, Value)>) {
    let mut child = Command::new(python())
        .arg(script("ocpp_station.py"))
        .args([
            "--url",
            &format!("ws://127.0.0.1:{}/ocpp/", csms.ocpp),
            "--id",
            id,
            "--version",
            version,
            "--password",
            password,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut api = None;
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines().map_while(Result::ok) {
        out.push_str(&line);
        out.push('\n');
        if line.contains("session_done") {
            // the CSMS-initiated call the station waits for, through the API
            let (action, payload) = if version == "1.6" {
                ("GetConfiguration", json!({"key": ["HeartbeatInterval"]}))
            } else {
                (
                    "GetVariables",
                    json!({"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}),
                )
            };
            // a payload that breaks the schema is refused before it reaches the station
            let (status, body) = http(
                csms.http,
                "POST",
                &format!("/api/stations/{id}/ocpp/{action}"),
                Some(r#"{"bogus": 1}"#),
                Some(KEY),
            );
            assert_eq!(status, 422, "{body}");
            api = Some(http(
                csms.http,
                "POST",
                &format!("/api/stations/{id}/ocpp/{action}"),
                Some(&payload.to_string()),
                Some(KEY),
            ));
        }
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    out.push_str(&err);
    (status.success(), out, api)
}

fn full_story(name: &str, db: Option<&str>) {
    let dir = temp_dir(name);
    let csms = start(&dir, db, None);
    let h = csms.http;
    // no key, wrong key
    assert_eq!(http(h, "GET", "/api/stations", None, None).0, 401);
    assert_eq!(
        http(
            h,
            "GET",
            "/api/stations",
            None,
            Some("wrong-key-0123456789")
        )
        .0,
        401
    );
    // open endpoints
    assert_eq!(http(h, "GET", "/api/health", None, None).0, 200);
    let (s, doc) = http(h, "GET", "/api/openapi.json", None, None);
    assert_eq!((s, doc["openapi"].as_str().is_some()), (200, true));
    // malformed and invalid bodies: 400 with a reason
    let (s, b) = http(
        h,
        "POST",
        "/api/tokens",
        Some(r#"{"id_token": "#),
        Some(KEY),
    );
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("invalid JSON"), "{b}");
    assert_eq!(
        http(
            h,
            "POST",
            "/api/tokens",
            Some(r#"{"id_token": "T", "status": "Maybe"}"#),
            Some(KEY)
        )
        .0,
        400
    );
    assert_eq!(
        http(
            h,
            "POST",
            "/api/tokens",
            Some(r#"{"id_token": "T", "extra": 1}"#),
            Some(KEY)
        )
        .0,
        400
    );
    assert_eq!(
        http(
            h,
            "PUT",
            "/api/stations/S1",
            Some(r#"{"password": "short"}"#),
            Some(KEY)
        )
        .0,
        400
    );
    assert_eq!(
        http(h, "PUT", "/api/stations/a:b", Some("{}"), Some(KEY)).0,
        400
    );
    assert_eq!(http(h, "GET", "/api/stations/NOPE", None, Some(KEY)).0, 404);
    assert_eq!(
        http(
            h,
            "POST",
            "/api/stations/NOPE/ocpp/Reset",
            Some(r#"{"type": "Hard"}"#),
            Some(KEY)
        )
        .0,
        404
    );
    assert_eq!(http(h, "GET", "/api/no/such/thing", None, Some(KEY)).0, 404);
    // the tariff that prices every session; a body that is no tariff is refused
    assert_eq!(
        http(
            h,
            "PUT",
            "/api/tariffs/default",
            Some(r#"{"currency": "EUR", "elements": []}"#),
            Some(KEY)
        )
        .0,
        400
    );
    assert_eq!(http(h, "PUT", "/api/tariffs/default", Some(r#"{"currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": "x"}]}]}"#), Some(KEY)).0, 400);
    let (s, _) = http(h, "PUT", "/api/tariffs/default", Some(TARIFF), Some(KEY));
    assert_eq!(s, 201);
    // a prepaid wallet for the driver (30 held per session, one session at a time)
    let (s, w) = http(
        h,
        "PUT",
        "/api/wallets/TAG1",
        Some(r#"{"balance": "40", "currency": "EUR"}"#),
        Some(KEY),
    );
    assert_eq!((s, w["balance"].as_str()), (201, Some("40.00")), "{w}");
    assert_eq!(
        http(
            h,
            "PUT",
            "/api/wallets/TAG1",
            Some(r#"{"balance": -1}"#),
            Some(KEY)
        )
        .0,
        400
    );
    // registry and token
    let (s, _) = http(
        h,
        "POST",
        "/api/tokens",
        Some(r#"{"id_token": "TAG1", "type": "ISO14443", "status": "Accepted"}"#),
        Some(KEY),
    );
    assert_eq!(s, 201);
    for v in ["16", "201", "21"] {
        let (s, b) = http(
            h,
            "PUT",
            &format!("/api/stations/PY{v}"),
            Some(&json!({"password": PASSWORD}).to_string()),
            Some(KEY),
        );
        assert_eq!(s, 201, "{b}");
    }
    // again: 200 (update)
    assert_eq!(
        http(
            h,
            "PUT",
            "/api/stations/PY16",
            Some(&json!({"password": PASSWORD}).to_string()),
            Some(KEY)
        )
        .0,
        200
    );

    for (v, version) in [("16", "1.6"), ("201", "2.0.1"), ("21", "2.1")] {
        let id = format!("PY{v}");
        let (ok, out, api) = python_session(&csms, &id, version, PASSWORD);
        assert!(ok, "{name} {version}: {out}");
        let (status, answer) = api.expect("API call made");
        assert_eq!(status, 200, "{answer}");
        if version == "1.6" {
            assert_eq!(answer["configurationKey"][0]["value"], "300");
        } else {
            assert_eq!(answer["getVariableResult"][0]["attributeValue"], "300");
        }
        // the stored session
        let (s, sessions) = http(
            h,
            "GET",
            &format!("/api/sessions?station={id}"),
            None,
            Some(KEY),
        );
        assert_eq!(s, 200);
        let sessions = sessions["items"].as_array().unwrap();
        assert_eq!(sessions.len(), 1, "{name} {id}: {sessions:?}");
        let session = &sessions[0];
        assert_eq!(session["status"], "Completed");
        assert_eq!(session["id_token"], "TAG1");
        assert_eq!(session["stop_reason"], "Local");
        let energy: f64 = session["energy_wh"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            energy,
            if version == "1.6" { 2000.0 } else { 1500.0 },
            "{session}"
        );
        let (_, detail) = http(
            h,
            "GET",
            &format!("/api/sessions/{}", session["id"].as_str().unwrap()),
            None,
            Some(KEY),
        );
        // priced once, with a CDR: 1.6 charged 2 kWh, 2.x 1.5 kWh
        let (s, cdr) = http(
            h,
            "GET",
            &format!("/api/sessions/{}/cdr", session["id"].as_str().unwrap()),
            None,
            Some(KEY),
        );
        assert_eq!(s, 200, "{cdr}");
        let (excl, incl) = if version == "1.6" {
            ("1.6", "1.72")
        } else {
            ("1.45", "1.54")
        };
        // the stored OCPI 2.2.1 CDR: amounts are JSON numbers
        let number = |s: &str| s.parse::<f64>().unwrap();
        assert_eq!(
            cdr["total_cost"],
            json!({"excl_vat": number(excl), "incl_vat": number(incl)}),
            "{cdr}"
        );
        assert_eq!(cdr["total_fixed_cost"]["excl_vat"], 1);
        assert_eq!(cdr["currency"], "EUR");
        assert!(!cdr["charging_periods"].as_array().unwrap().is_empty());
        // held at start, captured at the price incl. VAT
        let (s, pay) = http(
            h,
            "GET",
            &format!("/api/sessions/{}/payment", session["id"].as_str().unwrap()),
            None,
            Some(KEY),
        );
        assert_eq!(
            (s, pay["status"].as_str()),
            (200, Some("Captured")),
            "{pay}"
        );
        // charged in minor units: the CDR's total rounded once to the cent
        let charged: rust_decimal::Decimal =
            pay["receipt"]["charged"].as_str().unwrap().parse().unwrap();
        let cdr_total: rust_decimal::Decimal = incl.parse().unwrap();
        assert_eq!(charged, cdr_total.round_dp(2), "{pay}");
        assert_eq!(charged.scale(), 2, "printed in cents: {pay}");
        assert!(
            !detail["meter_values"].as_array().unwrap().is_empty(),
            "{detail}"
        );
        // the station and its connector status
        let (_, st) = http(h, "GET", &format!("/api/stations/{id}"), None, Some(KEY));
        assert_eq!(st["boot_status"], "Accepted");
        assert_eq!(st["ocpp_version"], version);
        assert!(!st["connectors"].as_array().unwrap().is_empty(), "{st}");
    }
    let (_, w) = http(h, "GET", "/api/wallets/TAG1", None, Some(KEY));
    assert_eq!(w["balance"], "35.20", "40 - 1.72 - 1.54 - 1.54: {w}");
    // wrong password and unknown identities are refused at the handshake
    let (ok, out, _) = python_session(&csms, "PY201", "2.0.1", "not-the-password-at-all");
    assert!(!ok && out.contains("401"), "{out}");
    let (ok, out, _) = python_session(&csms, "FORGED", "2.0.1", PASSWORD);
    assert!(!ok && out.contains("401"), "{out}");
    // metrics, behind the key
    assert_eq!(http(h, "GET", "/metrics", None, None).0, 401);
    let (s, m) = http(h, "GET", "/metrics", None, Some(KEY));
    assert_eq!(s, 200);
    assert!(
        m.as_str().unwrap().contains("csms_sessions_completed 3"),
        "{m}"
    );
    // the operator console: its page and the module that follows the live events
    let (s, _) = http(h, "GET", "/", None, None);
    assert_eq!(s, 200);
    let (s, live) = http(h, "GET", "/console/js/live.js", None, None);
    assert_eq!(s, 200);
    assert!(live.as_str().unwrap().contains("EventSource"));
    drop(csms);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn python_stations_end_to_end_sqlite() {
    full_story("sqlite", None);
}

/// A fresh PostgreSQL database for one test, dropped at the end.
struct PgDb {
    name: String,
    admin: String,
}

impl PgDb {
    fn create(tag: &str) -> PgDb {
        let admin = std::env::var("CSMS_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("csms_e2e_{tag}_{}", std::process::id());
        pg(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
        pg(&admin, &format!("CREATE DATABASE {name}"));
        PgDb { name, admin }
    }
    fn url(&self) -> String {
        match self.admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => unreachable!("admin URL has a path"),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        pg(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn pg(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} (set CSMS_TEST_POSTGRES): {e}"));
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

#[test]
fn python_stations_end_to_end_postgres() {
    let db = PgDb::create("story");
    full_story("postgres", Some(&db.url()));
}

fn fast_backoff() -> evproto_ocpp_client::Backoff {
    let mut b = evproto_ocpp_client::Backoff::default();
    b.wait_minimum = Duration::from_millis(200);
    b.random_range = Duration::from_millis(200);
    b.repeat_times = 2;
    b
}

fn crash_and_restart(name: &str, db: Option<&str>) {
    use evproto_ocpp_client::{Client, ClientConfig, FileStore};
    use evproto_ocpp_proto::ProtocolVersion;
    use evproto_ocpp_types::v201;

    let dir = temp_dir(name);
    let csms = start(&dir, db, None);
    let ports = (csms.ocpp, csms.http);
    assert_eq!(
        http(
            ports.1,
            "PUT",
            "/api/stations/CR1",
            Some(&json!({"password": PASSWORD}).to_string()),
            Some(KEY)
        )
        .0,
        201
    );
    assert_eq!(
        http(
            ports.1,
            "POST",
            "/api/tokens",
            Some(r#"{"id_token": "TAG9"}"#),
            Some(KEY)
        )
        .0,
        201
    );
    assert_eq!(
        http(
            ports.1,
            "PUT",
            "/api/tariffs/default",
            Some(TARIFF),
            Some(KEY)
        )
        .0,
        201
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v = ProtocolVersion::V201;
    let queue = FileStore::open(dir.join("station-queue")).unwrap();
    let config = ClientConfig::new(format!("ws://127.0.0.1:{}/ocpp/", ports.0), "CR1", v)
        .with_password(PASSWORD.as_bytes())
        .with_backoff(fast_backoff());
    let routes = evproto_ocpp_rpc::Router::station_v201().with_state(());
    let boot = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
    let event = |seq: i64, kind: &str, wh: f64, extra: Value| -> v201::TransactionEventRequest {
        let mut e = json!({"eventType": kind, "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "triggerReason": "MeterValuePeriodic", "seqNo": seq, "transactionInfo": {"transactionId": "T-CRASH"},
            "meterValue": [{"timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}]});
        if let (Value::Object(e), Value::Object(x)) = (&mut e, extra) {
            e.extend(x);
        }
        evproto_ocpp_types::from_str(&e.to_string()).unwrap()
    };
    let wait_drained = |client: &Client| {
        let t = Instant::now();
        while client.queued() > 0 {
            assert!(t.elapsed() < Duration::from_secs(30), "queue not drained");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let client = rt.block_on(async {
        let c = Client::start(config, routes, boot, queue);
        c.wait_ready(Duration::from_secs(20)).await.unwrap();
        c
    });
    rt.block_on(client.call_durable::<v201::action::TransactionEvent>(&event(0, "Started", 10_000.0,
        json!({"triggerReason": "Authorized", "idToken": {"idToken": "TAG9", "type": "ISO14443"}, "evse": {"id": 1, "connectorId": 1}}))))
        .unwrap();
    wait_drained(&client);
    // kill -9 mid-transaction
    drop(csms);
    rt.block_on(
        client.call_durable::<v201::action::TransactionEvent>(&event(
            1,
            "Updated",
            12_500.0,
            json!({}),
        )),
    )
    .unwrap();
    rt.block_on(client.call_durable::<v201::action::TransactionEvent>(&event(2, "Ended", 15_000.0,
        json!({"triggerReason": "StopAuthorized", "transactionInfo": {"transactionId": "T-CRASH", "stoppedReason": "Local"}}))))
        .unwrap();
    assert_eq!(client.queued(), 2, "queued while the CSMS is down");
    // restart on the same store and ports; the station replays
    let csms = start(&dir, db, Some(ports));
    wait_drained(&client);
    // a duplicate of the last event (a station retrying after a lost answer) changes nothing
    let answer = rt.block_on(client.call::<v201::action::TransactionEvent>(&event(2, "Ended", 15_000.0,
        json!({"triggerReason": "StopAuthorized", "transactionInfo": {"transactionId": "T-CRASH", "stoppedReason": "Local"}}))))
        .unwrap();
    // the final cost comes back in the answer (OCPP 2.0.1 I05): 5 kWh × 0.30 × 1.2 + 1.00
    assert_eq!(
        answer.total_cost.map(|c| c.to_string()),
        Some("2.8".to_owned())
    );
    let (_, sessions) = http(
        csms.http,
        "GET",
        "/api/sessions?station=CR1",
        None,
        Some(KEY),
    );
    let sessions = sessions["items"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["status"], "Completed");
    assert_eq!(sessions[0]["energy_wh"], "5000", "{:?}", sessions[0]);
    assert_eq!(sessions[0]["id_token"], "TAG9");
    let (_, m) = http(csms.http, "GET", "/metrics", None, Some(KEY));
    assert!(
        m.as_str().unwrap().contains("csms_sessions_completed 1"),
        "{m}"
    );
    rt.block_on(client.shutdown());
    drop(csms);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crash_and_restart_completes_the_session_once_sqlite() {
    crash_and_restart("crash-sqlite", None);
}

#[test]
fn crash_and_restart_completes_the_session_once_postgres() {
    let db = PgDb::create("crash");
    crash_and_restart("crash-postgres", Some(&db.url()));
}

/// `csms demo --json`: every step succeeds (roaming, grid, paying, Plug &
/// Charge among them), the summary says so, exit 0.
#[test]
fn demo_runs_the_whole_story() {
    let out = Command::new(env!("CARGO_BIN_EXE_csms"))
        .args(["demo", "--json"])
        .env_remove("DATABASE_URL")
        .env_remove("CSMS_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(out.status.success(), "{summary:#}");
    assert_eq!(summary["ok"], true);
    let steps = summary["steps"].as_array().unwrap();
    assert!(steps.len() >= 17, "{summary:#}");
    // the roaming part ran: partner, token, location, remote start, session and CDR
    assert!(
        steps.iter().any(|s| s["step"]
            .as_str()
            .unwrap_or_default()
            .starts_with("roaming session pushed")),
        "{summary:#}"
    );
    // the grid part ran: a V2X session discharged under a grid event, credited
    let grid = steps
        .iter()
        .find(|s| {
            s["step"]
                .as_str()
                .unwrap_or_default()
                .starts_with("grid: a V2X session")
        })
        .unwrap_or_else(|| panic!("{summary:#}"));
    let d = &grid["detail"];
    let w = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k}: {grid:#}"));
    assert!(
        w("setpoint_w") < 0.0 && w("setpoint_w") >= w("discharge_limit_w"),
        "{grid:#}"
    );
    assert!(
        w("export_power_w") > 0.0 && w("exported_wh") > 0.0,
        "{grid:#}"
    );
    assert!(
        d["credit"]["minor"].as_i64().is_some_and(|c| c > 0),
        "{grid:#}"
    );
    assert_eq!(d["credit"]["currency"], "EUR");
    assert!(steps.iter().all(|s| s["ok"] == true), "{summary:#}");
    assert_eq!(summary["simulator"]["error_count"], 0);
    // the paying step: the app's driver, a card (skipped with the reason
    // only where localstripe is not installed), the fleet's invoice
    let step = |prefix: &str| {
        steps
            .iter()
            .find(|s| s["step"].as_str().unwrap_or_default().starts_with(prefix))
            .unwrap_or_else(|| panic!("no step {prefix}: {summary:#}"))
    };
    let driver = &step("paying: driver signed up")["detail"];
    assert!(
        driver["driver"].as_str().unwrap().starts_with("drv_"),
        "{driver}"
    );
    assert!(step("paying: charge started and stopped")["detail"]["session"].is_string());
    let charged = step("paying: charged by card");
    let localstripe = test_support::peers::cache_dir().join("venv-localstripe/bin/localstripe");
    if charged["skipped"] == true {
        assert!(!localstripe.exists(), "localstripe is installed: {charged}");
        assert!(charged["reason"].as_str().is_some_and(|r| !r.is_empty()));
    } else {
        let d = &charged["detail"];
        let captured = d["captured_minor"].as_i64().unwrap();
        assert!(captured > 0, "{d}");
        assert_eq!(Some(captured), d["price_minor"].as_i64(), "{d}");
        assert_eq!(d["receipt"]["payment"]["provider"], "card", "{d}");
        assert_eq!(d["receipt"]["payment"]["status"], "Captured", "{d}");
        // the gateway's own word, from its webhook event
        assert_eq!(d["gateway_status"], "succeeded", "{d}");
    }
    let invoice = &step("paying: a fleet's month invoiced")["detail"];
    assert!(
        invoice["number"].as_str().unwrap().starts_with("INV-"),
        "{invoice}"
    );
    let total = invoice["total_minor"].as_i64().unwrap();
    assert!(total > 0, "{invoice}");
    assert_eq!(
        invoice["total_net_minor"].as_i64().unwrap() + invoice["total_tax_minor"].as_i64().unwrap(),
        total,
        "{invoice}"
    );
    assert!(!invoice["tax_totals"].as_array().unwrap().is_empty());
    // Plug & Charge: a contract installed through the CSMS, the car charging by it
    let pnc = &step("Plug & Charge: a contract installed")["detail"];
    let emaid = pnc["emaid"].as_str().unwrap_or_default();
    assert!(emaid.starts_with("NLEVP"), "{pnc}");
    assert_eq!(pnc["installed"], pnc["emaid"], "{pnc}");
    assert!(pnc["energy_wh"].as_f64().unwrap() > 0.0, "{pnc}");
    // the car plugs in again: priced, its CDR at the contract's eMSP
    // naming the token as the eMSP pushed it
    let billed = &step("Plug & Charge: plugged in again")["detail"];
    assert_eq!(billed["emaid"], emaid, "{billed}");
    assert_eq!(billed["cdr"]["cdr_token"]["uid"], emaid, "{billed}");
    assert_eq!(billed["cdr"]["cdr_token"]["type"], "EMAID", "{billed}");
    assert!(
        billed["cdr"]["total_cost"]["before_taxes"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "{billed}"
    );
    // it charged under the ISO 15118 schedule the CSMS computed from the
    // site's limit: the car chose it and drew no more
    assert_eq!(billed["tx_profile"], true, "{billed}");
    // then renegotiated when the operator lowered the limit
    let limit = billed["site_limit_w"].as_f64().unwrap();
    let lowered = billed["lowered_limit_w"].as_f64().unwrap();
    let offered: Vec<f64> = serde_json::from_value(billed["offered_pmax_w"].clone()).unwrap();
    assert_eq!(offered.len(), 2, "{billed}");
    assert!(offered[0] > lowered && offered[0] <= limit, "{billed}");
    assert!(offered[1] > 0.0 && offered[1] <= lowered, "{billed}");
    assert_eq!(billed["renegotiations"], 1, "{billed}");
    let pmax = billed["schedule_pmax_w"].as_f64().unwrap();
    let drawn = billed["drawn_w"].as_f64().unwrap();
    assert!(pmax > 0.0 && pmax <= lowered, "{billed}");
    assert!(drawn > 0.0 && drawn <= lowered + 1.0, "{billed}");
}
