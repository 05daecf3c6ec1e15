//! The charging-station simulator behind `evproto simulate` (and the
//! reference CSMS's demo): N stations on `ocpp-client`, each with 1–4
//! connectors, running drivers' sessions, faults and reconnects, and
//! answering the CSMS like a real charger.
//!
//! Each station is a sans-IO [`model::StationModel`] (seeded, reproducible)
//! driven by a small tokio shell: a one-second tick, the CSMS's calls
//! (handled by typed `ocpp-rpc` routes that update the model), and the
//! client's connection state. Transaction messages (1.6 MeterValues and
//! StopTransaction, 2.x TransactionEvent) go through the client's durable
//! queue, so a dropped connection loses none of them.
//!
//! ```no_run
//! # async fn demo() {
//! use evproto_sim::{SimConfig, run};
//! let config = SimConfig { url: "ws://127.0.0.1:9000/ocpp/".into(), stations: 5, ..SimConfig::default() };
//! let report = run(config, None).await.expect("valid configuration");
//! println!("{}", report.to_json());
//! # }
//! ```
//!
//! The model alone, without sockets or a clock:
//!
//! ```
//! use evproto_sim::model::{Behaviour, Msg, StationModel};
//! // a station with two connectors; a remote start begins a transaction at once
//! let mut station = StationModel::new("CP1", 2, Behaviour::default(), 7);
//! let (_answer, out) = station.remote_start(Some(1), "RFID-1", None);
//! assert!(out.iter().any(|m| matches!(m, Msg::TxStart { connector: 1, .. })));
//! ```

pub mod grid;
pub mod iso15118;
pub mod model;
pub mod profiles;
pub mod render;
pub mod tariff;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evproto_csms_core::limits;
use evproto_ocpp_client::{Client, ClientConfig, ClientState, MemoryStore, OfflineStore};
use evproto_ocpp_proto::{BootState, CallError, ProtocolVersion};
use evproto_ocpp_rpc::{Ctx, Router, Routes};
use evproto_ocpp_types::{v16, v201, v21, Action, FromChargingStation};
use model::{Answer, Behaviour, Msg, StationModel};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// CSMS URL: `ws://host:9000/ocpp`, with or without a trailing slash,
    /// or ending in a `{identity}` placeholder; see [`station_url_prefix`].
    pub url: String,
    /// Number of stations.
    pub stations: usize,
    /// Versions, assigned round-robin (station i speaks `versions[i % len]`).
    pub versions: Vec<ProtocolVersion>,
    /// Connectors per station, drawn uniformly from this range.
    pub connectors: (u32, u32),
    /// Seconds to run after the last station started.
    pub duration: Duration,
    /// Stations started per second.
    pub ramp_per_s: f64,
    /// Identity prefix: station i is `{prefix}{i}`.
    pub prefix: String,
    /// Basic-auth password for every station.
    pub password: Option<String>,
    /// Seed of the behaviour (station i uses `seed + i`).
    pub seed: u64,
    /// Driver and hardware behaviour.
    pub behaviour: Behaviour,
    /// Offer permessage-deflate.
    pub permessage_deflate: bool,
    /// Print one JSON line per station event on stdout.
    pub events: bool,
    /// ISO 15118 cars (an SECC and a car per session; Plug & Charge for a
    /// share of them); `None`: drivers authorize with their cards only.
    pub iso15118: Option<iso15118::Iso15118Sim>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            url: "ws://127.0.0.1:9000/ocpp/".into(),
            stations: 10,
            versions: vec![
                ProtocolVersion::V16,
                ProtocolVersion::V201,
                ProtocolVersion::V21,
            ],
            connectors: (1, 4),
            duration: Duration::from_secs(60),
            ramp_per_s: 50.0,
            prefix: "SIM".into(),
            password: None,
            seed: 1,
            behaviour: Behaviour::default(),
            permessage_deflate: true,
            events: false,
            iso15118: None,
        }
    }
}

/// Counters over all stations, shared by their tasks.
#[derive(Debug, Default)]
struct Stats {
    booted: AtomicU64,
    boots: AtomicU64,
    sent: AtomicU64,
    responses: AtomicU64,
    meter_values: AtomicU64,
    auth_accepted: AtomicU64,
    disconnects: AtomicU64,
    reboots: AtomicU64,
    offline: AtomicU64,
    start_retries: AtomicU64,
    iso15118_sessions: AtomicU64,
    iso15118_refused: AtomicU64,
    pnc_authorized: AtomicU64,
    contracts_installed: AtomicU64,
    contracts_renewed: AtomicU64,
    iso15118_scheduled: AtomicU64,
    /// The highest PMax a car chose under the CSMS's schedule, W.
    iso15118_max_pmax_w: AtomicU64,
    /// The most a car drew in its charge loop under the CSMS's schedule, W.
    iso15118_max_drawn_w: AtomicU64,
    iso15118_protocols: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    csms_calls: Mutex<BTreeMap<String, u64>>,
    connect_failures: Mutex<BTreeMap<String, u64>>,
    first_failure: Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, kind: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
    fn connect_failure(&self, f: &evproto_ocpp_client::ConnectFailure) {
        *self
            .connect_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(f.reason())
            .or_default() += 1;
        self.first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| f.to_string());
    }
    fn failures_line(&self) -> String {
        let m = self
            .connect_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn csms_call(&self, action: &str) {
        *self
            .csms_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(action.to_owned())
            .or_default() += 1;
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Stations started.
    pub stations: usize,
    /// Stations whose boot was accepted at least once.
    pub booted: u64,
    /// Accepted boots in all (reboots boot again).
    pub boots: u64,
    /// Stations connected with the boot accepted at the end.
    pub connected_at_end: u64,
    /// Station-initiated messages sent (queued ones when delivered).
    pub sent: u64,
    /// Answers received.
    pub responses: u64,
    /// Transactions started / ended.
    pub sessions_started: u64,
    /// Transactions ended (stopped by drivers, the CSMS, faults or resets).
    pub sessions_completed: u64,
    /// Energy of ended transactions, kWh.
    pub energy_kwh: f64,
    /// Meter values sent during transactions.
    pub meter_values: u64,
    /// Tokens accepted / refused by the CSMS.
    pub auth_accepted: u64,
    /// Tokens refused by the CSMS.
    pub auth_rejected: u64,
    /// Connector faults.
    pub faults: u64,
    /// Simulated network drops.
    pub disconnects: u64,
    /// Reboots after a Reset.
    pub reboots: u64,
    /// Live messages (status, authorization, 1.6 start) skipped because the
    /// station was offline at that moment, or lost with the connection
    /// before their answer.
    pub skipped_offline: u64,
    /// 1.6 StartTransaction sent again because the first went unanswered
    /// (the connection dropped, the call timed out or the CSMS answered a
    /// CALLERROR): a transaction-related message is retried, as OCPP 1.6
    /// §4.8 asks, and the CSMS recognises the replay.
    pub start_retries: u64,
    /// ISO 15118 sessions held at plug-in (`--iso15118`).
    pub iso15118_sessions: u64,
    /// Of those, sessions that ended without authorization (a card or
    /// contract refused, a revoked contract, no answer).
    pub iso15118_refused: u64,
    /// Cars authorized by Plug & Charge (their contract accepted).
    pub pnc_authorized: u64,
    /// Contracts installed in cars through the CSMS (`Get15118EVCertificate`).
    pub contracts_installed: u64,
    /// Contracts renewed in cars through the CSMS (`Get15118EVCertificate`
    /// with action `Update`).
    pub contracts_renewed: u64,
    /// ISO 15118 sessions whose car charged under the CSMS's schedule: the
    /// station held profiles limiting the EVSE at plug-in and its SECC
    /// offered them as the SA schedule the car chose.
    pub iso15118_scheduled: u64,
    /// The highest PMax (W) a car chose in those sessions (0 without any).
    pub iso15118_max_pmax_w: u64,
    /// The most power (W) a car drew in its charge loop in those sessions
    /// (0 without any); its transaction's meter follows it.
    pub iso15118_max_drawn_w: u64,
    /// ISO 15118 sessions by the protocol negotiated (`Din`, `Iso2`,
    /// `Iso20Dc`; `none` when none was).
    pub iso15118_protocols: BTreeMap<String, u64>,
    /// Messages still in offline queues at the end.
    pub queued_at_end: u64,
    /// CSMS-initiated calls answered, by action.
    pub csms_calls: BTreeMap<String, u64>,
    /// Errors by kind (`Action: reason`).
    pub errors: BTreeMap<String, u64>,
    /// Failed connection attempts by reason (`unreachable`, `http 401`, …;
    /// see `evproto_ocpp_client::ConnectFailure::reason`).
    pub connect_failures: BTreeMap<String, u64>,
    /// The first failed attempt's explanation, if any.
    pub first_connect_failure: Option<String>,
    /// Seconds the run took.
    pub duration_s: f64,
}

impl Report {
    /// Errors in all.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// What went wrong, when something did: stations that never got a
    /// boot accepted, or errors. `None` for a clean run.
    pub fn failure(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.booted < self.stations as u64 {
            let mut s = format!(
                "{} of {} stations never booted",
                self.stations as u64 - self.booted,
                self.stations
            );
            if let Some(f) = &self.first_connect_failure {
                s.push_str(&format!(" (first connection failure: {f})"));
            }
            why.push(s);
        }
        if self.error_count() > 0 {
            why.push(format!("{} errors", self.error_count()));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "stations": self.stations, "booted": self.booted, "boots": self.boots,
            "connected_at_end": self.connected_at_end, "sent": self.sent, "responses": self.responses,
            "sessions_started": self.sessions_started, "sessions_completed": self.sessions_completed,
            "energy_kwh": (self.energy_kwh * 1000.0).round() / 1000.0, "meter_values": self.meter_values,
            "auth_accepted": self.auth_accepted, "auth_rejected": self.auth_rejected,
            "faults": self.faults, "disconnects": self.disconnects, "reboots": self.reboots,
            "queued_at_end": self.queued_at_end, "skipped_offline": self.skipped_offline,
            "start_retries": self.start_retries,
            "iso15118_sessions": self.iso15118_sessions, "iso15118_refused": self.iso15118_refused,
            "pnc_authorized": self.pnc_authorized, "contracts_installed": self.contracts_installed,
            "contracts_renewed": self.contracts_renewed,
            "iso15118_scheduled": self.iso15118_scheduled, "iso15118_max_pmax_w": self.iso15118_max_pmax_w,
            "iso15118_max_drawn_w": self.iso15118_max_drawn_w, "iso15118_protocols": self.iso15118_protocols,
            "csms_calls": self.csms_calls, "errors": self.errors, "error_count": self.error_count(),
            "connect_failures": self.connect_failures, "first_connect_failure": self.first_connect_failure,
            "duration_s": (self.duration_s * 100.0).round() / 100.0,
        })
    }
}

