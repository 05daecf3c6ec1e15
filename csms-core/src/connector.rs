//! EVSE and connector status of one station: what the station reported,
//! what the operator asked for (availability), and reservations, combined
//! into the status an operator or a driver sees.
//!
//! # Rules
//!
//! - **Addressing.** A 2.x connector is (EVSE id, connector id). A 1.6
//!   connector `N > 0` is EVSE `N`, connector 1; 1.6 connector 0 is the whole
//!   station ([`Target::Station`]).
//! - **Newest report wins.** A report older than the one held for the same
//!   target is ignored (stations replay queued notifications after a
//!   reconnect). 1.6 reports without a timestamp take the time they were
//!   received, which the caller passes in.
//! - **After a reboot** every reported status is [`Status::Unknown`] until
//!   the station reports it again (both versions require it to after boot);
//!   the operator's availability and reservations stand.
//! - **Precedence** of the effective status of a connector, highest first:
//!   1. `Faulted` reported for the connector or the whole station;
//!   2. `Unavailable` reported for the connector or the whole station;
//!   3. `Occupied` (1.6 `Preparing`/`Charging`/`SuspendedEV`/`SuspendedEVSE`/
//!      `Finishing`) reported: a session in progress is shown even when the
//!      operator has scheduled the connector inoperative (OCPP makes such a
//!      change wait for the transaction's end);
//!   4. `Unavailable` because the operator set the station, EVSE or
//!      connector inoperative;
//!   5. `Reserved`, reported or by a reservation the CSMS holds;
//!   6. the reported status (`Available`), else `Unknown`.
//! - **An EVSE** is `Occupied` when one of its connectors is (one EVSE
//!   charges one car), else `Reserved` if one is, else `Available` if one is,
//!   else `Unavailable` if one is and the rest are `Faulted`, else `Faulted`
//!   when all are, else `Unknown`.
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use evproto_csms_core::connector::{ConnectorId, Report, Station, Status};
//! use evproto_ocpp_types::v16;
//!
//! let t = |s| Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, s).unwrap();
//! let mut station = Station::default();
//! let charging: v16::StatusNotificationRequest = serde_json::from_str(
//!     r#"{"connectorId":1,"errorCode":"NoError","status":"Charging","timestamp":"2026-01-01T10:00:05Z"}"#)?;
//! let stale: v16::StatusNotificationRequest = serde_json::from_str(
//!     r#"{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"2026-01-01T10:00:01Z"}"#)?;
//! station.handle_report(Report::from_v16(&charging, t(6)));
//! station.handle_report(Report::from_v16(&stale, t(7))); // replayed late: older, ignored
//! assert_eq!(station.status(ConnectorId::new(1, 1)), Status::Occupied);
//!
//! station.handle_boot();
//! assert_eq!(station.status(ConnectorId::new(1, 1)), Status::Unknown);
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use evproto_ocpp_types::{v16, v201, v21};

/// A connector: (EVSE id, connector id within it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConnectorId {
    /// EVSE id (1.6: the connector id).
    pub evse_id: u32,
    /// Connector id within the EVSE (1.6: 1).
    pub connector_id: u32,
}

impl ConnectorId {
    /// A connector of an EVSE.
    pub fn new(evse_id: u32, connector_id: u32) -> Self {
        ConnectorId {
            evse_id,
            connector_id,
        }
    }
}

/// What a report or an availability change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The whole station (1.6 connector 0; 2.x ChangeAvailability without EVSE).
    Station,
    /// One EVSE (2.x ChangeAvailability with an EVSE and no connector).
    Evse(u32),
    /// One connector.
    Connector(ConnectorId),
}

/// A connector's or EVSE's status, version-independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Free to use.
    Available,
    /// In use (1.6 Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing).
    Occupied,
    /// Reserved for a token.
    Reserved,
    /// Not available for charging.
    Unavailable,
    /// Broken.
    Faulted,
    /// Not reported since the station booted (or ever).
    Unknown,
}

