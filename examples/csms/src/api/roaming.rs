//! `/api/ocpi/...`: roaming partners, token A, the tokens partners pushed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::App;

use super::{body, page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnerBody {
    /// The partner's versions URL.
    versions_url: String,
    /// The token A the partner gave us.
    token: String,
}

pub(super) async fn list_partners(State(app): State<Arc<App>>) -> ApiResult {
    let r = &app.roaming;
    Ok(
        Json(json!({"versions_url": r.versions_url, "partners": r.partner_list().await}))
            .into_response(),
    )
}

/// Registers us with a partner (we are the credentials Sender).
pub(super) async fn register_partner(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let b: PartnerBody = body(&bytes)?;
    // a URL that is not one is the request's fault (400); a partner that
    // cannot be reached or refuses is the gateway's (502)
    let host = b
        .versions_url
        .strip_prefix("https://")
        .or_else(|| b.versions_url.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    if host.is_none_or(str::is_empty) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "versions_url: an absolute https:// (or, in a lab, http://) URL",
        ));
    }
    let r = &app.roaming;
    match r.register_with(&b.versions_url, &b.token).await {
        Ok(p) => {
            app.notify(crate::events::LiveEvent::OcpiPartnerRegistered {
                party: p["id"].as_str().unwrap_or_default().to_owned(),
            });
            Ok((StatusCode::CREATED, Json(p)).into_response())
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("registration failed: {e}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenABody {
    /// A name for the partner.
    name: String,
}

/// Issues a token A for a partner that registers with us.
pub(super) async fn issue_token_a(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let b: TokenABody = body(&bytes)?;
    if b.name.is_empty() || b.name.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name: 1 to 64 characters",
        ));
    }
    let r = &app.roaming;
    let token = r.server.issue_token_a(&b.name).await.map_err(|e| {
        tracing::error!("token A not stored: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the token could not be stored",
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "versions_url": r.versions_url})),
    )
        .into_response())
}

/// Tokens eMSP partners pushed to us, by key.
pub(super) async fn list_roaming_tokens(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters::NONE)?;
    let page = app.store.ocpi_objects_page("tokens", &q).await?;
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|(k, v)| json!({"key": k, "token": v}))
        .collect();
    Ok(page_response(items, page.next, page.total))
}