/// One station's shared part: the model (also touched by the CSMS's calls)
/// and the queue of what to send.
struct Station {
    identity: String,
    version: ProtocolVersion,
    model: Mutex<StationModel>,
    outbox: mpsc::UnboundedSender<Msg>,
    stats: Arc<Stats>,
    events: bool,
    /// Dynamic schedules and DER controls (2.1).
    grid: Mutex<grid::GridState>,
    /// Tariffs held and local cost (2.1).
    tariffs: Mutex<tariff::TariffState>,
    /// How it calculates and settles costs (2.1).
    local_cost: tariff::LocalCostBehaviour,
    /// The charging profiles it holds.
    profiles: Mutex<ProfileState>,
}

impl std::fmt::Debug for Station {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Station")
            .field("identity", &self.identity)
            .finish()
    }
}

impl Station {
    fn model(&self) -> std::sync::MutexGuard<'_, StationModel> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, msgs: Vec<Msg>) {
        for m in msgs {
            let _ = self.outbox.send(m);
        }
    }

    fn event(&self, what: &str, detail: Value) {
        if self.events {
            println!(
                "{}",
                json!({"station": self.identity, "event": what, "detail": detail})
            );
        }
    }

    /// A CSMS-initiated call, version-neutral: request JSON in, response JSON out.
    fn on_csms_call(&self, action: &str, req: &Value) -> Value {
        self.stats.csms_call(action);
        self.event("csms_call", json!({"action": action, "request": req}));
        let status = |a: Answer| match a {
            Answer::Accepted => "Accepted",
            Answer::Rejected => "Rejected",
            Answer::Scheduled => "Scheduled",
        };
        let conn = |key: &str| req.get(key).and_then(Value::as_u64).map(|n| n as u32);
        if let Some(answer) = self.grid_call(action, req) {
            return answer;
        }
        if let Some(answer) = self.tariff_call(action, req) {
            return answer;
        }
        match action {
            "RemoteStartTransaction" | "RequestStartTransaction" => {
                let (connector, token, remote_id, profile) = if action == "RemoteStartTransaction" {
                    (
                        conn("connectorId"),
                        req["idTag"].as_str(),
                        None,
                        req.get("chargingProfile"),
                    )
                } else {
                    (
                        conn("evseId"),
                        req["idToken"]["idToken"].as_str(),
                        req["remoteStartId"].as_i64(),
                        req.get("chargingProfile"),
                    )
                };
                let mut m = self.model();
                let (answer, out) = m.remote_start(connector, token.unwrap_or_default(), remote_id);
                if answer == Answer::Accepted {
                    if let (Some(p), Some(Msg::TxStart { connector, .. })) = (
                        profile,
                        out.iter().find(|m| matches!(m, Msg::TxStart { .. })),
                    ) {
                        if let Some(w) = schedule_limit(p) {
                            m.set_limit(Some(*connector), w);
                        }
                    }
                }
                let mut res = json!({"status": status(answer)});
                if action == "RequestStartTransaction" {
                    if let Some(Msg::TxStart { tx, .. }) =
                        out.iter().find(|m| matches!(m, Msg::TxStart { .. }))
                    {
                        res["transactionId"] = json!(tx.local_id);
                    }
                }
                drop(m);
                self.emit(out);
                res
            }
            "RemoteStopTransaction" | "RequestStopTransaction" => {
                let id = match &req["transactionId"] {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                let (answer, out) = self.model().remote_stop(&id);
                self.emit(out);
                json!({"status": status(answer)})
            }
            "Reset" => {
                let (answer, out) = self.model().reset();
                self.emit(out);
                json!({"status": status(answer)})
            }
            "SetChargingProfile" => {
                let (connector, profile) = if self.version == ProtocolVersion::V16 {
                    (conn("connectorId"), req.get("csChargingProfiles"))
                } else {
                    (conn("evseId"), req.get("chargingProfile"))
                };
                let setpoint = profile.and_then(|p| {
                    let s = &p["chargingSchedule"];
                    render::profile_setpoint_w(s.get(0).unwrap_or(s))
                });
                let v21_setpoint = setpoint.filter(|_| self.version == ProtocolVersion::V21);
                // a profile the station can hold is stacked with the others
                let held = match v21_setpoint {
                    None => self.install_profile(req),
                    Some(_) => None,
                };
                let answer = match (v21_setpoint, held, profile.and_then(schedule_limit)) {
                    (Some(sp), _, _) => {
                        let a = self.model().set_setpoint(connector, sp);
                        if let (Answer::Accepted, Some(p)) = (a, profile) {
                            self.grid_lock().profile_set(p, connector);
                        }
                        a
                    }
                    (None, Some(true), _) => Answer::Accepted,
                    (None, Some(false), _) => Answer::Rejected,
                    (None, None, Some(w)) => self.model().set_limit(connector, w),
                    _ => Answer::Rejected,
                };
                json!({"status": status(answer)})
            }
            "ClearChargingProfile" => {
                let criteria = self.clear_criteria(req);
                let hit = self.profiles_lock().held.clear(criteria);
                let a = if hit {
                    Answer::Accepted
                } else {
                    self.model().clear_limits()
                };
                self.follow_profiles();
                json!({"status": if a == Answer::Accepted { "Accepted" } else { "Unknown" }})
            }
            "GetCompositeSchedule" => self.composite_answer(req),
            "ChangeAvailability" => {
                let (connector, operative) = if self.version == ProtocolVersion::V16 {
                    (conn("connectorId"), req["type"] == "Operative")
                } else {
                    (
                        req["evse"]["id"].as_u64().map(|n| n as u32),
                        req["operationalStatus"] == "Operative",
                    )
                };
                let (answer, out) = self.model().change_availability(connector, operative);
                self.emit(out);
                json!({"status": status(answer)})
            }
            "TriggerMessage" => {
                let what = req["requestedMessage"].as_str().unwrap_or_default();
                let m = self.model();
                let msgs: Vec<Msg> = match what {
                    "Heartbeat" => vec![Msg::Heartbeat],
                    "BootNotification" => vec![Msg::Boot],
                    "StatusNotification" => m.all_status(),
                    "MeterValues" => m
                        .connectors
                        .iter()
                        .filter_map(|c| {
                            c.tx.as_ref().filter(|t| t.started).map(|t| Msg::TxMeter {
                                connector: c.id,
                                tx: t.clone(),
                                register_wh: c.register_wh,
                                temperature_c: None,
                                voltage_v: None,
                                export_wh: t.v2x.as_ref().map(|_| c.export_register_wh),
                            })
                        })
                        .collect(),
                    _ => return json!({"status": "NotImplemented"}),
                };
                drop(m);
                let accepted = !msgs.is_empty();
                self.emit(msgs);
                json!({"status": if accepted { "Accepted" } else { "Rejected" }})
            }
            "UnlockConnector" => {
                let id = conn(if self.version == ProtocolVersion::V16 {
                    "connectorId"
                } else {
                    "evseId"
                });
                let m = self.model();
                let c = m.connectors.iter().find(|c| Some(c.id) == id);
                let status = match (c, self.version) {
                    (None, ProtocolVersion::V16) => "NotSupported",
                    (None, _) => "UnknownConnector",
                    (Some(c), v) if c.tx.is_some() && v != ProtocolVersion::V16 => {
                        "OngoingAuthorizedTransaction"
                    }
                    (Some(c), _) if c.tx.is_some() => "UnlockFailed",
                    _ => "Unlocked",
                };
                json!({"status": status})
            }
            "GetConfiguration" => {
                let m = self.model();
                let wanted: Option<Vec<String>> =
                    req.get("key").and_then(Value::as_array).map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect()
                    });
                let mut known = Vec::new();
                let mut unknown = Vec::new();
                match wanted {
                    Some(keys) if !keys.is_empty() => {
                        for k in keys {
                            match m.config.get(&k) {
                                Some(v) => {
                                    known.push(json!({"key": k, "readonly": false, "value": v}))
                                }
                                None => unknown.push(json!(k)),
                            }
                        }
                    }
                    _ => {
                        for (k, v) in &m.config {
                            known.push(json!({"key": k, "readonly": false, "value": v}));
                        }
                    }
                }
                let mut res = json!({"configurationKey": known});
                if !unknown.is_empty() {
                    res["unknownKey"] = json!(unknown);
                }
                res
            }
            "ChangeConfiguration" => {
                let mut m = self.model();
                let key = req["key"].as_str().unwrap_or_default();
                if m.config.contains_key(key) {
                    m.config.insert(
                        key.to_owned(),
                        req["value"].as_str().unwrap_or_default().to_owned(),
                    );
                    json!({"status": "Accepted"})
                } else {
                    json!({"status": "NotSupported"})
                }
            }
            "GetVariables" => {
                let m = self.model();
                let results: Vec<Value> = req["getVariableData"]
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|d| {
                        let key = var_key(d);
                        let mut r = json!({"component": d["component"], "variable": d["variable"]});
                        match m.config.get(&key) {
                            Some(v) => {
                                r["attributeStatus"] = json!("Accepted");
                                r["attributeValue"] = json!(v);
                            }
                            None => r["attributeStatus"] = json!("UnknownVariable"),
                        }
                        r
                    })
                    .collect();
                json!({"getVariableResult": results})
            }
            "SetVariables" => {
                let mut m = self.model();
                let results: Vec<Value> = req["setVariableData"]
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|d| {
                        let key = var_key(d);
                        let status = match m.config.get_mut(&key) {
                            Some(slot) => {
                                d["attributeValue"].as_str().unwrap_or_default().clone_into(slot);
                                "Accepted"
                            }
                            None => "UnknownVariable",
                        };
                        json!({"attributeStatus": status, "component": d["component"], "variable": d["variable"]})
                    })
                    .collect();
                json!({"setVariableResult": results})
            }
            _ => json!({}),
        }
    }
}