/// 1.6's finer states of an occupied connector, kept for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Occupancy {
    /// 1.6 Preparing: plugged in or authorized, not yet charging.
    Preparing,
    /// 1.6 Charging.
    Charging,
    /// 1.6 SuspendedEV: the car does not take energy.
    SuspendedEv,
    /// 1.6 SuspendedEVSE: the station does not offer energy.
    SuspendedEvse,
    /// 1.6 Finishing: stopped, not yet unplugged.
    Finishing,
}

/// One status report from the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// What it is about.
    pub target: Target,
    /// The reported status (never `Unknown`).
    pub status: Status,
    /// 1.6's finer state when occupied.
    pub occupancy: Option<Occupancy>,
    /// When the status began (the station's timestamp, else the time received).
    pub at: DateTime<Utc>,
}

impl Report {
    /// A 1.6 `StatusNotification`; `received_at` stands in for a missing timestamp.
    pub fn from_v16(m: &v16::StatusNotificationRequest, received_at: DateTime<Utc>) -> Report {
        use v16::ChargePointStatus as S;
        let (status, occupancy) = match m.status {
            S::Available => (Status::Available, None),
            S::Preparing => (Status::Occupied, Some(Occupancy::Preparing)),
            S::Charging => (Status::Occupied, Some(Occupancy::Charging)),
            S::SuspendedEV => (Status::Occupied, Some(Occupancy::SuspendedEv)),
            S::SuspendedEVSE => (Status::Occupied, Some(Occupancy::SuspendedEvse)),
            S::Finishing => (Status::Occupied, Some(Occupancy::Finishing)),
            S::Reserved => (Status::Reserved, None),
            S::Unavailable => (Status::Unavailable, None),
            _ => (Status::Faulted, None),
        };
        Report {
            target: match u32::try_from(m.connector_id) {
                Ok(n) if n > 0 => Target::Connector(ConnectorId::new(n, 1)),
                _ => Target::Station,
            },
            status,
            occupancy,
            at: m.timestamp.unwrap_or(received_at),
        }
    }
}

macro_rules! report_2x {
    ($ver:ident) => {
        impl From<&$ver::StatusNotificationRequest> for Report {
            fn from(m: &$ver::StatusNotificationRequest) -> Report {
                use $ver::ConnectorStatusEnumType as S;
                Report {
                    target: match (u32::try_from(m.evse_id), u32::try_from(m.connector_id)) {
                        (Ok(e), Ok(c)) if e > 0 => Target::Connector(ConnectorId::new(e, c)),
                        _ => Target::Station,
                    },
                    status: match m.connector_status {
                        S::Available => Status::Available,
                        S::Occupied => Status::Occupied,
                        S::Reserved => Status::Reserved,
                        S::Unavailable => Status::Unavailable,
                        _ => Status::Faulted,
                    },
                    occupancy: None,
                    at: m.timestamp,
                }
            }
        }
    };
}
report_2x!(v201);
report_2x!(v21);

/// The operator's availability setting (ChangeAvailability accepted or scheduled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Availability {
    /// In service.
    Operative,
    /// Out of service.
    Inoperative,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    status: Status,
    occupancy: Option<Occupancy>,
    at: DateTime<Utc>,
}

/// The status model of one station. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Station {
    reported: BTreeMap<Target, Held>,
    known: BTreeSet<ConnectorId>,
    operator: BTreeMap<Target, Availability>,
    reservations: BTreeMap<i32, ConnectorId>,
}

impl Station {
    /// A station report. Returns whether it changed anything (an older
    /// report than the one held does not).
    pub fn handle_report(&mut self, r: Report) -> bool {
        if let Target::Connector(c) = r.target {
            self.known.insert(c);
        }
        let new = Held {
            status: r.status,
            occupancy: r.occupancy,
            at: r.at,
        };
        match self.reported.get(&r.target) {
            Some(h) if h.at > r.at || *h == new => false,
            _ => {
                self.reported.insert(r.target, new);
                true
            }
        }
    }

