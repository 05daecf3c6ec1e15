//! The operator API and the drivers' app API fuzzed from their own OpenAPI
//! documents by schemathesis (PyPI, in a venv of its own under the evproto
//! cache): every operation gets generated valid and invalid requests,
//! bounded in time, and the run fails on any 5xx answer, any status the
//! document does not list for the operation, and any body that does not
//! match the documented schema. The app API is fuzzed with a signed-in
//! driver's bearer token (a fleet's manager), and schemathesis's `ignored_auth` check sends
//! each operation again without it and with a wrong one (it must not
//! succeed); the test also asks a few routes without a sign-in itself
//! (401 with a JSON reason).
//!
//! Tool errors: schemathesis reports a Python exception inside itself or
//! hypothesis as a "Runtime Error" (one run hit CPython 3.11's "AST
//! constructor recursion depth mismatch", python/cpython#106905: the AST
//! module's recursion counter is shared between threads, and hypothesis
//! parses source while two workers run). That is no answer of the server,
//! so (1) the runs use one worker, which removes the threads that race,
//! and (2) the verdict reads the JUnit report: check failures (server
//! answers) and every other error (network errors, unresponsive
//! operations: a hanging server) fail the test; "Runtime Error"s are
//! printed loudly as tool errors, apart, and do not.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const KEY: &str = "fuzz-api-key-0123456789abcdef";
/// schemathesis and the library it drives, pinned.
const SCHEMATHESIS: &[&str] = &["schemathesis==4.32.5"];
/// The checks of both runs.
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// The CSMS binary on free ports, killed when dropped.
struct Csms {
    child: Child,
    http_port: u16,
    admin_port: u16,
    dir: PathBuf,
}

