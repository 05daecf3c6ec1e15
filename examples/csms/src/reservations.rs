//! Reservations (OCPP 2.0.1 block H, 1.6 Reservation profile): the
//! operator reserves an EVSE (1.6: a connector) for a driver's token and
//! cancels it; the CSMS keeps each reservation with its state and honours
//! it at a transaction's start.
//!
//! - `POST /api/stations/{id}/reservations` sends `ReserveNow` (H01) and
//!   keeps the reservation once the station accepted it;
//!   `DELETE /api/stations/{id}/reservations/{reservation_id}` sends
//!   `CancelReservation` (H02); `GET /api/stations/{id}/reservations` lists
//!   them, newest first, with their state (`Reserved`, `Used`, `Cancelled`,
//!   `Expired`, `Removed`).
//! - A station's `ReservationStatusUpdate` (2.x H04: `Expired`, `Removed`)
//!   ends the reservation it names ([`reported`]).
//! - At a start ([`honoured`], 2.x H03, 1.6 `StartTransaction`
//!   `reservationId`): the reservation the start names, or the one held on
//!   its EVSE (connector), is used by it when the token is the
//!   reservation's or of its group; another token on a reserved EVSE, or
//!   naming a reservation not its own, is refused (`NotAtThisTime`; 1.6
//!   has no such status: `Invalid`), and the reservation stays.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use evproto_csms_core::authorization::{self, Decision};
use evproto_csms_core::token::IdToken;
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21, BoundedString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{body, ApiError, ApiResult};
use crate::gateway::{StationCallError, StationGateway};
use crate::store::{Reservation, ReservationState};
use crate::App;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/stations/{id}/reservations", get(list).post(reserve))
        .route(
            "/api/stations/{id}/reservations/{reservation_id}",
            delete(cancel),
        )
}

/// A reservation as `POST /api/stations/{id}/reservations` takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReservationBody {
    /// The reservation's id (default: the station's highest plus one).
    #[serde(default)]
    id: Option<i32>,
    /// The EVSE (1.6: the connector; 0 or absent: any).
    #[serde(default)]
    evse_id: Option<i32>,
    /// The driver's token.
    id_token: String,
    /// Its group (1.6 `parentIdTag`, 2.x `groupIdToken`): any token of the
    /// group may use the reservation; default: the token's registered group.
    #[serde(default)]
    group_id: Option<String>,
    /// Until when (RFC 3339, in the future).
    expires_at: DateTime<Utc>,
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason)
}

/// 404 not connected, 503 when the cluster's registry cannot tell.
async fn connected(app: &App, station: &str) -> Result<ProtocolVersion, ApiError> {
    Ok(app.gateway.connection(station).await?)
}

/// `POST /api/stations/{id}/reservations`: `ReserveNow`; 201 with the
/// reservation kept and the station's answer when it accepted, else 200
/// with `reservation` null and its answer (`Occupied`, `Faulted`, ...).
async fn reserve(State(app): State<Arc<App>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let b: ReservationBody = body(&bytes)?;
    let fits = |v: &str| !v.is_empty() && v.chars().count() <= 20;
    if !fits(&b.id_token) {
        return Err(bad(
            "id_token: 1 to 20 characters (the OCPP 1.6 idTag limit)",
        ));
    }
    if b.group_id.as_deref().is_some_and(|g| !fits(g)) {
        return Err(bad("group_id: 1 to 20 characters (1.6 parentIdTag)"));
    }
    if b.expires_at <= Utc::now() {
        return Err(bad("expires_at: in the future"));
    }
    if b.id.is_some_and(|i| i < 0) || b.evse_id.is_some_and(|e| e < 0) {
        return Err(bad("id and evse_id: not negative"));
    }
    let version = connected(&app, &id).await?;
    let registered = app.store.token(&b.id_token).await?;
    let group_id = b
        .group_id
        .or_else(|| registered.as_ref().and_then(|t| t.group_id.clone()));
    let token_type = registered.map_or_else(|| "ISO14443".to_owned(), |t| t.token_type);
    let reservation_id = match b.id {
        Some(i) => i,
        None => app.store.next_reservation_id(&id).await?,
    };
    let evse_id = b.evse_id.filter(|e| *e > 0);
    let request = Request {
        reservation_id,
        evse_id,
        id_token: &b.id_token,
        token_type: &token_type,
        group_id: group_id.as_deref(),
        expires_at: b.expires_at,
    };
    let (status, answer) = reserve_now(&app.gateway, &id, version, &request).await?;
    if status != "Accepted" {
        return Ok(Json(json!({"reservation": null, "answer": answer})).into_response());
    }
    let now = crate::store::now();
    let kept = Reservation {
        station_id: id.clone(),
        id: reservation_id,
        evse_id,
        id_token: Some(b.id_token),
        group_id,
        expires_at: Some(b.expires_at),
        state: ReservationState::Reserved,
        session_id: None,
        created_at: now.clone(),
        updated_at: now,
    };
    app.store.put_reservation(&kept).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"reservation": kept.shown(Utc::now()), "answer": answer})),
    )
        .into_response())
}

