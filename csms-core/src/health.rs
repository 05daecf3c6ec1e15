//! Predictive maintenance: a health score per connector from what stations
//! already report, and an alert before a connector goes out of service.
//!
//! The model watches signals every station sends anyway: faults
//! (`StatusNotification` Faulted and its error code), failed session starts
//! (a start that was authorized but never began), sessions aborted by the
//! hardware (stop reasons such as `EmergencyStop`, `GroundFault`,
//! `PowerLoss`), unplanned reboots and connection losses of the station
//! ([`reboot`] tells a watchdog or power-loss reboot from a requested one),
//! temperature samples, and voltage samples (out of tolerance, or drifting
//! away from the fleet's). It keeps no history: every connector holds a few
//! numbers, updated in constant time per observation.
//!
//! # The method
//!
//! 1. **Exposure and the fleet baseline.** Each connector counts its
//!    sessions (its exposure) and its *adverse events* (faults, failed
//!    starts, aborts, power-quality events; a station's unplanned reboot
//!    counts [`HealthConfig::reboot_weight`] and a lost connection
//!    [`HealthConfig::connection_loss_weight`] for each of its connectors,
//!    so a station that reboots more often than the fleet's stations climbs
//!    like one whose connector faults more often). Counts decay exponentially with
//!    [`HealthConfig::half_life`], so old history fades. The fleet's
//!    baseline rate `λ0` is the sum of all adverse events over the sum of all
//!    sessions (decayed the same way, so the sums are kept in O(1)), never
//!    below [`HealthConfig::min_baseline`].
//! 2. **Change detection: a Poisson CUSUM per connector** (Page's
//!    cumulative sum, the textbook detector of a rate increase). With the
//!    shift to detect `λ1 = ρ·λ0` ([`HealthConfig::rate_ratio`]), the
//!    reference value is `k = λ0·(ρ − 1) / ln ρ`. Every adverse event adds
//!    its weight to the statistic `S`; every session started (one unit of
//!    exposure) takes `k` off, never below zero. A connector whose adverse
//!    events come at the fleet's rate drifts down to zero; one whose rate has
//!    risen climbs. `S ≥ h` ([`HealthConfig::cusum_h`]) is an alarm. An
//!    alarmed connector recovers when `S` falls back below `h / 2`.
//! 3. **Temperature against the fleet.** Each connector keeps an EWMA of its
//!    temperature samples (weight α, [`HealthConfig::temperature_alpha`]).
//!    Once it has [`HealthConfig::min_samples`] samples its EWMA joins the
//!    fleet's spread: the mean and standard deviation of the EWMAs of every
//!    such connector (sums kept in O(1)), the deviation never below
//!    [`HealthConfig::temperature_min_sd`]. A connector's z-score is its
//!    EWMA's distance from the mean of the *other* connectors in their
//!    standard deviations (leave one out: a connector that drifts away
//!    does not widen the spread it is judged by); above
//!    [`HealthConfig::temperature_z`] it is an alarm (a connector running
//!    hot, the usual forerunner of contact and cable failures). A connector
//!    that is always a little warmer (in the sun) sits inside the spread;
//!    one that heats up month after month leaves it. The spread needs five
//!    other connectors before it judges anyone.
//! 4. **Voltage: out of band and drifting.** A sample further than
//!    [`HealthConfig::voltage_tolerance`] from its nominal voltage is a
//!    power-quality event (step 1). Each connector also keeps an EWMA
//!    ([`HealthConfig::voltage_alpha`]) of its samples' relative deviation
//!    `(V − Vn) / Vn`, judged against the fleet's spread exactly as the
//!    temperature (step 3, floor [`HealthConfig::voltage_min_sd`]): a
//!    connector whose supply sags (a loose or corroded contact, a failing
//!    contactor) drifts out of the spread long before its samples leave the
//!    band; `|z|` above [`HealthConfig::voltage_z`] is an alarm.
//! 5. **The score** is `100 × (1 − r)`, `r` the largest of four risks in
//!    `[0, 1]`: `S / h`; the shrunk rate ratio
//!    `(adverse + 1) / (λ0·sessions + 1)` on a log scale where `ρ` is 1
//!    (Gamma-Poisson shrinkage: a connector with little exposure is not
//!    judged on one event); `z / temperature_z`; and `|z| / voltage_z` of
//!    the voltage. The score ranks connectors for a maintenance page; the
//!    [`State`] (and the alerts) come from the three detectors only, whose
//!    false-alarm rate `h` and the z-limits control.
//!
//! [`HealthModel::handle`] returns a [`Change`] when a connector enters or
//! leaves [`State::AtRisk`]: the application raises or clears its alert.
//! Time is passed in; nothing here reads a clock.
//!
//! # Example
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use evproto_csms_core::connector::ConnectorId;
//! use evproto_csms_core::health::{Change, HealthKey, HealthModel, Observation, State};
//!
//! let mut model = HealthModel::default();
//! let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
//! let fleet: Vec<HealthKey> = (0..20)
//!     .map(|i| HealthKey::new(format!("CS{i}"), ConnectorId::new(1, 1)))
//!     .collect();
//! // a month of ordinary use: 4 sessions a day, a fault now and then
//! for day in 0..30 {
//!     for (i, key) in fleet.iter().enumerate() {
//!         for s in 0..4 {
//!             let at = t0 + Duration::days(day) + Duration::hours(6 + 3 * s);
//!             model.handle(key, at, Observation::SessionStarted);
//!             model.handle(key, at, Observation::SessionEnded { aborted: false });
//!         }
//!         if (day as usize * 7 + i) % 41 == 0 {
//!             model.handle(key, t0 + Duration::days(day), Observation::Fault { error_code: None });
//!         }
//!     }
//! }
//! let worn = &fleet[3];
//! let at = t0 + Duration::days(30);
//! assert_eq!(model.health(worn, at).unwrap().state, State::Ok);
//! // then one connector starts failing every other session
//! let mut alarm = None;
//! for s in 0..20 {
//!     let at = at + Duration::hours(s);
//!     model.handle(worn, at, Observation::SessionStarted);
//!     if s % 2 == 0 {
//!         if let Some(c) = model.handle(worn, at, Observation::SessionEnded { aborted: true }) {
//!             alarm.get_or_insert((s, c));
//!         }
//!     }
//! }
//! let (after, change) = alarm.expect("the CUSUM catches it");
//! assert!(after < 10);
//! assert!(matches!(change, Change::AtRisk { .. }));
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::connector::ConnectorId;
use crate::transaction::StopReason;

