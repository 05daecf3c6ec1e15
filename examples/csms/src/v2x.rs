//! Bidirectional charging (V2X, OCPP 2.1 block Q) on the CSMS side.
//!
//! 1. **Capability**: a 2.1 `NotifyEVChargingNeeds` whose requested energy
//!    transfer is bidirectional (`AC_BPT`, `AC_BPT_DER`, `DC_BPT`,
//!    `DC_ACDP_BPT`) with a `maxDischargePower` above 0 makes the EVSE's
//!    active session a V2X session ([`V2xNeeds::of`]); what the EV said is
//!    kept with the session (`v2x_sessions`). The answer is `Accepted` (a
//!    schedule follows); any other needs are kept and answered as before.
//! 2. **Plan**: the V2X sessions are planned together with
//!    [`evproto_csms_core::planner`] over [`V2xConfig::slots`] slots of
//!    [`V2xConfig::slot`] from now ([`plan_request`]): the site's import
//!    limit (`site_limit_w` or `PUT /api/site/limits`, else none), and the grid events in force
//!    ([`GridEvent`], `POST /api/grid/events`: an import or export limit
//!    and a price over a time window). A slot no event prices costs 0, so a
//!    priced event is a peak: an EV discharges there when the price beats
//!    the [`V2xConfig::cycle_cost`] and its battery holds the reserve
//!    ([`battery`]), and charges the energy back in the cheap slots.
//! 3. **Setpoints**: each session's station gets one 2.1 `TxProfile` of kind
//!    `Dynamic` for the transaction ([`dynamic_profile`]): one period with
//!    `operationMode` `CentralSetpoint`, the plan's first-slot `setpoint`
//!    (W; negative discharges), `limit` (the EV's charge power) and
//!    `dischargeLimit` (minus its discharge power), `dynUpdateInterval` the
//!    slot length. Later changes go as `UpdateDynamicSchedule` on that
//!    profile; a station's `PullDynamicScheduleUpdate` is answered with the
//!    setpoint in force ([`schedule_update`]). Plans are made again when
//!    needs arrive, a grid event changes and every [`V2xConfig::replan`].
//! 4. **Metering and credit**: a V2X session's energy fed back is its
//!    `Energy.Active.Export.Register` (last reading − first, Wh). When the
//!    session completes it is priced as a separate credit
//!    ([`credit`]): the stored tariff `v2x` (an OCPI 2.2.1 tariff, the
//!    same engine as the `default` tariff, its ENERGY components only)
//!    applied to the export readings; the energy cost incl. VAT is rounded
//!    once to the currency's minor unit, half away from zero. The credit is
//!    kept with the session and shown by `GET /api/sessions/{id}/v2x` with
//!    the net (the session's price minus the credit, in minor units) and a
//!    receipt line.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use evproto_csms_core::money::Money;
use evproto_csms_core::planner::{self, EvInput, PlanRequest};
use evproto_ocpp_types::v21;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};

use crate::api::{ApiError, ApiResult};
use crate::events::LiveEvent;
use crate::gateway::{StationCallError, StationGateway};
use crate::store::Store;

/// Charging profile ids of V2X profiles: this plus the EVSE id.
pub const PROFILE_BASE: i32 = 2_100;

/// What a bidirectional EV said it needs and can do (from a 2.1
/// `NotifyEVChargingNeeds`), as kept with its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2xNeeds {
    /// The EVSE.
    pub evse: i32,
    /// The requested energy transfer (`AC_BPT`, `DC_BPT`, ...).
    pub transfer: String,
    /// Most it takes, W.
    pub max_charge_w: Decimal,
    /// Most it gives back, W.
    pub max_discharge_w: Decimal,
    /// Least it discharges at, W (0: no minimum).
    pub min_discharge_w: Decimal,
    /// Energy to add before departure, Wh (`evTargetEnergyRequest`, else
    /// the AC/DC `energyAmount`).
    pub need_wh: Decimal,
    /// Energy it may give back above its V2X minimum, Wh (minus
    /// `evMinV2XEnergyRequest`; `None`: not said, so not discharged).
    pub v2x_room_wh: Option<Decimal>,
    /// Room up to full, Wh (`evMaxEnergyRequest`).
    pub max_energy_wh: Option<Decimal>,
    /// When it leaves.
    pub departure: Option<DateTime<Utc>>,
}

