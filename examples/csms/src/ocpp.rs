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

use evproto_csms_core::authorization::{self, Decision};
use evproto_csms_core::transaction::Effect;

use crate::sessions::{self, Outcome, TxMessage};
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
            Router::csms_v16()
                .on::<v16::action::StartTransaction>(start_transaction_16)
                .on::<v16::action::StopTransaction>(stop_transaction_16)
                .on::<v16::action::MeterValues>(meter_values_16),
            v16,
            [
                BootNotification,
                Heartbeat,
                StatusNotification,
                Authorize,
                FirmwareStatusNotification,
                DiagnosticsStatusNotification,
                DataTransfer,
                SecurityEventNotification,
                LogStatusNotification,
                SignedFirmwareStatusNotification
            ]
        ),
        v2!(
            Router::csms_v201()
                .on::<v201::action::TransactionEvent>(transaction_event_201)
                .on::<v201::action::MeterValues>(meter_values_201),
            v201
        ),
        v2!(
            Router::csms_v21()
                .on::<v21::action::TransactionEvent>(transaction_event_21)
                .on::<v21::action::MeterValues>(meter_values_21),
            v21
        ),
    )
}

// ---- transaction messages: typed, through the csms-core model (crate::sessions) ----

/// The CALLERROR for a store failure, logged with what was not answered.
fn internal(station: &str, action: &str, e: impl std::fmt::Display) -> CallError {
    tracing::error!(station, action, "not answered, the store failed: {e}");
    CallError::internal()
}

/// The authorization decision for a token: the CSMS's own tokens first,
/// then a roaming partner's (OCPI tokens pushed to us, real-time authorization).
async fn decide(app: &App, token: &str) -> crate::store::Result<Decision> {
    let mut status = app.store.token_status(token).await?;
    if status.is_none() && !token.is_empty() {
        if let Some(r) = app.roaming() {
            status = r.authorize(token).await.map(str::to_owned);
        }
    }
    let record = status.map(|s| authorization::Record {
        status: match s.as_str() {
            "Accepted" => authorization::Status::Accepted,
            "Blocked" => authorization::Status::Blocked,
            "Expired" => authorization::Status::Expired,
            "NoCredit" => authorization::Status::NoCredit,
            _ => authorization::Status::Invalid,
        },
        ..authorization::Record::accepted()
    });
    Ok(authorization::authorize(
        record.as_ref(),
        None,
        0,
        authorization::Purpose::Start,
        chrono::Utc::now(),
        &authorization::Policy::default(),
    ))
}

/// After a transaction message committed: tell the live view, and run the
/// billing its completion queued (the answer then carries the final cost;
/// a failure stays in the outbox for the worker).
async fn after_commit(app: &App, station: &str, action: &str, out: &Outcome) {
    if out.applied.duplicate {
        return;
    }
    for effect in &out.applied.effects {
        match effect {
            Effect::Opened => app.notify(
                json!({"type": "session_started", "station": station, "session": out.session_id}),
            ),
            Effect::Completed => {
                let id = format!("bill:{}", out.session_id);
                app.run_outbox(&id, "bill", &out.session_id).await;
            }
            Effect::AmendedAfterCompletion => {
                tracing::warn!(station, session = %out.session_id, "a late {action} changed a completed session");
                app.notify(json!({"type": "session_amended", "station": station, "session": out.session_id}));
            }
        }
    }
    app.notify(json!({"type": "transaction_event", "station": station, "session": out.session_id, "action": action}));
}

