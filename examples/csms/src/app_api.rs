//! The drivers' app API, `/app/v1` on the public HTTP port (the operator
//! API stays on the admin port), and the card gateway's webhook
//! (`/webhooks/stripe`).
//!
//! Drivers sign up and sign in with an e-mail address and a password and
//! get a short-lived bearer token (see `crate::drivers` for the choice);
//! every other route takes it in `Authorization: Bearer`. A driver sees
//! and acts on their own account, tokens and sessions only: a session is a
//! driver's when it was started with a token the driver owned then, and
//! another's session answers exactly as no session (404).
//!
//! Errors are JSON `{"error": "..."}`: 400 malformed input, 401 no or an
//! expired sign-in, 403 a token that is not the driver's, 404 unknown (or
//! not the driver's), 409 a state that does not allow it (station offline,
//! connector busy, session over, the station refused, no card gateway
//! configured), 422 the card gateway refused, 429 over the rate limit
//! (`Retry-After`), 502/504 the station or the gateway failed or did not
//! answer, 503 the store. The OpenAPI document is `/app/v1/openapi.json`.
//!
//! Rate limits (token buckets, [`RateLimiter`]): per signed-in account;
//! per e-mail address at sign-in and sign-up; and per client address (the
//! peer address the listener hands over as `ConnectInfo`, so behind a
//! reverse proxy the proxy's) for sign-up, sign-in and every request that
//! carries no valid sign-in, so guessing passwords or bearer tokens from
//! one address is slowed whatever the account. The account and client
//! rates are settings (`app_account_rate`, `app_client_rate`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21};
use futures_util::Stream;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::drivers::{self, RateLimiter};
use crate::events::LiveEvent;
use crate::store::{Session, StoreError};
use crate::store_drivers::{Driver, DriverStore, OwnedToken, PaymentChoice};
use crate::App;

/// The app API's OpenAPI document, served at `/app/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("app_openapi.json");