impl V2xNeeds {
    /// The needs of a bidirectional EV, `None` for one that only charges.
    pub fn of(req: &v21::NotifyEVChargingNeedsRequest) -> Option<V2xNeeds> {
        use v21::EnergyTransferModeEnumType as M;
        let n = &req.charging_needs;
        if !matches!(
            n.requested_energy_transfer,
            M::ACBPT | M::ACBPTDER | M::DCBPT | M::DCACDPBPT
        ) {
            return None;
        }
        let v = n.v2x_charging_parameters.as_ref()?;
        let max_discharge_w = v.max_discharge_power.filter(|w| *w > Decimal::ZERO)?;
        let ac = n.ac_charging_parameters.as_ref();
        let dc = n.dc_charging_parameters.as_ref();
        let max_charge_w = v
            .max_charge_power
            .or(dc.and_then(|d| d.ev_max_power))
            .or(ac.map(|a| a.ev_max_current * a.ev_max_voltage))
            .filter(|w| *w > Decimal::ZERO)?;
        let need_wh = v
            .ev_target_energy_request
            .or(ac.map(|a| a.energy_amount))
            .or(dc.and_then(|d| d.energy_amount))
            .unwrap_or(Decimal::ZERO)
            .max(Decimal::ZERO);
        Some(V2xNeeds {
            evse: req.evse_id,
            transfer: n.requested_energy_transfer.as_str().to_owned(),
            max_charge_w,
            max_discharge_w,
            min_discharge_w: v
                .min_discharge_power
                .unwrap_or(Decimal::ZERO)
                .clamp(Decimal::ZERO, max_discharge_w),
            need_wh,
            v2x_room_wh: v.ev_min_v2x_energy_request.map(|e| (-e).max(Decimal::ZERO)),
            max_energy_wh: v.ev_max_energy_request.map(|e| e.max(need_wh)),
            departure: n.departure_time,
        })
    }
}

/// The battery as the planner sees it: (capacity, now, reserve), Wh, on a
/// scale where the EV's V2X minimum is 0: now = the room above it,
/// capacity = now + room up to full (at least the need). `None` without
/// the room: such an EV is not discharged.
pub fn battery(n: &V2xNeeds) -> Option<(Decimal, Decimal, Decimal)> {
    let now = n.v2x_room_wh?;
    let up = n.max_energy_wh.unwrap_or(n.need_wh).max(n.need_wh);
    Some((now + up, now, Decimal::ZERO))
}

/// A grid event of the site: limits and a price over `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridEvent {
    /// Its id (given by the CSMS when created without one).
    #[serde(default)]
    pub id: String,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
    /// The site's import limit, W.
    #[serde(default)]
    pub import_limit_w: Option<Decimal>,
    /// What the site may feed back, W.
    #[serde(default)]
    pub export_limit_w: Option<Decimal>,
    /// The energy price, per kWh (the currency of the tariffs).
    #[serde(default)]
    pub price: Option<Decimal>,
}

impl GridEvent {
    /// Why it cannot be taken.
    ///
    /// # Errors
    ///
    /// An end not after the start, a negative limit, nothing set.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.end <= self.start {
            return Err("end: after start");
        }
        let negative = |v: Option<Decimal>| v.is_some_and(|w| w < Decimal::ZERO);
        if negative(self.import_limit_w) || negative(self.export_limit_w) {
            return Err("limits: 0 or more W");
        }
        if self.import_limit_w.is_none() && self.export_limit_w.is_none() && self.price.is_none() {
            return Err("an event sets import_limit_w, export_limit_w or price");
        }
        if self.id.len() > 64 {
            return Err("id: at most 64 characters");
        }
        Ok(())
    }
}

/// The plan's request at `start` (see the module docs): `slots` slots of
/// `slot`; `site_import_w` where no event limits the import; no export and
/// a price of 0 where no event says otherwise (flat when no event prices).
pub fn plan_request(
    events: &[GridEvent],
    start: DateTime<Utc>,
    slot: Duration,
    slots: usize,
    site_import_w: Decimal,
) -> PlanRequest {
    let mut import_w = vec![site_import_w; slots];
    let mut export_w = vec![Decimal::ZERO; slots];
    let mut price: Vec<Option<Decimal>> = vec![None; slots];
    for e in events {
        for i in 0..slots {
            let a = start + slot * i as i32;
            if !(e.start < a + slot && e.end > a) {
                continue;
            }
            if let Some(w) = e.import_limit_w {
                import_w[i] = import_w[i].min(w);
            }
            if let Some(w) = e.export_limit_w {
                export_w[i] = export_w[i].max(w);
            }
            if let Some(p) = e.price {
                price[i] = Some(price[i].map_or(p, |q: Decimal| q.max(p)));
            }
        }
    }
    let mut req = PlanRequest::new(start, slot, import_w);
    req.export_w = export_w;
    if price.iter().any(Option::is_some) {
        req.price = price.into_iter().map(Option::unwrap_or_default).collect();
    }
    req
}

/// The planner's input for a V2X session at `now` (a departure already
/// past, or none, counts as `stay` from now).
pub fn ev_input(session: &str, n: &V2xNeeds, now: DateTime<Utc>, stay: Duration) -> EvInput {
    let departure = n.departure.filter(|t| *t > now).unwrap_or(now + stay);
    let mut ev = EvInput::new(session, n.need_wh, departure, n.max_charge_w);
    ev.max_discharge_w = n.max_discharge_w;
    ev.battery = battery(n);
    ev
}

