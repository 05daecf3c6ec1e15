//! Demand response: the CSMS as an OpenADR 3 VEN.
//!
//! With `--openadr-vtn URL` (and the VEN's OAuth client id and secret, and
//! the program's name) the CSMS polls the VTN for the program's events
//! (`openleadr-client`, typed with `openleadr-wire`), turns them into the
//! site's per-slot import and export limits and prices, plans the active
//! sessions with [`evproto_csms_core::planner`] within each EV's need and
//! departure, and sends each session the first slot's power as its charging
//! limit through the site rebalancing path ([`crate::smart::set_share`]).
//! For every event that has started it reports the load the site delivered
//! back to the VTN: one `DEMAND` value per event interval (mean kW, from
//! the sessions' `Power.Active.Import` meter values), updated as intervals
//! pass.
//!
//! # From events to a plan ([`site_request`], pure)
//!
//! - Slots of [`VenConfig::slot`] from now, [`VenConfig::slots`] of them.
//! - An event's intervals follow one another from the event's
//!   `intervalPeriod.start` (each its `duration`), unless an interval has
//!   its own period; a start of `0001-01-01` means now (OpenADR 3); no
//!   duration means until the event is deleted.
//! - `IMPORT_CAPACITY_LIMIT` / `EXPORT_CAPACITY_LIMIT` (kW unless the
//!   event's payload descriptor says otherwise): a slot the interval
//!   overlaps gets the lowest limit of the events in force (a limit that
//!   starts mid-slot holds for the whole slot: never above it). Slots no
//!   event limits keep the site's own limit (`site_limit_w`, else none),
//!   and no export.
//! - `PRICE`: the value of the highest-priority event in force (per kWh).
//! - An event with a value that is not a number, or a negative limit, is
//!   left out and named in [`Signals::rejected`]; the others still apply.
//!
//! # Sessions
//!
//! Each active session's need and departure come from the EV's latest
//! `NotifyEVChargingNeeds` on its EVSE when stored, else from
//! [`EvDefaults`] (`--openadr-default-need-wh`,
//! `--openadr-default-stay-min`). A departure already past counts as the
//! default stay from now.
//!
//! Credentials come from the configuration (the secret best from
//! `CSMS_OPENADR_CLIENT_SECRET`) and are never logged.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Utc};
use evproto_csms_core::planner::{self, EvInput, Plan, PlanRequest};
use openleadr_client::{
    Client, ClientCredentials, EventClient, Filter, ReportClient, VirtualEndNode,
};
use openleadr_wire::event::{EventRequest, EventType};
use openleadr_wire::interval::{Interval, IntervalPeriod};
use openleadr_wire::report::{
    ReadingType, ReportPayloadDescriptor, ReportRequest, ReportResource, ReportType, ResourceName,
};
use openleadr_wire::values_map::{Value, ValueType, ValuesMap};
use openleadr_wire::Unit;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;
use sqlx::Row;
use tokio::sync::broadcast;

use crate::events::{LiveEvent, SentProfile};
use crate::gateway::StationGateway;
use crate::store::Store;

/// The VEN's flags and environment (flattened into [`crate::config::Args`]).
#[derive(Debug, Clone, clap::Args)]
pub struct VenArgs {
    /// OpenADR 3 VTN base URL; when set the CSMS is a VEN of its program (demand response).
    #[arg(long, env = "CSMS_OPENADR_VTN")]
    openadr_vtn: Option<String>,
    /// OAuth client id of this VEN at the VTN.
    #[arg(long, env = "CSMS_OPENADR_CLIENT_ID")]
    openadr_client_id: Option<String>,
    /// OAuth client secret of this VEN (better in the environment than on the command line).
    #[arg(long, env = "CSMS_OPENADR_CLIENT_SECRET", hide_env_values = true)]
    openadr_client_secret: Option<String>,
    /// The VTN program (its programName) whose events shape the site.
    #[arg(long, env = "CSMS_OPENADR_PROGRAM")]
    openadr_program: Option<String>,
    /// How often the VTN is polled, milliseconds (default 10000).
    #[arg(long, env = "CSMS_OPENADR_POLL_MS")]
    openadr_poll_ms: Option<u64>,
    /// Energy a session needs when its EV sent no charging needs, Wh (default 20000).
    #[arg(long, env = "CSMS_OPENADR_DEFAULT_NEED_WH")]
    openadr_default_need_wh: Option<u32>,
    /// How long such a session stays from now, minutes (default 240).
    #[arg(long, env = "CSMS_OPENADR_DEFAULT_STAY_MIN")]
    openadr_default_stay_min: Option<u32>,
    /// Most power such a session takes, W (default 22000).
    #[arg(long, env = "CSMS_OPENADR_EV_MAX_W")]
    openadr_ev_max_w: Option<u32>,
}