/// Which connector of which station.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HealthKey {
    /// The station's identity.
    pub station: String,
    /// The connector (1.6: connector id as EVSE, connector 1).
    pub connector: ConnectorId,
}

impl HealthKey {
    /// A connector of a station.
    pub fn new(station: impl Into<String>, connector: ConnectorId) -> Self {
        HealthKey {
            station: station.into(),
            connector,
        }
    }
}

/// What a station reported about a connector.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A session began on it (one unit of exposure).
    SessionStarted,
    /// A session ended; `aborted` when the hardware ended it (see
    /// [`Observation::session_ended`]).
    SessionEnded {
        /// Ended by a fault rather than by the driver, the CSMS or the car.
        aborted: bool,
    },
    /// A start that was authorized did not begin: the connector reported
    /// Faulted while occupied (plugged in, authorized) with no transaction
    /// running. The application sends this instead of [`Observation::Fault`]
    /// for such a report.
    StartFailed,
    /// The connector reported Faulted.
    Fault {
        /// The station's error code (1.6 `errorCode`, 2.x from the
        /// notification or event that came with it), kept for the reasons.
        error_code: Option<String>,
    },
    /// A temperature sample of the connector (or its EVSE), °C.
    Temperature {
        /// Degrees Celsius.
        celsius: f64,
    },
    /// A voltage sample and the nominal voltage it should be near.
    Voltage {
        /// Measured, V.
        volts: f64,
        /// Nominal, V (e.g. 230).
        nominal: f64,
    },
}

impl Observation {
    /// A session's end, `aborted` when its stop reason says the hardware or
    /// the grid ended it (`EmergencyStop`, `GroundFault`,
    /// `OvercurrentFault`, `PowerLoss`, `PowerQuality`).
    pub fn session_ended(reason: Option<StopReason>) -> Observation {
        let aborted = matches!(
            reason,
            Some(
                StopReason::EmergencyStop
                    | StopReason::GroundFault
                    | StopReason::OvercurrentFault
                    | StopReason::PowerLoss
                    | StopReason::PowerQuality
            )
        );
        Observation::SessionEnded { aborted }
    }
}

/// What happened to a whole station (counted for each of its connectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationObservation {
    /// It booted again without being asked to (power-up, watchdog).
    UnplannedReboot,
    /// Its connection was lost.
    ConnectionLost,
}

/// Why a station says it booted (2.x `BootReasonEnumType`; 1.6 says
/// nothing, [`BootReason::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootReason {
    /// Its application restarted itself.
    ApplicationReset,
    /// A firmware update.
    FirmwareUpdate,
    /// Reset on site (a technician).
    LocalReset,
    /// Power came (back).
    PowerUp,
    /// The CSMS asked (`Reset`).
    RemoteReset,
    /// A reset it had planned.
    ScheduledReset,
    /// Not a reboot: asked for a BootNotification (`TriggerMessage`).
    Triggered,
    /// It does not say.
    Unknown,
    /// Its watchdog restarted it.
    Watchdog,
}

macro_rules! boot_reason_from {
    ($($ver:ident),*) => {$(
        impl From<evproto_ocpp_types::$ver::BootReasonEnumType> for BootReason {
            fn from(r: evproto_ocpp_types::$ver::BootReasonEnumType) -> Self {
                use evproto_ocpp_types::$ver::BootReasonEnumType as R;
                match r {
                    R::ApplicationReset => BootReason::ApplicationReset,
                    R::FirmwareUpdate => BootReason::FirmwareUpdate,
                    R::LocalReset => BootReason::LocalReset,
                    R::PowerUp => BootReason::PowerUp,
                    R::RemoteReset => BootReason::RemoteReset,
                    R::ScheduledReset => BootReason::ScheduledReset,
                    R::Triggered => BootReason::Triggered,
                    R::Watchdog => BootReason::Watchdog,
                    // a reason added later says no more than `Unknown`
                    _ => BootReason::Unknown,
                }
            }
        }
    )*};
}
boot_reason_from!(v201, v21);

/// Whether a BootNotification is an unplanned reboot, counted against the
/// station: not its first boot (`booted_before`: it booted before, as far
/// as the caller remembers), not one the CSMS asked for
/// (`reset_requested`: a `Reset` sent shortly before; 1.6 stations give no
/// reason, so this is all that tells a requested reboot there), not a
/// firmware update, a reset on site or a planned one, and not a boot
/// message that was only asked for (`Triggered`). Watchdog and application
/// restarts, power-ups (power was lost) and reboots without a reason are.
pub fn reboot(
    reason: BootReason,
    booted_before: bool,
    reset_requested: bool,
) -> Option<StationObservation> {
    let planned = matches!(
        reason,
        BootReason::FirmwareUpdate
            | BootReason::LocalReset
            | BootReason::RemoteReset
            | BootReason::ScheduledReset
            | BootReason::Triggered
    );
    (booted_before && !reset_requested && !planned).then_some(StationObservation::UnplannedReboot)
}