    /// The station booted: reported statuses are unknown until reported again.
    pub fn handle_boot(&mut self) {
        self.reported.clear();
    }

    /// Declares a connector the station has (from its device model or
    /// configuration), so it is listed before its first report.
    pub fn declare(&mut self, c: ConnectorId) {
        self.known.insert(c);
    }

    /// The operator's availability for a station, EVSE or connector (after
    /// the station accepted or scheduled ChangeAvailability). `Operative`
    /// removes the setting.
    pub fn set_availability(&mut self, target: Target, a: Availability) {
        match a {
            Availability::Operative => self.operator.remove(&target),
            Availability::Inoperative => self.operator.insert(target, a),
        };
    }

    /// A reservation the CSMS holds on a connector (until it is used,
    /// cancelled or expires: then [`Station::release`]).
    pub fn reserve(&mut self, reservation_id: i32, c: ConnectorId) {
        self.known.insert(c);
        self.reservations.insert(reservation_id, c);
    }

    /// Ends a reservation. Returns whether it was held.
    pub fn release(&mut self, reservation_id: i32) -> bool {
        self.reservations.remove(&reservation_id).is_some()
    }

    /// The connectors known (declared, reported or reserved), in order.
    pub fn connectors(&self) -> impl Iterator<Item = ConnectorId> + '_ {
        self.known.iter().copied()
    }

    /// 1.6's finer state of an occupied connector, as last reported.
    pub fn occupancy(&self, c: ConnectorId) -> Option<Occupancy> {
        self.reported
            .get(&Target::Connector(c))
            .and_then(|h| h.occupancy)
    }

    /// The effective status of a connector.
    pub fn status(&self, c: ConnectorId) -> Status {
        let own = self.reported.get(&Target::Connector(c)).map(|h| h.status);
        let station = self.reported.get(&Target::Station).map(|h| h.status);
        let reported = [own, station];
        if reported.contains(&Some(Status::Faulted)) {
            return Status::Faulted;
        }
        if reported.contains(&Some(Status::Unavailable)) {
            return Status::Unavailable;
        }
        if own == Some(Status::Occupied) {
            return Status::Occupied;
        }
        let inoperative = [
            Target::Station,
            Target::Evse(c.evse_id),
            Target::Connector(c),
        ]
        .iter()
        .any(|t| self.operator.get(t) == Some(&Availability::Inoperative));
        if inoperative {
            return Status::Unavailable;
        }
        if own == Some(Status::Reserved) || self.reservations.values().any(|r| *r == c) {
            return Status::Reserved;
        }
        own.unwrap_or(Status::Unknown)
    }

    /// The effective status of an EVSE, from its connectors'.
    pub fn evse_status(&self, evse_id: u32) -> Status {
        let all: Vec<Status> = self
            .known
            .iter()
            .filter(|c| c.evse_id == evse_id)
            .map(|c| self.status(*c))
            .collect();
        let any = |s| all.contains(&s);
        if any(Status::Occupied) {
            Status::Occupied
        } else if any(Status::Reserved) {
            Status::Reserved
        } else if any(Status::Available) {
            Status::Available
        } else if !all.is_empty() && all.iter().all(|s| *s == Status::Faulted) {
            Status::Faulted
        } else if any(Status::Unavailable) {
            Status::Unavailable
        } else {
            Status::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, s).unwrap()
    }
    fn rep(target: Target, status: Status, s: u32) -> Report {
        Report {
            target,
            status,
            occupancy: None,
            at: t(s),
        }
    }
    const C1: ConnectorId = ConnectorId {
        evse_id: 1,
        connector_id: 1,
    };
    const C2: ConnectorId = ConnectorId {
        evse_id: 1,
        connector_id: 2,
    };

    #[test]
    fn station_wide_fault_and_unavailability_override_every_connector() {
        let mut s = Station::default();
        s.handle_report(rep(Target::Connector(C1), Status::Occupied, 1));
        s.handle_report(rep(Target::Station, Status::Unavailable, 2));
        assert_eq!(s.status(C1), Status::Unavailable);
        s.handle_report(rep(Target::Station, Status::Faulted, 3));
        assert_eq!(s.status(C1), Status::Faulted);
        s.handle_report(rep(Target::Station, Status::Available, 4));
        assert_eq!(s.status(C1), Status::Occupied);
    }

    #[test]
    fn operator_inoperative_waits_for_the_session_and_beats_a_reservation() {
        let mut s = Station::default();
        s.handle_report(rep(Target::Connector(C1), Status::Occupied, 1));
        s.set_availability(Target::Evse(1), Availability::Inoperative);
        assert_eq!(s.status(C1), Status::Occupied);
        s.handle_report(rep(Target::Connector(C1), Status::Available, 2));
        s.reserve(7, C1);
        assert_eq!(s.status(C1), Status::Unavailable);
        s.set_availability(Target::Evse(1), Availability::Operative);
        assert_eq!(s.status(C1), Status::Reserved);
        assert!(s.release(7));
        assert!(!s.release(7));
        assert_eq!(s.status(C1), Status::Available);
    }

    #[test]
    fn older_reports_are_ignored_and_boot_forgets_reports() {
        let mut s = Station::default();
        assert!(s.handle_report(rep(Target::Connector(C1), Status::Faulted, 5)));
        assert!(!s.handle_report(rep(Target::Connector(C1), Status::Available, 4)));
        assert!(!s.handle_report(rep(Target::Connector(C1), Status::Faulted, 5)));
        assert_eq!(s.status(C1), Status::Faulted);
        s.reserve(1, C2);
        s.handle_boot();
        assert_eq!(s.status(C1), Status::Unknown);
        assert_eq!(s.status(C2), Status::Reserved);
        assert_eq!(s.connectors().collect::<Vec<_>>(), vec![C1, C2]);
    }

    #[test]
    fn evse_status_from_its_connectors() {
        let mut s = Station::default();
        s.declare(C1);
        s.declare(C2);
        assert_eq!(s.evse_status(1), Status::Unknown);
        s.handle_report(rep(Target::Connector(C1), Status::Faulted, 1));
        s.handle_report(rep(Target::Connector(C2), Status::Available, 1));
        assert_eq!(s.evse_status(1), Status::Available);
        s.handle_report(rep(Target::Connector(C2), Status::Occupied, 2));
        assert_eq!(s.evse_status(1), Status::Occupied);
        s.handle_report(rep(Target::Connector(C2), Status::Faulted, 3));
        assert_eq!(s.evse_status(1), Status::Faulted);
        s.handle_report(rep(Target::Connector(C2), Status::Unavailable, 4));
        assert_eq!(s.evse_status(1), Status::Unavailable);
        assert_eq!(s.evse_status(9), Status::Unknown);
    }

    #[test]
    fn typed_reports_of_each_version() {
        let m16: v16::StatusNotificationRequest = serde_json::from_str(
            r#"{"connectorId":0,"errorCode":"GroundFailure","status":"Faulted"}"#,
        )
        .unwrap();
        let r = Report::from_v16(&m16, t(9));
        assert_eq!(
            (r.target, r.status, r.at),
            (Target::Station, Status::Faulted, t(9))
        );
        let m201: v201::StatusNotificationRequest = serde_json::from_str(
            r#"{"timestamp":"2026-01-01T10:00:03Z","connectorStatus":"Reserved","evseId":2,"connectorId":1}"#,
        )
        .unwrap();
        let r = Report::from(&m201);
        assert_eq!(
            (r.target, r.status, r.at),
            (
                Target::Connector(ConnectorId::new(2, 1)),
                Status::Reserved,
                t(3)
            )
        );
        let m21: v21::StatusNotificationRequest = serde_json::from_str(
            r#"{"timestamp":"2026-01-01T10:00:04Z","connectorStatus":"Occupied","evseId":1,"connectorId":2}"#,
        )
        .unwrap();
        assert_eq!(Report::from(&m21).target, Target::Connector(C2));
    }
}
