//! Battery swapping (OCPP 2.1 block S): a swap station takes a driver's
//! depleted battery in and hands a charged one out, and tells the CSMS
//! with `BatterySwap` (`BatteryIn`, `BatteryOut`, `BatteryOutTimeout`),
//! each event naming a request id, the driver's token and the batteries
//! (slot, serial number, state of charge and health).
//!
//! - The driver authorizes at the station (S01: `Authorize`, answered as any
//!   token is), or the operator starts the swap
//!   (`POST /api/stations/{id}/battery-swaps`: `RequestBatterySwap`, S02),
//!   for a token the CSMS accepts; the request is kept with the station's
//!   answer.
//! - Each `BatterySwap` is kept (as the station's report `battery_swap`,
//!   key: the request id) and judged ([`judge`], sans-IO): a swap for a token
//!   the CSMS does not accept (not one it requested), a swap naming a
//!   request the operator made for another token, and a battery not taken
//!   out in time (`BatteryOutTimeout`) raise a `battery_swap` alert.
//! - `GET /api/stations/{id}/battery-swaps`: per request id, newest first,
//!   what the operator requested and the station's answer, the events in
//!   order, the batteries in and out, and where the swap stands.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use evproto_csms_core::authorization::{Purpose, Status};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v21, BoundedString};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{body, ApiError, ApiResult};
use crate::App;

/// The report kind a `BatterySwap` is kept under.
pub(crate) const SWAP: &str = "battery_swap";
/// The report kind the operator's `RequestBatterySwap` is kept under.
pub(crate) const REQUEST: &str = "battery_swap_request";
/// How many rows of one kind a view reads at most.
const MAX_ROWS: i64 = 1_000;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/stations/{id}/battery-swaps", get(list).post(request))
}

/// A swap the operator requested, as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Requested {
    /// The driver's token.
    pub id_token: String,
    /// Its type (`ISO14443`, `eMAID`, ...).
    pub token_type: String,
    /// The station's answer: `Accepted` or `Rejected`.
    pub status: String,
    /// The station's reason, when it gave one.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a swap event needs the operator (the `battery_swap` alert's detail).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Finding {
    /// The request id the event named.
    pub request_id: i32,
    /// What was wrong.
    pub reason: &'static str,
    /// The token the event named.
    pub id_token: String,
    /// The token's status at the CSMS, when that is the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

/// What the CSMS makes of one `BatterySwap` event: `None` when all is in
/// order. `requested`: the operator's request of that id, if any;
/// `status`: the token's status at the CSMS (asked only when the swap was
/// not requested: a requested swap was judged when it was requested).
pub(crate) fn judge(
    req: &v21::BatterySwapRequest,
    requested: Option<&Requested>,
    status: Option<Status>,
) -> Option<Finding> {
    let token = req.id_token.id_token.as_str();
    let finding = |reason, status| Finding {
        request_id: req.request_id,
        reason,
        id_token: token.to_owned(),
        status,
    };
    if req.event_type == v21::BatterySwapEventEnumType::BatteryOutTimeout {
        return Some(finding(
            "the charged battery was not taken out in time",
            None,
        ));
    }
    match requested {
        Some(r) if !r.id_token.eq_ignore_ascii_case(token) => Some(finding(
            "the swap names a request the operator made for another token",
            None,
        )),
        Some(_) => None,
        None => match status {
            Some(Status::Accepted) | None => None,
            Some(s) => Some(finding(
                "a swap for a token the CSMS does not accept",
                Some(status_name(s)),
            )),
        },
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Accepted => "Accepted",
        Status::Blocked => "Blocked",
        Status::Expired => "Expired",
        Status::Invalid => "Invalid",
        Status::NoCredit => "NoCredit",
        Status::ConcurrentTx => "ConcurrentTx",
        Status::NotAllowedTypeEvse => "NotAllowedTypeEvse",
        Status::NotAtThisLocation => "NotAtThisLocation",
        Status::NotAtThisTime => "NotAtThisTime",
        Status::Unknown => "Unknown",
        _ => "Invalid",
    }
}

/// The operator's request of `request_id` at `station`, if one was made.
///
/// # Errors
///
/// The store failed.
pub(crate) async fn requested(
    app: &App,
    station: &str,
    request_id: i32,
) -> crate::store::Result<Option<Requested>> {
    let key = request_id.to_string();
    Ok(app
        .store
        .station_reports(station, Some(REQUEST), MAX_ROWS)
        .await?
        .into_iter()
        .find(|r| r.key == key)
        .and_then(|r| serde_json::from_value(r.body).ok()))
}