impl VenArgs {
    /// The VEN's configuration, `None` without `--openadr-vtn`.
    ///
    /// # Errors
    ///
    /// A VTN without client id, secret or program, a bad URL, a zero value.
    pub fn to_config(&self) -> Result<Option<VenConfig>, String> {
        let Some(vtn) = &self.openadr_vtn else {
            return Ok(None);
        };
        let need = |v: &Option<String>, name: &str| {
            v.clone()
                .filter(|s| !s.is_empty())
                .ok_or(format!("openadr_vtn needs {name}"))
        };
        let d = EvDefaults::default();
        let positive = |v: Option<u32>, name: &str, default: Decimal| match v {
            Some(0) => Err(format!("{name}: positive")),
            Some(v) => Ok(Decimal::from(v)),
            None => Ok(default),
        };
        let config = VenConfig {
            vtn: vtn.clone(),
            client_id: need(&self.openadr_client_id, "openadr_client_id")?,
            client_secret: Secret(need(&self.openadr_client_secret, "openadr_client_secret")?),
            program: need(&self.openadr_program, "openadr_program")?,
            poll: std::time::Duration::from_millis(self.openadr_poll_ms.unwrap_or(10_000).max(100)),
            defaults: EvDefaults {
                need_wh: positive(
                    self.openadr_default_need_wh,
                    "openadr_default_need_wh",
                    d.need_wh,
                )?,
                stay: match self.openadr_default_stay_min {
                    Some(0) => return Err("openadr_default_stay_min: positive".into()),
                    Some(m) => Duration::minutes(m.into()),
                    None => d.stay,
                },
                max_w: positive(self.openadr_ev_max_w, "openadr_ev_max_w", d.max_w)?,
            },
            ..VenConfig::new(String::new(), String::new(), String::new(), String::new())
        };
        config.client().map_err(|e| e.to_string())?;
        Ok(Some(config))
    }
}

/// A secret that never shows in logs or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a session is planned with when its EV sent no charging needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EvDefaults {
    /// Energy to add, Wh.
    pub need_wh: Decimal,
    /// Departure: this long from now.
    pub stay: Duration,
    /// Most power it takes, W.
    pub max_w: Decimal,
}

impl Default for EvDefaults {
    fn default() -> Self {
        EvDefaults {
            need_wh: Decimal::from(20_000),
            stay: Duration::minutes(240),
            max_w: Decimal::from(22_000),
        }
    }
}

/// The VEN's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct VenConfig {
    /// The VTN's base URL (its OAuth token endpoint at `/auth/token`).
    pub vtn: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// The program's name.
    pub program: String,
    /// Poll period.
    pub poll: std::time::Duration,
    /// Slot length of the plan.
    pub slot: Duration,
    /// Number of slots planned.
    pub slots: usize,
    /// Sessions without charging needs.
    pub defaults: EvDefaults,
}

impl VenConfig {
    /// A VEN of `program` at `vtn`: polled every 10 s, 15-minute slots over
    /// 24 hours, default needs.
    pub fn new(vtn: String, client_id: String, client_secret: String, program: String) -> Self {
        VenConfig {
            vtn,
            client_id,
            client_secret: Secret(client_secret),
            program,
            poll: std::time::Duration::from_secs(10),
            slot: Duration::minutes(15),
            slots: 96,
            defaults: EvDefaults::default(),
        }
    }

    /// A client of the VTN with these credentials.
    ///
    /// # Errors
    ///
    /// The URL does not parse.
    pub fn client(&self) -> Result<Client<VirtualEndNode>, VenError> {
        let mut base = self.vtn.clone();
        if !base.ends_with('/') {
            base.push('/');
        }
        let url = base.parse().map_err(|_| VenError::Url)?;
        Ok(Client::with_url(
            url,
            Some(ClientCredentials::new(
                self.client_id.clone(),
                self.client_secret.0.clone(),
            )),
        ))
    }
}

/// Why a poll of the VTN failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VenError {
    /// The VTN's URL does not parse.
    #[error("openadr_vtn: not a URL")]
    Url,
    /// The VTN refused or could not be reached.
    #[error("VTN: {0}")]
    Vtn(#[from] openleadr_client::Error),
    /// The VTN has no program of that name (visible to this VEN).
    #[error("VTN: no program named {0:?}")]
    NoProgram(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A database query failed.
    #[error("store: {0}")]
    Sql(#[from] sqlx::Error),
    /// The plan could not be made.
    #[error("plan: {0:?}")]
    Plan(planner::PlanError),
}

/// Why an event was left out of the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// A limit or price that is not a number.
    #[error("event {event:?} interval {interval}: {payload} is not a number")]
    NotANumber {
        /// The event's name.
        event: String,
        /// The interval's id.
        interval: i32,
        /// The payload type.
        payload: &'static str,
    },
    /// A negative capacity limit.
    #[error("event {event:?} interval {interval}: negative {payload}")]
    Negative {
        /// The event's name.
        event: String,
        /// The interval's id.
        interval: i32,
        /// The payload type.
        payload: &'static str,
    },
    /// An interval without a start (neither its own period nor the event's).
    #[error("event {event:?} interval {interval}: no start")]
    NoStart {
        /// The event's name.
        event: String,
        /// The interval's id.
        interval: i32,
    },
}

/// The plan's request for the site and what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// Slots, limits and prices.
    pub request: PlanRequest,
    /// Events left out, and why.
    pub rejected: Vec<SignalError>,
}