async fn start_transaction_16(
    ctx: Ctx<Arc<App>>,
    req: v16::StartTransactionRequest,
) -> Result<v16::StartTransactionResponse, CallError> {
    let (app, station) = (&ctx.state, &*ctx.identity);
    const A: &str = "StartTransaction";
    app.notify(json!({"type": "message", "station": station, "action": A}));
    let decision = decide(app, req.id_tag.as_str())
        .await
        .map_err(|e| internal(station, A, e))?;
    let out = sessions::apply(&app.store, station, TxMessage::Start16(&req))
        .await
        .map_err(|e| internal(station, A, e))?
        .ok_or_else(|| internal(station, A, "no outcome for a start"))?;
    after_commit(app, station, A, &out).await;
    let mut info = decision.to_v16();
    // the payment hold (idempotent: a replay gets the first outcome)
    if decision.status == authorization::Status::Accepted
        && !app
            .session_started(&out.session_id, Some(req.id_tag.as_str()))
            .await
            .map_err(|e| internal(station, A, e))?
    {
        info.status = v16::AuthorizationStatus::Blocked;
    }
    let transaction_id = out
        .tx_id_16
        .and_then(|t| i32::try_from(t).ok())
        .ok_or_else(|| internal(station, A, "1.6 transaction ids exhausted"))?;
    Ok(v16::StartTransactionResponse {
        id_tag_info: info,
        transaction_id,
    })
}

async fn stop_transaction_16(
    ctx: Ctx<Arc<App>>,
    req: v16::StopTransactionRequest,
) -> Result<v16::StopTransactionResponse, CallError> {
    let (app, station) = (&ctx.state, &*ctx.identity);
    const A: &str = "StopTransaction";
    app.notify(json!({"type": "message", "station": station, "action": A}));
    match sessions::apply(&app.store, station, TxMessage::Stop16(&req))
        .await
        .map_err(|e| internal(station, A, e))?
    {
        Some(out) => after_commit(app, station, A, &out).await,
        None => tracing::warn!(
            station,
            tx = req.transaction_id,
            "StopTransaction for a transaction this CSMS never started"
        ),
    }
    let id_tag_info = match &req.id_tag {
        Some(tag) => Some(
            decide(app, tag.as_str())
                .await
                .map_err(|e| internal(station, A, e))?
                .to_v16(),
        ),
        None => None,
    };
    Ok(v16::StopTransactionResponse { id_tag_info })
}

async fn meter_values_16(
    ctx: Ctx<Arc<App>>,
    req: v16::MeterValuesRequest,
) -> Result<v16::MeterValuesResponse, CallError> {
    let (app, station) = (&ctx.state, &*ctx.identity);
    const A: &str = "MeterValues";
    app.notify(json!({"type": "message", "station": station, "action": A}));
    if req.transaction_id.is_some() {
        if let Some(out) = sessions::apply(&app.store, station, TxMessage::Meter16(&req))
            .await
            .map_err(|e| internal(station, A, e))?
        {
            after_commit(app, station, A, &out).await;
        }
    } else {
        // values outside a transaction id: the active session on the connector, if any
        let samples = TxMessage::Meter16(&req).samples();
        meter_values_on(app, station, i64::from(req.connector_id), &samples)
            .await
            .map_err(|e| internal(station, A, e))?;
    }
    Ok(v16::MeterValuesResponse {})
}

/// Sampled values that name no transaction: kept for the active session on
/// the EVSE (1.6: connector), if there is one.
async fn meter_values_on(
    app: &App,
    station: &str,
    evse: i64,
    samples: &[(String, String, String, Option<String>)],
) -> crate::store::Result<()> {
    if let Some(id) = app.store.active_session_on(station, evse).await? {
        app.store.meter_values(&id, samples).await?;
        app.notify(json!({"type": "meter", "station": station, "session": id}));
    }
    Ok(())
}

