//! What the CSMS tells the console and every `/api/events` follower as it
//! happens: one typed event per thing that happened, serialized only at the
//! HTTP edge (server-sent events, `{"type": "...", ...}` as documented in
//! the OpenAPI description of `/api/events`).

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;

/// A live event. The `type` field on the wire is the variant's name in
/// snake case.
#[derive(Debug, Clone, Serialize)]
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
        total_cost: Option<Box<RawValue>>,
        /// The payment receipt, when captured.
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
        /// Each one's share, W.
        share_w: u32,
        /// The profiles sent and how each station answered.
        sent: Vec<SentProfile>,
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
#[derive(Debug, Clone, Serialize)]
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
}