/// Judges a station's `BatterySwap` ([`judge`]): the detail of the alert to
/// raise, if any.
///
/// # Errors
///
/// The store failed.
pub(crate) async fn judged(
    app: &App,
    station: &str,
    req: &v21::BatterySwapRequest,
) -> crate::store::Result<Option<Finding>> {
    let requested = requested(app, station, req.request_id).await?;
    let status = match &requested {
        Some(_) => None,
        None => Some(
            crate::authorize::decide(
                app,
                station,
                req.id_token.id_token.as_str(),
                Purpose::Authorize,
                None,
            )
            .await?
            .status,
        ),
    };
    Ok(judge(req, requested.as_ref(), status))
}

/// What `POST /api/stations/{id}/battery-swaps` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    /// The driver's token.
    id_token: String,
    /// Its type (default: the registered one, else `ISO14443`).
    #[serde(default, rename = "type")]
    token_type: Option<String>,
    /// The request id (default: the station's highest plus one).
    #[serde(default)]
    request_id: Option<i32>,
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason)
}

/// The highest request id a station's swaps and requests used.
async fn highest_request_id(app: &App, station: &str) -> crate::store::Result<i32> {
    let mut highest = 0;
    for kind in [SWAP, REQUEST] {
        for r in app
            .store
            .station_reports(station, Some(kind), MAX_ROWS)
            .await?
        {
            highest = highest.max(r.key.parse::<i32>().unwrap_or(0));
        }
    }
    Ok(highest)
}

/// `POST /api/stations/{id}/battery-swaps`: `RequestBatterySwap` (S02) for
/// a token the CSMS accepts (422 otherwise), to a connected 2.1 station
/// (400 for another version); the request kept with the station's answer:
/// 201 when it accepted, 200 with its answer when it did not.
async fn request(State(app): State<Arc<App>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let b: RequestBody = body(&bytes)?;
    if b.id_token.is_empty() || b.id_token.chars().count() > 255 {
        return Err(bad("id_token: 1 to 255 characters"));
    }
    if b.token_type
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.chars().count() > 20)
    {
        return Err(bad("type: 1 to 20 characters"));
    }
    if b.request_id.is_some_and(|r| r < 0) {
        return Err(bad("request_id: not negative"));
    }
    let version = app.gateway.connection(&id).await?;
    if version != ProtocolVersion::V21 {
        return Err(bad(format!(
            "battery swapping is OCPP 2.1; {id} speaks {version}"
        )));
    }
    let decision =
        crate::authorize::decide(&app, &id, &b.id_token, Purpose::Authorize, None).await?;
    if decision.status != Status::Accepted {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "token {} is {}: no swap for it",
                b.id_token,
                status_name(decision.status)
            ),
        ));
    }
    let token_type = match b.token_type {
        Some(t) => t,
        None => app
            .store
            .token(&b.id_token)
            .await?
            .map_or_else(|| "ISO14443".to_owned(), |t| t.token_type),
    };
    let request_id = match b.request_id {
        Some(r) => r,
        None => highest_request_id(&app, &id).await?.saturating_add(1),
    };
    let invalid = |e: evproto_ocpp_types::TooLong| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    };
    let call = v21::RequestBatterySwapRequest {
        id_token: v21::IdTokenType {
            additional_info: None,
            id_token: BoundedString::new(b.id_token.clone()).map_err(invalid)?,
            r#type: BoundedString::new(token_type.clone()).map_err(invalid)?,
            custom_data: None,
        },
        request_id,
        custom_data: None,
    };
    let answer = app
        .gateway
        .call::<v21::action::RequestBatterySwap>(&id, call)
        .await?;
    let kept = Requested {
        id_token: b.id_token,
        token_type,
        status: answer.status.as_str().to_owned(),
        reason: answer
            .status_info
            .as_ref()
            .map(|s| s.reason_code.as_str().to_owned()),
    };
    app.store
        .add_station_report(
            &id,
            REQUEST,
            &request_id.to_string(),
            &serde_json::to_value(&kept).unwrap_or(Value::Null),
            app.config.station_limits.max_report_rows,
        )
        .await?;
    let accepted = answer.status == v21::GenericStatusEnumType::Accepted;
    let out = Json(json!({
        "request_id": request_id,
        "answer": serde_json::to_value(&answer).unwrap_or(Value::Null),
    }));
    Ok(if accepted {
        (StatusCode::CREATED, out).into_response()
    } else {
        out.into_response()
    })
}

/// One battery as a swap event named it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct BatteryView {
    evse_id: i32,
    serial_number: String,
    soc: f64,
    soh: f64,
}

/// One event of a swap.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct EventView {
    /// `BatteryIn`, `BatteryOut`, `BatteryOutTimeout`.
    event: String,
    /// When the CSMS received it.
    at: String,
}

/// One swap as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct SwapView {
    request_id: i32,
    /// What the operator requested, if the swap was started remotely.
    requested: Option<Requested>,
    /// The driver's token (the request's, else the events').
    id_token: Option<String>,
    /// `Requested`, `Refused` (the station did not accept the request),
    /// `BatteryIn`, `Swapped` (a battery went out) or `OutTimeout`.
    state: &'static str,
    events: Vec<EventView>,
    /// The batteries the driver put in.
    batteries_in: Vec<BatteryView>,
    /// The batteries the driver took out.
    batteries_out: Vec<BatteryView>,
    /// The last event's (or the request's) arrival.
    updated_at: String,
}