impl Station {
    fn grid_lock(&self) -> std::sync::MutexGuard<'_, grid::GridState> {
        self.grid.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A 2.1 call of the grid side ([`grid`]); `None`: not one of them.
    fn grid_call(&self, action: &str, req: &Value) -> Option<Value> {
        if self.version != ProtocolVersion::V21 {
            return None;
        }
        let mut out = Vec::new();
        let answer = self
            .grid_lock()
            .on_call(&mut self.model(), action, req, &mut out)?;
        self.emit(out);
        Some(answer)
    }
}

impl Station {
    fn tariff_lock(&self) -> std::sync::MutexGuard<'_, tariff::TariffState> {
        self.tariffs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A 2.1 tariff call ([`tariff`]); `None`: not one of them.
    fn tariff_call(&self, action: &str, req: &Value) -> Option<Value> {
        if self.version != ProtocolVersion::V21 {
            return None;
        }
        let open: Vec<(String, u32)> = self
            .model()
            .connectors
            .iter()
            .filter_map(|c| c.tx.as_ref().map(|t| (t.local_id.clone(), c.id)))
            .collect();
        self.tariff_lock()
            .on_call(&self.local_cost, &open, action, req)
    }
}

/// A 2.x `ClearChargingProfile` request's selection.
macro_rules! criteria_2x {
    ($ver:ident, $text:expr, $n:expr, $purpose:expr) => {
        evproto_ocpp_types::from_str::<$ver::ClearChargingProfileRequest>($text)
            .map(|r| {
                let c = r.charging_profile_criteria;
                profiles::Criteria {
                    id: r.charging_profile_id,
                    evse: $n(c.as_ref().and_then(|c| c.evse_id)),
                    purpose: c
                        .as_ref()
                        .and_then(|c| c.charging_profile_purpose)
                        .and_then(|p| $purpose(p.as_str())),
                    stack_level: $n(c.as_ref().and_then(|c| c.stack_level)),
                }
            })
            .unwrap_or_default()
    };
}

impl Station {
    fn profiles_lock(&self) -> std::sync::MutexGuard<'_, ProfileState> {
        self.profiles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a `SetChargingProfile` request's profile with the others;
    /// `None`: not a profile the station can read (the caller falls back to
    /// its single limit).
    fn install_profile(&self, req: &Value) -> Option<bool> {
        let text = req.to_string();
        let p = match self.version {
            ProtocolVersion::V16 => {
                evproto_ocpp_types::from_str::<v16::SetChargingProfileRequest>(&text)
                    .ok()
                    .and_then(|r| limits::InstalledProfile::try_from(&r).ok())
            }
            ProtocolVersion::V201 => {
                evproto_ocpp_types::from_str::<v201::SetChargingProfileRequest>(&text)
                    .ok()
                    .and_then(|r| limits::InstalledProfile::try_from(&r).ok())
            }
            _ => evproto_ocpp_types::from_str::<v21::SetChargingProfileRequest>(&text)
                .ok()
                .and_then(|r| limits::InstalledProfile::try_from(&r).ok()),
        }?;
        let connectors = self.model().connectors.len();
        let known = p.evse_id == 0 || usize::try_from(p.evse_id).is_ok_and(|e| e <= connectors);
        let ok = known && {
            let mut st = self.profiles_lock();
            st.managed = true;
            st.held.set(p)
        };
        self.follow_profiles();
        Some(ok)
    }

    /// A `ClearChargingProfile` request's selection.
    fn clear_criteria(&self, req: &Value) -> profiles::Criteria {
        let text = req.to_string();
        let n = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
        let purpose = |p: &str| match p {
            "ChargePointMaxProfile" | "ChargingStationMaxProfile" => {
                Some(limits::Purpose::StationMax)
            }
            "TxDefaultProfile" => Some(limits::Purpose::TxDefault),
            "TxProfile" => Some(limits::Purpose::Tx),
            "ChargingStationExternalConstraints" => Some(limits::Purpose::ExternalConstraints),
            "PriorityCharging" => Some(limits::Purpose::PriorityCharging),
            "LocalGeneration" => Some(limits::Purpose::LocalGeneration),
            _ => None,
        };
        match self.version {
            ProtocolVersion::V16 => {
                evproto_ocpp_types::from_str::<v16::ClearChargingProfileRequest>(&text)
                    .map(|r| profiles::Criteria {
                        id: r.id,
                        evse: n(r.connector_id),
                        purpose: r.charging_profile_purpose.and_then(|p| purpose(p.as_str())),
                        stack_level: n(r.stack_level),
                    })
                    .unwrap_or_default()
            }
            ProtocolVersion::V201 => criteria_2x!(v201, &text, n, purpose),
            _ => criteria_2x!(v21, &text, n, purpose),
        }
    }

