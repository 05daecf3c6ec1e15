//! Smart charging that runs by itself: a site's limits shared by the
//! active sessions (K01, K02, K08, K11–K14).
//!
//! 1. **Limits**: the site's power limit and, optionally, its per-phase
//!    current limit ([`SiteLimits`]): `site_limit_w` when the CSMS starts,
//!    then what the operator sets with `PUT /api/site/limits` (kept in the
//!    store, so it survives a restart; `GET` reads it).
//! 2. **Shares**: every session start and stop, limit change, external
//!    limit a station reports or clears (2.x `NotifyChargingLimit`,
//!    `ClearedChargingLimit`), grid event, station connection and missed
//!    station answer recomputes the shares with the core's site allocator
//!    ([`evproto_csms_core::limits::allocate`]: per-phase current counted
//!    with each session's phases — the lines its car was last seen drawing
//!    on (per-line `Current.Import` meter values), else what the EV asked
//!    for (2.x `NotifyEVChargingNeeds`), else three —, each session capped
//!    at the EV's maximum when it sent one, what each EV still needs by its
//!    departure served before anyone gets more than it needs, fleet
//!    sessions first — a session whose
//!    token is a fleet's ([`crate::store::Store::token_is_fleets`]) has
//!    priority [`FLEET_PRIORITY`] —, an EVSE under an external limit gets no
//!    more than it, max-min fair within a priority). Recomputations run one
//!    at a time; requests made meanwhile are folded into one more run.
//! 3. **Profiles as the spec intends** ([`limits::station_profiles`]): each
//!    running transaction a `TxProfile` with its transaction id and share,
//!    each connected station one `TxDefaultProfile` for its EVSEs without a
//!    transaction (the site's default share, counted in steps of EVSEs so
//!    stations connecting one by one do not change it each time: the site
//!    holds if every EVSE used it), and a `ChargingStationMaxProfile` (1.6
//!    `ChargePointMaxProfile`) while one of its sessions is held back by
//!    the site. Only what changed is sent, concurrently (at most
//!    [`PUSH_CONCURRENCY`] stations at a time), each station in its OCPP
//!    version; a `TxProfile` whose transaction ended and a station maximum
//!    no longer needed are cleared by id. A 2.1 V2X session keeps the
//!    profile [`crate::v2x`] sends it instead of a `TxProfile`.
//! 4. **Check**: after a push, each changed EVSE's composite schedule is
//!    asked for (`GetCompositeSchedule`, W) and compared with what the CSMS
//!    computes from the profiles it installed there
//!    ([`limits::composite_schedule`]); a difference above
//!    [`COMPOSITE_TOLERANCE_W`] raises a `composite_schedule` alert and a
//!    live event. A station that refused, did not answer or was not
//!    reached keeps what it had in the CSMS's view and is tried again on
//!    the next recomputation and, with backoff ([`retry_delay`]), by a
//!    timer.
//! 5. **Planned vs delivered**: each recomputation, and the timer every
//!    [`SAMPLE_EVERY`], records the site limit, the planned power (the sum
//!    of the shares) and the delivered power (the active sessions' latest
//!    `Power.Active.Import`) ([`crate::store::site`]); `GET
//!    /api/site/power` reads them, the console plots them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use evproto_csms_core::limits::{
    self, CompositeRequest, InstalledProfile, Purpose, RateUnit, TxRef,
};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21};
use futures_util::StreamExt;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::api::{ApiError, ApiQuery, ApiResult};
use crate::events::{LiveEvent, SentProfile};
use crate::gateway::{StationCallError, StationGateway};
use crate::store::Store;

/// The charging profile id of the site's `TxDefaultProfile` (and of the
/// OpenADR path's shares, [`set_share`]).
pub const PROFILE_ID: i32 = limits::TX_DEFAULT_PROFILE_ID;

/// The priority of a fleet's session (others: 0).
pub const FLEET_PRIORITY: u8 = 1;

/// Stations pushed to at the same time.
pub const PUSH_CONCURRENCY: usize = 64;

/// The composite schedule window asked for, s.
const COMPOSITE_WINDOW_S: u32 = 300;

/// How far a station's composite limit may be from the CSMS's, W (A ↔ W
/// rounding).
pub const COMPOSITE_TOLERANCE_W: Decimal = Decimal::ONE;

/// How often the planned and delivered power are recorded between
/// recomputations.
pub const SAMPLE_EVERY: StdDuration = StdDuration::from_secs(30);

/// How often the shares are recomputed while some EV's need by its
/// departure is counted (it changes as time passes and energy flows).
pub const NEEDS_EVERY: StdDuration = StdDuration::from_secs(300);

/// How much earlier than its session's start (the station's clock) an
/// EV's request may have come (the CSMS's clock) and still be that
/// session's: a request older than this is an earlier car's.
const NEEDS_CLOCK_SLACK: Duration = Duration::seconds(60);

/// The settings key the limits are kept under.
const LIMITS_KEY: &str = "site.limits";

/// A site's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteLimits {
    /// The site's power limit for charging, W.
    pub limit_w: u32,
    /// The site's current limit on each phase, A.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_limit_a: Option<u32>,
    /// The most one EVSE of the site can take, W (its rating; without it a
    /// session may be given up to the whole site limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evse_max_w: Option<u32>,
}

/// The largest site limit accepted, W (1 GW).
const MAX_LIMIT_W: u32 = 1_000_000_000;
/// The largest per-phase limit accepted, A.
const MAX_PHASE_A: u32 = 1_000_000;

/// Why limits were refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitError {
    /// The field at fault.
    pub field: &'static str,
    /// Why.
    pub error: String,
}

impl SiteLimits {
    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A zero or too large limit.
    pub fn check(&self) -> Result<(), LimitError> {
        if !(1..=MAX_LIMIT_W).contains(&self.limit_w) {
            return Err(LimitError {
                field: "limit_w",
                error: format!("limit_w must be 1 to {MAX_LIMIT_W} W"),
            });
        }
        if self
            .phase_limit_a
            .is_some_and(|a| !(1..=MAX_PHASE_A).contains(&a))
        {
            return Err(LimitError {
                field: "phase_limit_a",
                error: format!("phase_limit_a must be 1 to {MAX_PHASE_A} A"),
            });
        }
        if self
            .evse_max_w
            .is_some_and(|w| !(1..=MAX_LIMIT_W).contains(&w))
        {
            return Err(LimitError {
                field: "evse_max_w",
                error: format!("evse_max_w must be 1 to {MAX_LIMIT_W} W"),
            });
        }
        Ok(())
    }

