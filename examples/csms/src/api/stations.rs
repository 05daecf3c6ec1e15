//! `/api/stations/...`: the station registry, its reports, device model,
//! uptime, password rotation and the operator's raw OCPP call.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use evproto_ocpp_proto::ProtocolVersion;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::App;

use super::{
    body, created_or_ok, page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams,
};

/// Statuses of a station's last boot.
const BOOT_STATUSES: &[&str] = &["Accepted", "Pending", "Rejected"];

/// Stations in natural order of their identities (`LOAD2` before
/// `LOAD10`); `?status=` is the last boot's answer.
pub(super) async fn list_stations(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        statuses: BOOT_STATUSES,
        search: true,
        ..Filters::NONE
    })?;
    let page = app.store.stations_page(&q).await?;
    let connected = app.gateway.connected().await;
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|s| {
            let id = s.id.clone();
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["connected"] = json!(connected.contains(&id));
            v
        })
        .collect();
    Ok(page_response(items, page.next, page.total))
}

pub(super) async fn get_station(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let Some(mut s) = app.store.station(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown station {id}"),
        ));
    };
    s.security_profile
        .get_or_insert(app.config.security_profile);
    // what the operator registered and the station last said of its firmware
    let location = app
        .store
        .place(&id)
        .await?
        .map(|p| crate::roaming::Place::read(&id, p));
    Ok(Json(StationView {
        connected: app.gateway.is_connected(&id).await,
        sessions: app.store.sessions(Some(&id), 20).await?,
        // the external limits in force and what the EVs need, latest per source/EVSE
        charging_limits: crate::ocpp::charging_limits(&app.store, &id).await?,
        ev_charging_needs: crate::ocpp::ev_charging_needs(&app.store, &id).await?,
        location,
        firmware_status: app
            .store
            .operation_status(&id, crate::store::Operation::Firmware)
            .await?,
        station: s,
    })
    .into_response())
}

/// A station as `GET /api/stations/{id}` shows it.
#[derive(serde::Serialize)]
struct StationView<L, N> {
    #[serde(flatten)]
    station: crate::store::Station,
    /// Connected to this CSMS now.
    connected: bool,
    /// Its latest 20 sessions.
    sessions: Vec<crate::store::Session>,
    /// External charging limits in force.
    charging_limits: L,
    /// What the EVs need.
    ev_charging_needs: N,
    /// Where it is, as registered (`PUT` with `location`).
    location: Option<crate::roaming::Place>,
    /// Its latest firmware status: `{at, request_id, status}`.
    firmware_status: Option<crate::store::OperationStatus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    /// One kind of report (`charging_limit`, `ev_charging_needs`, …); all without.
    kind: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// What a station reported besides its transactions, newest first.
pub(super) async fn station_reports(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult {
    if app.store.station(&id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no station {id}"),
        ));
    }
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(crate::ocpp::ReportKind::parse(k).ok_or_else(|| {
            let kinds: Vec<_> = crate::ocpp::ReportKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("kind: one of {}", kinds.join(", ")),
            )
        })?),
    };
    let q = ListParams {
        cursor: q.cursor,
        limit: q.limit,
        ..ListParams::default()
    }
    .check(Filters::NONE)?;
    let page = app
        .store
        .station_reports_page(
            &id,
            &crate::store::ListQuery {
                status: kind.map(|k| k.as_str().to_owned()),
                ..q
            },
        )
        .await?;
    Ok(page_response(page.items, page.next, page.total))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StationBody {
    password: Option<String>,
    /// The boot answer it gets (OCPP 2.0.1 B01-B03): `Accepted` (the
    /// default), `Pending` or `Rejected`.
    registration: Option<crate::store::Registration>,
    /// The security profile it connects under, 0-3 (default: the server's
    /// `security_profile`).
    security_profile: Option<u8>,
    /// Where the station is, for its OCPI Location: `name`, `address`,
    /// `city`, `country` (ISO 3166 alpha-3), `coordinates`
    /// (`{"latitude": "52.1", "longitude": "4.3"}`, written with OCPI's 6
    /// decimals), `time_zone`; each within OCPI 2.2.1's bounds.
    #[serde(default)]
    location: Option<crate::roaming::Place>,
}

fn valid_identity(id: &str) -> bool {
    // OCPP 2.0.1 security whitepaper / Part 4: identity ≤ 48 printable characters, no ':' (Basic auth user)
    // and not dots alone: `.` and `..` name directories
    !id.is_empty()
        && id.len() <= 48
        && !id.bytes().all(|b| b == b'.')
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b'/' && b != b'\\')
}