/// `GET /api/stations/{id}/reservations`: newest first; a reservation past
/// its expiry that nothing used shows as `Expired`.
async fn list(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let now = Utc::now();
    let items: Vec<Reservation> = app
        .store
        .reservations(&id)
        .await?
        .into_iter()
        .map(|r| r.shown(now))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// `DELETE /api/stations/{id}/reservations/{reservation_id}`:
/// `CancelReservation`; the reservation is `Cancelled` once the station
/// accepted. 404 for a reservation the CSMS does not hold.
async fn cancel(
    State(app): State<Arc<App>>,
    Path((id, reservation_id)): Path<(String, String)>,
) -> ApiResult {
    let reservation_id: i32 = reservation_id
        .parse()
        .map_err(|_| bad("reservation_id: an integer"))?;
    let Some(r) = app.store.reservation(&id, reservation_id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no reservation {reservation_id} at {id}"),
        ));
    };
    let version = connected(&app, &id).await?;
    let (status, answer) = cancel_reservation(&app.gateway, &id, version, reservation_id).await?;
    let r = if status == "Accepted" {
        app.store
            .set_reservation_state(&id, reservation_id, ReservationState::Cancelled, None)
            .await?;
        Reservation {
            state: ReservationState::Cancelled,
            ..r
        }
    } else {
        r
    };
    Ok(Json(json!({"reservation": r.shown(Utc::now()), "answer": answer})).into_response())
}

/// What `ReserveNow` carries, version-independent.
struct Request<'a> {
    reservation_id: i32,
    evse_id: Option<i32>,
    id_token: &'a str,
    token_type: &'a str,
    group_id: Option<&'a str>,
    expires_at: DateTime<Utc>,
}

