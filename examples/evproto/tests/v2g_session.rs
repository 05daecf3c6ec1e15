//! `evproto v2g evse` and `evproto v2g ev` end to end: a charger on a free
//! loopback port, cars charging from it over each protocol, the JSON
//! summaries of both sides, failures with their ResponseCode and exit codes.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::Value;

/// A running `evproto v2g evse`, killed when dropped.
struct Evse {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Evse {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_evproto"))
            .args(["v2g", "evse", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_string();
        Self {
            child,
            stdout,
            addr,
        }
    }

    /// The EVSE's next stdout line.
    fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// The EVSE's JSON line for the next session ended.
    fn next_session(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

impl Drop for Evse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args(["v2g", "ev"])
        .args(args)
        .output()
        .unwrap()
}

/// The last stdout line as JSON.
fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{last:?}: {e}"))
}

#[test]
fn an_ev_charges_from_an_evse_over_din_and_iso2() {
    let mut evse = Evse::start(&[]);
    for (protocol, kwh) in [("din", "0.02"), ("iso2-dc", "0.01"), ("iso2-ac", "0.003")] {
        let out = ev(&[
            "--connect",
            &evse.addr,
            "--protocol",
            protocol,
            "--eim",
            "--energy-kwh",
            kwh,
            "--json",
        ]);
        let s = summary(&out);
        assert!(
            out.status.success(),
            "{protocol}: {s} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(s["protocol"], protocol);
        assert_eq!(s["result"], "ok", "{s}");
        let wh: f64 = kwh.parse::<f64>().unwrap() * 1000.0;
        assert!(s["energy_wh"].as_f64().unwrap() >= wh, "{s}");
        // handshake, setup, ... at least 2 charge loops, stop: requests and answers
        assert!(s["messages"].as_u64().unwrap() >= 20, "{s}");
        let id = s["session_id"].as_str().unwrap();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));

        // the charger's line for the same session
        let e = evse.next_session();
        assert_eq!(e["session_id"], s["session_id"], "{e}");
        assert_eq!(e["result"], "ok");
        assert_eq!(e["messages"], s["messages"]);
        assert_eq!(e["protocol"], protocol, "{e}");
    }
}

#[test]
fn a_failed_session_names_its_response_code_and_exits_non_zero() {
    let mut evse = Evse::start(&["--protocols", "iso2-dc"]);
    // a DIN car at an ISO-only charger: the handshake finds nothing in common
    let out = ev(&["--connect", &evse.addr, "--protocol", "din", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&out);
    assert_eq!(s["result"]["response_code"], "Failed_NoNegotiation", "{s}");
    assert_eq!(s["result"]["error"], "no_negotiation");
    assert_eq!(s["session_id"], Value::Null);
    let e = evse.next_session();
    assert_eq!(e["result"]["error"], "no_negotiation", "{e}");

    // an AC car at a DC-only ISO charger: refused at ChargeParameterDiscovery
    let out = ev(&["--connect", &evse.addr, "--protocol", "iso2-ac", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&out);
    let code = s["result"]["response_code"].as_str().unwrap_or_default();
    assert!(code.starts_with("FAILED"), "{s}");
}

#[test]
fn an_ev_charges_from_an_evse_over_iso20_ac_and_dc_without_tls() {
    let mut evse = Evse::start(&["--allow-iso20-without-tls"]);
    for (protocol, mode, kwh) in [
        ("iso20-dc", "scheduled", "0.01"),
        ("iso20-dc", "dynamic", "0.01"),
        ("iso20-ac", "scheduled", "0.003"),
        ("iso20-ac", "dynamic", "0.003"),
    ] {
        let out = ev(&[
            "--connect",
            &evse.addr,
            "--protocol",
            protocol,
            "--allow-iso20-without-tls",
            "--control-mode",
            mode,
            "--eim",
            "--energy-kwh",
            kwh,
            "--json",
        ]);
        let s = summary(&out);
        assert!(
            out.status.success(),
            "{protocol} {mode}: {s} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(s["protocol"], protocol);
        assert_eq!(s["result"], "ok", "{s}");
        let wh: f64 = kwh.parse::<f64>().unwrap() * 1000.0;
        assert!(s["energy_wh"].as_f64().unwrap() >= wh, "{s}");
        assert!(s["messages"].as_u64().unwrap() >= 20, "{s}");
        let id = s["session_id"].as_str().unwrap();
        assert_eq!(id.len(), 16);
        let e = evse.next_session();
        assert_eq!(e["session_id"], s["session_id"], "{e}");
        assert_eq!(e["result"], "ok", "{e}");
        assert_eq!(e["messages"], s["messages"]);
        assert_eq!(e["protocol"], protocol, "{e}");
    }
}

/// ISO 15118-20 bidirectional (DC_BPT, AC_BPT): a car giving back 2 Wh
/// in the scheduled mode (then stopping), and one offering 2 Wh in the
/// dynamic mode to an EVSE asking 5 kW back (which it gives, then charges
/// what it asked for); both summaries count each way.
#[test]
fn a_bidirectional_car_gives_back_over_iso20_ac_and_dc_bpt() {
    let mut evse = Evse::start(&[
        "--protocols",
        "iso20-ac-bpt,iso20-dc-bpt",
        "--allow-iso20-without-tls",
        "--discharge-demand-kw",
        "5",
    ]);
    for protocol in ["iso20-dc-bpt", "iso20-ac-bpt"] {
        for mode in ["scheduled", "dynamic"] {
            let at = format!("{protocol} {mode}");
            let out = ev(&[
                "--connect",
                &evse.addr,
                "--protocol",
                protocol,
                "--allow-iso20-without-tls",
                "--control-mode",
                mode,
                "--energy-kwh",
                "0.001",
                "--discharge-kwh",
                "0.002",
                "--json",
            ]);
            let s = summary(&out);
            assert!(
                out.status.success(),
                "{at}: {s} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(s["protocol"], protocol, "{at}");
            assert_eq!(s["result"], "ok", "{at}: {s}");
            let given = s["discharged_wh"].as_f64().unwrap();
            assert!(given >= 2.0, "{at}: {s}");
            let charged = s["energy_wh"].as_f64().unwrap();
            if mode == "scheduled" {
                // it gives what it set out to, then stops
                assert_eq!(charged, 0.0, "{at}: {s}");
            } else {
                // then it charges what it asked for
                assert!(charged >= 1.0, "{at}: {s}");
            }
            let e = evse.next_session();
            assert_eq!(e["protocol"], protocol, "{at}: {e}");
            assert_eq!(e["result"], "ok", "{at}: {e}");
            assert!(e["discharged_wh"].as_f64().unwrap() > 1.5, "{at}: {e}");
        }
    }
}

#[test]
fn unsupported_protocols_and_unreachable_chargers_are_clear_errors() {
    // energy to give back is for the bidirectional services only
    for p in ["iso20-dc", "iso2-dc"] {
        let out = ev(&[
            "--connect",
            "127.0.0.1:9",
            "--protocol",
            p,
            "--allow-iso20-without-tls",
            "--discharge-kwh",
            "1",
        ]);
        assert_eq!(out.status.code(), Some(2), "{p}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--discharge-kwh"), "{err}");
    }
    // -20 without TLS only when asked for
    for p in ["iso20-ac", "iso20-dc", "iso20-ac-bpt", "iso20-dc-bpt"] {
        let out = ev(&["--connect", "127.0.0.1:9", "--protocol", p, "--json"]);
        assert_eq!(out.status.code(), Some(2), "{p}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--allow-iso20-without-tls"), "{err}");
    }
    let out = ev(&["--connect", "127.0.0.1:9", "--protocol", "chademo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown protocol"));
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args([
            "v2g",
            "evse",
            "--listen",
            "127.0.0.1:0",
            "--protocols",
            "iso20-dc",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // SDP announces IPv6 addresses: an IPv4 listener with --iface is refused
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args(["v2g", "evse", "--listen", "127.0.0.1:0", "--iface", "lo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be IPv6"));

    // nobody listens on the discard port: a summary all the same, exit 1
    let out = ev(&["--connect", "127.0.0.1:9", "--protocol", "din", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&out);
    assert_eq!(s["result"]["error"], "connect", "{s}");
}

/// Plug & Charge over TLS with a PKI of `evproto v2g pki`: a car paying by
/// its -2 contract (iso2-dc), one authorizing by its -20 contract
/// (secp521r1) and one presenting its -2 contract over -20
/// (`--iso2-contract`, as Josev's EVCC does); both summaries name the
/// contract's eMAID. A car without a contract installs the -20 one
/// (`--install-contract`) and authorizes with it. A car without --pnc at
/// the same charger uses EIM.
#[test]
fn a_car_authorizes_by_contract_over_iso2_and_iso20_with_tls() {
    let dir = std::env::temp_dir().join(format!("evproto-v2g-pnc-{}", std::process::id()));
    let pki = dir.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args(["v2g", "pki", pki, "--seed", "v2g session test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut evse = Evse::start(&["--tls", pki, "--pnc", pki]);
    let tls_addr = loop {
        // `tls on ADDR` follows the plain listener's line
        let e = evse.next_line();
        assert!(!e.is_empty(), "the EVSE ended before its TLS port");
        if let Some(a) = e.trim().strip_prefix("tls on ") {
            break a.to_string();
        }
    };
    for (protocol, extra, emaid) in [
        ("iso2-dc", &["--pnc", pki][..], Some("DEEVPC000000001")),
        ("iso20-dc", &["--pnc", pki][..], Some("DEEVPC000000001")),
        // -20 CertificateInstallation: the iso20_ contract delivered
        // (secp521r1, AES-GCM-256), then PnC with it
        (
            "iso20-dc",
            &["--pnc", pki, "--install-contract"][..],
            Some("DEEVPC000000001"),
        ),
        (
            "iso20-ac",
            &["--pnc", pki, "--iso2-contract"][..],
            Some("DEEVPC000000001"),
        ),
        ("iso20-dc", &["--eim"][..], None),
    ] {
        let mut args = vec![
            "--connect",
            &tls_addr,
            "--tls",
            pki,
            "--protocol",
            protocol,
            "--energy-kwh",
            "0.002",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = ev(&args);
        let s = summary(&out);
        assert!(
            out.status.success(),
            "{protocol} {extra:?}: {s} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(s["result"], "ok", "{s}");
        assert_eq!(s["emaid"].as_str(), emaid, "{s}");
        if extra.contains(&"--install-contract") {
            assert_eq!(
                s["contract"],
                serde_json::json!({"emaid": "DEEVPC000000001", "change": "installed"}),
                "{s}"
            );
        } else {
            assert!(s["contract"].is_null(), "{s}");
        }
        let e = evse.next_session();
        assert_eq!(e["result"], "ok", "{e}");
        assert_eq!(e["protocol"], protocol, "{e}");
        assert_eq!(e["emaid"].as_str(), emaid, "{e}");
        let tls = if protocol.starts_with("iso20") {
            "TLSv1.3"
        } else {
            "TLSv1.2"
        };
        assert_eq!(e["tls"], tls, "{e}");
    }
    // -20 has no CertificateUpdate: a clear refusal
    let out = ev(&[
        "--connect",
        &tls_addr,
        "--tls",
        pki,
        "--protocol",
        "iso20-dc",
        "--pnc",
        pki,
        "--renew-contract-within-days",
        "30",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-20 has no CertificateUpdate"), "{err}");
    drop(evse);
    let _ = std::fs::remove_dir_all(&dir);
}

/// ISO 15118-20 value-added services from the command line: an EVSE
/// offering Internet access (`--offer-internet`), a car selecting it
/// (`--vas 65`) and one not asking; both summaries list what was selected.
#[test]
fn a_car_selects_internet_access_offered_over_iso20() {
    let mut evse = Evse::start(&["--allow-iso20-without-tls", "--offer-internet"]);
    for (extra, vas) in [
        (&["--vas", "65,66"][..], serde_json::json!([[65, 1]])),
        (&[][..], serde_json::json!([])),
    ] {
        let mut args = vec![
            "--connect",
            &evse.addr,
            "--protocol",
            "iso20-dc",
            "--allow-iso20-without-tls",
            "--energy-kwh",
            "0.002",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = ev(&args);
        let s = summary(&out);
        assert!(out.status.success(), "{extra:?}: {s}");
        assert_eq!(s["result"], "ok", "{s}");
        assert_eq!(s["vas"], vas, "{s}");
        let e = evse.next_session();
        assert_eq!(e["result"], "ok", "{e}");
        assert_eq!(e["vas"], vas, "{e}");
    }
    // not over -2
    let out = ev(&[
        "--connect",
        &evse.addr,
        "--protocol",
        "iso2-dc",
        "--vas",
        "65",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vas"));
}

/// ISO 15118-20 service renegotiation from the command line: an EVSE that
/// supports it (`--service-renegotiation`) asks each car 0.3 s into its
/// charge (`--renegotiate-after-s`); the car stops, sends
/// SessionStop(ServiceRenegotiation), chooses its service again and
/// charges on in the same session. Both summaries count it.
#[test]
fn a_car_renegotiates_its_service_over_iso20_when_the_evse_asks() {
    let mut evse = Evse::start(&[
        "--allow-iso20-without-tls",
        "--service-renegotiation",
        "--renegotiate-after-s",
        "0.3",
    ]);
    for protocol in ["iso20-dc", "iso20-ac"] {
        let out = ev(&[
            "--connect",
            &evse.addr,
            "--protocol",
            protocol,
            "--allow-iso20-without-tls",
            "--energy-kwh",
            "0.02",
            "--json",
        ]);
        let s = summary(&out);
        assert!(out.status.success(), "{protocol}: {s}");
        assert_eq!(s["result"], "ok", "{s}");
        assert_eq!(s["service_renegotiations"], 1, "{s}");
        assert!(s["energy_wh"].as_f64().unwrap() >= 20.0, "{s}");
        let e = evse.next_session();
        assert_eq!(e["result"], "ok", "{e}");
        assert_eq!(e["service_renegotiations"], 1, "{e}");
    }
    // an EVSE without it asks nothing: no renegotiation
    let mut evse = Evse::start(&["--allow-iso20-without-tls", "--renegotiate-after-s", "0.3"]);
    let out = ev(&[
        "--connect",
        &evse.addr,
        "--protocol",
        "iso20-dc",
        "--allow-iso20-without-tls",
        "--energy-kwh",
        "0.02",
        "--json",
    ]);
    let s = summary(&out);
    assert_eq!(s["result"], "ok", "{s}");
    assert_eq!(s["service_renegotiations"], 0, "{s}");
    assert_eq!(evse.next_session()["service_renegotiations"], 0);
}