    /// What one session can use at most, W.
    fn session_max_w(&self) -> Decimal {
        Decimal::from(self.evse_max_w.unwrap_or(self.limit_w))
    }

    /// The core's site (no minimum rate: every session keeps a share, none
    /// is paused).
    fn site(&self) -> limits::Site {
        limits::Site {
            phase_limit_a: self.phase_limit_a.map(Decimal::from),
            min_current_a: Decimal::ZERO,
            ..limits::Site::new(Decimal::from(self.limit_w))
        }
    }
}

/// The site's limits in force, shared by the smart-charging and V2X sides.
#[derive(Debug, Clone, Default)]
pub struct LimitCell(Arc<RwLock<Option<SiteLimits>>>);

impl LimitCell {
    /// A cell holding `limits`.
    pub fn new(limits: Option<SiteLimits>) -> LimitCell {
        LimitCell(Arc::new(RwLock::new(limits)))
    }

    /// The limits in force (`None`: no smart charging).
    pub fn get(&self) -> Option<SiteLimits> {
        *self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, limits: SiteLimits) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(limits);
    }
}

/// The `composite_schedule` alert's detail: a station's composite limit
/// differs from what the CSMS installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeMismatch {
    /// The EVSE.
    pub evse: u32,
    /// What the CSMS computed, W (`None`: no limit).
    pub expected_w: Option<Decimal>,
    /// What the station reported, W (`None`: no limit, or no schedule).
    pub reported_w: Option<Decimal>,
}

/// The delay before retrying after `failures` recomputations in a row
/// missed a station: 1 s doubling, at most 60 s.
pub fn retry_delay(failures: u32) -> StdDuration {
    StdDuration::from_secs(1u64 << failures.saturating_sub(1).min(6))
        .min(StdDuration::from_secs(60))
}

/// What the CSMS believes each station holds, and the checks to redo.
#[derive(Debug, Default)]
struct Installed {
    /// Profiles per station, as accepted.
    stations: HashMap<String, Vec<InstalledProfile>>,
    /// EVSEs whose composite check got no answer: (station, EVSE).
    unchecked: HashSet<(String, u32)>,
    /// The planned power of the last recomputation, W.
    planned_w: Decimal,
}

#[derive(Debug, Default)]
struct Shared {
    /// A recomputation is queued and has not started.
    queued: AtomicBool,
    /// One recomputation at a time, with what it installed.
    run: tokio::sync::Mutex<Installed>,
    /// Missed answers in a row and when to retry.
    retry: std::sync::Mutex<(u32, Option<Instant>)>,
    /// Session id → whether its token is a fleet's.
    fleet: std::sync::Mutex<HashMap<String, bool>>,
    /// Session id → the phases its car was counted (or last seen) on.
    phases: std::sync::Mutex<HashMap<String, u8>>,
    /// The last recomputation counted some EV's need by its departure.
    needs: AtomicBool,
    /// The share of each `TxProfile` the stations hold, by (station,
    /// EVSE), W.
    tx_shares: std::sync::Mutex<HashMap<(String, u32), Decimal>>,
    /// (station, EVSE) whose `TxProfile` is to be sent again (K16).
    resend: std::sync::Mutex<HashSet<(String, u32)>>,
}

/// The phases a message's samples show a car drawing on
/// ([`limits::phases_in_use`] of its per-line `Current.Import` in A;
/// samples as [`crate::sessions::TxMessage::samples`] gives them).
pub fn phases_in_samples(samples: &[(String, String, String, Option<String>)]) -> Option<u8> {
    limits::phases_in_use(samples.iter().filter_map(|(_, measurand, value, unit)| {
        if !matches!(unit.as_deref(), None | Some("A")) {
            return None;
        }
        let line = limits::Line::from_phase(measurand.strip_prefix("Current.Import.")?)?;
        Some((line, value.trim().parse().ok()?))
    }))
}

/// Smart charging: what [`SiteShares::rebalance`] needs, given when the
/// CSMS starts.
#[derive(Debug, Clone)]
pub struct SiteShares {
    /// Where the sessions are read and the power recorded.
    pub store: Store,
    /// Where the profiles are sent.
    pub gateway: StationGateway,
    /// Where what was sent is published.
    pub events: broadcast::Sender<LiveEvent>,
    /// The limits in force.
    pub limits: LimitCell,
    shared: Arc<Shared>,
}

/// One station's work in a recomputation.
struct Work {
    station: String,
    version: ProtocolVersion,
    set: Vec<InstalledProfile>,
    clear: Vec<i32>,
    /// What it holds before, in the CSMS's view.
    held: Vec<InstalledProfile>,
    /// EVSEs to check: (EVSE, transaction).
    check: Vec<(u32, Option<TxRef>)>,
    /// Session of each TxProfile id.
    sessions: HashMap<i32, String>,
}

/// How one station's work went.
struct Done {
    station: String,
    /// What it holds now in the CSMS's view.
    holds: Vec<InstalledProfile>,
    /// A call was refused or not answered.
    missed: bool,
    /// EVSEs whose check got no answer.
    unchecked: Vec<u32>,
    sent: Vec<SentProfile>,
    mismatches: Vec<CompositeMismatch>,
    checked: usize,
}

/// The same profile in effect: id, place, purpose, transaction, limit and
/// phases (an `Absolute` start moved to the time of sending is no change).
fn same(a: &InstalledProfile, b: &InstalledProfile) -> bool {
    let limit = |p: &InstalledProfile| {
        p.profile
            .schedules
            .first()
            .and_then(|s| s.periods.first())
            .map(|q| (q.limit, q.number_phases))
    };
    a.evse_id == b.evse_id
        && a.profile.id == b.profile.id
        && a.profile.purpose == b.profile.purpose
        && a.profile.transaction_id == b.profile.transaction_id
        && limit(a) == limit(b)
}

impl SiteShares {
    /// Smart charging over `store` and `gateway`, starting with `limits`
    /// (the configuration's; [`SiteShares::load`] reads the stored ones).
    pub fn new(
        store: Store,
        gateway: StationGateway,
        events: broadcast::Sender<LiveEvent>,
        limits: Option<SiteLimits>,
    ) -> SiteShares {
        SiteShares {
            store,
            gateway,
            events,
            limits: LimitCell::new(limits),
            shared: Arc::default(),
        }
    }

