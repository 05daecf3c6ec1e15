//! Bidirectional charging end to end (OCPP 2.1 block Q, `csms::v2x`),
//! against the simulator's 2.1 stations:
//!
//! - a bidirectional car plugs in and reports its needs (`AC_BPT` with its
//!   discharge power); the CSMS makes the session a V2X session and sends a
//!   Dynamic TxProfile whose `CentralSetpoint` charges, bounded by `limit`
//!   and `dischargeLimit`;
//! - a priced export request (`POST /api/grid/events`) makes the car
//!   discharge: an `UpdateDynamicSchedule` with a negative setpoint, then
//!   meter values with export energy and a net power below zero, within
//!   the discharge limit;
//! - the event deleted, another `UpdateDynamicSchedule` moves the setpoint
//!   back to charging;
//! - at the end the session shows its import and export energy and the
//!   discharge credit from the `v2x` tariff in minor units, with the net;
//! - a car that only charges (its needs reported too, not bidirectional)
//!   is never made a V2X session and never discharges.
//!
//! Everything is read from the meter values and the operator API; the
//! waits poll with generous deadlines (no timed assertions).

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use csms::events::LiveEvent;
use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};
use serde_json::{json, Value};

const KEY: &str = "v2x-test-api-key-0123456789abcdef";
const TOKEN: &str = "V2X-TOKEN";
/// The car's most charge and discharge power, W.
const CHARGE_W: f64 = 22_000.0;
const DISCHARGE_W: f64 = 11_000.0;
/// 0.30/kWh + 20 % VAT.
const TARIFF: &str = r#"{"currency": "EUR", "elements": [{"price_components": [
    {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1}]}]}"#;
/// What energy fed back is credited: 0.50/kWh + 20 % VAT.
const V2X_TARIFF: &str = r#"{"currency": "EUR", "elements": [{"price_components": [
    {"type": "ENERGY", "price": 0.50, "vat": 20.0, "step_size": 1}]}]}"#;

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::api(KEY, port, method, path, body).await
}

/// A decimal the API writes as a string (or a number).
fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

/// The station's active session (its detail view).
async fn active_session(port: u16, station: &str) -> Result<Value, String> {
    let list = common::items(
        KEY,
        port,
        &format!("/api/sessions?status=Active&station={station}&limit=10"),
    )
    .await;
    let id = list
        .first()
        .and_then(|s| s["id"].as_str())
        .ok_or_else(|| "no active session".to_owned())?
        .to_owned();
    Ok(api(port, "GET", &format!("/api/sessions/{id}"), None)
        .await
        .1)
}

async fn session(port: u16, id: &str) -> Value {
    api(port, "GET", &format!("/api/sessions/{id}"), None)
        .await
        .1
}

/// A meter value's readings by timestamp: measurand → value.
fn readings(
    detail: &Value,
) -> std::collections::BTreeMap<DateTime<Utc>, std::collections::BTreeMap<String, f64>> {
    let mut out: std::collections::BTreeMap<_, std::collections::BTreeMap<_, _>> =
        Default::default();
    for m in detail["meter_values"].as_array().into_iter().flatten() {
        let (Some(t), Some(name), Some(v)) = (
            m["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
            m["measurand"].as_str(),
            num(&m["value"]),
        ) else {
            continue;
        };
        out.entry(t.with_timezone(&Utc))
            .or_default()
            .insert(name.to_owned(), v);
    }
    out
}

/// The V2X setpoint the station took last: (setpoint, limit, discharge limit), W.
fn setpoint(detail: &Value) -> Result<(f64, f64, f64), String> {
    let v = &detail["v2x"];
    if v["status"] != "Accepted" {
        return Err(format!("no setpoint taken: {v}"));
    }
    let sp = &v["setpoint"];
    match (
        num(&sp["setpoint_w"]),
        num(&sp["limit_w"]),
        num(&sp["discharge_limit_w"]),
    ) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(format!("no setpoint: {v}")),
    }
}