/// `GET /api/stations/{id}/battery-swaps`.
async fn list(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let mut swaps: BTreeMap<i32, SwapView> = BTreeMap::new();
    let blank = |request_id| SwapView {
        request_id,
        requested: None,
        id_token: None,
        state: "Requested",
        events: Vec::new(),
        batteries_in: Vec::new(),
        batteries_out: Vec::new(),
        updated_at: String::new(),
    };
    // oldest first: the last event of a swap says where it stands
    let mut requests = app
        .store
        .station_reports(&id, Some(REQUEST), MAX_ROWS)
        .await?;
    requests.reverse();
    for r in requests {
        let (Ok(request_id), Ok(kept)) =
            (r.key.parse(), serde_json::from_value::<Requested>(r.body))
        else {
            continue;
        };
        let s = swaps.entry(request_id).or_insert_with(|| blank(request_id));
        s.state = if kept.status == "Accepted" {
            "Requested"
        } else {
            "Refused"
        };
        s.id_token = Some(kept.id_token.clone());
        s.requested = Some(kept);
        s.updated_at = r.received_at;
    }
    let mut events = app.store.station_reports(&id, Some(SWAP), MAX_ROWS).await?;
    events.reverse();
    for r in events {
        let Ok(e) = serde_json::from_value::<v21::BatterySwapRequest>(r.body) else {
            continue;
        };
        let s = swaps
            .entry(e.request_id)
            .or_insert_with(|| blank(e.request_id));
        let batteries: Vec<BatteryView> = e
            .battery_data
            .iter()
            .map(|b| BatteryView {
                evse_id: b.evse_id,
                serial_number: b.serial_number.as_str().to_owned(),
                soc: b.so_c.to_f64().unwrap_or_default(),
                soh: b.so_h.to_f64().unwrap_or_default(),
            })
            .collect();
        s.state = match e.event_type {
            v21::BatterySwapEventEnumType::BatteryIn => {
                s.batteries_in.extend(batteries);
                "BatteryIn"
            }
            v21::BatterySwapEventEnumType::BatteryOut => {
                s.batteries_out.extend(batteries);
                "Swapped"
            }
            _ => "OutTimeout",
        };
        s.id_token
            .get_or_insert_with(|| e.id_token.id_token.as_str().to_owned());
        s.events.push(EventView {
            event: e.event_type.as_str().to_owned(),
            at: r.received_at.clone(),
        });
        s.updated_at = r.received_at;
    }
    let mut out: Vec<SwapView> = swaps.into_values().collect();
    out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
    Ok(Json(json!({ "items": out })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, token: &str) -> v21::BatterySwapRequest {
        serde_json::from_value(json!({"eventType": kind, "requestId": 4,
            "idToken": {"idToken": token, "type": "ISO14443"},
            "batteryData": [{"evseId": 1, "serialNumber": "B-1", "soC": 80, "soH": 95}]}))
        .unwrap()
    }

    fn requested(token: &str) -> Requested {
        Requested {
            id_token: token.into(),
            token_type: "ISO14443".into(),
            status: "Accepted".into(),
            reason: None,
        }
    }

    #[test]
    fn a_swap_for_an_accepted_token_or_the_requested_one_is_in_order() {
        assert_eq!(
            judge(&event("BatteryIn", "A"), None, Some(Status::Accepted)),
            None
        );
        assert_eq!(
            judge(&event("BatteryOut", "A"), None, Some(Status::Accepted)),
            None
        );
        // the request's token, in another case
        assert_eq!(
            judge(&event("BatteryIn", "abc"), Some(&requested("ABC")), None),
            None
        );
    }

    #[test]
    fn a_swap_for_a_token_not_accepted_is_found() {
        let f = judge(&event("BatteryIn", "X"), None, Some(Status::Blocked)).unwrap();
        assert_eq!(f.request_id, 4);
        assert_eq!(f.status, Some("Blocked"));
        assert_eq!(f.id_token, "X");
        let f = judge(&event("BatteryOut", "X"), None, Some(Status::Unknown)).unwrap();
        assert_eq!(f.status, Some("Unknown"));
    }

    #[test]
    fn a_swap_naming_anothers_request_and_a_timeout_are_found() {
        let f = judge(&event("BatteryIn", "B"), Some(&requested("A")), None).unwrap();
        assert!(f.reason.contains("another token"), "{}", f.reason);
        let f = judge(
            &event("BatteryOutTimeout", "A"),
            Some(&requested("A")),
            None,
        )
        .unwrap();
        assert!(f.reason.contains("not taken out"), "{}", f.reason);
    }
}
