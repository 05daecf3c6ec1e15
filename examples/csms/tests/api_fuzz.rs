//! The operator API fuzzed from its own OpenAPI document by schemathesis
//! (PyPI, in a venv of its own under the evproto cache): every operation
//! gets generated valid and invalid requests, bounded in time, and the run
//! fails on any 5xx answer, any status the document does not list for the
//! operation, and any body that does not match the documented schema.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

const KEY: &str = "fuzz-api-key-0123456789abcdef";
/// schemathesis and the library it drives, pinned.
const SCHEMATHESIS: &[&str] = &["schemathesis==4.32.5"];

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let python = test_support::peers::venv("venv-schemathesis", SCHEMATHESIS);
    let st = python.with_file_name("schemathesis");
    let dir = std::env::temp_dir().join(format!("csms-fuzz-{}", std::process::id()));
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
        ])
        .env("CSMS_API_KEY", KEY)
        .env("CSMS_ADMIN_PORT", "0")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = csms.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines.next().expect("csms exited before listening").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "listening" {
            break v["admin_port"]
                .as_u64()
                .or_else(|| v["http_port"].as_u64())
                .unwrap();
        }
    };
    // keep draining its output so it never blocks on a full pipe
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let report = dir.join("report");
    let out = Command::new(&st)
        // its example database and reports stay in the temporary folder
        .current_dir(&dir)
        .args(["run", &format!("http://127.0.0.1:{port}/api/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // the event stream never ends by design
        .args(["--exclude-path", "/api/events"])
        .args(["--max-time", "90", "--max-examples", "30", "--seed", "1"])
        .args(["--request-timeout", "20", "--workers", "2"])
        .args(["--no-color", "--report", "junit"])
        .arg("--report-dir")
        .arg(&report)
        .output()
        .expect("schemathesis runs");
    let _ = csms.kill();
    let _ = csms.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    // shown with the test's output, whatever the outcome
    println!("{text}");
    assert!(
        out.status.success(),
        "schemathesis found problems (exit {:?}):\n{text}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