/// A station's answer: its status and the answer as JSON.
type Answer = (&'static str, Value);

fn answer<R: serde::Serialize>(status: &'static str, r: &R) -> Answer {
    (status, serde_json::to_value(r).unwrap_or(Value::Null))
}

async fn reserve_now(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    r: &Request<'_>,
) -> Result<Answer, StationCallError> {
    let bad = |e| StationCallError::rejected(station, e);
    match version {
        ProtocolVersion::V16 => {
            let request = v16::ReserveNowRequest {
                connector_id: r.evse_id.unwrap_or(0),
                expiry_date: r.expires_at,
                id_tag: BoundedString::new(r.id_token.to_owned()).map_err(bad)?,
                parent_id_tag: r
                    .group_id
                    .map(|g| BoundedString::new(g.to_owned()).map_err(bad))
                    .transpose()?,
                reservation_id: r.reservation_id,
            };
            let a = gateway
                .call::<v16::action::ReserveNow>(station, request)
                .await?;
            Ok(answer(a.status.as_str(), &a))
        }
        ProtocolVersion::V201 => {
            let token = |id: &str, kind: &str| {
                Ok::<_, StationCallError>(v201::IdTokenType {
                    custom_data: None,
                    additional_info: None,
                    id_token: BoundedString::new(id.to_owned()).map_err(bad)?,
                    r#type: kind.parse().unwrap_or(v201::IdTokenEnumType::ISO14443),
                })
            };
            let request = v201::ReserveNowRequest {
                custom_data: None,
                id: r.reservation_id,
                expiry_date_time: r.expires_at,
                connector_type: None,
                id_token: token(r.id_token, r.token_type)?,
                evse_id: r.evse_id,
                group_id_token: r.group_id.map(|g| token(g, "Central")).transpose()?,
            };
            let a = gateway
                .call::<v201::action::ReserveNow>(station, request)
                .await?;
            Ok(answer(a.status.as_str(), &a))
        }
        _ => {
            let token = |id: &str, kind: &str| {
                Ok::<_, StationCallError>(v21::IdTokenType {
                    additional_info: None,
                    id_token: BoundedString::new(id.to_owned()).map_err(bad)?,
                    r#type: BoundedString::new(kind.to_owned()).map_err(bad)?,
                    custom_data: None,
                })
            };
            let request = v21::ReserveNowRequest {
                id: r.reservation_id,
                expiry_date_time: r.expires_at,
                connector_type: None,
                id_token: token(r.id_token, r.token_type)?,
                evse_id: r.evse_id,
                group_id_token: r.group_id.map(|g| token(g, "Central")).transpose()?,
                custom_data: None,
            };
            let a = gateway
                .call::<v21::action::ReserveNow>(station, request)
                .await?;
            Ok(answer(a.status.as_str(), &a))
        }
    }
}

async fn cancel_reservation(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    reservation_id: i32,
) -> Result<Answer, StationCallError> {
    match version {
        ProtocolVersion::V16 => {
            let request = v16::CancelReservationRequest { reservation_id };
            let a = gateway
                .call::<v16::action::CancelReservation>(station, request)
                .await?;
            Ok(answer(a.status.as_str(), &a))
        }
        ProtocolVersion::V201 => {
            let request = v201::CancelReservationRequest {
                custom_data: None,
                reservation_id,
            };
            let a = gateway
                .call::<v201::action::CancelReservation>(station, request)
                .await?;
            Ok(answer(a.status.as_str(), &a))
        }
        _ => {
            let request = v21::CancelReservationRequest {
                reservation_id,
                custom_data: None,
            };
            let a = gateway
                .call::<v21::action::CancelReservation>(station, request)
                .await?;
            Ok(answer(a.status.as_str(), &a))
        }
    }
}

/// A station reported a reservation's end (2.x `ReservationStatusUpdate`:
/// `Expired` or `Removed`): kept as its state (a reservation the CSMS did
/// not make, e.g. through the generic call, is kept with what is known).
///
/// # Errors
///
/// The store failed.
pub(crate) async fn reported(
    app: &App,
    station: &str,
    reservation_id: i32,
    status: &str,
) -> crate::store::Result<()> {
    let state = match status {
        "Expired" => ReservationState::Expired,
        _ => ReservationState::Removed,
    };
    app.store
        .reservation_reported(station, reservation_id, state)
        .await
}

/// Whether `token` (with its registered group) may use `r`: it is the
/// reservation's token or of its group (compared as OCPP compares tokens).
async fn may_use(app: &App, r: &Reservation, token: &str) -> crate::store::Result<bool> {
    let key = |t: &str| IdToken::id_tag(t).key();
    if r.id_token.as_deref().is_some_and(|t| key(t) == key(token)) {
        return Ok(true);
    }
    let Some(group) = &r.group_id else {
        return Ok(false);
    };
    let own_group = app
        .store
        .token_record(token)
        .await?
        .and_then(|t| t.group_id);
    Ok(own_group.is_some_and(|g| key(&g) == key(group)))
}

/// The reservation a start honours (2.x H03, 1.6 `reservationId`), given
/// the decision for its token: a start naming a reservation of the station
/// (`reservation_id`), or on an EVSE (1.6: connector) with a reservation
/// in force, uses it when its token may (the reservation is then `Used` by
/// `session`) and is otherwise refused with `NotAtThisTime` (1.6:
/// `Invalid`); the decision as it was when no reservation applies or the
/// token is refused anyway.
///
/// # Errors
///
/// The store failed.
pub(crate) async fn honoured(
    app: &App,
    station: &str,
    evse: Option<i64>,
    reservation_id: Option<i32>,
    token: &str,
    session: &str,
    decision: Decision,
) -> crate::store::Result<Decision> {
    if decision.status != authorization::Status::Accepted {
        return Ok(decision);
    }
    let now = Utc::now();
    let named = match reservation_id {
        Some(id) => app.store.reservation(station, id).await?,
        None => None,
    };
    let held = match (named, evse) {
        (Some(r), _) => Some(r),
        (None, Some(e)) => match i32::try_from(e) {
            Ok(e) => app.store.reserved_on(station, e).await?,
            Err(_) => None,
        },
        (None, None) => None,
    };
    // only a reservation in force (or the one this session already used: a replay)
    let Some(r) = held.filter(|r| {
        r.state_at(now) == ReservationState::Reserved || r.session_id.as_deref() == Some(session)
    }) else {
        return Ok(decision);
    };
    if !may_use(app, &r, token).await? {
        tracing::info!(
            station,
            token,
            reservation = r.id,
            "a start on a reservation of another token refused"
        );
        return Ok(Decision {
            status: authorization::Status::NotAtThisTime,
            expires_at: None,
            ..decision
        });
    }
    if r.state == ReservationState::Reserved {
        app.store
            .set_reservation_state(station, r.id, ReservationState::Used, Some(session))
            .await?;
    }
    Ok(decision)
}
