//! The tools say what went wrong: `simulate` and `load` count failed
//! connections by reason and exit 1 when stations could not boot or errors
//! occurred; `ocpp validate` exits 1 when a line is invalid; usage errors
//! exit 2; a clean run exits 0.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use evproto_ocpp_server::{Security, Server};
use serde_json::Value;

fn evproto(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn last_json(o: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no report: {}", String::from_utf8_lossy(&o.stderr)));
    serde_json::from_str(line).unwrap()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CSMS with Basic auth that knows no password: every station gets 401.
async fn csms_refusing_everyone() -> (Server, u16) {
    use evproto_ocpp_rpc::Router;
    let server = Server::builder(Security::basic_auth(|_: &str, _: &[u8]| false))
        .v16(Router::csms_v16().with_state(()))
        .v201(Router::csms_v201().with_state(()))
        .v21(Router::csms_v21().with_state(()))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener, std::future::pending()).await });
    (server, port)
}

#[test]
fn simulate_against_a_closed_port_exits_1_and_says_unreachable() {
    let url = format!("ws://127.0.0.1:{}/ocpp/", closed_port());
    let o = evproto(
        &[
            "simulate",
            "--url",
            &url,
            "--stations",
            "2",
            "--duration",
            "2",
            "--ramp",
            "100",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let report = last_json(&o);
    assert_eq!(report["booted"], 0, "{report}");
    assert!(
        report["connect_failures"]["unreachable"].as_u64() > Some(0),
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2 of 2 stations never booted"), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_with_a_wrong_password_exits_1_and_says_http_401() {
    let (_server, port) = csms_refusing_everyone().await;
    let url = format!("ws://127.0.0.1:{port}/ocpp/");
    let o = tokio::task::spawn_blocking(move || {
        evproto(
            &[
                "simulate",
                "--url",
                &url,
                "--stations",
                "1",
                "--duration",
                "2",
                "--password",
                "not-the-right-one",
            ],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let report = last_json(&o);
    assert!(
        report["connect_failures"]["http 401"].as_u64() > Some(0),
        "{report}"
    );
    assert!(
        report["first_connect_failure"]
            .as_str()
            .is_some_and(|s| s.contains("wrong password")),
        "{report}"
    );
}

#[test]
fn load_against_a_closed_port_exits_1() {
    let url = format!("ws://127.0.0.1:{}/ocpp/", closed_port());
    let o = evproto(
        &[
            "load",
            "--url",
            &url,
            "--stations",
            "3",
            "--duration",
            "1",
            "--ramp",
            "100",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let report = last_json(&o);
    assert_eq!(report["connections_ok"], 0, "{report}");
    assert!(report["connections_failed"].as_u64() > Some(0), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_refused_with_401_exits_1() {
    let (_server, port) = csms_refusing_everyone().await;
    let url = format!("ws://127.0.0.1:{port}/ocpp/");
    let o = tokio::task::spawn_blocking(move || {
        evproto(
            &[
                "load",
                "--url",
                &url,
                "--stations",
                "3",
                "--duration",
                "1",
                "--ramp",
                "100",
            ],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(last_json(&o)["connections_failed"].as_u64() > Some(0));
}

#[test]
fn validate_exits_0_when_all_lines_are_valid_1_when_one_is_not_2_on_usage_errors() {
    let valid = r#"[2,"1","Heartbeat",{}]"#;
    let o = evproto(
        &["ocpp", "validate", "--version", "2.0.1"],
        &format!("{valid}\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");
    let o = evproto(
        &["ocpp", "validate", "--version", "2.0.1"],
        &format!("{valid}\n[2,\"2\",\"Heartbeat\",{{\"x\":1}}]\n{valid}\n"),
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "one verdict per line: {out}");
    assert!(lines[1].starts_with("error "), "{out}");
    // payload mode too
    let o = evproto(
        &[
            "ocpp",
            "validate",
            "--version",
            "2.0.1",
            "--action",
            "Heartbeat",
            "--message",
            "request",
        ],
        "{\"x\":1}\n",
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let o = evproto(&["ocpp", "validate", "--version", "9.9"], "{}\n");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// DIN 70121 SessionSetupReq (EXIficient-identical).
const DIN: &str = "809a02000000000000000011d01a121dc983cd6000";

#[test]
fn v2g_encode_takes_what_decode_prints_and_a_wrong_schema_gets_a_hint() {
    let o = evproto(&["v2g", "decode", "--schema", "din"], &format!("{DIN}\n"));
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let decoded = String::from_utf8(o.stdout).unwrap();
    let o = evproto(&["v2g", "encode", "--schema", "din"], &decoded);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        last_json(&o)["exi"],
        DIN,
        "decode → encode gives the bytes back"
    );
    // the wrong schema: exit 1, and the line says which schema reads it
    let o = evproto(&["v2g", "decode", "--schema", "iso2"], &format!("{DIN}\n"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v = last_json(&o);
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(v["hint"], "this line decodes with --schema din", "{v}");
    // usage error
    let o = evproto(&["v2g", "decode", "--schema", "nope"], "");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}
