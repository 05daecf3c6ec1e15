//! The operator REST API (`/api/...`, bearer key), `/metrics`, the OpenAPI
//! document and the dashboard page with its event stream.
//!
//! Every error is JSON `{"error": "..."}` with a status that says what went
//! wrong: 400 for a malformed body, 401 without the right key, 404 for an
//! unknown resource or a station that is not connected, 422 for an OCPP
//! payload that breaks its schema, 502 for the station's CALLERROR, 504 when
//! it does not answer in time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use evproto_ocpp_proto::ProtocolVersion;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::App;

/// The OpenAPI document, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An API error: status and reason.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub Value);

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError(status, json!({"error": reason.into()}))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if matches!(e, crate::store::StoreError::BadCursor) {
            return ApiError::new(StatusCode::BAD_REQUEST, format!("cursor: {e}"));
        }
        tracing::error!("store: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
    }
}

impl From<crate::gateway::StationCallError> for ApiError {
    /// 404 not connected, 504 no answer in time, 502 a CALLERROR (with its
    /// code, description and details) or a broken answer, 422 a request the
    /// station's version cannot carry.
    fn from(e: crate::gateway::StationCallError) -> Self {
        use crate::gateway::StationCallError as E;
        match e {
            E::NotConnected { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            E::Timeout { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
            E::CallError {
                code,
                description,
                details,
                ..
            } => ApiError(
                StatusCode::BAD_GATEWAY,
                json!({"error": "the station answered with a CALLERROR", "code": code, "description": description,
                    "details": serde_json::from_str::<Value>(&details).unwrap_or(Value::Null)}),
            ),
            E::BadAnswer { .. } => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
            E::Rejected { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        }
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

/// Parses a JSON body into `T`, with the reason on failure (400).
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// A query string parsed into `T`; a malformed one, or a parameter the
/// route does not know, is a 400 with the reason as JSON (axum's own
/// `Query` answers plain text).
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// The query of a list route: where to go on (`cursor`, from the previous
/// page's `next_cursor`), how many (`limit`, 1 to 1000, default 100) and
/// filters. A filter the list does not have is a 400, as is a value it
/// does not know.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    cursor: Option<String>,
    limit: Option<i64>,
    station: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Text search (stations: the identity; tokens: the token and its group).
    q: Option<String>,
}

/// The filters a list has: by station, the statuses it knows (none: no
/// status filter), by time, by text (`q`).
#[derive(Clone, Copy)]
pub(crate) struct Filters {
    pub(crate) station: bool,
    pub(crate) statuses: &'static [&'static str],
    pub(crate) time: bool,
    pub(crate) search: bool,
}

impl Filters {
    /// Only paging.
    pub(crate) const NONE: Filters = Filters {
        station: false,
        statuses: &[],
        time: false,
        search: false,
    };
}

/// Largest page.
const MAX_LIMIT: i64 = 1000;
/// Page size without `limit`.
const DEFAULT_LIMIT: i64 = 100;

impl ListParams {
    /// Checked against what the list has.
    pub(crate) fn check(self, f: Filters) -> Result<crate::store::ListQuery, ApiError> {
        let bad = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(bad(format!("limit: 1 to {MAX_LIMIT}")));
        }
        if self.station.is_some() && !f.station {
            return Err(bad("station: this list has no station filter".into()));
        }
        if let Some(s) = &self.status {
            if f.statuses.is_empty() {
                return Err(bad("status: this list has no status filter".into()));
            }
            if !f.statuses.contains(&s.as_str()) {
                return Err(bad(format!("status: one of {}", f.statuses.join(", "))));
            }
        }
        let time = |name: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
            let Some(v) = v else { return Ok(None) };
            if !f.time {
                return Err(bad(format!("{name}: this list has no time filter")));
            }
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| Some(crate::store::ts(t.with_timezone(&chrono::Utc))))
                .map_err(|e| bad(format!("{name}: an RFC 3339 time ({e})")))
        };
        let search = match self.q {
            Some(_) if !f.search => return Err(bad("q: this list has no text search".into())),
            Some(q) if q.chars().count() > 64 => {
                return Err(bad("q: at most 64 characters".into()))
            }
            Some(q) if q.is_empty() => None,
            q => q,
        };
        let since = time("since", self.since)?;
        let until = time("until", self.until)?;
        let after = self.cursor.map(|c| decode_cursor(&c)).transpose()?;
        Ok(crate::store::ListQuery {
            limit,
            after,
            station: self.station,
            status: self.status,
            since,
            until,
            search,
        })
    }
}

