//! The OCPP side: one handler per action a station sends, in every version.
//!
//! Requests arrive decoded and schema-checked by `ocpp-rpc` (a broken one
//! gets the version's CALLERROR before it reaches us) and stay typed: each
//! action has a handler per version taking the version's request and
//! building its response. The 2.0.1 and 2.1 handlers are one macro body;
//! what does not depend on the version (the boot decision, the fault rule,
//! what is stored and shown) is in plain functions over typed values, called
//! by every version's handler. A handler writes to the store *before* it
//! answers: if the write fails the station gets `InternalError` and retries,
//! so nothing is acknowledged without being kept.

use std::sync::Arc;

use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_rpc::{Ctx, Router, Routes};
use evproto_ocpp_types::{v16, v201, v21, Action};
use serde_json::Value;

use chrono::{DateTime, Utc};
use evproto_csms_core::authorization::{self, Purpose};
use evproto_csms_core::connector::{self, Report};
use evproto_csms_core::recovery;
use evproto_csms_core::transaction::{Effect, EvseRef};

use crate::authorize::decide;
use crate::config::UnknownStations;
use crate::reservations;
use crate::store::Registration;

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

/// A 2.x router without its state: the handlers of `$m` (see
/// `station_handlers_2x!`), of `$r` (see `report_handlers_2x!`) and the
/// transaction handlers (see `handlers_2x!`).
macro_rules! routes_2x {
    ($router:expr, $ver:ident, $m:ident, $r:ident, $event:ident, $meter:ident) => {
        $router
            .on::<$ver::action::BootNotification>($m::boot_notification)
            .on::<$ver::action::Heartbeat>($m::heartbeat)
            .on::<$ver::action::StatusNotification>($m::status_notification)
            .on::<$ver::action::Authorize>($m::authorize)
            .on::<$ver::action::TransactionEvent>($event)
            .on::<$ver::action::MeterValues>($meter)
            .on::<$ver::action::FirmwareStatusNotification>($m::firmware_status_notification)
            .on::<$ver::action::LogStatusNotification>($m::log_status_notification)
            .on::<$ver::action::SecurityEventNotification>($m::security_event_notification)
            .on::<$ver::action::NotifyEvent>($m::notify_event)
            .on::<$ver::action::NotifyReport>($m::notify_report)
            .on::<$ver::action::ReservationStatusUpdate>($m::reservation_status_update)
            .on::<$ver::action::DataTransfer>($m::data_transfer)
            .on::<$ver::action::ClearedChargingLimit>($r::cleared_charging_limit)
            .on::<$ver::action::NotifyChargingLimit>($r::notify_charging_limit)
            .on::<$ver::action::NotifyEVChargingNeeds>($r::notify_ev_charging_needs)
            .on::<$ver::action::NotifyEVChargingSchedule>($r::notify_ev_charging_schedule)
            .on::<$ver::action::NotifyDisplayMessages>($r::notify_display_messages)
            .on::<$ver::action::NotifyMonitoringReport>($r::notify_monitoring_report)
            .on::<$ver::action::NotifyCustomerInformation>($r::notify_customer_information)
            .on::<$ver::action::PublishFirmwareStatusNotification>(
                $r::publish_firmware_status_notification,
            )
            .on::<$ver::action::ReportChargingProfiles>($r::report_charging_profiles)
            .on::<$ver::action::GetCertificateStatus>($r::get_certificate_status)
            .on::<$ver::action::Get15118EVCertificate>($r::get_15118_ev_certificate)
            .on::<$ver::action::SignCertificate>($r::sign_certificate)
    };
}

/// The routes for every version: one typed handler per action and version.
pub fn routes(app: &Arc<App>) -> (Routes, Routes, Routes) {
    (
        Router::csms_v16()
            .on::<v16::action::BootNotification>(boot_notification_16)
            .on::<v16::action::Heartbeat>(heartbeat_16)
            .on::<v16::action::StatusNotification>(status_notification_16)
            .on::<v16::action::Authorize>(authorize_16)
            .on::<v16::action::StartTransaction>(start_transaction_16)
            .on::<v16::action::StopTransaction>(stop_transaction_16)
            .on::<v16::action::MeterValues>(meter_values_16)
            .on::<v16::action::FirmwareStatusNotification>(firmware_status_notification_16)
            .on::<v16::action::DiagnosticsStatusNotification>(diagnostics_status_notification_16)
            .on::<v16::action::DataTransfer>(data_transfer_16)
            .on::<v16::action::SecurityEventNotification>(security_event_notification_16)
            .on::<v16::action::LogStatusNotification>(log_status_notification_16)
            .on::<v16::action::SignedFirmwareStatusNotification>(
                signed_firmware_status_notification_16,
            )
            .on::<v16::action::SignCertificate>(sign_certificate_16)
            .with_state(app.clone()),
        routes_2x!(
            Router::csms_v201(),
            v201,
            station_201,
            reports_201,
            transaction_event_201,
            meter_values_201
        )
        .with_state(app.clone()),
        routes_2x!(
            Router::csms_v21(),
            v21,
            station_21,
            reports_21,
            transaction_event_21,
            meter_values_21
        )
        .on::<v21::action::BatterySwap>(only_21::battery_swap)
        .on::<v21::action::OpenPeriodicEventStream>(only_21::open_periodic_event_stream)
        .on::<v21::action::ClosePeriodicEventStream>(only_21::close_periodic_event_stream)
        .on::<v21::action::GetCertificateChainStatus>(only_21::get_certificate_chain_status)
        .on::<v21::action::NotifyDERAlarm>(only_21::notify_der_alarm)
        .on::<v21::action::NotifyDERStartStop>(only_21::notify_der_start_stop)
        .on::<v21::action::ReportDERControl>(only_21::report_der_control)
        .on::<v21::action::NotifyPriorityCharging>(only_21::notify_priority_charging)
        .on::<v21::action::NotifySettlement>(only_21::notify_settlement)
        .on::<v21::action::PullDynamicScheduleUpdate>(only_21::pull_dynamic_schedule_update)
        .on::<v21::action::VatNumberValidation>(only_21::vat_number_validation)
        .with_state(app.clone()),
    )
}

// ---- transaction messages: typed, through the csms-core model (crate::sessions) ----

/// What one station may make the CSMS hold. A StatusNotification for an
/// EVSE or connector id above these is refused with
/// `PropertyConstraintViolation` (nothing stored, no EVSE pushed to roaming
/// partners); device-model variables and reports past their row cap are
/// dropped (the message is answered) with a `report_capped` alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationLimits {
    /// Highest EVSE id (1.6: connector id). Default 32.
    pub max_evses: i64,
    /// Highest connector id within an EVSE (2.x). Default 8.
    pub max_connectors_per_evse: i64,
    /// Device-model variables kept per station (NotifyReport). Default 20,000.
    pub max_device_model_rows: i64,
    /// Reports kept per station (NotifyMonitoringReport, charging limits,
    /// display messages, …). Default 10,000.
    pub max_report_rows: i64,
}

impl Default for StationLimits {
    fn default() -> Self {
        StationLimits {
            max_evses: 32,
            max_connectors_per_evse: 8,
            max_device_model_rows: 20_000,
            max_report_rows: 10_000,
        }
    }
}

/// Refuses an EVSE id (1.6: connector id) or a 2.x connector id above the
/// station limits.
fn within_limits(
    app: &App,
    station: &str,
    evse: i64,
    connector: Option<i64>,
) -> Result<(), CallError> {
    let l = &app.config.station_limits;
    let fits = (0..=l.max_evses).contains(&evse)
        && connector.is_none_or(|c| (0..=l.max_connectors_per_evse).contains(&c));
    if fits {
        return Ok(());
    }
    tracing::warn!(
        station,
        evse,
        ?connector,
        "refused: an id above the station limits"
    );
    Err(CallError::new(
        v16::ErrorCode::PROPERTY_CONSTRAINT_VIOLATION.to_string(),
        format!(
            "EVSE {evse}, connector {connector:?}: at most {} EVSEs of {} connectors",
            l.max_evses, l.max_connectors_per_evse
        ),
    ))
}

/// The CALLERROR for a transaction message that was not applied: a register
/// out of its physical range is the station's fault
/// (`PropertyConstraintViolation`, the same spelling in every version), a
/// store failure ours (`InternalError`, logged).
fn refused(station: &str, action: &str, e: sessions::SessionError) -> CallError {
    match e {
        sessions::SessionError::OutOfRange { .. } => {
            tracing::warn!(station, action, "refused: {e}");
            CallError::new(
                v16::ErrorCode::PROPERTY_CONSTRAINT_VIOLATION.to_string(),
                e.to_string(),
            )
        }
        e => internal(station, action, e),
    }
}

/// The CALLERROR for a store failure, logged with what was not answered.
fn internal(station: &str, action: &str, e: impl std::fmt::Display) -> CallError {
    tracing::error!(station, action, "not answered, the store failed: {e}");
    CallError::internal()
}

/// After a transaction message committed: tell the live view, and run the
/// billing its completion queued (the answer then carries the final cost;
/// a failure stays in the outbox for the worker). The billing's CDR when it
/// ran now and succeeded (`Some(None)`: not priced); `None` when it did not
/// run here or failed (whoever wants the CDR reads it).
async fn after_commit(
    app: &App,
    station: &str,
    action: &str,
    out: &Outcome,
) -> Option<Option<evproto_ocpi::v221::Cdr>> {
    let mut billed = None;
    if out.applied.duplicate {
        return billed;
    }
    for effect in &out.applied.effects {
        match effect {
            Effect::Opened => {
                if let Some(evse) = out.session.as_ref().and_then(|s| s.evse_id) {
                    let connector = out.session.as_ref().and_then(|s| s.connector_id);
                    let started = evproto_csms_core::health::Observation::SessionStarted;
                    let change = app.maintenance.observe(
                        station,
                        evse,
                        connector.unwrap_or(1),
                        chrono::Utc::now(),
                        started,
                    );
                    if let Err(e) = crate::maintenance::changed(app, change).await {
                        tracing::warn!(station, "maintenance alert: {e}");
                    }
                }
                app.notify(crate::events::LiveEvent::SessionStarted {
                    station: station.to_string(),
                    session: out.session_id.to_string(),
                })
            }
            Effect::Completed => {
                if let Some(tx) = out.session_id.strip_prefix(&format!("{station}:")) {
                    cost_updates()
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(station.to_owned(), tx.to_owned()));
                }
                // the session as this message committed it: no read back
                match &out.session {
                    Some(s) => billed = app.bill_committed(s).await,
                    None => {
                        let id = format!("bill:{}", out.session_id);
                        app.run_outbox(&id, "bill", &out.session_id).await;
                    }
                }
            }
            Effect::AmendedAfterCompletion => {
                tracing::warn!(station, session = %out.session_id, "a late {action} changed a completed session");
                app.notify(crate::events::LiveEvent::SessionAmended {
                    station: station.to_string(),
                    session: out.session_id.to_string(),
                });
            }
        }
    }
    app.notify(crate::events::LiveEvent::TransactionEvent {
        station: station.to_string(),
        session: out.session_id.to_string(),
        action: action.to_string(),
    });
    billed
}