/// An app API error: status and reason, as `{"error": reason}`.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    reason: String,
    retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl AppError {
    fn new(status: StatusCode, reason: impl Into<String>) -> AppError {
        AppError {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    fn too_many(wait: Duration) -> AppError {
        AppError {
            status: StatusCode::TOO_MANY_REQUESTS,
            reason: "too many requests: slow down".into(),
            retry_after: Some(wait),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: &self.reason,
            }),
        )
            .into_response();
        if let Some(w) = self.retry_after {
            // whole seconds, rounded up: retrying after it finds budget
            let secs = w.as_secs() + u64::from(w.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        tracing::error!("app API store: {e}");
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
    }
}

impl From<crate::payments::PaymentError> for AppError {
    fn from(e: crate::payments::PaymentError) -> Self {
        use crate::payments::PaymentError as P;
        match e {
            P::Store(e) => e.into(),
            P::Gateway(g) => g.into(),
            other => AppError::new(StatusCode::CONFLICT, other.to_string()),
        }
    }
}

impl From<crate::stripe::StripeError> for AppError {
    fn from(e: crate::stripe::StripeError) -> Self {
        match e {
            crate::stripe::StripeError::Refused {
                status, message, ..
            } if (400..500).contains(&status) => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the card gateway refused: {message}"),
            ),
            other => AppError::new(StatusCode::BAD_GATEWAY, other.to_string()),
        }
    }
}

impl From<crate::gateway::StationCallError> for AppError {
    fn from(e: crate::gateway::StationCallError) -> Self {
        use crate::gateway::StationCallError as E;
        let status = match &e {
            E::NotConnected { .. } => StatusCode::CONFLICT,
            E::Timeout { .. } | E::ConnectionLost { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        AppError::new(status, e.to_string())
    }
}

type AppResult<T> = Result<T, AppError>;

/// A JSON body parsed into `T` (400 with the reason otherwise).
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> AppResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// A query string parsed into `T` (400 with the reason as JSON otherwise;
/// no query at all is `T`'s defaults).
struct AppQuery<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> AppResult<Self> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| AppQuery(q))
            .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// What the routes share.
#[derive(Clone)]
struct AppState {
    app: Arc<App>,
    drivers: DriverStore,
    limits: Arc<Limits>,
}

/// The rate limits (token buckets, see [`RateLimiter`]).
struct Limits {
    /// Per signed-in account (`app_account_rate`, default 60 at once, 300
    /// a minute).
    account: RateLimiter,
    /// Per e-mail address at sign-in and sign-up: 10 at once, 10 a minute.
    email: RateLimiter,
    /// Per client address at sign-in and sign-up and for requests without
    /// a valid sign-in (`app_client_rate`, default 30 at once, 60 a minute).
    client: RateLimiter,
    /// Station calls per account: 10 at once, 20 a minute.
    commands: RateLimiter,
    /// Argon2 runs at once (19 MiB each).
    hashing: tokio::sync::Semaphore,
}

/// The app API and the gateway webhook, to merge into the public router.
pub fn router(app: Arc<App>) -> Router {
    let rates = app.config.app_rates;
    let state = AppState {
        drivers: DriverStore::new(app.store.clone()),
        app,
        limits: Arc::new(Limits {
            account: RateLimiter::new(rates.account.burst, rates.account.per_minute),
            email: RateLimiter::new(10, 10),
            client: RateLimiter::new(rates.client.burst, rates.client.per_minute),
            commands: RateLimiter::new(10, 20),
            hashing: tokio::sync::Semaphore::new(4),
        }),
    };
    Router::new()
        .route(
            "/app/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/app/v1/signup", post(signup))
        .route("/app/v1/signin", post(signin))
        .route("/app/v1/signout", post(signout))
        .route("/app/v1/me", get(me))
        .route("/app/v1/me/payment", put(set_payment))
        .route("/app/v1/me/card", post(save_card))
        .route("/app/v1/tokens", get(list_tokens).post(add_token))
        .route("/app/v1/stations", get(list_stations))
        .route("/app/v1/stations/{id}", get(get_station))
        .route("/app/v1/sessions", get(history).post(start))
        .route("/app/v1/sessions/{id}", get(live))
        .route("/app/v1/sessions/{id}/stop", post(stop))
        .route("/app/v1/sessions/{id}/receipt", get(receipt))
        .route("/app/v1/events", get(events))
        .route("/app/v1/fleet", get(my_fleet))
        .route("/app/v1/fleet/invoices", get(fleet_invoices))
        .route("/app/v1/fleet/invoices/{number}", get(fleet_invoice))
        .route("/webhooks/stripe", post(stripe_webhook))
        .with_state(state)
}

// ---- authentication ----

/// A signed-in driver (bearer token valid, within the account's rate).
struct SignedIn {
    driver_id: String,
    token_hash: String,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<SignedIn> {
        // a request without a valid sign-in takes from its client's budget:
        // 401 while there is some, 429 once it is spent
        let unauthorized = || {
            limit_client(state, &parts.extensions)
                .err()
                .unwrap_or_else(|| {
                    AppError::new(
                        StatusCode::UNAUTHORIZED,
                        "sign in: Authorization: Bearer <token from /app/v1/signin>",
                    )
                })
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(token) = token else {
            return Err(unauthorized());
        };
        let token_hash = drivers::token_hash(token);
        let Some(driver_id) = state.drivers.login(&token_hash).await? else {
            return Err(unauthorized());
        };
        state
            .limits
            .account
            .check(&driver_id)
            .map_err(AppError::too_many)?;
        Ok(SignedIn {
            driver_id,
            token_hash,
        })
    }
}

/// The client's address when the listener tells it (`ConnectInfo`).
fn client_key(ext: &axum::http::Extensions) -> Option<String> {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Serialize)]
struct SignedUp {
    id: String,
    email: String,
}

#[derive(Serialize)]
struct SignInAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// The per-client limit of sign-up, sign-in and requests without a valid
/// sign-in, when the listener tells the client's address (the e-mail
/// address's limit applies at sign-in and sign-up in any case).
fn limit_client(state: &AppState, ext: &axum::http::Extensions) -> AppResult<()> {
    match client_key(ext) {
        Some(ip) => state.limits.client.check(&ip).map_err(AppError::too_many),
        None => Ok(()),
    }
}

async fn read_credentials(req: axum::extract::Request) -> AppResult<(Credentials, String)> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let c: Credentials = body(&bytes)?;
    let email = drivers::normalize_email(&c.email)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
    Ok((c, email))
}

/// Runs Argon2 off the async workers, a few at a time.
async fn hashing<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> AppResult<T> {
    let _permit = state
        .limits
        .hashing
        .acquire()
        .await
        .map_err(|_| AppError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "password hashing failed"))
}

/// `POST /app/v1/signup` `{email, password}`: 201 `{id, email}`; 409 when
/// the address has an account.
async fn signup(State(state): State<AppState>, req: axum::extract::Request) -> AppResult<Response> {
    limit_client(&state, req.extensions())?;
    let (c, email) = read_credentials(req).await?;
    state
        .limits
        .email
        .check(&email)
        .map_err(AppError::too_many)?;
    drivers::check_password(&c.password).map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
    let password = c.password;
    let hash = hashing(&state, move || crate::store::hash_password(&password)).await?;
    match state.drivers.create_driver(&email, &hash).await? {
        Some(d) => Ok((
            StatusCode::CREATED,
            Json(SignedUp {
                id: d.id,
                email: d.email,
            }),
        )
            .into_response()),
        None => Err(AppError::new(
            StatusCode::CONFLICT,
            "an account with this e-mail address exists",
        )),
    }
}

/// A hash to verify against when the address has no account, so an
/// unknown address takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| crate::store::hash_password("no such account, no such password"))
}