/// What a V2X session is told: its setpoint and bounds, W.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setpoint {
    /// Power to run at: positive charges, negative discharges.
    pub setpoint_w: Decimal,
    /// Most it may charge at.
    pub limit_w: Decimal,
    /// Most it may discharge at, as 2.1 writes it (0 or below).
    pub discharge_limit_w: Decimal,
}

impl Setpoint {
    /// The first slot of `plan` for an EV with `needs`.
    pub fn of(first_w: Decimal, n: &V2xNeeds) -> Setpoint {
        Setpoint {
            setpoint_w: first_w,
            limit_w: n.max_charge_w,
            discharge_limit_w: -n.max_discharge_w,
        }
    }
}

/// The 2.1 `TxProfile` of kind `Dynamic` for transaction `tx_id` on
/// `evse`, with the setpoint as its one period (see the module docs).
pub fn dynamic_profile(
    evse: i32,
    tx_id: &str,
    sp: Setpoint,
    update_every: Duration,
    now: DateTime<Utc>,
) -> Result<v21::ChargingProfileType, StationCallError> {
    let id = PROFILE_BASE + evse;
    Ok(v21::ChargingProfileType {
        id,
        stack_level: 0,
        charging_profile_purpose: v21::ChargingProfilePurposeEnumType::TxProfile,
        charging_profile_kind: v21::ChargingProfileKindEnumType::Dynamic,
        recurrency_kind: None,
        valid_from: None,
        valid_to: None,
        transaction_id: Some(
            tx_id
                .parse()
                .map_err(|e| StationCallError::rejected(tx_id, e))?,
        ),
        max_offline_duration: None,
        charging_schedule: vec![v21::ChargingScheduleType {
            id,
            limit_at_soc: None,
            start_schedule: Some(now),
            duration: None,
            charging_rate_unit: v21::ChargingRateUnitEnumType::W,
            min_charging_rate: None,
            power_tolerance: None,
            signature_id: None,
            digest_value: None,
            use_local_time: None,
            charging_schedule_period: vec![v21::ChargingSchedulePeriodType {
                start_period: 0,
                limit: Some(sp.limit_w),
                limit_l2: None,
                limit_l3: None,
                number_phases: None,
                phase_to_use: None,
                discharge_limit: Some(sp.discharge_limit_w),
                discharge_limit_l2: None,
                discharge_limit_l3: None,
                setpoint: Some(sp.setpoint_w),
                setpoint_l2: None,
                setpoint_l3: None,
                setpoint_reactive: None,
                setpoint_reactive_l2: None,
                setpoint_reactive_l3: None,
                preconditioning_request: None,
                evse_sleep: None,
                v2x_baseline: None,
                operation_mode: Some(v21::OperationModeEnumType::CentralSetpoint),
                v2x_freq_watt_curve: None,
                v2x_signal_watt_curve: None,
                custom_data: None,
            }],
            randomized_delay: None,
            sales_tariff: None,
            absolute_price_schedule: None,
            price_level_schedule: None,
            custom_data: None,
        }],
        invalid_after_offline_duration: None,
        dyn_update_interval: Some(i32::try_from(update_every.num_seconds()).unwrap_or(i32::MAX)),
        dyn_update_time: Some(now),
        price_schedule_signature: None,
        custom_data: None,
    })
}

/// The setpoint as a dynamic schedule's update (`UpdateDynamicSchedule`,
/// the answer to `PullDynamicScheduleUpdate`).
pub fn schedule_update(sp: Setpoint) -> v21::ChargingScheduleUpdateType {
    v21::ChargingScheduleUpdateType {
        limit: Some(sp.limit_w),
        limit_l2: None,
        limit_l3: None,
        discharge_limit: Some(sp.discharge_limit_w),
        discharge_limit_l2: None,
        discharge_limit_l3: None,
        setpoint: Some(sp.setpoint_w),
        setpoint_l2: None,
        setpoint_l3: None,
        setpoint_reactive: None,
        setpoint_reactive_l2: None,
        setpoint_reactive_l3: None,
        custom_data: None,
    }
}

/// A session's energy fed back, Wh: its export register's last reading
/// minus its first (by time), 0 with fewer than two.
pub fn exported_wh(readings: &[crate::billing::Reading]) -> Decimal {
    let mut r: Vec<_> = readings.to_vec();
    r.sort_by_key(|(t, _)| *t);
    match (r.first(), r.last()) {
        (Some(a), Some(b)) => (b.1 - a.1).max(Decimal::ZERO),
        _ => Decimal::ZERO,
    }
}