/// The signals a connector's health is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Signal {
    /// Faulted reports.
    Faults,
    /// Authorized starts that never began.
    StartFailures,
    /// Sessions the hardware ended.
    Aborts,
    /// Voltage out of tolerance.
    PowerQuality,
    /// Unplanned reboots of the station.
    Reboots,
    /// Connection losses of the station.
    ConnectionLosses,
    /// Running hot against the fleet.
    Temperature,
    /// Voltage drifting away from the fleet's (a sag, or a swell).
    VoltageDrift,
}

/// Tuning of the detectors (the defaults are documented in the module docs
/// and checked by the tests on seeded simulations).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Half-life of the decayed counts.
    pub half_life: Duration,
    /// ρ: the rise of the adverse-event rate the CUSUM is tuned to detect.
    pub rate_ratio: f64,
    /// h: the CUSUM's alarm threshold (in adverse events).
    pub cusum_h: f64,
    /// Floor of the fleet's adverse events per session.
    pub min_baseline: f64,
    /// Weight of an unplanned reboot in each of the station's connectors' counts.
    pub reboot_weight: f64,
    /// Weight of a lost connection in each of the station's connectors' counts.
    pub connection_loss_weight: f64,
    /// EWMA weight of a connector's temperature samples.
    pub temperature_alpha: f64,
    /// Temperature z-score of an alarm.
    pub temperature_z: f64,
    /// Samples before a connector's temperature counts.
    pub min_samples: u32,
    /// Floor of the fleet's temperature spread, °C.
    pub temperature_min_sd: f64,
    /// Relative voltage deviation counted as a power-quality event.
    pub voltage_tolerance: f64,
    /// EWMA weight of a connector's relative voltage deviation.
    pub voltage_alpha: f64,
    /// Voltage-drift |z-score| of an alarm.
    pub voltage_z: f64,
    /// Floor of the fleet's spread of relative voltage deviations.
    pub voltage_min_sd: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            half_life: Duration::days(14),
            rate_ratio: 3.0,
            cusum_h: 4.0,
            min_baseline: 0.01,
            reboot_weight: 1.0,
            connection_loss_weight: 0.5,
            temperature_alpha: 0.1,
            temperature_z: 4.0,
            min_samples: 20,
            temperature_min_sd: 1.0,
            voltage_tolerance: 0.1,
            voltage_alpha: 0.1,
            voltage_z: 4.0,
            voltage_min_sd: 0.005,
        }
    }
}

/// The verdict on a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Nothing unusual.
    Ok,
    /// Worse than the fleet, not yet alarming (score below 50).
    Watch,
    /// A detector raised an alarm: maintenance is due.
    AtRisk,
}

/// A connector's health now.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// 0 (certain trouble) to 100 (as good as the fleet or better).
    pub score: u8,
    /// The verdict.
    pub state: State,
    /// The CUSUM statistic S.
    pub cusum: f64,
    /// Adverse events per session against the fleet's (shrunk), 1 = as the fleet.
    pub rate_ratio: f64,
    /// Temperature z-score, once there are enough samples.
    pub temperature_z: Option<f64>,
    /// Voltage-drift z-score (negative: a sag), once there are enough samples.
    pub voltage_z: Option<f64>,
    /// Decayed counts per signal, largest first; the signals behind the score.
    pub reasons: Vec<(Signal, f64)>,
    /// Sessions (decayed).
    pub sessions: f64,
    /// The last error code reported with a fault.
    pub last_error_code: Option<String>,
}

/// A connector entered or left [`State::AtRisk`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Raise an alert.
    AtRisk {
        /// Which connector.
        key: HealthKey,
        /// The signal that tripped the detector.
        cause: Signal,
        /// Its health at that moment.
        health: Health,
    },
    /// Clear it.
    Recovered {
        /// Which connector.
        key: HealthKey,
    },
}

/// A count that halves every half-life.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Decayed {
    value: f64,
    at: Option<DateTime<Utc>>,
}

impl Decayed {
    fn at(&self, now: DateTime<Utc>, half_life: Duration) -> f64 {
        match self.at {
            None => 0.0,
            Some(t) => {
                let dt = (now - t).num_milliseconds().max(0) as f64;
                let hl = half_life.num_milliseconds().max(1) as f64;
                self.value * (-(dt / hl) * std::f64::consts::LN_2).exp()
            }
        }
    }

    fn add(&mut self, now: DateTime<Utc>, w: f64, half_life: Duration) {
        // events out of order are added at the later time (no growth backwards)
        let t = self.at.map_or(now, |t| t.max(now));
        self.value = self.at(t, half_life) + w;
        self.at = Some(t);
    }
}

/// A mean, exponentially weighted, and how many samples made it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Ewma {
    mean: f64,
    n: u32,
}

impl Ewma {
    fn add(&mut self, x: f64, alpha: f64) {
        self.mean = if self.n == 0 {
            x
        } else {
            self.mean + alpha * (x - self.mean)
        };
        self.n = self.n.saturating_add(1);
    }
}

/// Σ, Σ² and count of the EWMAs of the connectors with enough samples: the
/// fleet's spread of one quantity, kept in O(1).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Spread {
    sum: f64,
    sumsq: f64,
    n: u32,
}