/// `POST /app/v1/signin` `{email, password}`: `{access_token, token_type,
/// expires_in}`; 401 for a wrong address or password (the same answer).
async fn signin(State(state): State<AppState>, req: axum::extract::Request) -> AppResult<Response> {
    limit_client(&state, req.extensions())?;
    let (c, email) = read_credentials(req).await?;
    state
        .limits
        .email
        .check(&email)
        .map_err(AppError::too_many)?;
    let found = state.drivers.credentials(&email).await?;
    let password = c.password;
    let (driver_id, stored) = match found {
        Some((id, hash)) => (Some(id), hash),
        None => (None, decoy_hash().to_owned()),
    };
    let ok = hashing(&state, move || {
        crate::store::verify_password(&stored, password.as_bytes())
    })
    .await?;
    let Some(driver_id) = driver_id.filter(|_| ok) else {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "wrong e-mail address or password",
        ));
    };
    let token = drivers::new_login_token();
    let expires = chrono::Utc::now()
        + chrono::Duration::from_std(drivers::LOGIN_TTL).unwrap_or(chrono::Duration::hours(1));
    state
        .drivers
        .add_login(&drivers::token_hash(&token), &driver_id, expires)
        .await?;
    Ok(Json(SignInAnswer {
        access_token: token,
        token_type: "Bearer",
        expires_in: drivers::LOGIN_TTL.as_secs(),
    })
    .into_response())
}

/// `POST /app/v1/signout`: the token is revoked (204).
async fn signout(State(state): State<AppState>, who: SignedIn) -> AppResult<StatusCode> {
    state.drivers.drop_login(&who.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- account, card, tokens ----

#[derive(Serialize)]
struct Me {
    #[serde(flatten)]
    driver: Driver,
    tokens: Vec<OwnedToken>,
    card_payments: bool,
}

async fn driver_of(state: &AppState, who: &SignedIn) -> AppResult<Driver> {
    state
        .drivers
        .driver(&who.driver_id)
        .await?
        .ok_or_else(|| AppError::new(StatusCode::UNAUTHORIZED, "the account is gone"))
}

async fn me_of(state: &AppState, who: &SignedIn) -> AppResult<Json<Me>> {
    Ok(Json(Me {
        driver: driver_of(state, who).await?,
        tokens: state.drivers.tokens_of(&who.driver_id).await?,
        card_payments: state.app.payments.cards().is_some(),
    }))
}

/// `GET /app/v1/me`: the account, its tokens, whether cards are offered.
async fn me(State(state): State<AppState>, who: SignedIn) -> AppResult<Json<Me>> {
    me_of(&state, &who).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentBody {
    method: PaymentChoice,
}

/// `PUT /app/v1/me/payment` `{method: "wallet"|"card"}`; card needs a
/// saved card (409).
async fn set_payment(
    State(state): State<AppState>,
    who: SignedIn,
    bytes: Bytes,
) -> AppResult<Json<Me>> {
    let b: PaymentBody = body(&bytes)?;
    if b.method == PaymentChoice::Card {
        let d = driver_of(&state, &who).await?;
        if d.card_payment_method.is_none() || state.app.payments.cards().is_none() {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "no saved card: POST /app/v1/me/card first",
            ));
        }
    }
    state.drivers.set_payment(&who.driver_id, b.method).await?;
    me_of(&state, &who).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    /// A payment method made in the app by Stripe.js (`pm_...`).
    payment_method: String,
}

/// `POST /app/v1/me/card` `{payment_method: "pm_..."}`: saves the card
/// (a gateway customer for the driver, the payment method attached to it)
/// and makes it how the driver pays.
async fn save_card(
    State(state): State<AppState>,
    who: SignedIn,
    bytes: Bytes,
) -> AppResult<Json<Me>> {
    let b: CardBody = body(&bytes)?;
    let Some(cards) = state.app.payments.cards() else {
        // how this CSMS is set up, not an outage: `card_payments: false` in /me
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "card payments are not offered on this CSMS (card_payments: false)",
        ));
    };
    if !b.payment_method.starts_with("pm_") {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "payment_method: a pm_... id from Stripe.js",
        ));
    }
    state
        .limits
        .commands
        .check(&who.driver_id)
        .map_err(AppError::too_many)?;
    let d = driver_of(&state, &who).await?;
    let customer = match d.card_customer {
        Some(c) => c,
        None => cards.gateway().create_customer(&d.id, &d.email).await?.id,
    };
    let pm = cards
        .gateway()
        .attach_payment_method(&b.payment_method, &customer)
        .await?;
    let label = match pm.card {
        Some(c) => format!(
            "{} …{}",
            c.brand.unwrap_or_else(|| "card".into()),
            c.last4.unwrap_or_default()
        ),
        None => "card".into(),
    };
    state
        .drivers
        .save_card(&who.driver_id, &customer, &pm.id, &label)
        .await?;
    me_of(&state, &who).await
}