/// The 2.x handlers, the same code for 2.0.1 and 2.1.
macro_rules! handlers_2x {
    ($ver:ident, $event:ident, $meter:ident, $msg:ident, $to_info:ident, [$($extra:ident),*]) => {
        async fn $event(
            ctx: Ctx<Arc<App>>,
            req: $ver::TransactionEventRequest,
        ) -> Result<$ver::TransactionEventResponse, CallError> {
            let (app, station) = (&ctx.state, &*ctx.identity);
            const A: &str = "TransactionEvent";
            app.notify(json!({"type": "message", "station": station, "action": A}));
            let out = sessions::apply(&app.store, station, TxMessage::$msg(&req))
                .await
                .map_err(|e| internal(station, A, e))?
                .ok_or_else(|| internal(station, A, "no outcome for a 2.x event"))?;
            after_commit(app, station, A, &out).await;
            let session = app
                .store
                .session(&out.session_id)
                .await
                .map_err(|e| internal(station, A, e))?;
            let mut resp = $ver::TransactionEventResponse {
                total_cost: None,
                charging_priority: None,
                id_token_info: None,
                updated_personal_message: None,
                custom_data: None,
                $($extra: None,)*
            };
            // the CSMS authorizes wherever the request carries an idToken (C01, C08)
            if let Some(t) = &req.id_token {
                let decision = decide(app, t.id_token.as_str())
                    .await
                    .map_err(|e| internal(station, A, e))?;
                let mut info = decision.$to_info();
                if req.event_type == $ver::TransactionEventEnumType::Started
                    && decision.status == authorization::Status::Accepted
                    && !app
                        .session_started(&out.session_id, Some(t.id_token.as_str()))
                        .await
                        .map_err(|e| internal(station, A, e))?
                {
                    info.status = $ver::AuthorizationStatusEnumType::NoCredit;
                }
                resp.id_token_info = Some(info);
            }
            // running cost while charging, final cost at the end (2.0.1 I03, I05)
            if let Some(s) = &session {
                resp.total_cost = match req.event_type {
                    $ver::TransactionEventEnumType::Ended => app
                        .store
                        .cdr(&s.id)
                        .await
                        .map_err(|e| internal(station, A, e))?
                        .and_then(|c| crate::billing::dec(&c["total_cost"]["incl_vat"]))
                        .map(|d| d.round_dp(2).normalize()),
                    $ver::TransactionEventEnumType::Updated => {
                        let cost = crate::billing::running_cost(
                            &app.store,
                            s,
                            &app.config.time_zone,
                            &now(),
                        )
                        .await
                        .ok()
                        .flatten();
                        if let Some(c) = cost {
                            cost_updated(app, station, req.transaction_info.transaction_id.as_str(), c);
                        }
                        cost.map(|c| c.normalize())
                    }
                    _ => None,
                };
            }
            Ok(resp)
        }

        async fn $meter(
            ctx: Ctx<Arc<App>>,
            req: $ver::MeterValuesRequest,
        ) -> Result<$ver::MeterValuesResponse, CallError> {
            let (app, station) = (&ctx.state, &*ctx.identity);
            const A: &str = "MeterValues";
            app.notify(json!({"type": "message", "station": station, "action": A}));
            let ts = |t: &chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            };
            let samples: Vec<_> = req
                .meter_value
                .iter()
                .flat_map(|v| {
                    v.sampled_value.iter().map(move |s| {
                        let m = s
                            .measurand
                            .map_or("Energy.Active.Import.Register", |m| m.as_str());
                        (
                            ts(&v.timestamp),
                            match s.phase {
                                Some(p) => format!("{m}.{}", p.as_str()),
                                None => m.to_owned(),
                            },
                            s.value.normalize().to_string(),
                            s.unit_of_measure
                                .as_ref()
                                .and_then(|u| u.unit.as_ref())
                                .map(|u| u.as_str().to_owned()),
                        )
                    })
                })
                .collect();
            meter_values_on(app, station, i64::from(req.evse_id), &samples)
                .await
                .map_err(|e| internal(station, A, e))?;
            Ok($ver::MeterValuesResponse { custom_data: None })
        }
    };
}
handlers_2x!(
    v201,
    transaction_event_201,
    meter_values_201,
    Event201,
    to_v201,
    []
);
handlers_2x!(
    v21,
    transaction_event_21,
    meter_values_21,
    Event21,
    to_v21,
    [transaction_limit, updated_personal_message_extra]
);

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
