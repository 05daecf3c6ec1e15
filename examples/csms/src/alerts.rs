//! Alerts in words: the sentence an operator reads for an alert, made from
//! its kind and the detail the CSMS stored with it (each kind's detail is
//! read into the typed shape it was written from; a detail that does not
//! fit, from an older version, still gets a sentence naming the kind).

use serde::Deserialize;

/// `fault`: a connector reported Faulted (or an error code).
#[derive(Deserialize)]
struct Fault {
    evse: i64,
    connector: i64,
    status: String,
    error_code: Option<String>,
}

/// `security`: a SecurityEventNotification.
#[derive(Deserialize)]
struct Security {
    r#type: String,
    tech_info: Option<String>,
}

/// `event`: an alerting NotifyEvent.
#[derive(Deserialize)]
struct Event {
    component: String,
    variable: String,
    value: String,
    tech_code: Option<String>,
}

/// `firmware`: a failed firmware update.
#[derive(Deserialize)]
struct Operation {
    status: String,
    request_id: Option<i64>,
}

/// `battery_swap`: a swap that needs the operator (`crate::battery_swap`).
#[derive(Deserialize)]
struct Swap {
    request_id: i64,
    reason: String,
    id_token: String,
    status: Option<String>,
}

/// `payment`: a session's payment not captured.
#[derive(Deserialize)]
struct Payment {
    session: String,
    reason: String,
}

/// `refused_connection`: a station refused at the handshake.
#[derive(Deserialize)]
struct Refused {
    status: u16,
    reason: String,
}

/// `report_capped`: a report over its row cap.
#[derive(Deserialize)]
struct Capped {
    report: String,
    max_rows: i64,
    dropped: u64,
}

/// `certificate`: a certificate request the CSMS cannot serve.
#[derive(Deserialize)]
struct Certificate {
    action: String,
    reason: String,
}

fn read<'a, T: Deserialize<'a>>(detail: &'a str) -> Option<T> {
    serde_json::from_str(detail).ok()
}

/// The sentence for an alert of `kind` at `station` (empty: not a
/// station's) with its stored `detail` (JSON text).
pub fn message(kind: &str, station: &str, detail: &str) -> String {
    let at = if station.is_empty() {
        "The CSMS".to_owned()
    } else {
        format!("Station {station}")
    };
    let worded = match kind {
        "offline" => Some(format!("{at} went offline.")),
        "fault" => read::<Fault>(detail).map(|f| {
            let code = f
                .error_code
                .filter(|c| c != "NoError")
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            if f.evse == 0 && f.connector == 0 {
                format!("{at} reports {}{code}.", f.status)
            } else {
                format!(
                    "{at}: EVSE {} connector {} is {}{code}.",
                    f.evse, f.connector, f.status
                )
            }
        }),
        "security" => read::<Security>(detail).map(|s| match s.tech_info {
            Some(t) if !t.is_empty() => {
                format!("{at} reported the security event {} ({t}).", s.r#type)
            }
            _ => format!("{at} reported the security event {}.", s.r#type),
        }),
        "event" => read::<Event>(detail).map(|e| {
            let code = e
                .tech_code
                .map(|c| format!(" (code {c})"))
                .unwrap_or_default();
            format!("{at}: {}.{} is {}{code}.", e.component, e.variable, e.value)
        }),
        "firmware" => read::<Operation>(detail).map(|o| match o.request_id {
            Some(r) => format!("{at}: firmware update {r} failed ({}).", o.status),
            None => format!("{at}: firmware update failed ({}).", o.status),
        }),
        "publish_firmware" => read::<Operation>(detail)
            .map(|o| format!("{at}: publishing firmware failed ({}).", o.status)),
        "payment" => read::<Payment>(detail).map(|p| {
            format!(
                "The payment of session {} was not captured: {}.",
                p.session, p.reason
            )
        }),
        "refused_connection" => read::<Refused>(detail).map(|r| {
            format!(
                "A station's connection was refused (HTTP {}): {}.",
                r.status, r.reason
            )
        }),
        "report_capped" => read::<Capped>(detail).map(|c| {
            format!(
                "{at}: the {} report is capped at {} rows; {} were dropped.",
                c.report, c.max_rows, c.dropped
            )
        }),
        "certificate" => read::<Certificate>(detail)
            .map(|c| format!("{at} asked for {}: {}.", c.action, c.reason)),
        "der_alarm" => Some(format!("{at} raised a DER alarm.")),
        "cost" => read::<crate::local_cost::CostMismatch>(detail).map(|c| {
            let theirs = match (c.station_minor, &c.failure) {
                (_, Some(f)) => format!("could not calculate it ({f})"),
                (Some(m), None) => format!("reported {m} {} minor units", c.station_currency),
                (None, None) => "reported no usable total".to_owned(),
            };
            format!(
                "{at}: the cost of session {} differs: the station {theirs}, the CSMS charges {} {} minor units.",
                c.session, c.csms_minor, c.currency
            )
        }),
        "composite_schedule" => read::<crate::smart::CompositeMismatch>(detail).map(|m| {
            let w = |v: Option<rust_decimal::Decimal>| v.map_or("no limit".to_owned(), |v| format!("{v} W"));
            format!(
                "{at}: EVSE {}'s composite schedule is {}, the CSMS installed {}.",
                m.evse,
                w(m.reported_w),
                w(m.expected_w)
            )
        }),
        "battery_swap" => read::<Swap>(detail).map(|w| {
            let status = w.status.map(|s| format!(", {s}")).unwrap_or_default();
            format!(
                "{at}: battery swap {} for {}{status}: {}.",
                w.request_id, w.id_token, w.reason
            )
        }),
        "settlement" => Some(format!(
            "{at}: a payment terminal's settlement needs a look."
        )),
        _ => None,
    };
    worded.unwrap_or_else(|| format!("{at}: {} alert.", kind.replace('_', " ")))
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn each_kind_in_words() {
        assert_eq!(
            message(
                "fault",
                "CP1",
                r#"{"evse":1,"connector":2,"status":"Faulted","error_code":"GroundFailure"}"#
            ),
            "Station CP1: EVSE 1 connector 2 is Faulted (GroundFailure)."
        );
        assert_eq!(
            message("offline", "CP1", r#"{"since":"2026-01-01T00:00:00Z"}"#),
            "Station CP1 went offline."
        );
        assert_eq!(
            message(
                "refused_connection",
                "",
                r#"{"status":401,"reason":"wrong password for CP9"}"#
            ),
            "A station's connection was refused (HTTP 401): wrong password for CP9."
        );
        assert_eq!(
            message(
                "security",
                "CP2",
                r#"{"type":"TamperDetectionActivated","tech_info":null,"timestamp":"x"}"#
            ),
            "Station CP2 reported the security event TamperDetectionActivated."
        );
        assert_eq!(
            message(
                "battery_swap",
                "SW1",
                r#"{"request_id":4,"reason":"a swap for a token the CSMS does not accept","id_token":"X","status":"Blocked"}"#
            ),
            "Station SW1: battery swap 4 for X, Blocked: a swap for a token the CSMS does not accept."
        );
        // a detail of another shape still reads as a sentence
        assert_eq!(message("fault", "CP1", "{}"), "Station CP1: fault alert.");
        assert_eq!(
            message("brand_new_kind", "", "null"),
            "The CSMS: brand new kind alert."
        );
    }
}