/// `GET /app/v1/tokens`: the driver's tokens.
async fn list_tokens(
    State(state): State<AppState>,
    who: SignedIn,
) -> AppResult<Json<Vec<OwnedToken>>> {
    Ok(Json(state.drivers.tokens_of(&who.driver_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase", tag = "kind")]
enum TokenBody {
    /// An RFID card by its UID.
    Rfid {
        id_token: String,
        #[serde(default)]
        label: Option<String>,
    },
    /// A token the CSMS makes for starts from the app.
    App {
        #[serde(default)]
        label: Option<String>,
    },
}

/// `POST /app/v1/tokens` `{kind: "rfid", id_token, label?}` or `{kind:
/// "app", label?}`: 201 with the token; 409 when another account owns the
/// card.
async fn add_token(
    State(state): State<AppState>,
    who: SignedIn,
    bytes: Bytes,
) -> AppResult<Response> {
    let b: TokenBody = body(&bytes)?;
    let (id_token, kind, token_type, label) = match b {
        TokenBody::Rfid { id_token, label } => {
            let uid = id_token.trim().to_uppercase();
            drivers::check_rfid(&uid).map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
            (uid, "rfid", "ISO14443", label)
        }
        TokenBody::App { label } => (drivers::new_app_token(), "app", "Central", label),
    };
    if label.as_ref().is_some_and(|l| l.chars().count() > 64) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "label: at most 64 characters",
        ));
    }
    if state.drivers.tokens_of(&who.driver_id).await?.len() >= 20 {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "at most 20 tokens per account",
        ));
    }
    if !state
        .drivers
        .claim_token(
            &who.driver_id,
            &id_token,
            kind,
            token_type,
            label.as_deref(),
        )
        .await?
    {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "this card is registered to an account already",
        ));
    }
    let token = state
        .drivers
        .tokens_of(&who.driver_id)
        .await?
        .into_iter()
        .find(|t| t.id_token == id_token)
        .ok_or_else(|| AppError::new(StatusCode::SERVICE_UNAVAILABLE, "token not stored"))?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

// ---- stations ----

/// A station's registered location (`PUT /api/stations/{id}` of the operator).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coordinates: Option<Coordinates>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Coordinates {
    latitude: String,
    longitude: String,
}

#[derive(Serialize)]
struct ConnectorView {
    evse_id: i64,
    connector_id: i64,
    status: String,
    available: bool,
}

/// A price component of the applicable tariff.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PriceComponent {
    #[serde(rename = "type")]
    kind: String,
    price: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vat: Option<Decimal>,
}

#[derive(Debug, Clone, Deserialize)]
struct TariffElement {
    price_components: Vec<PriceComponent>,
}

#[derive(Debug, Clone, Deserialize)]
struct StoredTariff {
    currency: String,
    elements: Vec<TariffElement>,
}

/// The price drivers are shown: the applicable (`default`) tariff's
/// currency and its price components (first element: the base price).
#[derive(Debug, Clone, Serialize)]
struct PriceView {
    currency: String,
    components: Vec<PriceComponent>,
}

#[derive(Serialize)]
struct StationView {
    id: String,
    location: Option<Location>,
    connected: bool,
    connectors: Vec<ConnectorView>,
    price: Option<PriceView>,
}

async fn price(state: &AppState) -> AppResult<Option<PriceView>> {
    let Some(t) = state.app.store.tariff("default").await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value::<StoredTariff>(t)
        .ok()
        .map(|t| PriceView {
            currency: t.currency,
            components: t
                .elements
                .into_iter()
                .next()
                .map(|e| e.price_components)
                .unwrap_or_default(),
        }))
}

