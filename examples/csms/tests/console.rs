//! The operator console in headless Chromium (Debian's `chromium`,
//! installed by `.ci/run`), driven by `tests/console/console.mjs` through
//! playwright-core as a person would use it: a wrong key refused, log in,
//! a token, the default tariff and a station (with a password) created
//! through the forms, the simulated station booting and charging under
//! that password, a session force-closed with a reason, its CDR and
//! payment, a Reset sent from the form generated from the action's schema
//! and its answer. The paying side: a driver who signed up in the app and
//! manages a fleet found by search, the fleet (its member and card, a
//! session with the card last month on a 1.6 station this test runs) and
//! last month's invoice issued from its page (a second ask refused), the
//! invoice's lines and totals per VAT rate, its CSV and PDF downloaded, a
//! credit note for its session, both in the invoices list. A screenshot of each page goes to
//! `$CARGO_TARGET_TMPDIR/console-screens/` (printed).
//!
//! Also: the console's files are served with their types and security
//! headers, and the page loads no inline script.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};

const KEY: &str = "console-test-key-0123456789";
/// The fleet the console invoices, its driver (signed up in the app) and card.
const FLEET: &str = "Lab fleet";
const FLEET_DRIVER: &str = "pool-driver@lab-fleet.example";
const FLEET_CARD: &str = "FLEETCARD01";
const FLEET_PASSWORD: &str = "fleet-station-password";
/// The driver who pays by card, their RFID card, the gateway's test key.
const CARD_DRIVER: &str = "card-driver@lab.example";
const CARD_TOKEN: &str = "CARDDRIVER01";
const GATEWAY_SECRET: &str = "sk_test_evproto_console";
const WEBHOOK_SECRET: &str = "whsec_evproto_console";

fn chromium() -> &'static str {
    for c in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(c).exists() {
            return c;
        }
    }
    panic!(
        "headless Chromium is needed for the console test: apt-get install chromium (.ci/run does)"
    );
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// playwright-core as pinned in tests/console/package.json, installed with
/// npm on first use under the evproto cache (a file lock keeps parallel
/// test binaries from installing it twice at once).
fn node_modules() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cache = test_support::peers::cache_dir();
        let dir = cache.join("node-playwright");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(cache.join("node-playwright.lock")).unwrap();
        lock.lock().unwrap();
        let package = std::fs::read_to_string(here().join("package.json")).unwrap();
        let marker = dir.join(".evproto-package.json");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(package.as_str()) {
            std::fs::write(dir.join("package.json"), &package).unwrap();
            let ok = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&dir)
                .status()
                .expect("npm (Node.js) is needed for the console test")
                .success();
            assert!(ok, "npm install playwright-core failed");
            std::fs::write(&marker, &package).unwrap();
        }
        dir.join("node_modules")
    })
}

/// `csms` on ports chosen by the system: OCPP under security profile 1
/// (stations prove a password), unknown stations refused, so the station
/// gets in only once the console has registered it.
struct Csms {
    child: Child,
    ocpp: u16,
    http: u16,
    admin: u16,
    dir: PathBuf,
}

impl Csms {
    fn start(name: &str) -> Csms {
        Csms::start_with(name, &[])
    }

    /// As [`Csms::start`], with more environment (the card gateway).
    fn start_with(name: &str, env: &[(&str, &str)]) -> Csms {
        let dir = std::env::temp_dir().join(format!("csms-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_csms"))
            .current_dir(&dir)
            .args([
                "--bind",
                "127.0.0.1",
                "--ocpp-port",
                "0",
                "--http-port",
                "0",
            ])
            .args(["--admin-port", "0", "--security-profile", "1"])
            .args(["--unknown-stations", "reject"])
            .env("CSMS_API_KEY", KEY)
            .envs(env.iter().copied())
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (ocpp, http, admin) = loop {
            let line = lines.next().expect("csms exited before listening").unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["event"] == "listening" {
                let port = |name: &str| v[name].as_u64().unwrap() as u16;
                break (port("ocpp_port"), port("http_port"), port("admin_port"));
            }
        };
        // keep reading its stdout so it never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        Csms {
            child,
            ocpp,
            http,
            admin,
            dir,
        }
    }
}

impl Drop for Csms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A GET on the admin port: (status, head in lower case, body).
fn http_get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