impl Csms {
    fn start(name: &str, env: &[(&str, &str)]) -> Csms {
        let dir = std::env::temp_dir().join(format!("csms-fuzz-{name}-{}", std::process::id()));
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
            .env("CSMS_API_KEY", KEY)
            .env("CSMS_ADMIN_PORT", "0")
            .env_remove("DATABASE_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (http_port, admin_port) = loop {
            let line = lines.next().expect("csms exited before listening").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["event"] == "listening" {
                let port = |k: &str| u16::try_from(v[k].as_u64().unwrap()).unwrap();
                break (port("http_port"), port("admin_port"));
            }
        };
        // keep draining its output so it never blocks on a full pipe
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Csms {
            child,
            http_port,
            admin_port,
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

/// One HTTP/1.1 request on a fresh connection: (status, JSON body).
fn http(port: u16, method: &str, path: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// What a run's JUnit report holds besides passes.
#[derive(Debug, Default)]
struct Verdict {
    /// Check failures and errors that are the server's (or may be).
    server: Vec<String>,
    /// schemathesis's own exceptions ("Runtime Error").
    tool: Vec<String>,
}

/// The `<failure>` and `<error>` elements of a JUnit report, by operation.
fn judge(report: &str) -> Verdict {
    let mut v = Verdict::default();
    for case in report.split("<testcase ").skip(1) {
        let name = case
            .split_once("name=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map_or("?", |(n, _)| n);
        for (tag, server) in [("failure", true), ("error", false)] {
            for part in case.split(&format!("<{tag} ")).skip(1) {
                let text = part
                    .split_once('>')
                    .map_or("", |(_, t)| t)
                    .split(&format!("</{tag}>"))
                    .next()
                    .unwrap_or("");
                let line = format!("{name}: {tag}: {text}");
                // an exception inside the tool is titled "Runtime Error";
                // network errors, timeouts and the rest are the server's
                if !server && text.trim_start().starts_with("Runtime Error") {
                    v.tool.push(line);
                } else {
                    v.server.push(line);
                }
            }
        }
    }
    v
}

/// Runs schemathesis on the document at `url` with `args`; panics on any
/// server failure, prints tool errors apart.
fn fuzz(name: &str, dir: &Path, url: &str, args: &[String]) {
    let python = test_support::peers::venv("venv-schemathesis", SCHEMATHESIS);
    let st = python.with_file_name("schemathesis");
    let report = dir.join(format!("report-{name}"));
    let out = Command::new(&st)
        // its example database and reports stay in the temporary folder
        .current_dir(dir)
        .args(["run", url])
        .args(args)
        .args(["--max-time", "90", "--max-examples", "30", "--seed", "1"])
        // one worker: see the module's documentation (tool errors)
        .args(["--request-timeout", "20", "--workers", "1"])
        .args(["--no-color", "--report", "junit"])
        .arg("--report-dir")
        .arg(&report)
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // shown with the test's output, whatever the outcome
    println!("{text}");
    let junit = std::fs::read_dir(&report)
        .ok()
        .and_then(|d| {
            d.filter_map(Result::ok)
                .find(|e| e.path().extension().is_some_and(|x| x == "xml"))
        })
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
        .unwrap_or_else(|| {
            panic!(
                "{name}: schemathesis wrote no report (exit {:?}):\n{text}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let verdict = judge(&junit);
    for t in &verdict.tool {
        eprintln!(
            "\n!!! {name}: SCHEMATHESIS TOOL ERROR (not a server answer; the run goes on):\n{t}\n"
        );
    }
    assert!(
        verdict.server.is_empty(),
        "{name}: schemathesis found problems of the server:\n{}\n\n{text}",
        verdict.server.join("\n")
    );
    // exit 0, or failing with nothing but tool errors in the report
    assert!(
        out.status.success() || !verdict.tool.is_empty(),
        "{name}: schemathesis failed (exit {:?}) with an empty report:\n{text}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let csms = Csms::start("api", &[]);
    let url = format!("http://127.0.0.1:{}/api/openapi.json", csms.admin_port);
    let args: Vec<String> = [
        "-H",
        &format!("Authorization: Bearer {KEY}"),
        "--checks",
        CHECKS,
        // the event stream never ends by design
        "--exclude-path",
        "/api/events",
    ]
    .map(String::from)
    .to_vec();
    fuzz("operator API", &csms.dir, &url, &args);
}

#[test]
fn schemathesis_finds_nothing_in_the_app_api() {
    // rates high enough that the generated requests reach the routes'
    // logic instead of their limits (429 stays documented and possible)
    let csms = Csms::start(
        "app",
        &[
            ("CSMS_APP_ACCOUNT_RATE", "100000/100000"),
            ("CSMS_APP_CLIENT_RATE", "100000/100000"),
        ],
    );
    let port = csms.http_port;
    // without a sign-in: 401 with a JSON reason
    for (method, path) in [
        ("GET", "/app/v1/me"),
        ("GET", "/app/v1/sessions"),
        ("POST", "/app/v1/sessions"),
        ("GET", "/app/v1/fleet/invoices"),
    ] {
        let (s, b) = http(port, method, path, None, "{}");
        assert_eq!(
            (s, b["error"].is_string()),
            (401, true),
            "{method} {path}: {b}"
        );
        let (s, _) = http(port, method, path, Some(&"ab".repeat(32)), "{}");
        assert_eq!(s, 401, "{method} {path} with an unknown token");
    }
    // a signed-in driver
    let creds = r#"{"email": "fuzz@example.com", "password": "correct horse battery"}"#;
    let (s, b) = http(port, "POST", "/app/v1/signup", None, creds);
    assert_eq!(s, 201, "{b}");
    let driver = b["id"].as_str().unwrap().to_owned();
    // who manages a fleet, so the fleet routes answer more than 403
    let admin = csms.admin_port;
    let fleet = r#"{"name": "Fuzz Fleet", "email": "fleet@example.com"}"#;
    let (s, b) = http(admin, "POST", "/api/fleets", Some(KEY), fleet);
    assert_eq!(s, 201, "{b}");
    let path = format!("/api/fleets/{}/members/{driver}", b["id"].as_str().unwrap());
    let (s, b) = http(admin, "PUT", &path, Some(KEY), r#"{"role": "manager"}"#);
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(port, "POST", "/app/v1/signin", None, creds);
    assert_eq!(s, 200, "{b}");
    let token = b["access_token"].as_str().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{port}/app/v1/openapi.json");
    let args: Vec<String> = [
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--checks",
        &format!("{CHECKS},ignored_auth"),
        // the event stream never ends by design; signing out would end the
        // run's sign-in (tests/app_api.rs covers it)
        "--exclude-path",
        "/app/v1/events",
        "--exclude-path",
        "/app/v1/signout",
    ]
    .map(String::from)
    .to_vec();
    fuzz("app API", &csms.dir, &url, &args);
    // the driver is still signed in: the run changed nothing it should not
    let (s, b) = http(port, "GET", "/app/v1/me", Some(&token), "");
    assert_eq!((s, b["email"].as_str()), (200, Some("fuzz@example.com")));
}

#[test]
fn a_tool_error_is_told_apart_from_a_server_failure() {
    let report = r#"<testsuites><testsuite>
    <testcase name="GET /api/cdrs" time="1.0">
      <error type="error">Runtime Error

AST constructor recursion depth mismatch (before=45, after=46)</error>
    </testcase>
    <testcase name="GET /app/v1/me" time="1.0">
      <failure type="failure" message="ST101">1. Test Case ID: x

- ST101 Server error</failure>
    </testcase>
    <testcase name="GET /app/v1/tokens" time="1.0">
      <error type="error">Network Error

Connection refused</error>
    </testcase>
    <testcase name="GET /app/v1/stations" time="1.0" />
    </testsuite></testsuites>"#;
    let v = judge(report);
    assert_eq!(v.tool.len(), 1, "{v:?}");
    assert!(v.tool[0].starts_with("GET /api/cdrs: error: Runtime Error"));
    assert_eq!(v.server.len(), 2, "{v:?}");
    assert!(v.server[0].starts_with("GET /app/v1/me: failure:"));
    assert!(v.server[1].starts_with("GET /app/v1/tokens: error: Network Error"));
}