async fn station_view(
    state: &AppState,
    id: &str,
    price: Option<PriceView>,
) -> AppResult<Option<StationView>> {
    let Some(s) = state.app.store.station(id).await? else {
        return Ok(None);
    };
    let location = state.app.store.place(id).await?.map(|p| Location {
        name: p.name,
        address: p.address,
        city: p.city,
        postal_code: p.postal_code,
        country: p.country,
        coordinates: p.coordinates.map(|(latitude, longitude)| Coordinates {
            latitude,
            longitude,
        }),
    });
    let connected = state.app.gateway.version(id).await.is_some();
    let connectors = s
        .connectors
        .into_iter()
        // the station-wide status (1.6 connector 0) is no connector to choose
        .filter(|c| c.evse_id > 0)
        .map(|c| ConnectorView {
            available: connected && c.status == "Available",
            evse_id: c.evse_id,
            connector_id: c.connector_id,
            status: c.status,
        })
        .collect();
    Ok(Some(StationView {
        id: s.id,
        location,
        connected,
        connectors,
        price,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StationsQuery {
    /// Only stations with an available connector.
    #[serde(default)]
    available: Option<bool>,
    /// Text in the id, name, address or city.
    #[serde(default)]
    q: Option<String>,
    /// At most this many (1-200, default 50).
    #[serde(default)]
    limit: Option<i64>,
}

/// A list's `limit`: 1 to 200, default 50.
fn list_limit(limit: Option<i64>) -> AppResult<i64> {
    match limit.unwrap_or(50) {
        n @ 1..=200 => Ok(n),
        _ => Err(AppError::new(StatusCode::BAD_REQUEST, "limit: 1 to 200")),
    }
}

/// `GET /app/v1/stations?available=&q=&limit=`: stations with their
/// location, connectors' live availability and price.
async fn list_stations(
    State(state): State<AppState>,
    _who: SignedIn,
    AppQuery(q): AppQuery<StationsQuery>,
) -> AppResult<Json<Vec<StationView>>> {
    let limit = list_limit(q.limit)?;
    let price = price(&state).await?;
    let needle = q.q.as_deref().map(str::to_lowercase);
    let mut out = Vec::new();
    for id in state.app.store.station_ids().await? {
        if out.len() as i64 >= limit {
            break;
        }
        let Some(v) = station_view(&state, &id, price.clone()).await? else {
            continue;
        };
        if q.available == Some(true) && !v.connectors.iter().any(|c| c.available) {
            continue;
        }
        if let Some(n) = &needle {
            let l = v.location.clone().unwrap_or_default();
            let hay = [Some(v.id.clone()), l.name, l.address, l.city]
                .into_iter()
                .flatten()
                .map(|s| s.to_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            if !hay.contains(n.as_str()) {
                continue;
            }
        }
        out.push(v);
    }
    Ok(Json(out))
}

/// `GET /app/v1/stations/{id}`.
async fn get_station(
    State(state): State<AppState>,
    _who: SignedIn,
    Path(id): Path<String>,
) -> AppResult<Json<StationView>> {
    let price = price(&state).await?;
    station_view(&state, &id, price)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such station"))
}

// ---- sessions: start, follow, stop, history, receipts ----

/// The one place the app API calls stations: a remote start in the
/// station's version, typed (`RemoteStartTransaction` in 1.6,
/// `RequestStartTransaction` in 2.0.1 and 2.1). Whether it was accepted.
async fn remote_start(
    app: &App,
    station: &str,
    evse: i32,
    id_token: &str,
    remote_start_id: i32,
) -> AppResult<bool> {
    let bad = |e: String| AppError::new(StatusCode::BAD_REQUEST, format!("id_token: {e}"));
    match app.gateway.version(station).await {
        None => Err(AppError::new(
            StatusCode::CONFLICT,
            "the station is not connected",
        )),
        Some(ProtocolVersion::V16) => {
            let req = v16::RemoteStartTransactionRequest {
                connector_id: Some(evse),
                id_tag: id_token.try_into().map_err(|e| bad(format!("{e}")))?,
                charging_profile: None,
            };
            let r = app
                .gateway
                .call::<v16::action::RemoteStartTransaction>(station, req)
                .await?;
            Ok(r.status == v16::RemoteStartStopStatus::Accepted)
        }
        Some(ProtocolVersion::V201) => {
            let req = v201::RequestStartTransactionRequest {
                custom_data: None,
                evse_id: Some(evse),
                group_id_token: None,
                id_token: v201::IdTokenType {
                    custom_data: None,
                    additional_info: None,
                    id_token: id_token.try_into().map_err(|e| bad(format!("{e}")))?,
                    r#type: v201::IdTokenEnumType::Central,
                },
                remote_start_id,
                charging_profile: None,
            };
            let r = app
                .gateway
                .call::<v201::action::RequestStartTransaction>(station, req)
                .await?;
            Ok(r.status == v201::RequestStartStopStatusEnumType::Accepted)
        }
        Some(_) => {
            let req = v21::RequestStartTransactionRequest {
                evse_id: Some(evse),
                group_id_token: None,
                id_token: v21::IdTokenType {
                    additional_info: None,
                    id_token: id_token.try_into().map_err(|e| bad(format!("{e}")))?,
                    r#type: "Central".try_into().map_err(|e| bad(format!("{e}")))?,
                    custom_data: None,
                },
                remote_start_id,
                charging_profile: None,
                custom_data: None,
            };
            let r = app
                .gateway
                .call::<v21::action::RequestStartTransaction>(station, req)
                .await?;
            Ok(r.status == v21::RequestStartStopStatusEnumType::Accepted)
        }
    }
}

/// The remote stop of a session in its station's version
/// (`RemoteStopTransaction` / `RequestStopTransaction`). Whether it was
/// accepted.
async fn remote_stop(app: &App, s: &Session) -> AppResult<bool> {
    let station = s.station_id.as_str();
    let bad = || {
        AppError::new(
            StatusCode::CONFLICT,
            "the session's transaction id does not fit its station's version",
        )
    };
    match app.gateway.version(station).await {
        None => Err(AppError::new(
            StatusCode::CONFLICT,
            "the station is not connected",
        )),
        Some(ProtocolVersion::V16) => {
            let req = v16::RemoteStopTransactionRequest {
                transaction_id: s.ocpp_tx_id.parse().map_err(|_| bad())?,
            };
            let r = app
                .gateway
                .call::<v16::action::RemoteStopTransaction>(station, req)
                .await?;
            Ok(r.status == v16::RemoteStartStopStatus::Accepted)
        }
        Some(ProtocolVersion::V201) => {
            let req = v201::RequestStopTransactionRequest {
                custom_data: None,
                transaction_id: s.ocpp_tx_id.as_str().try_into().map_err(|_| bad())?,
            };
            let r = app
                .gateway
                .call::<v201::action::RequestStopTransaction>(station, req)
                .await?;
            Ok(r.status == v201::RequestStartStopStatusEnumType::Accepted)
        }
        Some(_) => {
            let req = v21::RequestStopTransactionRequest {
                transaction_id: s.ocpp_tx_id.as_str().try_into().map_err(|_| bad())?,
                custom_data: None,
            };
            let r = app
                .gateway
                .call::<v21::action::RequestStopTransaction>(station, req)
                .await?;
            Ok(r.status == v21::RequestStartStopStatusEnumType::Accepted)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    station: String,
    /// The EVSE (1.6: connector) to charge at, 1 or more.
    evse: i32,
    /// One of the driver's tokens; default their first app token.
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Serialize)]
struct CommandAnswer {
    status: &'static str,
    station: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    evse: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

/// `POST /app/v1/sessions` `{station, evse, id_token?}`: asks the station
/// to start charging with the driver's token (202 when it accepted; the
/// session then appears in `GET /app/v1/sessions` and the event stream).
async fn start(State(state): State<AppState>, who: SignedIn, bytes: Bytes) -> AppResult<Response> {
    let b: StartBody = body(&bytes)?;
    if b.evse < 1 {
        return Err(AppError::new(StatusCode::BAD_REQUEST, "evse: 1 or more"));
    }
    let tokens = state.drivers.tokens_of(&who.driver_id).await?;
    let token = match &b.id_token {
        Some(t) => tokens
            .iter()
            .find(|o| o.id_token.eq_ignore_ascii_case(t))
            .ok_or_else(|| AppError::new(StatusCode::FORBIDDEN, "id_token: not one of yours"))?,
        None => tokens.iter().find(|o| o.kind == "app").ok_or_else(|| {
            AppError::new(
                StatusCode::CONFLICT,
                "no app token: POST /app/v1/tokens {\"kind\": \"app\"} first",
            )
        })?,
    }
    .id_token
    .clone();
    let Some(view) = station_view(&state, &b.station, None).await? else {
        return Err(AppError::new(StatusCode::NOT_FOUND, "no such station"));
    };
    if !view.connected {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "the station is not connected",
        ));
    }
    if let Some(c) = view.connectors.iter().find(|c| {
        c.evse_id == i64::from(b.evse) && !matches!(c.status.as_str(), "Available" | "Preparing")
    }) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!("connector {} is {}", b.evse, c.status),
        ));
    }
    state
        .limits
        .commands
        .check(&who.driver_id)
        .map_err(AppError::too_many)?;
    let remote_id = i32::from_str_radix(&crate::store::random_hex(3), 16)
        .unwrap_or(1)
        .max(1);
    if !remote_start(&state.app, &b.station, b.evse, &token, remote_id).await? {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "the station refused the start",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandAnswer {
            status: "Accepted",
            station: b.station,
            evse: Some(b.evse),
            id_token: Some(token),
            session: None,
        }),
    )
        .into_response())
}

