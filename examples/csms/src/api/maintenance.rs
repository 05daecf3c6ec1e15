//! `/api/maintenance`: every connector's health score, worst first
//! ([`crate::maintenance`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::App;

use super::{decode_cursor, page_response, ApiError, ApiQuery, ApiResult};

/// Query of `GET /api/maintenance`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaintenanceQuery {
    cursor: Option<String>,
    limit: Option<usize>,
    /// Only connectors on watch or at risk.
    #[serde(default)]
    flagged: bool,
}

/// Connectors worst first, paged (the cursor is the position: scores move,
/// so a page is the ranking as it stands when asked).
pub(super) async fn list(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<MaintenanceQuery>,
) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit: rows per page, 1 to 1000",
        ));
    }
    let from = match q.cursor.as_deref() {
        None => 0,
        Some(c) => decode_cursor(c)?
            .first()
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "cursor: not one this API gave out")
            })?,
    };
    let all = app
        .maintenance
        .ranking(chrono::Utc::now(), usize::MAX, q.flagged);
    let total = all.len();
    let items: Vec<_> = all.into_iter().skip(from).take(limit).collect();
    let next = (from + limit < total).then(|| vec![(from + limit).to_string()]);
    Ok(page_response(
        items,
        next,
        i64::try_from(total).unwrap_or(i64::MAX),
    ))
}
