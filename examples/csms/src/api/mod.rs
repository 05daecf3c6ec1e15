//! The operator REST API (`/api/...`, bearer key), `/metrics`, the OpenAPI
//! document and the dashboard page with its event stream.
//!
//! Every error is JSON `{"error": "..."}` with a status that says what went
//! wrong: 400 for a malformed body, 401 without the right key, 404 for an
//! unknown resource or a station that is not connected, 422 for an OCPP
//! payload that breaks its schema, 502 for the station's CALLERROR, 504 when
//! it does not answer in time. That is the one error type, [`ApiError`]
//! (`error.rs`), every handler answers with.
//!
//! This file has the routers (which route goes to which handler), the
//! key check, the list paging every list shares, `/metrics` and the event
//! stream; the handlers are in one module per resource: `stations`
//! (registry, reports, password rotation, the operator's raw OCPP call),
//! `tokens`, `sessions`, `tariffs`, `billing` (CDRs, wallets, payments),
//! `alerts`, `roaming` (OCPI partners), `ops` (firmware, log uploads, local
//! lists), `console` (what the dashboard needs beyond the lists) and
//! `drivers` (the paying side the console reads: drivers, every fleet's
//! invoices, a session's card payment).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::App;

mod alerts;
mod billing;
pub(crate) mod console;
mod drivers;
mod error;
mod maintenance;
pub(crate) mod ops;
mod roaming;
mod sessions;
mod stations;
mod tariffs;
mod tokens;

pub use error::{ApiError, ApiResult};

/// The OpenAPI document, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

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

pub(crate) fn decode_cursor(c: &str) -> Result<Vec<String>, ApiError> {
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
    pub(crate) transfers: ops::Transfers,
}

