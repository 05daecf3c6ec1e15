//! The dashboard in headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`): the page loads, reads the API with the key, and shows a
//! connected station and its live session.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};

const KEY: &str = "dashboard-key-0123456789";

fn chromium() -> &'static str {
    for c in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if std::path::Path::new(c).exists() {
            return c;
        }
    }
    panic!("headless Chromium is needed for the dashboard test: apt-get install chromium (.ci/run does)");
}

fn http_post(port: u16, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Reads `/api/events` for a few seconds.
fn read_events(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(s, "GET /api/events?key={KEY} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while t.elapsed() < Duration::from_secs(5) && !String::from_utf8_lossy(&got).contains("data:") {
        if let Ok(n) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn dashboard_shows_a_connected_station_and_a_live_session() {
    let browser = chromium();
    let dir = std::env::temp_dir().join(format!("csms-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csms = Command::new(env!("CARGO_BIN_EXE_csms"))
        .current_dir(&dir)
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
            "--unknown-stations",
            "accept",
        ])
        .env("CSMS_API_KEY", KEY)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(csms.stdout.take().unwrap()).lines();
    let (ocpp, http) = loop {
        let line = lines.next().expect("csms exited").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "listening" {
            break (
                v["ocpp_port"].as_u64().unwrap() as u16,
                v["admin_port"].as_u64().unwrap() as u16,
            );
        }
    };
    assert_eq!(
        http_post(http, "/api/tokens", r#"{"id_token": "DASHTOKEN"}"#),
        201
    );
    // one simulated station that starts charging at once and keeps charging
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{ocpp}/ocpp/"),
            stations: 1,
            versions: vec![ProtocolVersion::V201],
            connectors: (1, 1),
            duration: Duration::from_secs(40),
            prefix: "DASH".into(),
            behaviour: Behaviour {
                idle_ms: (0, 500),
                session_ms: (120_000, 120_000),
                meter_interval_ms: 1_000,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                tokens: vec!["DASHTOKEN".into()],
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));
    let t = Instant::now();
    let mut dom = String::new();
    while t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(3));
        let out = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
            ])
            .args([
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=6000",
                "--dump-dom",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.join("chromium-profile").display()
            ))
            .arg(format!("http://127.0.0.1:{http}/?key={KEY}&sse=0"))
            .stderr(Stdio::null())
            .output()
            .unwrap();
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains(r#"data-station="DASH0""#) && dom.contains(r#"data-status="Active""#) {
            break;
        }
    }
    // the live stream the page follows without ?sse=0 carries the station's events
    let events = read_events(http);
    let _ = csms.kill();
    let _ = csms.wait();
    sim.abort();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        dom.contains("evproto reference CSMS"),
        "page did not load: {dom}"
    );
    assert!(
        dom.contains(r#"data-station="DASH0""#),
        "no station row: {dom}"
    );
    assert!(
        dom.contains(">online<"),
        "station not shown connected: {dom}"
    );
    assert!(
        dom.contains(r#"data-status="Active""#),
        "no live session: {dom}"
    );
    assert!(
        dom.contains("DASHTOKEN"),
        "session without its token: {dom}"
    );
    assert!(events.contains(r#""station":"DASH0""#), "{events}");
    for section in [
        "Alerts",
        "Energy and revenue per day",
        "Firmware campaigns",
        "Uptime and roaming",
    ] {
        assert!(dom.contains(section), "no {section} section: {dom}");
    }
    assert!(
        dom.contains("OCPI: http://"),
        "roaming line not filled: {dom}"
    );
}