/// A cursor as given out: the last row's sort key, opaque to clients.
pub(crate) fn encode_cursor(key: &[String]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_string(key).unwrap_or_default())
}

fn decode_cursor(c: &str) -> Result<Vec<String>, ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "cursor: not one this API gave out (use next_cursor as it came)",
            )
        })
}

/// A page as answered: `{"items": [...], "next_cursor": "..." | null, "total": n}`.
pub(crate) fn page_response<T: serde::Serialize>(
    items: Vec<T>,
    next: Option<Vec<String>>,
    total: i64,
) -> Response {
    /// The wire form of a page.
    #[derive(serde::Serialize)]
    struct PageOut<T> {
        items: Vec<T>,
        next_cursor: Option<String>,
        total: i64,
    }
    Json(PageOut {
        items,
        next_cursor: next.as_deref().map(encode_cursor),
        total,
    })
    .into_response()
}

/// Largest operator API or OCPI request body, bytes (firmware images
/// stream to disk under their own cap, `max_file_bytes`).
pub const MAX_BODY: usize = 1024 * 1024;

/// How long `/metrics` answers from its cache.
const METRICS_TTL: Duration = Duration::from_secs(5);

/// The operator API key as the CSMS keeps it: its SHA-256 (the key is
/// long and random, so a fast hash does not make it guessable), compared
/// in constant time. The key itself is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey([u8; 32]);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(sha256, hidden)")
    }
}

impl ApiKey {
    /// The hash of `key`.
    pub fn of(key: &str) -> ApiKey {
        use sha2::{Digest, Sha256};
        ApiKey(Sha256::digest(key.as_bytes()).into())
    }

    /// From the stored hex form.
    pub fn from_hex(hex: &str) -> Option<ApiKey> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks(2)) {
            *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(ApiKey(out))
    }

    /// The stored hex form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `given` is the key.
    pub fn accepts(&self, given: &str) -> bool {
        ct_eq(&ApiKey::of(given).0, &self.0)
    }
}

/// Equality that takes as long whatever the bytes (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API key in force at start.
#[derive(Debug)]
pub struct KeyInForce {
    /// Its hash.
    pub key: ApiKey,
    /// The key itself when this process knows it: configured, or generated
    /// now (then print it once: it cannot be read back later).
    pub plain: Option<String>,
    /// Generated at this start.
    pub generated: bool,
}

/// Settles the API key: the configured one, else the stored hash, else a
/// new random key whose hash is stored. A plain key stored by an older
/// version is replaced by its hash first (it keeps working).
///
/// # Errors
///
/// The store failed or holds an unreadable hash.
pub async fn settle_api_key(
    store: &crate::store::Store,
    configured: Option<&str>,
) -> crate::store::Result<KeyInForce> {
    const PLAIN: &str = "api_key";
    const HASHED: &str = "api_key_sha256";
    if let Some(plain) = store.setting(PLAIN).await? {
        store
            .setting_or_insert(HASHED, &ApiKey::of(&plain).to_hex())
            .await?;
        store.delete_setting(PLAIN).await?;
    }
    if let Some(k) = configured {
        return Ok(KeyInForce {
            key: ApiKey::of(k),
            plain: Some(k.to_owned()),
            generated: false,
        });
    }
    let fresh = crate::store::random_hex(24);
    let stored = store
        .setting_or_insert(HASHED, &ApiKey::of(&fresh).to_hex())
        .await?;
    let key = ApiKey::from_hex(&stored).ok_or(crate::store::StoreError::Corrupt(HASHED))?;
    let generated = key.accepts(&fresh);
    Ok(KeyInForce {
        key,
        plain: generated.then_some(fresh),
        generated,
    })
}

