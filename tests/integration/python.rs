//! Interop with the Python `ocpp` package (mobilityhouse, the most used OCPP
//! library), in both directions and all three versions:
//!
//! - its charging station (`tests/interop/python/ocpp_station.py`) runs boot,
//!   status, heartbeat, authorize and a transaction with meter values against
//!   `ocpp-server`'s `csms_minimal` example, which calls it back;
//! - our `ocpp-client` `station` example runs the same session against its
//!   CSMS (`ocpp_csms.py`), which calls us back.
//!
//! Both libraries validate every message they receive against the schemas,
//! so a pass means every message on both sides was schema-valid.
//!
//! The venv (`ocpp==2.1.0`, `websockets==17.4`) is created on first use under
//! `$EVPROTO_CACHE` (default `~/.cache/evproto`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::peers::python;

use crate::peers::{assert_session_reported, drain, example, start_listening};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop/python")
        .join(name)
}

#[test]
fn python_station_against_our_csms_minimal() {
    let py = python();
    let csms = example("evproto-ocpp-server", "csms_minimal");
    let (_server, port, rx) = start_listening(Command::new(csms).args([
        "--port",
        "0",
        "--password",
        "interop-password-1",
    ]));
    for v in ["1.6", "2.0.1", "2.1"] {
        let id = format!("PY-{}", v.replace('.', ""));
        let out = Command::new(py)
            .arg(script("ocpp_station.py"))
            .args([
                "--url",
                &format!("ws://127.0.0.1:{port}/ocpp/"),
                "--id",
                &id,
                "--version",
                v,
                "--password",
                "interop-password-1",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{v}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("session_done") && stdout.contains("csms_call_answered"),
            "{stdout}"
        );
    }
    let events = drain(&rx, Duration::from_millis(500));
    for v in ["16", "201", "21"] {
        assert_session_reported(&events, &format!("PY-{v}"), v == "16");
    }
    // the wrong password is refused
    let out = Command::new(py)
        .arg(script("ocpp_station.py"))
        .args([
            "--url",
            &format!("ws://127.0.0.1:{port}/ocpp/"),
            "--id",
            "PY-X",
            "--version",
            "2.0.1",
            "--password",
            "wrong",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn our_station_against_python_csms() {
    let py = python();
    let station = example("evproto-ocpp-client", "station");
    for v in ["1.6", "2.0.1", "2.1"] {
        let (_csms, port, rx) =
            start_listening(Command::new(py).arg(script("ocpp_csms.py")).args([
                "--port",
                "0",
                "--version",
                v,
            ]));
        let out = Command::new(&station)
            .args([
                "--url",
                &format!("ws://127.0.0.1:{port}/ocpp/"),
                "--id",
                "RS1",
                "--version",
                v,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{v}: {stdout}");
        assert!(stdout.contains("csms_call_answered"), "{stdout}");
        let events = drain(&rx, Duration::from_millis(500));
        assert!(
            events.iter().any(|e| e["event"] == "csms_call_result"),
            "{v}: {events:?}"
        );
        let calls = events.iter().filter(|e| e["event"] == "call").count();
        assert!(calls >= 7, "{v}: {events:?}");
    }
}