/// The V2X credit of a completed session: its export readings priced by
/// the `v2x` tariff's ENERGY components (incl. VAT), rounded once to the
/// currency's minor unit, half away from zero. `None` without a `v2x`
/// tariff.
///
/// # Errors
///
/// The tariff is not one, or the session cannot be priced.
pub async fn credit(
    store: &Store,
    session: &crate::store::Session,
    op: &crate::billing::Operator<'_>,
) -> Result<Option<Money>, crate::billing::BillingError> {
    use crate::billing::{BillingError, DefaultTariff};
    let Some(body) = store.tariff(TARIFF).await? else {
        return Ok(None);
    };
    let tariff = DefaultTariff::parse(&body, op)?;
    let exported = export_samples(&store.session_meter_values(&session.id).await?);
    // the export readings as the engine's energy periods: no import meter
    // start or stop is mixed in
    let bare = crate::store::Session {
        meter_start_wh: None,
        meter_stop_wh: None,
        ..session.clone()
    };
    let cp = crate::billing::periods(&bare, &exported)?;
    let priced = evproto_ocpi::tariff::price(&tariff.engine, &cp.session(), Some(op.time_zone))?;
    Money::try_round(priced.total_energy_cost.incl(), tariff.currency)
        .map(Some)
        .map_err(|e| BillingError::BadTariff(format!("v2x credit: {e}")))
}

/// The tariff the V2X credit is priced with.
pub const TARIFF: &str = "v2x";

const EXPORT: &str = "Energy.Active.Export.Register";

/// A stored meter value, the fields read here.
#[derive(Debug, Deserialize)]
struct Sample {
    timestamp: String,
    measurand: String,
    value: String,
    unit: Option<String>,
}

/// The export register's readings among stored meter values, under the
/// import register's name (what [`crate::billing::periods`] reads).
fn export_samples(meter_values: &[serde_json::Value]) -> Vec<serde_json::Value> {
    meter_values
        .iter()
        .filter(|m| m.get("measurand").and_then(|v| v.as_str()) == Some(EXPORT))
        .map(|m| {
            let mut m = m.clone();
            m["measurand"] = "Energy.Active.Import.Register".into();
            m
        })
        .collect()
}

/// The export register readings among stored meter values.
pub fn export_readings(meter_values: &[serde_json::Value]) -> Vec<crate::billing::Reading> {
    meter_values
        .iter()
        .filter_map(|m| Sample::deserialize(m).ok())
        .filter(|s| s.measurand == EXPORT)
        .filter_map(|s| {
            let t = DateTime::parse_from_rfc3339(&s.timestamp).ok()?;
            let wh = crate::store::to_wh(&s.value, s.unit.as_deref())?;
            Some((t.with_timezone(&Utc), wh))
        })
        .collect()
}

/// How the V2X side plans.
#[derive(Debug, Clone, PartialEq)]
pub struct V2xConfig {
    /// Slot length.
    pub slot: Duration,
    /// Slots planned.
    pub slots: usize,
    /// Cost of cycling a kWh through a battery.
    pub cycle_cost: Decimal,
    /// How often plans are made again without a trigger.
    pub replan: std::time::Duration,
    /// Stay of an EV that gave no departure.
    pub stay: Duration,
}

impl Default for V2xConfig {
    /// 5-minute slots over 24 hours, 0.05 per kWh cycled, again every
    /// minute, a stay of 4 hours.
    fn default() -> Self {
        V2xConfig {
            slot: Duration::minutes(5),
            slots: 288,
            cycle_cost: Decimal::new(5, 2),
            replan: std::time::Duration::from_secs(60),
            stay: Duration::hours(4),
        }
    }
}

/// The V2X side: what it needs from the CSMS.
#[derive(Debug, Clone)]
pub struct V2x {
    /// Where sessions, needs and events are kept.
    pub store: Store,
    /// Where setpoints are sent.
    pub gateway: StationGateway,
    /// Where what was sent is published.
    pub events: broadcast::Sender<LiveEvent>,
    /// The site's limits (its import limit, W), as the operator sets them.
    pub site_limits: crate::smart::LimitCell,
    /// How it plans.
    pub config: V2xConfig,
    /// One plan at a time.
    pub lock: Arc<tokio::sync::Mutex<()>>,
}

/// Why a plan could not be made or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum V2xError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The planner refused the input.
    #[error("plan: {0:?}")]
    Plan(planner::PlanError),
}