    /// Takes the limits the operator last set, if any (they win over the
    /// configuration's initial value).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn load(&self) -> crate::store::Result<()> {
        if let Some(text) = self.store.setting(LIMITS_KEY).await? {
            match serde_json::from_str::<SiteLimits>(&text) {
                Ok(l) if l.check().is_ok() => self.limits.set(l),
                _ => tracing::warn!("smart charging: stored site limits unreadable: {text}"),
            }
        }
        Ok(())
    }

    /// Sets and stores new limits, and recomputes at once.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn set_limits(&self, limits: SiteLimits) -> crate::store::Result<()> {
        let text = serde_json::to_string(&limits).unwrap_or_default();
        self.store.put_setting(LIMITS_KEY, &text).await?;
        self.limits.set(limits);
        self.rebalance();
        Ok(())
    }

    /// Recomputes the shares and sends them, in the background (folded
    /// into a queued recomputation if there is one).
    pub fn rebalance(&self) {
        if self.limits.get().is_none() || self.shared.queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut installed = me.shared.run.lock().await;
            me.shared.queued.store(false, Ordering::SeqCst);
            me.recompute(&mut installed).await;
        });
    }

    /// A session's meter values came in: recomputes when they show its car
    /// on other phases than the last recomputation counted (a 1.6 car's
    /// phases are known only from its meter, and the first recomputation
    /// of a session runs before its first reading).
    pub fn samples_seen(
        &self,
        session: &str,
        samples: &[(String, String, String, Option<String>)],
    ) {
        if self.limits.get().is_none() {
            return;
        }
        let Some(phases) = phases_in_samples(samples) else {
            return;
        };
        let changed = self
            .shared
            .phases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session.to_owned(), phases)
            != Some(phases);
        if changed {
            self.rebalance();
        }
    }

    /// Whether the CSMS offers an EV a charging schedule (K15/K17: smart
    /// charging is on, so every transaction gets a `TxProfile`).
    pub fn offers_schedules(&self) -> bool {
        self.limits.get().is_some()
    }

    /// Sends the `TxProfile` of `station`'s EVSE `evse` again, computed
    /// afresh (K15/K17 after an EV's needs, K16 after a schedule outside
    /// it).
    pub fn renegotiate(&self, station: &str, evse: u32) {
        self.shared
            .resend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((station.to_owned(), evse));
        self.rebalance();
    }

    /// Whether an EV's charging schedule on `station`'s EVSE `evse` stays
    /// within the `TxProfile` the CSMS installed there (K15.FR.10/12,
    /// K16): each period as (limit, in W (else A), phases), A counted at
    /// 230 V on its phases, 0.1 A of rounding allowed. `None` when the CSMS
    /// installed no `TxProfile` there (nothing to hold it to).
    pub fn ev_schedule_within(
        &self,
        station: &str,
        evse: u32,
        periods: &[(Decimal, bool, u8)],
    ) -> Option<bool> {
        let share = *self
            .shared
            .tx_shares
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(station.to_owned(), evse))?;
        let volts = Decimal::from(230);
        Some(periods.iter().all(|(limit, in_watts, phases)| {
            if *in_watts {
                *limit <= share + COMPOSITE_TOLERANCE_W
            } else {
                let n = Decimal::from((*phases).clamp(1, 3));
                *limit <= share / (volts * n) + Decimal::new(1, 1)
            }
        }))
    }

    /// The retry timer and the power samples: runs for the CSMS's life.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(StdDuration::from_secs(1));
        let mut last_sample = Instant::now();
        let mut last_needs = Instant::now();
        loop {
            tick.tick().await;
            let due = {
                let mut r = self.shared.retry.lock().unwrap_or_else(|e| e.into_inner());
                // taken: the recomputation sets the next one if it misses again
                r.1.take_if(|at| *at <= Instant::now()).is_some()
            };
            if due {
                self.rebalance();
            }
            // what each EV needs by its departure moves with time and energy
            if last_needs.elapsed() >= NEEDS_EVERY {
                last_needs = Instant::now();
                if self.shared.needs.load(Ordering::SeqCst) {
                    self.rebalance();
                }
            }
            if last_sample.elapsed() >= SAMPLE_EVERY {
                last_sample = Instant::now();
                if let Some(l) = self.limits.get() {
                    let planned = self.shared.run.lock().await.planned_w;
                    self.sample(l, planned).await;
                }
            }
        }
    }

    async fn sample(&self, l: SiteLimits, planned_w: Decimal) {
        let delivered = match self.store.delivered_power().await {
            Ok((d, _)) => d,
            Err(e) => {
                tracing::warn!("smart charging: delivered power not read: {e}");
                return;
            }
        };
        if let Err(e) = self
            .store
            .record_site_power(Utc::now(), i64::from(l.limit_w), planned_w, delivered)
            .await
        {
            tracing::warn!("smart charging: site power not recorded: {e}");
        }
    }

    async fn is_fleets(&self, session: &crate::store::Session) -> bool {
        if let Some(f) = self
            .shared
            .fleet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&session.id)
        {
            return *f;
        }
        let Some(token) = &session.id_token else {
            return false;
        };
        match self.store.token_is_fleets(token).await {
            Ok(f) => {
                self.shared
                    .fleet
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(session.id.clone(), f);
                f
            }
            Err(e) => {
                tracing::warn!("smart charging: fleet of {token} not read: {e}");
                false
            }
        }
    }

    async fn recompute(&self, installed: &mut Installed) {
        let Some(lim) = self.limits.get() else {
            return;
        };
        let began = Instant::now();
        // a TxProfile to send again is one the station is taken not to hold
        let resend =
            std::mem::take(&mut *self.shared.resend.lock().unwrap_or_else(|e| e.into_inner()));
        for (station, evse) in resend {
            if let Some(held) = installed.stations.get_mut(&station) {
                held.retain(|p| !(p.evse_id == evse && p.profile.purpose == Purpose::Tx));
            }
        }
        let sessions = match self.store.sessions(None, 10_000).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("smart charging: {e}");
                self.missed();
                return;
            }
        };
        let active: Vec<_> = sessions
            .into_iter()
            .filter(|s| s.status == crate::store::SessionStatus::Active)
            .collect();
        let v2x: HashSet<String> = match self.store.v2x_active().await {
            Ok(v) => v.into_iter().map(|s| s.session_id).collect(),
            Err(_) => HashSet::new(),
        };
        let now = Utc::now();
        let connected = self.gateway.connected().await;
        let mut versions = HashMap::new();
        for st in connected.iter().chain(active.iter().map(|s| &s.station_id)) {
            if versions.contains_key(st) {
                continue;
            }
            if let Some(v) = self.gateway.version(st).await {
                versions.insert(st.clone(), v);
            }
        }
        let mut inputs = Vec::with_capacity(active.len());
        let mut started = HashMap::new();
        // forget the sessions that ended
        let ids: HashSet<&str> = active.iter().map(|s| s.id.as_str()).collect();
        self.shared
            .fleet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| ids.contains(k.as_str()));
        let mut externals: HashMap<(String, u32), Option<Decimal>> = HashMap::new();
        let measured = self.measured_phases().await;
        let requests = self.ev_requests(&versions).await;
        let site = lim.site();
        for s in &active {
            let Some(version) = versions.get(&s.station_id).copied() else {
                continue;
            };
            let evse = u32::try_from(s.evse_id.or(s.connector_id).unwrap_or(1).max(1)).unwrap_or(1);
            let at = s.started_at.unwrap_or(now);
            let key = (s.station_id.clone(), evse);
            let external = match externals.get(&key) {
                Some(e) => *e,
                None => {
                    let e = self
                        .external_limit_w(&s.station_id, version, evse, now)
                        .await;
                    externals.insert(key, e);
                    e
                }
            };
            let priority = if self.is_fleets(s).await {
                FLEET_PRIORITY
            } else {
                0
            };
            // a V2X session keeps the profile the V2X side sends it
            let tx = (!v2x.contains(&s.id)).then(|| s.ocpp_tx_id.clone());
            started.insert(s.id.clone(), (s.station_id.clone(), at));
            // the EV's request, if it sent one for this session
            let request = requests
                .get(&(s.station_id.clone(), evse))
                .filter(|(sent, _)| *sent >= at - NEEDS_CLOCK_SLACK)
                .map(|(_, r)| *r);
            let phases = limits::session_phases(
                measured.get(&s.id).copied(),
                request.and_then(|r| r.phases),
            );
            inputs.push(limits::Session {
                external_limit_w: external,
                transaction_id: tx,
                priority,
                ev_max_w: request.and_then(|r| r.max_w(site.voltage_v, phases)),
                // what it still needs by its departure (rule 12 of the core)
                required_w: request.and_then(|r| {
                    limits::required_w(r.energy_wh? - s.energy_wh, now, r.departure?)
                }),
                ..limits::Session::new(s.id.clone(), evse, phases, lim.session_max_w(), at)
            });
        }
        *self.shared.phases.lock().unwrap_or_else(|e| e.into_inner()) =
            inputs.iter().map(|i| (i.id.clone(), i.phases)).collect();
        self.shared.needs.store(
            inputs.iter().any(|i| i.required_w.is_some()),
            Ordering::SeqCst,
        );
        let shares = match limits::allocate(&site, &inputs) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("smart charging: {e}");
                return;
            }
        };
        let evse_counts = self.store.evse_counts().await.unwrap_or_default();
        let evses: u32 = versions
            .keys()
            .map(|st| evse_counts.get(st).copied().unwrap_or(1).max(1))
            .sum();
        // stepped: stations connecting one by one do not change every
        // station's default each time
        let default_w = site.stepped_default_share(evses);
        let planned_w: Decimal = shares.iter().map(|a| a.watts).sum();
        installed.planned_w = planned_w;
        // what each station should hold
        let mut by_station: HashMap<&str, Vec<&limits::Allocation>> = HashMap::new();
        for a in &shares {
            if let Some((st, _)) = started.get(&a.session_id) {
                by_station.entry(st.as_str()).or_default().push(a);
            }
        }
        installed.stations.retain(|st, _| versions.contains_key(st));
        let mut work = Vec::new();
        for (station, version) in &versions {
            let allocs = by_station
                .get(station.as_str())
                .cloned()
                .unwrap_or_default();
            let target = limits::station_profiles(&allocs, default_w, now);
            let held = installed.stations.get(station).cloned().unwrap_or_default();
            let set: Vec<InstalledProfile> = target
                .iter()
                .filter(|p| !held.iter().any(|h| same(h, p)))
                .cloned()
                .collect();
            let clear: Vec<i32> = held
                .iter()
                .map(|h| h.profile.id)
                .filter(|id| !target.iter().any(|p| p.profile.id == *id))
                .collect();
            let station_wide = set.iter().any(|p| p.evse_id == 0);
            let mut check_evses: BTreeSet<u32> = set
                .iter()
                .filter(|p| p.evse_id != 0)
                .map(|p| p.evse_id)
                .collect();
            if station_wide || !clear.is_empty() {
                check_evses.extend(allocs.iter().map(|a| a.evse_id));
            }
            check_evses.extend(
                installed
                    .unchecked
                    .iter()
                    .filter(|(st, _)| st == station)
                    .map(|(_, e)| *e),
            );
            let check = check_evses
                .into_iter()
                .map(|evse| {
                    let tx = allocs.iter().find(|a| a.evse_id == evse).and_then(|a| {
                        let id = a.transaction_id.clone()?;
                        let (_, at) = started.get(&a.session_id)?;
                        Some(TxRef {
                            id,
                            started_at: *at,
                        })
                    });
                    (evse, tx)
                })
                // a V2X EVSE's composite is the V2X side's
                .filter(|(evse, tx)| tx.is_some() || !allocs.iter().any(|a| a.evse_id == *evse))
                .collect::<Vec<_>>();
            if set.is_empty() && clear.is_empty() && check.is_empty() {
                continue;
            }
            let sessions = allocs
                .iter()
                .filter_map(|a| {
                    let evse = i32::try_from(a.evse_id).ok()?;
                    Some((limits::TX_PROFILE_BASE + evse, a.session_id.clone()))
                })
                .collect();
            work.push(Work {
                station: station.clone(),
                version: *version,
                set,
                clear,
                held,
                check,
                sessions,
            });
        }
        let plan_ms = began.elapsed().as_millis();
        let stations = work.len();
        let done: Vec<Done> = futures_util::stream::iter(work)
            .map(|w| self.push(w))
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect()
            .await;
        let mut missed = false;
        let mut sent = Vec::new();
        let mut checked = 0;
        let mut mismatched = 0;
        for d in done {
            missed |= d.missed || !d.unchecked.is_empty();
            installed.unchecked.retain(|(st, _)| *st != d.station);
            installed
                .unchecked
                .extend(d.unchecked.iter().map(|e| (d.station.clone(), *e)));
            installed.stations.insert(d.station.clone(), d.holds);
            sent.extend(d.sent);
            checked += d.checked;
            mismatched += d.mismatches.len();
            for m in &d.mismatches {
                let detail = serde_json::to_value(m).unwrap_or_default();
                if let Err(e) = self
                    .store
                    .raise_alert(Some(&d.station), "composite_schedule", &detail)
                    .await
                {
                    tracing::warn!("smart charging: alert not stored: {e}");
                }
                let _ = self
                    .events
                    .send(LiveEvent::alert(&d.station, "composite_schedule", m));
            }
            if d.mismatches.is_empty() && d.checked > 0 {
                let _ = self
                    .store
                    .clear_alerts(&d.station, "composite_schedule")
                    .await;
            }
        }
        *self
            .shared
            .tx_shares
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = installed
            .stations
            .iter()
            .flat_map(|(st, held)| {
                held.iter()
                    .filter(|p| p.profile.purpose == Purpose::Tx)
                    .filter_map(|p| {
                        let limit = p.profile.schedules.first()?.periods.first()?.limit;
                        Some(((st.clone(), p.evse_id), limit))
                    })
            })
            .collect();
        if missed {
            self.missed();
        } else {
            *self.shared.retry.lock().unwrap_or_else(|e| e.into_inner()) = (0, None);
        }
        let total_ms = began.elapsed().as_millis();
        tracing::info!(
            stations,
            sessions = shares.len(),
            plan_ms,
            total_ms,
            checked,
            mismatched,
            missed,
            "smart: pushed"
        );
        self.sample(lim, planned_w).await;
        let even = lim.limit_w / u32::try_from(shares.len()).unwrap_or(u32::MAX).max(1);
        let _ = self.events.send(LiveEvent::SmartCharging {
            site_limit_w: lim.limit_w,
            active_sessions: shares.len(),
            share_w: even,
            sent,
        });
    }

    /// A station was missed: retry with backoff.
    fn missed(&self) {
        let mut r = self.shared.retry.lock().unwrap_or_else(|e| e.into_inner());
        r.0 = r.0.saturating_add(1);
        r.1 = Some(Instant::now() + retry_delay(r.0));
    }

    /// Sends one station its changes, then checks its composite schedules.
    async fn push(&self, w: Work) -> Done {
        let mut holds = w.held;
        let mut missed = false;
        let mut sent = Vec::new();
        for p in &w.set {
            let answer = set_profile(&self.gateway, &w.station, w.version, p).await;
            let ok = matches!(answer, Ok("Accepted"));
            missed |= !ok;
            if ok {
                holds.retain(|h| h.profile.id != p.profile.id);
                holds.push(p.clone());
            }
            if let (Purpose::Tx, Some(session)) = (p.profile.purpose, w.sessions.get(&p.profile.id))
            {
                let limit = p
                    .profile
                    .schedules
                    .first()
                    .and_then(|s| s.periods.first())
                    .map_or(Decimal::ZERO, |q| q.limit);
                let status = match &answer {
                    Ok(status) => (*status).to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::info!(station = %w.station, session = %session, limit_w = %limit, status = %status, "smart: share");
                sent.push(SentProfile {
                    station: w.station.clone(),
                    session: session.clone(),
                    limit_w: limit.floor().to_u32().unwrap_or(u32::MAX),
                    status,
                });
            }
        }
        for id in &w.clear {
            match clear_profile(&self.gateway, &w.station, w.version, *id).await {
                // Unknown: the station dropped it already (a TxProfile at its transaction's end)
                Ok(_) => holds.retain(|h| h.profile.id != *id),
                Err(e) => {
                    tracing::info!(station = %w.station, id, "smart charging: not cleared: {e}");
                    missed = true;
                }
            }
        }
        let mut unchecked = Vec::new();
        let mut mismatches = Vec::new();
        let mut checked = 0;
        for (evse, tx) in &w.check {
            let reported = match composite_w(&self.gateway, &w.station, w.version, *evse).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(station = %w.station, evse, "smart charging: no composite schedule: {e}");
                    unchecked.push(*evse);
                    continue;
                }
            };
            checked += 1;
            let req = CompositeRequest {
                transaction: tx.clone(),
                ..CompositeRequest::new(*evse, Utc::now(), COMPOSITE_WINDOW_S, RateUnit::W)
            };
            let expected = limits::composite_schedule(&holds, &req)
                .ok()
                .and_then(|c| c.limit_at(0));
            let differs = match (expected, reported) {
                (Some(e), Some(r)) => (e - r).abs() > COMPOSITE_TOLERANCE_W,
                (None, None) => false,
                _ => true,
            };
            if differs {
                mismatches.push(CompositeMismatch {
                    evse: *evse,
                    expected_w: expected,
                    reported_w: reported,
                });
            }
        }
        Done {
            station: w.station,
            holds,
            missed,
            unchecked,
            sent,
            mismatches,
            checked,
        }
    }

    /// The external limit in force on `station`'s EVSE `evse` at `now`, W:
    /// the lowest of the NotifyChargingLimit reports no ClearedChargingLimit
    /// followed, for that EVSE or the whole station (K11–K14).
    /// The phases each active session's car was last seen drawing on
    /// (its latest per-line `Current.Import`), by session.
    async fn measured_phases(&self) -> HashMap<String, u8> {
        let currents = match self.store.line_currents().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("smart charging: line currents not read: {e}");
                return HashMap::new();
            }
        };
        let mut by_session: HashMap<String, Vec<(limits::Line, Decimal)>> = HashMap::new();
        for (session, line, a) in currents {
            if let Some(l) = limits::Line::from_phase(&line) {
                by_session.entry(session).or_default().push((l, a));
            }
        }
        by_session
            .into_iter()
            .filter_map(|(s, c)| Some((s, limits::phases_in_use(c)?)))
            .collect()
    }

    /// The latest request (2.x `NotifyEVChargingNeeds`) of each EVSE with
    /// an active session, with when it came: by (station, EVSE).
    async fn ev_requests(
        &self,
        versions: &HashMap<String, ProtocolVersion>,
    ) -> HashMap<(String, u32), (DateTime<Utc>, limits::EvRequest)> {
        let reports = match self
            .store
            .latest_reports_of_active_stations(crate::ocpp::ReportKind::EvChargingNeeds.as_str())
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("smart charging: EV charging needs not read: {e}");
                return HashMap::new();
            }
        };
        let mut out = HashMap::new();
        for (station, r) in reports {
            let (Some(evse), Ok(sent)) = (
                crate::ocpp::evse_of_key(&r.key),
                DateTime::parse_from_rfc3339(&r.received_at),
            ) else {
                continue;
            };
            let request = match versions.get(&station) {
                Some(ProtocolVersion::V201) => {
                    serde_json::from_value::<v201::NotifyEVChargingNeedsRequest>(r.body)
                        .ok()
                        .map(|m| limits::EvRequest::from(&m))
                }
                Some(ProtocolVersion::V21) => {
                    serde_json::from_value::<v21::NotifyEVChargingNeedsRequest>(r.body)
                        .ok()
                        .map(|m| limits::EvRequest::from(&m))
                }
                _ => None,
            };
            if let Some(request) = request {
                out.insert((station, evse), (sent.with_timezone(&Utc), request));
            }
        }
        out
    }

    async fn external_limit_w(
        &self,
        station: &str,
        version: ProtocolVersion,
        evse: u32,
        now: DateTime<Utc>,
    ) -> Option<Decimal> {
        if version == ProtocolVersion::V16 {
            return None;
        }
        let reports = match crate::ocpp::charging_limits(&self.store, station).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(station, "smart charging: external limits not read: {e}");
                return None;
            }
        };
        reports
            .iter()
            .filter_map(|r| match version {
                ProtocolVersion::V201 => external_201(&r.body, evse, now),
                ProtocolVersion::V21 => external_21(&r.body, evse, now),
                _ => None,
            })
            .min()
    }
}