pub(super) async fn put_station(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    if !valid_identity(&id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "identity: 1 to 48 printable characters, no ':' or '/'",
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a JSON object is required ({} when there is nothing to set)",
        ));
    }
    let b: StationBody = body(&bytes)?;
    if let Some(p) = &b.password {
        // OCPP 1.6 security / 2.0.1: 16 to 40 characters
        if !(16..=40).contains(&p.chars().count()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "password: 16 to 40 characters",
            ));
        }
    }
    let mut b = b;
    if let Some(loc) = b.location.take() {
        let loc = loc
            .normalized()
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("location: {e}")))?;
        b.location = Some(loc);
    }
    // the station's own profile decides how it connects (A00): one this CSMS
    // cannot serve is refused here, not at every handshake
    let before = app.store.station(&id).await?;
    let profile = b
        .security_profile
        .or(before.as_ref().and_then(|s| s.security_profile))
        .unwrap_or(app.config.security_profile);
    app.config
        .serves_profile(profile)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    // profiles 1 and 2 authenticate stations by password: a station without
    // one could never connect (profile 3 admits by certificate)
    if matches!(profile, 1 | 2)
        && b.password.is_none()
        && !before.as_ref().is_some_and(|s| s.has_password)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("password: required under security profile {profile} (16 to 40 characters)"),
        ));
    }
    let created = app.store.upsert_station(&id, b.password.as_deref()).await?;
    app.store
        .set_station_policy(&id, b.registration, b.security_profile)
        .await?;
    if let Some(loc) = &b.location {
        app.store.put_place(&id, &loc.to_stored()).await?;
        app.roaming.location_changed(&id).await;
    }
    app.station_credentials_changed(&id).await?;
    let boot_trigger =
        registration_changed(&app, &id, before.map(|s| s.registration), b.registration).await;
    let Some(mut station) = app.store.station(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} was deleted meanwhile"),
        ));
    };
    station
        .security_profile
        .get_or_insert(app.config.security_profile);
    let answer = StationAnswer {
        station,
        boot_trigger,
    };
    Ok((created_or_ok(created), Json(answer)).into_response())
}

/// A registered station, as `PUT /api/stations/{id}` answers it.
#[derive(serde::Serialize)]
struct StationAnswer {
    #[serde(flatten)]
    station: crate::store::Station,
    /// When its registration changed while it was connected: how it
    /// answered the `TriggerMessage BootNotification` sent so the change
    /// takes effect now (`Accepted`, `Rejected`, ... or why it was not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_trigger: Option<String>,
}

/// The operator changed a station's registration (B02, B03): a boot
/// accepted before no longer lets it in when it reconnects unless it is
/// Accepted now, and a connected station is asked to boot again at once
/// (`TriggerMessage BootNotification`) so the change takes effect without
/// waiting for its boot interval; not one whose last boot was Rejected (the
/// CSMS sends it nothing, 1.6 §4.2). What it answered, or why it was not
/// asked; `None` when nothing changed or it is not connected.
async fn registration_changed(
    app: &App,
    id: &str,
    before: Option<crate::store::Registration>,
    after: Option<crate::store::Registration>,
) -> Option<String> {
    let after = after?;
    if before == Some(after) || before.is_none() && after == crate::store::Registration::Accepted {
        return None;
    }
    if after != crate::store::Registration::Accepted {
        app.gateway.forget_accepted(id).await;
    }
    if !app.gateway.is_connected(id).await {
        return None;
    }
    match crate::ocpp::may_send(app, id, "TriggerMessage").await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Some(why),
        Err(e) => return Some(e.to_string()),
    }
    Some(match crate::ocpp::trigger_boot(app, id).await {
        Ok(status) => {
            tracing::info!(station = id, status, "registration changed: boot triggered");
            status.to_owned()
        }
        Err(e) => e,
    })
}

/// `POST /api/stations/{id}/password`: an optional new password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    /// 16 to 40 characters; generated (40 hexadecimal digits) when absent.
    password: Option<String>,
}

