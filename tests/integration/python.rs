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

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const PACKAGES: &[&str] = &["ocpp==2.1.0", "websockets==17.4"];

fn cache_dir() -> PathBuf {
    std::env::var_os("EVPROTO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/evproto")
        })
}

/// The venv's python, creating the venv if needed (once per machine, under a lock).
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join("venv-ocpp.lock")).unwrap();
        lock.lock().unwrap();
        let venv = dir.join("venv-ocpp");
        let py = venv.join("bin/python");
        let marker = venv.join(".evproto-packages");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(&PACKAGES.join(" ")) {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap()
                .success();
            assert!(ok, "python3 -m venv failed");
            let ok = Command::new(&py)
                .args(["-m", "pip", "install", "-q"])
                .args(PACKAGES)
                .status()
                .unwrap()
                .success();
            assert!(ok, "pip install {PACKAGES:?} failed");
            std::fs::write(&marker, PACKAGES.join(" ")).unwrap();
        }
        py
    })
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop/python")
        .join(name)
}

/// Builds a workspace example and returns its path.
fn example(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--example", name])
        .status()
        .unwrap()
        .success();
    assert!(ok, "building example {name} failed");
    // target/<profile>/deps/integration-* → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(name)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server process that prints `{"event":"listening","port":N}` first; returns it and N.
fn start_listening(cmd: &mut Command) -> (Killed, u16, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not start");
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["event"], "listening", "{first}");
    let port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
    (Killed(child), port, rx)
}

fn drain(rx: &std::sync::mpsc::Receiver<String>, wait: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Ok(line) = rx.recv_timeout(wait) {
        out.push(serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line)));
    }
    out
}

#[test]
fn python_station_against_our_csms_minimal() {
    let py = python();
    let csms = example("ocpp-server", "csms_minimal");
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
        let id = format!("PY-{v}");
        let actions: Vec<&str> = events
            .iter()
            .filter(|e| e["identity"] == id.as_str() && e["event"] == "call")
            .filter_map(|e| e["action"].as_str())
            .collect();
        let expected: &[&str] = if v == "16" {
            &[
                "BootNotification",
                "StatusNotification",
                "Authorize",
                "StartTransaction",
                "StatusNotification",
                "MeterValues",
                "StopTransaction",
            ]
        } else {
            &[
                "BootNotification",
                "StatusNotification",
                "Authorize",
                "TransactionEvent",
                "TransactionEvent",
                "TransactionEvent",
            ]
        };
        assert_eq!(actions, expected, "{id}: {events:?}");
        assert!(
            events
                .iter()
                .any(|e| e["identity"] == id.as_str() && e["event"] == "csms_call_result"),
            "{id}: {events:?}"
        );
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
    let station = example("ocpp-client", "station");
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