/// One interval of an event in time: `[start, end)` (`end` `None`: open).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The interval's id.
    pub id: i32,
    /// Its start.
    pub start: DateTime<Utc>,
    /// Its end (`None`: until the event is deleted).
    pub end: Option<DateTime<Utc>>,
}

/// The OpenADR 3 start that means "now".
fn is_now(t: DateTime<Utc>) -> bool {
    t.year() <= 1
}

/// When `event`'s intervals run, in its list's order (see the module docs).
///
/// # Errors
///
/// An interval without a start.
pub fn spans(event: &EventRequest, now: DateTime<Utc>) -> Result<Vec<Span>, SignalError> {
    let mut out = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    for (k, interval) in event.intervals.iter().flatten().enumerate() {
        let own = interval.interval_period.as_ref();
        let period = own.or(event.interval_period.as_ref());
        let Some(period) = period else {
            return Err(SignalError::NoStart {
                event: name(event),
                interval: interval.id,
            });
        };
        let base = if is_now(period.start) {
            now
        } else {
            period.start
        };
        let start = match (own, next) {
            (None, Some(n)) if k > 0 => n,
            _ => base,
        };
        let end = period
            .duration
            .as_ref()
            .map(|d| d.to_chrono_at_datetime(start))
            .filter(|d| *d > Duration::zero() && *d < Duration::days(365 * 100))
            .and_then(|d| start.checked_add_signed(d));
        next = end;
        out.push(Span {
            id: interval.id,
            start,
            end,
        });
    }
    Ok(out)
}

fn name(event: &EventRequest) -> String {
    event.event_name.clone().unwrap_or_default()
}

/// W per unit of `payload` in `event` (its payload descriptor's unit; kW by default).
fn watts_per_unit(event: &EventRequest, payload: &EventType) -> Decimal {
    let unit = event
        .payload_descriptors
        .iter()
        .flatten()
        .find(|d| &d.payload_type == payload)
        .and_then(|d| d.units.clone());
    match unit {
        Some(Unit::Private(u)) if u.eq_ignore_ascii_case("W") => Decimal::ONE,
        Some(Unit::Private(u)) if u.eq_ignore_ascii_case("MW") => Decimal::from(1_000_000),
        _ => Decimal::from(1000),
    }
}

fn number(v: Option<&Value>) -> Option<Decimal> {
    match v? {
        Value::Integer(i) => Some(Decimal::from(*i)),
        Value::Number(f) => Decimal::from_f64_retain(*f).map(|d| d.round_dp(6)),
        _ => None,
    }
}

/// What one event sets in each slot.
#[derive(Default)]
struct SlotValues {
    import_w: Option<Decimal>,
    export_w: Option<Decimal>,
    price: Option<Decimal>,
}