async fn start_transaction_16(
    ctx: Ctx<Arc<App>>,
    req: v16::StartTransactionRequest,
) -> Result<v16::StartTransactionResponse, CallError> {
    let (app, station) = (&ctx.state, &*ctx.identity);
    const A: &str = v16::action::StartTransaction::NAME;
    app.notify(crate::events::LiveEvent::Message {
        station: station.to_string(),
        action: A.to_string(),
    });
    let out = app
        .sessions
        .apply(station, TxMessage::Start16(&req))
        .await
        .map_err(|e| refused(station, A, e))?
        .ok_or_else(|| internal(station, A, "no outcome for a start"))?;
    after_commit(app, station, A, &out).await;
    // after the start is kept: a replay is not its own concurrent transaction
    let this_session = Some(out.session_id.as_str());
    let decision = decide(
        app,
        station,
        req.id_tag.as_str(),
        Purpose::Start,
        this_session,
    )
    .await
    .map_err(|e| internal(station, A, e))?;
    // H03: a reservation of the connector (or the one named) is honoured
    let connector = Some(i64::from(req.connector_id));
    let (tag, id) = (req.id_tag.as_str(), out.session_id.as_str());
    let decision = reservations::honoured(
        app,
        station,
        connector,
        req.reservation_id,
        tag,
        id,
        decision,
    )
    .await
    .map_err(|e| internal(station, A, e))?;
    // Plug & Charge by the OCA application note: the eMAID of a contract
    // accepted by its certificate (the DataTransfer Authorize before)
    let decision = crate::pnc::ocpp::with_known_contract(app, tag, decision);
    let mut info = decision.to_v16();
    // the payment hold (idempotent: a replay gets the first outcome)
    if decision.status == authorization::Status::Accepted
        && !app
            .session_started(
                &out.session_id,
                Some(req.id_tag.as_str()),
                out.session.as_ref(),
            )
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
    const A: &str = v16::action::StopTransaction::NAME;
    app.notify(crate::events::LiveEvent::Message {
        station: station.to_string(),
        action: A.to_string(),
    });
    match app
        .sessions
        .apply(station, TxMessage::Stop16(&req))
        .await
        .map_err(|e| refused(station, A, e))?
    {
        Some(out) => {
            after_commit(app, station, A, &out).await;
        }
        None => tracing::warn!(
            station,
            tx = req.transaction_id,
            "StopTransaction for a transaction this CSMS never started"
        ),
    }
    let id_tag_info = match &req.id_tag {
        Some(tag) => Some(
            decide(app, station, tag.as_str(), Purpose::Stop, None)
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
    const A: &str = v16::action::MeterValues::NAME;
    app.notify(crate::events::LiveEvent::Message {
        station: station.to_string(),
        action: A.to_string(),
    });
    let samples = TxMessage::Meter16(&req).samples();
    crate::maintenance::sampled(app, station, i64::from(req.connector_id), &samples).await;
    if req.transaction_id.is_some() {
        if let Some(out) = app
            .sessions
            .apply(station, TxMessage::Meter16(&req))
            .await
            .map_err(|e| refused(station, A, e))?
        {
            after_commit(app, station, A, &out).await;
            app.site.samples_seen(&out.session_id, &samples);
        }
    } else {
        // values outside a transaction id: the active session on the connector, if any
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
    if !app.sessions.may_have_open(station).await? {
        return Ok(());
    }
    if let Some(id) = app.store.active_session_on(station, evse).await? {
        app.store.meter_values(&id, samples).await?;
        app.sessions.running().observe(&id, samples);
        app.notify(crate::events::LiveEvent::Meter {
            station: station.to_string(),
            session: id.to_string(),
        });
    }
    Ok(())
}

/// The 2.x handlers, the same code for 2.0.1 and 2.1.
macro_rules! handlers_2x {
    ($ver:ident, $event:ident, $meter:ident, $msg:ident, $to_info:ident, $cost_details:ident, [$($extra:ident),*]) => {
        async fn $event(
            ctx: Ctx<Arc<App>>,
            req: $ver::TransactionEventRequest,
        ) -> Result<$ver::TransactionEventResponse, CallError> {
            let (app, station) = (&ctx.state, &*ctx.identity);
            const A: &str = $ver::action::TransactionEvent::NAME;
            app.notify(crate::events::LiveEvent::Message { station: station.to_string(), action: A.to_string() });
            let out = app.sessions.apply(station, TxMessage::$msg(&req))
                .await
                .map_err(|e| refused(station, A, e))?
                .ok_or_else(|| internal(station, A, "no outcome for a 2.x event"))?;
            let billed = after_commit(app, station, A, &out).await;
            let session = out.session.clone();
            // temperature and voltage samples: the connector's health
            if req.meter_value.is_some() {
                let evse = req.evse.as_ref().map(|e| i64::from(e.id))
                    .or_else(|| session.as_ref().and_then(|s| s.evse_id));
                if let Some(evse) = evse {
                    let samples = TxMessage::$msg(&req).samples();
                    crate::maintenance::sampled(app, station, evse, &samples).await;
                    app.site.samples_seen(&out.session_id, &samples);
                }
            }
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
                // the token that ends it may be a group member's or a master pass (C09, C16)
                let purpose = if req.event_type == $ver::TransactionEventEnumType::Ended
                    || req.trigger_reason == $ver::TriggerReasonEnumType::StopAuthorized
                {
                    Purpose::Stop
                } else {
                    Purpose::Start
                };
                let this_session = Some(out.session_id.as_str());
                let mut decision = decide(app, station, t.id_token.as_str(), purpose, this_session)
                    .await
                    .map_err(|e| internal(station, A, e))?;
                if purpose == Purpose::Start {
                    // H03: a reservation of the EVSE (or the one named) is honoured
                    let evse = session.as_ref().and_then(|s| s.evse_id);
                    let (token, id) = (t.id_token.as_str(), out.session_id.as_str());
                    decision = reservations::honoured(app, station, evse, req.reservation_id, token, id, decision)
                        .await
                        .map_err(|e| internal(station, A, e))?;
                }
                let decision = crate::pnc::ocpp::with_known_contract(app, t.id_token.as_str(), decision);
                let mut info = decision.$to_info();
                // a Started that arrives after its Ended holds nothing: no hold outlives its session
                let open = session.as_ref().is_some_and(|s| s.status != crate::store::SessionStatus::Completed);
                if req.event_type == $ver::TransactionEventEnumType::Started
                    && decision.status == authorization::Status::Accepted
                    && open
                    && !app
                        .session_started(&out.session_id, Some(t.id_token.as_str()), session.as_ref())
                        .await
                        .map_err(|e| internal(station, A, e))?
                {
                    info.status = $ver::AuthorizationStatusEnumType::NoCredit;
                }
                if purpose == Purpose::Start {
                    // I01: the driver's tariff in words
                    crate::authorize::personalize(app, t.id_token.as_str(), this_session, &mut info).await;
                }
                resp.id_token_info = Some(info);
            }
            // running cost while charging, final cost at the end (2.0.1 I03, I05)
            if let Some(s) = &session {
                resp.total_cost = match req.event_type {
                    // what is charged: the total incl. VAT once to the currency's minor unit
                    $ver::TransactionEventEnumType::Ended => {
                        let cdr = match billed {
                            // billed just now: its CDR, not read back
                            Some(cdr) => cdr,
                            // a replay, or the billing failed: what is stored
                            None => app
                                .store
                                .cdr(&s.id)
                                .await
                                .map_err(|e| internal(station, A, e))?
                                .and_then(|c| crate::billing::decode_cdr(c).ok()),
                        };
                        cdr.and_then(|c| {
                            let amount = c.total_cost.incl_vat.unwrap_or(c.total_cost.excl_vat);
                            evproto_csms_core::money::Money::parse(amount, c.currency.as_str()).ok()
                        })
                        .map(|m| m.to_decimal().normalize())
                    }
                    $ver::TransactionEventEnumType::Updated => {
                        let running = app
                            .sessions
                            .running()
                            .cost(
                                &app.store,
                                s,
                                &crate::billing::Operator::of(&app.config),
                                chrono::Utc::now(),
                            )
                            .await
                            .unwrap_or_else(|e| {
                                tracing::debug!(session = %s.id, "running cost: {e}");
                                None
                            });
                        // 2.1 local cost: the station's running cost against the CSMS's (which stands)
                        if let Some(details) = $cost_details(&req) {
                            crate::local_cost::check_updated(app, station, &s.id, details, running)
                                .await
                                .map_err(|e| internal(station, A, e))?;
                        }
                        let cost = running.map(|m| m.to_decimal());
                        if let Some(c) = cost {
                            cost_updated(app, station, req.transaction_info.transaction_id.as_str(), c);
                        }
                        cost.map(|c| c.normalize())
                    }
                    _ => None,
                };
                // 2.1 local cost: the station's own price against the CDR's (which stands)
                let ended = req.event_type == $ver::TransactionEventEnumType::Ended;
                if ended {
                    app.running_costs.forget(&s.id);
                }
                if let Some(details) = $cost_details(&req).filter(|_| ended) {
                    crate::local_cost::check_ended(app, station, &s.id, details)
                        .await
                        .map_err(|e| internal(station, A, e))?;
                }
                // I06: the tariff changed since the driver was shown it
                resp.updated_personal_message = crate::authorize::tariff_notice(app, &s.id, ended)
                    .await
                    .and_then(|t| t.message());
            }
            Ok(resp)
        }

        async fn $meter(
            ctx: Ctx<Arc<App>>,
            req: $ver::MeterValuesRequest,
        ) -> Result<$ver::MeterValuesResponse, CallError> {
            let (app, station) = (&ctx.state, &*ctx.identity);
            const A: &str = $ver::action::MeterValues::NAME;
            app.notify(crate::events::LiveEvent::Message { station: station.to_string(), action: A.to_string() });
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
            crate::maintenance::sampled(app, station, i64::from(req.evse_id), &samples).await;
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
    no_cost_details,
    []
);
handlers_2x!(
    v21,
    transaction_event_21,
    meter_values_21,
    Event21,
    to_v21,
    cost_details_21,
    [transaction_limit, updated_personal_message_extra]
);

/// 2.0.1 stations report no cost of their own (local cost is 2.1's).
fn no_cost_details(_: &v201::TransactionEventRequest) -> Option<&v21::CostDetailsType> {
    None
}

/// The cost a 2.1 station calculated itself (`crate::local_cost`).
fn cost_details_21(req: &v21::TransactionEventRequest) -> Option<&v21::CostDetailsType> {
    req.cost_details.as_ref()
}

/// Refreshes the station's OCPI Location and pushes it to partners, in
/// the background (the station's answer does not wait for partners; a
/// boot storm's rebuilds share commits, see `Roaming::location_changed_soon`).
fn location_changed(app: &App, station: &str) {
    app.roaming.location_changed_soon(station);
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
    let (store, gateway) = (app.store.clone(), app.gateway.clone());
    let (station, tx_id) = (station.to_owned(), tx_id.to_owned());
    tokio::spawn(async move {
        let enabled = store
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
        if enabled && due_cost_update(&station, &tx_id) {
            if let Err(e) = send_cost_updated(&gateway, &station, &tx_id, cost).await {
                tracing::debug!(station, "CostUpdated: {e}");
            }
        }
    });
}

/// When each open transaction last got a CostUpdated: (station,
/// transaction id) → Unix seconds; dropped when the session completes or
/// the station disconnects.
type CostUpdates = std::sync::Mutex<std::collections::HashMap<(String, String), i64>>;

fn cost_updates() -> &'static CostUpdates {
    static LAST: std::sync::OnceLock<CostUpdates> = std::sync::OnceLock::new();
    LAST.get_or_init(Default::default)
}

/// Drops what is held in memory here for `station`'s transactions.
pub fn forget_station(station: &str) {
    cost_updates()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(s, _), _| s != station);
}

/// How many transactions' CostUpdated times are held (all stations).
pub fn cost_updates_held() -> usize {
    cost_updates()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len()
}

/// Whether a transaction's CostUpdated is due (none in the last
/// [`COST_UPDATE_EVERY_S`]); if so, notes it as sent now.
fn due_cost_update(station: &str, tx_id: &str) -> bool {
    let key = (station.to_owned(), tx_id.to_owned());
    let now_s = chrono::Utc::now().timestamp();
    let mut last = cost_updates().lock().unwrap_or_else(|e| e.into_inner());
    if last
        .get(&key)
        .is_some_and(|t| now_s - t < COST_UPDATE_EVERY_S)
    {
        return false;
    }
    last.insert(key, now_s);
    true
}

/// CostUpdated (2.0.1 and 2.1; 1.6 has none) with a transaction's running cost.
async fn send_cost_updated(
    gateway: &crate::gateway::StationGateway,
    station: &str,
    tx_id: &str,
    cost: rust_decimal::Decimal,
) -> Result<(), crate::gateway::StationCallError> {
    let bad = |e| crate::gateway::StationCallError::rejected(station, e);
    let total_cost = cost.normalize();
    match gateway.version(station).await {
        Some(ProtocolVersion::V201) => {
            let request = v201::CostUpdatedRequest {
                custom_data: None,
                total_cost,
                transaction_id: tx_id.parse().map_err(bad)?,
            };
            gateway
                .call::<v201::action::CostUpdated>(station, request)
                .await?;
        }
        Some(ProtocolVersion::V21) => {
            let request = v21::CostUpdatedRequest {
                total_cost,
                transaction_id: tx_id.parse().map_err(bad)?,
                custom_data: None,
            };
            gateway
                .call::<v21::action::CostUpdated>(station, request)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

// ---- every other message: typed handlers per version, the rules in plain functions ----

/// Why a message was not answered (the station gets `InternalError` and retries).
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A value could not be encoded for the store.
    #[error("encoding for the store: {0}")]
    Encode(#[from] serde_json::Error),
    /// A session could not be ended (the store failed).
    #[error(transparent)]
    Session(#[from] crate::sessions::SessionError),
}

/// The CALLERROR for a message of action `A` that could not be kept.
fn unanswered<A: Action>(station: &str, e: impl std::fmt::Display) -> CallError {
    internal(station, A::NAME, e)
}

/// Shows a station's message in the live view.
fn message<A: Action>(app: &App, station: &str) {
    app.notify(crate::events::LiveEvent::Message {
        station: station.to_string(),
        action: A::NAME.to_string(),
    });
}

/// The heartbeat interval of a BootNotification answer, seconds.
fn heartbeat_interval(app: &App) -> i32 {
    i32::try_from(app.config.heartbeat_interval).unwrap_or(i32::MAX)
}

// The registration status of a BootNotification answer, version-independent,
// is `crate::store::Registration` (the operator sets it per station).

impl From<Registration> for v16::RegistrationStatus {
    fn from(r: Registration) -> Self {
        match r {
            Registration::Accepted => v16::RegistrationStatus::Accepted,
            Registration::Pending => v16::RegistrationStatus::Pending,
            Registration::Rejected => v16::RegistrationStatus::Rejected,
        }
    }
}

macro_rules! registration_2x {
    ($ver:ident) => {
        impl From<Registration> for $ver::RegistrationStatusEnumType {
            fn from(r: Registration) -> Self {
                match r {
                    Registration::Accepted => $ver::RegistrationStatusEnumType::Accepted,
                    Registration::Pending => $ver::RegistrationStatusEnumType::Pending,
                    Registration::Rejected => $ver::RegistrationStatusEnumType::Rejected,
                }
            }
        }
    };
}
registration_2x!(v201);
registration_2x!(v21);

/// The answer to a BootNotification (1.6 §4.2, 2.0.1 B01-B03): a station in
/// the registry gets the registration the operator chose for it (Accepted
/// unless set otherwise); an identity that is not gets what the operator
/// configured for unknown ones (security profile 0 lets any identity
/// connect).
fn registration(known: Option<Registration>, unknown: UnknownStations) -> Registration {
    match (known, unknown) {
        (Some(r), _) => r,
        (None, UnknownStations::Accept) => Registration::Accepted,
        (None, UnknownStations::Pending) => Registration::Pending,
        (None, UnknownStations::Reject) => Registration::Rejected,
    }
}

/// Whether the CSMS may send `action` to `station` now, by the answer to
/// its last boot (1.6 §4.2, 2.0.1 B02, B03): nothing to a Rejected station
/// (it does not answer, and the CSMS should not initiate anything), and to
/// a Pending one no remote start or stop (configuring it, reading its
/// report and triggering messages are what Pending is for).
///
/// # Errors
///
/// Why not, for the operator (the API answers 409); or the store failed.
pub async fn may_send(
    app: &App,
    station: &str,
    action: &str,
) -> crate::store::Result<Result<(), String>> {
    let last = app
        .store
        .station(station)
        .await?
        .and_then(|s| s.boot_status);
    Ok(match last.as_deref() {
        Some("Rejected") => Err(format!(
            "{station}'s boot was Rejected: the CSMS sends it nothing until it boots Accepted or Pending"
        )),
        Some("Pending")
            if matches!(
                action,
                "RemoteStartTransaction"
                    | "RemoteStopTransaction"
                    | "RequestStartTransaction"
                    | "RequestStopTransaction"
            ) =>
        {
            Err(format!(
                "{station}'s boot is Pending: no {action} before it is Accepted"
            ))
        }
        _ => Ok(()),
    })
}

/// Asks a connected station to send a BootNotification now
/// (`TriggerMessage`, 1.6 and 2.x), so a change of its registration takes
/// effect without waiting for its boot interval. The station's answer
/// (`Accepted`, `Rejected`, `NotImplemented`).
///
/// # Errors
///
/// Not connected, no answer in time, or a CALLERROR, as text.
pub async fn trigger_boot(app: &App, station: &str) -> Result<&'static str, String> {
    // the boot that follows is no reboot (1.6 boots say no reason)
    app.maintenance.reset_requested(station, Utc::now());
    let gateway = &app.gateway;
    let answer = match gateway.version(station).await {
        None => return Err(format!("station {station} is not connected")),
        Some(ProtocolVersion::V16) => {
            let request = v16::TriggerMessageRequest {
                requested_message: v16::MessageTrigger::BootNotification,
                connector_id: None,
            };
            gateway
                .call::<v16::action::TriggerMessage>(station, request)
                .await
                .map(|r| r.status.as_str())
        }
        Some(ProtocolVersion::V201) => {
            let request = v201::TriggerMessageRequest {
                requested_message: v201::MessageTriggerEnumType::BootNotification,
                evse: None,
                custom_data: None,
            };
            gateway
                .call::<v201::action::TriggerMessage>(station, request)
                .await
                .map(|r| r.status.as_str())
        }
        Some(_) => {
            let request = v21::TriggerMessageRequest {
                requested_message: v21::MessageTriggerEnumType::BootNotification,
                evse: None,
                custom_trigger: None,
                custom_data: None,
            };
            gateway
                .call::<v21::action::TriggerMessage>(station, request)
                .await
                .map(|r| r.status.as_str())
        }
    };
    answer.map_err(|e| e.to_string())
}

/// What a station says about itself at boot, as stored with the boot.
#[derive(Debug, serde::Serialize)]
struct StationInfo<'a> {
    vendor: &'a str,
    model: &'a str,
    serial: Option<&'a str>,
    firmware: Option<&'a str>,
}

/// A BootNotification: decides the registration, registers an accepted or
/// pending unknown identity, records the boot (not a rejected unknown
/// identity's: it stays unregistered) and publishes an accepted station's
/// Location.
async fn boot(
    app: &App,
    station: &str,
    version: ProtocolVersion,
    info: &StationInfo<'_>,
) -> Result<Registration, Unanswered> {
    let known = app.store.station(station).await?.map(|s| s.registration);
    let status = registration(known, app.config.unknown_stations);
    if known.is_some() || status != Registration::Rejected {
        app.store
            .record_boot(
                station,
                known.is_none(),
                version_name(version),
                &serde_json::to_value(info)?,
                status.as_str(),
            )
            .await?;
    }
    if status != Registration::Rejected {
        // its open sessions are suspects now: it may have lost them (stuck sessions)
        app.sessions.booted(station, Utc::now()).await?;
    }
    app.notify(crate::events::LiveEvent::Boot {
        station: station.to_string(),
        status: status.as_str().to_string(),
    });
    if status == Registration::Accepted {
        location_changed(app, station);
    }
    Ok(status)
}

/// A StatusNotification, version-independent.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ConnectorStatus {
    /// The EVSE as stored (1.6: the connector id).
    evse: i64,
    /// The connector as stored.
    connector: i64,
    /// The status as the station sent it (stored and shown; OCPI maps it).
    reported: &'static str,
    /// 1.6 `errorCode` (2.x reports errors with NotifyEvent).
    error: Option<v16::ChargePointErrorCode>,
    /// The status model's reading of the report.
    report: Report,
}

impl ConnectorStatus {
    /// A 1.6 report; `received_at` stands in for a missing timestamp.
    fn from_v16(m: &v16::StatusNotificationRequest, received_at: DateTime<Utc>) -> Self {
        ConnectorStatus {
            evse: i64::from(m.connector_id),
            connector: i64::from(m.connector_id),
            reported: m.status.as_str(),
            error: Some(m.error_code),
            report: Report::from_v16(m, received_at),
        }
    }

    /// Whether the connector is broken: reported `Faulted`, or (1.6) with an
    /// error code other than `NoError`. A fault is an alert until the
    /// connector reports a working status.
    fn faulted(&self) -> bool {
        self.report.status == connector::Status::Faulted
            || self
                .error
                .is_some_and(|e| e != v16::ChargePointErrorCode::NoError)
    }
}

macro_rules! connector_status_2x {
    ($ver:ident) => {
        impl From<&$ver::StatusNotificationRequest> for ConnectorStatus {
            fn from(m: &$ver::StatusNotificationRequest) -> Self {
                ConnectorStatus {
                    evse: i64::from(m.evse_id),
                    connector: i64::from(m.connector_id),
                    reported: m.connector_status.as_str(),
                    error: None,
                    report: Report::from(m),
                }
            }
        }
    };
}
connector_status_2x!(v201);
connector_status_2x!(v21);

/// The detail of a `fault` alert.
#[derive(Debug, serde::Serialize)]
struct FaultDetail<'a> {
    evse: i64,
    connector: i64,
    status: &'a str,
    error_code: Option<&'a str>,
}

/// A StatusNotification: stores a changed status (a repeat needs no write),
/// refreshes the Location, raises or clears the station's `fault` alert.
async fn status_notification(
    app: &App,
    station: &str,
    s: &ConnectorStatus,
) -> Result<(), Unanswered> {
    let error = s.error.map(|e| e.as_str());
    if app.status_changed(station, s.evse, s.connector, s.reported, error) {
        if let Err(e) = app
            .store
            .set_status(station, s.evse, s.connector, s.reported, error)
            .await
        {
            app.forget_status(station, s.evse, s.connector);
            return Err(e.into());
        }
        location_changed(app, station);
        app.maintenance.declare(station, s.evse, s.connector);
        if s.faulted() {
            let fault = evproto_csms_core::health::Observation::Fault {
                error_code: error.map(str::to_owned),
            };
            let change =
                app.maintenance
                    .observe(station, s.evse, s.connector, chrono::Utc::now(), fault);
            crate::maintenance::changed(app, change).await?;
            let detail = serde_json::to_value(FaultDetail {
                evse: s.evse,
                connector: s.connector,
                status: s.reported,
                error_code: error,
            })?;
            app.set_no_open_fault(station, false);
            if app
                .store
                .raise_alert(Some(station), "fault", &detail)
                .await?
                .is_some()
            {
                app.notify(crate::events::LiveEvent::alert(station, "fault", &detail));
            }
        } else if !app.no_open_fault(station) {
            // looked for once per connection, and again after a fault
            if app.store.clear_alerts(station, "fault").await? > 0 {
                app.notify(crate::events::LiveEvent::AlertCleared {
                    id: None,
                    station: Some(station.to_string()),
                    kind: Some("fault".to_string()),
                });
            }
            app.set_no_open_fault(station, true);
        }
    }
    app.seen(station);
    app.notify(crate::events::LiveEvent::Status {
        station: station.to_string(),
        evse: s.evse,
        connector: s.connector,
        status: s.reported.to_string(),
    });
    Ok(())
}

/// The stuck-session rules' version (`evproto_csms_core::recovery`).
fn recovery_protocol(version: ProtocolVersion) -> recovery::Protocol {
    match version {
        ProtocolVersion::V16 => recovery::Protocol::V16,
        _ => recovery::Protocol::V2x,
    }
}

/// A StatusNotification `Available`: ends the sessions the station will
/// not end on that connector (1.6: any; 2.x: those it said nothing of since
/// it booted, once it answered `GetTransactionStatus` that it holds none of
/// their messages; see `evproto_csms_core::recovery`), each billed like any
/// session. Checked on every such report, a repeat too: the CSMS may have
/// restarted, or the last try failed.
async fn end_stuck_sessions(
    app: &Arc<App>,
    station: &str,
    version: ProtocolVersion,
    s: &ConnectorStatus,
) -> Result<(), Unanswered> {
    let Ok(evse_id) = u32::try_from(s.evse) else {
        return Ok(());
    };
    if s.report.status != connector::Status::Available || evse_id == 0 {
        return Ok(());
    }
    let at = EvseRef {
        evse_id,
        connector_id: match version {
            ProtocolVersion::V16 => None,
            _ => u32::try_from(s.connector).ok().filter(|c| *c > 0),
        },
    };
    let done = app
        .sessions
        .available(
            station,
            recovery_protocol(version),
            at,
            Some(s.report.at),
            Utc::now(),
        )
        .await?;
    recovered(app, station, done).await;
    Ok(())
}

/// Time passed for a station that spoke (a Heartbeat): its suspects past the
/// grace period are ended (2.x: asked about first). A store failure is
/// logged; the next Heartbeat tries again.
async fn end_silent_sessions(app: &Arc<App>, station: &str, version: ProtocolVersion) {
    match app
        .sessions
        .tick(station, recovery_protocol(version), Utc::now())
        .await
    {
        Ok(done) => recovered(app, station, done).await,
        Err(e) => tracing::warn!(station, "stuck sessions not checked: {e}"),
    }
}

/// What the stuck-session rules did: the closed sessions billed, the
/// `GetTransactionStatus` calls they want sent in the background (the
/// station's own message is answered first).
async fn recovered(app: &Arc<App>, station: &str, done: crate::sessions::Recovered) {
    for id in done.closed {
        session_closed(app, station, &id).await;
    }
    if done.ask.is_empty() {
        return;
    }
    let (app, station) = (app.clone(), station.to_owned());
    tokio::spawn(async move {
        for ask in done.ask {
            let answer = transaction_status(&app.gateway, &station, &ask.transaction_id).await;
            match app
                .sessions
                .status_answered(&station, &ask, answer, Utc::now())
                .await
            {
                Ok(Some(id)) => session_closed(&app, &station, &id).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    station,
                    session = ask.session,
                    "stuck session not checked: {e}"
                ),
            }
        }
    });
}

/// E14: GetTransactionStatus of `tx_id`; `None` when the station gave no
/// answer (a CALLERROR, a timeout, not connected, a 1.6 station).
async fn transaction_status(
    gateway: &crate::gateway::StationGateway,
    station: &str,
    tx_id: &str,
) -> Option<recovery::TxStatus> {
    let transaction_id = tx_id.parse().ok();
    let answer = match gateway.version(station).await? {
        ProtocolVersion::V201 => gateway
            .call::<v201::action::GetTransactionStatus>(
                station,
                v201::GetTransactionStatusRequest {
                    custom_data: None,
                    transaction_id,
                },
            )
            .await
            .map(|r| (r.messages_in_queue, r.ongoing_indicator)),
        ProtocolVersion::V21 => gateway
            .call::<v21::action::GetTransactionStatus>(
                station,
                v21::GetTransactionStatusRequest {
                    transaction_id,
                    custom_data: None,
                },
            )
            .await
            .map(|r| (r.messages_in_queue, r.ongoing_indicator)),
        _ => return None,
    };
    match answer {
        Ok((messages_in_queue, ongoing)) => Some(recovery::TxStatus {
            messages_in_queue,
            ongoing,
        }),
        Err(e) => {
            tracing::info!(station, tx_id, "GetTransactionStatus not answered: {e}");
            None
        }
    }
}

/// After the CSMS closed a session (stuck-session rules or an operator):
/// its bill runs from the outbox entry written with the close, and the live
/// view is told.
pub(crate) async fn session_closed(app: &App, station: &str, id: &str) {
    if let Some(tx) = id.strip_prefix(&format!("{station}:")) {
        cost_updates()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(station.to_owned(), tx.to_owned()));
    }
    app.notify(crate::events::LiveEvent::SessionClosed {
        station: station.to_string(),
        session: id.to_string(),
    });
    app.run_outbox(&format!("bill:{id}"), "bill", id).await;
}

