//! Predictive maintenance: every connector's health score
//! ([`evproto_csms_core::health`]) fed from the station messages the CSMS
//! handles anyway, a `maintenance` alert when a connector is at risk (in
//! words, with the signal that tripped it), cleared when the station's
//! connectors are all back in order, and the ranking behind
//! `GET /api/maintenance` and the console's Maintenance page.
//!
//! What feeds it: a StatusNotification that turns a connector Faulted (a
//! failed start when it was occupied with no session running), session
//! starts and ends (with the stop reason), 1.6 `Temperature` samples, and
//! the station's unplanned reboots and lost connections. The model lives in
//! memory: after a restart scores start again from the fleet's baseline
//! (what is lost is the decayed history of the last weeks, never a session
//! or an alert: open alerts stay stored until a connector recovers).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use evproto_csms_core::connector::ConnectorId;
use evproto_csms_core::health::{
    Change, HealthKey, HealthModel, Observation, Signal, State, StationObservation,
};
use serde::Serialize;

/// The fleet's health model, shared by the handlers.
#[derive(Debug, Default)]
pub struct Maintenance {
    model: Mutex<HealthModel>,
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
        Signal::StationEvents => format!("{v:.1} unplanned reboots or lost connections (weighted)"),
        Signal::Temperature => format!("running hot: {v:.1} standard deviations above the fleet"),
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
    fn model(&self) -> std::sync::MutexGuard<'_, HealthModel> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
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
        self.model()
            .handle(&key(station, evse, connector), at, observation)
    }

    /// Takes what happened to a whole station.
    pub fn station(
        &self,
        station: &str,
        at: DateTime<Utc>,
        what: StationObservation,
    ) -> Vec<Change> {
        self.model().handle_station(station, at, what)
    }

    /// Declares a connector the station reported (listed before anything
    /// happens to it).
    pub fn declare(&self, station: &str, evse: i64, connector: i64) {
        if evse > 0 {
            self.model().declare(&key(station, evse, connector));
        }
    }

    /// A station was deleted.
    pub fn forget(&self, station: &str) {
        self.model().forget(station, None);
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
}
