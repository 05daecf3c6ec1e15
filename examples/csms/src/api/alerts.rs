//! `/api/alerts`: alerts and clearing them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::App;

use super::{page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams};

/// Alerts (faults, security events, refused connections, stations offline,
/// failed firmware updates), newest first; `?status=open` for open ones only.
pub(super) async fn list_alerts(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        statuses: &["open", "cleared"],
        time: true,
        search: false,
    })?;
    let page = app.store.alerts_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

pub(super) async fn clear_alert(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    if app.store.clear_alert(&id).await? {
        app.notify(crate::events::LiveEvent::AlertCleared {
            id: Some(id.to_string()),
            station: None,
            kind: None,
        });
        Ok(Json(json!({"id": id, "cleared": true})).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no open alert {id}"),
        ))
    }
}
