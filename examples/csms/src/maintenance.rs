//! Predictive maintenance: every connector's health score
//! ([`evproto_csms_core::health`]) fed from the station messages the CSMS
//! handles anyway, a `maintenance` alert when a connector is at risk (in
//! words, with the signal that tripped it), cleared when the station's
//! connectors are all back in order, and the ranking behind
//! `GET /api/maintenance` and the console's Maintenance page.
//!
//! What feeds it: a StatusNotification that turns a connector Faulted (a
//! failed start when it was occupied with no session running), session
//! starts and ends (with the stop reason), `Temperature` and `Voltage`
//! samples of MeterValues and TransactionEvents ([`Maintenance::samples`]),
//! the station's unplanned reboots (a BootNotification that is not its first
//! here, with a reason that is not a requested one, and no `Reset` sent to
//! it in the last [`RESET_GRACE`]: [`evproto_csms_core::health::reboot`])
//! and its lost connections (closed without a close frame, an abnormal close
//! code or a transport failure, or silent past the idle timeout).
//!
//! The model lives in memory and is kept in the store (setting
//! [`MODEL_KEY`], per node in cluster mode) every [`KEEP_EVERY`] when it
//! changed and when the CSMS stops; a restart takes it back, so scores and
//! the weeks of decayed history behind them survive it. A kept state that
//! cannot be read is logged and replaced (scores start again from the
//! fleet's baseline; open alerts stay stored until a connector recovers).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use evproto_csms_core::connector::ConnectorId;
use evproto_csms_core::health::{
    BootReason, Change, HealthKey, HealthModel, Observation, Signal, State, StationObservation,
};
use serde::Serialize;

/// How long after a `Reset` sent to a station its boot counts as requested
/// (1.6 boots carry no reason).
pub const RESET_GRACE: Duration = Duration::minutes(15);

/// Nominal voltage of a phase-to-neutral sample (`L1`, `L1-N`, ...), V.
pub const NOMINAL_PHASE_V: f64 = 230.0;
/// Nominal voltage of a phase-to-phase sample (`L1-L2`, ...), V.
pub const NOMINAL_LINE_V: f64 = 400.0;

/// The settings key the model is kept under (`maintenance.model.<node>`
/// in cluster mode: each node holds its own stations' state).
pub const MODEL_KEY: &str = "maintenance.model";

/// How often a changed model is kept.
pub const KEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The fleet's health model, shared by the handlers.
#[derive(Debug, Default)]
pub struct Maintenance {
    model: Mutex<HealthModel>,
    /// What each station's next boot is judged by.
    boots: Mutex<HashMap<String, Boots>>,
    /// The model changed since it was last kept.
    changed: AtomicBool,
    /// Where it is kept.
    key: String,
}

/// Whether a station booted here before, and when a `Reset` was last sent
/// to it.
#[derive(Debug, Clone, Copy, Default)]
struct Boots {
    booted: bool,
    reset_at: Option<DateTime<Utc>>,
}

/// A sampled value as kept (`crate::sessions::TxMessage::samples`):
/// timestamp, measurand[.phase], value, unit.
pub type Sample = (String, String, String, Option<String>);