/// State of the HTTP side beyond the store: the metrics cache and the
/// transfer slots.
#[derive(Debug)]
pub struct HttpState {
    metrics: tokio::sync::Mutex<Option<(std::time::Instant, String)>>,
    /// Firmware downloads and station uploads in progress.
    pub(crate) transfers: crate::ops::Transfers,
}

impl HttpState {
    /// Empty cache, slots as configured.
    pub fn new(config: &crate::config::Config) -> HttpState {
        HttpState {
            metrics: tokio::sync::Mutex::new(None),
            transfers: crate::ops::Transfers::new(config),
        }
    }
}

/// The admin listener's router: the operator API, `/metrics` (both behind
/// the key, in a `Authorization: Bearer` header), the event stream (the key
/// may come as `?key=` there only: an EventSource cannot set headers), the
/// OpenAPI document, the health check and the dashboard page.
pub fn admin_router(app: Arc<App>) -> Router {
    let key = || middleware::from_fn_with_state(app.clone(), require_key);
    let api = Router::new()
        .merge(crate::monitoring::routes())
        .route("/api/stations", get(list_stations))
        .route(
            "/api/stations/{id}",
            get(get_station).put(put_station).delete(delete_station),
        )
        .route("/api/stations/{id}/ocpp/{action}", post(ocpp_call))
        .route("/api/stations/{id}/password", post(rotate_password))
        .route("/api/tokens", get(list_tokens).post(post_token))
        .route(
            "/api/tokens/{id_token}",
            get(get_token).put(put_token).delete(delete_token),
        )
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/live", get(crate::console_api::live))
        .route("/api/sessions/{id}", get(get_session))
        .route("/api/tariffs", get(list_tariffs))
        .route(
            "/api/tariffs/{id}",
            get(get_tariff)
                .put(put_tariff)
                .delete(crate::console_api::delete_tariff),
        )
        .route("/api/tariffs/preview", post(crate::console_api::preview))
        .route("/api/payments", get(crate::console_api::list_payments))
        .route("/api/overview", get(crate::console_api::overview))
        .route("/api/ocpp/actions", get(crate::console_api::actions))
        .route("/api/cdrs", get(list_cdrs))
        .route("/api/wallets/{id_token}", get(get_wallet).put(put_wallet))
        .route("/api/sessions/{id}/payment", get(get_payment))
        .route("/api/sessions/{id}/cdr", get(get_cdr))
        .route("/api/sessions/{id}/close", post(close_session))
        .route(
            "/api/ocpi/partners",
            get(list_partners).post(register_partner),
        )
        .route("/api/ocpi/token-a", post(issue_token_a))
        .route(
            "/api/firmware-campaigns",
            get(crate::ops::list_campaigns).post(crate::ops::start_campaign),
        )
        .route(
            "/api/firmware-campaigns/{id}",
            get(crate::ops::get_campaign),
        )
        .route(
            "/api/stations/{id}/logs",
            get(crate::ops::list_logs).post(crate::ops::request_logs),
        )
        .route(
            "/api/stations/{id}/local-list",
            axum::routing::put(crate::ops::put_local_list),
        )
        .route("/api/alerts", get(list_alerts))
        .route("/api/stats/daily", get(crate::console_api::daily_stats))
        .route("/api/alerts/{id}/clear", post(clear_alert))
        .route("/api/uptime", get(uptime))
        .route("/api/stations/{id}/device-model", get(device_model))
        .route("/api/stations/{id}/reports", get(station_reports))
        .route("/api/ocpi/tokens", get(list_roaming_tokens))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            app.config.http_request_timeout,
            deadline,
        ))
        .route_layer(key());
    // streamed to disk under max_file_bytes, with a stall limit instead of a deadline
    let firmware = Router::new()
        .route(
            "/api/firmware/{name}",
            axum::routing::put(crate::ops::put_firmware),
        )
        .route_layer(key());
    let stream = Router::new().route("/api/events", get(events)).route_layer(
        middleware::from_fn_with_state(app.clone(), require_key_or_query),
    );
    Router::new()
        .merge(api)
        .merge(firmware)
        .merge(stream)
        .route(
            "/api/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/api/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .merge(crate::console::router())
        // after every route: it is set on the routes there are
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// The public listener's router: what stations and roaming partners reach
/// without the operator key. Firmware downloads (`/firmware/{name}`),
/// station uploads (`/upload/...`, a single-use token in the URL) and OCPI
/// (`ocpi`, its own credentials tokens; nested at `/ocpi` with a deadline
/// per request).
pub fn public_router(app: Arc<App>, ocpi: Option<Router>) -> Router {
    let mut router = Router::new()
        .route("/firmware/{name}", get(crate::ops::get_firmware))
        .route(
            "/upload/{station}/{token}/{filename}",
            axum::routing::put(crate::ops::upload).post(crate::ops::upload),
        )
        .fallback(not_found)
        .with_state(app.clone());
    if let Some(o) = ocpi {
        router = router.merge(Router::new().nest_service("/ocpi", o).layer(
            middleware::from_fn_with_state(app.config.http_request_timeout, deadline),
        ));
    }
    // the drivers' app API (/app/v1) and the card gateway's webhook
    router = router.merge(crate::app_api::router(app.clone()));
    router.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such resource")
}

/// A known route with a method it does not have (axum adds `Allow`).
async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not a method of this resource (see Allow)"),
    )
}