/// The detail of a `security` alert.
#[derive(Debug, serde::Serialize)]
struct SecurityDetail<'a> {
    r#type: &'a str,
    tech_info: Option<&'a str>,
    /// As on the wire (RFC 3339).
    timestamp: String,
}

/// A SecurityEventNotification: a `security` alert (one open at a time).
async fn security_event(
    app: &App,
    station: &str,
    event: &SecurityDetail<'_>,
) -> Result<(), Unanswered> {
    app.seen(station);
    let detail = serde_json::to_value(event)?;
    if app
        .store
        .raise_alert(Some(station), "security", &detail)
        .await?
        .is_some()
    {
        app.notify(crate::events::LiveEvent::alert(
            station, "security", &detail,
        ));
    }
    Ok(())
}

/// The detail of an `event` alert (2.x NotifyEvent).
#[derive(Debug, serde::Serialize)]
struct EventDetail<'a> {
    component: &'a str,
    variable: &'a str,
    value: &'a str,
    tech_code: Option<&'a str>,
}

/// A NotifyEvent's alerting and hard-wired events: each an `event` alert.
async fn notify_event(
    app: &App,
    station: &str,
    alerts: &[EventDetail<'_>],
) -> Result<(), Unanswered> {
    app.seen(station);
    for a in alerts {
        let detail = serde_json::to_value(a)?;
        app.store
            .raise_alert(Some(station), "event", &detail)
            .await?;
        app.notify(crate::events::LiveEvent::alert(station, "event", &detail));
    }
    Ok(())
}

/// Each monitor's latest value (NotifyEvent), while the station has fewer
/// monitors kept than its report rows allow (else a capped alert).
async fn monitor_values(
    app: &App,
    station: &str,
    values: &[crate::store::MonitorValue],
) -> Result<(), Unanswered> {
    if values.is_empty() {
        return Ok(());
    }
    let cap = app.config.station_limits.max_report_rows;
    let dropped = app.store.put_monitor_values(station, values, cap).await?;
    if dropped > 0 {
        report_capped(app, station, "monitor_values", cap, dropped).await?;
    }
    Ok(())
}

/// A device-model component's key: `name[instance]`, `name@evse<id>` or `name`.
pub(crate) fn component_key(name: &str, instance: Option<&str>, evse: Option<i32>) -> String {
    match (instance, evse) {
        (Some(i), _) => format!("{name}[{i}]"),
        (None, Some(e)) => format!("{name}@evse{e}"),
        (None, None) => name.to_owned(),
    }
}

/// A device-model variable's key: `name[instance]` or `name`.
pub(crate) fn variable_key(name: &str, instance: Option<&str>) -> String {
    match instance {
        Some(i) => format!("{name}[{i}]"),
        None => name.to_owned(),
    }
}

/// One reported variable: (component key, variable key, the report data as stored).
type DeviceVariable = (String, String, Value);

/// A NotifyReport (GetBaseReport / GetReport answers): the station's device
/// model; the live view hears of it when the last part arrived.
async fn notify_report(
    app: &App,
    station: &str,
    request_id: i32,
    last_part: bool,
    variables: &[DeviceVariable],
) -> Result<(), Unanswered> {
    app.seen(station);
    let cap = app.config.station_limits.max_device_model_rows;
    let mut dropped = 0usize;
    for (component, variable, body) in variables {
        if !app
            .store
            .put_device_model(station, component, variable, body, cap)
            .await?
        {
            dropped += 1;
        }
    }
    if dropped > 0 {
        report_capped(app, station, "device_model", cap, dropped).await?;
    }
    if last_part {
        app.notify(crate::events::LiveEvent::DeviceModel {
            station: station.to_string(),
            request_id,
        });
    }
    Ok(())
}

/// A status reported for an operation the CSMS started (firmware update,
/// log upload), as stored.
#[derive(Debug, serde::Serialize)]
struct OperationStatus<'a> {
    at: String,
    request_id: Option<i32>,
    status: &'a str,
}