/// The limit in W a stored NotifyChargingLimit puts on EVSE `evse` at
/// `now`: its schedule read as a `ChargingStationExternalConstraints`
/// profile by the core's composite rules (`None`: not on that EVSE, no
/// schedule, or no limit now).
macro_rules! external_2x {
    ($name:ident, $ver:ident, [$($extra:ident),*]) => {
        fn $name(body: &serde_json::Value, evse: u32, now: DateTime<Utc>) -> Option<Decimal> {
            let req: $ver::NotifyChargingLimitRequest = serde_json::from_value(body.clone()).ok()?;
            let on = req.evse_id.unwrap_or(0);
            if on != 0 && u32::try_from(on).ok()? != evse {
                return None;
            }
            let schedule = req.charging_schedule?;
            let kind = if schedule.first()?.start_schedule.is_some() {
                $ver::ChargingProfileKindEnumType::Absolute
            } else {
                $ver::ChargingProfileKindEnumType::Relative
            };
            let profile = $ver::SetChargingProfileRequest {
                evse_id: on,
                charging_profile: $ver::ChargingProfileType {
                    id: 0,
                    stack_level: 0,
                    charging_profile_purpose:
                        $ver::ChargingProfilePurposeEnumType::ChargingStationExternalConstraints,
                    charging_profile_kind: kind,
                    recurrency_kind: None,
                    valid_from: None,
                    valid_to: None,
                    transaction_id: None,
                    charging_schedule: schedule,
                    custom_data: None,
                    $($extra: None,)*
                },
                custom_data: None,
            };
            let installed = InstalledProfile::try_from(&profile).ok()?;
            limits::composite_schedule(&[installed], &CompositeRequest::new(evse, now, 1, RateUnit::W))
                .ok()?
                .limit_at(0)
        }
    };
}
external_2x!(external_201, v201, []);
external_2x!(
    external_21,
    v21,
    [
        max_offline_duration,
        invalid_after_offline_duration,
        dyn_update_interval,
        dyn_update_time,
        price_schedule_signature
    ]
);

