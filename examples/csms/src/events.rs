//! What the CSMS tells the console and every `/api/events` follower as it
//! happens: one typed event per thing that happened, serialized only at the
//! HTTP edge (server-sent events, `{"type": "...", ...}` as documented in
//! the OpenAPI description of `/api/events`). Cluster nodes pass them to
//! each other as that JSON and read them back ([`crate::cluster`]).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A live event. The `type` field on the wire is the variant's name in
/// snake case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A station message arrived.
    Message {
        /// Identity.
        station: String,
        /// Its action.
        action: String,
    },
    /// A station connected.
    Connected {
        /// Identity.
        station: String,
        /// `1.6`, `2.0.1` or `2.1`.
        version: String,
    },
    /// A station's connection closed.
    Disconnected {
        /// Identity.
        station: String,
    },
    /// A connection was refused at the handshake.
    Refused {
        /// HTTP status answered.
        status: u16,
        /// Why.
        reason: String,
    },
    /// A BootNotification was answered.
    Boot {
        /// Identity.
        station: String,
        /// `Accepted`, `Pending` or `Rejected`.
        status: String,
    },
    /// A connector's status changed.
    Status {
        /// Identity.
        station: String,
        /// EVSE (1.6: 0 or the connector).
        evse: i64,
        /// Connector.
        connector: i64,
        /// As the station reported it.
        status: String,
    },
    /// An alert was raised.
    Alert {
        /// Identity (empty: the CSMS's own).
        station: String,
        /// Its kind.
        kind: String,
        /// What was stored with it.
        #[serde(deserialize_with = "raw::json")]
        detail: Box<RawValue>,
    },
    /// An alert was cleared: by id (the operator) or by station and kind
    /// (the station recovered).
    AlertCleared {
        /// Its id, when the operator cleared it.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Identity, when the station's state cleared it.
        #[serde(skip_serializing_if = "Option::is_none")]
        station: Option<String>,
        /// Its kind, with `station`.
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
    },
    /// A transaction message was applied.
    TransactionEvent {
        /// Identity.
        station: String,
        /// Session id.
        session: String,
        /// The action.
        action: String,
    },
    /// A session started.
    SessionStarted {
        /// Identity.
        station: String,
        /// Session id.
        session: String,
    },
    /// A session got a late message after it was settled.
    SessionAmended {
        /// Identity.
        station: String,
        /// Session id.
        session: String,
    },
    /// The operator or the CSMS's recovery closed a session.
    SessionClosed {
        /// Identity.
        station: String,
        /// Session id.
        session: String,
    },
    /// A session was priced and settled.
    SessionCompleted {
        /// Identity.
        station: String,
        /// Session id.
        session: String,
        /// Energy delivered, Wh.
        energy_wh: Decimal,
        /// The CDR's total, when priced.
        total_cost: Option<evproto_ocpi::v221::Price>,
        /// The payment receipt, when captured.
        #[serde(deserialize_with = "raw::optional")]
        receipt: Option<Box<RawValue>>,
    },
    /// Meter values of a session arrived.
    Meter {
        /// Identity.
        station: String,
        /// Session id.
        session: String,
    },
    /// A payment was held at the start.
    PaymentHeld {
        /// Session id.
        session: String,
        /// Held amount.
        amount: Decimal,
    },
    /// A payment hold was refused (no wallet or no credit).
    PaymentRefused {
        /// Session id.
        session: String,
        /// The token.
        id_token: String,
    },
    /// A capture failed (kept in the outbox).
    PaymentFailed {
        /// Session id.
        session: String,
        /// Why.
        reason: String,
    },
    /// Pricing failed (kept in the outbox).
    PricingFailed {
        /// Session id.
        session: String,
        /// Why.
        reason: String,
    },
    /// The operator sent an OCPP call that was answered.
    Operation {
        /// Identity.
        station: String,
        /// The action.
        action: String,
    },
    /// A report message was kept.
    Report {
        /// Identity.
        station: String,
        /// Its kind.
        kind: String,
        /// Its key.
        key: String,
    },
    /// A device-model report part arrived.
    DeviceModel {
        /// Identity.
        station: String,
        /// The GetBaseReport / GetReport request.
        request_id: i32,
    },
    /// A firmware status arrived.
    FirmwareStatus {
        /// Identity.
        station: String,
        /// As reported.
        status: String,
    },
    /// A log upload status arrived.
    LogStatus {
        /// Identity.
        station: String,
        /// As reported.
        status: String,
    },
    /// A reservation changed.
    Reservation {
        /// Identity.
        station: String,
        /// As reported.
        status: String,
    },
    /// A station uploaded a file.
    Upload {
        /// Identity.
        station: String,
        /// File name.
        file: String,
        /// Bytes.
        size: u64,
    },
    /// A firmware campaign started.
    FirmwareCampaign {
        /// Campaign id.
        id: String,
        /// Stations in it.
        stations: usize,
    },
    /// The site limit was shared out again.
    SmartCharging {
        /// The site limit, W.
        site_limit_w: u32,
        /// Sessions sharing it.
        active_sessions: usize,
        /// The even share (the limit over the sessions), W: what a
        /// session gets with no external limit; each session's own share
        /// (the allocation with external limits, K11/K14) is its
        /// `sent[].limit_w`.
        share_w: u32,
        /// The profiles sent and how each station answered.
        sent: Vec<SentProfile>,
    },
    /// A V2X session was sent a setpoint (`crate::v2x`).
    V2xSetpoint {
        /// Identity.
        station: String,
        /// The session.
        session: String,
        /// W as text (negative: discharging).
        setpoint_w: String,
        /// The station's answer, or why it was not reached.
        status: String,
    },
    /// A roaming partner registered.
    OcpiPartnerRegistered {
        /// `CC/PID`.
        party: String,
    },
    /// An object was pushed to a partner.
    OcpiPushed {
        /// `CC/PID`.
        party: String,
        /// OCPI module.
        module: String,
        /// Object key.
        key: String,
    },
    /// A partner's command was answered by a station.
    OcpiCommand {
        /// OCPI command.
        command: String,
        /// Identity.
        station: String,
        /// Its result.
        result: String,
    },
}

