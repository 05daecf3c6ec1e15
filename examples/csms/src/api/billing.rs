//! `/api/cdrs`, `/api/wallets/...`, `/api/sessions/{id}/payment|cdr`: what
//! sessions cost and who paid.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use crate::App;

use super::{
    body, created_or_ok, page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams,
};

/// CDRs, newest first; `since`/`until` bound when they were made.
pub(super) async fn list_cdrs(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        time: true,
        ..Filters::NONE
    })?;
    let page = app.store.cdrs_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

pub(super) async fn get_cdr(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.store.cdr(&id).await? {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no CDR for session {id}"),
        )),
    }
}

pub(super) async fn get_wallet(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.payments.wallet(&id).await? {
        Some(w) => Ok(Json(w).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no wallet for {id}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletBody {
    balance: rust_decimal::Decimal,
    #[serde(default = "eur")]
    currency: String,
}
fn eur() -> String {
    "EUR".into()
}

/// `PUT /api/wallets/{id_token}`: sets a driver's prepaid balance.
pub(super) async fn put_wallet(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let w: WalletBody = body(&bytes)?;
    if w.balance < rust_decimal::Decimal::ZERO || w.currency.len() != 3 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "balance: not negative; currency: ISO 4217 code",
        ));
    }
    let existed = app.payments.wallet(&id).await?.is_some();
    app.payments
        .set_balance(&id, w.balance, &w.currency)
        .await?;
    Ok((
        created_or_ok(!existed),
        Json(app.payments.wallet(&id).await?),
    )
        .into_response())
}

/// `GET /api/sessions/{id}/settlements`: what a station's payment terminal
/// settled for the session (2.1 NotifySettlement), oldest first.
pub(super) async fn get_settlements(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    if app.store.session(&id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown session {id}"),
        ));
    }
    let items = app.store.session_settlements(&id).await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

pub(super) async fn get_payment(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.payments.payment(&id).await? {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no payment for session {id}"),
        )),
    }
}