/// Sends `station` (connected with `version`) the profile `p`; its answer's
/// status.
///
/// # Errors
///
/// The call failed (see [`StationGateway::call`]), or the profile does not
/// fit the version.
pub async fn set_profile(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    p: &InstalledProfile,
) -> Result<&'static str, StationCallError> {
    let unfit = |e: limits::Error| StationCallError::rejected(station, e);
    Ok(match version {
        ProtocolVersion::V16 => gateway
            .call::<v16::action::SetChargingProfile>(station, p.to_v16().map_err(unfit)?)
            .await?
            .status
            .as_str(),
        ProtocolVersion::V201 => gateway
            .call::<v201::action::SetChargingProfile>(station, p.to_v201().map_err(unfit)?)
            .await?
            .status
            .as_str(),
        _ => {
            let r = p.to_v201().map_err(unfit)?;
            let request = v21::SetChargingProfileRequest {
                evse_id: r.evse_id,
                charging_profile: v21_of(&r.charging_profile)
                    .map_err(|e| StationCallError::rejected(station, e))?,
                custom_data: None,
            };
            gateway
                .call::<v21::action::SetChargingProfile>(station, request)
                .await?
                .status
                .as_str()
        }
    })
}

/// A 2.x `ClearChargingProfile` of profile `$id`: its answer's status.
macro_rules! clear_2x {
    ($ver:ident, $gateway:expr, $station:expr, $id:expr) => {{
        let request = $ver::ClearChargingProfileRequest {
            custom_data: None,
            charging_profile_id: Some($id),
            charging_profile_criteria: None,
        };
        $gateway
            .call::<$ver::action::ClearChargingProfile>($station, request)
            .await?
            .status
            .as_str()
    }};
}

