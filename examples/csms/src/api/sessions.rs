//! `/api/sessions/...`: charging sessions, and closing a stuck one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use crate::App;

use super::{body, page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams};

/// Sessions, latest start first; `since`/`until` bound the start.
pub(super) async fn list_sessions(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        statuses: &["Active", "Completed"],
        time: true,
        search: false,
    })?;
    let page = app.store.sessions_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

pub(super) async fn get_session(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let Some(s) = app.store.session(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown session {id}"),
        ));
    };
    Ok(Json(SessionView {
        meter_values: Some(app.store.session_meter_values(&id).await?),
        closed_by_csms: app.sessions.closed(&id).await?,
        v2x: crate::v2x::view(&app, &s).await?,
        session: s,
    })
    .into_response())
}

/// A session as `GET /api/sessions/{id}` and its close answer show it.
#[derive(serde::Serialize)]
struct SessionView<M, C> {
    #[serde(flatten)]
    session: crate::store::Session,
    /// Its readings (the detail view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    meter_values: Option<M>,
    /// Who closed it when the CSMS did (the operator, or recovery), and why.
    closed_by_csms: C,
    /// A V2X session's setpoint, energy fed back and credit (the detail view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    v2x: Option<crate::v2x::V2xView>,
}

/// The body of `POST /api/sessions/{id}/close`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    /// Why the operator closes it (1..=255 characters), kept with the session.
    reason: String,
}

/// `POST /api/sessions/{id}/close`: the operator ends an Active session the
/// station will not end, priced up to its last meter value and settled
/// through the outbox like any session; a completed one is a 409.
pub(super) async fn close_session(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    use crate::sessions::{CloseError, Closer};
    let b: CloseBody = body(&bytes)?;
    let reason = b.reason.trim();
    if reason.is_empty() || reason.chars().count() > 255 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reason: 1 to 255 characters",
        ));
    }
    let stop = evproto_csms_core::transaction::StopReason::Other;
    match app
        .sessions
        .close(&id, Closer::Operator, stop, reason)
        .await
    {
        Ok(s) => {
            crate::ocpp::session_closed(&app, &s.station_id, &id).await;
            let s = app.store.session(&id).await?.unwrap_or(s);
            Ok(Json(SessionView::<(), _> {
                meter_values: None,
                closed_by_csms: app.sessions.closed(&id).await?,
                v2x: None,
                session: s,
            })
            .into_response())
        }
        Err(CloseError::Unknown(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown session {id}"),
        )),
        Err(e @ CloseError::Completed(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(CloseError::Store(e)) => Err(e.into()),
    }
}
