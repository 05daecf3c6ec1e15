//! DER control end to end (OCPP 2.1 block R, `csms::der`), against the
//! simulator's 2.1 station:
//!
//! - `SetDERControl` from the operator API reaches the station and what it
//!   accepted is kept per station; a second control of the same type
//!   supersedes the first (the station says so, the CSMS drops it);
//! - `GetDERControl` is answered now, and the station's `ReportDERControl`
//!   is kept and shown with the controls;
//! - `ClearDERControl` clears it at the station and in the CSMS;
//! - a grid fault at the station (`NotifyDERAlarm`) raises a `der_alarm`
//!   alert, cleared when the station reports the alarm ended;
//! - a 2.0.1 station gets none of it (409), an unknown one is a 404;
//! - the site's policy (`/api/der-policy`) is installed on the 2.1 stations
//!   it names when they boot, and again on the connected ones when it
//!   changes; the results are kept per station and control; a control a
//!   station does not support is a `der_policy` alert, cleared when a later
//!   policy succeeds there.

mod common;

use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::model::{Behaviour, GridFault};
use evproto_sim::SimConfig;
use serde_json::{json, Value};

const KEY: &str = "der-test-api-key-0123456789abcdef";

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::api(KEY, port, method, path, body).await
}

/// A `LimitMaxDischarge` control at `pct` % of the discharge power.
fn limit_max_discharge(id: &str, pct: u32) -> Value {
    json!({"isDefault": false, "controlId": id, "controlType": "LimitMaxDischarge",
        "limitMaxDischarge": {"priority": 1, "pctMaxDischargePower": pct,
            "startTime": "2026-01-01T00:00:00Z", "duration": 86400}})
}

/// `POST /api/stations/{station}/der-controls` with `control`.
async fn set(port: u16, station: &str, control: Value) -> (u16, Value) {
    let path = format!("/api/stations/{station}/der-controls");
    api(port, "POST", &path, Some(control)).await
}

/// `POST /api/stations/DER0/der-controls/report` (GetDERControl) with `body`.
async fn ask(port: u16, body: Value) -> (u16, Value) {
    let path = "/api/stations/DER0/der-controls/report";
    api(port, "POST", path, Some(body)).await
}

/// `DELETE /api/stations/DER0/der-controls/{id}` (ClearDERControl).
async fn clear(port: u16, id: &str) -> (u16, Value) {
    let path = format!("/api/stations/DER0/der-controls/{id}");
    api(port, "DELETE", &path, None).await
}

/// Sets `control` on `station` as soon as it is connected: the answer,
/// once the API's status is `want`.
async fn set_once_connected(port: u16, station: &str, control: Value, want: u16) -> Value {
    let what = format!("{station} connected, the control answered with {want}");
    common::until(Duration::from_secs(60), &what, || async {
        let (s, b) = set(port, station, control.clone()).await;
        if s == want {
            Ok(b)
        } else {
            Err(format!("{s} {b}"))
        }
    })
    .await
}

