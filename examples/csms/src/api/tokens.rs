//! `/api/tokens/...`: the driver tokens the CSMS authorizes.

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

/// Token statuses both OCPP 1.6 (idTagInfo) and 2.x (idTokenInfo) know.
const TOKEN_STATUSES: &[&str] = &["Accepted", "Blocked", "Expired", "Invalid"];

/// Driver tokens by id; `since`/`until` bound when they were created.
pub(super) async fn list_tokens(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        statuses: TOKEN_STATUSES,
        time: true,
        search: true,
        ..Filters::NONE
    })?;
    let page = app.store.tokens_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

/// A token as `POST /api/tokens` and `PUT /api/tokens/{id_token}` take it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// Required in `POST`; in `PUT` the path names it (a body naming
    /// another is a 400).
    #[serde(default)]
    id_token: Option<String>,
    #[serde(rename = "type", default = "default_type")]
    token_type: String,
    #[serde(default = "default_status")]
    status: String,
    /// The group (1.6 `parentIdTag`, 2.x `groupIdToken`); `null` or absent:
    /// none.
    #[serde(default)]
    group_id: Option<String>,
    /// RFC 3339; after it the token is `Expired`.
    #[serde(default)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// It may be in several transactions at once (a card shared by several
    /// cars); otherwise a start while it is in another is `ConcurrentTx`.
    #[serde(default)]
    allow_concurrent: bool,
    /// The driver's language (RFC 5646, e.g. `en`, `nl-BE`): 2.x
    /// `language1`, and the language of the tariff text (I01).
    #[serde(default)]
    language: Option<String>,
}
fn default_type() -> String {
    "ISO14443".into()
}
fn default_status() -> String {
    "Accepted".into()
}

/// The token types a CSMS stores (2.x `IdTokenEnumType`; 1.6 idTags are
/// `ISO14443` by default).
const TOKEN_TYPES: [&str; 9] = [
    "Central",
    "eMAID",
    "ISO14443",
    "ISO15693",
    "KeyCode",
    "Local",
    "MacAddress",
    "NoAuthorization",
    "DirectPayment",
];

/// The body checked: a token as the store keeps it.
fn token_record(id_token: String, t: TokenBody) -> Result<crate::store::TokenRecord, ApiError> {
    let bad = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    // 1.6 idTag (and parentIdTag) is CiString20; 2.x idToken is 36 characters
    let fits =
        |v: &str| !v.is_empty() && v.chars().count() <= 20 && !v.chars().any(char::is_control);
    if !fits(&id_token) {
        return Err(bad(
            "id_token: 1 to 20 characters (the OCPP 1.6 idTag limit)".into(),
        ));
    }
    if !TOKEN_TYPES.contains(&t.token_type.as_str()) {
        return Err(bad(format!("type: one of {}", TOKEN_TYPES.join(", "))));
    }
    if !TOKEN_STATUSES.contains(&t.status.as_str()) {
        return Err(bad(format!("status: one of {}", TOKEN_STATUSES.join(", "))));
    }
    if let Some(g) = &t.group_id {
        if !fits(g) {
            return Err(bad("group_id: 1 to 20 characters (1.6 parentIdTag)".into()));
        }
    }
    if let Some(l) = &t.language {
        if !is_language_tag(l) {
            return Err(bad(
                "language: an RFC 5646 tag of up to 8 characters (en, nl-BE)".into(),
            ));
        }
    }
    Ok(crate::store::TokenRecord {
        id_token,
        token_type: t.token_type,
        status: t.status,
        group_id: t.group_id,
        expires_at: t.expires_at,
        allow_concurrent: t.allow_concurrent,
        language: t.language,
        created_at: String::new(),
    })
}

/// A language tag as 2.x carries it (`language1`, at most 8 characters): a
/// primary language of 2 or 3 letters, then subtags of letters and digits.
fn is_language_tag(l: &str) -> bool {
    let mut parts = l.split('-');
    let primary = parts.next().unwrap_or_default();
    l.len() <= 8
        && (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Stores a checked token: 201 when created, 200 when it was there (now
/// as given); the token as stored either way.
async fn store_token(app: &App, t: crate::store::TokenRecord) -> ApiResult {
    let created = app.store.upsert_token(&t).await?;
    let stored = app.store.token(&t.id_token).await?.unwrap_or(t);
    Ok((created_or_ok(created), Json(stored)).into_response())
}

/// `POST /api/tokens`: create, or update a token that exists (idempotent).
pub(super) async fn post_token(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let mut t: TokenBody = body(&bytes)?;
    let id = t.id_token.take().unwrap_or_default();
    store_token(&app, token_record(id, t)?).await
}

/// `PUT /api/tokens/{id_token}`: create or replace the token named by the path.
pub(super) async fn put_token(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let mut t: TokenBody = body(&bytes)?;
    if t.id_token.take().is_some_and(|b| b != id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "id_token: the body names another token than the path",
        ));
    }
    store_token(&app, token_record(id, t)?).await
}

/// `GET /api/tokens/{id_token}`.
pub(super) async fn get_token(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.store.token(&id).await? {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown token {id}"),
        )),
    }
}

/// `DELETE /api/tokens/{id_token}`: 204; stations asking about it later
/// hear `Invalid` (its sessions and wallet stay).
pub(super) async fn delete_token(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    if app.store.delete_token(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown token {id}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::is_language_tag;

    #[test]
    fn language_tags_as_2x_carries_them() {
        for ok in ["en", "nl-BE", "deu", "zh-Hant", "es-419"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in ["", "e", "english", "en-", "en_GB", "en-GB-x-a1", "1a"] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }
}