    /// The transaction on connector `c` as the CSMS knows it (1.6: the
    /// id it gave).
    fn tx_ref(
        &self,
        c: &model::Connector,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<limits::TxRef> {
        let tx = c.tx.as_ref()?;
        let id = if self.version == ProtocolVersion::V16 {
            tx.csms_id?.to_string()
        } else {
            tx.local_id.clone()
        };
        Some(limits::TxRef {
            id,
            started_at: now,
        })
    }

    /// Each connector follows the composite limit its profiles give it now
    /// (once the station holds profiles).
    fn follow_profiles(&self) {
        let st = self.profiles_lock();
        if !st.managed {
            return;
        }
        let now = chrono::Utc::now();
        let mut m = self.model();
        let wanted: Vec<(u32, Option<f64>)> = m
            .connectors
            .iter()
            .map(|c| (c.id, st.held.limit_w(c.id, self.tx_ref(c, now), now)))
            .collect();
        for (c, w) in wanted {
            m.follow_limit(c, w);
        }
    }

    /// The SA schedule an ISO 15118 car is offered at `connector` when it
    /// plugs in (before its transaction): the composite of the CSMS's
    /// profiles the station holds, a day from now in W, a time no profile
    /// limits at the station's maximum; none (the SECC then offers the
    /// EVSE's maximum) when no profile limits it.
    fn iso15118_schedules(&self, connector: u32) -> Vec<evproto_iso15118::session::ScheduleTuple> {
        let max_w = self.model().max_power_w();
        let st = self.profiles_lock();
        if !st.managed {
            return Vec::new();
        }
        st.held
            .sa_schedule(connector, None, chrono::Utc::now(), max_w)
    }

    /// A `GetCompositeSchedule` answer: the composite of the profiles held
    /// (a time no profile limits is reported at the hardware's maximum).
    fn composite_answer(&self, req: &Value) -> Value {
        use rust_decimal::prelude::FromPrimitive;
        let rejected = json!({"status": "Rejected"});
        let (evse, duration, unit) = if self.version == ProtocolVersion::V16 {
            (
                &req["connectorId"],
                &req["duration"],
                &req["chargingRateUnit"],
            )
        } else {
            (&req["evseId"], &req["duration"], &req["chargingRateUnit"])
        };
        let (Some(evse), Some(duration)) = (
            evse.as_u64().and_then(|e| u32::try_from(e).ok()),
            duration.as_u64().and_then(|d| u32::try_from(d).ok()),
        ) else {
            return rejected;
        };
        let unit = if unit == "W" {
            limits::RateUnit::W
        } else {
            limits::RateUnit::A
        };
        let now = chrono::Utc::now();
        let (tx, max_w) = {
            let m = self.model();
            if evse as usize > m.connectors.len() {
                return rejected;
            }
            let tx = m
                .connectors
                .iter()
                .find(|c| c.id == evse)
                .and_then(|c| self.tx_ref(c, now));
            (tx, m.max_power_w())
        };
        let Ok(c) = self
            .profiles_lock()
            .held
            .composite(evse, tx, now, duration, unit)
        else {
            return rejected;
        };
        let max = match unit {
            limits::RateUnit::W => rust_decimal::Decimal::from_f64(max_w),
            limits::RateUnit::A => {
                rust_decimal::Decimal::from_f64((max_w / 690.0 * 10.0).floor() / 10.0)
            }
        }
        .unwrap_or_default();
        let periods: Vec<(i32, rust_decimal::Decimal, Option<i32>)> = c
            .periods
            .iter()
            .map(|p| {
                (
                    i32::try_from(p.start_s).unwrap_or(i32::MAX),
                    p.limit.unwrap_or(max),
                    p.number_phases.map(i32::from),
                )
            })
            .collect();
        let duration = i32::try_from(duration).unwrap_or(i32::MAX);
        let evse = i32::try_from(evse).unwrap_or(i32::MAX);
        match self.version {
            ProtocolVersion::V16 => json!(v16::GetCompositeScheduleResponse {
                status: v16::GetCompositeScheduleStatus::Accepted,
                connector_id: Some(evse),
                schedule_start: Some(now),
                charging_schedule: Some(v16::ChargingSchedule {
                    duration: Some(duration),
                    start_schedule: Some(now),
                    charging_rate_unit: match unit {
                        limits::RateUnit::W => v16::ChargingRateUnitType::W,
                        limits::RateUnit::A => v16::ChargingRateUnitType::A,
                    },
                    charging_schedule_period: periods
                        .iter()
                        .map(
                            |&(start_period, limit, number_phases)| v16::ChargingSchedulePeriod {
                                start_period,
                                limit,
                                number_phases,
                            }
                        )
                        .collect(),
                    min_charging_rate: None,
                }),
            }),
            _ => {
                let schedule = v201::CompositeScheduleType {
                    custom_data: None,
                    charging_schedule_period: periods
                        .iter()
                        .map(|&(start_period, limit, number_phases)| {
                            v201::ChargingSchedulePeriodType {
                                custom_data: None,
                                start_period,
                                limit,
                                number_phases,
                                phase_to_use: None,
                            }
                        })
                        .collect(),
                    evse_id: evse,
                    duration,
                    schedule_start: now,
                    charging_rate_unit: match unit {
                        limits::RateUnit::W => v201::ChargingRateUnitEnumType::W,
                        limits::RateUnit::A => v201::ChargingRateUnitEnumType::A,
                    },
                };
                // 2.1's composite has the same fields as 2.0.1's (its limit
                // optional): the answer is checked against the version's
                // schema before it leaves (`handle`)
                json!({"status": "Accepted", "schedule": schedule})
            }
        }
    }
}

/// The profiles a station holds, and whether it ever held one (until then
/// its connectors keep the single limit of the older path).
#[derive(Debug, Default)]
struct ProfileState {
    held: profiles::Profiles,
    managed: bool,
}

/// `Component.Variable`, the key of a 2.x variable in the station's configuration.
fn var_key(d: &Value) -> String {
    format!(
        "{}.{}",
        d["component"]["name"].as_str().unwrap_or_default(),
        d["variable"]["name"].as_str().unwrap_or_default()
    )
}

/// A charging profile's limit in W: 1.6 has one `chargingSchedule`, 2.x a list.
fn schedule_limit(profile: &Value) -> Option<f64> {
    let s = &profile["chargingSchedule"];
    render::profile_limit_w(s.get(0).unwrap_or(s))
}

/// Every CSMS-initiated action a station handles, typed: the request is
/// decoded (a broken one gets the version's CALLERROR before it reaches us)
/// and the answer is checked against the response schema.
async fn handle<A: Action>(
    ctx: Ctx<Arc<Station>>,
    req: A::Request,
) -> Result<A::Response, CallError> {
    let v = serde_json::to_value(&req).unwrap_or(Value::Null);
    let answer = ctx.state.on_csms_call(A::NAME, &v);
    evproto_ocpp_types::from_str::<A::Response>(&answer.to_string()).map_err(|e| {
        ctx.state
            .stats
            .error(format!("{}: own answer invalid: {e}", A::NAME));
        CallError::internal()
    })
}

fn routes(st: Arc<Station>) -> Routes {
    macro_rules! router {
        ($router:expr, $m:ident, [$($a:ident),*]) => {
            $router $(.on::<$m::action::$a>(handle::<$m::action::$a>))* .with_state(st)
        };
    }
    macro_rules! v2 {
        ($router:expr, $m:ident $(, $extra:ident)*) => {
            router!(
                $router,
                $m,
                [
                    RequestStartTransaction,
                    RequestStopTransaction,
                    Reset,
                    SetChargingProfile,
                    ClearChargingProfile,
                    GetCompositeSchedule,
                    ChangeAvailability,
                    TriggerMessage,
                    UnlockConnector,
                    GetVariables,
                    SetVariables
                    $(, $extra)*
                ]
            )
        };
    }
    match st.version {
        ProtocolVersion::V16 => router!(
            Router::station_v16(),
            v16,
            [
                RemoteStartTransaction,
                RemoteStopTransaction,
                Reset,
                SetChargingProfile,
                ClearChargingProfile,
                GetCompositeSchedule,
                ChangeAvailability,
                TriggerMessage,
                UnlockConnector,
                GetConfiguration,
                ChangeConfiguration
            ]
        ),
        ProtocolVersion::V201 => v2!(Router::station_v201(), v201),
        // 2.1 adds the grid side (crate::grid)
        _ => v2!(
            Router::station_v21(),
            v21,
            UpdateDynamicSchedule,
            SetDERControl,
            GetDERControl,
            ClearDERControl,
            SetDefaultTariff,
            ChangeTransactionTariff,
            GetTariffs,
            ClearTariffs,
            GetPeriodicEventStream,
            AdjustPeriodicEventStream,
            ClearVariableMonitoring
        ),
    }
}

/// The station between its SECC and the CSMS during an ISO 15118 session:
/// the driver's card by `Authorize` (EIM); a contract by `Authorize` with
/// its chain and an installation by `Get15118EVCertificate` (Plug &
/// Charge), a 1.6 station's inside the OCA application note's
/// `DataTransfer`.
struct OcppBackend<'a> {
    client: &'a Client,
    version: ProtocolVersion,
    card: &'a str,
    stats: &'a Stats,
    /// The SA schedules the SECC offers: the CSMS's profiles at plug-in.
    schedules: Vec<evproto_iso15118::session::ScheduleTuple>,
}