impl V2x {
    /// Plans again in the background.
    pub fn replan_soon(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.replan(Utc::now()).await {
                tracing::warn!("v2x: {e}");
            }
        });
    }

    /// Plans at every [`V2xConfig::replan`] until the process ends.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.config.replan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.replan(Utc::now()).await {
                tracing::warn!("v2x: {e}");
            }
        }
    }

    /// Binds needs that arrived before their session was kept (a station
    /// sends `NotifyEVChargingNeeds` right after the transaction's start,
    /// which may commit later): an active session whose EVSE's latest needs
    /// arrived after its start (less a minute of clock skew) and are
    /// bidirectional becomes a V2X session.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn adopt(&self) -> crate::store::Result<usize> {
        let mut latest: std::collections::BTreeMap<
            String,
            (String, Option<String>, String, String),
        > = Default::default();
        for (session, station, started, body, at) in self.store.v2x_unbound().await? {
            latest.insert(session, (station, started, body, at));
        }
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let mut bound = 0;
        for (session, (station, started, body, at)) in latest {
            let fresh = match (started.as_deref().and_then(time), time(&at)) {
                (Some(s), Some(a)) => a >= s - Duration::minutes(1),
                _ => false,
            };
            let needs = evproto_ocpp_types::from_str::<v21::NotifyEVChargingNeedsRequest>(&body)
                .ok()
                .and_then(|r| V2xNeeds::of(&r));
            if let (true, Some(n)) = (fresh, needs) {
                self.store.v2x_needs(&session, &station, &n).await?;
                bound += 1;
            }
        }
        Ok(bound)
    }

    /// Plans the active V2X sessions at `now` and sends each a setpoint
    /// that changed; returns the sessions planned.
    ///
    /// # Errors
    ///
    /// The store failed or the planner refused.
    pub async fn replan(&self, now: DateTime<Utc>) -> Result<usize, V2xError> {
        let _one = self.lock.lock().await;
        let began = std::time::Instant::now();
        self.adopt().await?;
        let sessions = self.store.v2x_active().await?;
        if sessions.is_empty() {
            return Ok(0);
        }
        let events = self.store.grid_events().await?;
        let site = self
            .site_limits
            .get()
            .map_or(Decimal::from(1_000_000_000), |l| Decimal::from(l.limit_w));
        let req = plan_request(&events, now, self.config.slot, self.config.slots, site);
        let req = PlanRequest {
            cycle_cost: self.config.cycle_cost,
            ..req
        };
        let inputs: Vec<EvInput> = sessions
            .iter()
            .map(|s| ev_input(&s.session_id, &s.needs, now, self.config.stay))
            .collect();
        let plan = planner::plan(&req, &inputs).map_err(V2xError::Plan)?;
        let plan_ms = began.elapsed().as_millis();
        let mut sent = 0;
        for (s, p) in sessions.iter().zip(&plan.evs) {
            let first = p.setpoints_w.first().copied().unwrap_or(Decimal::ZERO);
            let sp = Setpoint::of(first, &s.needs);
            if s.sent == Some(sp) {
                continue;
            }
            let status = match self.send(s, sp, now).await {
                Ok(status) => status,
                Err(e) => e.to_string(),
            };
            let accepted = status == "Accepted";
            self.store
                .v2x_sent(&s.session_id, sp, accepted, &status)
                .await?;
            tracing::info!(station = %s.station_id, session = %s.session_id, setpoint_w = %sp.setpoint_w, status, "v2x: setpoint");
            let _ = self.events.send(LiveEvent::V2xSetpoint {
                station: s.station_id.clone(),
                session: s.session_id.clone(),
                setpoint_w: sp.setpoint_w.to_string(),
                status,
            });
            sent += 1;
        }
        // what benches/site.sh reads: the recompute (store reads and plan)
        // and the whole replan with the pushes, as the CSMS saw them
        tracing::info!(
            sessions = sessions.len(),
            sent,
            plan_ms,
            total_ms = began.elapsed().as_millis(),
            "v2x: replanned"
        );
        Ok(sessions.len())
    }

    /// Sends a setpoint: the dynamic profile the first time (or after a
    /// refusal), then updates of it; the station's status.
    async fn send(
        &self,
        s: &crate::store::grid::V2xSession,
        sp: Setpoint,
        now: DateTime<Utc>,
    ) -> Result<String, StationCallError> {
        let id = PROFILE_BASE + s.needs.evse;
        if s.profile_sent {
            let r = self
                .gateway
                .call::<v21::action::UpdateDynamicSchedule>(
                    &s.station_id,
                    v21::UpdateDynamicScheduleRequest {
                        charging_profile_id: id,
                        schedule_update: schedule_update(sp),
                        custom_data: None,
                    },
                )
                .await?;
            return Ok(r.status.as_str().to_owned());
        }
        let profile = dynamic_profile(s.needs.evse, &s.ocpp_tx_id, sp, self.config.slot, now)?;
        let r = self
            .gateway
            .call::<v21::action::SetChargingProfile>(
                &s.station_id,
                v21::SetChargingProfileRequest {
                    evse_id: s.needs.evse,
                    charging_profile: profile,
                    custom_data: None,
                },
            )
            .await?;
        Ok(r.status.as_str().to_owned())
    }
}