fn station(prefix: &str, port: u16, behaviour: Behaviour) -> SimConfig {
    SimConfig {
        url: format!("ws://127.0.0.1:{port}/ocpp/"),
        stations: 1,
        versions: vec![ProtocolVersion::V21],
        connectors: (1, 1),
        // ended by the test (the sessions are stopped remotely)
        duration: Duration::from_secs(600),
        prefix: prefix.into(),
        password: None,
        behaviour,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_event_makes_a_bidirectional_car_discharge_and_the_export_is_credited() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = common::temp_dir("v2x");
    let mut config = common::lab_config(&dir, KEY);
    // needs that arrive before their session commits are bound on the next plan
    config.v2x.replan = Duration::from_secs(2);
    let csms = common::InProcess::start(config).await;
    let port = csms.started.admin_port;
    let mut live = common::live_events(KEY, port).await;
    for (id, body) in [("default", TARIFF), ("v2x", V2X_TARIFF)] {
        let (s, b) = api(
            port,
            "PUT",
            &format!("/api/tariffs/{id}"),
            Some(serde_json::from_str(body).unwrap()),
        )
        .await;
        assert!(s == 200 || s == 201, "tariff {id}: {s} {b}");
    }
    let (s, b) = api(
        port,
        "POST",
        "/api/tokens",
        Some(json!({"id_token": TOKEN, "status": "Accepted", "allow_concurrent": true})),
    )
    .await;
    assert!(s == 200 || s == 201, "token: {s} {b}");

    // A bidirectional car on V2X0 and one that only charges on ONE0, both
    // 2.1, plugged in at once for four hours (departure), metered every second.
    let car = Behaviour {
        idle_ms: (0, 200),
        session_ms: (4 * 3_600_000, 4 * 3_600_000),
        meter_interval_ms: 1_000,
        max_power_w: CHARGE_W,
        max_discharge_w: DISCHARGE_W,
        fault_per_s: 0.0,
        disconnect_per_s: 0.0,
        tokens: vec![TOKEN.into()],
        ..Behaviour::default()
    };
    let ocpp = csms.started.ocpp_port;
    let bidirectional = tokio::spawn(evproto_sim::run(
        station(
            "V2X",
            ocpp,
            Behaviour {
                v2x_share: 1.0,
                ..car.clone()
            },
        ),
        None,
    ));
    let charge_only = tokio::spawn(evproto_sim::run(
        station(
            "ONE",
            ocpp,
            Behaviour {
                ev_needs: true,
                ..car
            },
        ),
        None,
    ));
    let wait = Duration::from_secs(60);

    // 1. The bidirectional car's session is a V2X session: its needs kept,
    // a Dynamic TxProfile taken that charges within [dischargeLimit, limit].
    let detail = common::until(wait, "the V2X session's first setpoint", || async {
        let d = active_session(port, "V2X0").await?;
        setpoint(&d).map(|_| d)
    })
    .await;
    let id = detail["id"].as_str().unwrap().to_owned();
    let needs = &detail["v2x"]["needs"];
    assert_eq!(needs["transfer"], "AC_BPT", "{needs}");
    assert_eq!(num(&needs["max_discharge_w"]), Some(DISCHARGE_W));
    let (sp, limit, discharge_limit) = setpoint(&detail).unwrap();
    assert!(sp >= 0.0, "no event: it charges ({sp} W)");
    assert_eq!((limit, discharge_limit), (CHARGE_W, -DISCHARGE_W));
    common::until(wait, "import before the event", || async {
        let d = session(port, &id).await;
        let r = readings(&d);
        r.values()
            .find(|m| m.get("Power.Active.Import").is_some_and(|w| *w > 0.0))
            .map(|_| ())
            .ok_or_else(|| format!("{:?}", r.values().last()))
    })
    .await;

    // 2. A priced export request for the next half hour: the car discharges.
    let now = Utc::now();
    let event = json!({"id": "evening-peak", "start": now - chrono::Duration::minutes(1),
        "end": now + chrono::Duration::minutes(30), "export_limit_w": 50_000, "price": 0.60});
    let (s, b) = api(port, "POST", "/api/grid/events", Some(event)).await;
    assert_eq!(s, 201, "{b}");
    common::until(wait, "a negative setpoint taken", || async {
        let d = session(port, &id).await;
        match setpoint(&d)? {
            (sp, ..) if sp < 0.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (sp, _, discharge_limit) = setpoint(&session(port, &id).await).unwrap();
    assert!(
        sp >= discharge_limit && sp < 0.0,
        "{sp} W within {discharge_limit} W"
    );
    // meter values stamped after it was taken (a second for the station's clock)
    let taken = Utc::now() + chrono::Duration::seconds(1);
    let discharging = common::until(wait, "meter values while discharging", || async {
        let r = readings(&session(port, &id).await);
        let after: Vec<_> = r.range(taken..).map(|(_, m)| m.clone()).collect();
        if after.len() >= 3 {
            Ok(after)
        } else {
            Err(format!("{} readings after the setpoint", after.len()))
        }
    })
    .await;
    let mut export_before = None;
    for m in &discharging {
        let import = m.get("Power.Active.Import").copied().unwrap_or(0.0);
        let export = m.get("Power.Active.Export").copied().unwrap_or(0.0);
        let net = import - export;
        assert!(
            net < 0.0 && net >= discharge_limit && net >= sp - 1.0,
            "net power {net} W: negative, within {discharge_limit} W ({m:?})"
        );
        let register = *m
            .get("Energy.Active.Export.Register")
            .unwrap_or_else(|| panic!("export register: {m:?}"));
        if let Some(before) = export_before {
            assert!(register > before, "export energy grows: {m:?}");
        }
        export_before = Some(register);
    }

    // 3. The event deleted: the setpoint moves back to charging.
    let (s, b) = api(port, "DELETE", "/api/grid/events/evening-peak", None).await;
    assert_eq!(s, 204, "{b}");
    common::until(wait, "the setpoint back to charging", || async {
        match setpoint(&session(port, &id).await)? {
            (sp, ..) if sp > 0.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let back = Utc::now() + chrono::Duration::seconds(1);
    common::until(wait, "import again", || async {
        let r = readings(&session(port, &id).await);
        let after: Vec<_> = r.range(back..).map(|(_, m)| m.clone()).collect();
        match after.last() {
            Some(m)
                if m.get("Power.Active.Import").is_some_and(|w| *w > 0.0)
                    && m.get("Power.Active.Export").is_some_and(|w| *w == 0.0) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // 4. The sessions are stopped; the V2X one shows import, export and the credit.
    let one = common::until(wait, "the charge-only session", || async {
        active_session(port, "ONE0").await
    })
    .await;
    let one_id = one["id"].as_str().unwrap().to_owned();
    for (station, s) in [("V2X0", &detail), ("ONE0", &one)] {
        let (status, answer) = api(
            port,
            "POST",
            &format!("/api/stations/{station}/ocpp/RequestStopTransaction"),
            Some(json!({"transactionId": s["ocpp_tx_id"]})),
        )
        .await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("Accepted")),
            "{answer}"
        );
    }
    let done = common::until(wait, "the V2X session completed and credited", || async {
        let d = session(port, &id).await;
        if d["status"] == "Completed" && d["v2x"]["credit"].is_object() {
            Ok(d)
        } else {
            Err(format!("{} {}", d["status"], d["v2x"]))
        }
    })
    .await;
    let imported = num(&done["energy_wh"]).unwrap();
    let v = &done["v2x"];
    let exported = num(&v["exported_wh"]).unwrap();
    assert!(imported > 0.0, "import energy: {done}");
    assert!(exported > 0.0, "export energy: {v}");
    // the export register's span, as the meter values show it
    let registers: Vec<f64> = readings(&done)
        .values()
        .filter_map(|m| m.get("Energy.Active.Export.Register").copied())
        .collect();
    let span = registers.last().unwrap() - registers.first().unwrap();
    assert!((exported - span).abs() < 1e-6, "{exported} Wh vs {span} Wh");
    // the credit: 0.60/kWh incl. VAT on it, in cents (the tariff's 1 Wh
    // steps may round the energy up by less than a Wh, so one cent either way)
    let credit = &v["credit"];
    assert_eq!(credit["currency"], "EUR");
    let minor = credit["minor"].as_i64().unwrap();
    let expected = (exported / 1000.0 * 0.60 * 100.0).round() as i64;
    assert!(
        minor > 0 && (minor - expected).abs() <= 1,
        "credit {minor} cents for {exported} Wh (about {expected})"
    );
    assert_eq!(
        num(&credit["amount"]),
        Some(minor as f64 / 100.0),
        "{credit}"
    );
    let (s, cdr) = api(port, "GET", &format!("/api/sessions/{id}/cdr"), None).await;
    assert_eq!(s, 200, "{cdr}");
    let price = common::until(wait, "the session's price", || async {
        let d = session(port, &id).await;
        num(&d["v2x"]["net"]["minor"])
            .map(|net| (net, d))
            .ok_or_else(|| "no net yet".to_owned())
    })
    .await;
    let (net, _) = price;
    let total = num(&cdr["total_cost"]["incl_vat"]).unwrap();
    assert_eq!(
        net as i64,
        (total * 100.0).round() as i64 - minor,
        "net = price - credit: {cdr}"
    );
    assert!(
        v["receipt_line"]
            .as_str()
            .is_some_and(|l| l.starts_with("V2X energy fed back")),
        "{v}"
    );

    // 5. The car that only charges: its needs arrived, it was never made a
    // V2X session and never fed back.
    let kept = common::items(
        KEY,
        port,
        "/api/stations/ONE0/reports?kind=ev_charging_needs",
    )
    .await;
    assert!(
        kept.iter()
            .any(|r| r["body"]["chargingNeeds"]["requestedEnergyTransfer"] == "AC_three_phase"),
        "{kept:?}"
    );
    let one = common::until(wait, "the charge-only session completed", || async {
        let d = session(port, &one_id).await;
        if d["status"] == "Completed" {
            Ok(d)
        } else {
            Err(format!("{}", d["status"]))
        }
    })
    .await;
    assert!(
        one.get("v2x").is_none(),
        "not a V2X session: {}",
        one["v2x"]
    );
    let r = readings(&one);
    assert!(!r.is_empty());
    for m in r.values() {
        assert!(
            m.get("Power.Active.Export").is_none_or(|w| *w == 0.0)
                && m.get("Energy.Active.Export.Register").is_none(),
            "{m:?}"
        );
    }
    assert!(num(&one["energy_wh"]).unwrap() > 0.0);

    // 6. What the CSMS sent, from its live events: the V2X station got the
    // profile, then updates of it (to discharge, and back); the station of
    // the car that only charges got no setpoint at all.
    let mut calls = Vec::new();
    let mut setpoints = Vec::new();
    while let Ok((_, e)) = live.try_recv() {
        match e {
            LiveEvent::Operation { station, action } => calls.push((station, action)),
            LiveEvent::V2xSetpoint {
                station,
                session,
                setpoint_w,
                status,
            } => setpoints.push((station, session, setpoint_w.parse::<f64>().unwrap(), status)),
            _ => {}
        }
    }
    let to_v2x: Vec<&str> = calls
        .iter()
        .filter(|(s, a)| s == "V2X0" && (a == "SetChargingProfile" || a == "UpdateDynamicSchedule"))
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(to_v2x.first(), Some(&"SetChargingProfile"), "{calls:?}");
    assert!(
        to_v2x[1..]
            .iter()
            .filter(|a| **a == "UpdateDynamicSchedule")
            .count()
            >= 2,
        "{calls:?}"
    );
    assert!(
        setpoints
            .iter()
            .any(|(st, s, w, status)| st == "V2X0" && *s == id && *w < 0.0 && status == "Accepted"),
        "{setpoints:?}"
    );
    assert!(
        !setpoints
            .iter()
            .any(|(st, s, ..)| st == "ONE0" || *s == one_id),
        "{setpoints:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|(st, a)| st == "ONE0" && a == "UpdateDynamicSchedule"),
        "{calls:?}"
    );

    bidirectional.abort();
    charge_only.abort();
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