/// A firmware update's progress, version-independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Firmware {
    /// As sent.
    status: &'static str,
    /// Download, installation or signature verification failed.
    failed: bool,
    /// The UpdateFirmware request (1.6 FirmwareStatusNotification has none).
    request_id: Option<i32>,
}

macro_rules! firmware_from {
    ($req:ty, $enum:ty, $request_id:expr, [$($failed:ident),*]) => {
        impl From<&$req> for Firmware {
            fn from(m: &$req) -> Self {
                Firmware {
                    status: m.status.as_str(),
                    failed: matches!(m.status, $(<$enum>::$failed)|*),
                    request_id: $request_id(m),
                }
            }
        }
    };
}
firmware_from!(
    v16::FirmwareStatusNotificationRequest,
    v16::FirmwareStatus,
    |_: &v16::FirmwareStatusNotificationRequest| None,
    [DownloadFailed, InstallationFailed]
);
firmware_from!(
    v16::SignedFirmwareStatusNotificationRequest,
    v16::FirmwareStatusEnumType,
    |m: &v16::SignedFirmwareStatusNotificationRequest| m.request_id,
    [
        DownloadFailed,
        InstallationFailed,
        InstallVerificationFailed,
        InvalidSignature
    ]
);
firmware_from!(
    v201::FirmwareStatusNotificationRequest,
    v201::FirmwareStatusEnumType,
    |m: &v201::FirmwareStatusNotificationRequest| m.request_id,
    [
        DownloadFailed,
        InstallationFailed,
        InstallVerificationFailed,
        InvalidSignature
    ]
);
firmware_from!(
    v21::FirmwareStatusNotificationRequest,
    v21::FirmwareStatusEnumType,
    |m: &v21::FirmwareStatusNotificationRequest| m.request_id,
    [
        DownloadFailed,
        InstallationFailed,
        InstallVerificationFailed,
        InvalidSignature
    ]
);

/// A firmware status: kept as the station's latest (firmware campaigns show
/// it); a failure is a `firmware` alert.
async fn firmware_status(app: &App, station: &str, f: Firmware) -> Result<(), Unanswered> {
    app.seen(station);
    let status = crate::store::OperationStatus {
        at: chrono::Utc::now(),
        request_id: f.request_id,
        status: f.status.to_owned(),
    };
    app.store
        .put_operation_status(station, crate::store::Operation::Firmware, &status)
        .await?;
    if f.failed {
        let detail = serde_json::to_value(&status)?;
        app.store
            .raise_alert(Some(station), "firmware", &detail)
            .await?;
    }
    app.notify(crate::events::LiveEvent::FirmwareStatus {
        station: station.to_string(),
        status: f.status.to_string(),
    });
    Ok(())
}

/// A log upload's status (2.x and 1.6 security LogStatusNotification, 1.6
/// DiagnosticsStatusNotification), kept as the station's latest.
async fn log_status(
    app: &App,
    station: &str,
    status: &str,
    request_id: Option<i32>,
) -> Result<(), Unanswered> {
    app.seen(station);
    let record = crate::store::OperationStatus {
        at: chrono::Utc::now(),
        request_id,
        status: status.to_owned(),
    };
    app.store
        .put_operation_status(station, crate::store::Operation::Log, &record)
        .await?;
    app.notify(crate::events::LiveEvent::LogStatus {
        station: station.to_string(),
        status: status.to_string(),
    });
    Ok(())
}

/// A reservation's end as the station reports it (2.x), as stored.
#[derive(Debug, serde::Serialize)]
struct ReservationStatus<'a> {
    at: String,
    reservation_id: i32,
    status: &'a str,
}

/// A ReservationStatusUpdate: kept per reservation.
async fn reservation_status(
    app: &App,
    station: &str,
    reservation_id: i32,
    status: &str,
) -> Result<(), Unanswered> {
    app.seen(station);
    reservations::reported(app, station, reservation_id, status).await?;
    let status = serde_json::to_value(ReservationStatus {
        at: now(),
        reservation_id,
        status,
    })?;
    app.notify(crate::events::LiveEvent::Reservation {
        station: station.to_string(),
        status: status.to_string(),
    });
    Ok(())
}

// -- 1.6 --

async fn boot_notification_16(
    ctx: Ctx<Arc<App>>,
    req: v16::BootNotificationRequest,
) -> Result<v16::BootNotificationResponse, CallError> {
    type A = v16::action::BootNotification;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    let info = StationInfo {
        vendor: &req.charge_point_vendor,
        model: &req.charge_point_model,
        serial: req.charge_point_serial_number.as_deref(),
        firmware: req.firmware_version.as_deref(),
    };
    let status = boot(app, station, ctx.version, &info)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    if status == Registration::Accepted {
        // 1.6 gives no reason: a boot the CSMS did not ask for is unplanned
        let reason = evproto_csms_core::health::BootReason::Unknown;
        crate::maintenance::rebooted(app, station, reason).await;
    }
    Ok(v16::BootNotificationResponse {
        status: status.into(),
        current_time: Utc::now(),
        interval: heartbeat_interval(app),
    })
}

async fn heartbeat_16(
    ctx: Ctx<Arc<App>>,
    _: v16::HeartbeatRequest,
) -> Result<v16::HeartbeatResponse, CallError> {
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<v16::action::Heartbeat>(app, station);
    app.seen(station);
    end_silent_sessions(app, station, ctx.version).await;
    Ok(v16::HeartbeatResponse {
        current_time: Utc::now(),
    })
}

async fn status_notification_16(
    ctx: Ctx<Arc<App>>,
    req: v16::StatusNotificationRequest,
) -> Result<v16::StatusNotificationResponse, CallError> {
    type A = v16::action::StatusNotification;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    let status = ConnectorStatus::from_v16(&req, Utc::now());
    within_limits(app, station, status.evse, None)?;
    status_notification(app, station, &status)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    end_stuck_sessions(app, station, ctx.version, &status)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::StatusNotificationResponse {})
}

async fn authorize_16(
    ctx: Ctx<Arc<App>>,
    req: v16::AuthorizeRequest,
) -> Result<v16::AuthorizeResponse, CallError> {
    type A = v16::action::Authorize;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    let decision = decide(app, station, &req.id_tag, Purpose::Authorize16, None)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::AuthorizeResponse {
        id_tag_info: decision.to_v16(),
    })
}