/// One event's values per slot, or why it is left out.
fn event_slots(
    event: &EventRequest,
    start: DateTime<Utc>,
    slot: Duration,
    slots: usize,
) -> Result<Vec<SlotValues>, SignalError> {
    let mut out: Vec<SlotValues> = (0..slots).map(|_| SlotValues::default()).collect();
    let spans = spans(event, start)?;
    for (span, interval) in spans.iter().zip(event.intervals.iter().flatten()) {
        for payload in &interval.payloads {
            let (which, label): (fn(&mut SlotValues) -> &mut Option<Decimal>, _) = match payload
                .value_type
            {
                EventType::ImportCapacityLimit => (|s| &mut s.import_w, "IMPORT_CAPACITY_LIMIT"),
                EventType::ExportCapacityLimit => (|s| &mut s.export_w, "EXPORT_CAPACITY_LIMIT"),
                EventType::Price => (|s| &mut s.price, "PRICE"),
                _ => continue,
            };
            let err = |negative| {
                let (event, interval, payload) = (name(event), interval.id, label);
                if negative {
                    SignalError::Negative {
                        event,
                        interval,
                        payload,
                    }
                } else {
                    SignalError::NotANumber {
                        event,
                        interval,
                        payload,
                    }
                }
            };
            let raw = number(payload.values.first()).ok_or_else(|| err(false))?;
            let value = if label == "PRICE" {
                raw
            } else if raw < Decimal::ZERO {
                return Err(err(true));
            } else {
                raw * watts_per_unit(event, &payload.value_type)
            };
            for (i, s) in out.iter_mut().enumerate() {
                let a = start + slot * i as i32;
                let b = a + slot;
                if span.start < b && span.end.is_none_or(|e| e > a) {
                    // two intervals in one slot: the lower limit, the later price
                    let v = which(s);
                    *v = Some(match *v {
                        Some(old) if label != "PRICE" => old.min(value),
                        _ => value,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The site's plan request from the program's events at `start` (see the
/// module docs): `slots` slots of `slot`; `site_import_w` where no event
/// limits the import.
pub fn site_request(
    events: &[EventRequest],
    start: DateTime<Utc>,
    slot: Duration,
    slots: usize,
    site_import_w: Decimal,
) -> Signals {
    let mut import_w = vec![site_import_w; slots];
    let mut export_w: Vec<Option<Decimal>> = vec![None; slots];
    let mut price: Vec<Option<(openleadr_wire::event::Priority, Decimal)>> = vec![None; slots];
    let mut rejected = Vec::new();
    for event in events {
        let values = match event_slots(event, start, slot, slots) {
            Ok(v) => v,
            Err(e) => {
                rejected.push(e);
                continue;
            }
        };
        for (i, v) in values.into_iter().enumerate() {
            if let Some(w) = v.import_w {
                import_w[i] = import_w[i].min(w);
            }
            if let Some(w) = v.export_w {
                export_w[i] = Some(export_w[i].map_or(w, |x| x.min(w)));
            }
            if let Some(p) = v.price {
                if price[i].as_ref().is_none_or(|(q, _)| event.priority >= *q) {
                    price[i] = Some((event.priority, p));
                }
            }
        }
    }
    let mut request = PlanRequest::new(start, slot, import_w);
    request.export_w = export_w
        .into_iter()
        .map(|w| w.unwrap_or(Decimal::ZERO))
        .collect();
    if price.iter().any(Option::is_some) {
        request.price = price
            .into_iter()
            .map(|p| p.map(|(_, v)| v).unwrap_or(Decimal::ZERO))
            .collect();
    }
    Signals { request, rejected }
}

/// What the station's EV said it needs (the fields this VEN plans with,
/// named as in both 2.0.1's and 2.1's `NotifyEVChargingNeedsRequest`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvNeeds {
    /// The request's `chargingNeeds`.
    #[serde(default)]
    pub charging_needs: ChargingNeeds,
}

/// `chargingNeeds`, the parts this VEN uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingNeeds {
    /// When the EV leaves.
    pub departure_time: Option<DateTime<Utc>>,
    /// AC: energy (Wh), current (A), voltage (V).
    pub ac_charging_parameters: Option<AcParameters>,
    /// DC: energy (Wh), power (W).
    pub dc_charging_parameters: Option<DcParameters>,
}

/// AC charging parameters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcParameters {
    /// Wh.
    pub energy_amount: Option<Decimal>,
    /// A.
    pub ev_max_current: Option<Decimal>,
    /// V.
    pub ev_max_voltage: Option<Decimal>,
}

/// DC charging parameters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DcParameters {
    /// Wh.
    pub energy_amount: Option<Decimal>,
    /// W.
    pub ev_max_power: Option<Decimal>,
}

/// An active session on the site.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSession {
    /// Session id.
    pub id: String,
    /// Its station.
    pub station: String,
    /// Its EVSE (1.6: connector).
    pub evse: i32,
    /// What its EV said it needs, if it did.
    pub needs: Option<EvNeeds>,
}

/// The planner's input for `sessions` at `now`.
pub fn ev_inputs(sessions: &[ActiveSession], now: DateTime<Utc>, d: &EvDefaults) -> Vec<EvInput> {
    sessions
        .iter()
        .map(|s| {
            let n = s.needs.as_ref().map(|n| &n.charging_needs);
            let ac = n.and_then(|n| n.ac_charging_parameters.as_ref());
            let dc = n.and_then(|n| n.dc_charging_parameters.as_ref());
            let need = ac
                .and_then(|a| a.energy_amount)
                .or(dc.and_then(|d| d.energy_amount))
                .filter(|w| *w >= Decimal::ZERO)
                .unwrap_or(d.need_wh);
            let max = dc
                .and_then(|d| d.ev_max_power)
                .or(ac.and_then(|a| Some(a.ev_max_current? * a.ev_max_voltage?)))
                .filter(|w| *w > Decimal::ZERO)
                .unwrap_or(d.max_w);
            let departure = n
                .and_then(|n| n.departure_time)
                .filter(|t| *t > now)
                .unwrap_or(now + d.stay);
            EvInput::new(s.id.clone(), need, departure, max)
        })
        .collect()
}

/// The charging limit per session for the first slot of `plan` (discharge
/// setpoints give a limit of 0: no charging).
pub fn first_slot_limits(plan: &Plan) -> BTreeMap<String, Decimal> {
    plan.evs
        .iter()
        .map(|e| {
            let w = e.setpoints_w.first().copied().unwrap_or(Decimal::ZERO);
            (e.session.clone(), w.max(Decimal::ZERO))
        })
        .collect()
}

/// A power sample of a session: (when, W).
pub type Sample = (DateTime<Utc>, Decimal);

/// The site's mean power over `[a, b)`, W: the sum over sessions of each
/// one's mean sample in the window (`None`: no session has a sample in it).
pub fn site_power(
    samples: &HashMap<String, Vec<Sample>>,
    a: DateTime<Utc>,
    b: DateTime<Utc>,
) -> Option<Decimal> {
    let means: Vec<Decimal> = samples
        .values()
        .filter_map(|s| {
            let inside: Vec<Decimal> = s
                .iter()
                .filter(|(t, _)| *t >= a && *t < b)
                .map(|(_, w)| *w)
                .collect();
            (!inside.is_empty())
                .then(|| inside.iter().sum::<Decimal>() / Decimal::from(inside.len()))
        })
        .collect();
    (!means.is_empty()).then(|| means.iter().sum())
}

/// The report on `event` of the load the site delivered in its intervals
/// that have started by `now` (one `DEMAND` value, mean kW, per interval
/// with samples), `None` when there is nothing to report yet.
pub fn delivered_report(
    event_id: &openleadr_wire::event::EventId,
    event: &EventRequest,
    client_name: &str,
    samples: &HashMap<String, Vec<Sample>>,
    now: DateTime<Utc>,
) -> Option<ReportRequest> {
    let spans = spans(event, now).ok()?;
    let intervals: Vec<Interval> = spans
        .iter()
        .filter(|s| s.start <= now)
        .filter_map(|s| {
            let end = s.end.map_or(now, |e| e.min(now));
            let w = site_power(samples, s.start, end.max(s.start + Duration::seconds(1)))?;
            Some(Interval {
                id: s.id,
                interval_period: Some(IntervalPeriod {
                    start: s.start,
                    duration: openleadr_wire::Duration::from_str(&format!(
                        "PT{}S",
                        (end - s.start).num_seconds().max(1)
                    ))
                    .ok(),
                    randomize_start: None,
                }),
                payloads: vec![ValuesMap {
                    value_type: ValueType("DEMAND".into()),
                    values: vec![Value::Number(
                        (w / Decimal::from(1000))
                            .round_dp(3)
                            .to_f64()
                            .unwrap_or(0.0),
                    )],
                }],
            })
        })
        .collect();
    if intervals.is_empty() {
        return None;
    }
    Some(ReportRequest {
        event_id: event_id.clone(),
        client_name: client_name.into(),
        report_name: Some(format!("delivered load: {}", name(event))),
        payload_descriptors: Some(vec![ReportPayloadDescriptor {
            reading_type: ReadingType::Mean,
            units: Some(Unit::KW),
            ..ReportPayloadDescriptor::new(ReportType::Demand)
        }]),
        resources: vec![ReportResource {
            resource_name: ResourceName::AggregatedReport,
            interval_period: None,
            intervals,
        }],
    })
}

/// The VEN: what it needs from the CSMS, and what it did last.
#[derive(Debug)]
pub struct Ven {
    config: VenConfig,
    store: Store,
    gateway: StationGateway,
    events: broadcast::Sender<LiveEvent>,
    site_import_w: Decimal,
    /// The limits last sent (session → W).
    applied: BTreeMap<String, Decimal>,
    /// The reports made, per event id.
    reports: HashMap<String, ReportClient<VirtualEndNode>>,
}

impl Ven {
    /// A VEN for the site (`site_limit_w`: the site's own import limit).
    pub fn new(
        config: VenConfig,
        store: Store,
        gateway: StationGateway,
        events: broadcast::Sender<LiveEvent>,
        site_limit_w: Option<u32>,
    ) -> Ven {
        Ven {
            config,
            store,
            gateway,
            events,
            site_import_w: site_limit_w.map_or(Decimal::from(1_000_000_000), Decimal::from),
            applied: BTreeMap::new(),
            reports: HashMap::new(),
        }
    }

    /// Polls the VTN until the process ends, at the turns when this node
    /// runs the OpenADR job (every turn on a single node); a failed poll
    /// is logged and retried at the next.
    pub async fn run(mut self, jobs: crate::cluster::Jobs) {
        let client = match self.config.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("openadr: {e}");
                return;
            }
        };
        let mut tick = tokio::time::interval(self.config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !jobs.holds(crate::cluster::lease::Job::OpenAdr) {
                continue;
            }
            if let Err(e) = self.poll(&client).await {
                tracing::warn!("openadr: {e}");
            }
        }
    }

    /// One poll: events in, limits out, reports back.
    ///
    /// # Errors
    ///
    /// The VTN or the store failed.
    pub async fn poll(&mut self, client: &Client<VirtualEndNode>) -> Result<(), VenError> {
        let programs = client.get_program_list(Filter::none()).await?;
        let program = programs
            .iter()
            .find(|p| p.content().program_name == self.config.program)
            .ok_or_else(|| VenError::NoProgram(self.config.program.clone()))?;
        let events: Vec<EventClient<VirtualEndNode>> = client
            .get_event_list(Some(program.id()), Filter::none())
            .await?;
        let now = Utc::now();
        let contents: Vec<EventRequest> = events.iter().map(|e| e.content().clone()).collect();
        let signals = site_request(
            &contents,
            now,
            self.config.slot,
            self.config.slots,
            self.site_import_w,
        );
        for r in &signals.rejected {
            tracing::warn!("openadr: event left out: {r}");
        }
        let sessions = self.active_sessions().await?;
        let inputs = ev_inputs(&sessions, now, &self.config.defaults);
        let plan = planner::plan(&signals.request, &inputs).map_err(VenError::Plan)?;
        let limits = first_slot_limits(&plan);
        if limits != self.applied {
            self.apply(&sessions, &limits, signals.request.import_w[0])
                .await;
            self.applied = limits;
        }
        self.report(&events, now).await
    }

    async fn active_sessions(&self) -> Result<Vec<ActiveSession>, VenError> {
        let sessions = self.store.sessions(None, 10_000).await?;
        let mut out = Vec::new();
        let mut needs_of: HashMap<String, Vec<crate::store::StationReport>> = HashMap::new();
        for s in sessions
            .into_iter()
            .filter(|s| s.status == crate::store::SessionStatus::Active)
        {
            let evse = s.evse_id.or(s.connector_id).unwrap_or(1).max(1);
            if !needs_of.contains_key(&s.station_id) {
                let reports = crate::ocpp::ev_charging_needs(&self.store, &s.station_id).await?;
                needs_of.insert(s.station_id.clone(), reports);
            }
            let needs = needs_of[&s.station_id]
                .iter()
                .filter(|r| crate::ocpp::evse_of_key(&r.key).map(i64::from) == Some(evse))
                .max_by(|a, b| a.received_at.cmp(&b.received_at))
                .and_then(|r| EvNeeds::deserialize(&r.body).ok());
            out.push(ActiveSession {
                id: s.id,
                station: s.station_id,
                evse: i32::try_from(evse).unwrap_or(1),
                needs,
            });
        }
        Ok(out)
    }

    async fn apply(
        &self,
        sessions: &[ActiveSession],
        limits: &BTreeMap<String, Decimal>,
        site_w: Decimal,
    ) {
        let mut sent = Vec::new();
        for s in sessions {
            let Some(limit) = limits.get(&s.id) else {
                continue;
            };
            let Some(version) = self.gateway.version(&s.station).await else {
                continue;
            };
            let answer =
                crate::smart::set_share(&self.gateway, &s.station, version, s.evse, *limit).await;
            let limit_w = limit.to_u32().unwrap_or(u32::MAX);
            tracing::info!(station = %s.station, session = %s.id, limit_w, "openadr: charging limit");
            sent.push(SentProfile {
                station: s.station.clone(),
                session: s.id.clone(),
                limit_w,
                status: match answer {
                    Ok(status) => status.to_owned(),
                    Err(e) => e.to_string(),
                },
            });
        }
        let _ = self.events.send(LiveEvent::SmartCharging {
            site_limit_w: site_w.to_u32().unwrap_or(u32::MAX),
            active_sessions: sessions.len(),
            share_w: sent.iter().map(|s| s.limit_w).max().unwrap_or(0),
            sent,
        });
    }

    /// The sessions' power samples since `since` (sessions active then or now).
    async fn samples(
        &self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<String, Vec<Sample>>, VenError> {
        let rows = sqlx::query(
            "SELECT m.session_id, m.ts, m.value, m.unit FROM meter_values m JOIN sessions s ON s.id = m.session_id \
             WHERE m.measurand = 'Power.Active.Import' AND (s.status = 'Active' OR s.stopped_at >= $1)",
        )
        .bind(since.to_rfc3339())
        .fetch_all(self.store.reader())
        .await?;
        let mut out: HashMap<String, Vec<Sample>> = HashMap::new();
        for r in rows {
            let (id, ts, value, unit): (String, String, String, Option<String>) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            let (Ok(t), Ok(v)) = (DateTime::parse_from_rfc3339(&ts), Decimal::from_str(&value))
            else {
                continue;
            };
            let scale = match unit.as_deref() {
                Some(u) if u.eq_ignore_ascii_case("kW") => Decimal::from(1000),
                _ => Decimal::ONE,
            };
            let t = t.with_timezone(&Utc);
            if t >= since {
                out.entry(id).or_default().push((t, v * scale));
            }
        }
        Ok(out)
    }

    async fn report(
        &mut self,
        events: &[EventClient<VirtualEndNode>],
        now: DateTime<Utc>,
    ) -> Result<(), VenError> {
        let mut started: Vec<(&EventClient<VirtualEndNode>, DateTime<Utc>)> = Vec::new();
        for e in events {
            if let Some(first) = spans(e.content(), now)
                .ok()
                .and_then(|s| s.first().cloned())
            {
                if first.start <= now {
                    started.push((e, first.start));
                }
            }
        }
        let Some(since) = started.iter().map(|(_, t)| *t).min() else {
            return Ok(());
        };
        let samples = self.samples(since).await?;
        for (e, _) in started {
            let Some(report) =
                delivered_report(e.id(), e.content(), &self.config.client_id, &samples, now)
            else {
                continue;
            };
            match self.reports.get_mut(e.id().as_str()) {
                Some(existing) if existing.content() == &report => {}
                Some(existing) => {
                    *existing.content_mut() = report;
                    existing.update().await?;
                }
                None => {
                    let made = e.create_report(report).await?;
                    self.reports.insert(e.id().as_str().to_owned(), made);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use openleadr_wire::event::{EventInterval, EventPayloadDescriptor, EventValuesMap, Priority};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn kw(x: i64) -> Decimal {
        Decimal::from(x * 1000)
    }

    fn event(
        start: DateTime<Utc>,
        minutes: &str,
        payloads: Vec<(EventType, Vec<Value>)>,
    ) -> EventRequest {
        let mut e = EventRequest::new("p1".parse().unwrap());
        e.event_name = Some("e".into());
        e.interval_period = Some(IntervalPeriod {
            start,
            duration: Some(minutes.parse().unwrap()),
            randomize_start: None,
        });
        e.intervals = Some(
            payloads
                .into_iter()
                .enumerate()
                .map(|(i, (value_type, values))| EventInterval {
                    id: i as i32,
                    interval_period: None,
                    payloads: vec![EventValuesMap { value_type, values }],
                })
                .collect(),
        );
        e
    }

    #[test]
    fn a_limit_event_lowers_the_import_of_the_slots_it_overlaps() {
        // 30 minutes at 12 kW from 12:15; 15-minute slots from 12:00
        let e = event(
            t0() + Duration::minutes(15),
            "PT30M",
            vec![(EventType::ImportCapacityLimit, vec![Value::Number(12.0)])],
        );
        let s = site_request(&[e], t0(), Duration::minutes(15), 5, kw(50));
        assert!(s.rejected.is_empty());
        assert_eq!(
            s.request.import_w,
            vec![kw(50), kw(12), kw(12), kw(50), kw(50)]
        );
        assert_eq!(s.request.export_w, vec![Decimal::ZERO; 5]);
        assert!(s.request.price.is_empty(), "no price event: flat");
    }

    #[test]
    fn consecutive_intervals_follow_one_another_and_a_limit_mid_slot_holds_for_the_slot() {
        let e = event(
            t0() + Duration::minutes(5),
            "PT15M",
            vec![
                (EventType::ImportCapacityLimit, vec![Value::Integer(10)]),
                (EventType::ImportCapacityLimit, vec![Value::Integer(20)]),
            ],
        );
        let sp = spans(&e, t0()).unwrap();
        assert_eq!(sp[1].start, t0() + Duration::minutes(20));
        assert_eq!(sp[1].end, Some(t0() + Duration::minutes(35)));
        let s = site_request(&[e], t0(), Duration::minutes(15), 4, kw(50));
        // slot 1 (12:15–12:30) meets both intervals: the lower holds
        assert_eq!(s.request.import_w, vec![kw(10), kw(10), kw(20), kw(50)]);
    }

    #[test]
    fn prices_follow_priority_and_limits_the_lowest_and_units_scale() {
        let mut cheap = event(
            t0(),
            "PT1H",
            vec![(EventType::Price, vec![Value::Number(0.1)])],
        );
        cheap.priority = Priority::new(5);
        let mut urgent = event(
            t0(),
            "PT30M",
            vec![(EventType::Price, vec![Value::Number(0.5)])],
        );
        urgent.priority = Priority::new(1);
        let mut watts = event(
            t0(),
            "PT1H",
            vec![(EventType::ImportCapacityLimit, vec![Value::Integer(7000)])],
        );
        watts.payload_descriptors = Some(vec![EventPayloadDescriptor {
            payload_type: EventType::ImportCapacityLimit,
            units: Some(Unit::Private("W".into())),
            currency: None,
        }]);
        let export = event(
            t0(),
            "PT15M",
            vec![(EventType::ExportCapacityLimit, vec![Value::Number(3.5)])],
        );
        let s = site_request(
            &[urgent, cheap, watts, export],
            t0(),
            Duration::minutes(15),
            5,
            kw(50),
        );
        assert!(s.rejected.is_empty(), "{:?}", s.rejected);
        let p = |x: i64| Decimal::new(x, 1);
        assert_eq!(s.request.price, vec![p(5), p(5), p(1), p(1), Decimal::ZERO]);
        assert_eq!(s.request.import_w, vec![kw(7), kw(7), kw(7), kw(7), kw(50)]);
        assert_eq!(s.request.export_w[0], Decimal::from(3500));
        assert_eq!(s.request.export_w[1], Decimal::ZERO);
    }

    #[test]
    fn bad_events_are_left_out_with_a_reason_and_the_others_apply() {
        let text = event(
            t0(),
            "PT1H",
            vec![(
                EventType::ImportCapacityLimit,
                vec![Value::String("low".into())],
            )],
        );
        let negative = event(
            t0(),
            "PT1H",
            vec![(EventType::ImportCapacityLimit, vec![Value::Number(-1.0)])],
        );
        let mut no_start = event(t0(), "PT1H", vec![(EventType::Price, vec![])]);
        no_start.interval_period = None;
        let empty = event(t0(), "PT1H", vec![(EventType::Price, vec![])]);
        let good = event(
            t0(),
            "PT1H",
            vec![(EventType::ImportCapacityLimit, vec![Value::Number(11.0)])],
        );
        let s = site_request(
            &[text, negative, no_start, empty, good],
            t0(),
            Duration::minutes(30),
            3,
            kw(50),
        );
        assert_eq!(s.rejected.len(), 4, "{:?}", s.rejected);
        assert!(matches!(s.rejected[0], SignalError::NotANumber { .. }));
        assert!(matches!(s.rejected[1], SignalError::Negative { .. }));
        assert!(matches!(s.rejected[2], SignalError::NoStart { .. }));
        assert_eq!(s.request.import_w, vec![kw(11), kw(11), kw(50)]);
    }

    #[test]
    fn the_start_that_means_now_and_an_open_duration() {
        let never = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap();
        let e = event(
            never,
            "P9999Y",
            vec![(EventType::ImportCapacityLimit, vec![Value::Number(4.0)])],
        );
        let sp = spans(&e, t0()).unwrap();
        assert_eq!(sp[0].start, t0());
        assert_eq!(sp[0].end, None);
        let s = site_request(&[e], t0(), Duration::minutes(15), 3, kw(50));
        assert_eq!(s.request.import_w, vec![kw(4); 3]);
    }

    #[test]
    fn sessions_are_planned_with_their_needs_or_the_defaults_within_the_limit() {
        let needs: EvNeeds = serde_json::from_str(
            r#"{"evseId":1,"chargingNeeds":{"requestedEnergyTransfer":"DC",
                "departureTime":"2026-06-01T13:00:00Z",
                "dcChargingParameters":{"evMaxCurrent":100,"evMaxVoltage":400,"energyAmount":5000,"evMaxPower":50000}}}"#,
        )
        .unwrap();
        let sessions = vec![
            ActiveSession {
                id: "A".into(),
                station: "S1".into(),
                evse: 1,
                needs: Some(needs),
            },
            ActiveSession {
                id: "B".into(),
                station: "S2".into(),
                evse: 1,
                needs: None,
            },
        ];
        let d = EvDefaults::default();
        let inputs = ev_inputs(&sessions, t0(), &d);
        assert_eq!(inputs[0].need_wh, Decimal::from(5000));
        assert_eq!(inputs[0].max_charge_w, kw(50));
        assert_eq!(inputs[0].departure, t0() + Duration::hours(1));
        assert_eq!(inputs[1].need_wh, d.need_wh);
        assert_eq!(inputs[1].departure, t0() + d.stay);
        let e = event(
            t0(),
            "PT1H",
            vec![(EventType::ImportCapacityLimit, vec![Value::Number(12.0)])],
        );
        let s = site_request(&[e], t0(), Duration::minutes(15), 16, kw(100));
        let plan = planner::plan(&s.request, &inputs).unwrap();
        let limits = first_slot_limits(&plan);
        assert_eq!(limits.len(), 2);
        assert!(limits.values().sum::<Decimal>() <= kw(12), "{limits:?}");
        assert!(limits.values().all(|w| *w >= Decimal::ZERO));
    }

    #[test]
    fn the_report_carries_the_mean_site_power_per_started_interval() {
        let e = event(
            t0(),
            "PT10M",
            vec![
                (EventType::ImportCapacityLimit, vec![Value::Number(12.0)]),
                (EventType::ImportCapacityLimit, vec![Value::Number(12.0)]),
                (EventType::ImportCapacityLimit, vec![Value::Number(12.0)]),
            ],
        );
        let at = |m: i64| t0() + Duration::minutes(m);
        let mut samples = HashMap::new();
        samples.insert(
            "A".to_string(),
            vec![(at(1), kw(4)), (at(2), kw(6)), (at(12), kw(3))],
        );
        samples.insert("B".to_string(), vec![(at(5), kw(5)), (at(25), kw(9))]);
        let id: openleadr_wire::event::EventId = "ev1".parse().unwrap();
        let r = delivered_report(&id, &e, "ven", &samples, at(15)).unwrap();
        let iv = &r.resources[0].intervals;
        // interval 0: A 5 kW mean + B 5 kW; interval 1 (so far): A 3 kW; interval 2 not started
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[0].payloads[0].values, vec![Value::Number(10.0)]);
        assert_eq!(iv[1].payloads[0].values, vec![Value::Number(3.0)]);
        assert_eq!(iv[1].interval_period.as_ref().unwrap().start, at(10));
        assert_eq!(r.event_id, id);
        assert!(delivered_report(&id, &e, "ven", &HashMap::new(), at(15)).is_none());
    }

    #[test]
    fn the_secret_is_not_in_debug_and_a_vtn_needs_credentials() {
        let c = VenConfig::new(
            "http://127.0.0.1:3000".into(),
            "id".into(),
            "s3cret".into(),
            "p".into(),
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.client().is_ok());
        let bad = VenConfig {
            vtn: "not a url".into(),
            ..c
        };
        assert!(matches!(bad.client(), Err(VenError::Url)));
    }
}