/// A 2.x `GetCompositeSchedule` in W for an EVSE: the first period's
/// limit, with `Some(phases)` when the station answered in A (returns
/// early with `Ok(None)` without schedule or limit, `Err` when refused).
macro_rules! composite_2x {
    ($ver:ident, $gateway:expr, $station:expr, $evse:expr, $duration:expr, $refused:expr) => {{
        let request = $ver::GetCompositeScheduleRequest {
            custom_data: None,
            duration: $duration,
            charging_rate_unit: Some($ver::ChargingRateUnitEnumType::W),
            evse_id: $evse,
        };
        let r = $gateway
            .call::<$ver::action::GetCompositeSchedule>($station, request)
            .await?;
        if r.status != $ver::GenericStatusEnumType::Accepted {
            return Err($refused(r.status.as_str()));
        }
        let Some(s) = r.schedule else {
            return Ok(None);
        };
        let in_watts = s.charging_rate_unit == $ver::ChargingRateUnitEnumType::W;
        s.charging_schedule_period.first().and_then(|p| {
            let limit: Option<Decimal> = p.limit.into();
            Some((limit?, (!in_watts).then(|| p.number_phases.unwrap_or(3))))
        })
    }};
}

/// Clears profile `id` on `station`; its answer's status.
async fn clear_profile(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    id: i32,
) -> Result<&'static str, StationCallError> {
    Ok(match version {
        ProtocolVersion::V16 => {
            let request = v16::ClearChargingProfileRequest {
                id: Some(id),
                connector_id: None,
                charging_profile_purpose: None,
                stack_level: None,
            };
            gateway
                .call::<v16::action::ClearChargingProfile>(station, request)
                .await?
                .status
                .as_str()
        }
        ProtocolVersion::V201 => clear_2x!(v201, gateway, station, id),
        _ => clear_2x!(v21, gateway, station, id),
    })
}