async fn data_transfer_16(
    ctx: Ctx<Arc<App>>,
    req: v16::DataTransferRequest,
) -> Result<v16::DataTransferResponse, CallError> {
    message::<v16::action::DataTransfer>(&ctx.state, &ctx.identity);
    // Plug & Charge by the OCA application note (with --pnc)
    if let Some(answer) = crate::pnc::oca16::data_transfer(&ctx.state, &ctx.identity, &req).await {
        return answer;
    }
    // no other vendor extensions here
    Ok(v16::DataTransferResponse {
        status: v16::DataTransferStatus::UnknownVendorId,
        data: None,
    })
}

async fn security_event_notification_16(
    ctx: Ctx<Arc<App>>,
    req: v16::SecurityEventNotificationRequest,
) -> Result<v16::SecurityEventNotificationResponse, CallError> {
    type A = v16::action::SecurityEventNotification;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    let event = SecurityDetail {
        r#type: &req.r#type,
        tech_info: req.tech_info.as_deref(),
        timestamp: wire_time(&req.timestamp),
    };
    security_event(app, station, &event)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::SecurityEventNotificationResponse {})
}

async fn firmware_status_notification_16(
    ctx: Ctx<Arc<App>>,
    req: v16::FirmwareStatusNotificationRequest,
) -> Result<v16::FirmwareStatusNotificationResponse, CallError> {
    type A = v16::action::FirmwareStatusNotification;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    firmware_status(app, station, Firmware::from(&req))
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::FirmwareStatusNotificationResponse {})
}

async fn signed_firmware_status_notification_16(
    ctx: Ctx<Arc<App>>,
    req: v16::SignedFirmwareStatusNotificationRequest,
) -> Result<v16::SignedFirmwareStatusNotificationResponse, CallError> {
    type A = v16::action::SignedFirmwareStatusNotification;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    firmware_status(app, station, Firmware::from(&req))
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::SignedFirmwareStatusNotificationResponse {})
}

async fn diagnostics_status_notification_16(
    ctx: Ctx<Arc<App>>,
    req: v16::DiagnosticsStatusNotificationRequest,
) -> Result<v16::DiagnosticsStatusNotificationResponse, CallError> {
    type A = v16::action::DiagnosticsStatusNotification;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    log_status(app, station, req.status.as_str(), None)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::DiagnosticsStatusNotificationResponse {})
}

async fn log_status_notification_16(
    ctx: Ctx<Arc<App>>,
    req: v16::LogStatusNotificationRequest,
) -> Result<v16::LogStatusNotificationResponse, CallError> {
    type A = v16::action::LogStatusNotification;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    log_status(app, station, req.status.as_str(), req.request_id)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::LogStatusNotificationResponse {})
}

/// A time as the codec writes it on the wire (RFC 3339, `Z`).
fn wire_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

// -- 2.0.1 and 2.1 --

/// The 2.x handlers of everything but transactions, in a module per version
/// (the same code for 2.0.1 and 2.1); `$auth_extra` are the fields 2.1 adds
/// to `AuthorizeResponse`.
macro_rules! station_handlers_2x {
    ($m:ident, $ver:ident, $to_info:ident, [$($auth_extra:ident),*]) => {
        mod $m {
            use super::*;

            pub(super) async fn boot_notification(
                ctx: Ctx<Arc<App>>,
                req: $ver::BootNotificationRequest,
            ) -> Result<$ver::BootNotificationResponse, CallError> {
                type A = $ver::action::BootNotification;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let cs = &req.charging_station;
                let info = StationInfo {
                    vendor: &cs.vendor_name,
                    model: &cs.model,
                    serial: cs.serial_number.as_deref(),
                    firmware: cs.firmware_version.as_deref(),
                };
                let status = boot(app, station, ctx.version, &info)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                if status == Registration::Accepted {
                    crate::maintenance::rebooted(app, station, req.reason.into()).await;
                }
                if status == Registration::Accepted && ctx.version == ProtocolVersion::V21 {
                    // 2.1 local cost: its default tariff, after this answer
                    crate::local_cost::station_booted(app, station);
                    // DER site policy: its controls, after this answer
                    crate::der::station_booted(app, station);
                }
                Ok($ver::BootNotificationResponse {
                    status: status.into(),
                    current_time: Utc::now(),
                    interval: heartbeat_interval(app),
                    status_info: None,
                    custom_data: None,
                })
            }

            pub(super) async fn heartbeat(
                ctx: Ctx<Arc<App>>,
                _: $ver::HeartbeatRequest,
            ) -> Result<$ver::HeartbeatResponse, CallError> {
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<$ver::action::Heartbeat>(app, station);
                app.seen(station);
                end_silent_sessions(app, station, ctx.version).await;
                Ok($ver::HeartbeatResponse {
                    current_time: Utc::now(),
                    custom_data: None,
                })
            }

            pub(super) async fn status_notification(
                ctx: Ctx<Arc<App>>,
                req: $ver::StatusNotificationRequest,
            ) -> Result<$ver::StatusNotificationResponse, CallError> {
                type A = $ver::action::StatusNotification;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let status = ConnectorStatus::from(&req);
                within_limits(app, station, status.evse, Some(status.connector))?;
                super::status_notification(app, station, &status)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                end_stuck_sessions(app, station, ctx.version, &status)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::StatusNotificationResponse { custom_data: None })
            }

            pub(super) async fn authorize(
                ctx: Ctx<Arc<App>>,
                req: $ver::AuthorizeRequest,
            ) -> Result<$ver::AuthorizeResponse, CallError> {
                type A = $ver::action::Authorize;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let decision = decide(app, station, &req.id_token.id_token, Purpose::Authorize, None)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                // Plug & Charge: a contract's certificate decides it (C07)
                let (decision, verdict) =
                    crate::pnc::ocpp::authorize_contract(app, &req, decision).await;
                let mut info = decision.$to_info();
                // I01: the driver's tariff in words
                crate::authorize::personalize(app, &req.id_token.id_token, None, &mut info).await;
                Ok($ver::AuthorizeResponse {
                    id_token_info: info,
                    certificate_status: verdict.and_then(|v| v.as_str().parse().ok()),
                    custom_data: None,
                    $($auth_extra: None,)*
                })
            }

            pub(super) async fn data_transfer(
                ctx: Ctx<Arc<App>>,
                _: $ver::DataTransferRequest,
            ) -> Result<$ver::DataTransferResponse, CallError> {
                message::<$ver::action::DataTransfer>(&ctx.state, &ctx.identity);
                // no vendor extensions here
                Ok($ver::DataTransferResponse {
                    status: $ver::DataTransferStatusEnumType::UnknownVendorId,
                    status_info: None,
                    data: None,
                    custom_data: None,
                })
            }

            pub(super) async fn security_event_notification(
                ctx: Ctx<Arc<App>>,
                req: $ver::SecurityEventNotificationRequest,
            ) -> Result<$ver::SecurityEventNotificationResponse, CallError> {
                type A = $ver::action::SecurityEventNotification;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let event = SecurityDetail {
                    r#type: &req.r#type,
                    tech_info: req.tech_info.as_deref(),
                    timestamp: wire_time(&req.timestamp),
                };
                security_event(app, station, &event)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::SecurityEventNotificationResponse { custom_data: None })
            }

            pub(super) async fn firmware_status_notification(
                ctx: Ctx<Arc<App>>,
                req: $ver::FirmwareStatusNotificationRequest,
            ) -> Result<$ver::FirmwareStatusNotificationResponse, CallError> {
                type A = $ver::action::FirmwareStatusNotification;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                firmware_status(app, station, Firmware::from(&req))
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::FirmwareStatusNotificationResponse { custom_data: None })
            }

            pub(super) async fn log_status_notification(
                ctx: Ctx<Arc<App>>,
                req: $ver::LogStatusNotificationRequest,
            ) -> Result<$ver::LogStatusNotificationResponse, CallError> {
                type A = $ver::action::LogStatusNotification;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                log_status(app, station, req.status.as_str(), req.request_id)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::LogStatusNotificationResponse { custom_data: None })
            }

            pub(super) async fn notify_event(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyEventRequest,
            ) -> Result<$ver::NotifyEventResponse, CallError> {
                type A = $ver::action::NotifyEvent;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                // monitors that alert, and hard-wired notifications (2.0.1 N07)
                let alerts: Vec<EventDetail<'_>> = req
                    .event_data
                    .iter()
                    .filter(|e| {
                        e.trigger == $ver::EventTriggerEnumType::Alerting
                            || e.event_notification_type
                                == $ver::EventNotificationEnumType::HardWiredNotification
                    })
                    .map(|e| EventDetail {
                        component: &e.component.name,
                        variable: &e.variable.name,
                        value: &e.actual_value,
                        tech_code: e.tech_code.as_deref(),
                    })
                    .collect();
                super::notify_event(app, station, &alerts)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                // each monitor's latest value (N07, N08 periodic events)
                let values: Vec<crate::store::MonitorValue> = req
                    .event_data
                    .iter()
                    .filter_map(|e| {
                        Some(crate::store::MonitorValue {
                            monitor_id: e.variable_monitoring_id?,
                            component: component_key(
                                &e.component.name,
                                e.component.instance.as_deref(),
                                e.component.evse.as_ref().map(|v| v.id),
                            ),
                            variable: variable_key(&e.variable.name, e.variable.instance.as_deref()),
                            value: e.actual_value.as_str().to_owned(),
                            trigger: e.trigger.as_str().to_owned(),
                            at: e.timestamp,
                        })
                    })
                    .collect();
                monitor_values(app, station, &values)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::NotifyEventResponse { custom_data: None })
            }

            pub(super) async fn notify_report(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyReportRequest,
            ) -> Result<$ver::NotifyReportResponse, CallError> {
                type A = $ver::action::NotifyReport;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let variables = req
                    .report_data
                    .iter()
                    .flatten()
                    .map(|d| {
                        let (c, v) = (&d.component, &d.variable);
                        Ok((
                            component_key(&c.name, c.instance.as_deref(), c.evse.as_ref().map(|e| e.id)),
                            variable_key(&v.name, v.instance.as_deref()),
                            serde_json::to_value(d)?,
                        ))
                    })
                    .collect::<Result<Vec<DeviceVariable>, serde_json::Error>>()
                    .map_err(|e| unanswered::<A>(station, e))?;
                super::notify_report(app, station, req.request_id, req.tbc != Some(true), &variables)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::NotifyReportResponse { custom_data: None })
            }

            pub(super) async fn reservation_status_update(
                ctx: Ctx<Arc<App>>,
                req: $ver::ReservationStatusUpdateRequest,
            ) -> Result<$ver::ReservationStatusUpdateResponse, CallError> {
                type A = $ver::action::ReservationStatusUpdate;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                reservation_status(
                    app,
                    station,
                    req.reservation_id,
                    req.reservation_update_status.as_str(),
                )
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::ReservationStatusUpdateResponse { custom_data: None })
            }
        }
    };
}
station_handlers_2x!(station_201, v201, to_v201, []);
station_handlers_2x!(station_21, v21, to_v21, [allowed_energy_transfer, tariff]);

// ---- reports: what a station tells besides transactions (`station_reports`) ----

/// The kinds of station report, as stored (`station_reports.kind`), shown
/// (`GET /api/stations/{id}/reports?kind=`) and named in the live view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// NotifyChargingLimit, ClearedChargingLimit (2.x K11–K14); key: source and EVSE.
    ChargingLimit,
    /// NotifyEVChargingNeeds (2.x K15–K17); key: the EVSE.
    EvChargingNeeds,
    /// NotifyEVChargingSchedule (2.x K15–K17); key: the EVSE.
    EvChargingSchedule,
    /// ReportChargingProfiles (2.x K09, the answer to GetChargingProfiles); key: request and EVSE.
    ChargingProfiles,
    /// NotifyDisplayMessages (2.x O04); key: the request.
    DisplayMessages,
    /// NotifyMonitoringReport (2.x N02); key: request and part.
    MonitoringReport,
    /// NotifyCustomerInformation (2.x N09); key: request and part.
    CustomerInformation,
    /// PublishFirmwareStatusNotification (2.x L03); key: the request.
    PublishFirmware,
    /// A certificate request this CSMS does not serve yet (SignCertificate,
    /// Get15118EVCertificate, GetCertificateStatus, GetCertificateChainStatus);
    /// key: the action.
    CertificateRequest,
    /// BatterySwap (2.1); key: the request.
    BatterySwap,
    /// The operator's RequestBatterySwap (2.1) and the station's answer
    /// (`crate::battery_swap`); key: the request.
    BatterySwapRequest,
    /// Open/ClosePeriodicEventStream (2.1); key: the stream.
    EventStream,
    /// NotifyDERAlarm (2.1); key: the DER control type.
    DerAlarm,
    /// NotifyDERStartStop (2.1); key: the control.
    DerStartStop,
    /// ReportDERControl (2.1); key: the request.
    DerControl,
    /// NotifyPriorityCharging (2.1); key: the transaction.
    PriorityCharging,
    /// NotifySettlement (2.1); key: the payment service provider's reference.
    Settlement,
    /// PullDynamicScheduleUpdate (2.1); key: the charging profile.
    DynamicSchedule,
    /// VatNumberValidation (2.1); key: the VAT number.
    VatNumber,
}