/// Answers 503 when a request takes longer than `limit`.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn unauthorized() -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API key (Authorization: Bearer <key>)",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// The key in an `Authorization: Bearer` header; never from the query
/// string (it would end up in browser histories and proxy logs).
async fn require_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if bearer(&headers).is_some_and(|k| app.api_key.accepts(k)) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

/// As [`require_key`], or `?key=` (the dashboard's EventSource cannot set
/// headers; the page takes the key out of its own address at once).
async fn require_key_or_query(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let from_query = Query::<KeyParam>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.key);
    let ok = bearer(&headers).is_some_and(|k| app.api_key.accepts(k))
        || from_query.is_some_and(|k| app.api_key.accepts(&k));
    if ok {
        next.run(req).await
    } else {
        unauthorized()
    }
}

#[derive(Deserialize)]
struct KeyParam {
    key: Option<String>,
}

/// Statuses of a station's last boot.
const BOOT_STATUSES: &[&str] = &["Accepted", "Pending", "Rejected"];

/// Stations in natural order of their identities (`LOAD2` before
/// `LOAD10`); `?status=` is the last boot's answer.
async fn list_stations(
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

async fn get_station(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let Some(mut s) = app.store.station(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown station {id}"),
        ));
    };
    s.security_profile
        .get_or_insert(app.config.security_profile);
    // what the operator registered and the station last said of its firmware
    let store = &app.store;
    let stored = |key: String| async move {
        Ok::<_, ApiError>(
            store
                .setting(&key)
                .await?
                .and_then(|t| serde_json::value::RawValue::from_string(t).ok()),
        )
    };
    Ok(Json(StationView {
        connected: app.gateway.is_connected(&id).await,
        sessions: app.store.sessions(Some(&id), 20).await?,
        // the external limits in force and what the EVs need, latest per source/EVSE
        charging_limits: crate::ocpp::charging_limits(&app.store, &id).await?,
        ev_charging_needs: crate::ocpp::ev_charging_needs(&app.store, &id).await?,
        location: stored(format!("station_location:{id}")).await?,
        firmware_status: stored(format!("firmware_status:{id}")).await?,
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
    location: Option<Box<serde_json::value::RawValue>>,
    /// Its latest firmware status: `{at, request_id, status}`.
    firmware_status: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// One kind of report (`charging_limit`, `ev_charging_needs`, …); all without.
    kind: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// What a station reported besides its transactions, newest first.
async fn station_reports(
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
    /// (`{"latitude": "52.1", "longitude": "4.3"}`), `time_zone`.
    #[serde(default)]
    location: Option<Value>,
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

async fn put_station(
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
    if let Some(loc) = &b.location {
        let ok = loc.as_object().is_some_and(|m| {
            m.iter().all(|(k, v)| match k.as_str() {
                "name" | "address" | "city" | "postal_code" | "country" | "time_zone" => {
                    v.is_string()
                }
                "coordinates" => v["latitude"].is_string() && v["longitude"].is_string(),
                _ => false,
            })
        });
        if !ok {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "location: an object of name, address, city, postal_code, country, time_zone (strings) and coordinates {latitude, longitude} (strings)",
            ));
        }
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
        app.store
            .put_setting(&format!("station_location:{id}"), &loc.to_string())
            .await?;
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
async fn rotate_password(
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
    if !app.gateway.is_connected(&id).await {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} is not connected"),
        ));
    }
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

async fn delete_station(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
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
async fn ocpp_call(
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
    let Some(connected) = app.gateway.version(&id).await else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} is not connected"),
        ));
    };
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
    let answer = app.gateway.call_operator_json(&id, info.name, text).await?;
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

