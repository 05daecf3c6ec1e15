//! `evproto v2g decode --lenient` end to end: a real DIN frame with a byte
//! after the document is refused by default, and decoded with a warning
//! (in the line's `"warnings"` and on stderr) with `--lenient`.

use std::io::Write;
use std::process::{Command, Stdio};

/// (stdout lines, stderr) of `evproto v2g decode` with `args` over `input`,
/// which exits with `code` (1 when a line could not be decoded).
fn decode(args: &[&str], input: &str, code: i32) -> (Vec<serde_json::Value>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args(["v2g", "decode"])
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
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, stderr)
}

/// uhi22/pyPLC `DemoExiLog.txt`: a charger's DIN response, as logged.
const REAL: &str = "809a022189cbf75b9625a951a00120024100c4";

#[test]
fn lenient_flag_decodes_and_warns() {
    let input = format!("{REAL}\n{REAL}00\n");
    let (strict, stderr) = decode(&["--schema", "din"], &input, 1);
    assert_eq!(strict.len(), 2);
    assert!(strict[0].get("message").is_some(), "{}", strict[0]);
    assert_eq!(
        strict[1]["error"], "1 bytes after the end of the EXI document",
        "{}",
        strict[1]
    );
    assert!(!stderr.contains("warning"), "{stderr}");

    let (lenient, stderr) = decode(&["--schema", "din", "--lenient"], &input, 0);
    assert_eq!(lenient[0], strict[0], "a frame as sent reads the same");
    assert_eq!(lenient[1]["message"], strict[0]["message"]);
    assert_eq!(lenient[1]["body"], strict[0]["body"]);
    let warning = "byte 19: 1 byte after the end of the EXI document (ignored)";
    assert_eq!(lenient[1]["warnings"], serde_json::json!([warning]));
    assert_eq!(
        stderr.trim_end(),
        format!("evproto: warning: line 2: {warning}")
    );
}

#[test]
fn lenient_is_for_decoding_message_schemas() {
    for args in [
        &["v2g", "decode", "--schema", "app", "--lenient"][..],
        &["v2g", "encode", "--schema", "din", "--lenient"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
    }
}