/// A session as its driver follows it.
#[derive(Serialize)]
struct LiveView {
    id: String,
    station: String,
    evse: Option<i64>,
    connector: Option<i64>,
    id_token: Option<String>,
    status: String,
    started_at: Option<String>,
    stopped_at: Option<String>,
    energy_wh: Decimal,
    /// The latest active power import reported, W.
    power_w: Option<Decimal>,
    /// The running cost (active) or the final price (completed), incl. VAT.
    cost: Option<Amount>,
}

#[derive(Serialize)]
struct Amount {
    amount: Decimal,
    currency: String,
}

async fn live_view(state: &AppState, s: Session) -> AppResult<LiveView> {
    let power_w = state
        .drivers
        .latest_reading(&s.id, "Power.Active.Import")
        .await?
        .map(|(_, v, unit)| match unit.as_deref() {
            Some("kW") => v * Decimal::from(1000),
            _ => v,
        });
    let cost = if s.status == crate::store::SessionStatus::Completed {
        final_price(state, &s.id).await?
    } else {
        state
            .app
            .sessions
            .running()
            .cost(
                &state.app.store,
                &s,
                &crate::billing::Operator::of(&state.app.config),
                chrono::Utc::now(),
            )
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(session = %s.id, "running cost: {e}");
                None
            })
            .map(|m| Amount {
                amount: m.to_decimal(),
                currency: m.currency().code().to_owned(),
            })
    };
    Ok(LiveView {
        id: s.id,
        station: s.station_id,
        evse: s.evse_id,
        connector: s.connector_id,
        id_token: s.id_token,
        status: s.status.as_str().to_owned(),
        started_at: s.started_at.map(crate::store::ts),
        stopped_at: s.stopped_at.map(crate::store::ts),
        energy_wh: s.energy_wh,
        power_w,
        cost,
    })
}

/// A completed session's price incl. VAT, rounded to the minor unit.
async fn final_price(state: &AppState, session: &str) -> AppResult<Option<Amount>> {
    let Some(c) = state.app.store.cdr(session).await? else {
        return Ok(None);
    };
    let Ok(c) = crate::billing::decode_cdr(c) else {
        return Ok(None);
    };
    let total = c.total_cost.incl_vat.unwrap_or(c.total_cost.excl_vat);
    Ok(
        evproto_csms_core::money::Money::parse(total, c.currency.as_str())
            .ok()
            .map(|m| Amount {
                amount: m.to_decimal(),
                currency: m.currency().code().to_owned(),
            }),
    )
}

async fn own_session(state: &AppState, who: &SignedIn, id: &str) -> AppResult<Session> {
    state
        .drivers
        .session_of(&who.driver_id, id)
        .await?
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such session of yours"))
}