impl OcppBackend<'_> {
    /// A Plug & Charge request (the 2.0.1 message; 1.6 inside the OCA
    /// `DataTransfer`): its answer, `None` when there is none.
    async fn pnc(&self, action: &str, payload: Value) -> Option<Value> {
        let answer = if self.version == ProtocolVersion::V16 {
            let wrapped = json!({"vendorId": "org.openchargealliance.iso15118pnc",
                "messageId": action, "data": payload.to_string()});
            match send(self.client, self.version, "DataTransfer", &wrapped, false).await {
                Ok(a) if a["status"] == "Accepted" => a["data"]
                    .as_str()
                    .and_then(|d| serde_json::from_str(d).ok()),
                Ok(a) => {
                    self.stats
                        .error(format!("DataTransfer {action}: {}", a["status"]));
                    None
                }
                Err(e) => {
                    self.failed(action, e);
                    None
                }
            }
        } else {
            match send(self.client, self.version, action, &payload, false).await {
                Ok(a) => Some(a),
                Err(e) => {
                    self.failed(action, e);
                    None
                }
            }
        };
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        if answer.is_some() {
            self.stats.responses.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    /// `Get15118EVCertificate` with `action` (`Install`, `Update`) and the
    /// car's EXI request: the CSMS's EXI answer when `Accepted`.
    async fn ev_certificate(&self, schema: &str, action: &str, exi: Vec<u8>) -> Option<Vec<u8>> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut request = json!({"iso15118SchemaVersion": schema,
            "action": action, "exiRequest": b64.encode(exi)});
        // 2.1 asks how many contracts a -20 car takes (the simulator's: one)
        if schema == ISO20_SCHEMA && self.version == ProtocolVersion::V21 {
            request["maximumContractCertificateChains"] = json!(1);
        }
        let a = self.pnc("Get15118EVCertificate", request).await?;
        if a["status"] != "Accepted" {
            return None;
        }
        b64.decode(a["exiResponse"].as_str()?).ok()
    }

    fn failed(&self, action: &str, e: SendError) {
        match e {
            SendError::Invalid(e) | SendError::Call(e) => {
                self.stats.error(format!("{action}: {e}"))
            }
            SendError::Offline | SendError::Lost => {
                self.stats.offline.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl iso15118::Backend for OcppBackend<'_> {
    async fn authorize_card(&mut self) -> bool {
        let payload = render::authorize(self.version, self.card);
        let answer = match send(self.client, self.version, "Authorize", &payload, false).await {
            Ok(a) => a,
            Err(e) => {
                self.failed("Authorize", e);
                return false;
            }
        };
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.stats.responses.fetch_add(1, Ordering::Relaxed);
        answer["idTagInfo"]["status"]
            .as_str()
            .or(answer["idTokenInfo"]["status"].as_str())
            == Some("Accepted")
    }

    async fn authorize_contract(
        &mut self,
        emaid: &str,
        chain_pem: String,
    ) -> evproto_iso15118::session::ContractStatus {
        use evproto_iso15118::session::ContractStatus;
        let request =
            json!({"idToken": {"idToken": emaid, "type": "eMAID"}, "certificate": chain_pem});
        let Some(a) = self.pnc("Authorize", request).await else {
            return ContractStatus::Rejected;
        };
        match (
            a["idTokenInfo"]["status"].as_str(),
            a["certificateStatus"].as_str(),
        ) {
            (Some("Accepted"), _) => ContractStatus::Accepted,
            (_, Some("CertificateRevoked")) => ContractStatus::Revoked,
            _ => ContractStatus::Rejected,
        }
    }

    async fn install_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate(ISO2_SCHEMA, "Install", exi).await
    }

    async fn install_certificate_iso20(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate(ISO20_SCHEMA, "Install", exi).await
    }

    async fn schedules(
        &mut self,
        _needs: &iso15118::Needs,
    ) -> Vec<evproto_iso15118::session::ScheduleTuple> {
        self.schedules.clone()
    }

    async fn update_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate(ISO2_SCHEMA, "Update", exi).await
    }
}

/// `iso15118SchemaVersion` of ISO 15118-2.
const ISO2_SCHEMA: &str = "urn:iso:15118:2:2013:MsgDef";
/// `iso15118SchemaVersion` of ISO 15118-20 (its CommonMessages).
const ISO20_SCHEMA: &str = "urn:iso:std:iso:15118:-20:CommonMessages";

/// Attempts at a 1.6 StartTransaction (its `TransactionMessageAttempts`).
const START_ATTEMPTS: u32 = 5;

/// Why a send failed.
#[derive(Debug)]
enum SendError {
    /// Our own payload broke its schema (a simulator bug).
    Invalid(String),
    /// Not connected: a real station skips live messages while offline.
    Offline,
    /// The connection dropped with the call on the wire: the CSMS may have
    /// taken it (counted as offline; a 1.6 start is sent again).
    Lost,
    /// The call failed (CALLERROR, timeout, invalid answer...).
    Call(String),
}

async fn call_typed<A: Action + FromChargingStation>(
    client: &Client,
    payload: &Value,
) -> Result<Value, SendError> {
    let req: A::Request = evproto_ocpp_types::from_str(&payload.to_string())
        .map_err(|e| SendError::Invalid(e.to_string()))?;
    let res = client.call::<A>(&req).await.map_err(|e| {
        if e.is_not_connected() {
            SendError::Offline
        } else if e.is_connection_lost() {
            SendError::Lost
        } else {
            SendError::Call(e.to_string())
        }
    })?;
    Ok(serde_json::to_value(&res).unwrap_or(Value::Null))
}

async fn durable_typed<A: Action + FromChargingStation>(
    client: &Client,
    payload: &Value,
) -> Result<Value, SendError> {
    let req: A::Request = evproto_ocpp_types::from_str(&payload.to_string())
        .map_err(|e| SendError::Invalid(e.to_string()))?;
    client
        .call_durable::<A>(&req)
        .await
        .map_err(|e| SendError::Call(e.to_string()))?;
    Ok(Value::Null)
}

/// Sends one station-initiated message in the station's version; durable
/// ones are queued and answered later (their answer is not seen here).
async fn send(
    client: &Client,
    v: ProtocolVersion,
    action: &str,
    payload: &Value,
    durable: bool,
) -> Result<Value, SendError> {
    macro_rules! dispatch {
        ($m:ident, [$($a:ident),*]) => {
            match action {
                $(stringify!($a) => if durable { durable_typed::<$m::action::$a>(client, payload).await } else { call_typed::<$m::action::$a>(client, payload).await },)*
                other => Err(SendError::Invalid(format!("no such action {other}"))),
            }
        };
    }
    match v {
        ProtocolVersion::V16 => dispatch!(
            v16,
            [
                BootNotification,
                Heartbeat,
                StatusNotification,
                Authorize,
                StartTransaction,
                MeterValues,
                StopTransaction,
                DataTransfer
            ]
        ),
        ProtocolVersion::V201 => dispatch!(
            v201,
            [
                BootNotification,
                Heartbeat,
                StatusNotification,
                Authorize,
                TransactionEvent,
                NotifyEVChargingNeeds,
                Get15118EVCertificate
            ]
        ),
        _ => dispatch!(
            v21,
            [
                BootNotification,
                Heartbeat,
                StatusNotification,
                Authorize,
                TransactionEvent,
                NotifyEVChargingNeeds,
                Get15118EVCertificate,
                ReportDERControl,
                NotifyDERAlarm,
                NotifySettlement,
                OpenPeriodicEventStream,
                ClosePeriodicEventStream
            ]
        ),
    }
}

/// Parses `1.6`, `2.0.1` or `2.1`.
pub fn parse_version(s: &str) -> Option<ProtocolVersion> {
    match s {
        "1.6" => Some(ProtocolVersion::V16),
        "2.0.1" => Some(ProtocolVersion::V201),
        "2.1" => Some(ProtocolVersion::V21),
        _ => None,
    }
}

struct Driver {
    st: Arc<Station>,
    config: ClientConfig,
    boot: String,
    store: Arc<dyn OfflineStore>,
    client: Client,
    t0: Instant,
    rng: model::Rng,
    /// ISO 15118 cars, when simulated.
    iso: Option<Arc<iso15118::Iso15118Setup>>,
    /// The contract each driver's car holds (by the driver's card).
    contracts: std::collections::HashMap<String, evproto_iso15118::session::Contract>,
    /// The eMAIDs cars were authorized with (their transactions name them
    /// as `eMAID` tokens).
    emaids: std::collections::HashSet<String>,
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    async fn deliver(&mut self, msg: Msg) {
        let follow = matches!(msg, Msg::TxStart { .. } | Msg::TxEnd { .. });
        if let Msg::TxEnd { connector, .. } = &msg {
            // a TxProfile lasts as long as its transaction
            self.st.profiles_lock().held.tx_ended(*connector);
        }
        self.deliver_one(msg).await;
        if follow {
            self.st.follow_profiles();
        }
    }

    async fn deliver_one(&mut self, msg: Msg) {
        let v = self.st.version;
        if let (Msg::Authorize { connector, token }, Some(iso)) = (&msg, self.iso.clone()) {
            if self.client.peer().is_some() {
                self.iso15118_session(&iso, *connector, token.clone()).await;
                return;
            }
        }
        let now = chrono::Utc::now();
        let (action, payload, durable) = match &msg {
            Msg::Status { connector, status } => (
                "StatusNotification",
                render::status(v, *connector, *status, now),
                false,
            ),
            Msg::Authorize { token, .. } => ("Authorize", render::authorize(v, token), false),
            Msg::TxStart { connector, tx, .. } => {
                let (a, mut p) = render::tx_start(v, *connector, tx, now);
                if v != ProtocolVersion::V16 && self.emaids.contains(&tx.token) {
                    p["idToken"]["type"] = json!("eMAID");
                }
                (a, p, v != ProtocolVersion::V16)
            }
            Msg::TxMeter {
                connector,
                tx,
                register_wh,
                temperature_c,
                voltage_v,
                export_wh,
            } => {
                let readings = render::Readings {
                    temperature_c: *temperature_c,
                    voltage_v: *voltage_v,
                    export_wh: *export_wh,
                };
                let (a, p) = render::tx_meter(v, *connector, tx, *register_wh, readings, now);
                (a, p, true)
            }
            Msg::TxEnd {
                tx,
                register_wh,
                reason,
                export_wh,
                ..
            } => match render::tx_end(v, tx, *register_wh, *reason, *export_wh, now) {
                Some((a, p)) => (a, p, true),
                None => return,
            },
            Msg::EvNeeds {
                connector,
                energy_wh,
                departure_ms,
                max_charge_w,
                max_discharge_w,
                phases,
            } => {
                let left = departure_ms.saturating_sub(self.now_ms());
                let departure = now + chrono::Duration::milliseconds(left as i64);
                match render::ev_needs(
                    v,
                    *connector,
                    *energy_wh,
                    departure,
                    (*max_charge_w, *phases),
                    *max_discharge_w,
                ) {
                    Some((a, p)) => (a, p, false),
                    None => return,
                }
            }
            Msg::Grid { action, payload } => (*action, payload.clone(), false),
            Msg::DerAlarm {
                control_type,
                fault,
                ended,
            } => match render::der_alarm(v, control_type, fault, *ended, now) {
                Some((a, p)) => (a, p, false),
                None => return,
            },
            Msg::Heartbeat => ("Heartbeat", json!({}), false),
            Msg::Boot => (
                "BootNotification",
                render::boot_for(v, "SimCharger", &self.st.identity, "Triggered"),
                false,
            ),
            Msg::Disconnect => {
                self.st.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                self.st.event("disconnect", Value::Null);
                if let Some(p) = self.client.peer() {
                    p.close("simulated network drop").await;
                }
                return;
            }
            Msg::Reboot | Msg::Crash => {
                let reason = if matches!(msg, Msg::Crash) {
                    "Watchdog"
                } else {
                    "RemoteReset"
                };
                self.boot =
                    render::boot_for(v, "SimCharger", &self.st.identity, reason).to_string();
                self.reboot().await;
                return;
            }
        };
        if matches!(msg, Msg::TxMeter { .. }) {
            self.st.stats.meter_values.fetch_add(1, Ordering::Relaxed);
        }
        let mut payload = payload;
        let mut settle = None;
        if v == ProtocolVersion::V21 && action == "TransactionEvent" {
            let priced = self
                .st
                .tariff_lock()
                .on_event(&self.st.local_cost, &mut payload);
            settle = priced.filter(|_| self.st.local_cost.settlement);
        }
        let mut result = send(&self.client, v, action, &payload, durable).await;
        if v == ProtocolVersion::V16 && matches!(msg, Msg::TxStart { .. }) {
            result = self.retry_start(action, &payload, result).await;
        }
        if let Some((tx, _, amount)) = settle {
            // the terminal settles after the transaction's end (queued behind it)
            let s = tariff::settlement(&tx, amount, now);
            if let Err(SendError::Invalid(e) | SendError::Call(e)) =
                send(&self.client, v, "NotifySettlement", &s, true).await
            {
                self.st.stats.error(format!("NotifySettlement: {e}"));
            }
        }
        if !durable && !matches!(result, Err(SendError::Offline | SendError::Lost)) {
            self.st.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(answer) => {
                if !durable {
                    self.st.stats.responses.fetch_add(1, Ordering::Relaxed);
                }
                self.answered(&msg, &answer);
            }
            Err(SendError::Invalid(e)) => self
                .st
                .stats
                .error(format!("{action}: invalid payload: {e}")),
            Err(e @ (SendError::Call(_) | SendError::Offline | SendError::Lost)) => {
                match e {
                    SendError::Call(e) => self.st.stats.error(format!("{action}: {e}")),
                    _ => {
                        self.st.stats.offline.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let mut m = self.st.model();
                let out = match &msg {
                    Msg::Authorize { connector, .. } => m.authorize_failed(*connector),
                    Msg::TxStart { connector, tx, .. } => m.start_failed(*connector, &tx.local_id),
                    _ => Vec::new(),
                };
                drop(m);
                self.st.emit(out);
            }
        }
    }

    /// A car plugged in at `connector` holds its ISO 15118 session with the
    /// station's SECC (the driver's card `token` for EIM); its outcome
    /// authorizes the transaction (by the car's eMAID for Plug & Charge).
    async fn iso15118_session(
        &mut self,
        iso: &iso15118::Iso15118Setup,
        connector: u32,
        token: String,
    ) {
        let pnc = self.rng.chance(iso.sim.pnc_share);
        let contract = if pnc {
            self.contracts.get(&token).cloned()
        } else {
            None
        };
        let mut challenge = [0u8; 16];
        for b in &mut challenge {
            *b = self.rng.range(0, 256) as u8;
        }
        // the car's demand: 40 to 120 A at 400 V (16 to 48 kW)
        let target_current = self.rng.range(40, 120) as f64;
        // the car's generation: DIN, -2 or -20 (EIM); for Plug & Charge,
        // -20 (2) or -2 unless its contract says which
        let generation = self.rng.range(0, 2) as u8;
        let (secc, evcc) = iso.session(pnc, contract, challenge, target_current, generation);
        let plan = iso15118::Plan {
            loops: 2,
            limit: Duration::from_secs(20),
        };
        let mut backend = OcppBackend {
            client: &self.client,
            version: self.st.version,
            card: &token,
            stats: &self.st.stats,
            schedules: self.st.iso15118_schedules(connector),
        };
        let out = iso15118::run_session(secc, evcc, &plan, &mut backend).await;
        let scheduled = !backend.schedules.is_empty();
        let stats = &self.st.stats;
        stats.iso15118_sessions.fetch_add(1, Ordering::Relaxed);
        if let (true, Some(w)) = (scheduled, out.pmax_w) {
            stats.iso15118_scheduled.fetch_add(1, Ordering::Relaxed);
            stats
                .iso15118_max_pmax_w
                .fetch_max(w.round().max(0.0) as u64, Ordering::Relaxed);
            stats.iso15118_max_drawn_w.fetch_max(
                out.power_w.unwrap_or(0.0).round().max(0.0) as u64,
                Ordering::Relaxed,
            );
        }
        *stats
            .iso15118_protocols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(
                out.protocol
                    .map_or_else(|| "none".into(), |p| format!("{p:?}")),
            )
            .or_default() += 1;
        if let Some(c) = &out.installed {
            if out.renewed {
                stats.contracts_renewed.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.contracts_installed.fetch_add(1, Ordering::Relaxed);
            }
            self.contracts.insert(token.clone(), c.clone());
        }
        let ok = out.finished();
        let id = match (&out.emaid, ok) {
            (Some(e), true) if pnc => {
                stats.pnc_authorized.fetch_add(1, Ordering::Relaxed);
                self.emaids.insert(e.clone());
                e.clone()
            }
            _ => token.clone(),
        };
        if ok {
            stats.auth_accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.iso15118_refused.fetch_add(1, Ordering::Relaxed);
        }
        self.st.event(
            "iso15118",
            json!({"connector": connector, "pnc": pnc, "emaid": out.emaid, "authorized": ok,
                "installed": out.installed.is_some(), "protocol": out.protocol.map(|p| format!("{p:?}")),
                "secc_end": out.secc_end.map(|e| format!("{e:?}")),
                "schedule_pmax_w": out.pmax_w.filter(|_| scheduled), "drawn_w": out.power_w}),
        );
        // the transaction's meter follows what the car drew in its loop
        let msgs = self
            .st
            .model()
            .authorized_drawing(connector, &id, ok, out.power_w);
        self.st.emit(msgs);
    }

    /// A 1.6 StartTransaction is a transaction-related message: one that
    /// went out and was not answered (the connection dropped with the
    /// answer, the call timed out, the CSMS failed it) is sent again once
    /// the station is connected, up to [`START_ATTEMPTS`] in all, as 1.6
    /// §4.8 asks. The CSMS may have committed the first one: it answers
    /// the replay with the same transaction. A start that never went out
    /// (offline at the time) is not queued: the driver is told to try again.
    async fn retry_start(
        &mut self,
        action: &str,
        payload: &Value,
        mut result: Result<Value, SendError>,
    ) -> Result<Value, SendError> {
        let mut attempts = 1;
        let mut went_out = !matches!(result, Err(SendError::Offline));
        while went_out && attempts < START_ATTEMPTS {
            let Err(SendError::Call(_) | SendError::Offline | SendError::Lost) = &result else {
                break;
            };
            attempts += 1;
            self.st.stats.start_retries.fetch_add(1, Ordering::Relaxed);
            self.st
                .event("tx_start_retry", json!({ "attempt": attempts }));
            // a pause, then the connection back (a dropped one takes a reconnect)
            tokio::time::sleep(Duration::from_millis(self.rng.range(500, 1_500))).await;
            let mut state = self.client.watch_state();
            let ready = matches!(
                tokio::time::timeout(
                    Duration::from_secs(30),
                    state.wait_for(|s| *s == ClientState::Connected(BootState::Accepted)),
                )
                .await,
                Ok(Ok(_))
            );
            if !ready {
                continue;
            }
            result = send(&self.client, ProtocolVersion::V16, action, payload, false).await;
            went_out = true;
        }
        result
    }

    fn answered(&mut self, msg: &Msg, answer: &Value) {
        let out = match msg {
            Msg::Authorize { connector, token } => {
                let status = answer["idTagInfo"]["status"]
                    .as_str()
                    .or(answer["idTokenInfo"]["status"].as_str());
                let ok = status == Some("Accepted");
                if ok {
                    self.st.stats.auth_accepted.fetch_add(1, Ordering::Relaxed);
                }
                self.st.event(
                    "authorized",
                    json!({"connector": connector, "token": token, "status": status}),
                );
                self.st.model().authorized(*connector, token, ok)
            }
            Msg::TxStart { connector, tx, .. } if self.st.version == ProtocolVersion::V16 => {
                let ok = answer["idTagInfo"]["status"] == "Accepted";
                let id = answer["transactionId"].as_i64().unwrap_or_default();
                self.st.event(
                    "tx_started",
                    json!({"connector": connector, "transactionId": id, "accepted": ok}),
                );
                self.st
                    .model()
                    .start_confirmed(*connector, &tx.local_id, id, ok)
            }
            Msg::Grid {
                action: "OpenPeriodicEventStream",
                payload,
            } if answer["status"] == "Accepted" => {
                let now = self.now_ms();
                self.st.grid_lock().stream_opened(payload, now);
                Vec::new()
            }
            _ => Vec::new(),
        };
        self.st.emit(out);
    }

    /// A 2.1 station with [`Behaviour::event_stream_s`] opens its stream
    /// once booted (again after each boot, as a real station's monitors
    /// start afresh), then sends the values due (SENDs, not queued: a
    /// value that cannot go now is not worth sending later).
    async fn stream(&mut self, booted: bool) {
        if self.st.version != ProtocolVersion::V21 {
            return;
        }
        let Some(every) = self.st.model().event_stream_s() else {
            return;
        };
        if booted {
            self.st.emit(vec![Msg::Grid {
                action: "OpenPeriodicEventStream",
                payload: grid::GridState::open_stream_request(every),
            }]);
            return;
        }
        let power = self.st.model().power_w();
        let basetime = render::ts(chrono::Utc::now());
        let due = self
            .st
            .grid_lock()
            .due_stream_values(self.now_ms(), power, &basetime);
        let Some(peer) = self.client.peer() else {
            return;
        };
        for p in due {
            let sent = match evproto_ocpp_types::from_str::<v21::NotifyPeriodicEventStreamRequest>(
                &p.to_string(),
            ) {
                Ok(req) => peer
                    .send::<v21::action::NotifyPeriodicEventStream>(&req)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("invalid payload: {e}")),
            };
            match sent {
                Ok(()) => {
                    self.st.stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self
                    .st
                    .stats
                    .error(format!("NotifyPeriodicEventStream: {e}")),
            }
        }
    }

    async fn reboot(&mut self) {
        self.st.stats.reboots.fetch_add(1, Ordering::Relaxed);
        self.st.event("reboot", Value::Null);
        // let queued transaction ends go out first, as a real station flushes before it resets
        let flush = Instant::now() + Duration::from_secs(5);
        while !self.store.is_empty() && Instant::now() < flush && self.client.peer().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.client.shutdown().await;
        let pause = self.rng.range(500, 2_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        self.client = Client::start_with_store(
            self.config.clone(),
            routes(self.st.clone()),
            &self.boot,
            self.store.clone(),
        );
        self.st.model().rebooted();
    }

    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<Msg>,
        stop_at: Instant,
    ) -> (ClientState, usize) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut state = self.client.watch_state();
        let mut was_ready = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(stop_at) => break,
                _ = tick.tick() => {
                    let now = self.now_ms();
                    let out = self.st.model().tick(now);
                    self.st.emit(out);
                    if was_ready {
                        self.stream(false).await;
                    }
                }
                Some(msg) = inbox.recv() => {
                    self.deliver(msg).await;
                    continue;
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        // a reboot replaced the client
                        state = self.client.watch_state();
                        continue;
                    }
                }
            }
            let ready = *state.borrow() == ClientState::Connected(BootState::Accepted);
            if ready && !was_ready {
                self.st.stats.boots.fetch_add(1, Ordering::Relaxed);
                self.st.event("connected", Value::Null);
                let out = self.st.model().all_status();
                self.st.emit(out);
                self.stream(true).await;
            }
            was_ready = ready;
            if *state.borrow() == ClientState::Stopped {
                state = self.client.watch_state();
                was_ready = false;
            }
        }
        // the end: a transaction the model started is announced before it is
        // stopped (the start may still wait here, emitted as an ISO 15118
        // session that outlasted the run ended), then drivers stop their
        // sessions and queued messages drain (bounded)
        let mut pending = Vec::new();
        while let Ok(m) = inbox.try_recv() {
            pending.push(m);
        }
        for m in pending {
            if !matches!(
                m,
                Msg::Authorize { .. } | Msg::Reboot | Msg::Crash | Msg::Disconnect
            ) {
                self.deliver(m).await;
            }
        }
        let now = self.now_ms();
        let out = self.st.model().stop_all(now);
        for m in out {
            self.deliver(m).await;
        }
        while let Ok(m) = inbox.try_recv() {
            if !matches!(
                m,
                Msg::Authorize { .. }
                    | Msg::TxStart { .. }
                    | Msg::Reboot
                    | Msg::Crash
                    | Msg::Disconnect
            ) {
                self.deliver(m).await;
            }
        }
        // queued transaction messages are delivered, reconnecting if need be (bounded)
        let drain = Instant::now() + Duration::from_secs(10);
        while !self.store.is_empty() && Instant::now() < drain {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = self.client.state();
        let queued = self.store.len();
        self.client.shutdown().await;
        (state, queued)
    }
}