/// What a sampled value says about a connector's health: a `Temperature`
/// (°C; Fahrenheit and Kelvin converted) or an AC `Voltage` with its phase
/// (phase-to-neutral against [`NOMINAL_PHASE_V`], phase-to-phase against
/// [`NOMINAL_LINE_V`]). A voltage without a phase (a DC station's battery
/// voltage, or one that does not say) and values that are not numbers say
/// nothing.
pub fn observation(sample: &Sample) -> Option<Observation> {
    let (_, name, value, unit) = sample;
    let x: f64 = value.trim().parse().ok().filter(|x: &f64| x.is_finite())?;
    let (measurand, phase) = match name.split_once('.') {
        Some((m, p)) if m == "Temperature" || m == "Voltage" => (m, Some(p)),
        _ => (name.as_str(), None),
    };
    match measurand {
        "Temperature" => {
            let celsius = match unit.as_deref() {
                None | Some("Celsius") => x,
                Some("Fahrenheit") => (x - 32.0) * 5.0 / 9.0,
                Some("K") => x - 273.15,
                Some(_) => return None,
            };
            Some(Observation::Temperature { celsius })
        }
        "Voltage" => {
            let volts = match unit.as_deref() {
                None | Some("V") => x,
                Some("kV") => x * 1000.0,
                Some(_) => return None,
            };
            let nominal = match phase? {
                "L1" | "L2" | "L3" | "L1-N" | "L2-N" | "L3-N" => NOMINAL_PHASE_V,
                "L1-L2" | "L2-L3" | "L3-L1" => NOMINAL_LINE_V,
                _ => return None,
            };
            Some(Observation::Voltage { volts, nominal })
        }
        _ => None,
    }
}

/// One connector's line on the maintenance page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnectorHealth {
    /// Station identity.
    pub station: String,
    /// EVSE (1.6: the connector id).
    pub evse: u32,
    /// Connector within the EVSE (1.6: 1).
    pub connector: u32,
    /// 0 (certain trouble) to 100.
    pub score: u8,
    /// `ok`, `watch` or `at_risk`.
    pub state: &'static str,
    /// The signals behind the score, worst first, in words.
    pub reasons: Vec<String>,
    /// Sessions in the decayed window.
    pub sessions: f64,
    /// The last error code reported with a fault.
    pub last_error_code: Option<String>,
}

/// The detail stored with a `maintenance` alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertDetail {
    /// EVSE.
    pub evse: u32,
    /// Connector.
    pub connector: u32,
    /// Score when it was raised.
    pub score: u8,
    /// What tripped it, in words.
    pub cause: String,
}

fn key(station: &str, evse: i64, connector: i64) -> HealthKey {
    let evse = u32::try_from(evse).unwrap_or(0);
    let connector = u32::try_from(connector).unwrap_or(0).max(1);
    HealthKey::new(station, ConnectorId::new(evse, connector))
}

/// A signal in words, with its decayed count.
pub fn signal_words(s: Signal, v: f64) -> String {
    match s {
        Signal::Faults => format!("{v:.1} faults recently, above the fleet's rate"),
        Signal::StartFailures => format!("{v:.1} starts failed after authorization"),
        Signal::Aborts => format!("{v:.1} sessions ended by the hardware"),
        Signal::PowerQuality => format!("{v:.1} voltage samples out of tolerance"),
        Signal::Reboots => {
            format!("{v:.1} unplanned reboots of the station, above the fleet's rate")
        }
        Signal::ConnectionLosses => format!("{v:.1} lost connections (weighted)"),
        Signal::Temperature => format!("running hot: {v:.1} standard deviations above the fleet"),
        Signal::VoltageDrift => {
            format!("voltage drifting: {v:.1} standard deviations from the fleet's")
        }
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Ok => "ok",
        State::Watch => "watch",
        State::AtRisk => "at_risk",
    }
}

impl Maintenance {
    /// An empty model, kept under [`MODEL_KEY`] (with the node's id in
    /// cluster mode).
    pub fn kept_as(node: Option<&str>) -> Maintenance {
        Maintenance {
            key: match node {
                Some(n) => format!("{MODEL_KEY}.{n}"),
                None => MODEL_KEY.to_owned(),
            },
            ..Maintenance::default()
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, HealthModel> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model, to change it (it is kept again).
    fn model_mut(&self) -> std::sync::MutexGuard<'_, HealthModel> {
        self.changed.store(true, Ordering::Relaxed);
        self.model()
    }

    /// The model's state as kept (JSON), when it changed since the last
    /// call.
    pub fn changed_state(&self) -> Option<String> {
        if !self.changed.swap(false, Ordering::Relaxed) {
            return None;
        }
        match serde_json::to_string(&*self.model()) {
            Ok(text) => Some(text),
            Err(e) => {
                tracing::warn!("maintenance model not serialized: {e}");
                None
            }
        }
    }

    /// Takes back a kept state (the tuning stays this model's).
    ///
    /// # Errors
    ///
    /// The text is not a kept model.
    pub fn restore(&self, text: &str) -> Result<(), serde_json::Error> {
        let kept: HealthModel = serde_json::from_str(text)?;
        let mut model = self.model();
        let config = model.config().clone();
        *model = kept.with_config(config);
        Ok(())
    }

    /// Takes back the state kept in `store`, if any (an unreadable one is
    /// logged and left).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn load(&self, store: &crate::store::Store) -> crate::store::Result<()> {
        if let Some(text) = store.setting(&self.key).await? {
            if let Err(e) = self.restore(&text) {
                tracing::warn!("maintenance: the kept model is unreadable ({e}); starting afresh");
            }
        }
        Ok(())
    }

