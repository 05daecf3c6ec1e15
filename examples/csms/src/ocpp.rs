//! The OCPP side: one handler per action a station sends, in every version.
//!
//! Requests arrive decoded and schema-checked by `ocpp-rpc` (a broken one
//! gets the version's CALLERROR before it reaches us). Each handler works on
//! the request's JSON view, so one body serves 1.6, 2.0.1 and 2.1, and
//! answers are checked against the response schema before they leave. A
//! handler writes to the store *before* it answers: if the write fails the
//! station gets `InternalError` and retries, so nothing is acknowledged
//! without being kept.

use std::sync::Arc;

use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_rpc::{Ctx, Router, Routes};
use evproto_ocpp_types::{v16, v201, v21, Action};
use serde_json::{json, Value};

use crate::store::{to_wh, TxEvent};
use crate::App;

/// The version's name as stored and shown.
pub fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V16 => "1.6",
        ProtocolVersion::V201 => "2.0.1",
        _ => "2.1",
    }
}

fn now() -> String {
    crate::store::now()
}

async fn handle<A: Action>(ctx: Ctx<Arc<App>>, req: A::Request) -> Result<A::Response, CallError> {
    let v = serde_json::to_value(&req).map_err(|_| CallError::internal())?;
    let answer = on_call(&ctx.state, &ctx.identity, ctx.version, A::NAME, &v).await.map_err(|e| {
        tracing::error!(station = %ctx.identity, action = A::NAME, "not answered, the store failed: {e}");
        CallError::internal()
    })?;
    evproto_ocpp_types::from_str::<A::Response>(&answer.to_string()).map_err(|e| {
        tracing::error!(station = %ctx.identity, action = A::NAME, "own answer broke the schema: {e}");
        CallError::internal()
    })
}

/// The routes for every version.
pub fn routes(app: &Arc<App>) -> (Routes, Routes, Routes) {
    macro_rules! r {
        ($router:expr, $m:ident, [$($a:ident),*]) => {
            $router $(.on::<$m::action::$a>(handle::<$m::action::$a>))* .with_state(app.clone())
        };
    }
    macro_rules! v2 {
        ($router:expr, $m:ident) => {
            r!(
                $router,
                $m,
                [
                    BootNotification,
                    Heartbeat,
                    StatusNotification,
                    Authorize,
                    TransactionEvent,
                    MeterValues,
                    FirmwareStatusNotification,
                    LogStatusNotification,
                    SecurityEventNotification,
                    NotifyEvent,
                    NotifyReport,
                    ReservationStatusUpdate,
                    DataTransfer
                ]
            )
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
                StopTransaction,
                MeterValues,
                FirmwareStatusNotification,
                DiagnosticsStatusNotification,
                DataTransfer,
                SecurityEventNotification,
                LogStatusNotification,
                SignedFirmwareStatusNotification
            ]
        ),
        v2!(Router::csms_v201(), v201),
        v2!(Router::csms_v21(), v21),
    )
}

/// Refreshes the station's OCPI Location and pushes it to partners, in
/// the background (the station's answer does not wait for partners).
fn location_changed(app: &App, station: &str) {
    if let Some(r) = app.roaming() {
        let r = r.clone();
        let station = station.to_owned();
        tokio::spawn(async move { r.location_changed(&station).await });
    }
}

/// Seconds between two CostUpdated calls for the same transaction.
const COST_UPDATE_EVERY_S: i64 = 60;

/// Sends the running cost with CostUpdated (2.0.1 I02 "Show EV Driver
/// Running Total Cost During Charging"), at most once a minute per
/// transaction, in the background — only to stations whose device model
/// says `TariffCostCtrlr.Enabled[Cost]` is true (the use case's
/// precondition; a station without it may never answer, which would hold
/// up every other call to it).
fn cost_updated(app: &App, station: &str, tx_id: &str, cost: rust_decimal::Decimal) {
    let Some(me) = app.arc() else { return };
    let (station, tx_id) = (station.to_owned(), tx_id.to_owned());
    tokio::spawn(async move {
        let enabled = me
            .store
            .device_variable(&station, "TariffCostCtrlr", "Enabled[Cost]")
            .await
            .ok()
            .flatten()
            .is_some_and(|d| {
                d["variableAttribute"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| {
                        a["type"].as_str().unwrap_or("Actual") == "Actual" && a["value"] == "true"
                    })
            });
        if enabled {
            send_cost_updated(&me, &station, &tx_id, cost);
        }
    });
}