/// A charging profile the site allocation sent to a session's station.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentProfile {
    /// Identity.
    pub station: String,
    /// Session id.
    pub session: String,
    /// The session's share, W.
    pub limit_w: u32,
    /// The station's answer status, or why there was none.
    pub status: String,
}

impl LiveEvent {
    /// An alert raised at `station` (empty: the CSMS's own) with what was
    /// stored with it.
    pub fn alert(station: &str, kind: &str, detail: &impl Serialize) -> LiveEvent {
        LiveEvent::Alert {
            station: station.to_owned(),
            kind: kind.to_owned(),
            detail: serde_json::value::to_raw_value(detail)
                .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default()),
        }
    }

    /// As JSON text, for server-sent events.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Its `type` on the wire (the variant's name in snake case).
    pub fn kind(&self) -> &'static str {
        match self {
            LiveEvent::Message { .. } => "message",
            LiveEvent::Connected { .. } => "connected",
            LiveEvent::Disconnected { .. } => "disconnected",
            LiveEvent::Refused { .. } => "refused",
            LiveEvent::Boot { .. } => "boot",
            LiveEvent::Status { .. } => "status",
            LiveEvent::Alert { .. } => "alert",
            LiveEvent::AlertCleared { .. } => "alert_cleared",
            LiveEvent::TransactionEvent { .. } => "transaction_event",
            LiveEvent::SessionStarted { .. } => "session_started",
            LiveEvent::SessionAmended { .. } => "session_amended",
            LiveEvent::SessionClosed { .. } => "session_closed",
            LiveEvent::SessionCompleted { .. } => "session_completed",
            LiveEvent::Meter { .. } => "meter",
            LiveEvent::PaymentHeld { .. } => "payment_held",
            LiveEvent::PaymentRefused { .. } => "payment_refused",
            LiveEvent::PaymentFailed { .. } => "payment_failed",
            LiveEvent::PricingFailed { .. } => "pricing_failed",
            LiveEvent::Operation { .. } => "operation",
            LiveEvent::Report { .. } => "report",
            LiveEvent::DeviceModel { .. } => "device_model",
            LiveEvent::FirmwareStatus { .. } => "firmware_status",
            LiveEvent::LogStatus { .. } => "log_status",
            LiveEvent::Reservation { .. } => "reservation",
            LiveEvent::Upload { .. } => "upload",
            LiveEvent::FirmwareCampaign { .. } => "firmware_campaign",
            LiveEvent::SmartCharging { .. } => "smart_charging",
            LiveEvent::V2xSetpoint { .. } => "v2x_setpoint",
            LiveEvent::OcpiPartnerRegistered { .. } => "ocpi_partner_registered",
            LiveEvent::OcpiPushed { .. } => "ocpi_pushed",
            LiveEvent::OcpiCommand { .. } => "ocpi_command",
        }
    }

    /// The station it is about, when it is about one (an alert of the
    /// CSMS's own names none).
    pub fn station(&self) -> Option<&str> {
        let s = match self {
            LiveEvent::Message { station, .. }
            | LiveEvent::Connected { station, .. }
            | LiveEvent::Disconnected { station }
            | LiveEvent::Boot { station, .. }
            | LiveEvent::Status { station, .. }
            | LiveEvent::Alert { station, .. }
            | LiveEvent::TransactionEvent { station, .. }
            | LiveEvent::SessionStarted { station, .. }
            | LiveEvent::SessionAmended { station, .. }
            | LiveEvent::SessionClosed { station, .. }
            | LiveEvent::SessionCompleted { station, .. }
            | LiveEvent::Meter { station, .. }
            | LiveEvent::Operation { station, .. }
            | LiveEvent::Report { station, .. }
            | LiveEvent::DeviceModel { station, .. }
            | LiveEvent::FirmwareStatus { station, .. }
            | LiveEvent::LogStatus { station, .. }
            | LiveEvent::Reservation { station, .. }
            | LiveEvent::Upload { station, .. }
            | LiveEvent::V2xSetpoint { station, .. }
            | LiveEvent::OcpiCommand { station, .. } => station.as_str(),
            LiveEvent::AlertCleared { station, .. } => station.as_deref()?,
            LiveEvent::Refused { .. }
            | LiveEvent::PaymentHeld { .. }
            | LiveEvent::PaymentRefused { .. }
            | LiveEvent::PaymentFailed { .. }
            | LiveEvent::PricingFailed { .. }
            | LiveEvent::FirmwareCampaign { .. }
            | LiveEvent::SmartCharging { .. }
            | LiveEvent::OcpiPartnerRegistered { .. }
            | LiveEvent::OcpiPushed { .. } => return None,
        };
        (!s.is_empty()).then_some(s)
    }
}