    /// Keeps the state in `store` if it changed.
    ///
    /// # Errors
    ///
    /// The store failed (the state is kept at the next try).
    pub async fn keep(&self, store: &crate::store::Store) -> crate::store::Result<()> {
        if let Some(text) = self.changed_state() {
            if let Err(e) = store.put_setting(&self.key, &text).await {
                self.changed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Takes what a station reported about one of its connectors.
    pub fn observe(
        &self,
        station: &str,
        evse: i64,
        connector: i64,
        at: DateTime<Utc>,
        observation: Observation,
    ) -> Option<Change> {
        if evse <= 0 {
            return None; // the station as a whole (1.6 connector 0)
        }
        self.model_mut()
            .handle(&key(station, evse, connector), at, observation)
    }

    /// Takes what happened to a whole station.
    pub fn station(
        &self,
        station: &str,
        at: DateTime<Utc>,
        what: StationObservation,
    ) -> Vec<Change> {
        self.model_mut().handle_station(station, at, what)
    }

    /// The health-related samples of a meter value report on `evse`
    /// ([`observation`]): the changes they made.
    pub fn samples(
        &self,
        station: &str,
        evse: i64,
        at: DateTime<Utc>,
        samples: &[Sample],
    ) -> Vec<Change> {
        if evse <= 0 {
            return Vec::new();
        }
        let key = key(station, evse, 1);
        let mut model = self.model_mut();
        samples
            .iter()
            .filter_map(observation)
            .filter_map(|o| model.handle(&key, at, o))
            .collect()
    }

    /// The CSMS sent the station a `Reset`: its next boot is a requested one.
    pub fn reset_requested(&self, station: &str, at: DateTime<Utc>) {
        self.boots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(station.to_owned())
            .or_default()
            .reset_at = Some(at);
    }

    /// The station booted (its boot accepted): an unplanned reboot counts
    /// against each of its connectors ([`evproto_csms_core::health::reboot`]).
    pub fn booted(&self, station: &str, reason: BootReason, at: DateTime<Utc>) -> Vec<Change> {
        let (before, reset) = {
            let mut boots = self.boots.lock().unwrap_or_else(|e| e.into_inner());
            let entry = boots.entry(station.to_owned()).or_default();
            let seen = std::mem::replace(
                entry,
                Boots {
                    booted: true,
                    reset_at: None,
                },
            );
            (
                seen.booted,
                seen.reset_at.is_some_and(|t| at - t <= RESET_GRACE),
            )
        };
        match evproto_csms_core::health::reboot(reason, before, reset) {
            Some(what) => self.station(station, at, what),
            None => Vec::new(),
        }
    }

    /// Declares a connector the station reported (listed before anything
    /// happens to it).
    pub fn declare(&self, station: &str, evse: i64, connector: i64) {
        if evse > 0 {
            self.model_mut().declare(&key(station, evse, connector));
        }
    }

    /// A station was deleted.
    pub fn forget(&self, station: &str) {
        self.model_mut().forget(station, None);
        self.boots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(station);
    }

    /// Whether any connector of the station is still at risk.
    pub fn station_at_risk(&self, station: &str, now: DateTime<Utc>) -> bool {
        self.model()
            .ranking(now)
            .iter()
            .any(|(k, h)| k.station == station && h.state == State::AtRisk)
    }

    /// Connectors worst first, at most `limit`, optionally only those not ok.
    pub fn ranking(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        only_flagged: bool,
    ) -> Vec<ConnectorHealth> {
        self.model()
            .ranking(now)
            .into_iter()
            .filter(|(_, h)| !only_flagged || h.state != State::Ok)
            .take(limit)
            .map(|(k, h)| ConnectorHealth {
                station: k.station,
                evse: k.connector.evse_id,
                connector: k.connector.connector_id,
                score: h.score,
                state: state_name(h.state),
                reasons: h
                    .reasons
                    .iter()
                    .map(|(s, v)| signal_words(*s, *v))
                    .collect(),
                sessions: (h.sessions * 10.0).round() / 10.0,
                last_error_code: h.last_error_code,
            })
            .collect()
    }
}

/// Raises or clears the station's `maintenance` alert for a change of the
/// model (an alert per station: its detail names the connector).
///
/// # Errors
///
/// The store failed.
pub async fn changed(app: &crate::App, change: Option<Change>) -> crate::store::Result<()> {
    match change {
        Some(Change::AtRisk { key, cause, health }) => {
            let detail = AlertDetail {
                evse: key.connector.evse_id,
                connector: key.connector.connector_id,
                score: health.score,
                cause: health
                    .reasons
                    .iter()
                    .find(|(s, _)| *s == cause)
                    .map_or_else(|| format!("{cause:?}"), |(s, v)| signal_words(*s, *v)),
            };
            // numbers and a string: encoding cannot fail
            let detail = serde_json::to_value(&detail).unwrap_or_default();
            if app
                .store
                .raise_alert(Some(&key.station), "maintenance", &detail)
                .await?
                .is_some()
            {
                app.notify(crate::events::LiveEvent::alert(
                    &key.station,
                    "maintenance",
                    &detail,
                ));
            }
        }
        Some(Change::Recovered { key }) => cleared(app, &key.station).await?,
        None => {}
    }
    Ok(())
}

/// [`changed`] for each of `changes`.
///
/// # Errors
///
/// The store failed.
pub async fn changed_all(app: &crate::App, changes: Vec<Change>) -> crate::store::Result<()> {
    for c in changes {
        changed(app, Some(c)).await?;
    }
    Ok(())
}

/// Feeds a meter value report's samples on `evse` to the model
/// ([`Maintenance::samples`]) and raises what they change (a store failure
/// is logged: the report itself is answered).
pub async fn sampled(app: &crate::App, station: &str, evse: i64, samples: &[Sample]) {
    let changes = app.maintenance.samples(station, evse, Utc::now(), samples);
    if let Err(e) = changed_all(app, changes).await {
        tracing::warn!(station, "maintenance alert: {e}");
    }
}

/// A station's boot was accepted ([`Maintenance::booted`]); a store
/// failure is logged (the boot itself is answered).
pub async fn rebooted(app: &crate::App, station: &str, reason: BootReason) {
    let changes = app.maintenance.booted(station, reason, Utc::now());
    if let Err(e) = changed_all(app, changes).await {
        tracing::warn!(station, "maintenance alert: {e}");
    }
}

/// A station's connection closed: a lost one ([`connection_lost`]) counts
/// against each of its connectors.
pub async fn disconnected(app: &crate::App, station: &str, reason: &evproto_ocpp_rpc::Closed) {
    if !connection_lost(reason) {
        return;
    }
    let what = StationObservation::ConnectionLost;
    let changes = app.maintenance.station(station, Utc::now(), what);
    if let Err(e) = changed_all(app, changes).await {
        tracing::warn!(station, "maintenance alert: {e}");
    }
}

/// Whether a closed connection counts as lost: no close frame, an
/// abnormal close code, a transport failure or silence past the idle
/// timeout (not a station that said goodbye, nor one the CSMS closed).
pub fn connection_lost(reason: &evproto_ocpp_rpc::Closed) -> bool {
    use evproto_ocpp_rpc::Closed;
    match reason {
        Closed::ByPeer(code) => !matches!(code, Some(1000 | 1001)),
        Closed::Locally => false,
        Closed::IdleTimeout | Closed::Transport(_) => true,
        // a way of closing added later: not known to be a loss
        _ => false,
    }
}

/// Clears the station's `maintenance` alert once none of its connectors is
/// at risk any more.
async fn cleared(app: &crate::App, station: &str) -> crate::store::Result<()> {
    if app.maintenance.station_at_risk(station, Utc::now()) {
        return Ok(());
    }
    if app.store.clear_alerts(station, "maintenance").await? > 0 {
        app.notify(crate::events::LiveEvent::AlertCleared {
            id: None,
            station: Some(station.to_owned()),
            kind: Some("maintenance".to_owned()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    /// The model is kept when it changed, taken back by a new process (the
    /// same ranking), and a kept state that is not a model is refused.
    #[tokio::test]
    async fn the_model_is_kept_and_taken_back() {
        let dir = std::env::temp_dir().join(format!("csms-maint-{}", crate::store::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("m.db").display());
        let store = crate::store::Store::open(&url).await.unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = Maintenance::kept_as(None);
        assert!(m.changed_state().is_none(), "nothing to keep yet");
        for i in 0..6 {
            let st = format!("CS{i}");
            m.declare(&st, 1, 1);
            m.observe(&st, 1, 1, t, Observation::SessionStarted);
        }
        for h in 0..4 {
            let at = t + Duration::hours(h);
            m.observe(
                "CS2",
                1,
                1,
                at,
                Observation::Fault {
                    error_code: Some("GroundFailure".into()),
                },
            );
        }
        m.keep(&store).await.unwrap();
        assert!(m.changed_state().is_none(), "kept: unchanged since");
        let later = t + Duration::hours(5);
        let back = Maintenance::kept_as(None);
        back.load(&store).await.unwrap();
        assert_eq!(back.ranking(later, 10, false), m.ranking(later, 10, false));
        assert_eq!(back.ranking(later, 1, false)[0].station, "CS2");
        // a node's state is its own
        let node = Maintenance::kept_as(Some("n2"));
        node.load(&store).await.unwrap();
        assert!(node.ranking(later, 10, false).is_empty());
        // an unreadable state: refused with an error, the model left as it was
        assert!(back.restore("{\"connectors\": 3}").is_err());
        assert_eq!(back.ranking(later, 10, false), m.ranking(later, 10, false));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn station_level_connector_zero_is_not_a_connector() {
        let m = Maintenance::default();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(m
            .observe("CS", 0, 0, t, Observation::Fault { error_code: None })
            .is_none());
        assert!(m.ranking(t, 10, false).is_empty());
        m.declare("CS", 1, 0);
        let r = m.ranking(t, 10, false);
        assert_eq!(
            (r[0].evse, r[0].connector, r[0].score, r[0].state),
            (1, 1, 100, "ok")
        );
    }

    #[test]
    fn repeated_faults_put_a_connector_at_risk_in_words() {
        let m = Maintenance::default();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut change = None;
        for i in 0..6 {
            let at = t + Duration::minutes(i);
            let c = m.observe(
                "CS",
                2,
                1,
                at,
                Observation::Fault {
                    error_code: Some("GroundFailure".into()),
                },
            );
            change = change.or(c);
        }
        assert!(matches!(change, Some(Change::AtRisk { .. })));
        assert!(m.station_at_risk("CS", t));
        let r = m.ranking(t + Duration::minutes(6), 10, true);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].state, "at_risk");
        assert_eq!(r[0].last_error_code.as_deref(), Some("GroundFailure"));
        assert!(r[0].reasons[0].contains("faults"), "{:?}", r[0].reasons);
        m.forget("CS");
        assert!(!m.station_at_risk("CS", t));
    }

    fn sample(name: &str, value: &str, unit: Option<&str>) -> Sample {
        (
            "2026-01-01T00:00:00.000Z".into(),
            name.into(),
            value.into(),
            unit.map(str::to_owned),
        )
    }

    #[test]
    fn temperature_and_ac_voltage_samples_are_observations() {
        let t = |c: f64| Some(Observation::Temperature { celsius: c });
        assert_eq!(observation(&sample("Temperature", "41.5", None)), t(41.5));
        assert_eq!(
            observation(&sample("Temperature", "41.5", Some("Celsius"))),
            t(41.5)
        );
        assert_eq!(
            observation(&sample("Temperature", "212", Some("Fahrenheit"))),
            t(100.0)
        );
        let v = |volts: f64, nominal: f64| Some(Observation::Voltage { volts, nominal });
        assert_eq!(
            observation(&sample("Voltage.L1-N", "221.5", Some("V"))),
            v(221.5, 230.0)
        );
        assert_eq!(
            observation(&sample("Voltage.L2", "229", None)),
            v(229.0, 230.0)
        );
        assert_eq!(
            observation(&sample("Voltage.L1-L2", "398", Some("V"))),
            v(398.0, 400.0)
        );
        // a DC battery's voltage (no phase), other measurands, nonsense
        assert_eq!(observation(&sample("Voltage", "612", Some("V"))), None);
        assert_eq!(observation(&sample("Voltage.N", "1", Some("V"))), None);
        assert_eq!(
            observation(&sample("Energy.Active.Import.Register", "10", Some("Wh"))),
            None
        );
        assert_eq!(observation(&sample("Temperature", "hot", None)), None);
        assert_eq!(observation(&sample("Temperature", "NaN", None)), None);
        assert_eq!(observation(&sample("Voltage.L1", "230", Some("A"))), None);
    }

    #[test]
    fn only_unplanned_reboots_after_the_first_boot_count() {
        let m = Maintenance::default();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        m.declare("CS", 1, 1);
        let cusum = |m: &Maintenance| {
            m.model()
                .health(&key("CS", 1, 1), t + Duration::hours(1))
                .unwrap()
                .cusum
        };
        // its first boot here, then a reboot the CSMS asked for (1.6: no reason)
        assert!(m.booted("CS", BootReason::PowerUp, t).is_empty());
        m.reset_requested("CS", t + Duration::minutes(1));
        assert!(m
            .booted("CS", BootReason::Unknown, t + Duration::minutes(2))
            .is_empty());
        assert_eq!(cusum(&m), 0.0);
        // a Reset long ago does not cover a later boot; a watchdog's always counts
        m.reset_requested("CS", t + Duration::minutes(3));
        m.booted("CS", BootReason::Unknown, t + Duration::minutes(30));
        m.booted("CS", BootReason::Watchdog, t + Duration::minutes(31));
        m.booted("CS", BootReason::RemoteReset, t + Duration::minutes(32));
        assert_eq!(cusum(&m), 2.0);
        let mut changes = Vec::new();
        for i in 0..2 {
            changes.extend(m.booted("CS", BootReason::Watchdog, t + Duration::minutes(40 + i)));
        }
        assert!(
            matches!(
                &changes[..],
                [Change::AtRisk {
                    cause: Signal::Reboots,
                    ..
                }]
            ),
            "{changes:?}"
        );
    }

    #[test]
    fn a_lost_connection_is_not_a_goodbye() {
        use evproto_ocpp_rpc::Closed;
        assert!(connection_lost(&Closed::IdleTimeout));
        assert!(connection_lost(&Closed::ByPeer(None)));
        assert!(connection_lost(&Closed::ByPeer(Some(1006))));
        assert!(!connection_lost(&Closed::ByPeer(Some(1000))));
        assert!(!connection_lost(&Closed::Locally));
    }
}
