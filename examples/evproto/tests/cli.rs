//! `evproto ocpp validate` end to end: one verdict line per input line.

use std::io::Write;
use std::process::{Command, Stdio};

fn validate(args: &[&str], input: &str) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args(["ocpp", "validate"])
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
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // exit 1 exactly when a line was invalid
    let invalid = lines.iter().any(|l| l.starts_with("error "));
    assert_eq!(
        out.status.code(),
        Some(i32::from(invalid)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

fn prefix(line: &str, n: usize) -> String {
    line.splitn(n + 1, ' ')
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn payload_mode_gives_one_verdict_per_line_with_the_versions_codes() {
    let input = [
        r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        r#"{"chargePointVendor":12,"chargePointModel":"M"}"#,
        r#"{"chargePointModel":"M"}"#,
        r#"{"chargePointVendor":"VVVVVVVVVVVVVVVVVVVVVVVVVV","chargePointModel":"M"}"#,
        r#"{"chargePointVendor":"V","chargePointModel":"M","extra":1}"#,
        r#"{not json"#,
        "",
        r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
    ]
    .join("\n");
    let out = validate(
        &[
            "--version",
            "1.6",
            "--action",
            "BootNotification",
            "--message",
            "request",
        ],
        &input,
    );
    assert_eq!(out.len(), 8, "{out:?}");
    assert_eq!(out[0], "ok");
    assert_eq!(
        prefix(&out[1], 3),
        "error TypeConstraintViolation /chargePointVendor"
    );
    assert_eq!(prefix(&out[2], 3), "error ProtocolError /chargePointVendor");
    assert_eq!(
        prefix(&out[3], 3),
        "error TypeConstraintViolation /chargePointVendor"
    );
    assert_eq!(prefix(&out[4], 3), "error FormationViolation /extra");
    assert_eq!(prefix(&out[5], 3), "error FormationViolation ");
    assert_eq!(prefix(&out[6], 3), "error FormationViolation ");
    assert_eq!(out[7], "ok");

    let status = [
        r#"{"connectorId":1,"errorCode":"NoError","status":"Available"}"#,
        r#"{"connectorId":1,"errorCode":"NoError","status":"Teleporting"}"#,
    ]
    .join("\n");
    let out = validate(
        &[
            "--version",
            "1.6",
            "--action",
            "StatusNotification",
            "--message",
            "request",
        ],
        &status,
    );
    assert_eq!(out[0], "ok");
    assert_eq!(
        prefix(&out[1], 3),
        "error PropertyConstraintViolation /status"
    );
}

#[test]
fn v2_spellings_and_responses() {
    let input = [
        r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#,
        r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted","x":1}"#,
        r#"{"interval":300,"status":"Accepted"}"#,
        r#"{"currentTime":"2024-01-01T00:00:00Z","interval":"300","status":"Accepted"}"#,
        "[",
    ]
    .join("\n");
    for v in ["2.0.1", "2.1"] {
        let out = validate(
            &[
                "--version",
                v,
                "--action",
                "BootNotification",
                "--message",
                "response",
            ],
            &input,
        );
        assert_eq!(out[0], "ok");
        assert_eq!(prefix(&out[1], 3), "error ProtocolError /x");
        assert_eq!(
            prefix(&out[2], 3),
            "error OccurrenceConstraintViolation /currentTime"
        );
        assert_eq!(
            prefix(&out[3], 3),
            "error TypeConstraintViolation /interval"
        );
        assert_eq!(prefix(&out[4], 3), "error FormatViolation ");
    }
}

#[test]
fn frame_mode_correlates_results_with_calls() {
    let input = [
        r#"[2,"a1","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}]"#,
        r#"[3,"a1",{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}]"#,
        r#"[2,"a2","Heartbeat",{}]"#,
        r#"[3,"a2",{"currentTime":"not a time"}]"#,
        r#"[2,"a3","Teleport",{}]"#,
        r#"[4,"a3","NotImplemented","",{}]"#,
        r#"[4,"a4","NoSuchCode","",{}]"#,
        r#"[9,"a5","Heartbeat",{}]"#,
        r#"[2,5,"Heartbeat",{}]"#,
        r#"{"not":"a frame"}"#,
        r#"[6,"a6","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"2024-01-01T00:00:00Z","data":[{"t":0,"v":"1"}]}]"#,
        r#"[3,"zz",{"anything":true}]"#,
    ]
    .join("\n");
    let out = validate(&["--version", "2.0.1"], &input);
    assert_eq!(out.len(), 12, "{out:?}");
    assert_eq!(out[0], "ok");
    assert_eq!(out[1], "ok");
    assert_eq!(out[2], "ok");
    assert_eq!(
        prefix(&out[3], 3),
        "error TypeConstraintViolation /2/currentTime"
    );
    assert_eq!(prefix(&out[4], 3), "error NotImplemented /2");
    assert_eq!(out[5], "ok");
    assert_eq!(prefix(&out[6], 3), "error PropertyConstraintViolation /2");
    assert_eq!(prefix(&out[7], 3), "error MessageTypeNotSupported /0");
    assert_eq!(prefix(&out[8], 3), "error RpcFrameworkError /1");
    assert_eq!(prefix(&out[9], 3), "error RpcFrameworkError ");
    // SEND is 2.1's
    assert_eq!(prefix(&out[10], 3), "error MessageTypeNotSupported /0");
    assert_eq!(out[11], "ok");
    let out = validate(&["--version", "2.1"], &input);
    assert_eq!(out[10], "ok");
    let out = validate(
        &["--version", "1.6"],
        r#"[2,"1","BootNotification",{"chargePointVendor":"V"}]"#,
    );
    assert_eq!(
        prefix(&out[0], 3),
        "error ProtocolError /3/chargePointModel"
    );
}

#[test]
fn lenient_flag_accepts_known_quirks() {
    let quirky = r#"{"connectorId":1,"errorCode":"noError","status":"available"}"#;
    let args = [
        "--version",
        "1.6",
        "--action",
        "StatusNotification",
        "--message",
        "request",
    ];
    assert_eq!(
        prefix(&validate(&args, quirky)[0], 2),
        "error PropertyConstraintViolation"
    );
    let mut lenient = args.to_vec();
    lenient.push("--lenient");
    assert_eq!(validate(&lenient, quirky), vec!["ok"]);
}
