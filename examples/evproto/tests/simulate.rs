//! `evproto simulate` against a recording CSMS (ocpp-server) in every
//! version: the stations boot, and answer the CSMS like real chargers —
//! remote start really starts a transaction, a charging profile limits the
//! reported power, remote stop ends it with the right reason, Reset makes the
//! station boot again — and the run stops by itself with an error-free report.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_rpc::{Ctx, Router, Routes};
use evproto_ocpp_server::{Security, Server};
use evproto_ocpp_types::{v16, v201, v21, Action};
use serde_json::{json, Value};

/// (identity, action, request)
type Call = (String, &'static str, Value);

#[derive(Clone, Default)]
struct Rec {
    calls: Arc<Mutex<Vec<Call>>>,
    next_tx: Arc<AtomicI64>,
}

impl Rec {
    fn of(&self, id: &str, action: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.0 == id && c.1 == action)
            .map(|c| c.2.clone())
            .collect()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn record<A: Action>(ctx: Ctx<Rec>, req: A::Request) -> Result<A::Response, CallError> {
    let v = serde_json::to_value(&req).unwrap();
    ctx.state
        .calls
        .lock()
        .unwrap()
        .push((ctx.identity.to_string(), A::NAME, v));
    let v16 = ctx.version == ProtocolVersion::V16;
    let answer = match A::NAME {
        "BootNotification" => json!({"currentTime": now(), "interval": 300, "status": "Accepted"}),
        "Heartbeat" => json!({"currentTime": now()}),
        "Authorize" if v16 => json!({"idTagInfo": {"status": "Accepted"}}),
        "Authorize" => json!({"idTokenInfo": {"status": "Accepted"}}),
        "StartTransaction" => {
            let id = 1000 + ctx.state.next_tx.fetch_add(1, Ordering::SeqCst);
            json!({"idTagInfo": {"status": "Accepted"}, "transactionId": id})
        }
        _ => json!({}),
    };
    Ok(evproto_ocpp_types::from_str(&answer.to_string()).expect("schema-valid test answer"))
}

fn routes(rec: &Rec) -> (Routes, Routes, Routes) {
    macro_rules! r {
        ($router:expr, $m:ident, [$($a:ident),*]) => {
            $router $(.on::<$m::action::$a>(record::<$m::action::$a>))* .with_state(rec.clone())
        };
    }
    (
        r!(
            Router::csms_v16(),
            v16,
            [
                BootNotification,
                Heartbeat,
                StatusNotification,
                Authorize,
                StartTransaction,
                MeterValues,
                StopTransaction
            ]
        ),
        r!(
            Router::csms_v201(),
            v201,
            [
                BootNotification,
                Heartbeat,
                StatusNotification,
                Authorize,
                TransactionEvent
            ]
        ),
        r!(
            Router::csms_v21(),
            v21,
            [
                BootNotification,
                Heartbeat,
                StatusNotification,
                Authorize,
                TransactionEvent
            ]
        ),
    )
}

/// The recording CSMS on a free loopback port, serving until the test ends.
async fn start_csms(rec: &Rec) -> (Server, u16) {
    let (r16, r201, r21) = routes(rec);
    let server = Server::builder(Security::unsecured())
        .v16(r16)
        .v201(r201)
        .v21(r21)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let srv = server.clone();
    tokio::spawn(async move { srv.serve(listener, std::future::pending::<()>()).await });
    (server, port)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn power_of(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    for mv in v["meterValue"].as_array().into_iter().flatten() {
        for s in mv["sampledValue"].as_array().into_iter().flatten() {
            if s["measurand"] == "Power.Active.Import" {
                out.push(match &s["value"] {
                    Value::String(x) => x.parse().unwrap(),
                    x => x.as_f64().unwrap(),
                });
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_answer_the_csms_like_chargers() {
    let rec = Rec::default();
    let (server, port) = start_csms(&rec).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_evproto"))
        .args([
            "simulate",
            "--url",
            &format!("ws://127.0.0.1:{port}/ocpp/"),
            "--stations",
            "3",
            "--duration",
            "14",
        ])
        .args([
            "--connectors",
            "2",
            "--idle",
            "100000",
            "--faults-per-hour",
            "0",
            "--drops-per-hour",
            "0",
        ])
        .args(["--meter-interval", "1", "--prefix", "SIMT", "--events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // SIMT0 speaks 1.6, SIMT1 2.0.1, SIMT2 2.1 (round-robin)
    for id in ["SIMT0", "SIMT1", "SIMT2"] {
        wait_for(&format!("{id} boot"), || {
            rec.of(id, "BootNotification").len() == 1
        })
        .await;
        wait_for(&format!("{id} status"), || {
            rec.of(id, "StatusNotification").len() >= 2
        })
        .await;
    }
    let call = |id: &'static str, action: &'static str, payload: Value| {
        let server = server.clone();
        async move {
            let peer = server.station(id).unwrap();
            let answer = peer
                .call_raw(action, payload.to_string())
                .await
                .unwrap_or_else(|e| panic!("{id} {action}: {e}"));
            serde_json::from_str::<Value>(&answer).unwrap()
        }
    };

    // remote start on connector / EVSE 2
    let a = call(
        "SIMT0",
        "RemoteStartTransaction",
        json!({"connectorId": 2, "idTag": "REMOTE1"}),
    )
    .await;
    assert_eq!(a["status"], "Accepted");
    for id in ["SIMT1", "SIMT2"] {
        let a = call(id, "RequestStartTransaction", json!({"evseId": 2, "remoteStartId": 42, "idToken": {"idToken": "REMOTE1", "type": "ISO14443"}})).await;
        assert_eq!(a["status"], "Accepted", "{a}");
    }
    wait_for("1.6 start", || {
        rec.of("SIMT0", "StartTransaction").len() == 1
    })
    .await;
    let start = &rec.of("SIMT0", "StartTransaction")[0];
    assert_eq!(
        (start["connectorId"].as_i64(), start["idTag"].as_str()),
        (Some(2), Some("REMOTE1"))
    );
    let mut tx2 = Vec::new();
    for id in ["SIMT1", "SIMT2"] {
        wait_for("2.x start", || !rec.of(id, "TransactionEvent").is_empty()).await;
        let started = &rec.of(id, "TransactionEvent")[0];
        assert_eq!(started["eventType"], "Started");
        assert_eq!(started["triggerReason"], "RemoteStart");
        assert_eq!(started["transactionInfo"]["remoteStartId"], 42);
        assert_eq!(started["evse"]["id"], 2);
        tx2.push(
            started["transactionInfo"]["transactionId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // charging at full power first: a meter value from each before the profile
    wait_for("1.6 meter value", || {
        !rec.of("SIMT0", "MeterValues").is_empty()
    })
    .await;
    for id in ["SIMT1", "SIMT2"] {
        wait_for("2.x meter value", || {
            rec.of(id, "TransactionEvent").len() >= 2
        })
        .await;
    }
    // a busy connector refuses a second start
    let a = call(
        "SIMT0",
        "RemoteStartTransaction",
        json!({"connectorId": 2, "idTag": "REMOTE2"}),
    )
    .await;
    assert_eq!(a["status"], "Rejected");

    // charging profiles limit the power to 3680 W
    let schedule = json!({"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3680}]});
    let a = call("SIMT0", "SetChargingProfile", json!({"connectorId": 2, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": schedule}})).await;
    assert_eq!(a["status"], "Accepted");
    for id in ["SIMT1", "SIMT2"] {
        let mut s = schedule.clone();
        s["id"] = json!(1);
        let a = call(id, "SetChargingProfile", json!({"evseId": 2, "chargingProfile": {"id": 1, "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": [s]}})).await;
        assert_eq!(a["status"], "Accepted", "{a}");
    }
    let marks: Vec<usize> = vec![
        rec.of("SIMT0", "MeterValues").len(),
        rec.of("SIMT1", "TransactionEvent").len(),
        rec.of("SIMT2", "TransactionEvent").len(),
    ];
    // at least one value past the ones in flight, from each (the machine may be busy)
    for (id, action, mark) in [
        ("SIMT0", "MeterValues", marks[0]),
        ("SIMT1", "TransactionEvent", marks[1]),
        ("SIMT2", "TransactionEvent", marks[2]),
    ] {
        wait_for(&format!("{id} meter values after the profile"), || {
            rec.of(id, action).len() >= mark + 3
        })
        .await;
    }
    let limited = |id: &str, action: &str, from: usize| -> Vec<f64> {
        rec.of(id, action)[from..]
            .iter()
            .flat_map(power_of)
            .collect()
    };
    for (id, action, from) in [
        // values already on their way when the profile arrived may still come: skip two
        ("SIMT0", "MeterValues", marks[0] + 2),
        ("SIMT1", "TransactionEvent", marks[1] + 2),
        ("SIMT2", "TransactionEvent", marks[2] + 2),
    ] {
        let p = limited(id, action, from);
        assert!(
            !p.is_empty(),
            "{id}: meter values after the profile (from {from}): {:?}",
            rec.of(id, action)
        );
        assert!(p.iter().all(|&w| (w - 3680.0).abs() < 0.01), "{id}: {p:?}");
    }
    // before the profile the stations charged at full power
    assert!(rec
        .of("SIMT0", "MeterValues")
        .iter()
        .flat_map(power_of)
        .any(|w| w > 20_000.0));

    // remote stop ends the transaction with reason Remote
    let tx1 = rec.of("SIMT0", "MeterValues")[0]["transactionId"]
        .as_i64()
        .unwrap();
    let a = call(
        "SIMT0",
        "RemoteStopTransaction",
        json!({"transactionId": tx1}),
    )
    .await;
    assert_eq!(a["status"], "Accepted");
    assert_eq!(
        call(
            "SIMT0",
            "RemoteStopTransaction",
            json!({"transactionId": 999_999})
        )
        .await["status"],
        "Rejected"
    );
    for (id, tx) in ["SIMT1", "SIMT2"].into_iter().zip(&tx2) {
        let a = call(id, "RequestStopTransaction", json!({"transactionId": tx})).await;
        assert_eq!(a["status"], "Accepted");
    }
    wait_for("1.6 stop", || rec.of("SIMT0", "StopTransaction").len() == 1).await;
    let stop = &rec.of("SIMT0", "StopTransaction")[0];
    assert_eq!(
        (stop["transactionId"].as_i64(), stop["reason"].as_str()),
        (Some(tx1), Some("Remote"))
    );
    assert!(stop["meterStop"].as_i64().unwrap() > start["meterStart"].as_i64().unwrap());
    for id in ["SIMT1", "SIMT2"] {
        wait_for("2.x end", || {
            rec.of(id, "TransactionEvent")
                .iter()
                .any(|e| e["eventType"] == "Ended")
        })
        .await;
        let events = rec.of(id, "TransactionEvent");
        let ended = events.iter().find(|e| e["eventType"] == "Ended").unwrap();
        assert_eq!(ended["transactionInfo"]["stoppedReason"], "Remote");
        // seqNo counts up without gaps from 0
        let seq: Vec<i64> = events
            .iter()
            .map(|e| e["seqNo"].as_i64().unwrap())
            .collect();
        assert_eq!(seq, (0..seq.len() as i64).collect::<Vec<_>>(), "{id}");
    }

    // configuration and variables
    let a = call(
        "SIMT0",
        "GetConfiguration",
        json!({"key": ["HeartbeatInterval", "NoSuchKey"]}),
    )
    .await;
    assert_eq!(a["configurationKey"][0]["value"], "300");
    assert_eq!(a["unknownKey"][0], "NoSuchKey");
    let a = call("SIMT1", "GetVariables", json!({"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})).await;
    assert_eq!(a["getVariableResult"][0]["attributeValue"], "300");

    // Reset: the station reboots and boots again
    assert_eq!(
        call("SIMT0", "Reset", json!({"type": "Hard"})).await["status"],
        "Accepted"
    );
    assert_eq!(
        call("SIMT2", "Reset", json!({"type": "Immediate"})).await["status"],
        "Accepted"
    );
    for id in ["SIMT0", "SIMT2"] {
        wait_for(&format!("{id} reboot"), || {
            rec.of(id, "BootNotification").len() == 2
        })
        .await;
    }

    // the run ends by itself
    let t = Instant::now();
    let out = loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "simulate did not stop by itself"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["error_count"], 0, "{report}");
    assert_eq!(report["stations"], 3);
    assert_eq!(report["booted"], 3);
    assert_eq!(report["reboots"], 2, "{report}");
    assert_eq!(report["sessions_started"], 3, "{report}");
    assert_eq!(report["sessions_completed"], 3, "{report}");
    assert_eq!(report["csms_calls"]["RemoteStartTransaction"], 2);
    assert_eq!(report["csms_calls"]["RequestStartTransaction"], 2);
    assert_eq!(report["queued_at_end"], 0);
    // the event lines name what the CSMS asked
    assert!(out
        .lines()
        .any(|l| l.contains("\"csms_call\"") && l.contains("SetChargingProfile")));
}

#[test]
fn refuses_remote_targets_and_bad_options() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_evproto"))
            .arg("simulate")
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["--url", "ws://192.0.2.1:9000/ocpp/", "--duration", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not loopback"));
    let o = run(&["--connectors", "5"]);
    assert!(!o.status.success());
    let o = run(&["--session", "9-3"]);
    assert!(!o.status.success());
    let o = run(&["--url", "http://127.0.0.1:1/"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("ws://"));
    let o = run(&["--duration", "0"]);
    assert!(!o.status.success());
    // every option is documented
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for opt in [
        "--url",
        "--stations",
        "--duration",
        "--ramp",
        "--ocpp",
        "--connectors",
        "--idle",
        "--session",
        "--meter-interval",
        "--max-power",
        "--faults-per-hour",
        "--drops-per-hour",
        "--tokens",
        "--prefix",
        "--password",
        "--seed",
        "--no-deflate",
        "--events",
        "--allow-remote",
    ] {
        assert!(help.contains(opt), "{opt} missing from --help");
    }
}

/// Faults and network drops on, every version: a short busy run delivers
/// every transaction message (the durable queue) and reports no errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_run_with_faults_and_drops_loses_nothing() {
    let rec = Rec::default();
    let (_server, port) = start_csms(&rec).await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_evproto"))
            .args([
                "simulate",
                "--url",
                &format!("ws://127.0.0.1:{port}/ocpp/"),
                "--stations",
                "9",
                "--duration",
                "12",
            ])
            .args([
                "--idle",
                "1-3",
                "--session",
                "3-6",
                "--meter-interval",
                "1",
                "--faults-per-hour",
                "200",
                "--drops-per-hour",
                "300",
                "--seed",
                "7",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let report: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["error_count"], 0, "{report}");
    assert_eq!(report["booted"], 9);
    assert_eq!(report["queued_at_end"], 0, "{report}");
    let started = report["sessions_started"].as_u64().unwrap();
    assert!(started >= 9, "{report}");
    assert_eq!(
        report["sessions_completed"].as_u64().unwrap(),
        started,
        "every session ended: {report}"
    );
    // the CSMS saw every transaction end exactly once
    let ends = {
        let calls = rec.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| {
                c.1 == "StopTransaction"
                    || (c.1 == "TransactionEvent" && c.2["eventType"] == "Ended")
            })
            .count()
    };
    assert_eq!(ends as u64, started, "{report}");
}

/// Issue 14: `--url` without the trailing slash, or as the CSMS prints it
/// (`/ocpp/{identity}`), reaches `/ocpp/{identity}`: every station boots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_simulate_accepts_the_url_as_users_type_it() {
    let rec = Rec::default();
    let (_server, port) = start_csms(&rec).await;
    for (path, prefix) in [("/ocpp", "NOSLASH"), ("/ocpp/{identity}", "PLACEHOLDER")] {
        let url = format!("ws://127.0.0.1:{port}{path}");
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_evproto"))
                .args(["simulate", "--url", &url, "--stations", "2"])
                .args(["--duration", "1", "--ramp", "100", "--prefix", prefix])
                .args(["--faults-per-hour", "0", "--drops-per-hour", "0"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{path}: {stdout}");
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(report["booted"], 2, "{path}: {report}");
        for i in 0..2 {
            assert_eq!(
                rec.of(&format!("{prefix}{i}"), "BootNotification").len(),
                1,
                "{path}"
            );
        }
    }
}