impl Spread {
    fn add(&mut self, x: f64, sign: f64) {
        self.sum += sign * x;
        self.sumsq += sign * x * x;
        if sign > 0.0 {
            self.n += 1;
        } else {
            self.n = self.n.saturating_sub(1);
        }
    }

    /// A sample `x` into a connector's EWMA `e`, the spread kept in step.
    fn sample(&mut self, e: &mut Ewma, x: f64, alpha: f64, min_samples: u32) {
        if e.n >= min_samples {
            self.add(e.mean, -1.0);
        }
        e.add(x, alpha);
        if e.n >= min_samples {
            self.add(e.mean, 1.0);
        }
    }

    /// The z-score of `e` (in the spread once it has `min_samples`)
    /// against the spread of the *other* connectors (leave one out: a
    /// connector that drifts away does not widen the spread it is judged
    /// by), once five others make it.
    fn z(&self, e: &Ewma, min_samples: u32, min_sd: f64) -> Option<f64> {
        if e.n < min_samples || self.n < 6 {
            return None;
        }
        let n = f64::from(self.n - 1);
        let mean = (self.sum - e.mean) / n;
        let sumsq = self.sumsq - e.mean * e.mean;
        let sd = (sumsq / n - mean * mean).max(0.0).sqrt().max(min_sd);
        Some((e.mean - mean) / sd)
    }
}

#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct ConnectorState {
    sessions: Decayed,
    adverse: Decayed,
    by_signal: BTreeMap<Signal, Decayed>,
    cusum: f64,
    temperature: Ewma,
    /// Of the relative voltage deviation.
    voltage: Ewma,
    at_risk: bool,
    last_error_code: Option<String>,
}

/// The health of every connector of a fleet (see the module docs).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HealthModel {
    #[cfg_attr(feature = "serde", serde(skip))]
    config: HealthConfig,
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    connectors: BTreeMap<HealthKey, ConnectorState>,
    fleet_sessions: Decayed,
    fleet_adverse: Decayed,
    /// The spread of the temperature EWMAs.
    fleet_temperature: Spread,
    /// The spread of the relative voltage deviations' EWMAs.
    fleet_voltage: Spread,
}

