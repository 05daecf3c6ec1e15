//! `evproto load` smoke test: 500 stations for 10 s against an in-process
//! `ocpp-server`, zero errors expected (correctness, not speed); the
//! `transactions` mix against the bare echo server of the benchmarks and
//! against a server that refuses the token.

use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use evproto_ocpp_proto::CallError;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_server::{Security, Server};
use evproto_ocpp_types::v16;
use evproto_ocpp_types::v201::{self, action};

/// The benchmarks' bare echo server, run in-process.
#[allow(dead_code)] // its `main`
#[path = "../examples/echo_server.rs"]
mod echo_server;

fn ok<T: evproto_ocpp_types::Message>(json: &str) -> Result<T, CallError> {
    Ok(evproto_ocpp_types::from_str(json).unwrap())
}

#[test]
fn load_smoke_500_stations_no_errors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = rt.block_on(async {
        let routes = Router::csms_v201()
            .on::<action::BootNotification>(|_: Ctx<()>, _: v201::BootNotificationRequest| async {
                ok(r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#)
            })
            .on::<action::Heartbeat>(|_: Ctx<()>, _: v201::HeartbeatRequest| async {
                ok(r#"{"currentTime":"2024-01-01T00:00:00Z"}"#)
            })
            .on::<action::StatusNotification>(
                |_: Ctx<()>, _: v201::StatusNotificationRequest| async { ok("{}") },
            )
            .on::<action::MeterValues>(|_: Ctx<()>, _: v201::MeterValuesRequest| async { ok("{}") })
            .into_routes();
        let server = Server::builder(Security::unsecured()).v201(routes).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
        port
    });
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args([
            "load",
            "--url",
            &format!("ws://127.0.0.1:{port}/ocpp/"),
            "--stations",
            "500",
            "--duration",
            "10",
            "--ramp",
            "500",
            "--rate",
            "1",
        ])
        .args(["--pid", &std::process::id().to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["connections_ok"], 500, "{report}");
    assert_eq!(report["connections_failed"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["sent"], report["responses"], "{report}");
    assert!(
        report["responses"].as_u64().unwrap() >= 500 * 5,
        "every station kept sending: {report}"
    );
    for key in ["throughput_msg_s", "duration_s", "server_rss_kib"] {
        assert!(report[key].is_number(), "{key} missing: {report}");
    }
    for p in ["p50", "p95", "p99", "max"] {
        assert!(report["latency_ms"][p].is_number(), "{report}");
        assert!(report["after_ramp_latency_ms"][p].is_number(), "{report}");
    }
    // the messages after the ramp are some of all the answers, boots apart
    let after = report["after_ramp_latency_ms"]["count"].as_u64().unwrap();
    assert!(after > 0, "{report}");
    assert!(
        after <= report["responses"].as_u64().unwrap() - 500,
        "{report}"
    );
    // a remote target is refused without --allow-remote
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args([
            "load",
            "--url",
            "ws://192.0.2.1:9000/ocpp/",
            "--stations",
            "1",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

#[test]
fn help_documents_every_option_and_runs_are_bounded() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_evproto"))
            .arg("load")
            .args(args)
            .output()
            .unwrap()
    };
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for opt in [
        "--url",
        "--stations",
        "--duration",
        "--ramp",
        "--rate",
        "--saturate",
        "--ocpp",
        "--password",
        "--prefix",
        "--reconnect-storm",
        "--pid",
        "--source-addresses",
        "--allow-remote",
        "--call-timeout",
        "--mix",
        "--id-tag",
        "transactions",
    ] {
        assert!(help.contains(opt), "{opt} missing from --help");
    }
    // no unbounded runs, no remote targets by default
    for bad in [["--duration", "0"], ["--duration", "86401"]] {
        let o = run(&["--url", "ws://127.0.0.1:1/ocpp/", bad[0], bad[1]]);
        assert!(!o.status.success());
    }
    let o = run(&["--url", "ws://192.0.2.1:9000/ocpp/", "--duration", "1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not loopback"));
}

/// An in-process v2.0.1 CSMS at `/ocpp/{identity}` on a free loopback port.
fn start_csms(rt: &tokio::runtime::Runtime) -> u16 {
    rt.block_on(async {
        let routes = Router::csms_v201()
            .on::<action::BootNotification>(|_: Ctx<()>, _: v201::BootNotificationRequest| async {
                ok(r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#)
            })
            .on::<action::Heartbeat>(|_: Ctx<()>, _: v201::HeartbeatRequest| async {
                ok(r#"{"currentTime":"2024-01-01T00:00:00Z"}"#)
            })
            .on::<action::StatusNotification>(
                |_: Ctx<()>, _: v201::StatusNotificationRequest| async { ok("{}") },
            )
            .on::<action::MeterValues>(|_: Ctx<()>, _: v201::MeterValuesRequest| async { ok("{}") })
            .into_routes();
        let server = Server::builder(Security::unsecured()).v201(routes).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
        port
    })
}

/// Issue 14: `--url ws://host:port/ocpp` (no trailing slash) made every
/// station connect to `/ocppLOAD0` and get 404. The URL as users type it,
/// with the trailing slash, and as the CSMS prints it (`/ocpp/{identity}`,
/// `/ocpp/{id}`) all reach `/ocpp/{identity}`.
#[test]
fn issue14_load_accepts_the_url_as_users_type_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = start_csms(&rt);
    for path in ["/ocpp", "/ocpp/", "/ocpp/{identity}", "/ocpp/{id}"] {
        let url = format!("ws://127.0.0.1:{port}{path}");
        let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
            .args(["load", "--url", &url, "--stations", "3", "--duration", "1"])
            .args(["--ramp", "100", "--rate", "2"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{url}: {stdout}\n{stderr}");
        let report: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(report["connections_ok"], 3, "{url}: {report}\n{stderr}");
        assert_eq!(report["connections_failed"], 0, "{url}: {report}");
        assert_eq!(report["errors"], 0, "{url}: {report}");
    }
    // a placeholder that is not the last segment is refused up front
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args([
            "load",
            "--url",
            &format!("ws://127.0.0.1:{port}/ocpp/{{identity}}/x"),
        ])
        .args(["--stations", "1", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--url"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `evproto load` with `args` and returns its JSON report.
fn load_report(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .arg("load")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}\n{stderr}"))
}

/// The actions of one session in a version, and how many of each.
fn session_actions(ocpp: &str) -> &'static [(&'static str, u64)] {
    if ocpp == "1.6" {
        &[
            ("Authorize", 1),
            ("StartTransaction", 1),
            ("MeterValues", 5),
            ("StopTransaction", 1),
        ]
    } else {
        &[("Authorize", 1), ("TransactionEvent", 7)]
    }
}

#[test]
fn transactions_mix_against_the_echo_server_in_every_version() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(echo_server::serve(listener));
        port
    });
    let url = format!("ws://127.0.0.1:{port}/ocpp/");
    for ocpp in ["1.6", "2.0.1", "2.1"] {
        let prefix = format!("TX{ocpp}-");
        let report = load_report(&[
            "--url",
            &url,
            "--ocpp",
            ocpp,
            "--mix",
            "transactions",
            "--stations",
            "4",
            "--duration",
            "2",
            "--ramp",
            "100",
            "--saturate",
            "--prefix",
            &prefix,
        ]);
        assert_eq!(report["mix"], "transactions", "{report}");
        assert_eq!(report["id_tag"], "LOADTAG", "{report}");
        assert_eq!(report["connections_ok"], 4, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["errors_by_kind"], serde_json::json!({}), "{report}");
        let sessions = report["sessions_completed"].as_u64().unwrap();
        assert!(sessions > 0, "{ocpp}: {report}");
        // every start answered Accepted, none refused, none without a status
        let starts = report["start_answers"].as_u64().unwrap();
        assert!(starts >= sessions, "{report}");
        assert_eq!(report["start_not_accepted"], 0, "{report}");
        assert_eq!(
            report["start_status"],
            serde_json::json!({"Accepted": starts}),
            "{report}"
        );
        assert_eq!(report["authorize_not_accepted"], 0, "{report}");
        // only the session's actions were sent, in its proportions
        let per_action = report["per_action"].as_object().unwrap();
        let expected = session_actions(ocpp);
        assert_eq!(per_action.len(), expected.len() + 1, "{report}"); // + BootNotification
        assert_eq!(per_action["BootNotification"], 4, "{report}");
        for (action, per_session) in expected {
            let n = per_action[*action].as_u64().unwrap();
            assert!(n >= per_session * sessions, "{ocpp} {action}: {report}");
            assert!(
                n <= per_session * (sessions + 4),
                "{ocpp} {action}: {report}"
            );
        }
    }
}

/// A 1.6 CSMS that accepts only the token `GOOD` and checks that meter
/// values and stops carry the transaction id it gave.
fn start_picky_v16_csms(rt: &tokio::runtime::Runtime) -> u16 {
    let next_tx = Arc::new(AtomicI32::new(100));
    rt.block_on(async {
        let status = |tag: &str| if tag == "GOOD" { "Accepted" } else { "Invalid" };
        let given = next_tx.clone();
        let routes = Router::csms_v16()
            .on::<v16::action::BootNotification>(|_: Ctx<()>, _: v16::BootNotificationRequest| async {
                ok(r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#)
            })
            .on::<v16::action::Authorize>(move |_: Ctx<()>, req: v16::AuthorizeRequest| async move {
                ok(&format!(r#"{{"idTagInfo":{{"status":"{}"}}}}"#, status(req.id_tag.as_str())))
            })
            .on::<v16::action::StartTransaction>(move |_: Ctx<()>, req: v16::StartTransactionRequest| {
                let tx = next_tx.fetch_add(1, Ordering::Relaxed);
                async move {
                    ok(&format!(
                        r#"{{"transactionId":{tx},"idTagInfo":{{"status":"{}"}}}}"#,
                        status(req.id_tag.as_str())
                    ))
                }
            })
            .on::<v16::action::MeterValues>(move |_: Ctx<()>, req: v16::MeterValuesRequest| {
                let known = req.transaction_id.is_some_and(|t| t >= 100 && t < given.load(Ordering::Relaxed));
                async move {
                    if known { ok("{}") } else { Err(CallError::new("PropertyConstraintViolation", "unknown transactionId")) }
                }
            })
            .on::<v16::action::StopTransaction>(|_: Ctx<()>, req: v16::StopTransactionRequest| async move {
                if req.transaction_id >= 100 { ok("{}") } else { Err(CallError::new("PropertyConstraintViolation", "unknown transactionId")) }
            })
            .into_routes();
        let server = Server::builder(Security::unsecured()).v16(routes).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
        port
    })
}

#[test]
fn transactions_mix_reports_refused_starts_and_sends_the_id_tag_given() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = start_picky_v16_csms(&rt);
    let url = format!("ws://127.0.0.1:{port}/ocpp/");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--url",
            &url,
            "--ocpp",
            "1.6",
            "--mix",
            "transactions",
            "--stations",
            "3",
            "--duration",
            "1",
            "--ramp",
            "100",
            "--saturate",
        ];
        args.extend_from_slice(extra);
        load_report(&args)
    };
    // the default LOADTAG is refused: the report says so
    let refused = run(&["--prefix", "R"]);
    assert_eq!(refused["errors"], 0, "{refused}");
    let starts = refused["start_answers"].as_u64().unwrap();
    assert!(starts > 0, "{refused}");
    assert_eq!(refused["start_not_accepted"], starts, "{refused}");
    assert_eq!(
        refused["start_status"],
        serde_json::json!({"Invalid": starts}),
        "{refused}"
    );
    assert!(
        refused["authorize_not_accepted"].as_u64().unwrap() > 0,
        "{refused}"
    );
    // the tag it accepts
    let accepted = run(&["--prefix", "A", "--id-tag", "GOOD"]);
    assert_eq!(accepted["errors"], 0, "{accepted}");
    assert_eq!(accepted["id_tag"], "GOOD", "{accepted}");
    assert_eq!(accepted["start_not_accepted"], 0, "{accepted}");
    assert_eq!(accepted["authorize_not_accepted"], 0, "{accepted}");
    assert!(
        accepted["sessions_completed"].as_u64().unwrap() > 0,
        "{accepted}"
    );
    // a tag the version's schema refuses (1.6: at most 20 characters) stops the run up front
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args([
            "load",
            "--url",
            &url,
            "--ocpp",
            "1.6",
            "--mix",
            "transactions",
        ])
        .args([
            "--id-tag",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "--stations",
            "1",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--id-tag"));
}

/// POSTs `body` to the reference CSMS's operator API; the status code.
fn api_post(port: u16, key: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"))
}

/// The reference CSMS (`examples/csms`, SQLite store) in-process: every
/// message of the `transactions` mix is committed before it is answered.
#[test]
fn transactions_mix_against_the_reference_csms_in_every_version() {
    let dir = std::env::temp_dir().join(format!("evproto-load-csms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ready, started) = tokio::sync::oneshot::channel();
    let config = csms::config::Config {
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        ocpp_port: 0,
        http_port: 0,
        admin_port: 0,
        data_dir: dir.clone(),
        api_key: Some("load-test-key".into()),
        security_profile: 0,
        unknown_stations: csms::config::UnknownStations::Accept,
        ..csms::config::Config::default()
    };
    rt.spawn(csms::serve_until(
        config,
        std::future::pending(),
        Some(ready),
        false,
    ));
    let started = rt.block_on(started).expect("csms started");
    let status = api_post(
        started.admin_port,
        "load-test-key",
        "/api/tokens",
        r#"{"id_token":"LOADTAG","type":"ISO14443","status":"Accepted","allow_concurrent":true}"#,
    );
    assert!((200..300).contains(&status), "POST /api/tokens: {status}");
    let url = format!("ws://127.0.0.1:{}/ocpp/", started.ocpp_port);
    for ocpp in ["1.6", "2.0.1", "2.1"] {
        let prefix = format!("CS{ocpp}-");
        let report = load_report(&[
            "--url",
            &url,
            "--ocpp",
            ocpp,
            "--mix",
            "transactions",
            "--stations",
            "3",
            "--duration",
            "2",
            "--ramp",
            "100",
            "--saturate",
            "--prefix",
            &prefix,
        ]);
        assert_eq!(report["connections_ok"], 3, "{ocpp}: {report}");
        assert_eq!(report["errors"], 0, "{ocpp}: {report}");
        assert!(
            report["sessions_completed"].as_u64().unwrap() > 0,
            "{ocpp}: {report}"
        );
        let starts = report["start_answers"].as_u64().unwrap();
        assert_eq!(
            report["start_status"],
            serde_json::json!({"Accepted": starts}),
            "{ocpp}: {report}"
        );
        assert_eq!(report["authorize_not_accepted"], 0, "{ocpp}: {report}");
    }
    // a token the CSMS does not know: the refusals are in the report
    let report = load_report(&[
        "--url",
        &url,
        "--ocpp",
        "2.0.1",
        "--mix",
        "transactions",
        "--stations",
        "2",
        "--duration",
        "1",
        "--ramp",
        "100",
        "--saturate",
        "--prefix",
        "UNKNOWN-",
        "--id-tag",
        "NOSUCHTAG",
    ]);
    assert!(
        report["start_not_accepted"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["authorize_not_accepted"].as_u64().unwrap() > 0,
        "{report}"
    );
    rt.shutdown_background();
    let _ = std::fs::remove_dir_all(&dir);
}