/// What a password rotation did.
#[derive(serde::Serialize)]
struct PasswordAnswer {
    station: String,
    /// What the station answered: `Accepted` (the new password is in force).
    outcome: &'static str,
    /// The new password when the CSMS generated it (shown this once; only
    /// its hash is stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// Rotates a connected station's Basic-auth password (OCPP 2.0.1 A01, 1.6
/// security whitepaper): sends it the new one and adopts it only when the
/// station accepts it; its connection is then closed and the old password
/// no longer opens one. 404 unknown or not connected, 409 its boot was
/// Rejected, 502 it refused (the old password stays) or the call failed,
/// 504 no answer in time.
pub(super) async fn rotate_password(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let given = if bytes.is_empty() {
        None
    } else {
        body::<PasswordBody>(&bytes)?.password
    };
    if let Some(p) = &given {
        if !(16..=40).contains(&p.chars().count()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "password: 16 to 40 characters",
            ));
        }
    }
    if app.store.station(&id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown station {id}"),
        ));
    }
    // 404 not connected, 503 when the cluster's registry cannot tell
    app.gateway.connection(&id).await?;
    if let Err(why) = crate::ocpp::may_send(&app, &id, "SetVariables").await? {
        return Err(ApiError::new(StatusCode::CONFLICT, why));
    }
    let generated = given.is_none();
    let password = given.unwrap_or_else(crate::station_auth::generate_password);
    use crate::gateway::StationCallError;
    use crate::station_auth::{PasswordSent, SendError};
    match crate::station_auth::send_password(&app.gateway, &id, &password).await {
        Ok(PasswordSent::Accepted) => {
            app.store.upsert_station(&id, Some(&password)).await?;
            app.station_credentials_changed(&id).await?;
            tracing::info!(station = %id, "password rotated");
            Ok(Json(PasswordAnswer {
                station: id,
                outcome: "Accepted",
                password: generated.then_some(password),
            })
            .into_response())
        }
        Ok(PasswordSent::Refused(status)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{id} refused the new password ({status}); the old one stays in force"),
        )),
        Err(SendError::Call(StationCallError::Timeout { .. })) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("{id} did not answer in time; the old password stays in force"),
        )),
        Err(SendError::Call(StationCallError::ConnectionLost { .. })) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("{id} disconnected before answering; the old password stays in force"),
        )),
        Err(SendError::Call(StationCallError::NotConnected { .. })) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} is not connected"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{id}: {e}; the old password stays in force"),
        )),
    }
}

pub(super) async fn delete_station(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    if !app.store.delete_station(&id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown station {id}"),
        ));
    }
    app.station_credentials_changed(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/stations/{id}/ocpp/{Action}`: the CSMS-initiated call, in the
/// station's negotiated version.
pub(super) async fn ocpp_call(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let payload: Value = body(&bytes)?;
    if !payload.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is the request payload: a JSON object",
        ));
    }
    // 404 not connected, 503 when the cluster's registry cannot tell
    let connected = app.gateway.connection(&id).await?;
    let table = match connected {
        ProtocolVersion::V16 => v16_actions(),
        ProtocolVersion::V201 => v201_actions(),
        _ => v21_actions(),
    };
    let version = crate::ocpp::version_name(connected);
    if let Err(why) = crate::ocpp::may_send(&app, &id, &action).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, why));
    }
    let Some(info) = evproto_ocpp_types::find_action(table, &action) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no action {action} in OCPP {version}"),
        ));
    };
    if !info.direction.from_csms() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{action} is sent by stations, not by a CSMS"),
        ));
    }
    let text = payload.to_string();
    if let Err(e) = (info.validate_request)(&text) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": format!("payload invalid for {action} in OCPP {version}: {e}"), "pointer": e.pointer().to_string()}),
        ));
    }
    if info.name == <evproto_ocpp_types::v16::action::Reset as evproto_ocpp_types::Action>::NAME {
        // the reboot that follows is a requested one (predictive maintenance)
        app.maintenance.reset_requested(&id, chrono::Utc::now());
    }
    let answer = app
        .gateway
        .call_operator_json(&id, info.name, text.clone())
        .await?;
    // B05/B06: what the station set or read is its device model now
    if let Err(e) =
        crate::device_model::learn(&app, &id, connected, info.name, &text, &answer).await
    {
        tracing::warn!(
            station = id,
            action = info.name,
            "device model not updated: {e}"
        );
    }
    let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    Ok(Json(v).into_response())
}

fn v16_actions() -> &'static [evproto_ocpp_types::ActionInfo] {
    evproto_ocpp_types::v16::ACTIONS
}
fn v201_actions() -> &'static [evproto_ocpp_types::ActionInfo] {
    evproto_ocpp_types::v201::ACTIONS
}
fn v21_actions() -> &'static [evproto_ocpp_types::ActionInfo] {
    evproto_ocpp_types::v21::ACTIONS
}

/// Share of time each station has been connected since the CSMS first saw it.
pub(super) async fn uptime(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        ..Filters::NONE
    })?;
    let page = app.store.uptime_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

/// What a 2.x station reported with NotifyReport (after GetBaseReport or
/// GetReport), with the values SetVariables and GetVariables answered
/// (see `crate::device_model`).
pub(super) async fn device_model(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    if app.store.station(&id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no station {id}"),
        ));
    }
    Ok(
        Json(json!({"station": id, "variables": app.store.device_model(&id).await?}))
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert!(valid_identity("CP-001"));
        assert!(!valid_identity(""));
        assert!(!valid_identity("a:b"));
        assert!(!valid_identity("a/b"));
        assert!(!valid_identity(&"x".repeat(49)));
        assert!(!valid_identity("."));
        assert!(!valid_identity(".."));
        assert!(!valid_identity("a\\b"));
    }
}