/// The URL a station's identity is appended to, from a CSMS URL as users
/// write it: `ws://host:9000/ocpp` and `ws://host:9000/ocpp/` both give
/// `ws://host:9000/ocpp/`, and so does the URL as the reference CSMS prints
/// it, `ws://host:9000/ocpp/{identity}` (or with `{id}`). Station `CP1` then
/// connects to `ws://host:9000/ocpp/CP1`. `evproto load` and
/// `evproto simulate` both use this rule.
///
/// ```
/// use evproto_sim::station_url_prefix;
/// for url in ["ws://h:9000/ocpp", "ws://h:9000/ocpp/", "ws://h:9000/ocpp/{identity}"] {
///     assert_eq!(station_url_prefix(url).unwrap(), "ws://h:9000/ocpp/");
/// }
/// ```
///
/// # Errors
///
/// A reason, for the command line: a `{identity}`/`{id}` placeholder that
/// is not the last path segment, another `{…}` placeholder, or a query or
/// fragment (the identity is the last path segment, it cannot follow them).
pub fn station_url_prefix(url: &str) -> Result<String, String> {
    if url.contains(['?', '#']) {
        return Err(format!(
            "{url}: a query or fragment cannot be followed by the station identity"
        ));
    }
    let base = ["{identity}", "{id}"]
        .iter()
        .find_map(|p| url.strip_suffix(p))
        .unwrap_or(url);
    if base.contains(['{', '}']) {
        return Err(format!(
            "{url}: the only placeholder is `{{identity}}` (or `{{id}}`), as the last path segment"
        ));
    }
    // the identity is a path segment of its own (`ws://host:9000` → `/CP1`)
    if base.ends_with('/') {
        Ok(base.to_owned())
    } else {
        Ok(format!("{base}/"))
    }
}

