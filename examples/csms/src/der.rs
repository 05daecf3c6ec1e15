//! DER control (OCPP 2.1 block R) from the operator API.
//!
//! - `POST /api/stations/{id}/der-controls`: the body is a 2.1
//!   `SetDERControlRequest` (typed at the edge: a body that is not one is a
//!   400); it goes to the station as `SetDERControl`, and a control the
//!   station accepts is kept per station and control id (the controls it
//!   says it superseded are dropped). The station's answer is returned.
//! - `GET /api/stations/{id}/der-controls`: the controls kept, and the
//!   station's own reports of what it holds (`ReportDERControl`, kept as
//!   they arrive, newest first).
//! - `POST /api/stations/{id}/der-controls/report`: asks the station
//!   (`GetDERControl`, optionally of one type or id); its answer now, its
//!   `ReportDERControl` later (then in the GET).
//! - `DELETE /api/stations/{id}/der-controls/{control_id}`: `ClearDERControl`
//!   of that control; a control the station cleared (or does not know) is
//!   no longer kept.
//!
//! A station that is not connected with 2.1 gets none of them (409).
//! `NotifyDERAlarm` from stations raises a `der_alarm` alert until an
//! alarm says it ended (`ocpp.rs`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::v21;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ApiResult};
use crate::App;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/api/stations/{id}/der-controls",
            get(list_controls).post(set_control),
        )
        .route("/api/stations/{id}/der-controls/report", post(get_controls))
        .route(
            "/api/stations/{id}/der-controls/{control_id}",
            delete(clear_control),
        )
}

/// A DER control as kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerControl {
    /// Its id.
    pub control_id: String,
    /// Its type (`LimitMaxDischarge`, `VoltVar`, ...).
    pub control_type: String,
    /// A default control (else scheduled).
    pub is_default: bool,
    /// The request as sent.
    pub request: v21::SetDERControlRequest,
    /// The station's answer.
    pub status: String,
    /// When it was set.
    pub updated_at: String,
}

/// That `id` is connected with 2.1: 404 when not connected, 409 with an
/// earlier version.
pub(crate) async fn connected_21(app: &App, id: &str) -> Result<(), ApiError> {
    match app.gateway.version(id).await {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} is not connected"),
        )),
        Some(ProtocolVersion::V16 | ProtocolVersion::V201) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "DER control is OCPP 2.1: this station is connected with an earlier version",
        )),
        Some(_) => Ok(()),
    }
}

/// Sends a control; keeps it when accepted.
async fn set_control(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let request: v21::SetDERControlRequest = evproto_ocpp_types::from_str(
        std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the body is not UTF-8"))?,
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("not a 2.1 SetDERControlRequest: {e}"),
        )
    })?;
    connected_21(&app, &id).await?;
    let answer = app
        .gateway
        .call::<v21::action::SetDERControl>(&id, request.clone())
        .await?;
    if answer.status == v21::DERControlStatusEnumType::Accepted {
        for gone in answer.superseded_ids.iter().flatten() {
            app.store.delete_der_control(&id, gone.as_str()).await?;
        }
        app.store
            .put_der_control(&id, &request, answer.status.as_str())
            .await?;
    }
    Ok(Json(answer).into_response())
}

/// What `GET /api/stations/{id}/der-controls` answers.
#[derive(Debug, Serialize)]
struct Controls {
    /// Kept, by id.
    controls: Vec<DerControl>,
    /// The station's reports (`ReportDERControl`), newest first.
    reports: Vec<serde_json::Value>,
}

async fn list_controls(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let controls = app.store.der_controls(&id).await?;
    let reports = app
        .store
        .station_reports(&id, Some(crate::ocpp::ReportKind::DerControl.as_str()), 100)
        .await?
        .into_iter()
        .map(|r| r.body)
        .collect();
    Ok(Json(Controls { controls, reports }).into_response())
}

/// The body of `POST /api/stations/{id}/der-controls/report`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    #[serde(default)]
    control_type: Option<v21::DERControlEnumType>,
    #[serde(default)]
    control_id: Option<String>,
    #[serde(default)]
    is_default: Option<bool>,
}

async fn get_controls(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: ReportBody = if bytes.is_empty() {
        ReportBody::default()
    } else {
        crate::api::body(&bytes)?
    };
    connected_21(&app, &id).await?;
    let request = v21::GetDERControlRequest {
        request_id: i32::try_from(chrono::Utc::now().timestamp() % 1_000_000_000).unwrap_or(1),
        is_default: b.is_default,
        control_type: b.control_type,
        control_id: b.control_id.map(|c| c.parse()).transpose().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "control_id: 1 to 36 characters")
        })?,
        custom_data: None,
    };
    let request_id = request.request_id;
    let answer = app
        .gateway
        .call::<v21::action::GetDERControl>(&id, request)
        .await?;
    Ok(Json(serde_json::json!({"request_id": request_id, "answer": answer})).into_response())
}

async fn clear_control(
    State(app): State<Arc<App>>,
    Path((id, control)): Path<(String, String)>,
) -> ApiResult {
    let Some(kept) = app
        .store
        .der_controls(&id)
        .await?
        .into_iter()
        .find(|c| c.control_id == control)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no DER control {control} kept for station {id}"),
        ));
    };
    connected_21(&app, &id).await?;
    let answer = app
        .gateway
        .call::<v21::action::ClearDERControl>(
            &id,
            v21::ClearDERControlRequest {
                is_default: kept.is_default,
                control_type: None,
                control_id: Some(kept.request.control_id.clone()),
                custom_data: None,
            },
        )
        .await?;
    if matches!(
        answer.status,
        v21::DERControlStatusEnumType::Accepted | v21::DERControlStatusEnumType::NotFound
    ) {
        app.store.delete_der_control(&id, &control).await?;
    }
    Ok(Json(answer).into_response())
}