/// Alerts (faults, security events, refused connections, stations offline,
/// failed firmware updates), newest first; `?status=open` for open ones only.
async fn list_alerts(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        statuses: &["open", "cleared"],
        time: true,
        search: false,
    })?;
    let page = app.store.alerts_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

async fn clear_alert(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
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

/// Share of time each station has been connected since the CSMS first saw it.
async fn uptime(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        ..Filters::NONE
    })?;
    let page = app.store.uptime_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

/// What a 2.x station reported with NotifyReport (after GetBaseReport).
async fn device_model(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnerBody {
    /// The partner's versions URL.
    versions_url: String,
    /// The token A the partner gave us.
    token: String,
}

async fn list_partners(State(app): State<Arc<App>>) -> ApiResult {
    let r = &app.roaming;
    Ok(
        Json(json!({"versions_url": r.versions_url, "partners": r.partner_list().await}))
            .into_response(),
    )
}

/// Registers us with a partner (we are the credentials Sender).
async fn register_partner(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
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
async fn issue_token_a(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
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
async fn list_roaming_tokens(
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

/// Tariffs by id.
async fn list_tariffs(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult {
    let q = q.check(Filters::NONE)?;
    let page = app.store.tariffs_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

async fn get_tariff(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.store.tariff(&id).await? {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown tariff {id}"),
        )),
    }
}

/// `PUT /api/tariffs/{id}`: an OCPI 2.2.1 Tariff; `default` prices every session.
async fn put_tariff(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let mut t: Value = body(&bytes)?;
    if !t.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a tariff is a JSON object",
        ));
    }
    t["id"] = json!(id);
    crate::billing::check_tariff(&t).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("not a usable OCPI tariff: {e}"),
        )
    })?;
    if let Some(field) = negative_tariff_field(&t) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{field}: not negative"),
        ));
    }
    // amounts no session can overflow when priced
    evproto_ocpi::tariff::Tariff::from_json(&t)
        .map_err(|e| e.to_string())
        .and_then(|parsed| crate::console_api::within_bounds(&parsed))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let created = app.store.put_tariff(&id, &t).await?;
    app.roaming.tariff_changed(&id, &t).await;
    Ok((created_or_ok(created), Json(t)).into_response())
}