/// The limit at the start of `station`'s composite schedule for `evse`, W
/// (`None`: no limit).
///
/// # Errors
///
/// The call failed, or the station refused (then as
/// [`StationCallError::Rejected`]).
async fn composite_w(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    evse: u32,
) -> Result<Option<Decimal>, StationCallError> {
    let evse_id = i32::try_from(evse).unwrap_or(i32::MAX);
    let duration = i32::try_from(COMPOSITE_WINDOW_S).unwrap_or(i32::MAX);
    let refused = |status: &str| {
        StationCallError::rejected(station, format!("GetCompositeSchedule {status}"))
    };
    match version {
        ProtocolVersion::V16 => {
            let request = v16::GetCompositeScheduleRequest {
                connector_id: evse_id,
                duration,
                charging_rate_unit: Some(v16::ChargingRateUnitType::W),
            };
            let r = gateway
                .call::<v16::action::GetCompositeSchedule>(station, request)
                .await?;
            if r.status != v16::GetCompositeScheduleStatus::Accepted {
                return Err(refused(r.status.as_str()));
            }
            let Some(s) = r.charging_schedule else {
                return Ok(None);
            };
            let first = s.charging_schedule_period.first().map(|p| p.limit);
            if s.charging_rate_unit == v16::ChargingRateUnitType::W {
                return Ok(first);
            }
            let n = s
                .charging_schedule_period
                .first()
                .and_then(|p| p.number_phases)
                .unwrap_or(3);
            Ok(first.map(|a| a * Decimal::from(230) * Decimal::from(n)))
        }
        ProtocolVersion::V201 => {
            Ok(composite_2x!(v201, gateway, station, evse_id, duration, refused).map(in_watts))
        }
        _ => Ok(composite_2x!(v21, gateway, station, evse_id, duration, refused).map(in_watts)),
    }
}

/// A composite limit in W: as it is, or A × 230 V × phases when the
/// station answered in A (`Some(phases)`).
fn in_watts((limit, phases): (Decimal, Option<i32>)) -> Decimal {
    match phases {
        None => limit,
        Some(n) => limit * Decimal::from(230) * Decimal::from(n),
    }
}

/// Sends `station` (connected with `version`) a `TxDefaultProfile` limiting
/// `evse` (1.6: connector) to `limit_w` (the OpenADR path's shares); its
/// answer's status.
///
/// # Errors
///
/// The call failed (see [`StationGateway::call`]).
pub async fn set_share(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    evse: i32,
    limit_w: Decimal,
) -> Result<&'static str, StationCallError> {
    let p = InstalledProfile {
        evse_id: u32::try_from(evse).unwrap_or(0),
        profile: limits::ChargingProfile {
            id: PROFILE_ID,
            stack_level: limits::SHARE_STACK_LEVEL,
            purpose: Purpose::TxDefault,
            kind: limits::Kind::Relative,
            valid_from: None,
            valid_to: None,
            transaction_id: None,
            schedules: vec![limits::Schedule {
                id: Some(PROFILE_ID),
                start: None,
                duration_s: None,
                unit: RateUnit::W,
                periods: vec![limits::Period {
                    start_s: 0,
                    limit: limit_w,
                    number_phases: None,
                    phase_to_use: None,
                }],
                min_charging_rate: None,
            }],
        },
    };
    set_profile(gateway, station, version, &p).await
}

/// A 2.0.1 enumeration's value in 2.1 (the same wire names).
fn in_v21<T: std::str::FromStr>(wire: &str) -> Result<T, String> {
    wire.parse()
        .map_err(|_| format!("{wire} has no 2.1 equivalent"))
}