/// The simulated station: one OCPP 2.0.1 station, one connector, a driver
/// presenting LABTOKEN at once and charging until stopped.
fn simulator(
    rt: &tokio::runtime::Runtime,
    ocpp: u16,
    prefix: &str,
    password: &str,
) -> tokio::task::JoinHandle<Result<evproto_sim::Report, String>> {
    rt.spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{ocpp}/ocpp/"),
            stations: 1,
            versions: vec![ProtocolVersion::V201],
            connectors: (1, 1),
            duration: Duration::from_secs(600),
            prefix: prefix.into(),
            password: Some(password.into()),
            behaviour: Behaviour {
                idle_ms: (0, 500),
                session_ms: (600_000, 600_000),
                meter_interval_ms: 1_000,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                tokens: vec!["LABTOKEN".into()],
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ))
}

/// The password of the streaming station.
const STREAM_PASSWORD: &str = "stream-station-password-0123";

/// The fleet the console invoices: a driver who signed up in the app
/// (public port) and joined it, its card, and one session with that card
/// on a 1.6 station that ended in the middle of last month (the station's
/// own timestamps), priced under the default tariff the console made.
/// Answers the session's id.
async fn fleet_with_a_session_last_month(csms: Ports, gateway: u16) -> String {
    use evproto_ocpp_client::{Client, ClientConfig, MemoryStore};
    use evproto_ocpp_rpc::Router;
    use serde_json::{json, Value};

    let op = |m: &str, p: String, b: Option<Value>| call_api(KEY, csms.admin, m, &p, b);
    let (s, b) = call_api(
        "",
        csms.http,
        "POST",
        "/app/v1/signup",
        Some(json!({"email": FLEET_DRIVER, "password": "correct horse battery"})),
    );
    assert_eq!(s, 201, "{b}");
    let driver = b["id"].as_str().unwrap().to_owned();
    let (s, fleet) = op(
        "POST",
        "/api/fleets".into(),
        Some(json!({"name": FLEET, "email": "billing@lab-fleet.example"})),
    );
    assert_eq!(s, 201, "{fleet}");
    let fleet = fleet["id"].as_str().unwrap().to_owned();
    let (s, b) = op(
        "PUT",
        format!("/api/fleets/{fleet}/members/{driver}"),
        Some(json!({"role": "manager"})),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = op(
        "PUT",
        format!("/api/fleets/{fleet}/cards/{FLEET_CARD}"),
        Some(json!({"label": "pool car card"})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = op(
        "PUT",
        "/api/stations/FLEET16".into(),
        Some(json!({"password": FLEET_PASSWORD})),
    );
    assert_eq!(s, 201, "{b}");
    let station = Client::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{}/ocpp/", csms.ocpp),
            "FLEET16",
            ProtocolVersion::V16,
        )
        .with_password(FLEET_PASSWORD),
        Router::station_v16().into_routes(),
        r#"{"chargePointVendor":"Lab","chargePointModel":"Fleet"}"#,
        MemoryStore::default(),
    );
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    let call = |action: &'static str, payload: Value| {
        let peer = station.peer().unwrap();
        async move {
            serde_json::from_str::<Value>(
                &peer.call_raw(action, payload.to_string()).await.unwrap(),
            )
            .unwrap()
        }
    };
    // the 15th of last month, 10:00 to 11:00 UTC: in last month in any time zone
    use chrono::Datelike;
    let first = chrono::Utc::now().date_naive().with_day(1).unwrap();
    let day = (first - chrono::Duration::days(20)).with_day(15).unwrap();
    let at = |h: u32| {
        day.and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    call(
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    )
    .await;
    let start = call(
        "StartTransaction",
        json!({"connectorId": 1, "idTag": FLEET_CARD, "meterStart": 0, "timestamp": at(10)}),
    )
    .await;
    assert_eq!(start["idTagInfo"]["status"], "Accepted", "{start}");
    let tx = start["transactionId"].as_i64().unwrap();
    call(
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 10000, "timestamp": at(11), "reason": "Local"}),
    )
    .await;
    let session = format!("FLEET16:{tx}");

    // a driver who pays by card (saved at localstripe) charges with their
    // RFID card on the same station now: held, then captured at the stop
    // the gateway tells the CSMS what happened to its payments
    gateway_form(
        gateway,
        "/_config/webhooks/csms",
        &format!(
            "url=http://127.0.0.1:{}/webhooks/stripe&secret={WEBHOOK_SECRET}",
            csms.http
        ),
    );
    let creds = json!({"email": CARD_DRIVER, "password": "correct horse battery"});
    assert_eq!(
        call_api("", csms.http, "POST", "/app/v1/signup", Some(creds.clone())).0,
        201
    );
    let (_, login) = call_api("", csms.http, "POST", "/app/v1/signin", Some(creds));
    let bearer = login["access_token"].as_str().unwrap().to_owned();
    let pm = gateway_form(
        gateway,
        "/v1/payment_methods",
        "type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2031&card[cvc]=123",
    );
    let (s, me) = call_api(
        &bearer,
        csms.http,
        "POST",
        "/app/v1/me/card",
        Some(json!({"payment_method": pm["id"]})),
    );
    assert_eq!((s, me["payment"].as_str()), (200, Some("card")), "{me}");
    let (s, b) = call_api(
        &bearer,
        csms.http,
        "POST",
        "/app/v1/tokens",
        Some(json!({"kind": "rfid", "id_token": CARD_TOKEN})),
    );
    assert_eq!(s, 201, "{b}");
    let now = |min: i64| {
        (chrono::Utc::now() - chrono::Duration::minutes(min))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let start = call(
        "StartTransaction",
        json!({"connectorId": 1, "idTag": CARD_TOKEN, "meterStart": 0, "timestamp": now(10)}),
    )
    .await;
    assert_eq!(
        start["idTagInfo"]["status"], "Accepted",
        "the card hold: {start}"
    );
    let card_tx = start["transactionId"].as_i64().unwrap();
    call("StopTransaction", json!({"transactionId": card_tx, "meterStop": 2000, "timestamp": now(0), "reason": "Local"})).await;
    let card_session = format!("FLEET16:{card_tx}");
    let mut captured = Value::Null;
    for _ in 0..200 {
        captured = op(
            "GET",
            format!("/api/sessions/{card_session}/card-payment"),
            None,
        )
        .1;
        if captured["status"] == "Captured" && captured["gateway_status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(captured["status"], "Captured", "{captured}");
    assert_eq!(captured["gateway_status"], "succeeded", "{captured}");
    assert!(
        captured["captured_minor"].as_i64().unwrap() > 50,
        "{captured}"
    );
    // priced: its CDR is made with the stop
    for _ in 0..100 {
        if op("GET", format!("/api/sessions/{session}/cdr"), None).0 == 200 {
            return session;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the fleet's session {session} got no CDR");
}

/// The ports the fixture needs (the CSMS itself stays with the test).
#[derive(Clone, Copy)]
struct Ports {
    ocpp: u16,
    http: u16,
    admin: u16,
}

/// localstripe (from the evproto cache's venv, as `tests/stripe.rs` runs
/// it) on a free port, killed when dropped.
struct LocalStripe {
    child: Child,
    port: u16,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalStripe {
    fn start() -> LocalStripe {
        let py = test_support::peers::venv("venv-localstripe", &["localstripe==1.15.10"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(py.parent().unwrap().join("localstripe"))
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("localstripe starts");
        // killed and waited for when dropped, on the panic below too
        let ls = LocalStripe { child, port };
        // a loaded machine can take many seconds to start the Python server
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return ls;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("localstripe did not listen on {port}");
    }
}

/// A form POST to the gateway, as an app's Stripe.js makes it: the JSON answer.
fn gateway_form(port: u16, path: &str, form: &str) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {GATEWAY_SECRET}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let (_, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    // the configuration routes answer with an empty body
    if body.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// An operator request (or, with an empty key, an app request) over plain
/// HTTP/1.1, one per connection: (status, JSON body or null).
fn call_api(
    key: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = if key.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {key}\r\n")
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(rest).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn console_files_have_their_types_and_security_headers() {
    let csms = Csms::start("console-headers");
    let (s, head, body) = http_get(csms.admin, "/?key=secret-in-the-address");
    assert_eq!(s, 200, "{head}");
    for h in [
        "content-type: text/html; charset=utf-8",
        "cache-control: no-store",
        "content-security-policy: default-src 'self'; script-src 'self'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(h), "no {h} in {head}");
    }
    let page = String::from_utf8(body).unwrap();
    assert!(
        !page.contains("secret-in-the-address"),
        "the page echoes its address"
    );
    assert!(page.contains(r#"<script type="module" src="/console/js/main.js">"#));
    for (path, ty) in [
        ("/console/js/main.js", "text/javascript"),
        ("/console/js/pages/station.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/console/vendor/uPlot.min.css", "text/css"),
    ] {
        let (s, head, body) = http_get(csms.admin, path);
        assert_eq!(s, 200, "{path}: {head}");
        assert!(
            head.contains(&format!("content-type: {ty}")),
            "{path}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{path}");
        assert!(!body.is_empty(), "{path} is empty");
    }
    let (s, head, body) = http_get(csms.admin, "/console/../src/lib.rs");
    assert_eq!(s, 404, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("\"error\""));
    let (s, _, _) = http_get(csms.admin, "/console/js/nothing.js");
    assert_eq!(s, 404);
}

/// The live updates' budget, with Node's mocked clock
/// (tests/console/live.test.mjs): a burst of 10,000 events is one refresh
/// a second, a refresh is never postponed by later events nor run while a
/// form is edited, and no event goes uncounted.
#[test]
fn live_updates_refresh_once_a_second_under_a_burst_of_events() {
    let out = Command::new("node")
        .arg("--test")
        .arg(here().join("live.test.mjs"))
        .output()
        .expect("node (Node.js 20) is needed for the console test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("# pass 4"), "{text}");
}

#[test]
fn an_operator_runs_the_network_from_the_console() {
    let browser = chromium();
    let modules = node_modules();
    let gateway = LocalStripe::start();
    let gateway_url = format!("http://127.0.0.1:{}", gateway.port);
    let csms = Csms::start_with(
        "console",
        &[
            ("CSMS_STRIPE_SECRET_KEY", GATEWAY_SECRET),
            ("CSMS_STRIPE_API_BASE", &gateway_url),
            ("CSMS_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    );
    let ports = Ports {
        ocpp: csms.ocpp,
        http: csms.http,
        admin: csms.admin,
    };
    let screens = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screens");
    let _ = std::fs::remove_dir_all(&screens);
    println!("console screenshots: {}", screens.display());
    let mut node = Command::new("node")
        .arg(here().join("console.mjs"))
        .env("NODE_PATH", modules)
        .env("CHROMIUM", browser)
        .env("CONSOLE_URL", format!("http://127.0.0.1:{}", csms.admin))
        .env("CONSOLE_KEY", KEY)
        .env("CONSOLE_SCREENS", &screens)
        .env("CONSOLE_STATION", "LAB0")
        .env("CONSOLE_FLEET", FLEET)
        .env("CONSOLE_FLEET_DRIVER", FLEET_DRIVER)
        .env("CONSOLE_CARD_TOKEN", CARD_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js 20) is needed for the console test");
    let stderr = node.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sim = None;
    let mut stream_sim = None;
    let mut fleet_session = None;
    let mut output = String::new();
    // a hang guard: the script's own waits are shorter
    let stdout = node.stdout.take().unwrap();
    let node = std::sync::Arc::new(std::sync::Mutex::new(node));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guard = std::thread::spawn({
        let (node, done) = (node.clone(), done.clone());
        move || {
            for _ in 0..600 {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            let _ = node.lock().unwrap().kill();
        }
    });
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        println!("console.mjs: {line}");
        output.push_str(&line);
        output.push('\n');
        // the station was registered through the form: it connects with
        // the password the form generated (prefix LAB: identity LAB0)
        if let Some(rest) = line.strip_prefix("NEED station ") {
            let (id, password) = rest.split_once(' ').expect("identity and password");
            assert_eq!(id, "LAB0");
            sim = Some(simulator(&rt, csms.ocpp, "LAB", password));
        }
        // the default tariff is made: a fleet with a priced session last
        // month, for the console to invoice
        if line == "NEED fleet" {
            fleet_session = Some(rt.spawn(fleet_with_a_session_last_month(ports, gateway.port)));
        }
        // a 2.1 station streaming its power (NotifyPeriodicEventStream), registered first
        if line == "NEED stream" {
            let body = serde_json::json!({"password": STREAM_PASSWORD});
            let (s, b) = call_api(KEY, csms.admin, "PUT", "/api/stations/STRM0", Some(body));
            assert_eq!(s, 201, "{b}");
            let station = common::streaming_station(csms.ocpp, "STRM", Some(STREAM_PASSWORD));
            stream_sim = Some(rt.spawn(evproto_sim::run(station, None)));
        }
    }
    let status = node.lock().unwrap().wait().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = guard.join();
    let stderr = errors.join().unwrap_or_default();
    for sim in [sim, stream_sim].into_iter().flatten() {
        sim.abort();
    }
    assert!(
        status.success(),
        "the console scenario failed ({status}); screenshots in {}\n{output}\n{stderr}",
        screens.display()
    );
    assert!(output.contains("OK every step passed"), "{output}");
    let session = rt
        .block_on(fleet_session.expect("the console asked for the fleet"))
        .expect("the fleet's session was made");
    assert!(
        output.contains(&format!("INVOICED {session}")),
        "the console's invoice has no line of {session}:\n{output}"
    );
    let shots = std::fs::read_dir(&screens).unwrap().count();
    assert!(shots >= 16, "{shots} screenshots in {}", screens.display());
}