/// The first amount of an OCPI tariff that is negative, by its path: a
/// price component's `price`, `vat` or `step_size` (OCPI 2.2.1 §11.4.2:
/// a VAT percentage and a step in units; a negative price would pay the
/// driver), the tariff's `min_price`/`max_price`, and `restrictions`'
/// bounds.
fn negative_tariff_field(t: &Value) -> Option<String> {
    let neg = |v: &Value| {
        evproto_ocpi::tariff::to_decimal(v).is_some_and(|d| d < rust_decimal::Decimal::ZERO)
    };
    for bound in ["min_price", "max_price"] {
        for part in ["excl_vat", "incl_vat"] {
            if neg(&t[bound][part]) {
                return Some(format!("{bound}.{part}"));
            }
        }
    }
    let elements = t["elements"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, e) in elements.iter().enumerate() {
        let comps = e["price_components"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, c) in comps.iter().enumerate() {
            for f in ["price", "vat", "step_size"] {
                if neg(&c[f]) {
                    return Some(format!("elements[{i}].price_components[{j}].{f}"));
                }
            }
        }
        if let Some(r) = e["restrictions"].as_object() {
            for (k, v) in r {
                if (k.starts_with("min_") || k.starts_with("max_")) && neg(v) {
                    return Some(format!("elements[{i}].restrictions.{k}"));
                }
            }
        }
    }
    None
}

/// CDRs, newest first; `since`/`until` bound when they were made.
async fn list_cdrs(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        time: true,
        ..Filters::NONE
    })?;
    let page = app.store.cdrs_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

async fn get_cdr(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.store.cdr(&id).await? {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no CDR for session {id}"),
        )),
    }
}

