//! What the peer-interop tests share: the cache directory for venvs and npm
//! packages, building workspace examples, and child processes that print JSON
//! event lines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use test_support::peers::cache_dir;

/// Builds a workspace example and returns its path.
pub fn example(package: &str, name: &str) -> PathBuf {
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

pub struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server process that prints `{"event":"listening","port":N}` first; returns it and N.
pub fn start_listening(cmd: &mut Command) -> (Killed, u16, std::sync::mpsc::Receiver<String>) {
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

pub fn drain(rx: &std::sync::mpsc::Receiver<String>, wait: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Ok(line) = rx.recv_timeout(wait) {
        out.push(serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line)));
    }
    out
}

/// Checks what `csms_minimal` reported for one peer station's session (every
/// call but Heartbeat, in order) and that its call back was answered.
pub fn assert_session_reported(events: &[serde_json::Value], id: &str, v16: bool) {
    let actions: Vec<&str> = events
        .iter()
        .filter(|e| e["identity"] == id && e["event"] == "call")
        .filter_map(|e| e["action"].as_str())
        .collect();
    let expected: &[&str] = if v16 {
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
            .any(|e| e["identity"] == id && e["event"] == "csms_call_result"),
        "{id}: {events:?}"
    );
}