/// JSON kept as text inside an event. serde reads a tagged enum's fields
/// through its own buffer, which `RawValue` cannot come from: the value is
/// read as a JSON tree and written back as text.
mod raw {
    use serde::{Deserialize, Deserializer};
    use serde_json::value::RawValue;

    pub(super) fn json<'de, D: Deserializer<'de>>(d: D) -> Result<Box<RawValue>, D::Error> {
        let tree = serde_json::Value::deserialize(d)?;
        serde_json::value::to_raw_value(&tree).map_err(serde::de::Error::custom)
    }

    pub(super) fn optional<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Box<RawValue>>, D::Error> {
        match Option::<serde_json::Value>::deserialize(d)? {
            Some(tree) => serde_json::value::to_raw_value(&tree)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_they_were_written() {
        let events = [
            LiveEvent::alert(
                "CP1",
                "offline",
                &serde_json::json!({"since": "t", "n": [1, 2]}),
            ),
            LiveEvent::SessionCompleted {
                station: "CP1".into(),
                session: "s1".into(),
                energy_wh: Decimal::new(12345, 1),
                total_cost: Some(evproto_ocpi::v221::Price {
                    excl_vat: Decimal::new(12, 1),
                    incl_vat: Some(Decimal::new(1428, 3)),
                    extra: Default::default(),
                }),
                receipt: Some(RawValue::from_string(r#"{"captured":"1.43"}"#.into()).unwrap()),
            },
            LiveEvent::Boot {
                station: "CP2".into(),
                status: "Accepted".into(),
            },
        ];
        for e in events {
            let text = e.to_json();
            let back: LiveEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back.to_json(), text);
        }
    }

    /// `kind` is the `type` on the wire and `station` the identity the
    /// event names (none for the CSMS's own alerts and for events of no
    /// station).
    #[test]
    fn kind_and_station_are_the_wires() {
        let events = [
            (
                LiveEvent::alert("CP1", "offline", &serde_json::json!({})),
                Some("CP1"),
            ),
            (LiveEvent::alert("", "store", &serde_json::json!({})), None),
            (
                LiveEvent::AlertCleared {
                    id: None,
                    station: Some("CP2".into()),
                    kind: Some("offline".into()),
                },
                Some("CP2"),
            ),
            (
                LiveEvent::Boot {
                    station: "CP3".into(),
                    status: "Accepted".into(),
                },
                Some("CP3"),
            ),
            (
                LiveEvent::TransactionEvent {
                    station: "CP4".into(),
                    session: "s".into(),
                    action: "TransactionEvent".into(),
                },
                Some("CP4"),
            ),
            (
                LiveEvent::PaymentFailed {
                    session: "s".into(),
                    reason: "r".into(),
                },
                None,
            ),
            (
                LiveEvent::OcpiPartnerRegistered {
                    party: "NL-EXA".into(),
                },
                None,
            ),
            (
                LiveEvent::V2xSetpoint {
                    station: "CP5".into(),
                    session: "s".into(),
                    setpoint_w: "-1000".into(),
                    status: "Accepted".into(),
                },
                Some("CP5"),
            ),
        ];
        for (e, station) in events {
            let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(v["type"], e.kind(), "{v}");
            assert_eq!(e.station(), station, "{v}");
        }
    }

    /// A CDR total reads back as the same amounts (by value: a number's
    /// trailing zeros are not kept through the tagged event).
    #[test]
    fn a_completed_sessions_total_reads_back_typed() {
        let total = evproto_ocpi::v221::Price {
            excl_vat: Decimal::new(120, 2),
            incl_vat: Some(Decimal::new(14280, 4)),
            extra: Default::default(),
        };
        let event = LiveEvent::SessionCompleted {
            station: "CP1".into(),
            session: "s1".into(),
            energy_wh: Decimal::new(12345, 1),
            total_cost: Some(total.clone()),
            receipt: None,
        };
        let back: LiveEvent = serde_json::from_str(&event.to_json()).unwrap();
        let LiveEvent::SessionCompleted { total_cost, .. } = back else {
            panic!("read back as another event: {back:?}");
        };
        assert_eq!(total_cost, Some(total));
    }
}