/// Checks that `url` is a ws:// or wss:// URL whose host resolves to
/// loopback only, unless `allow_remote`.
///
/// # Errors
///
/// A reason, for the command line.
pub async fn check_target(url: &str, allow_remote: bool) -> Result<(), String> {
    let rest = url
        .strip_prefix("ws://")
        .map(|r| (r, 80))
        .or_else(|| url.strip_prefix("wss://").map(|r| (r, 443)))
        .ok_or_else(|| format!("{url}: only ws:// and wss:// URLs"))?;
    let authority = rest.0.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => (authority, rest.1),
        },
        _ => (authority, rest.1),
    };
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host}: no address"));
    }
    if !allow_remote {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "{} is not loopback: pass --allow-remote to simulate against another machine",
                a.ip()
            ));
        }
    }
    Ok(())
}

/// Runs the simulation for the configured time and returns the report.
/// `progress`, if given, receives a line every few seconds.
///
/// # Errors
///
/// A configuration error (no versions, empty connector range, a URL
/// [`station_url_prefix`] refuses).
pub async fn run(
    config: SimConfig,
    progress: Option<Box<dyn Fn(String) + Send>>,
) -> Result<Report, String> {
    if config.versions.is_empty() {
        return Err("no OCPP version to simulate".into());
    }
    if config.connectors.0 == 0 || config.connectors.0 > config.connectors.1 {
        return Err("connectors: need 1 <= MIN <= MAX".into());
    }
    let url = station_url_prefix(&config.url)?;
    if let Some(i) = &config.iso15118 {
        if !(0.0..=1.0).contains(&i.pnc_share) {
            return Err("pnc share: 0 to 1".into());
        }
    }
    let iso = match config.iso15118.clone() {
        Some(i) => Some(Arc::new(iso15118::Iso15118Setup::new(i, config.seed)?)),
        None => None,
    };
    let stats = Arc::new(Stats::default());
    let t0 = Instant::now();
    let ramp = Duration::from_secs_f64(config.stations as f64 / config.ramp_per_s.max(0.001));
    let stop_at = t0 + ramp + config.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut stations = Vec::new();
    let mut seeder = model::Rng::new(config.seed);
    for i in 0..config.stations {
        let start = t0 + Duration::from_secs_f64(i as f64 / config.ramp_per_s.max(0.001));
        let version = config.versions[i % config.versions.len()];
        let identity = format!("{}{}", config.prefix, i);
        let connectors =
            seeder.range(config.connectors.0 as u64, config.connectors.1 as u64) as u32;
        let mut model = StationModel::new(
            &identity,
            connectors,
            config.behaviour.clone(),
            config.seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9),
        );
        if version != ProtocolVersion::V16 {
            model.config = [
                ("OCPPCommCtrlr.HeartbeatInterval", "300"),
                ("SampledDataCtrlr.TxUpdatedInterval", "10"),
                ("AuthCtrlr.AuthorizeRemoteStart", "false"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            if version == ProtocolVersion::V21 {
                // local cost (2.1 block I): what a CSMS reads before sending tariffs
                let on = config.behaviour.local_cost.enabled.to_string();
                model.config.insert("TariffCostCtrlr.Enabled".into(), on);
            }
        }
        let (outbox, inbox) = mpsc::unbounded_channel();
        let st = Arc::new(Station {
            identity: identity.clone(),
            version,
            model: Mutex::new(model),
            outbox,
            stats: stats.clone(),
            events: config.events,
            grid: Mutex::new(grid::GridState::default()),
            tariffs: Mutex::new(tariff::TariffState::default()),
            local_cost: config.behaviour.local_cost.clone(),
            profiles: Mutex::new(ProfileState::default()),
        });
        stations.push(st.clone());
        let mut cc = ClientConfig::new(&url, &identity, version)
            .with_permessage_deflate(config.permessage_deflate);
        if let Some(p) = &config.password {
            cc = cc.with_password(p.as_bytes());
        }
        let failures = stats.clone();
        cc = cc.with_connect_failure_hook(move |f| failures.connect_failure(f));
        let boot = render::boot(version, "SimCharger", &identity).to_string();
        let stats = stats.clone();
        let seed = config.seed ^ (i as u64) << 20;
        let iso = iso.clone();
        tasks.spawn(async move {
            tokio::time::sleep_until(start).await;
            let store: Arc<dyn OfflineStore> = Arc::new(MemoryStore::new());
            let client =
                Client::start_with_store(cc.clone(), routes(st.clone()), &boot, store.clone());
            // count the first accepted boot per station
            let mut w = client.watch_state();
            let counted = stats.clone();
            tokio::spawn(async move {
                if w.wait_for(|s| *s == ClientState::Connected(BootState::Accepted))
                    .await
                    .is_ok()
                {
                    counted.booted.fetch_add(1, Ordering::Relaxed);
                }
            });
            let driver = Driver {
                st,
                config: cc,
                boot,
                store,
                client,
                iso,
                contracts: Default::default(),
                emaids: Default::default(),
                t0: start,
                rng: model::Rng::new(seed),
            };
            let client = driver.run(inbox, stop_at).await;
            let ready = client.0 == ClientState::Connected(BootState::Accepted);
            (ready, client.1)
        });
    }
    let mut last = Instant::now();
    let mut connected_at_end = 0;
    let mut queued_at_end = 0;
    loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                Some(Ok((ready, queued))) => {
                    connected_at_end += u64::from(ready);
                    queued_at_end += queued as u64;
                }
                Some(Err(e)) => stats.error(format!("station task: {e}")),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Some(p) = &progress {
            if last.elapsed() >= Duration::from_secs(5) {
                last = Instant::now();
                let (s, e) = stations.iter().fold((0, 0), |acc, st| {
                    let m = st.model();
                    (acc.0 + m.tally.started, acc.1 + m.tally.ended)
                });
                let errors: u64 = stats
                    .errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .sum();
                let failures = stats.failures_line();
                p(format!(
                    "[{:>5.1}s] booted {}/{}  sessions {} started {} ended  meter values {}  errors {}{}",
                    t0.elapsed().as_secs_f64(),
                    stats.booted.load(Ordering::Relaxed),
                    config.stations,
                    s,
                    e,
                    stats.meter_values.load(Ordering::Relaxed),
                    errors,
                    if failures.is_empty() {
                        String::new()
                    } else {
                        format!("  connect failures {failures}")
                    }
                ));
            }
        }
    }
    let mut report = Report {
        stations: config.stations,
        booted: stats.booted.load(Ordering::Relaxed),
        boots: stats.boots.load(Ordering::Relaxed),
        connected_at_end,
        sent: stats.sent.load(Ordering::Relaxed),
        responses: stats.responses.load(Ordering::Relaxed),
        sessions_started: 0,
        sessions_completed: 0,
        energy_kwh: 0.0,
        meter_values: stats.meter_values.load(Ordering::Relaxed),
        auth_accepted: stats.auth_accepted.load(Ordering::Relaxed),
        auth_rejected: 0,
        faults: 0,
        disconnects: stats.disconnects.load(Ordering::Relaxed),
        reboots: stats.reboots.load(Ordering::Relaxed),
        skipped_offline: stats.offline.load(Ordering::Relaxed),
        start_retries: stats.start_retries.load(Ordering::Relaxed),
        iso15118_sessions: stats.iso15118_sessions.load(Ordering::Relaxed),
        iso15118_refused: stats.iso15118_refused.load(Ordering::Relaxed),
        pnc_authorized: stats.pnc_authorized.load(Ordering::Relaxed),
        contracts_installed: stats.contracts_installed.load(Ordering::Relaxed),
        contracts_renewed: stats.contracts_renewed.load(Ordering::Relaxed),
        iso15118_scheduled: stats.iso15118_scheduled.load(Ordering::Relaxed),
        iso15118_max_pmax_w: stats.iso15118_max_pmax_w.load(Ordering::Relaxed),
        iso15118_max_drawn_w: stats.iso15118_max_drawn_w.load(Ordering::Relaxed),
        iso15118_protocols: stats
            .iso15118_protocols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        queued_at_end,
        csms_calls: stats
            .csms_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        errors: stats
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        connect_failures: stats
            .connect_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        first_connect_failure: stats
            .first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        duration_s: t0.elapsed().as_secs_f64(),
    };
    for st in &stations {
        let m = st.model();
        report.sessions_started += m.tally.started;
        report.sessions_completed += m.tally.ended;
        report.energy_kwh += m.tally.energy_wh / 1000.0;
        report.auth_rejected += m.tally.auth_rejected;
        report.faults += m.tally.faults;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::station_url_prefix;

    /// Issue 14: `--url ws://host:9000/ocpp` connected stations to
    /// `/ocppCP1` (404); every form users type or copy from the CSMS works.
    #[test]
    fn station_url_prefix_accepts_the_forms_users_type() {
        for url in [
            "ws://127.0.0.1:9000/ocpp",
            "ws://127.0.0.1:9000/ocpp/",
            "ws://127.0.0.1:9000/ocpp/{identity}",
            "ws://127.0.0.1:9000/ocpp/{id}",
        ] {
            assert_eq!(
                station_url_prefix(url).as_deref(),
                Ok("ws://127.0.0.1:9000/ocpp/"),
                "{url}"
            );
        }
        assert_eq!(
            station_url_prefix("wss://csms.example/a/b").as_deref(),
            Ok("wss://csms.example/a/b/")
        );
        assert_eq!(
            station_url_prefix("ws://[::1]:9000").as_deref(),
            Ok("ws://[::1]:9000/")
        );
        assert_eq!(
            station_url_prefix("ws://h/{identity}").as_deref(),
            Ok("ws://h/")
        );
        for bad in [
            "ws://h/ocpp/{identity}/x",
            "ws://h/ocpp/{station}",
            "ws://h/ocpp?token=1",
            "ws://h/ocpp/#x",
        ] {
            assert!(station_url_prefix(bad).is_err(), "{bad}");
        }
    }
}
