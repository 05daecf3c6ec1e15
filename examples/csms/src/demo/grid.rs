//! The demo's grid step: a V2X session discharging under a grid event.
//!
//! A 2.1 station (`GRID0`) with a bidirectional car starts charging; the
//! `v2x` tariff prices what cars feed back. A grid event (an export
//! request priced 0.60/kWh over the next half hour, `POST
//! /api/grid/events`) makes the CSMS plan the car to discharge: its
//! Dynamic TxProfile (or the update of it) carries a negative
//! `CentralSetpoint` within the `dischargeLimit`, and the car's meter
//! values show export power and energy. When the run ends the session is
//! completed with its energy fed back and its credit in minor units
//! ([`crate::v2x`]). One step reports it all; its detail has `setpoint_w`,
//! `discharge_limit_w`, `export_power_w`, `exported_wh`, `credit` and
//! `net`.

use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};
use serde_json::{json, Value};

use super::{api, Steps, PASSWORD, TOKEN};

const STATION: &str = "GRID0";
/// What energy fed back is credited: 0.50/kWh + 20 % VAT.
const V2X_TARIFF: &str = r#"{"currency": "EUR", "elements": [{"price_components": [
    {"type": "ENERGY", "price": 0.50, "vat": 20.0, "step_size": 1}]}]}"#;
const EVENT: &str = "demo-export-request";

/// A decimal the API writes as a string (or a number).
fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

/// Polls `check` on what `GET path` answers every 200 ms, at most `tries`
/// times: whether it held, and the answer it held on (or the last one).
async fn poll(
    port: u16,
    key: &str,
    path: &str,
    tries: u32,
    check: impl Fn(&Value) -> bool,
) -> Result<(bool, Value), String> {
    let mut last = Value::Null;
    for _ in 0..tries {
        let (_, v) = api(port, key, "GET", path, None).await?;
        if check(&v) {
            return Ok((true, v));
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((false, last))
}

/// The export power of the session's last meter value, W (0 without one).
fn export_power(detail: &Value) -> f64 {
    detail["meter_values"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .filter(|m| m["measurand"] == "Power.Active.Export")
        .find_map(|m| num(&m["value"]))
        .unwrap_or(0.0)
}

/// Runs the grid step (see the module docs).
///
/// # Errors
///
/// The CSMS's API could not be reached, or the simulator failed to run.
pub(super) async fn story(
    port: u16,
    key: &str,
    ocpp_port: u16,
    steps: &mut Steps,
) -> Result<(), String> {
    let (s1, _) = api(
        port,
        key,
        "PUT",
        &format!("/api/stations/{STATION}"),
        Some(&json!({"password": PASSWORD})),
    )
    .await?;
    let tariff: Value = serde_json::from_str(V2X_TARIFF).map_err(|e| e.to_string())?;
    let (s2, _) = api(port, key, "PUT", "/api/tariffs/v2x", Some(&tariff)).await?;
    steps.record(
        "grid: a 2.1 station with a bidirectional car, the v2x credit tariff",
        s1 == 201 && s2 == 201,
        json!({"station": STATION, "status": [s1, s2]}),
    );
    let sim = tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{ocpp_port}/ocpp/"),
            stations: 1,
            versions: vec![ProtocolVersion::V21],
            connectors: (1, 1),
            duration: Duration::from_secs(15),
            prefix: "GRID".into(),
            password: Some(PASSWORD.into()),
            behaviour: Behaviour {
                idle_ms: (0, 200),
                // plugged in until the evening: it has time to charge back
                session_ms: (4 * 3_600_000, 4 * 3_600_000),
                meter_interval_ms: 500,
                max_power_w: 11_000.0,
                max_discharge_w: 11_000.0,
                v2x_share: 1.0,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                tokens: vec![TOKEN.into()],
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));
    let active = format!("/api/sessions?status=Active&station={STATION}&limit=1");
    let (_, list) = poll(port, key, &active, 50, |l| {
        l["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await?;
    let id = list["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // the export request: from a minute ago for half an hour
    let now = chrono::Utc::now();
    let event = json!({"id": EVENT, "start": now - chrono::Duration::minutes(1),
        "end": now + chrono::Duration::minutes(30), "export_limit_w": 50_000, "price": 0.60});
    let (posted, _) = api(port, key, "POST", "/api/grid/events", Some(&event)).await?;
    let path = format!("/api/sessions/{id}");
    let (discharging, detail) = poll(port, key, &path, 50, |d| {
        d["v2x"]["status"] == "Accepted"
            && num(&d["v2x"]["setpoint"]["setpoint_w"]).is_some_and(|w| w < 0.0)
    })
    .await?;
    let setpoint = &detail["v2x"]["setpoint"];
    let (exporting, with_export) = poll(port, key, &path, 50, |d| export_power(d) > 0.0).await?;
    let report = sim.await.map_err(|e| e.to_string())??;
    let (_, done) = poll(port, key, &path, 50, |d| {
        d["status"] == "Completed" && d["v2x"]["credit"].is_object()
    })
    .await?;
    let (deleted, _) = api(
        port,
        key,
        "DELETE",
        &format!("/api/grid/events/{EVENT}"),
        None,
    )
    .await?;
    let v2x = &done["v2x"];
    let exported = num(&v2x["exported_wh"]).unwrap_or(0.0);
    let credit = v2x["credit"]["minor"].as_i64().unwrap_or(0);
    steps.record(
        "grid: a V2X session discharged under a grid event, its export credited",
        !id.is_empty()
            && posted == 201
            && discharging
            && exporting
            && exported > 0.0
            && credit > 0
            && deleted == 204
            && report.error_count() == 0,
        json!({"session": id, "setpoint_w": num(&setpoint["setpoint_w"]),
            "discharge_limit_w": num(&setpoint["discharge_limit_w"]),
            "export_power_w": export_power(&with_export), "imported_wh": num(&done["energy_wh"]),
            "exported_wh": exported, "credit": v2x["credit"], "net": v2x["net"],
            "receipt_line": v2x["receipt_line"], "simulator_errors": report.errors}),
    );
    Ok(())
}
