//! `evproto load` smoke test: 500 stations for 10 s against an in-process
//! `ocpp-server`, zero errors expected (correctness, not speed).

use std::process::Command;

use evproto_ocpp_proto::CallError;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_server::{Security, Server};
use evproto_ocpp_types::v201::{self, action};

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
    }
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