/// A V2X session as `GET /api/sessions/{id}/v2x` shows it.
#[derive(Debug, Serialize)]
pub struct V2xView {
    /// The session.
    pub session: String,
    /// What the EV said.
    pub needs: V2xNeeds,
    /// The setpoint last sent, and whether the station took it.
    pub setpoint: Option<Setpoint>,
    /// The station's answer to it.
    pub status: Option<String>,
    /// Energy fed back so far, Wh (the export register).
    pub exported_wh: Decimal,
    /// The credit, once the session completed and a `v2x` tariff exists.
    pub credit: Option<MoneyView>,
    /// The session's price minus the credit (both incl. VAT, minor units).
    pub net: Option<MoneyView>,
    /// The receipt's V2X line.
    pub receipt_line: Option<String>,
}

/// An amount: currency, minor units, and as a decimal.
#[derive(Debug, Serialize)]
pub struct MoneyView {
    /// ISO 4217.
    pub currency: String,
    /// Minor units.
    pub minor: i64,
    /// As a decimal.
    pub amount: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        MoneyView {
            currency: m.currency().code().to_owned(),
            minor: m.minor(),
            amount: m.to_decimal().to_string(),
        }
    }
}

/// The receipt line of a credit.
pub fn receipt_line(exported_wh: Decimal, credit: Money) -> String {
    let kwh = (exported_wh / Decimal::from(1000)).round_dp(3).normalize();
    format!(
        "V2X energy fed back: {kwh} kWh, credit -{} {}",
        credit.to_decimal(),
        credit.currency().code()
    )
}

/// The V2X part of a session's detail (`GET /api/sessions/{id}`), `None`
/// for a session that is not V2X.
///
/// # Errors
///
/// The store failed.
pub async fn view(
    app: &crate::App,
    s: &crate::store::Session,
) -> crate::store::Result<Option<V2xView>> {
    let Some(v) = app.store.v2x_session(&s.id).await? else {
        return Ok(None);
    };
    let exported = exported_wh(&export_readings(
        &app.store.session_meter_values(&s.id).await?,
    ));
    let credit = v.credit;
    let price = match &credit {
        Some(c) => app.store.cdr_total_minor(&s.id, c.currency()).await?,
        None => None,
    };
    Ok(Some(V2xView {
        session: s.id.clone(),
        needs: v.needs,
        setpoint: v.sent,
        status: v.status,
        exported_wh: v.exported_wh.unwrap_or(exported),
        net: match (price, credit) {
            (Some(p), Some(c)) => p.checked_sub(c).map(MoneyView::from),
            _ => None,
        },
        receipt_line: credit.map(|c| receipt_line(v.exported_wh.unwrap_or(exported), c)),
        credit: credit.map(MoneyView::from),
    }))
}

/// A session completed: when it was a V2X session, its energy fed back and
/// its credit are kept (once; see [`credit`]). A credit that cannot be
/// priced is logged and left out.
///
/// # Errors
///
/// The store failed.
pub async fn completed(app: &crate::App, s: &crate::store::Session) -> crate::store::Result<()> {
    let Some(v) = app.store.v2x_session(&s.id).await? else {
        return Ok(());
    };
    if v.exported_wh.is_some() {
        return Ok(());
    }
    let exported = exported_wh(&export_readings(
        &app.store.session_meter_values(&s.id).await?,
    ));
    let op = crate::billing::Operator::of(&app.config);
    let money = match credit(&app.store, s, &op).await {
        Ok(m) => m,
        Err(crate::billing::BillingError::Store(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(session = %s.id, "v2x credit not priced: {e}");
            None
        }
    };
    app.store.v2x_metered(&s.id, exported, money).await
}

/// A 2.x `NotifyEVChargingNeeds` as the V2X side reads it.
pub trait NeedsMessage {
    /// The bidirectional needs in it (2.0.1: none, it has no bidirectional transfer).
    fn v2x(&self) -> Option<V2xNeeds>;
}

impl NeedsMessage for evproto_ocpp_types::v201::NotifyEVChargingNeedsRequest {
    fn v2x(&self) -> Option<V2xNeeds> {
        None
    }
}

impl NeedsMessage for v21::NotifyEVChargingNeedsRequest {
    fn v2x(&self) -> Option<V2xNeeds> {
        V2xNeeds::of(self)
    }
}

/// An EV's needs arrived on `station`: when bidirectional and the EVSE has
/// an active session, they are kept with it and the site is planned again.
/// Whether a schedule follows.
///
/// # Errors
///
/// The store failed.
pub async fn on_needs(
    app: &crate::App,
    station: &str,
    req: &impl NeedsMessage,
) -> crate::store::Result<bool> {
    let Some(needs) = req.v2x() else {
        return Ok(false);
    };
    let evse = i64::from(needs.evse);
    let active = app
        .store
        .sessions(Some(station), 100)
        .await?
        .into_iter()
        .find(|s| {
            s.status == crate::store::SessionStatus::Active
                && s.evse_id.or(s.connector_id) == Some(evse)
        });
    let Some(session) = active else {
        return Ok(false);
    };
    app.store.v2x_needs(&session.id, station, &needs).await?;
    app.v2x.replan_soon();
    Ok(true)
}

/// The answer to a station's `PullDynamicScheduleUpdate` of profile `id`:
/// the setpoint in force, `None` when the profile is not a V2X one of a
/// session of this station.
///
/// # Errors
///
/// The store failed.
pub async fn pulled(
    app: &crate::App,
    station: &str,
    id: i32,
) -> crate::store::Result<Option<v21::ChargingScheduleUpdateType>> {
    Ok(app
        .store
        .v2x_active()
        .await?
        .into_iter()
        .find(|s| s.station_id == station && PROFILE_BASE + s.needs.evse == id && s.profile_sent)
        .and_then(|s| s.sent)
        .map(schedule_update))
}

// ---- the operator API: grid events ----

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<crate::App>> {
    Router::new()
        .route("/api/grid/events", get(list_events).post(create_event))
        .route("/api/grid/events/{id}", delete(delete_event))
}

async fn list_events(State(app): State<Arc<crate::App>>) -> ApiResult {
    let items = app.store.grid_events().await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// Creates (or replaces, by id) a grid event and plans again.
async fn create_event(State(app): State<Arc<crate::App>>, bytes: Bytes) -> ApiResult {
    let mut e: GridEvent = crate::api::body(&bytes)?;
    e.check()
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    if e.id.is_empty() {
        e.id = crate::store::random_hex(8);
    }
    let created = app.store.put_grid_event(&e).await?;
    app.v2x.replan_soon();
    app.site.rebalance();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(e)).into_response())
}