fn send_cost_updated(app: &App, station: &str, tx_id: &str, cost: rust_decimal::Decimal) {
    static LAST: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, i64>>> =
        std::sync::OnceLock::new();
    let key = format!("{station}:{tx_id}");
    let now_s = chrono::Utc::now().timestamp();
    {
        let mut last = LAST
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last
            .get(&key)
            .is_some_and(|t| now_s - t < COST_UPDATE_EVERY_S)
        {
            return;
        }
        last.insert(key, now_s);
    }
    let Some(me) = app.arc() else { return };
    let station = station.to_owned();
    let payload = serde_json::from_str::<Value>(&format!(
        "{{\"totalCost\": {}, \"transactionId\": {}}}",
        cost.normalize(),
        Value::String(tx_id.to_owned())
    ))
    .unwrap_or_default();
    tokio::spawn(async move {
        if let Err(e) = me.call_station(&station, "CostUpdated", payload).await {
            tracing::debug!(station, "CostUpdated: {e}");
        }
    });
}

fn token_of(v16: bool, req: &Value) -> Option<String> {
    if v16 {
        req.get("idTag").and_then(Value::as_str).map(str::to_owned)
    } else {
        req.get("idToken")
            .and_then(|t| t.get("idToken"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// `idTagInfo` (1.6) / `idTokenInfo` (2.x) for a token from the store.
async fn token_info(app: &App, v16: bool, token: &str) -> crate::store::Result<Value> {
    let mut status = app.store.token_status(token).await?;
    if status.is_none() && !token.is_empty() {
        // a driver of a roaming partner (OCPI Tokens pushed to us, or real-time authorization)
        if let Some(r) = app.roaming() {
            status = r.authorize(token).await.map(str::to_owned);
        }
    }
    Ok(match (v16, status) {
        (true, Some(s)) => json!({"idTagInfo": {"status": s}}),
        (true, None) => json!({"idTagInfo": {"status": "Invalid"}}),
        (false, Some(s)) => json!({"idTokenInfo": {"status": s}}),
        (false, None) => json!({"idTokenInfo": {"status": "Unknown"}}),
    })
}

/// Sampled values as (timestamp, measurand, value, unit) rows.
fn samples(meter_values: Option<&Value>) -> Vec<(String, String, String, Option<String>)> {
    let mut out = Vec::new();
    for mv in meter_values.and_then(Value::as_array).into_iter().flatten() {
        let t = mv["timestamp"].as_str().unwrap_or_default().to_owned();
        for s in mv["sampledValue"].as_array().into_iter().flatten() {
            let measurand = s["measurand"]
                .as_str()
                .unwrap_or("Energy.Active.Import.Register")
                .to_owned();
            let value = match &s["value"] {
                Value::String(x) => x.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            let unit = s["unit"]
                .as_str()
                .or(s["unitOfMeasure"]["unit"].as_str())
                .map(str::to_owned);
            let phase = s["phase"].as_str();
            let measurand = match phase {
                Some(p) => format!("{measurand}.{p}"),
                None => measurand,
            };
            out.push((t.clone(), measurand, value, unit));
        }
    }
    out
}

fn tx_event(req: &Value) -> TxEvent {
    let samples = samples(req.get("meterValue"));
    let registers = req["meterValue"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|mv| {
            mv["sampledValue"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |s| {
                    let measurand = s["measurand"]
                        .as_str()
                        .unwrap_or("Energy.Active.Import.Register");
                    if measurand != "Energy.Active.Import.Register" || s.get("phase").is_some() {
                        return None;
                    }
                    let text = match &s["value"] {
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    let wh = to_wh(&text, s["unitOfMeasure"]["unit"].as_str())?;
                    Some((
                        mv["timestamp"].as_str().unwrap_or_default().to_owned(),
                        wh,
                        s["context"].as_str().map(str::to_owned),
                    ))
                })
        })
        .collect();
    TxEvent {
        event_type: req["eventType"].as_str().unwrap_or_default().to_owned(),
        tx_id: req["transactionInfo"]["transactionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        seq_no: req["seqNo"].as_i64().unwrap_or_default(),
        timestamp: req["timestamp"].as_str().unwrap_or_default().to_owned(),
        evse: req["evse"]["id"]
            .as_i64()
            .map(|e| (e, req["evse"]["connectorId"].as_i64())),
        id_token: token_of(false, req),
        registers,
        samples,
        stopped_reason: req["transactionInfo"]["stoppedReason"]
            .as_str()
            .map(str::to_owned),
        payload: req.to_string(),
    }
}

/// One station call, version-neutral: request JSON in, response JSON out.
async fn on_call(
    app: &App,
    station: &str,
    v: ProtocolVersion,
    action: &str,
    req: &Value,
) -> crate::store::Result<Value> {
    let v16 = v == ProtocolVersion::V16;
    let store = &app.store;
    app.notify(json!({"type": "message", "station": station, "action": action}));
    Ok(match action {
        "BootNotification" => {
            let info = if v16 {
                json!({"vendor": req["chargePointVendor"], "model": req["chargePointModel"],
                    "serial": req["chargePointSerialNumber"], "firmware": req["firmwareVersion"]})
            } else {
                let cs = &req["chargingStation"];
                json!({"vendor": cs["vendorName"], "model": cs["model"], "serial": cs["serialNumber"], "firmware": cs["firmwareVersion"]})
            };
            let known = store.station(station).await?.is_some();
            let status = if known {
                "Accepted"
            } else {
                match app.config.unknown_stations.as_str() {
                    "accept" => {
                        store.upsert_station(station, None).await?;
                        "Accepted"
                    }
                    "pending" => {
                        store.upsert_station(station, None).await?;
                        "Pending"
                    }
                    _ => "Rejected",
                }
            };
            if status != "Rejected" {
                store
                    .record_boot(station, version_name(v), &info, status)
                    .await?;
            }
            app.notify(json!({"type": "boot", "station": station, "status": status}));
            if status == "Accepted" {
                location_changed(app, station);
            }
            json!({"currentTime": now(), "interval": app.config.heartbeat_interval, "status": status})
        }
        "Heartbeat" => {
            app.seen(station);
            json!({"currentTime": now()})
        }
        "StatusNotification" => {
            let (evse, connector, status, error) = if v16 {
                let c = req["connectorId"].as_i64().unwrap_or_default();
                (
                    c,
                    c,
                    req["status"].as_str().unwrap_or_default(),
                    req["errorCode"].as_str(),
                )
            } else {
                (
                    req["evseId"].as_i64().unwrap_or_default(),
                    req["connectorId"].as_i64().unwrap_or_default(),
                    req["connectorStatus"].as_str().unwrap_or_default(),
                    None,
                )
            };
            // a status already stored (repeated notifications) needs no write
            if app.status_changed(station, evse, connector, status, error) {
                if let Err(e) = store
                    .set_status(station, evse, connector, status, error)
                    .await
                {
                    app.forget_status(station, evse, connector);
                    return Err(e);
                }
                location_changed(app, station);
                // faults are alerts until the connector reports a working status
                let faulted = status == "Faulted" || error.is_some_and(|e| e != "NoError");
                if faulted {
                    let detail = json!({"evse": evse, "connector": connector, "status": status, "error_code": error});
                    if store
                        .raise_alert(Some(station), "fault", &detail)
                        .await?
                        .is_some()
                    {
                        app.notify(json!({"type": "alert", "station": station, "kind": "fault", "detail": detail}));
                    }
                } else if store.clear_alerts(station, "fault").await? > 0 {
                    app.notify(
                        json!({"type": "alert_cleared", "station": station, "kind": "fault"}),
                    );
                }
            }
            app.seen(station);
            app.notify(json!({"type": "status", "station": station, "evse": evse, "connector": connector, "status": status}));
            json!({})
        }
        "Authorize" => match token_of(v16, req) {
            Some(t) => token_info(app, v16, &t).await?,
            None => token_info(app, v16, "").await?,
        },
        "StartTransaction" => {
            let tag = req["idTag"].as_str().unwrap_or_default();
            let mut info = token_info(app, true, tag).await?;
            let connector = req["connectorId"].as_i64().unwrap_or_default();
            let (tx, new) = store
                .start_16(
                    station,
                    connector,
                    tag,
                    req["meterStart"].as_i64().unwrap_or_default(),
                    req["timestamp"].as_str().unwrap_or_default(),
                )
                .await?;
            let session_id = format!("{station}:{tx}");
            if new {
                app.notify(
                    json!({"type": "session_started", "station": station, "session": session_id}),
                );
            }
            // the payment hold (idempotent: a replay gets the first outcome)
            if info["idTagInfo"]["status"] == "Accepted"
                && !app.session_started(&session_id, Some(tag)).await?
            {
                info["idTagInfo"]["status"] = json!("Blocked");
            }
            json!({"idTagInfo": info["idTagInfo"], "transactionId": tx})
        }
        "StopTransaction" => {
            let tx = req["transactionId"].as_i64().unwrap_or_default();
            let session_id = format!("{station}:{tx}");
            store
                .meter_values(&session_id, &samples(req.get("transactionData")))
                .await?;
            let session = store
                .stop_16(
                    station,
                    tx,
                    req["meterStop"].as_i64().unwrap_or_default(),
                    req["timestamp"].as_str().unwrap_or_default(),
                    req["reason"].as_str(),
                )
                .await?;
            if let Some(s) = session {
                app.session_completed(&s).await?;
            }
            match req["idTag"].as_str() {
                Some(tag) => json!({"idTagInfo": token_info(app, true, tag).await?["idTagInfo"]}),
                None => json!({}),
            }
        }
        "MeterValues" => {
            let session = if v16 {
                match req["transactionId"].as_i64() {
                    Some(tx) => Some(format!("{station}:{tx}")),
                    None => {
                        store
                            .active_session_on(
                                station,
                                req["connectorId"].as_i64().unwrap_or_default(),
                            )
                            .await?
                    }
                }
            } else {
                store
                    .active_session_on(station, req["evseId"].as_i64().unwrap_or_default())
                    .await?
            };
            if let Some(id) = session {
                store
                    .meter_values(&id, &samples(req.get("meterValue")))
                    .await?;
                app.notify(json!({"type": "meter", "station": station, "session": id}));
            }
            json!({})
        }
        "TransactionEvent" => {
            let ev = tx_event(req);
            let (session, new) = store.tx_event(station, &ev).await?;
            if let (true, Some(s)) = (new, &session) {
                app.notify(json!({"type": "transaction_event", "station": station, "session": s.id, "event": ev.event_type}));
                if ev.event_type == "Ended" {
                    app.session_completed(s).await?;
                }
            }
            match (&ev.id_token, ev.event_type.as_str(), &session) {
                (Some(t), "Started", Some(s)) => {
                    let mut info = token_info(app, false, t).await?;
                    if info["idTokenInfo"]["status"] == "Accepted"
                        && !app.session_started(&s.id, Some(t)).await?
                    {
                        info["idTokenInfo"]["status"] = json!("NoCredit");
                    }
                    info
                }
                // running cost while charging, final cost at the end (2.0.1 I03, I05)
                (_, "Updated" | "Ended", Some(s)) => {
                    let cost = if ev.event_type == "Ended" {
                        store.cdr(&s.id).await?.and_then(|c| {
                            crate::billing::dec(&c["total_cost"]["incl_vat"]).map(|d| d.round_dp(2))
                        })
                    } else {
                        crate::billing::running_cost(store, s, &app.config.time_zone, &now())
                            .await
                            .ok()
                            .flatten()
                    };
                    if let (Some(c), "Updated") = (cost, ev.event_type.as_str()) {
                        cost_updated(app, station, &ev.tx_id, c);
                    }
                    match cost {
                        Some(c) => serde_json::from_str::<Value>(&format!(
                            "{{\"totalCost\": {}}}",
                            c.normalize()
                        ))
                        .unwrap_or_else(|_| json!({})),
                        None => json!({}),
                    }
                }
                _ => json!({}),
            }
        }
        "DataTransfer" => json!({"status": "UnknownVendorId"}),
        "SecurityEventNotification" => {
            app.seen(station);
            let detail = json!({"type": req["type"], "tech_info": req["techInfo"], "timestamp": req["timestamp"]});
            if store
                .raise_alert(Some(station), "security", &detail)
                .await?
                .is_some()
            {
                app.notify(json!({"type": "alert", "station": station, "kind": "security", "detail": detail}));
            }
            json!({})
        }
        "NotifyEvent" => {
            app.seen(station);
            for e in req["eventData"].as_array().into_iter().flatten() {
                if e["trigger"] == "Alerting"
                    || e["eventNotificationType"] == "HardWiredNotification"
                {
                    let detail = json!({"component": e["component"]["name"], "variable": e["variable"]["name"],
                        "value": e["actualValue"], "tech_code": e["techCode"]});
                    store.raise_alert(Some(station), "event", &detail).await?;
                    app.notify(json!({"type": "alert", "station": station, "kind": "event", "detail": detail}));
                }
            }
            json!({})
        }
        "NotifyReport" => {
            // GetBaseReport / GetReport answers: the station's device model
            app.seen(station);
            for d in req["reportData"].as_array().into_iter().flatten() {
                let c = &d["component"];
                let v = &d["variable"];
                let component = match (
                    c["name"].as_str(),
                    c["instance"].as_str(),
                    c["evse"]["id"].as_i64(),
                ) {
                    (Some(n), Some(i), _) => format!("{n}[{i}]"),
                    (Some(n), None, Some(e)) => format!("{n}@evse{e}"),
                    (Some(n), _, _) => n.to_owned(),
                    _ => continue,
                };
                let variable = match (v["name"].as_str(), v["instance"].as_str()) {
                    (Some(n), Some(i)) => format!("{n}[{i}]"),
                    (Some(n), None) => n.to_owned(),
                    _ => continue,
                };
                store
                    .put_device_model(station, &component, &variable, d)
                    .await?;
            }
            if req["tbc"] != json!(true) {
                app.notify(json!({"type": "device_model", "station": station, "request_id": req["requestId"]}));
            }
            json!({})
        }
        "FirmwareStatusNotification" | "SignedFirmwareStatusNotification" => {
            app.seen(station);
            let status =
                json!({"status": req["status"], "request_id": req["requestId"], "at": now()});
            store
                .put_setting(&format!("firmware_status:{station}"), &status.to_string())
                .await?;
            if matches!(
                req["status"].as_str(),
                Some(
                    "DownloadFailed"
                        | "InstallationFailed"
                        | "InstallVerificationFailed"
                        | "InvalidSignature"
                )
            ) {
                store
                    .raise_alert(Some(station), "firmware", &status)
                    .await?;
            }
            app.notify(
                json!({"type": "firmware_status", "station": station, "status": req["status"]}),
            );
            json!({})
        }
        "ReservationStatusUpdate" => {
            app.seen(station);
            let status = json!({"reservation_id": req["reservationId"], "status": req["reservationUpdateStatus"], "at": now()});
            store
                .put_setting(
                    &format!("reservation_status:{}", req["reservationId"]),
                    &status.to_string(),
                )
                .await?;
            app.notify(json!({"type": "reservation", "station": station, "status": status}));
            json!({})
        }
        "LogStatusNotification" | "DiagnosticsStatusNotification" => {
            app.seen(station);
            let status =
                json!({"status": req["status"], "request_id": req["requestId"], "at": now()});
            store
                .put_setting(&format!("log_status:{station}"), &status.to_string())
                .await?;
            app.notify(json!({"type": "log_status", "station": station, "status": req["status"]}));
            json!({})
        }
        _ => {
            app.seen(station);
            json!({})
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn transaction_event_reduction() {
        let req = json!({"eventType": "Started", "seqNo": 0, "timestamp": "2026-01-01T00:00:00Z", "triggerReason": "Authorized",
            "transactionInfo": {"transactionId": "T1"}, "idToken": {"idToken": "TAG", "type": "ISO14443"}, "evse": {"id": 2, "connectorId": 1},
            "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
                {"value": 1.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "kWh"}, "context": "Transaction.Begin"},
                {"value": 230.1, "measurand": "Voltage", "phase": "L1"}]}]});
        let ev = tx_event(&req);
        assert_eq!(
            (ev.tx_id.as_str(), ev.seq_no, ev.evse),
            ("T1", 0, Some((2, Some(1))))
        );
        assert_eq!(ev.id_token.as_deref(), Some("TAG"));
        assert_eq!(ev.registers.len(), 1);
        assert_eq!(ev.registers[0].1, Decimal::from(1500));
        assert_eq!(ev.samples.len(), 2);
        assert_eq!(ev.samples[1].1, "Voltage.L1");
    }

    #[test]
    fn samples_default_to_energy_register() {
        let s = samples(Some(
            &json!([{"timestamp": "t", "sampledValue": [{"value": "10"}]}]),
        ));
        assert_eq!(
            s,
            vec![(
                "t".into(),
                "Energy.Active.Import.Register".into(),
                "10".into(),
                None
            )]
        );
        assert!(samples(None).is_empty());
    }
}