impl HttpState {
    /// Empty cache, slots as configured.
    pub fn new(config: &crate::config::Config) -> HttpState {
        HttpState {
            metrics: tokio::sync::Mutex::new(None),
            transfers: ops::Transfers::new(config),
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
        .merge(crate::v2x::routes())
        .merge(crate::smart::routes())
        .merge(crate::der::routes())
        .merge(crate::streams::routes())
        .merge(crate::fleets::routes())
        .merge(crate::payments::routes())
        .merge(crate::pnc::api::routes())
        .merge(crate::local_list::routes())
        .merge(crate::local_cost::routes())
        .merge(crate::reservations::routes())
        .merge(crate::battery_swap::routes())
        .merge(crate::profile_upgrade::routes())
        .merge(crate::provisioning::routes())
        .route("/api/stations", get(stations::list_stations))
        .route(
            "/api/stations/{id}",
            get(stations::get_station)
                .put(stations::put_station)
                .delete(stations::delete_station),
        )
        .route(
            "/api/stations/{id}/ocpp/{action}",
            post(stations::ocpp_call),
        )
        .route(
            "/api/stations/{id}/password",
            post(stations::rotate_password),
        )
        .route(
            "/api/tokens",
            get(tokens::list_tokens).post(tokens::post_token),
        )
        .route(
            "/api/tokens/{id_token}",
            get(tokens::get_token)
                .put(tokens::put_token)
                .delete(tokens::delete_token),
        )
        .route("/api/sessions", get(sessions::list_sessions))
        .route("/api/sessions/live", get(console::live))
        .route("/api/sessions/{id}", get(sessions::get_session))
        .route("/api/tariffs", get(tariffs::list_tariffs))
        .route(
            "/api/tariffs/{id}",
            get(tariffs::get_tariff)
                .put(tariffs::put_tariff)
                .delete(console::delete_tariff),
        )
        .route("/api/tariffs/preview", post(console::preview))
        .route("/api/payments", get(console::list_payments))
        .route("/api/overview", get(console::overview))
        .route("/api/ocpp/actions", get(console::actions))
        .route("/api/cdrs", get(billing::list_cdrs))
        .route(
            "/api/wallets/{id_token}",
            get(billing::get_wallet).put(billing::put_wallet),
        )
        .route("/api/sessions/{id}/payment", get(billing::get_payment))
        .route("/api/sessions/{id}/cdr", get(billing::get_cdr))
        .route(
            "/api/sessions/{id}/card-payment",
            get(drivers::get_card_payment),
        )
        .route("/api/drivers", get(drivers::list_drivers))
        .route("/api/drivers/{id}", get(drivers::get_driver))
        .route("/api/invoices", get(drivers::list_invoices))
        .route(
            "/api/sessions/{id}/settlements",
            get(billing::get_settlements),
        )
        .route("/api/sessions/{id}/close", post(sessions::close_session))
        .route(
            "/api/ocpi/partners",
            get(roaming::list_partners).post(roaming::register_partner),
        )
        .route("/api/ocpi/token-a", post(roaming::issue_token_a))
        .route(
            "/api/firmware-campaigns",
            get(ops::list_campaigns).post(ops::start_campaign),
        )
        .route("/api/firmware-campaigns/{id}", get(ops::get_campaign))
        .route(
            "/api/stations/{id}/logs",
            get(ops::list_logs).post(ops::request_logs),
        )
        .route("/api/alerts", get(alerts::list_alerts))
        .route("/api/maintenance", get(maintenance::list))
        .route("/api/stats/daily", get(console::daily_stats))
        .route("/api/alerts/{id}/clear", post(alerts::clear_alert))
        .route("/api/uptime", get(stations::uptime))
        .route(
            "/api/stations/{id}/device-model",
            get(stations::device_model),
        )
        .route("/api/stations/{id}/reports", get(stations::station_reports))
        .route("/api/ocpi/tokens", get(roaming::list_roaming_tokens))
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
            axum::routing::put(ops::put_firmware),
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
/// station uploads (`/upload/...`, a single-use token in the URL), the
/// built-in OCSP responder (`/ocsp`, with `--pnc`) and OCPI
/// (`ocpi`, its own credentials tokens; nested at `/ocpi` with a deadline
/// per request).
pub fn public_router(app: Arc<App>, ocpi: Option<Router>) -> Router {
    let mut router = Router::new()
        .route("/firmware/{name}", get(ops::get_firmware))
        .route(
            "/upload/{station}/{token}/{filename}",
            axum::routing::put(ops::upload).post(ops::upload),
        )
        .route("/ocsp", axum::routing::post(ocsp))
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

/// `POST /ocsp` (with `--pnc`): the built-in OCSP responder over HTTP
/// (RFC 6960 appendix A.1), for the CSMS's other nodes and a lab's other
/// systems; 404 without `--pnc`.
async fn ocsp(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let Some(p) = app.pnc.as_ref() else {
        return not_found().await.into_response();
    };
    (
        [(header::CONTENT_TYPE, "application/ocsp-response")],
        p.serve_ocsp(&body).await,
    )
        .into_response()
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

/// 201 for a create, 200 for an update: every create-or-update route.
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
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
/// cost the store little however often they come; the cluster's gauges
/// (memory only) are read at every scrape.
async fn metrics(State(app): State<Arc<App>>) -> ApiResult {
    // one computation at a time: concurrent scrapes wait for it and share it
    let mut cached = app.http.metrics.lock().await;
    let mut body = match &*cached {
        Some((at, body)) if at.elapsed() < METRICS_TTL => body.clone(),
        _ => {
            let body = render_metrics(&app).await?;
            *cached = Some((std::time::Instant::now(), body.clone()));
            body
        }
    };
    drop(cached);
    // cluster mode: this node's jobs and relay, the nodes' stations and
    // jobs, read from memory at every scrape
    body.push_str(&app.jobs.metrics());
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
    use serde_json::Value;

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
            ("/api/stations/{id}/local-list", &["get", "put"]),
            ("/api/stations/{id}/reservations", &["get", "post"]),
            ("/api/stations/{id}/security-profile", &["post"]),
            ("/api/stations/{id}/variables/set", &["post"]),
            ("/api/stations/{id}/variables/get", &["post"]),
            ("/api/stations/{id}/reset", &["post"]),
            ("/api/stations/{id}/network-profile", &["post"]),
            (
                "/api/stations/{id}/reservations/{reservation_id}",
                &["delete"],
            ),
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
            ("/api/maintenance", &["get"]),
            ("/api/grid/events", &["get", "post"]),
            ("/api/grid/events/{id}", &["delete"]),
            ("/api/site/limits", &["get", "put"]),
            ("/api/site/power", &["get"]),
            ("/api/stations/{id}/event-streams", &["get"]),
            ("/api/stations/{id}/event-streams/query", &["post"]),
            ("/api/stations/{id}/event-streams/{stream}", &["delete"]),
            ("/api/stations/{id}/event-streams/{stream}/values", &["get"]),
            (
                "/api/stations/{id}/event-streams/{stream}/adjust",
                &["post"],
            ),
            ("/api/stations/{id}/der-controls", &["get", "post"]),
            ("/api/stations/{id}/der-controls/report", &["post"]),
            ("/api/stations/{id}/der-controls/{control_id}", &["delete"]),
            ("/api/cdrs", &["get"]),
            ("/api/wallets/{id_token}", &["get", "put"]),
            ("/api/sessions/{id}/payment", &["get"]),
            ("/api/sessions/{id}/cdr", &["get"]),
            ("/api/sessions/{id}/card-payment", &["get"]),
            ("/api/drivers", &["get"]),
            ("/api/drivers/{id}", &["get"]),
            ("/api/invoices", &["get"]),
            ("/api/sessions/{id}/settlements", &["get"]),
            ("/api/sessions/{id}/receipt", &["get"]),
            ("/api/der-policy", &["get", "put", "delete"]),
            ("/api/stations/{id}/tariffs", &["get", "delete"]),
            ("/api/stations/{id}/tariffs/default", &["post"]),
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
}