/// The station's kept controls, by id.
async fn kept(port: u16, station: &str) -> (Vec<String>, Value) {
    let (s, b) = api(
        port,
        "GET",
        &format!("/api/stations/{station}/der-controls"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let ids = b["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["control_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, b)
}

/// The station's `der_alarm` alerts: (open, cleared).
async fn alarms(port: u16, station: &str) -> (usize, usize) {
    alerts(port, station, "der_alarm").await
}

/// The station's alerts of `kind`: (open, cleared).
async fn alerts(port: u16, station: &str, kind: &str) -> (usize, usize) {
    let items: Vec<Value> = common::items(
        KEY,
        port,
        &format!("/api/alerts?station={station}&limit=100"),
    )
    .await
    .into_iter()
    .filter(|a| a["kind"] == kind)
    .collect();
    let open = items.iter().filter(|a| a["cleared_at"].is_null()).count();
    (open, items.len() - open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn der_controls_are_set_read_back_cleared_and_alarms_become_alerts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = common::temp_dir("der");
    let csms = common::InProcess::start(common::lab_config(&dir, KEY)).await;
    let port = csms.started.admin_port;

    // DER0 speaks 2.1 and sees an over-voltage 8 s after it starts, for
    // 4 s (tripping its HVMustTrip control); DER1 speaks 2.0.1. No drivers.
    let sim = tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{}/ocpp/", csms.started.ocpp_port),
            stations: 2,
            versions: vec![ProtocolVersion::V21, ProtocolVersion::V201],
            connectors: (1, 1),
            duration: Duration::from_secs(600),
            prefix: "DER".into(),
            password: None,
            behaviour: Behaviour {
                idle_ms: (3_600_000, 3_600_000),
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                grid_faults: vec![GridFault {
                    at_ms: 8_000,
                    lasts_ms: 4_000,
                    fault: "OverVoltage".into(),
                    control_type: "HVMustTrip".into(),
                }],
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));
    let wait = Duration::from_secs(60);

    // 1. SetDERControl reaches the 2.1 station and is kept per station.
    let answer = set_once_connected(port, "DER0", limit_max_discharge("lmd-1", 50), 200).await;
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let (ids, body) = kept(port, "DER0").await;
    assert_eq!(ids, ["lmd-1"], "{body}");
    let c = &body["controls"][0];
    assert_eq!(
        (&c["control_type"], &c["is_default"], &c["status"]),
        (
            &json!("LimitMaxDischarge"),
            &json!(false),
            &json!("Accepted")
        )
    );
    assert_eq!(
        c["request"]["limitMaxDischarge"]["pctMaxDischargePower"],
        50
    );
    // the same type again: the station says it superseded the first
    let (s, answer) = set(port, "DER0", limit_max_discharge("lmd-2", 30)).await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["supersededIds"], json!(["lmd-1"]), "{answer}");
    assert_eq!(kept(port, "DER0").await.0, ["lmd-2"]);
    // not a SetDERControlRequest: a 400 with the reason
    let (s, b) = set(port, "DER0", json!({"controlId": "x"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].is_string(), "{b}");

    // 2. GetDERControl: answered now, the station's report kept.
    let (s, b) = ask(port, json!({"control_type": "LimitMaxDischarge"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["answer"]["status"], "Accepted", "{b}");
    let request_id = b["request_id"].as_i64().unwrap();
    let report = common::until(wait, "the ReportDERControl kept", || async {
        let (_, body) = kept(port, "DER0").await;
        body["reports"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["requestId"] == request_id).cloned())
            .ok_or_else(|| format!("{body}"))
    })
    .await;
    let listed = &report["limitMaxDischarge"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(listed[0]["id"], "lmd-2");
    assert_eq!(listed[0]["limitMaxDischarge"]["pctMaxDischargePower"], 30);

    // 3. ClearDERControl: cleared at the station and no longer kept.
    let (s, b) = clear(port, "lmd-2").await;
    assert_eq!((s, &b["status"]), (200, &json!("Accepted")), "{b}");
    assert!(kept(port, "DER0").await.0.is_empty());
    let (s, b) = ask(port, json!({"control_id": "lmd-2"})).await;
    assert_eq!(
        (s, &b["answer"]["status"]),
        (200, &json!("NotFound")),
        "{b}"
    );
    let (s, b) = clear(port, "lmd-2").await;
    assert_eq!(s, 404, "{b}");

    // 4. The station's alarm is an alert until it says the alarm ended.
    common::until(wait, "a der_alarm alert raised", || async {
        match alarms(port, "DER0").await {
            (open, cleared) if open + cleared > 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    common::until(wait, "the der_alarm alert cleared", || async {
        match alarms(port, "DER0").await {
            (0, 1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let bodies: Vec<Value> = common::items(KEY, port, "/api/stations/DER0/reports?kind=der_alarm")
        .await
        .into_iter()
        .map(|r| r["body"].clone())
        .collect();
    assert!(
        bodies.iter().any(|b| b["controlType"] == "HVMustTrip"
            && b["gridEventFault"] == "OverVoltage"
            && b["alarmEnded"] == true),
        "{bodies:?}"
    );

    // 5. Not for 2.0.1 stations; unknown ones are not connected.
    set_once_connected(port, "DER1", limit_max_discharge("lmd-3", 10), 409).await;
    let (s, b) = set(port, "NOPE", limit_max_discharge("lmd-4", 10)).await;
    assert_eq!(s, 404, "{b}");
    assert!(kept(port, "DER1").await.0.is_empty());

    sim.abort();
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A volt-watt curve (default control): full power up to 106 % of the
/// nominal voltage, none from 110 %.
fn volt_watt(id: &str) -> Value {
    json!({"isDefault": true, "controlId": id, "controlType": "VoltWatt",
        "curve": {"priority": 1, "yUnit": "PctMaxW",
            "curveData": [{"x": 106, "y": 100}, {"x": 110, "y": 0}]}})
}

/// A default `LimitMaxDischarge` at `pct` %.
fn default_limit(id: &str, pct: u32) -> Value {
    json!({"isDefault": true, "controlId": id, "controlType": "LimitMaxDischarge",
        "limitMaxDischarge": {"priority": 1, "pctMaxDischargePower": pct}})
}

/// The policy's results of `station`: control id → status.
async fn policy_results(port: u16, station: &str) -> Vec<(String, String)> {
    let (s, b) = api(port, "GET", "/api/der-policy", None).await;
    assert_eq!(s, 200, "{b}");
    b["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["station"] == station)
        .map(|r| {
            (
                r["control_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A sim run of `stations` from `prefix`, of `versions`, whose DER
/// function lacks `unsupported`, no drivers.
fn policy_sim(
    port: u16,
    prefix: &str,
    versions: Vec<ProtocolVersion>,
    unsupported: &[&str],
) -> tokio::task::JoinHandle<Result<evproto_sim::Report, String>> {
    tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{port}/ocpp/"),
            stations: versions.len(),
            versions,
            connectors: (1, 1),
            duration: Duration::from_secs(600),
            prefix: prefix.into(),
            password: None,
            behaviour: Behaviour {
                idle_ms: (3_600_000, 3_600_000),
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                der_unsupported: unsupported.iter().map(|s| s.to_string()).collect(),
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_policy_is_installed_on_boot_and_on_change_and_failures_are_alerts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = common::temp_dir("der-policy");
    let csms = common::InProcess::start(common::lab_config(&dir, KEY)).await;
    let (port, ocpp) = (csms.started.admin_port, csms.started.ocpp_port);
    let wait = Duration::from_secs(60);

    // 1. The policy, set before any station is there; bad ones are 400s.
    let (s, b) = api(port, "GET", "/api/der-policy", None).await;
    assert_eq!((s, &b["policy"]), (200, &Value::Null), "{b}");
    let stations = json!(["POL*", "BAD*"]);
    let policy = json!({"stations": stations,
        "controls": [volt_watt("site-vw"), default_limit("site-lmd", 50)]});
    let (s, b) = api(port, "PUT", "/api/der-policy", Some(policy)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["applying_to"], json!([]), "{b}");
    for bad in [
        json!({"controls": []}),
        json!({"controls": [{"controlId": "x"}]}),
        json!({"controls": [volt_watt("a"), default_limit("a", 1)]}),
        json!({"stations": [], "controls": [volt_watt("a")]}),
        json!({"controls": [volt_watt("a")], "extra": 1}),
    ] {
        let (s, b) = api(port, "PUT", "/api/der-policy", Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad} → {b}");
        assert!(b["error"].is_string(), "{b}");
    }

    // 2. Stations boot: POL0 (2.1) takes both controls, POL1 (2.0.1) is
    // not asked, BAD0 (2.1) has no volt-watt function, OTH0 is not named.
    let sims = [
        policy_sim(
            ocpp,
            "POL",
            vec![ProtocolVersion::V21, ProtocolVersion::V201],
            &[],
        ),
        policy_sim(ocpp, "BAD", vec![ProtocolVersion::V21], &["VoltWatt"]),
        policy_sim(ocpp, "OTH", vec![ProtocolVersion::V21], &[]),
    ];
    let both = |a: &str, b: &str| {
        vec![
            ("site-lmd".to_owned(), a.to_owned()),
            ("site-vw".to_owned(), b.to_owned()),
        ]
    };
    for (station, want) in [
        ("POL0", both("Accepted", "Accepted")),
        ("BAD0", both("Accepted", "NotSupported")),
    ] {
        common::until(
            wait,
            &format!("{station}: the policy applied at its boot"),
            || {
                let want = want.clone();
                async move {
                    match policy_results(port, station).await {
                        r if r == want => Ok(()),
                        r => Err(format!("{r:?}")),
                    }
                }
            },
        )
        .await;
    }
    assert_eq!(kept(port, "POL0").await.0, ["site-lmd", "site-vw"]);
    assert_eq!(kept(port, "BAD0").await.0, ["site-lmd"]);
    // OTH0 booted too (it answers the per-station route), untouched by the policy
    set_once_connected(port, "OTH0", limit_max_discharge("own", 70), 200).await;
    for station in ["POL1", "OTH0"] {
        assert!(policy_results(port, station).await.is_empty(), "{station}");
    }
    assert_eq!(kept(port, "OTH0").await.0, ["own"]);
    // what failed is an alert of the station that failed it
    assert_eq!(alerts(port, "BAD0", "der_policy").await, (1, 0));
    assert_eq!(alerts(port, "POL0", "der_policy").await, (0, 0));

    // 3. The policy changes: installed at once on the connected stations it names.
    let policy = json!({"stations": stations, "controls": [default_limit("site-lmd", 30)]});
    let (s, b) = api(port, "PUT", "/api/der-policy", Some(policy)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["applying_to"], json!(["BAD0", "POL0"]), "{b}");
    common::until(wait, "BAD0's der_policy alert cleared", || async {
        match alerts(port, "BAD0", "der_policy").await {
            (0, 1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for station in ["POL0", "BAD0"] {
        common::until(
            wait,
            &format!("{station}: the new policy applied"),
            || async move {
                let (_, body) = kept(port, station).await;
                let lmd = body["controls"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["control_id"] == "site-lmd").cloned())
                    .unwrap_or_default();
                match lmd["request"]["limitMaxDischarge"]["pctMaxDischargePower"].as_i64() {
                    Some(30) => Ok(()),
                    _ => Err(format!("{body}")),
                }
            },
        )
        .await;
        let r = policy_results(port, station).await;
        assert_eq!(r, [("site-lmd".to_owned(), "Accepted".to_owned())]);
    }

    // 4. Dropped: no policy, no results; a second drop is a 404.
    let (s, _) = api(port, "DELETE", "/api/der-policy", None).await;
    assert_eq!(s, 204);
    let (s, b) = api(port, "GET", "/api/der-policy", None).await;
    assert_eq!(
        (s, &b["policy"], &b["results"]),
        (200, &Value::Null, &json!([])),
        "{b}"
    );
    let (s, b) = api(port, "DELETE", "/api/der-policy", None).await;
    assert_eq!(s, 404, "{b}");

    for sim in sims {
        sim.abort();
    }
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