async fn delete_event(State(app): State<Arc<crate::App>>, Path(id): Path<String>) -> ApiResult {
    if !app.store.delete_grid_event(&id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown grid event {id}"),
        ));
    }
    app.v2x.replan_soon();
    app.site.rebalance();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 17, 0, 0).unwrap()
    }

    fn kw(x: i64) -> Decimal {
        Decimal::from(x * 1000)
    }

    fn needs_21(text: &str) -> v21::NotifyEVChargingNeedsRequest {
        evproto_ocpp_types::from_str(text).unwrap()
    }

    const BPT: &str = r#"{"evseId":1,"chargingNeeds":{"requestedEnergyTransfer":"AC_BPT",
        "availableEnergyTransfer":["AC_three_phase","AC_BPT"],"controlMode":"ScheduledControl",
        "departureTime":"2026-06-01T21:00:00Z",
        "acChargingParameters":{"energyAmount":12000,"evMinCurrent":6,"evMaxCurrent":16,"evMaxVoltage":400},
        "v2xChargingParameters":{"maxChargePower":11000,"maxDischargePower":7000,"evTargetEnergyRequest":12000,
          "evMaxEnergyRequest":22000,"evMinV2XEnergyRequest":-20000}}}"#;

    #[test]
    fn bidirectional_needs_are_read_and_others_are_not_v2x() {
        let n = V2xNeeds::of(&needs_21(BPT)).unwrap();
        assert_eq!(n.transfer, "AC_BPT");
        assert_eq!((n.max_charge_w, n.max_discharge_w), (kw(11), kw(7)));
        assert_eq!(n.need_wh, kw(12));
        assert_eq!(n.v2x_room_wh, Some(kw(20)));
        assert_eq!(battery(&n), Some((kw(42), kw(20), Decimal::ZERO)));
        let ac_only = BPT.replace(
            r#""requestedEnergyTransfer":"AC_BPT""#,
            r#""requestedEnergyTransfer":"AC_three_phase""#,
        );
        assert!(V2xNeeds::of(&needs_21(&ac_only)).is_none());
        let no_discharge = BPT.replace(r#""maxDischargePower":7000"#, r#""maxDischargePower":0"#);
        assert!(V2xNeeds::of(&needs_21(&no_discharge)).is_none());
        let no_room = BPT.replace(r#","evMinV2XEnergyRequest":-20000"#, "");
        assert_eq!(battery(&V2xNeeds::of(&needs_21(&no_room)).unwrap()), None);
    }

    #[test]
    fn a_priced_export_event_makes_the_ev_discharge_there_and_charge_back_later() {
        let n = V2xNeeds::of(&needs_21(BPT)).unwrap();
        let peak = GridEvent {
            id: "peak".into(),
            start: t0(),
            end: t0() + Duration::minutes(30),
            import_limit_w: None,
            export_limit_w: Some(kw(50)),
            price: Some(Decimal::new(60, 2)),
        };
        peak.check().unwrap();
        let req = plan_request(&[peak], t0(), Duration::minutes(5), 48, kw(100));
        assert_eq!(req.export_w[5], kw(50));
        assert_eq!(req.export_w[6], Decimal::ZERO);
        assert_eq!(req.price[0], Decimal::new(60, 2));
        assert_eq!(req.price[6], Decimal::ZERO);
        let ev = ev_input("S", &n, t0(), Duration::hours(4));
        let p = planner::plan(&req, &[ev]).unwrap();
        let s = &p.evs[0].setpoints_w;
        assert_eq!(s[0], -kw(7), "{s:?}");
        assert!(s[6..].iter().any(|w| *w > Decimal::ZERO));
        assert_eq!(p.evs[0].unmet_wh, Decimal::ZERO);
        // what it needed (powers are rounded to 0.1 W)
        assert!((p.evs[0].net_wh(&req) - kw(12)).abs() < Decimal::ONE);
        // without the event: no export room, no discharge
        let flat = plan_request(&[], t0(), Duration::minutes(5), 48, kw(100));
        let p = planner::plan(&flat, &[ev_input("S", &n, t0(), Duration::hours(4))]).unwrap();
        assert!(p.evs[0].setpoints_w.iter().all(|w| *w >= Decimal::ZERO));
    }

    #[test]
    fn bad_grid_events_are_refused() {
        let good = GridEvent {
            id: String::new(),
            start: t0(),
            end: t0() + Duration::minutes(5),
            import_limit_w: Some(kw(10)),
            export_limit_w: None,
            price: None,
        };
        assert!(good.check().is_ok());
        let backwards = GridEvent {
            end: t0(),
            ..good.clone()
        };
        assert!(backwards.check().is_err());
        let negative = GridEvent {
            export_limit_w: Some(-Decimal::ONE),
            ..good.clone()
        };
        assert!(negative.check().is_err());
        let empty = GridEvent {
            import_limit_w: None,
            ..good
        };
        assert!(empty.check().is_err());
    }

    #[test]
    fn the_profile_and_update_carry_the_setpoint_and_are_schema_valid() {
        let n = V2xNeeds::of(&needs_21(BPT)).unwrap();
        let sp = Setpoint::of(-kw(7), &n);
        let p = dynamic_profile(1, "TX-1", sp, Duration::minutes(5), t0()).unwrap();
        let req = v21::SetChargingProfileRequest {
            evse_id: 1,
            charging_profile: p,
            custom_data: None,
        };
        let text = evproto_ocpp_types::to_json(&req);
        let back: v21::SetChargingProfileRequest = evproto_ocpp_types::from_str(&text).unwrap();
        let period = &back.charging_profile.charging_schedule[0].charging_schedule_period[0];
        assert_eq!(period.setpoint, Some(-kw(7)));
        assert_eq!(period.discharge_limit, Some(-kw(7)));
        assert_eq!(period.limit, Some(kw(11)));
        assert_eq!(
            period.operation_mode,
            Some(v21::OperationModeEnumType::CentralSetpoint)
        );
        assert_eq!(back.charging_profile.id, PROFILE_BASE + 1);
        assert_eq!(back.charging_profile.dyn_update_interval, Some(300));
        let u = v21::UpdateDynamicScheduleRequest {
            charging_profile_id: PROFILE_BASE + 1,
            schedule_update: schedule_update(sp),
            custom_data: None,
        };
        let text = evproto_ocpp_types::to_json(&u);
        let _: v21::UpdateDynamicScheduleRequest = evproto_ocpp_types::from_str(&text).unwrap();
    }

    #[test]
    fn export_energy_is_the_register_span_and_the_credit_line_reads_in_minor_units() {
        let mv: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"timestamp":"2026-06-01T17:10:00Z","measurand":"Energy.Active.Export.Register","value":"1500.5","unit":"Wh"},
                {"timestamp":"2026-06-01T17:00:00Z","measurand":"Energy.Active.Export.Register","value":"0.5","unit":"Wh"},
                {"timestamp":"2026-06-01T17:05:00Z","measurand":"Energy.Active.Import.Register","value":"9000","unit":"Wh"},
                {"timestamp":"2026-06-01T17:20:00Z","measurand":"Energy.Active.Export.Register","value":"3.2","unit":"kWh"}]"#,
        )
        .unwrap();
        let r = export_readings(&mv);
        assert_eq!(r.len(), 3);
        assert_eq!(exported_wh(&r), Decimal::new(31995, 1));
        assert_eq!(exported_wh(&r[..1]), Decimal::ZERO);
        assert_eq!(export_samples(&mv).len(), 3);
        let eur = Money::parse(Decimal::new(96, 2), "EUR").unwrap();
        assert_eq!(eur.minor(), 96);
        assert_eq!(
            receipt_line(Decimal::new(31995, 1), eur),
            "V2X energy fed back: 3.2 kWh, credit -0.96 EUR"
        );
    }
}