impl ReportKind {
    /// Every kind.
    pub const ALL: [ReportKind; 19] = [
        ReportKind::ChargingLimit,
        ReportKind::EvChargingNeeds,
        ReportKind::EvChargingSchedule,
        ReportKind::ChargingProfiles,
        ReportKind::DisplayMessages,
        ReportKind::MonitoringReport,
        ReportKind::CustomerInformation,
        ReportKind::PublishFirmware,
        ReportKind::CertificateRequest,
        ReportKind::BatterySwap,
        ReportKind::BatterySwapRequest,
        ReportKind::EventStream,
        ReportKind::DerAlarm,
        ReportKind::DerStartStop,
        ReportKind::DerControl,
        ReportKind::PriorityCharging,
        ReportKind::Settlement,
        ReportKind::DynamicSchedule,
        ReportKind::VatNumber,
    ];

    /// As stored and filtered on.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::ChargingLimit => "charging_limit",
            ReportKind::EvChargingNeeds => "ev_charging_needs",
            ReportKind::EvChargingSchedule => "ev_charging_schedule",
            ReportKind::ChargingProfiles => "charging_profiles",
            ReportKind::DisplayMessages => "display_messages",
            ReportKind::MonitoringReport => "monitoring_report",
            ReportKind::CustomerInformation => "customer_information",
            ReportKind::PublishFirmware => "publish_firmware",
            ReportKind::CertificateRequest => "certificate_request",
            ReportKind::BatterySwap => crate::battery_swap::SWAP,
            ReportKind::BatterySwapRequest => crate::battery_swap::REQUEST,
            ReportKind::EventStream => "event_stream",
            ReportKind::DerAlarm => "der_alarm",
            ReportKind::DerStartStop => "der_start_stop",
            ReportKind::DerControl => "der_control",
            ReportKind::PriorityCharging => "priority_charging",
            ReportKind::Settlement => "settlement",
            ReportKind::DynamicSchedule => "dynamic_schedule",
            ReportKind::VatNumber => "vat_number",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Keeps what a station reported and tells the live view.
async fn keep_report(
    app: &App,
    station: &str,
    kind: ReportKind,
    key: &str,
    body: &impl serde::Serialize,
) -> Result<(), Unanswered> {
    app.seen(station);
    let cap = app.config.station_limits.max_report_rows;
    if !app
        .store
        .add_station_report(
            station,
            kind.as_str(),
            key,
            &serde_json::to_value(body)?,
            cap,
        )
        .await?
    {
        return report_capped(app, station, kind.as_str(), cap, 1).await;
    }
    app.notify(crate::events::LiveEvent::Report {
        station: station.to_string(),
        kind: kind.as_str().to_string(),
        key: key.to_string(),
    });
    Ok(())
}

/// The detail of a `report_capped` alert.
#[derive(Debug, serde::Serialize)]
struct CappedDetail<'a> {
    report: &'a str,
    max_rows: i64,
    dropped: usize,
}

/// A station's reports hit their row cap: what did not fit is dropped, the
/// operator is told.
async fn report_capped(
    app: &App,
    station: &str,
    report: &str,
    max_rows: i64,
    dropped: usize,
) -> Result<(), Unanswered> {
    tracing::warn!(station, report, max_rows, dropped, "report rows capped");
    alert(
        app,
        station,
        "report_capped",
        &CappedDetail {
            report,
            max_rows,
            dropped,
        },
    )
    .await
}

/// Raises an alert of `kind` (one open per station and kind) and shows it.
async fn alert(
    app: &App,
    station: &str,
    kind: &str,
    detail: &impl serde::Serialize,
) -> Result<(), Unanswered> {
    let detail = serde_json::to_value(detail)?;
    if app
        .store
        .raise_alert(Some(station), kind, &detail)
        .await?
        .is_some()
    {
        app.notify(crate::events::LiveEvent::alert(station, kind, &detail));
    }
    Ok(())
}

/// The key of an EVSE (`evse<id>`; 0 or none: the whole station).
pub(crate) fn evse_key(evse: Option<i32>) -> String {
    match evse {
        Some(e) if e > 0 => format!("evse{e}"),
        _ => "station".to_owned(),
    }
}

/// The EVSE a report's key names ([`evse_key`]; `None` for the station).
pub(crate) fn evse_of_key(key: &str) -> Option<u32> {
    key.strip_prefix("evse")?.parse().ok().filter(|e| *e > 0)
}

/// The key of a charging limit: its source on an EVSE (`EMS@evse1`).
fn limit_key(source: &str, evse: Option<i32>) -> String {
    format!("{source}@{}", evse_key(evse))
}

/// A charging limit a station says was cleared (ClearedChargingLimit), as stored.
#[derive(Debug, serde::Serialize)]
struct ClearedLimit<'a> {
    cleared: bool,
    #[serde(rename = "chargingLimitSource")]
    source: &'a str,
    #[serde(rename = "evseId")]
    evse: Option<i32>,
}

/// The charging limits in force at a station: the latest NotifyChargingLimit
/// per source and EVSE that no ClearedChargingLimit followed.
pub async fn charging_limits(
    store: &crate::store::Store,
    station: &str,
) -> crate::store::Result<Vec<crate::store::StationReport>> {
    Ok(store
        .latest_station_reports(station, ReportKind::ChargingLimit.as_str())
        .await?
        .into_iter()
        .filter(|r| r.body["cleared"] != true)
        .collect())
}

/// The latest charging needs an EV sent per EVSE (NotifyEVChargingNeeds).
pub async fn ev_charging_needs(
    store: &crate::store::Store,
    station: &str,
) -> crate::store::Result<Vec<crate::store::StationReport>> {
    store
        .latest_station_reports(station, ReportKind::EvChargingNeeds.as_str())
        .await
}

/// Why a certificate request is answered `Rejected`/`Failed`: this CSMS has
/// no certificate authority, OCSP responder or contract certificate pool
/// yet (Plug & Charge, its own issue, will serve them). The request is kept
/// (`certificate_request` report) and raises a `certificate` alert, so an
/// operator sees a station whose certificate cannot be renewed.
const CERTIFICATES_NOT_SERVED: &str =
    "this CSMS does not serve certificate requests yet (no CA, OCSP or contract certificates)";

/// The `reasonCode` of an answer to something this CSMS does not serve.
const NOT_SUPPORTED: &str = "NotSupported";

/// The detail of a `certificate` alert.
#[derive(Debug, serde::Serialize)]
struct CertificateDetail<'a> {
    action: &'a str,
    reason: &'a str,
}

/// A certificate request (action `A`): kept, alerted, to be refused.
async fn certificate_request<A: Action>(
    app: &App,
    station: &str,
    request: &impl serde::Serialize,
) -> Result<(), Unanswered> {
    keep_report(
        app,
        station,
        ReportKind::CertificateRequest,
        A::NAME,
        request,
    )
    .await?;
    alert(
        app,
        station,
        "certificate",
        &CertificateDetail {
            action: A::NAME,
            reason: CERTIFICATES_NOT_SERVED,
        },
    )
    .await
}

/// Whether a PublishFirmwareStatusNotification reports a failure.
fn publish_failed(status: &str) -> bool {
    matches!(
        status,
        "DownloadFailed" | "InvalidChecksum" | "PublishFailed"
    )
}