impl From<crate::payments::PaymentError> for ApiError {
    fn from(e: crate::payments::PaymentError) -> Self {
        match e {
            crate::payments::PaymentError::Store(e) => e.into(),
            e => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

async fn get_wallet(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
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
async fn put_wallet(
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

async fn get_payment(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.payments.payment(&id).await? {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no payment for session {id}"),
        )),
    }
}

/// Token statuses both OCPP 1.6 (idTagInfo) and 2.x (idTokenInfo) know.
const TOKEN_STATUSES: &[&str] = &["Accepted", "Blocked", "Expired", "Invalid"];

/// Driver tokens by id; `since`/`until` bound when they were created.
async fn list_tokens(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult {
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
    Ok(crate::store::TokenRecord {
        id_token,
        token_type: t.token_type,
        status: t.status,
        group_id: t.group_id,
        expires_at: t.expires_at,
        created_at: String::new(),
    })
}

/// Stores a checked token: 201 when created, 200 when it was there (now
/// as given); the token as stored either way.
async fn store_token(app: &App, t: crate::store::TokenRecord) -> ApiResult {
    let created = app.store.upsert_token(&t).await?;
    let stored = app.store.token(&t.id_token).await?.unwrap_or(t);
    Ok((created_or_ok(created), Json(stored)).into_response())
}

/// `POST /api/tokens`: create, or update a token that exists (idempotent).
async fn post_token(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let mut t: TokenBody = body(&bytes)?;
    let id = t.id_token.take().unwrap_or_default();
    store_token(&app, token_record(id, t)?).await
}

/// `PUT /api/tokens/{id_token}`: create or replace the token named by the path.
async fn put_token(State(app): State<Arc<App>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
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
async fn get_token(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
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
async fn delete_token(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    if app.store.delete_token(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown token {id}"),
        ))
    }
}

/// 201 for a create, 200 for an update: every create-or-update route.
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Sessions, latest start first; `since`/`until` bound the start.
async fn list_sessions(
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

async fn get_session(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let Some(s) = app.store.session(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown session {id}"),
        ));
    };
    Ok(Json(SessionView {
        meter_values: Some(app.store.session_meter_values(&id).await?),
        closed_by_csms: app.sessions.closed(&id).await?,
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
async fn close_session(
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

/// Server-sent events: every station message, status change and session
/// event as it happens (the dashboard's live view).
async fn events(State(app): State<Arc<App>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((Ok(Event::default().data(v.to_json())), rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /metrics` (behind the key): Prometheus text, counted by the
/// database with aggregate queries and kept for a few seconds, so scrapes
/// cost the store little however often they come.
async fn metrics(State(app): State<Arc<App>>) -> ApiResult {
    // one computation at a time: concurrent scrapes wait for it and share it
    let mut cached = app.http.metrics.lock().await;
    let body = match &*cached {
        Some((at, body)) if at.elapsed() < METRICS_TTL => body.clone(),
        _ => {
            let body = render_metrics(&app).await?;
            *cached = Some((std::time::Instant::now(), body.clone()));
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

async fn render_metrics(app: &App) -> Result<String, ApiError> {
    use std::fmt::Write;
    let c = app.store.metric_counts().await?;
    let connected = app.gateway.connected().await.len();
    let mut body = String::new();
    for (name, help, kind, value) in [
        ("csms_stations", "Registered stations.", "gauge", c.stations),
        (
            "csms_stations_connected",
            "Stations connected now.",
            "gauge",
            i64::try_from(connected).unwrap_or(i64::MAX),
        ),
        (
            "csms_sessions_active",
            "Sessions in progress.",
            "gauge",
            c.sessions_active,
        ),
        (
            "csms_sessions_completed",
            "Sessions completed.",
            "counter",
            c.sessions_completed,
        ),
        ("csms_tokens", "Driver tokens.", "gauge", c.tokens),
        (
            "csms_alerts_open",
            "Alerts not cleared.",
            "gauge",
            c.alerts_open,
        ),
    ] {
        let _ = write!(
            body,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    body.push_str("# HELP csms_revenue_incl_vat Revenue of all CDRs incl. VAT, per currency.\n# TYPE csms_revenue_incl_vat counter\n");
    let revenue = app.store.revenue_sums().await?;
    for (currency, incl, _) in &revenue {
        let _ = writeln!(
            body,
            "csms_revenue_incl_vat{{currency=\"{currency}\"}} {incl}"
        );
    }
    body.push_str("# HELP csms_cdrs CDRs, per currency.\n# TYPE csms_cdrs counter\n");
    for (currency, _, n) in &revenue {
        let _ = writeln!(body, "csms_cdrs{{currency=\"{currency}\"}} {n}");
    }
    // one row per station (a per-station series), read from the read pool
    body.push_str("# HELP csms_station_uptime_ratio Share of time connected since first seen.\n# TYPE csms_station_uptime_ratio gauge\n");
    for (id, ratio, _) in app.store.uptime().await? {
        let _ = writeln!(
            body,
            "csms_station_uptime_ratio{{station=\"{}\"}} {ratio:.4}",
            id.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router is in the OpenAPI document.
    #[test]
    fn openapi_documents_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        for (path, methods) in [
            ("/api/stations", &["get"][..]),
            ("/api/stations/{id}", &["get", "put", "delete"]),
            ("/api/stations/{id}/ocpp/{action}", &["post"]),
            ("/api/stations/{id}/password", &["post"]),
            ("/api/stations/{id}/reports", &["get"]),
            ("/api/tokens", &["get", "post"]),
            ("/api/sessions", &["get"]),
            ("/api/sessions/{id}", &["get"]),
            ("/api/events", &["get"]),
            ("/api/tariffs", &["get"]),
            ("/api/tariffs/{id}", &["get", "put", "delete"]),
            ("/api/tariffs/preview", &["post"]),
            ("/api/tokens/{id_token}", &["get", "put", "delete"]),
            ("/api/ocpp/actions", &["get"]),
            ("/api/overview", &["get"]),
            ("/api/sessions/live", &["get"]),
            ("/api/payments", &["get"]),
            ("/api/stats/daily", &["get"]),
            ("/api/cdrs", &["get"]),
            ("/api/wallets/{id_token}", &["get", "put"]),
            ("/api/sessions/{id}/payment", &["get"]),
            ("/api/sessions/{id}/cdr", &["get"]),
            ("/api/health", &["get"]),
            ("/api/openapi.json", &["get"]),
            ("/metrics", &["get"]),
        ] {
            for m in methods {
                assert!(doc["paths"][path][m].is_object(), "{m} {path} undocumented");
            }
        }
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
    }

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