/// A map whose keys are not strings, as a list of pairs (JSON objects
/// take string keys only).
#[cfg(feature = "serde")]
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl HealthModel {
    /// A model with its own tuning.
    pub fn new(config: HealthConfig) -> Self {
        HealthModel {
            config,
            ..HealthModel::default()
        }
    }

    /// The tuning in force.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// The same state under another tuning (a state kept with the `serde`
    /// feature is restored with the default tuning: the tuning is the
    /// application's, not part of the state).
    pub fn with_config(self, config: HealthConfig) -> Self {
        HealthModel { config, ..self }
    }

    /// The fleet's adverse events per session now (`λ0`).
    pub fn baseline(&self, now: DateTime<Utc>) -> f64 {
        let hl = self.config.half_life;
        let sessions = self.fleet_sessions.at(now, hl);
        let adverse = self.fleet_adverse.at(now, hl);
        if sessions <= 0.0 {
            return self.config.min_baseline;
        }
        (adverse / sessions).max(self.config.min_baseline)
    }

    /// Declares a connector (so it is listed with a perfect score before
    /// anything happens to it, and station events reach it).
    pub fn declare(&mut self, key: &HealthKey) {
        self.connectors.entry(key.clone()).or_default();
    }

    /// Takes what a station reported about a connector at `at`.
    pub fn handle(
        &mut self,
        key: &HealthKey,
        at: DateTime<Utc>,
        observation: Observation,
    ) -> Option<Change> {
        self.declare(key);
        let signal = match observation {
            Observation::SessionStarted => {
                let k = self.reference_value(at);
                let hl = self.config.half_life;
                self.fleet_sessions.add(at, 1.0, hl);
                let c = self.connectors.entry(key.clone()).or_default();
                c.sessions.add(at, 1.0, hl);
                c.cusum = (c.cusum - k).max(0.0);
                None
            }
            Observation::SessionEnded { aborted: false } => None,
            Observation::SessionEnded { aborted: true } => Some(Signal::Aborts),
            Observation::StartFailed => Some(Signal::StartFailures),
            Observation::Fault { error_code } => {
                let c = self.connectors.entry(key.clone()).or_default();
                if error_code.is_some() {
                    c.last_error_code = error_code;
                }
                Some(Signal::Faults)
            }
            Observation::Voltage { volts, nominal } => {
                if !(volts.is_finite() && nominal.is_finite() && nominal > 0.0) {
                    return None;
                }
                let deviation = (volts - nominal) / nominal;
                let (alpha, min) = (self.config.voltage_alpha, self.config.min_samples);
                let c = self.connectors.entry(key.clone()).or_default();
                self.fleet_voltage
                    .sample(&mut c.voltage, deviation, alpha, min);
                (deviation.abs() > self.config.voltage_tolerance).then_some(Signal::PowerQuality)
            }
            Observation::Temperature { celsius } => {
                if !celsius.is_finite() {
                    return None;
                }
                let (alpha, min) = (self.config.temperature_alpha, self.config.min_samples);
                let c = self.connectors.entry(key.clone()).or_default();
                self.fleet_temperature
                    .sample(&mut c.temperature, celsius, alpha, min);
                None
            }
        };
        if let Some(s) = signal {
            self.adverse(key, at, s, 1.0);
        }
        self.transition(key, at)
    }

    /// Takes what happened to a whole station: counted for each of its
    /// declared (or already observed) connectors. Returns the changes.
    pub fn handle_station(
        &mut self,
        station: &str,
        at: DateTime<Utc>,
        what: StationObservation,
    ) -> Vec<Change> {
        let keys: Vec<HealthKey> = self.keys_of(station).cloned().collect();
        let (signal, w) = match what {
            StationObservation::UnplannedReboot => (Signal::Reboots, self.config.reboot_weight),
            StationObservation::ConnectionLost => {
                (Signal::ConnectionLosses, self.config.connection_loss_weight)
            }
        };
        let mut changes = Vec::new();
        for key in keys {
            self.adverse(&key, at, signal, w);
            changes.extend(self.transition(&key, at));
        }
        changes
    }

    /// Forgets a connector (removed from the station) or a whole station's
    /// (`connector` `None`).
    pub fn forget(&mut self, station: &str, connector: Option<ConnectorId>) {
        let min = self.config.min_samples;
        let (temperature, voltage) = (&mut self.fleet_temperature, &mut self.fleet_voltage);
        self.connectors.retain(|k, c| {
            let keep = k.station != station || connector.is_some_and(|c| c != k.connector);
            if !keep && c.temperature.n >= min {
                temperature.add(c.temperature.mean, -1.0);
            }
            if !keep && c.voltage.n >= min {
                voltage.add(c.voltage.mean, -1.0);
            }
            keep
        });
    }

    /// A connector's health at `now`, `None` when it was never seen.
    pub fn health(&self, key: &HealthKey, now: DateTime<Utc>) -> Option<Health> {
        let c = self.connectors.get(key)?;
        Some(self.judge(c, now))
    }

    /// Every connector's health, worst first (ties by key).
    pub fn ranking(&self, now: DateTime<Utc>) -> Vec<(HealthKey, Health)> {
        let mut all: Vec<(HealthKey, Health)> = self
            .connectors
            .iter()
            .map(|(k, c)| (k.clone(), self.judge(c, now)))
            .collect();
        all.sort_by(|a, b| a.1.score.cmp(&b.1.score).then_with(|| a.0.cmp(&b.0)));
        all
    }

    fn keys_of<'a>(&'a self, station: &'a str) -> impl Iterator<Item = &'a HealthKey> + 'a {
        let from = HealthKey::new(station, ConnectorId::new(0, 0));
        self.connectors
            .range(from..)
            .map(|(k, _)| k)
            .take_while(move |k| k.station == station)
    }

    /// k = λ0 (ρ − 1) / ln ρ.
    fn reference_value(&self, now: DateTime<Utc>) -> f64 {
        let rho = self.config.rate_ratio.max(1.0 + 1e-6);
        self.baseline(now) * (rho - 1.0) / rho.ln()
    }

    fn adverse(&mut self, key: &HealthKey, at: DateTime<Utc>, s: Signal, w: f64) {
        let hl = self.config.half_life;
        self.fleet_adverse.add(at, w, hl);
        let c = self.connectors.entry(key.clone()).or_default();
        c.adverse.add(at, w, hl);
        c.by_signal.entry(s).or_default().add(at, w, hl);
        c.cusum += w;
    }

    fn temperature_z(&self, c: &ConnectorState) -> Option<f64> {
        let cfg = &self.config;
        self.fleet_temperature
            .z(&c.temperature, cfg.min_samples, cfg.temperature_min_sd)
    }

    fn voltage_z(&self, c: &ConnectorState) -> Option<f64> {
        let cfg = &self.config;
        self.fleet_voltage
            .z(&c.voltage, cfg.min_samples, cfg.voltage_min_sd)
    }

    fn judge(&self, c: &ConnectorState, now: DateTime<Utc>) -> Health {
        let cfg = &self.config;
        let hl = cfg.half_life;
        let sessions = c.sessions.at(now, hl);
        let adverse = c.adverse.at(now, hl);
        let ratio = (adverse + 1.0) / (self.baseline(now) * sessions + 1.0);
        let rho = cfg.rate_ratio.max(1.0 + 1e-6);
        let r_rate = (ratio.ln() / rho.ln()).clamp(0.0, 1.0);
        let r_cusum = (c.cusum / cfg.cusum_h).clamp(0.0, 1.0);
        let z = self.temperature_z(c);
        let r_temp = z.map_or(0.0, |z| (z / cfg.temperature_z).clamp(0.0, 1.0));
        let vz = self.voltage_z(c);
        let r_volt = vz.map_or(0.0, |z| (z.abs() / cfg.voltage_z).clamp(0.0, 1.0));
        let risk = r_rate.max(r_cusum).max(r_temp).max(r_volt);
        let score = (100.0 * (1.0 - risk)).round().clamp(0.0, 100.0) as u8;
        let state = if c.at_risk {
            State::AtRisk
        } else if score < 50 {
            State::Watch
        } else {
            State::Ok
        };
        let mut reasons: Vec<(Signal, f64)> = c
            .by_signal
            .iter()
            .map(|(s, d)| (*s, d.at(now, hl)))
            .filter(|(_, v)| *v > 0.05)
            .collect();
        if let Some(z) = z.filter(|z| *z > 1.0) {
            reasons.push((Signal::Temperature, z));
        }
        if let Some(z) = vz.filter(|z| z.abs() > 1.0) {
            reasons.push((Signal::VoltageDrift, z.abs()));
        }
        reasons.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Health {
            score,
            state,
            cusum: c.cusum,
            rate_ratio: ratio,
            temperature_z: z,
            voltage_z: vz,
            reasons,
            sessions,
            last_error_code: c.last_error_code.clone(),
        }
    }

    /// Enters or leaves AtRisk with hysteresis.
    fn transition(&mut self, key: &HealthKey, now: DateTime<Utc>) -> Option<Change> {
        let h = self.config.cusum_h;
        let zlim = self.config.temperature_z;
        let vlim = self.config.voltage_z;
        let c = self.connectors.get(key)?;
        let z = self.temperature_z(c);
        let vz = self.voltage_z(c).map(f64::abs);
        let cause = if c.cusum >= h {
            Some(
                c.by_signal
                    .iter()
                    .map(|(s, d)| (*s, d.at(now, self.config.half_life)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(Signal::Faults, |(s, _)| s),
            )
        } else if z.is_some_and(|z| z >= zlim) {
            Some(Signal::Temperature)
        } else if vz.is_some_and(|z| z >= vlim) {
            Some(Signal::VoltageDrift)
        } else {
            None
        };
        let calm = c.cusum < h / 2.0
            && z.is_none_or(|z| z < zlim / 2.0)
            && vz.is_none_or(|z| z < vlim / 2.0);
        match (c.at_risk, cause) {
            (false, Some(cause)) => {
                if let Some(c) = self.connectors.get_mut(key) {
                    c.at_risk = true;
                }
                let health = self.health(key, now)?;
                Some(Change::AtRisk {
                    key: key.clone(),
                    cause,
                    health,
                })
            }
            (true, None) if calm => {
                if let Some(c) = self.connectors.get_mut(key) {
                    c.at_risk = false;
                }
                Some(Change::Recovered { key: key.clone() })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
    }

    /// A deterministic hash in [0, 1) (splitmix64).
    fn noise(x: u64) -> f64 {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
    }

    fn key(i: usize) -> HealthKey {
        HealthKey::new(format!("CS{i:03}"), ConnectorId::new(1, 1))
    }

    /// `n` connectors with `days` of 5 sessions a day and the fleet's
    /// ordinary fault rate (one per 60 sessions, at random from a fixed seed).
    fn fleet(model: &mut HealthModel, n: usize, days: i64) {
        let mut counter = 0u64;
        for day in 0..days {
            for i in 0..n {
                for s in 0..5 {
                    let at = t0() + Duration::days(day) + Duration::hours(7 + 2 * s);
                    model.handle(&key(i), at, Observation::SessionStarted);
                    counter += 1;
                    if noise(counter) < 1.0 / 60.0 {
                        model.handle(&key(i), at, Observation::Fault { error_code: None });
                    }
                    model.handle(&key(i), at, Observation::SessionEnded { aborted: false });
                }
            }
        }
    }

    /// A kept state restored: the same health everywhere, and the next
    /// observations change both alike.
    #[cfg(feature = "serde")]
    #[test]
    fn a_kept_state_restores_the_same_model() {
        let mut m = HealthModel::default();
        fleet(&mut m, 12, 5);
        let now = t0() + Duration::days(5);
        m.handle(&key(3), now, Observation::Temperature { celsius: 61.0 });
        m.handle_station("CS004", now, StationObservation::UnplannedReboot);
        let text = serde_json::to_string(&m).unwrap();
        let back: HealthModel = serde_json::from_str(&text).unwrap();
        let mut back = back.with_config(m.config().clone());
        assert_eq!(back.ranking(now), m.ranking(now));
        assert_eq!(back.baseline(now), m.baseline(now));
        for i in 0..6 {
            let at = now + Duration::hours(i);
            let a = m.handle(&key(5), at, Observation::SessionEnded { aborted: true });
            let b = back.handle(&key(5), at, Observation::SessionEnded { aborted: true });
            assert_eq!(a, b);
        }
        assert_eq!(back.ranking(now), m.ranking(now));
        // not a model: a typed error, not a panic
        assert!(serde_json::from_str::<HealthModel>(r#"{"connectors": 3}"#).is_err());
    }

    #[test]
    fn baseline_is_fleet_adverse_events_per_session() {
        let mut m = HealthModel::default();
        fleet(&mut m, 20, 10);
        let b = m.baseline(t0() + Duration::days(10));
        // 1,000 sessions with faults at 1/60: a Poisson count around 17
        assert!((0.008..0.03).contains(&b), "baseline {b}");
        // an empty model uses the floor
        assert_eq!(HealthModel::default().baseline(t0()), 0.01);
    }

    #[test]
    fn ordinary_connectors_stay_ok() {
        let mut m = HealthModel::default();
        fleet(&mut m, 30, 30);
        let now = t0() + Duration::days(30);
        let ranking = m.ranking(now);
        // chance puts a few on the watch list, never at risk
        for (k, h) in &ranking {
            assert_ne!(h.state, State::AtRisk, "{k:?} {h:?}");
        }
        let ok = ranking.iter().filter(|(_, h)| h.state == State::Ok).count();
        assert!(ok >= 24, "{ok} of 30 ok");
    }

    #[test]
    fn a_failing_connector_is_alarmed_then_recovers_after_repair() {
        let mut m = HealthModel::default();
        fleet(&mut m, 20, 20);
        let bad = key(5);
        let mut at = t0() + Duration::days(20);
        let mut alarmed = None;
        for s in 0..30 {
            at += Duration::hours(2);
            m.handle(&bad, at, Observation::SessionStarted);
            if s % 3 == 0 {
                let c = m.handle(
                    &bad,
                    at,
                    Observation::Fault {
                        error_code: Some("GroundFailure".into()),
                    },
                );
                if let Some(Change::AtRisk { cause, health, .. }) = c {
                    alarmed.get_or_insert((s, cause, health));
                }
            }
        }
        let (s, cause, health) = alarmed.expect("alarm");
        assert!(s <= 15, "alarm after {s} sessions");
        assert_eq!(cause, Signal::Faults);
        assert_eq!(health.state, State::AtRisk);
        assert_eq!(health.last_error_code.as_deref(), Some("GroundFailure"));
        assert_eq!(m.ranking(at)[0].0, bad, "worst first");
        // repaired: sessions without faults bring the CUSUM down and clear it
        let mut cleared = false;
        for _ in 0..2000 {
            at += Duration::hours(2);
            if let Some(Change::Recovered { key }) = m.handle(&bad, at, Observation::SessionStarted)
            {
                assert_eq!(key, bad);
                cleared = true;
                break;
            }
        }
        assert!(cleared);
        assert_ne!(m.health(&bad, at).unwrap().state, State::AtRisk);
    }

    #[test]
    fn a_hot_connector_is_alarmed_by_temperature() {
        let mut m = HealthModel::default();
        let mut at = t0();
        let mut alarm = None;
        for round in 0..200u32 {
            at += Duration::minutes(10);
            for i in 0..20 {
                // the fleet: 35 °C ± 3 (a deterministic wobble)
                let wobble = 6.0 * noise(u64::from(round) * 1000 + i as u64) - 3.0;
                let hot = if i == 4 { f64::from(round) * 0.1 } else { 0.0 };
                let c = m.handle(
                    &key(i),
                    at,
                    Observation::Temperature {
                        celsius: 35.0 + wobble + hot,
                    },
                );
                if let Some(Change::AtRisk { key, cause, .. }) = c {
                    assert_eq!(key, self::key(4));
                    assert_eq!(cause, Signal::Temperature);
                    alarm.get_or_insert(round);
                }
            }
        }
        let round = alarm.expect("temperature alarm");
        // +0.1 °C per round: caught within a few degrees of drift
        assert!(round < 80, "after {round} rounds");
        assert!(m.health(&key(4), at).unwrap().temperature_z.unwrap() > 4.0);
        assert!(m.health(&key(7), at).unwrap().temperature_z.unwrap().abs() < 2.0);
    }

    #[test]
    fn station_events_reach_every_connector_of_the_station_only() {
        let mut m = HealthModel::default();
        let a1 = HealthKey::new("A", ConnectorId::new(1, 1));
        let a2 = HealthKey::new("A", ConnectorId::new(2, 1));
        let ab = HealthKey::new("AB", ConnectorId::new(1, 1));
        for k in [&a1, &a2, &ab] {
            m.declare(k);
        }
        let mut changes = Vec::new();
        for i in 0..8 {
            changes.extend(m.handle_station(
                "A",
                t0() + Duration::hours(i),
                StationObservation::ConnectionLost,
            ));
        }
        // 8 × 0.5 = 4 = h: both of A's connectors, not AB's
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(
            |c| matches!(c, Change::AtRisk { cause, .. } if *cause == Signal::ConnectionLosses)
        ));
        assert_eq!(m.health(&ab, t0()).unwrap().cusum, 0.0);
        assert_eq!(
            m.health(&a1, t0() + Duration::hours(8)).unwrap().state,
            State::AtRisk
        );
        m.forget("A", Some(ConnectorId::new(1, 1)));
        assert!(m.health(&a1, t0()).is_none());
        assert!(m.health(&a2, t0()).is_some());
        m.forget("A", None);
        assert!(m.health(&a2, t0()).is_none());
        assert!(m.health(&ab, t0()).is_some());
    }

    #[test]
    fn only_unplanned_reboots_count() {
        use BootReason::*;
        for r in [Watchdog, ApplicationReset, PowerUp, Unknown] {
            assert_eq!(
                reboot(r, true, false),
                Some(StationObservation::UnplannedReboot),
                "{r:?}"
            );
            // the first boot, and a reboot the CSMS asked for, are not
            assert_eq!(reboot(r, false, false), None);
            assert_eq!(reboot(r, true, true), None);
        }
        for r in [
            FirmwareUpdate,
            LocalReset,
            RemoteReset,
            ScheduledReset,
            Triggered,
        ] {
            assert_eq!(reboot(r, true, false), None, "{r:?}");
        }
        assert_eq!(
            BootReason::from(evproto_ocpp_types::v21::BootReasonEnumType::Watchdog),
            Watchdog
        );
    }

    #[test]
    fn a_station_rebooting_more_than_the_fleet_is_alarmed() {
        let mut m = HealthModel::default();
        fleet(&mut m, 20, 20);
        // the fleet's stations reboot now and then too: one per 100 sessions
        let mut at = t0() + Duration::days(20);
        let mut alarm = None;
        for s in 0..200u64 {
            at += Duration::hours(1);
            for i in 0..20 {
                m.handle(&key(i), at, Observation::SessionStarted);
                let often = i == 9 && s % 5 == 0;
                if often || noise(s * 100 + i as u64 + 7) < 0.01 {
                    for c in
                        m.handle_station(&key(i).station, at, StationObservation::UnplannedReboot)
                    {
                        if let Change::AtRisk { key, cause, .. } = c {
                            assert_eq!(key, self::key(9), "only the station that reboots often");
                            alarm.get_or_insert((s, cause));
                        }
                    }
                }
            }
        }
        let (s, cause) = alarm.expect("reboot alarm");
        assert_eq!(cause, Signal::Reboots);
        // one reboot per 5 sessions against the fleet's 1 per 100: a handful of reboots
        assert!(s <= 40, "after {s} sessions");
    }

    #[test]
    fn a_sagging_supply_is_alarmed_before_it_leaves_the_band() {
        let mut m = HealthModel::default();
        let mut at = t0();
        let mut alarm = None;
        let mut volts_at_alarm = 0.0;
        for round in 0..300u32 {
            at += Duration::minutes(10);
            for i in 0..20 {
                // the fleet: 226 to 234 V (stations on different feeders), ±2 V noise
                let wobble = 4.0 * noise(u64::from(round) * 1000 + i as u64) - 2.0;
                let base = 226.0 + (i % 5) as f64 * 2.0;
                let sag = if i == 6 { f64::from(round) * 0.1 } else { 0.0 };
                let volts = base + wobble - sag;
                let c = m.handle(
                    &key(i),
                    at,
                    Observation::Voltage {
                        volts,
                        nominal: 230.0,
                    },
                );
                if let Some(Change::AtRisk { key, cause, .. }) = c {
                    assert_eq!(key, self::key(6));
                    assert_eq!(cause, Signal::VoltageDrift);
                    if alarm.is_none() {
                        volts_at_alarm = volts;
                    }
                    alarm.get_or_insert(round);
                }
            }
        }
        let round = alarm.expect("voltage drift alarm");
        // still inside ±10 % (207 V) when the drift is caught
        assert!(
            volts_at_alarm > 207.0,
            "{volts_at_alarm} V after {round} rounds"
        );
        let h = m.health(&key(6), at).unwrap();
        assert!(h.voltage_z.unwrap() < -4.0);
        assert!(m.health(&key(3), at).unwrap().voltage_z.unwrap().abs() < 3.0);
    }

    #[test]
    fn voltage_within_tolerance_is_not_an_event() {
        let mut m = HealthModel::default();
        let k = key(0);
        m.handle(
            &k,
            t0(),
            Observation::Voltage {
                volts: 240.0,
                nominal: 230.0,
            },
        );
        assert_eq!(m.health(&k, t0()).unwrap().cusum, 0.0);
        m.handle(
            &k,
            t0(),
            Observation::Voltage {
                volts: 190.0,
                nominal: 230.0,
            },
        );
        assert_eq!(m.health(&k, t0()).unwrap().cusum, 1.0);
        assert_eq!(
            m.health(&k, t0()).unwrap().reasons[0].0,
            Signal::PowerQuality
        );
        // nonsense samples change nothing
        m.handle(&k, t0(), Observation::Temperature { celsius: f64::NAN });
        m.handle(
            &k,
            t0(),
            Observation::Voltage {
                volts: 1.0,
                nominal: 0.0,
            },
        );
        assert_eq!(m.health(&k, t0()).unwrap().cusum, 1.0);
    }

    #[test]
    fn aborted_means_the_hardware_ended_it() {
        assert_eq!(
            Observation::session_ended(Some(StopReason::GroundFault)),
            Observation::SessionEnded { aborted: true }
        );
        for r in [
            Some(StopReason::Local),
            Some(StopReason::EVDisconnected),
            Some(StopReason::Remote),
            None,
        ] {
            assert_eq!(
                Observation::session_ended(r),
                Observation::SessionEnded { aborted: false }
            );
        }
    }

    #[test]
    fn counts_decay_with_the_half_life() {
        let mut d = Decayed::default();
        let hl = Duration::days(14);
        d.add(t0(), 8.0, hl);
        assert!((d.at(t0() + hl, hl) - 4.0).abs() < 1e-9);
        assert!((d.at(t0() + hl * 2, hl) - 2.0).abs() < 1e-9);
        // an event from the past is added at the later time, not before it
        d.add(t0() - Duration::days(1), 1.0, hl);
        assert!((d.at(t0(), hl) - 9.0).abs() < 1e-9);
    }

    proptest! {
        /// Whatever arrives, in whatever order: scores stay in 0..=100,
        /// the statistics stay finite and non-negative, nothing panics.
        #[test]
        fn scores_stay_in_range(events in proptest::collection::vec((0usize..4, 0i64..10_000, 0u8..8, -50.0f64..150.0), 0..300)) {
            let mut m = HealthModel::default();
            for (i, minutes, kind, x) in events {
                let at = t0() + Duration::minutes(minutes);
                let o = match kind {
                    0 => Observation::SessionStarted,
                    1 => Observation::SessionEnded { aborted: x > 50.0 },
                    2 => Observation::StartFailed,
                    3 => Observation::Fault { error_code: None },
                    4 => Observation::Temperature { celsius: x },
                    5 => Observation::Voltage { volts: x * 3.0, nominal: 230.0 },
                    6 => {
                        m.handle_station(&key(i).station, at, StationObservation::UnplannedReboot);
                        continue;
                    }
                    _ => {
                        m.handle_station(&key(i).station, at, StationObservation::ConnectionLost);
                        continue;
                    }
                };
                m.handle(&key(i), at, o);
            }
            let now = t0() + Duration::minutes(10_000);
            for (_, h) in m.ranking(now) {
                prop_assert!(h.score <= 100);
                prop_assert!(h.cusum.is_finite() && h.cusum >= 0.0);
                prop_assert!(h.rate_ratio.is_finite() && h.rate_ratio > 0.0);
                prop_assert!(h.sessions >= 0.0);
                prop_assert!(h.voltage_z.is_none_or(f64::is_finite));
                prop_assert!(h.temperature_z.is_none_or(f64::is_finite));
            }
            prop_assert!(m.baseline(now) >= m.config().min_baseline);
        }
    }
}