/// The 2.x handlers of reports, limits and certificate requests, the same
/// code for 2.0.1 and 2.1 in a module per version; `$no_schedule` is how
/// the version says "no charging schedule for these needs".
macro_rules! report_handlers_2x {
    ($m:ident, $ver:ident, $no_schedule:ident) => {
        mod $m {
            use super::*;

            fn not_served(info: &str) -> Option<$ver::StatusInfoType> {
                Some($ver::StatusInfoType {
                    reason_code: NOT_SUPPORTED.parse().ok()?,
                    additional_info: info.parse().ok(),
                    custom_data: None,
                })
            }

            /// K12/K13: a limit from an external source (EMS, SO, …) is in force.
            pub(super) async fn notify_charging_limit(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyChargingLimitRequest,
            ) -> Result<$ver::NotifyChargingLimitResponse, CallError> {
                type A = $ver::action::NotifyChargingLimit;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let key = limit_key(
                    req.charging_limit.charging_limit_source.as_str(),
                    req.evse_id,
                );
                keep_report(app, station, ReportKind::ChargingLimit, &key, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                // K11: the site's shares respect it
                app.site.rebalance();
                Ok($ver::NotifyChargingLimitResponse { custom_data: None })
            }

            /// K14: an external limit no longer applies.
            pub(super) async fn cleared_charging_limit(
                ctx: Ctx<Arc<App>>,
                req: $ver::ClearedChargingLimitRequest,
            ) -> Result<$ver::ClearedChargingLimitResponse, CallError> {
                type A = $ver::action::ClearedChargingLimit;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let source = req.charging_limit_source.as_str();
                let cleared = ClearedLimit {
                    cleared: true,
                    source,
                    evse: req.evse_id,
                };
                keep_report(
                    app,
                    station,
                    ReportKind::ChargingLimit,
                    &limit_key(source, req.evse_id),
                    &cleared,
                )
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
                // K14: the capacity it held is shared again
                app.site.rebalance();
                Ok($ver::ClearedChargingLimitResponse { custom_data: None })
            }

            /// K15/K17: the EV's charging needs. Kept and shown per EVSE. With
            /// smart charging on (the site share, see `smart`), the session's
            /// share counts them (the EV's maximum on its phases, its need by
            /// departure) and its `TxProfile` is sent again: `Accepted`.
            /// Without, this CSMS offers no schedule.
            pub(super) async fn notify_ev_charging_needs(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyEVChargingNeedsRequest,
            ) -> Result<$ver::NotifyEVChargingNeedsResponse, CallError> {
                type A = $ver::action::NotifyEVChargingNeeds;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                keep_report(
                    app,
                    station,
                    ReportKind::EvChargingNeeds,
                    &evse_key(Some(req.evse_id)),
                    &req,
                )
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
                // a bidirectional EV's session gets a V2X schedule (crate::v2x)
                if crate::v2x::on_needs(app, station, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?
                {
                    // the others' shares count its needs
                    app.site.rebalance();
                    return Ok($ver::NotifyEVChargingNeedsResponse {
                        status: $ver::NotifyEVChargingNeedsStatusEnumType::Accepted,
                        status_info: None,
                        custom_data: None,
                    });
                }
                // K15/K17: with smart charging on the transaction's
                // TxProfile is computed again with these needs and sent
                if app.site.offers_schedules() {
                    if let Ok(evse) = u32::try_from(req.evse_id) {
                        app.site.renegotiate(station, evse);
                        return Ok($ver::NotifyEVChargingNeedsResponse {
                            status: $ver::NotifyEVChargingNeedsStatusEnumType::Accepted,
                            status_info: None,
                            custom_data: None,
                        });
                    }
                }
                Ok($ver::NotifyEVChargingNeedsResponse {
                    status: $ver::NotifyEVChargingNeedsStatusEnumType::$no_schedule,
                    status_info: $ver::StatusInfoType {
                        reason_code: "NoSchedule"
                            .parse()
                            .map_err(|e| unanswered::<A>(station, e))?,
                        additional_info: "no charging schedule is computed from EV charging needs"
                            .parse()
                            .ok(),
                        custom_data: None,
                    }
                    .into(),
                    custom_data: None,
                })
            }

            /// K15/K17: the schedule the EV chose; kept per EVSE and accepted.
            pub(super) async fn notify_ev_charging_schedule(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyEVChargingScheduleRequest,
            ) -> Result<$ver::NotifyEVChargingScheduleResponse, CallError> {
                type A = $ver::action::NotifyEVChargingSchedule;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                keep_report(
                    app,
                    station,
                    ReportKind::EvChargingSchedule,
                    &evse_key(Some(req.evse_id)),
                    &req,
                )
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
                // K15.FR.10-13, K16: the EV's schedule against the TxProfile
                // the CSMS installed; outside it: Rejected, and the CSMS
                // renegotiates (sends its TxProfile again)
                let schedule = &req.charging_schedule;
                let in_watts = schedule.charging_rate_unit == $ver::ChargingRateUnitEnumType::W;
                let periods: Vec<(rust_decimal::Decimal, bool, u8)> = schedule
                    .charging_schedule_period
                    .iter()
                    .filter_map(|p| {
                        let limit: Option<rust_decimal::Decimal> = p.limit.into();
                        let phases = p.number_phases.and_then(|n| u8::try_from(n).ok());
                        Some((limit?, in_watts, phases.unwrap_or(3)))
                    })
                    .collect();
                let evse = u32::try_from(req.evse_id).unwrap_or(0);
                if app.site.ev_schedule_within(station, evse, &periods) == Some(false) {
                    app.site.renegotiate(station, evse);
                    return Ok($ver::NotifyEVChargingScheduleResponse {
                        status: $ver::GenericStatusEnumType::Rejected,
                        status_info: $ver::StatusInfoType {
                            reason_code: "OutOfLimits"
                                .parse()
                                .map_err(|e| unanswered::<A>(station, e))?,
                            additional_info: "the EV's schedule exceeds the TxProfile the CSMS sent; a new one follows"
                                .parse()
                                .ok(),
                            custom_data: None,
                        }
                        .into(),
                        custom_data: None,
                    });
                }
                Ok($ver::NotifyEVChargingScheduleResponse {
                    status: $ver::GenericStatusEnumType::Accepted,
                    status_info: None,
                    custom_data: None,
                })
            }

            /// O04: the display messages a station holds (GetDisplayMessages answer).
            pub(super) async fn notify_display_messages(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyDisplayMessagesRequest,
            ) -> Result<$ver::NotifyDisplayMessagesResponse, CallError> {
                type A = $ver::action::NotifyDisplayMessages;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                keep_report(
                    app,
                    station,
                    ReportKind::DisplayMessages,
                    &req.request_id.to_string(),
                    &req,
                )
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::NotifyDisplayMessagesResponse { custom_data: None })
            }

            /// N02: the monitors a station has (GetMonitoringReport answer), one part.
            pub(super) async fn notify_monitoring_report(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyMonitoringReportRequest,
            ) -> Result<$ver::NotifyMonitoringReportResponse, CallError> {
                type A = $ver::action::NotifyMonitoringReport;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let key = format!("{}:{}", req.request_id, req.seq_no);
                keep_report(app, station, ReportKind::MonitoringReport, &key, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::NotifyMonitoringReportResponse { custom_data: None })
            }

            /// N09: customer information (CustomerInformation answer), one part.
            pub(super) async fn notify_customer_information(
                ctx: Ctx<Arc<App>>,
                req: $ver::NotifyCustomerInformationRequest,
            ) -> Result<$ver::NotifyCustomerInformationResponse, CallError> {
                type A = $ver::action::NotifyCustomerInformation;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let key = format!("{}:{}", req.request_id, req.seq_no);
                keep_report(app, station, ReportKind::CustomerInformation, &key, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::NotifyCustomerInformationResponse { custom_data: None })
            }

            /// L03: a local controller publishing firmware; a failure is a
            /// `publish_firmware` alert.
            pub(super) async fn publish_firmware_status_notification(
                ctx: Ctx<Arc<App>>,
                req: $ver::PublishFirmwareStatusNotificationRequest,
            ) -> Result<$ver::PublishFirmwareStatusNotificationResponse, CallError> {
                type A = $ver::action::PublishFirmwareStatusNotification;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let key = request_key(req.request_id);
                keep_report(app, station, ReportKind::PublishFirmware, &key, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                let status = req.status.as_str();
                if publish_failed(status) {
                    let detail = OperationStatus {
                        at: now(),
                        request_id: req.request_id,
                        status,
                    };
                    alert(app, station, "publish_firmware", &detail)
                        .await
                        .map_err(|e| unanswered::<A>(station, e))?;
                }
                Ok($ver::PublishFirmwareStatusNotificationResponse { custom_data: None })
            }

            /// K09: the charging profiles a station has (GetChargingProfiles answer).
            pub(super) async fn report_charging_profiles(
                ctx: Ctx<Arc<App>>,
                req: $ver::ReportChargingProfilesRequest,
            ) -> Result<$ver::ReportChargingProfilesResponse, CallError> {
                type A = $ver::action::ReportChargingProfiles;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                let key = format!("{}:{}", req.request_id, evse_key(Some(req.evse_id)));
                keep_report(app, station, ReportKind::ChargingProfiles, &key, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::ReportChargingProfilesResponse { custom_data: None })
            }

            /// M06 (OCSP for a contract certificate): not served yet, `Failed`.
            pub(super) async fn get_certificate_status(
                ctx: Ctx<Arc<App>>,
                req: $ver::GetCertificateStatusRequest,
            ) -> Result<$ver::GetCertificateStatusResponse, CallError> {
                type A = $ver::action::GetCertificateStatus;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                if app.pnc.is_some() {
                    return crate::pnc::ocpp::$ver::get_certificate_status(app, station, req).await;
                }
                certificate_request::<A>(app, station, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::GetCertificateStatusResponse {
                    status: $ver::GetCertificateStatusEnumType::Failed,
                    status_info: not_served(CERTIFICATES_NOT_SERVED),
                    ocsp_result: None,
                    custom_data: None,
                })
            }

            /// M01/M02 (contract certificate install/update): not served yet, `Failed`.
            pub(super) async fn get_15118_ev_certificate(
                ctx: Ctx<Arc<App>>,
                req: $ver::Get15118EVCertificateRequest,
            ) -> Result<$ver::Get15118EVCertificateResponse, CallError> {
                type A = $ver::action::Get15118EVCertificate;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                if app.pnc.is_some() {
                    return crate::pnc::ocpp::$ver::get_15118_ev_certificate(app, station, req)
                        .await;
                }
                certificate_request::<A>(app, station, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                let mut resp: $ver::Get15118EVCertificateResponse =
                    evproto_ocpp_types::from_str(r#"{"status":"Failed","exiResponse":""}"#)
                        .map_err(|e| unanswered::<A>(station, e))?;
                resp.status_info = not_served(CERTIFICATES_NOT_SERVED);
                Ok(resp)
            }

            /// A02/A03 (a station's certificate renewal): not served yet, `Rejected`.
            pub(super) async fn sign_certificate(
                ctx: Ctx<Arc<App>>,
                req: $ver::SignCertificateRequest,
            ) -> Result<$ver::SignCertificateResponse, CallError> {
                type A = $ver::action::SignCertificate;
                let (app, station) = (&ctx.state, &*ctx.identity);
                message::<A>(app, station);
                if app.pnc.is_some() {
                    return crate::pnc::ocpp::$ver::sign_certificate(app, station, req).await;
                }
                certificate_request::<A>(app, station, &req)
                    .await
                    .map_err(|e| unanswered::<A>(station, e))?;
                Ok($ver::SignCertificateResponse {
                    status: $ver::GenericStatusEnumType::Rejected,
                    status_info: not_served(CERTIFICATES_NOT_SERVED),
                    custom_data: None,
                })
            }
        }
    };
}
report_handlers_2x!(reports_201, v201, Rejected);
report_handlers_2x!(reports_21, v21, NoChargingProfile);

/// The key of a report that may name a request (`request<id>`, else `none`).
fn request_key(request_id: Option<i32>) -> String {
    request_id.map_or_else(|| "none".to_owned(), |r| format!("request{r}"))
}

/// 1.6 security A02/A03: a station's certificate renewal, not served yet (`Rejected`).
async fn sign_certificate_16(
    ctx: Ctx<Arc<App>>,
    req: v16::SignCertificateRequest,
) -> Result<v16::SignCertificateResponse, CallError> {
    type A = v16::action::SignCertificate;
    let (app, station) = (&ctx.state, &*ctx.identity);
    message::<A>(app, station);
    if app.pnc.is_some() {
        return crate::pnc::ocpp::sign_certificate_16(app, station, &req).await;
    }
    certificate_request::<A>(app, station, &req)
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
    Ok(v16::SignCertificateResponse {
        status: v16::GenericStatusEnumType::Rejected,
    })
}

/// What only 2.1 stations send.
mod only_21 {
    use super::*;

    fn status_info(reason: &str, info: &str) -> Option<v21::StatusInfoType> {
        Some(v21::StatusInfoType {
            reason_code: reason.parse().ok()?,
            additional_info: info.parse().ok(),
            custom_data: None,
        })
    }

    /// A battery swapped in or out (2.1 battery swapping): kept per request.
    pub(super) async fn battery_swap(
        ctx: Ctx<Arc<App>>,
        req: v21::BatterySwapRequest,
    ) -> Result<v21::BatterySwapResponse, CallError> {
        type A = v21::action::BatterySwap;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::BatterySwap,
            &req.request_id.to_string(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        // a swap for a token not accepted, naming another's request, or timed out
        let finding = crate::battery_swap::judged(app, station, &req)
            .await
            .map_err(|e| unanswered::<A>(station, e))?;
        if let Some(f) = finding {
            alert(app, station, crate::battery_swap::SWAP, &f)
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
        }
        Ok(v21::BatterySwapResponse { custom_data: None })
    }

    /// A station opens a periodic event stream: kept (as a report, and as
    /// an open stream, `crate::streams`) and `Accepted`; its values come as
    /// NotifyPeriodicEventStream SENDs (`crate::streams::received`).
    pub(super) async fn open_periodic_event_stream(
        ctx: Ctx<Arc<App>>,
        req: v21::OpenPeriodicEventStreamRequest,
    ) -> Result<v21::OpenPeriodicEventStreamResponse, CallError> {
        type A = v21::action::OpenPeriodicEventStream;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        let key = req.constant_stream_data.id.to_string();
        keep_report(app, station, ReportKind::EventStream, &key, &req)
            .await
            .map_err(|e| unanswered::<A>(station, e))?;
        crate::streams::opened(app, station, &req)
            .await
            .map_err(|e| unanswered::<A>(station, e))?;
        Ok(v21::OpenPeriodicEventStreamResponse {
            status: v21::GenericStatusEnumType::Accepted,
            status_info: None,
            custom_data: None,
        })
    }

    /// A station closes a periodic event stream: kept, and the stream closed.
    pub(super) async fn close_periodic_event_stream(
        ctx: Ctx<Arc<App>>,
        req: v21::ClosePeriodicEventStreamRequest,
    ) -> Result<v21::ClosePeriodicEventStreamResponse, CallError> {
        type A = v21::action::ClosePeriodicEventStream;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::EventStream,
            &req.id.to_string(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        app.store
            .close_event_stream(station, req.id)
            .await
            .map_err(|e| unanswered::<A>(station, e))?;
        Ok(v21::ClosePeriodicEventStreamResponse { custom_data: None })
    }

    /// OCSP status of a certificate chain: not served yet, `Failed` for each.
    pub(super) async fn get_certificate_chain_status(
        ctx: Ctx<Arc<App>>,
        req: v21::GetCertificateChainStatusRequest,
    ) -> Result<v21::GetCertificateChainStatusResponse, CallError> {
        type A = v21::action::GetCertificateChainStatus;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        certificate_request::<A>(app, station, &req)
            .await
            .map_err(|e| unanswered::<A>(station, e))?;
        let next_update = Utc::now() + chrono::Duration::hours(1);
        Ok(v21::GetCertificateChainStatusResponse {
            certificate_status: req
                .certificate_status_requests
                .iter()
                .map(|r| v21::CertificateStatusType {
                    certificate_hash_data: r.certificate_hash_data.clone(),
                    source: r.source,
                    status: v21::CertificateStatusEnumType::Failed,
                    next_update,
                    custom_data: None,
                })
                .collect(),
            custom_data: None,
        })
    }

    /// A DER alarm: kept, and a `der_alarm` alert until a message says it ended.
    pub(super) async fn notify_der_alarm(
        ctx: Ctx<Arc<App>>,
        req: v21::NotifyDERAlarmRequest,
    ) -> Result<v21::NotifyDERAlarmResponse, CallError> {
        type A = v21::action::NotifyDERAlarm;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::DerAlarm,
            req.control_type.as_str(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        if req.alarm_ended == Some(true) {
            let cleared = app
                .store
                .clear_alerts(station, ReportKind::DerAlarm.as_str())
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
            if cleared > 0 {
                app.notify(crate::events::LiveEvent::AlertCleared {
                    id: None,
                    station: Some(station.to_string()),
                    kind: Some(ReportKind::DerAlarm.as_str().to_string()),
                });
            }
        } else {
            alert(app, station, ReportKind::DerAlarm.as_str(), &req)
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
        }
        Ok(v21::NotifyDERAlarmResponse { custom_data: None })
    }

    /// A DER control started or stopped: kept per control.
    pub(super) async fn notify_der_start_stop(
        ctx: Ctx<Arc<App>>,
        req: v21::NotifyDERStartStopRequest,
    ) -> Result<v21::NotifyDERStartStopResponse, CallError> {
        type A = v21::action::NotifyDERStartStop;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::DerStartStop,
            req.control_id.as_str(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        Ok(v21::NotifyDERStartStopResponse { custom_data: None })
    }

    /// The DER controls a station has (GetDERControl answer): kept per request.
    pub(super) async fn report_der_control(
        ctx: Ctx<Arc<App>>,
        req: v21::ReportDERControlRequest,
    ) -> Result<v21::ReportDERControlResponse, CallError> {
        type A = v21::action::ReportDERControl;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::DerControl,
            &req.request_id.to_string(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        Ok(v21::ReportDERControlResponse { custom_data: None })
    }

    /// Priority charging switched on or off for a transaction: kept per transaction.
    pub(super) async fn notify_priority_charging(
        ctx: Ctx<Arc<App>>,
        req: v21::NotifyPriorityChargingRequest,
    ) -> Result<v21::NotifyPriorityChargingResponse, CallError> {
        type A = v21::action::NotifyPriorityCharging;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::PriorityCharging,
            req.transaction_id.as_str(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        Ok(v21::NotifyPriorityChargingResponse { custom_data: None })
    }

    /// A payment settled at the station's terminal: kept per PSP reference
    /// with the session of its transaction (`GET
    /// /api/sessions/{id}/settlements`) and as a station report; a rejected
    /// or failed settlement is a `settlement` alert; all in one transaction
    /// (`Store::record_settlement`), idempotent per PSP reference. This CSMS
    /// issues no receipts for terminal payments (it keeps the terminal's),
    /// so the answer carries none.
    pub(super) async fn notify_settlement(
        ctx: Ctx<Arc<App>>,
        req: v21::NotifySettlementRequest,
    ) -> Result<v21::NotifySettlementResponse, CallError> {
        type A = v21::action::NotifySettlement;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        app.seen(station);
        let failed = matches!(
            req.status,
            v21::PaymentStatusEnumType::Rejected | v21::PaymentStatusEnumType::Failed
        );
        let body = serde_json::to_value(&req).map_err(|e| unanswered::<A>(station, e))?;
        let tx = req.transaction_id.as_ref().map(|t| t.as_str().to_owned());
        let settlement = crate::store::Settlement {
            station_id: station.to_owned(),
            psp_ref: req.psp_ref.as_str().to_owned(),
            session_id: tx.as_deref().map(|t| sessions::session_id(station, t)),
            transaction_id: tx,
            status: req.status.as_str().to_owned(),
            amount: req.settlement_amount.normalize().to_string(),
            settled_at: wire_time(&req.settlement_time),
            status_info: req.status_info.as_ref().map(|i| i.as_str().to_owned()),
            receipt_id: req.receipt_id.as_ref().map(|r| r.as_str().to_owned()),
            receipt_url: req.receipt_url.as_ref().map(|r| r.as_str().to_owned()),
        };
        let kind = ReportKind::Settlement.as_str();
        let cap = app.config.station_limits.max_report_rows;
        let recorded = app
            .store
            .record_settlement(
                &settlement,
                (kind, &settlement.psp_ref, &body, cap),
                failed.then_some(&body),
            )
            .await
            .map_err(|e| unanswered::<A>(station, e))?;
        if recorded.report_kept {
            app.notify(crate::events::LiveEvent::Report {
                station: station.to_string(),
                kind: kind.to_string(),
                key: settlement.psp_ref.clone(),
            });
        } else {
            report_capped(app, station, kind, cap, 1)
                .await
                .map_err(|e| unanswered::<A>(station, e))?;
        }
        if recorded.alert.is_some() {
            app.notify(crate::events::LiveEvent::alert(station, kind, &body));
        }
        Ok(v21::NotifySettlementResponse {
            receipt_url: None,
            receipt_id: None,
            custom_data: None,
        })
    }

    /// A station asks for an update of a dynamic charging profile. Kept;
    /// a V2X session's profile (`crate::v2x`) gets the setpoint in force,
    /// any other is `Rejected` (the site share is a TxDefaultProfile, see
    /// `smart`: there is nothing to update).
    pub(super) async fn pull_dynamic_schedule_update(
        ctx: Ctx<Arc<App>>,
        req: v21::PullDynamicScheduleUpdateRequest,
    ) -> Result<v21::PullDynamicScheduleUpdateResponse, CallError> {
        type A = v21::action::PullDynamicScheduleUpdate;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::DynamicSchedule,
            &req.charging_profile_id.to_string(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        if let Some(update) = crate::v2x::pulled(app, station, req.charging_profile_id)
            .await
            .map_err(|e| unanswered::<A>(station, e))?
        {
            return Ok(v21::PullDynamicScheduleUpdateResponse {
                schedule_update: Some(update),
                status: v21::ChargingProfileStatusEnumType::Accepted,
                status_info: None,
                custom_data: None,
            });
        }
        Ok(v21::PullDynamicScheduleUpdateResponse {
            schedule_update: None,
            status: v21::ChargingProfileStatusEnumType::Rejected,
            status_info: status_info(
                "UnknownProfile",
                "this CSMS sets no dynamic charging profiles",
            ),
            custom_data: None,
        })
    }

    /// A VAT number to validate for an invoice. Kept, and `Rejected`: this
    /// CSMS has no VAT registry to check it against, and does not call a
    /// number valid that it has not checked.
    pub(super) async fn vat_number_validation(
        ctx: Ctx<Arc<App>>,
        req: v21::VatNumberValidationRequest,
    ) -> Result<v21::VatNumberValidationResponse, CallError> {
        type A = v21::action::VatNumberValidation;
        let (app, station) = (&ctx.state, &*ctx.identity);
        message::<A>(app, station);
        keep_report(
            app,
            station,
            ReportKind::VatNumber,
            req.vat_number.as_str(),
            &req,
        )
        .await
        .map_err(|e| unanswered::<A>(station, e))?;
        Ok(v21::VatNumberValidationResponse {
            company: None,
            status_info: status_info(NOT_SUPPORTED, "no VAT number registry is configured"),
            vat_number: req.vat_number,
            evse_id: req.evse_id,
            status: v21::GenericStatusEnumType::Rejected,
            custom_data: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, s).unwrap()
    }

    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn boot_accepts_registered_stations_and_unknown_ones_as_configured() {
        for policy in [
            UnknownStations::Reject,
            UnknownStations::Pending,
            UnknownStations::Accept,
        ] {
            // a registered station gets what the operator chose for it
            for chosen in [
                Registration::Accepted,
                Registration::Pending,
                Registration::Rejected,
            ] {
                assert_eq!(registration(Some(chosen), policy), chosen);
            }
        }
        assert_eq!(
            registration(None, UnknownStations::Accept),
            Registration::Accepted
        );
        assert_eq!(
            registration(None, UnknownStations::Pending),
            Registration::Pending
        );
        assert_eq!(
            registration(None, UnknownStations::Reject),
            Registration::Rejected
        );
    }

    #[test]
    fn registration_has_the_same_spelling_in_every_version() {
        for r in [
            Registration::Accepted,
            Registration::Pending,
            Registration::Rejected,
        ] {
            assert_eq!(v16::RegistrationStatus::from(r).as_str(), r.as_str());
            assert_eq!(
                v201::RegistrationStatusEnumType::from(r).as_str(),
                r.as_str()
            );
            assert_eq!(
                v21::RegistrationStatusEnumType::from(r).as_str(),
                r.as_str()
            );
        }
    }

    #[test]
    fn station_info_has_the_keys_the_store_reads() {
        let info = StationInfo {
            vendor: "ACME",
            model: "W1",
            serial: None,
            firmware: Some("1.2"),
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(
            (&v["vendor"], &v["model"], &v["serial"], &v["firmware"]),
            (
                &Value::from("ACME"),
                &Value::from("W1"),
                &Value::Null,
                &Value::from("1.2")
            )
        );
    }

    #[test]
    fn a_fault_is_a_faulted_status_or_a_16_error_code() {
        let s16 = |status: &str, error: &str| {
            ConnectorStatus::from_v16(
                &parse(&format!(
                    r#"{{"connectorId":2,"errorCode":"{error}","status":"{status}"}}"#
                )),
                t(1),
            )
        };
        let faulted = s16("Faulted", "NoError");
        assert!(faulted.faulted());
        assert_eq!(
            (
                faulted.evse,
                faulted.connector,
                faulted.reported,
                faulted.report.at
            ),
            (2, 2, "Faulted", t(1))
        );
        assert!(s16("Available", "GroundFailure").faulted());
        assert!(!s16("Charging", "NoError").faulted());
        assert_eq!(s16("Charging", "NoError").reported, "Charging");

        let s201 = ConnectorStatus::from(&parse::<v201::StatusNotificationRequest>(
            r#"{"timestamp":"2026-01-01T10:00:03Z","connectorStatus":"Faulted","evseId":3,"connectorId":1}"#,
        ));
        assert!(s201.faulted());
        assert_eq!(
            (s201.evse, s201.connector, s201.error, s201.report.at),
            (3, 1, None, t(3))
        );
        let s21 = ConnectorStatus::from(&parse::<v21::StatusNotificationRequest>(
            r#"{"timestamp":"2026-01-01T10:00:04Z","connectorStatus":"Unavailable","evseId":1,"connectorId":2}"#,
        ));
        assert!(!s21.faulted());
        assert_eq!(s21.reported, "Unavailable");
    }

    #[test]
    fn failed_firmware_updates_in_every_version() {
        let f16 = |s: &str| {
            Firmware::from(&parse::<v16::FirmwareStatusNotificationRequest>(&format!(
                r#"{{"status":"{s}"}}"#
            )))
        };
        assert_eq!(
            f16("DownloadFailed"),
            Firmware {
                status: "DownloadFailed",
                failed: true,
                request_id: None
            }
        );
        assert!(f16("InstallationFailed").failed);
        assert!(!f16("Installed").failed);
        let signed = Firmware::from(&parse::<v16::SignedFirmwareStatusNotificationRequest>(
            r#"{"status":"InvalidSignature","requestId":7}"#,
        ));
        assert_eq!((signed.failed, signed.request_id), (true, Some(7)));
        let f201 = |s: &str| {
            Firmware::from(&parse::<v201::FirmwareStatusNotificationRequest>(&format!(
                r#"{{"status":"{s}","requestId":3}}"#
            )))
        };
        assert!(f201("InstallVerificationFailed").failed);
        assert!(!f201("SignatureVerified").failed);
        assert_eq!(f201("Downloading").request_id, Some(3));
        let f21 = Firmware::from(&parse::<v21::FirmwareStatusNotificationRequest>(
            r#"{"status":"DownloadFailed"}"#,
        ));
        assert_eq!(
            (f21.status, f21.failed, f21.request_id),
            ("DownloadFailed", true, None)
        );
    }

    #[test]
    fn device_model_keys() {
        assert_eq!(component_key("EVSE", None, Some(2)), "EVSE@evse2");
        assert_eq!(
            component_key("Connector", Some("A"), Some(1)),
            "Connector[A]"
        );
        assert_eq!(component_key("OCPPCommCtrlr", None, None), "OCPPCommCtrlr");
        assert_eq!(variable_key("Enabled", Some("Cost")), "Enabled[Cost]");
        assert_eq!(variable_key("Power", None), "Power");
    }

    #[test]
    fn stored_statuses_keep_their_text() {
        // read back by the firmware campaign and log upload views
        let s = serde_json::to_string(&OperationStatus {
            at: "2026-01-01T10:00:00.000Z".into(),
            request_id: None,
            status: "Uploaded",
        })
        .unwrap();
        assert_eq!(
            s,
            r#"{"at":"2026-01-01T10:00:00.000Z","request_id":null,"status":"Uploaded"}"#
        );
        let r = serde_json::to_value(ReservationStatus {
            at: "x".into(),
            reservation_id: 4,
            status: "Expired",
        })
        .unwrap();
        assert_eq!(r["reservation_id"], 4);
        let d = serde_json::to_value(SecurityDetail {
            r#type: "SettingSystemTime",
            tech_info: None,
            timestamp: wire_time(&t(5)),
        })
        .unwrap();
        assert_eq!(d["type"], "SettingSystemTime");
        assert_eq!(d["timestamp"], "2026-01-01T10:00:05Z");
    }
}