/// The 2.1 profile of a 2.0.1 one (2.1 adds optional fields, all left out).
///
/// # Errors
///
/// A value 2.1 does not have.
fn v21_of(p: &v201::ChargingProfileType) -> Result<v21::ChargingProfileType, String> {
    let schedules = p
        .charging_schedule
        .iter()
        .map(|s| {
            Ok(v21::ChargingScheduleType {
                id: s.id,
                limit_at_soc: None,
                start_schedule: s.start_schedule,
                duration: s.duration,
                charging_rate_unit: in_v21(s.charging_rate_unit.as_str())?,
                min_charging_rate: s.min_charging_rate,
                power_tolerance: None,
                signature_id: None,
                digest_value: None,
                use_local_time: None,
                charging_schedule_period: s
                    .charging_schedule_period
                    .iter()
                    .map(|q| v21::ChargingSchedulePeriodType {
                        start_period: q.start_period,
                        limit: Some(q.limit),
                        limit_l2: None,
                        limit_l3: None,
                        number_phases: q.number_phases,
                        phase_to_use: q.phase_to_use,
                        discharge_limit: None,
                        discharge_limit_l2: None,
                        discharge_limit_l3: None,
                        setpoint: None,
                        setpoint_l2: None,
                        setpoint_l3: None,
                        setpoint_reactive: None,
                        setpoint_reactive_l2: None,
                        setpoint_reactive_l3: None,
                        preconditioning_request: None,
                        evse_sleep: None,
                        v2x_baseline: None,
                        operation_mode: None,
                        v2x_freq_watt_curve: None,
                        v2x_signal_watt_curve: None,
                        custom_data: None,
                    })
                    .collect(),
                randomized_delay: None,
                sales_tariff: None,
                absolute_price_schedule: None,
                price_level_schedule: None,
                custom_data: None,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(v21::ChargingProfileType {
        id: p.id,
        stack_level: p.stack_level,
        charging_profile_purpose: in_v21(p.charging_profile_purpose.as_str())?,
        charging_profile_kind: in_v21(p.charging_profile_kind.as_str())?,
        recurrency_kind: p.recurrency_kind.map(|r| in_v21(r.as_str())).transpose()?,
        valid_from: p.valid_from,
        valid_to: p.valid_to,
        transaction_id: p.transaction_id.clone(),
        max_offline_duration: None,
        charging_schedule: schedules,
        invalid_after_offline_duration: None,
        dyn_update_interval: None,
        dyn_update_time: None,
        price_schedule_signature: None,
        custom_data: None,
    })
}

// ---- the operator API: the site's limits and power ----

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<crate::App>> {
    Router::new()
        .route("/api/site/limits", get(get_limits).put(put_limits))
        .route("/api/site/power", get(get_power))
}

/// The limits in force (404 when smart charging is off).
async fn get_limits(State(app): State<Arc<crate::App>>) -> ApiResult {
    match app.site.limits.get() {
        Some(l) => Ok(Json(l).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no site limit set (site_limit_w, or PUT /api/site/limits)",
        )),
    }
}

/// Sets the limits: stored, then recomputed and pushed at once.
async fn put_limits(State(app): State<Arc<crate::App>>, bytes: Bytes) -> ApiResult {
    let limits: SiteLimits = serde_json::from_slice(&bytes).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("invalid site limits: {e}"))
    })?;
    limits.check().map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::to_value(e).unwrap_or_default(),
        )
    })?;
    app.site.set_limits(limits).await?;
    Ok(Json(limits).into_response())
}

/// `GET /api/site/power` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerQuery {
    /// The last this many minutes (default 60, at most a week).
    minutes: Option<u32>,
}

/// Planned and delivered power over the last minutes, oldest first.
async fn get_power(
    State(app): State<Arc<crate::App>>,
    ApiQuery(q): ApiQuery<PowerQuery>,
) -> ApiResult {
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=10_080).contains(&minutes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "minutes must be 1 to 10080",
        ));
    }
    let since = Utc::now() - Duration::minutes(i64::from(minutes));
    let items = app.store.site_power(since, 5_000).await?;
    let (delivered, _) = app.store.delivered_power().await?;
    Ok(Json(serde_json::json!({
        "limits": app.site.limits.get(),
        "delivered_w": delivered,
        "items": items,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let ok = SiteLimits {
            limit_w: 22_000,
            phase_limit_a: Some(32),
            evse_max_w: None,
        };
        assert!(ok.check().is_ok());
        let zero = SiteLimits { limit_w: 0, ..ok };
        assert_eq!(zero.check().unwrap_err().field, "limit_w");
        let no_amps = SiteLimits {
            phase_limit_a: Some(0),
            ..ok
        };
        assert_eq!(no_amps.check().unwrap_err().field, "phase_limit_a");
        let no_evse = SiteLimits {
            evse_max_w: Some(0),
            ..ok
        };
        assert_eq!(no_evse.check().unwrap_err().field, "evse_max_w");
        assert_eq!(ok.session_max_w(), Decimal::from(22_000));
        let site = ok.site();
        assert_eq!(site.limit_w, Decimal::from(22_000));
        assert_eq!(site.phase_limit_a, Some(Decimal::from(32)));
        assert_eq!(site.min_current_a, Decimal::ZERO);
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        assert_eq!(retry_delay(1), StdDuration::from_secs(1));
        assert_eq!(retry_delay(2), StdDuration::from_secs(2));
        assert_eq!(retry_delay(4), StdDuration::from_secs(8));
        assert_eq!(retry_delay(30), StdDuration::from_secs(60));
    }

    #[test]
    fn a_moved_absolute_start_is_no_change() {
        let t0 = Utc::now();
        let a = limits::Allocation {
            session_id: "S".into(),
            evse_id: 1,
            transaction_id: None,
            phases: 3,
            watts: Decimal::from(5_000),
            paused: false,
            held_back: true,
        };
        let before = limits::station_profiles(&[&a], Decimal::from(1_000), t0);
        let later =
            limits::station_profiles(&[&a], Decimal::from(1_000), t0 + Duration::seconds(5));
        assert!(before.iter().zip(&later).all(|(x, y)| same(x, y)));
        let more = limits::Allocation {
            watts: Decimal::from(6_000),
            ..a
        };
        let changed = limits::station_profiles(&[&more], Decimal::from(1_000), t0);
        assert!(!before.iter().zip(&changed).all(|(x, y)| same(x, y)));
    }

    #[test]
    fn v21_profiles_carry_the_2_0_1_fields() {
        let a = limits::Allocation {
            session_id: "S".into(),
            evse_id: 2,
            transaction_id: Some("TX-9".into()),
            phases: 3,
            watts: Decimal::from(7_400),
            paused: false,
            held_back: false,
        };
        let ps = limits::station_profiles(&[&a], Decimal::from(2_000), Utc::now());
        let tx = ps
            .iter()
            .find(|p| p.profile.purpose == Purpose::Tx)
            .unwrap();
        let p21 = v21_of(&tx.to_v201().unwrap().charging_profile).unwrap();
        assert_eq!(p21.id, limits::TX_PROFILE_BASE + 2);
        assert_eq!(
            p21.transaction_id.as_ref().map(|t| t.as_str()),
            Some("TX-9")
        );
        assert_eq!(
            p21.charging_profile_purpose,
            v21::ChargingProfilePurposeEnumType::TxProfile
        );
        assert_eq!(
            p21.charging_schedule[0].charging_schedule_period[0].limit,
            Some(Decimal::from(7_400))
        );
    }
}