/// `GET /app/v1/sessions/{id}`: power, energy and running cost now.
async fn live(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> AppResult<Json<LiveView>> {
    let s = own_session(&state, &who, &id).await?;
    Ok(Json(live_view(&state, s).await?))
}

/// `POST /app/v1/sessions/{id}/stop`: asks the station to stop (202 when
/// it accepted; the session completes when the station reports it).
async fn stop(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let s = own_session(&state, &who, &id).await?;
    if s.status == crate::store::SessionStatus::Completed {
        return Err(AppError::new(StatusCode::CONFLICT, "the session is over"));
    }
    state
        .limits
        .commands
        .check(&who.driver_id)
        .map_err(AppError::too_many)?;
    if !remote_stop(&state.app, &s).await? {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "the station refused the stop",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandAnswer {
            status: "Accepted",
            station: s.station_id,
            evse: None,
            id_token: None,
            session: Some(s.id),
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /app/v1/sessions?limit=`: the driver's sessions, newest first.
async fn history(
    State(state): State<AppState>,
    who: SignedIn,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> AppResult<Json<Vec<LiveView>>> {
    let limit = list_limit(q.limit)?;
    let mut out = Vec::new();
    for s in state.drivers.sessions_of(&who.driver_id, limit).await? {
        out.push(live_view(&state, s).await?);
    }
    Ok(Json(out))
}

/// How a session was paid, on its receipt.
#[derive(Serialize)]
struct PaymentLine {
    provider: &'static str,
    status: String,
    charged: Option<String>,
    unpaid: Option<String>,
    refunded: Option<String>,
    card: Option<String>,
}

#[derive(Serialize)]
struct Receipt {
    session_id: String,
    station: String,
    started_at: Option<String>,
    stopped_at: Option<String>,
    energy_wh: Decimal,
    currency: String,
    total_excl_vat: Decimal,
    total_incl_vat: Decimal,
    payment: Option<PaymentLine>,
}

/// `GET /app/v1/sessions/{id}/receipt`: the priced session and how it was
/// paid (404 until it is priced).
async fn receipt(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> AppResult<Json<Receipt>> {
    let s = own_session(&state, &who, &id).await?;
    let cdr = state
        .app
        .store
        .cdr(&s.id)
        .await?
        .and_then(|c| crate::billing::decode_cdr(c).ok())
        .ok_or_else(|| {
            AppError::new(
                StatusCode::NOT_FOUND,
                "no receipt yet: the session is not priced",
            )
        })?;
    let currency = cdr.currency.as_str().to_owned();
    let round = |d: Decimal| {
        evproto_csms_core::money::Money::parse(d, &currency)
            .map(|m| m.to_decimal())
            .unwrap_or(d)
    };
    let card = match state.app.payments.cards() {
        Some(c) => c.payment(&s.id).await?,
        None => None,
    };
    let payment = match card {
        Some(p) => {
            let m = |minor: i64| {
                evproto_csms_core::money::Currency::from_code(&p.currency).map(|c| {
                    evproto_csms_core::money::Money::from_minor(minor, c)
                        .to_decimal()
                        .to_string()
                })
            };
            let driver = state.drivers.driver(&who.driver_id).await?;
            Some(PaymentLine {
                provider: "card",
                status: p.status.clone(),
                charged: m(p.captured_minor),
                unpaid: p.receipt.as_ref().map(|r| r.unpaid.clone()),
                refunded: m(p.refunded_minor),
                card: driver.and_then(|d| d.card),
            })
        }
        None => state
            .app
            .payments
            .payment(&s.id)
            .await?
            .map(|w| PaymentLine {
                provider: "wallet",
                status: w.status,
                charged: w.receipt.as_ref().map(|r| r.charged.clone()),
                unpaid: w.receipt.map(|r| r.unpaid),
                refunded: None,
                card: None,
            }),
    };
    Ok(Json(Receipt {
        session_id: s.id,
        station: s.station_id,
        started_at: s.started_at.map(crate::store::ts),
        stopped_at: s.stopped_at.map(crate::store::ts),
        energy_wh: s.energy_wh,
        total_excl_vat: round(cdr.total_cost.excl_vat),
        total_incl_vat: round(cdr.total_cost.incl_vat.unwrap_or(cdr.total_cost.excl_vat)),
        currency,
        payment,
    }))
}

/// The session a live event is about, if any.
fn event_session(e: &LiveEvent) -> Option<&str> {
    match e {
        LiveEvent::TransactionEvent { session, .. }
        | LiveEvent::SessionStarted { session, .. }
        | LiveEvent::SessionAmended { session, .. }
        | LiveEvent::SessionClosed { session, .. }
        | LiveEvent::SessionCompleted { session, .. }
        | LiveEvent::Meter { session, .. }
        | LiveEvent::PaymentHeld { session, .. }
        | LiveEvent::PaymentRefused { session, .. }
        | LiveEvent::PaymentFailed { session, .. } => Some(session),
        _ => None,
    }
}

/// `GET /app/v1/events`: server-sent events of the driver's own sessions
/// (`event: session`, data: the session as `GET /app/v1/sessions/{id}`
/// shows it), each time one of them changes.
async fn events(
    State(state): State<AppState>,
    who: SignedIn,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.app.events.subscribe();
    let seed = (rx, state, who.driver_id, HashMap::<String, bool>::new());
    let stream =
        futures_util::stream::unfold(seed, |(mut rx, state, driver, mut mine)| async move {
            loop {
                let e = match rx.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                };
                let Some(id) = event_session(&e).map(str::to_owned) else {
                    continue;
                };
                if mine.len() > 10_000 {
                    mine.clear();
                }
                let s = match state.drivers.session_of(&driver, &id).await {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                mine.insert(id, s.is_some());
                let Some(s) = s else { continue };
                let Ok(view) = live_view(&state, s).await else {
                    continue;
                };
                let Ok(data) = serde_json::to_string(&view) else {
                    continue;
                };
                return Some((
                    Ok(SseEvent::default().event("session").data(data)),
                    (rx, state, driver, mine),
                ));
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

// ---- fleet managers ----

/// The fleet the signed-in driver manages (403 otherwise: a fleet's
/// drivers and drivers in no fleet see no fleet).
async fn managed_fleet(state: &AppState, who: &SignedIn) -> AppResult<String> {
    match state.app.store.fleet_of_driver(&who.driver_id).await? {
        Some((fleet, role)) if role == "manager" => Ok(fleet),
        _ => Err(AppError::new(
            StatusCode::FORBIDDEN,
            "not a fleet manager: the operator makes you one of your fleet",
        )),
    }
}

impl From<crate::fleets::FleetError> for AppError {
    fn from(e: crate::fleets::FleetError) -> Self {
        use crate::fleets::FleetError as F;
        match e {
            F::Store(s) => s.into(),
            F::NotFound(r) => AppError::new(StatusCode::NOT_FOUND, r),
            other => AppError::new(StatusCode::CONFLICT, other.to_string()),
        }
    }
}

/// `GET /app/v1/fleet`: the managed fleet, its drivers, cards and vehicles.
async fn my_fleet(
    State(state): State<AppState>,
    who: SignedIn,
) -> AppResult<Json<crate::fleets::FleetView>> {
    let fleet = managed_fleet(&state, &who).await?;
    Ok(Json(crate::fleets::view(&state.app, &fleet).await?))
}

/// `GET /app/v1/fleet/invoices`: the managed fleet's invoices and credit
/// notes, newest first.
async fn fleet_invoices(
    State(state): State<AppState>,
    who: SignedIn,
) -> AppResult<Json<Vec<crate::store::fleets::DocumentRow>>> {
    let fleet = managed_fleet(&state, &who).await?;
    Ok(Json(state.app.store.documents(&fleet).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentQuery {
    /// `json` (default), `csv` or `pdf`.
    #[serde(default)]
    format: Option<crate::fleets::Format>,
}

/// `GET /app/v1/fleet/invoices/{number}?format=json|csv|pdf`: one of the
/// managed fleet's documents (another fleet's answers as none, 404).
async fn fleet_invoice(
    State(state): State<AppState>,
    who: SignedIn,
    Path(number): Path<String>,
    AppQuery(q): AppQuery<DocumentQuery>,
) -> AppResult<Response> {
    let fleet = managed_fleet(&state, &who).await?;
    match state.app.store.document(&number).await? {
        Some((row, doc)) if row.fleet_id == fleet => Ok(crate::fleets::render(
            &doc,
            q.format.unwrap_or(crate::fleets::Format::Json),
        )),
        _ => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no such invoice of your fleet",
        )),
    }
}

// ---- the card gateway's webhook ----

#[derive(Serialize)]
struct WebhookAnswer {
    received: bool,
    duplicate: bool,
}

/// `POST /webhooks/stripe`: a gateway event, verified by its
/// `Stripe-Signature` (400 otherwise) and applied once (a replay answers
/// `duplicate: true` and changes nothing).
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> AppResult<Json<WebhookAnswer>> {
    let Some(cards) = state.app.payments.cards() else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "card payments are not configured",
        ));
    };
    let Some(secret) = cards.gateway().config().webhook_secret.clone() else {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no webhook secret configured (CSMS_STRIPE_WEBHOOK_SECRET)",
        ));
    };
    let event = crate::stripe::verify_webhook(
        &bytes,
        headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok()),
        &secret,
        chrono::Utc::now(),
        crate::stripe::WEBHOOK_TOLERANCE,
    )
    .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let applied = cards.apply_event(&event).await?;
    // the driver is told of a failed card payment (once: the mail's id)
    if applied && event.kind == "payment_intent.payment_failed" {
        if let Some(session) = cards.session_of_intent(&event.data.object.id).await? {
            let failed = crate::mail::Notice::PaymentFailed {
                reason: "the card payment failed".into(),
            };
            crate::mail::notify(&state.app.store, state.app.mail.as_ref(), &session, failed)
                .await?;
        }
    }
    Ok(Json(WebhookAnswer {
        received: true,
        duplicate: !applied,
    }))
}
