//! OCPI over HTTP, serving side (feature `server`): an axum router with the
//! versions and credentials endpoints and every module's interfaces for a
//! CPO or an eMSP, over a [`Store`] (an in-memory one is included) and a
//! [`Handler`] for what only the application can decide (commands,
//! real-time authorization, reacting to pushed objects).
//!
//! | role | Sender interfaces (peers pull) | Receiver interfaces (peers push) |
//! |---|---|---|
//! | CPO | locations, sessions, cdrs, tariffs (paginated lists; locations by id) | tokens (GET/PUT/PATCH), commands (POST), chargingprofiles (PUT/GET/DELETE `/{session_id}`), hubclientinfo (GET/PUT) |
//! | eMSP | tokens (paginated list; POST `{uid}/authorize`), chargingprofiles (results and active-profile updates) | locations, sessions (GET/PUT/PATCH), tariffs (GET/PUT/DELETE), cdrs (POST, GET), command results (POST), hubclientinfo (GET/PUT) |
//!
//! Transport rules (`transport_and_format.asciidoc`), each with a test in
//! `ocpi/tests/ocpi/server.rs`:
//! - 401 for a missing or unknown token, and for token A outside
//!   `versions`/`credentials`;
//! - 400 for a body that is not JSON (with status 2001 in the envelope);
//!   a valid request that the OCPI layer refuses gets 200 and an OCPI code
//!   (2001 invalid object, id mismatch, PATCH without `last_updated`);
//! - 404 for a GET of an unknown object; 201 for a PUT that created, 200
//!   for one that replaced; 405 for POST credentials when registered and
//!   PUT/DELETE credentials when not;
//! - `X-Request-ID` and `X-Correlation-ID` echoed (generated when absent);
//! - lists paginated with `offset`, `limit` (capped, `X-Limit`),
//!   `date_from` (inclusive), `date_to` (exclusive), `X-Total-Count`, and a
//!   `Link` to the next page carrying the original filters.
//!
//! Ownership: what a party sends is kept under one of its own identities
//! ([`Party::identities`], from its credentials) and only that party reads
//! it back:
//! - client-owned objects (tokens, locations, sessions, tariffs) at
//!   `CC/PID/ID` of the URL, which must be one of the sender's;
//! - CDRs POSTed to an eMSP at `CC/PID/ID` of the CDR (2.2+; one of the
//!   sender's) or of the sender's first identity (2.1.1); `GET` of the
//!   `Location` URL looks among the caller's identities only;
//! - hub client info, command results and charging profile results and
//!   updates under the sender's first identity
//!   (`CC/PID/<country>/<party>`, `CC/PID/<path below commands/>`,
//!   `CC/PID/<session id>[/..]`);
//! - a registration (POST/PUT credentials) claiming one of our identities
//!   or another party's is refused with 2001 ([`Server::identity_in_use`]);
//! - commands reach the [`Handler`] with the calling party, which acts
//!   only on that party's sessions, reservations and tokens;
//! - a command's or charging profile request's `response_url` must pass
//!   our URL policy and be on a host the party registered (its versions
//!   URL or an endpoint), else 2001: results go nowhere else;
//! - a CPO's Sessions and CDRs Sender lists serve each eMSP only the
//!   objects whose `cdr_token` names one of its identities (objects without
//!   one, as 2.1.1 stores them, are served to nobody).
//!
//! Decisions on the spec's open points (OCPI-NOTES §2.2):
//! - item 8: real-time authorization of an unknown token answers HTTP 404
//!   (the text of mod_tokens) with status 2004 "Unknown Token" in the body
//!   (the status code made for it);
//! - item 9: `GET credentials` must return the token the peer uses, in
//!   clear; a [`Store`] may keep tokens however it likes but must find a
//!   party by its token and give the token back ([`MemoryStore`] keeps
//!   them as they are). The reference CSMS keeps them in its database.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode as Http};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, on, MethodFilter, MethodRouter};
use axum::Router;
use serde_json::{json, Value};

use crate::auth::{parse_token, TokenEncoding};
use crate::client::Client;
use crate::commands::Command;
use crate::credentials::{HandshakeError, Own, Registered};
use crate::pagination::Page;
use crate::status::StatusCode;
use crate::v221;
use crate::Version;

/// Which side of roaming this server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Charge point operator: owns locations, sessions, CDRs, tariffs.
    Cpo,
    /// E-mobility service provider: owns tokens.
    Emsp,
}

/// A party we exchange data with.
#[derive(Debug, Clone, PartialEq)]
pub struct Party {
    /// Our name for it (token A's label, later `CC-PID` of its first role).
    pub id: String,
    /// The token it presents to us (A until registered, then C).
    pub token: String,
    /// Whether that token is a registration token A.
    pub token_a: bool,
    /// What the handshake established (its token B, version, endpoints).
    pub registration: Option<Registered>,
}

impl Party {
    /// The `(country_code, party_id)` pairs the party registered with
    /// (upper-cased; `roles[]` of 2.2+ credentials, or the 2.1.1 top-level
    /// pair).
    pub fn identities(&self) -> Vec<(String, String)> {
        match &self.registration {
            Some(reg) => crate::credentials::identities_in(&reg.peer_credentials),
            None => Vec::new(),
        }
    }

    /// The `CC/PID` prefix of the party's first identity: what objects it
    /// sends without a country/party of their own (CDRs of 2.1.1, hub
    /// client info, command and charging profile results) are keyed under.
    fn key_prefix(&self) -> Option<String> {
        self.identities()
            .into_iter()
            .next()
            .map(|(cc, pid)| format!("{cc}/{pid}"))
    }
}

/// Why a [`Store`] could not do what the server asked. The server answers
/// it with OCPI status 3000 (generic server error) and an HTTP error status
/// in one place (`Reply::store_failed`): the request did not reach a
/// decision of the OCPI layer, so the "200 with an OCPI code" rule of
/// `transport_and_format` does not apply. The source is logged, never sent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached or timed out; the same request may
    /// work later (HTTP 503).
    #[error("store unavailable")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The backend failed the operation, or a stored record could not be
    /// read back (HTTP 500).
    #[error("store failed")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A backend that cannot be reached (connection refused, pool timeout).
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Unavailable(Arc::new(e))
    }

    /// A backend failure.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Arc::new(e))
    }

    /// The HTTP status the server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::Unavailable(_) => 503,
            StoreError::Backend(_) => 500,
        }
    }
}

/// Why [`Server::publish`] refused an object.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The object lacks `country_code`, `party_id` or `id`/`uid`.
    #[error("object needs country_code, party_id and id or uid")]
    NoKey,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where objects and parties live. Objects are stored as validated JSON
/// under their module and key (`CC/PID/ID`, upper-cased country and party
/// since they are case-insensitive), with their `last_updated`.
///
/// Every method reports a failure as a [`StoreError`], which the server
/// answers with OCPI status 3000 and HTTP 500/503.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The party presenting `token`, `None` when no party has it.
    async fn party_by_token(&self, token: &str) -> Result<Option<Party>, StoreError>;
    /// Saves a party, replacing the one with the same `id`.
    async fn save_party(&self, party: Party) -> Result<(), StoreError>;
    /// Removes a party (none with that id is not an error).
    async fn remove_party(&self, id: &str) -> Result<(), StoreError>;
    /// Every party (registered or holding a token A). The server reads
    /// them when a party registers, to refuse identities
    /// (`country_code`, `party_id`) that another party already holds.
    async fn list_parties(&self) -> Result<Vec<Party>, StoreError>;
    /// Stores an object; `true` if it was new.
    async fn put_object(&self, module: &str, key: &str, object: Value) -> Result<bool, StoreError>;
    /// One object, `None` when there is none under that key.
    async fn get_object(&self, module: &str, key: &str) -> Result<Option<Value>, StoreError>;
    /// Removes an object; `true` if there was one.
    async fn delete_object(&self, module: &str, key: &str) -> Result<bool, StoreError>;
    /// A page of a module's objects whose key starts with one of
    /// `owners` (`CC/PID/`), in key order, with the total that match.
    async fn list_objects(
        &self,
        module: &str,
        owners: &[String],
        page: &Page,
    ) -> Result<(Vec<Value>, usize), StoreError>;
}

/// A [`Store`] in memory (tests, demos, small deployments).
#[derive(Debug, Default)]
pub struct MemoryStore {
    parties: Mutex<BTreeMap<String, Party>>,
    objects: Mutex<BTreeMap<(String, String), Value>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// One object, without awaiting (tests, inspection).
    pub fn get_object_sync(&self, module: &str, key: &str) -> Option<Value> {
        let o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        o.get(&(module.to_string(), key.to_string())).cloned()
    }

    /// Every party.
    pub fn parties(&self) -> Vec<Party> {
        self.parties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// A page of `(key, object)` pairs (in key order): those whose key starts
/// with one of `owners` and whose `last_updated` is in the page's date
/// range, with the total that match. For [`Store::list_objects`].
pub fn select_page<'a>(
    objects: impl Iterator<Item = (&'a str, &'a Value)>,
    owners: &[String],
    page: &Page,
) -> (Vec<Value>, usize) {
    let matching: Vec<&Value> = objects
        .filter(|(k, _)| owners.iter().any(|own| k.starts_with(own.as_str())))
        .filter(|(_, v)| last_updated(v).is_none_or(|t| page.in_range(t)))
        .map(|(_, v)| v)
        .collect();
    let total = matching.len();
    let items = matching
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .cloned()
        .collect();
    (items, total)
}

fn last_updated(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    v.get("last_updated")
        .and_then(Value::as_str)
        .and_then(crate::types::DateTime::parse)
        .map(|t| t.0)
}

/// Memory does not fail: every method answers `Ok`.
#[async_trait]
impl Store for MemoryStore {
    async fn party_by_token(&self, token: &str) -> Result<Option<Party>, StoreError> {
        let p = self.parties.lock().unwrap_or_else(|e| e.into_inner());
        Ok(p.values().find(|p| p.token == token).cloned())
    }
    async fn save_party(&self, party: Party) -> Result<(), StoreError> {
        let mut p = self.parties.lock().unwrap_or_else(|e| e.into_inner());
        p.insert(party.id.clone(), party);
        Ok(())
    }
    async fn remove_party(&self, id: &str) -> Result<(), StoreError> {
        self.parties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }
    async fn list_parties(&self) -> Result<Vec<Party>, StoreError> {
        Ok(self.parties())
    }
    async fn put_object(&self, module: &str, key: &str, object: Value) -> Result<bool, StoreError> {
        let mut o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        Ok(o.insert((module.to_string(), key.to_string()), object)
            .is_none())
    }
    async fn get_object(&self, module: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        Ok(o.get(&(module.to_string(), key.to_string())).cloned())
    }
    async fn delete_object(&self, module: &str, key: &str) -> Result<bool, StoreError> {
        let mut o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        Ok(o.remove(&(module.to_string(), key.to_string())).is_some())
    }
    async fn list_objects(
        &self,
        module: &str,
        owners: &[String],
        page: &Page,
    ) -> Result<(Vec<Value>, usize), StoreError> {
        let o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        Ok(select_page(
            o.range((module.to_string(), String::new())..)
                .take_while(|((m, _), _)| m == module)
                .map(|((_, k), v)| (k.as_str(), v)),
            owners,
            page,
        ))
    }
}

/// What only the application can decide.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// A command POSTed to a CPO (`START_SESSION`, ...): answer with a
    /// `CommandResponse`; send the `CommandResult` to `response_url` later.
    ///
    /// A command names sessions, reservations and tokens: act only on
    /// those of `party` ([`Party::identities`]) and answer any other as
    /// unknown (`UNKNOWN_SESSION`, `REJECTED`).
    ///
    /// # Errors
    ///
    /// The application's store failed: the server answers OCPI 3000 with
    /// HTTP 500/503, as for its own [`Store`].
    async fn command(
        &self,
        _party: &Party,
        _command: Command,
    ) -> Result<v221::CommandResponse, StoreError> {
        Ok(crate::commands::respond(
            v221::CommandResponseType::NotSupported,
            0,
            "",
        ))
    }
    /// Real-time authorization on an eMSP: an `AuthorizationInfo`, or `None`
    /// for an unknown token.
    async fn authorize(
        &self,
        _party: &Party,
        uid: &str,
        token_type: &str,
        _location: Option<&Value>,
    ) -> Option<Value> {
        let _ = (uid, token_type);
        None
    }
    /// An object a peer pushed was stored (after validation).
    async fn pushed(&self, _party: &Party, _module: &str, _key: &str, _object: &Value) {}
    /// A party finished registering (or updated its registration).
    async fn registered(&self, _party: &Party) {}
    /// Charging Profiles on a CPO: `action` is `SET` (PUT, `body` is the
    /// SetChargingProfile), `GET` (query has `duration` and
    /// `response_url`) or `CLEAR` (DELETE); answer a
    /// `ChargingProfileResponse` and send the result to `response_url` later.
    /// As with [`Handler::command`], act only on sessions of `party`'s
    /// tokens and answer any other `session_id` as unknown
    /// (`UNKNOWN_SESSION`).
    async fn charging_profile(
        &self,
        _party: &Party,
        _action: &str,
        _session_id: &str,
        _body: Option<&Value>,
        _query: &str,
    ) -> Value {
        json!({"result": "NOT_SUPPORTED", "timeout": 0})
    }
}

/// A [`Handler`] that supports no command and knows no token.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHandler;

#[async_trait]
impl Handler for NoHandler {}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// CPO or eMSP.
    pub role: Role,
    /// Our public base URL up to the router's mount point
    /// (`http://127.0.0.1:8080/ocpi`); endpoint URLs are built on it.
    pub base_url: String,
    /// Who we are, our versions and what we require of peers.
    pub own: Own,
    /// The most objects per page (`X-Limit`).
    pub max_limit: usize,
    /// How `Authorization` headers are read (Lenient accepts Base64 and
    /// plain tokens).
    pub token_encoding: TokenEncoding,
    /// Advertise endpoint URLs with a trailing `/` (both forms are always
    /// served). Some peers (extrawest-ocpi's push) append object paths to
    /// the endpoint URL without a separator.
    pub trailing_slash: bool,
    /// The version our own objects are stored in (what [`Server::publish`]
    /// is given). Sender interfaces of other versions serve them converted
    /// with [`crate::convert`] (an object that cannot be expressed in that
    /// version is left out and logged). `None`: served as stored.
    pub storage_version: Option<Version>,
}

struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    handler: Arc<dyn Handler>,
    client: Client,
}

/// The OCPI server: build it, issue tokens A, mount [`Server::router`].
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("role", &self.inner.config.role)
            .finish()
    }
}

impl Server {
    /// A server over `store` and `handler`; `client` makes the handshake's
    /// call-backs.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        handler: Arc<dyn Handler>,
        client: Client,
    ) -> Server {
        Server {
            inner: Arc::new(Inner {
                config,
                store,
                handler,
                client,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Creates a registration token A for a new partner `label`.
    ///
    /// # Errors
    ///
    /// The store could not save it.
    pub async fn issue_token_a(&self, label: &str) -> Result<String, StoreError> {
        let token = new_token();
        self.issue_token_a_as(label, &token).await?;
        Ok(token)
    }

    /// Registers `token` (chosen by the caller, e.g. a token B we are
    /// about to hand out) as a registration token for `label`: valid on
    /// versions and credentials only.
    ///
    /// # Errors
    ///
    /// The store could not save it.
    pub async fn issue_token_a_as(&self, label: &str, token: &str) -> Result<(), StoreError> {
        self.inner
            .store
            .save_party(Party {
                id: label.to_string(),
                token: token.to_string(),
                token_a: true,
                registration: None,
            })
            .await
    }

    /// Records a registration this party made as Sender (with
    /// [`Client::register`]): the peer now calls us with `token_b`, which
    /// stops being a registration token.
    ///
    /// # Errors
    ///
    /// The store could not save it.
    pub async fn adopt(
        &self,
        label: &str,
        token_b: &str,
        registration: Registered,
    ) -> Result<(), StoreError> {
        self.inner
            .store
            .save_party(Party {
                id: label.to_string(),
                token: token_b.to_string(),
                token_a: false,
                registration: Some(registration),
            })
            .await
    }

    /// The first `(country_code, party_id)` that `credentials` (a
    /// credentials object, as a peer posts or returns it) claims and that
    /// is already taken: one of our own roles, or an identity of a stored
    /// party other than the one with id `except`. The server refuses such a
    /// registration (OCPI 2001); a Sender ([`Client::register`]) checks the
    /// peer's answer with it before [`Server::adopt`].
    ///
    /// # Errors
    ///
    /// The store could not list the parties.
    pub async fn identity_in_use(
        &self,
        except: &str,
        credentials: &Value,
    ) -> Result<Option<(String, String)>, StoreError> {
        identity_in_use(&self.inner, except, credentials).await
    }

    /// Stores one of our own objects (as CPO: a location, session, CDR,
    /// tariff; as eMSP: a token) so peers can pull it; its key.
    ///
    /// # Errors
    ///
    /// [`PublishError`].
    pub async fn publish(&self, module: &str, object: Value) -> Result<String, PublishError> {
        let key = object_key(&object).ok_or(PublishError::NoKey)?;
        self.inner.store.put_object(module, &key, object).await?;
        Ok(key)
    }

    /// The axum router; mount it at the path of `base_url`.
    ///
    /// Each module's interface for our role is its own route with named
    /// segments (`/{v}/tokens/{country_code}/{party_id}/{id}`, ...), so
    /// axum percent-decodes every id exactly once: `LOC%2F1` is the id
    /// `LOC/1`, while `LOC/1` sent unencoded is two segments. Other paths
    /// answer 404 and other methods 405, both with an OCPI envelope, after
    /// authentication.
    pub fn router(&self) -> Router {
        use MethodFilter as M;
        let mut r = Router::new()
            .route("/versions", get(versions))
            .route("/{v}", get(details))
            .route("/{v}/credentials", any(credentials))
            .route("/{v}/credentials/", any(credentials))
            .route(
                "/{v}/hubclientinfo/{country_code}/{party_id}",
                on_route(M::GET.or(M::PUT), Route::HubClientInfo),
            );
        // list endpoints are served with and without a trailing slash
        // (`Config::trailing_slash` advertises the latter)
        let list = |r: Router<Arc<Inner>>, module: &'static str| {
            let m = on_route(M::GET, Route::List(module));
            r.route(&format!("/{{v}}/{module}"), m.clone())
                .route(&format!("/{{v}}/{module}/"), m)
        };
        let receiver = |r: Router<Arc<Inner>>, module: &'static str, methods: MethodFilter| {
            r.route(
                &format!("/{{v}}/{module}/{{country_code}}/{{party_id}}/{{id}}"),
                on_route(methods, Route::Receive(module)),
            )
        };
        match self.inner.config.role {
            Role::Cpo => {
                for module in ["locations", "sessions", "cdrs", "tariffs"] {
                    r = list(r, module);
                }
                let loc = on_route(M::GET, Route::Location);
                r = r
                    .route("/{v}/locations/{location_id}", loc.clone())
                    .route("/{v}/locations/{location_id}/{evse_uid}", loc.clone())
                    .route(
                        "/{v}/locations/{location_id}/{evse_uid}/{connector_id}",
                        loc,
                    )
                    .route("/{v}/commands/{command}", on_route(M::POST, Route::Command))
                    .route(
                        "/{v}/chargingprofiles/{session_id}",
                        on_route(M::GET.or(M::PUT).or(M::DELETE), Route::ChargingProfile),
                    );
                r = receiver(r, "tokens", M::GET.or(M::PUT).or(M::PATCH));
            }
            Role::Emsp => {
                r = list(r, "tokens");
                r = r
                    .route(
                        "/{v}/tokens/{token_uid}/authorize",
                        on_route(M::POST, Route::Authorize),
                    )
                    .route("/{v}/cdrs", on_route(M::POST, Route::PostCdr))
                    .route("/{v}/cdrs/", on_route(M::POST, Route::PostCdr))
                    .route("/{v}/cdrs/{cdr_id}", on_route(M::GET, Route::GetCdr))
                    // command results at the response_url we handed out:
                    // any path below commands/, the key of the result
                    .route(
                        "/{v}/commands/{*result}",
                        on_route(M::POST, Route::CommandResult),
                    )
                    // charging profile results at our response_url, and the
                    // CPO's ActiveChargingProfile updates at /{session_id}
                    .route(
                        "/{v}/chargingprofiles/{session_id}",
                        on_route(M::POST.or(M::PUT), Route::ChargingProfileSender),
                    )
                    .route(
                        "/{v}/chargingprofiles/{session_id}/{*result}",
                        on_route(M::POST, Route::ChargingProfileSender),
                    );
                let pull_push = M::GET.or(M::PUT).or(M::PATCH);
                r = receiver(r, "sessions", pull_push);
                r = receiver(r, "tariffs", M::GET.or(M::PUT).or(M::DELETE));
                r = receiver(r, "locations", pull_push);
                let nested = on_route(pull_push, Route::Receive("locations"));
                r = r
                    .route(
                        "/{v}/locations/{country_code}/{party_id}/{id}/{evse_uid}",
                        nested.clone(),
                    )
                    .route(
                        "/{v}/locations/{country_code}/{party_id}/{id}/{evse_uid}/{connector_id}",
                        nested,
                    );
            }
        }
        r.fallback(no_route).with_state(self.inner.clone())
    }
}

fn new_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn object_key(v: &Value) -> Option<String> {
    let cc = v.get("country_code")?.as_str()?.to_ascii_uppercase();
    let pid = v.get("party_id")?.as_str()?.to_ascii_uppercase();
    let id = v.get("id").or_else(|| v.get("uid"))?.as_str()?;
    Some(format!("{cc}/{pid}/{id}"))
}

/// The response of every route: envelope plus the echoed request ids.
struct Reply {
    http: Http,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(data: Value) -> Reply {
        Reply::with(Http::OK, StatusCode::SUCCESS, Some(data), None)
    }
    fn with(http: Http, code: StatusCode, data: Option<Value>, message: Option<String>) -> Reply {
        let mut body = json!({"status_code": code.0, "timestamp": crate::types::DateTime(chrono::Utc::now()).to_wire()});
        if let Some(d) = data {
            body["data"] = d;
        }
        if let Some(m) = message {
            body["status_message"] = Value::String(m);
        }
        Reply {
            http,
            body,
            headers: Vec::new(),
        }
    }
    fn err(http: Http, code: StatusCode, message: impl Into<String>) -> Reply {
        Reply::with(http, code, None, Some(message.into()))
    }
    /// A request the OCPI layer refuses: HTTP 200 with the code.
    fn refuse(code: StatusCode, message: impl Into<String>) -> Reply {
        Reply::err(Http::OK, code, message)
    }
    /// The one place a [`StoreError`] becomes a response: OCPI 3000 with
    /// HTTP 503 (unavailable) or 500, the error's own scrubbed text as
    /// `status_message`; its source goes to the log only.
    fn store_failed(e: &StoreError) -> Reply {
        tracing::error!(error = %e, source = ?std::error::Error::source(e), "OCPI store");
        let http = Http::from_u16(e.http_status()).unwrap_or(Http::INTERNAL_SERVER_ERROR);
        Reply::err(http, StatusCode::SERVER_ERROR, e.to_string())
    }
    fn finish(self, req: &HeaderMap) -> Response {
        let mut resp = (self.http, axum::Json(self.body)).into_response();
        let h = resp.headers_mut();
        let rid = req
            .get("X-Request-ID")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(new_token);
        let cid = req
            .get("X-Correlation-ID")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| rid.clone());
        for (k, v) in [("X-Request-ID", rid), ("X-Correlation-ID", cid)] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        resp
    }
}

/// Authenticates the request: `Ok(party)` or a 401 reply.
async fn authenticate(
    inner: &Inner,
    headers: &HeaderMap,
    allow_token_a: bool,
) -> Result<Party, Reply> {
    let unauthorized = |m: &str| Reply::err(Http::UNAUTHORIZED, StatusCode::CLIENT_ERROR, m);
    let header = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing Authorization header"))?;
    let enc = inner.config.token_encoding;
    let token = parse_token(header, enc).map_err(|e| unauthorized(&e.to_string()))?;
    let lookup = |t: String| async move {
        inner
            .store
            .party_by_token(&t)
            .await
            .map_err(|e| Reply::store_failed(&e))
    };
    let mut party = lookup(token).await?;
    if party.is_none() && enc == TokenEncoding::Lenient {
        // The lenient decoder took a plain token that happens to be Base64
        // for Base64; try the header's text as it is.
        if let Ok(plain) = parse_token(header, TokenEncoding::Plain) {
            party = lookup(plain).await?;
        }
    }
    let party = party.ok_or_else(|| unauthorized("unknown token"))?;
    if party.token_a && !allow_token_a {
        return Err(unauthorized(
            "a registration token is only valid for versions and credentials",
        ));
    }
    Ok(party)
}

fn version_of(v: &str) -> Option<Version> {
    Version::parse(v).filter(|_| v.contains('.'))
}

async fn versions(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Err(r) = authenticate(&inner, &headers, true).await {
        return r.finish(&headers);
    }
    let base = inner.config.base_url.trim_end_matches('/');
    let list: Vec<Value> = inner
        .config
        .own
        .versions
        .iter()
        .map(|v| json!({"version": v.as_str(), "url": format!("{base}/{}", v.as_str())}))
        .collect();
    Reply::ok(Value::Array(list)).finish(&headers)
}

/// The modules and interface roles we offer.
fn offered(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::Cpo => &[
            ("credentials", "SENDER"),
            ("credentials", "RECEIVER"),
            ("locations", "SENDER"),
            ("sessions", "SENDER"),
            ("cdrs", "SENDER"),
            ("tariffs", "SENDER"),
            ("tokens", "RECEIVER"),
            ("commands", "RECEIVER"),
            ("chargingprofiles", "RECEIVER"),
            ("hubclientinfo", "RECEIVER"),
        ],
        Role::Emsp => &[
            ("credentials", "SENDER"),
            ("credentials", "RECEIVER"),
            ("locations", "RECEIVER"),
            ("sessions", "RECEIVER"),
            ("cdrs", "RECEIVER"),
            ("tariffs", "RECEIVER"),
            ("tokens", "SENDER"),
            ("commands", "SENDER"),
            ("chargingprofiles", "SENDER"),
            ("hubclientinfo", "RECEIVER"),
        ],
    }
}

async fn details(
    State(inner): State<Arc<Inner>>,
    Path(v): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authenticate(&inner, &headers, true).await {
        return r.finish(&headers);
    }
    let Some(version) = version_of(&v).filter(|v| inner.config.own.versions.contains(v)) else {
        return Reply::err(
            Http::NOT_FOUND,
            StatusCode::UNSUPPORTED_VERSION,
            format!("version {v} not supported"),
        )
        .finish(&headers);
    };
    let base = inner.config.base_url.trim_end_matches('/');
    let mut endpoints: Vec<Value> = Vec::new();
    for (module, role) in offered(inner.config.role) {
        // 2.1.1 has neither Charging Profiles nor Hub Client Info.
        if version == Version::V211 && matches!(*module, "chargingprofiles" | "hubclientinfo") {
            continue;
        }
        let slash = if inner.config.trailing_slash { "/" } else { "" };
        let url = format!("{base}/{}/{module}{slash}", version.as_str());
        if version == Version::V211 {
            // 2.1.1 endpoints have no role: one entry per module.
            if !endpoints.iter().any(|e| e["identifier"] == *module) {
                endpoints.push(json!({"identifier": module, "url": url}));
            }
        } else {
            endpoints.push(json!({"identifier": module, "role": role, "url": url}));
        }
    }
    Reply::ok(json!({"version": version.as_str(), "endpoints": endpoints})).finish(&headers)
}

fn parse_body(body: &Bytes) -> Result<Value, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        Reply::err(
            Http::BAD_REQUEST,
            StatusCode::INVALID_PARAMETERS,
            format!("body is not JSON: {e}"),
        )
    })
}

async fn credentials(
    State(inner): State<Arc<Inner>>,
    Path(v): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let party = match authenticate(&inner, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r.finish(&headers),
    };
    let Some(version) = version_of(&v).filter(|v| inner.config.own.versions.contains(v)) else {
        return Reply::err(
            Http::NOT_FOUND,
            StatusCode::UNSUPPORTED_VERSION,
            format!("version {v} not supported"),
        )
        .finish(&headers);
    };
    let registered = party.registration.is_some() && !party.token_a;
    let reply = match method {
        Method::GET => Reply::ok(inner.config.own.credentials(version, &party.token)),
        Method::POST | Method::PUT => {
            if (method == Method::POST) == registered {
                let why = if registered {
                    "already registered: use PUT"
                } else {
                    "not registered: use POST"
                };
                return Reply::err(Http::METHOD_NOT_ALLOWED, StatusCode::CLIENT_ERROR, why)
                    .finish(&headers);
            }
            let posted = match parse_body(&body) {
                Ok(v) => v,
                Err(r) => return r.finish(&headers),
            };
            if let Err(e) = crate::validate::validate(version, "credentials", &posted.to_string()) {
                return Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string())
                    .finish(&headers);
            }
            // The identities a party registers with are its alone: neither
            // ours nor another party's (so it can push and command nothing
            // in their name).
            match identity_in_use(&inner, &party.id, &posted).await {
                Ok(None) => {}
                Ok(Some((cc, pid))) => {
                    return Reply::refuse(
                        StatusCode::INVALID_PARAMETERS,
                        format!("{cc}/{pid} is already in use"),
                    )
                    .finish(&headers)
                }
                Err(e) => return Reply::store_failed(&e).finish(&headers),
            }
            match register(&inner, &party, &posted).await {
                Ok((party, body)) => {
                    inner.handler.registered(&party).await;
                    Reply::ok(body)
                }
                Err(RegisterError::Handshake(e)) => Reply::refuse(e.status_code(), e.to_string()),
                Err(RegisterError::Store(e)) => Reply::store_failed(&e),
            }
        }
        Method::DELETE => {
            if !registered {
                return Reply::err(
                    Http::METHOD_NOT_ALLOWED,
                    StatusCode::CLIENT_ERROR,
                    "not registered",
                )
                .finish(&headers);
            }
            match inner.store.remove_party(&party.id).await {
                Ok(()) => Reply::with(Http::OK, StatusCode::SUCCESS, None, None),
                Err(e) => Reply::store_failed(&e),
            }
        }
        _ => Reply::err(
            Http::METHOD_NOT_ALLOWED,
            StatusCode::CLIENT_ERROR,
            "method not allowed",
        ),
    };
    reply.finish(&headers)
}

/// The first identity `credentials` claims that is ours or held by a
/// party other than `except` (a party id).
async fn identity_in_use(
    inner: &Inner,
    except: &str,
    credentials: &Value,
) -> Result<Option<(String, String)>, StoreError> {
    let claimed = crate::credentials::identities_in(credentials);
    let ours = inner
        .config
        .own
        .roles
        .iter()
        .map(|(cc, pid, _, _)| (cc.to_ascii_uppercase(), pid.to_ascii_uppercase()));
    if let Some(id) = ours.into_iter().find(|id| claimed.contains(id)) {
        return Ok(Some(id));
    }
    for other in inner.store.list_parties().await? {
        if other.id == except {
            continue;
        }
        if let Some(id) = other
            .identities()
            .into_iter()
            .find(|id| claimed.contains(id))
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Why the Receiver side of a registration failed.
enum RegisterError {
    /// The handshake (answered with its OCPI status).
    Handshake(HandshakeError),
    /// Saving the registered party.
    Store(StoreError),
}

impl From<HandshakeError> for RegisterError {
    fn from(e: HandshakeError) -> RegisterError {
        RegisterError::Handshake(e)
    }
}

/// The Receiver side of POST/PUT credentials: call the Sender back with
/// its token B, then issue token C.
async fn register(
    inner: &Inner,
    party: &Party,
    posted: &Value,
) -> Result<(Party, Value), RegisterError> {
    let (machine, first) = crate::credentials::Receiver::start(inner.config.own.clone(), posted)?;
    let reg = inner.client.drive_receiver(machine, first).await?;
    let token_c = new_token();
    let body = inner.config.own.credentials(reg.version, &token_c);
    let updated = Party {
        id: party.id.clone(),
        token: token_c,
        token_a: false,
        registration: Some(reg),
    };
    inner
        .store
        .save_party(updated.clone())
        .await
        .map_err(RegisterError::Store)?;
    Ok((updated, body))
}

/// What a module route does; the path segments it needs are named in its
/// route (see [`Server::router`]).
#[derive(Debug, Clone, Copy)]
enum Route {
    /// Sender interface: a paginated list of our objects.
    List(&'static str),
    /// CPO Locations Sender: one location, EVSE or connector.
    Location,
    /// CPO Commands Receiver: `POST /{command}`.
    Command,
    /// eMSP Commands Sender: a `CommandResult` at our response_url.
    CommandResult,
    /// eMSP Tokens Sender: `POST /{token_uid}/authorize`.
    Authorize,
    /// Receiver interface on client-owned objects:
    /// `/{country_code}/{party_id}/{id}[/{evse_uid}[/{connector_id}]]`.
    Receive(&'static str),
    /// eMSP CDRs Receiver: `POST`.
    PostCdr,
    /// eMSP CDRs Receiver: `GET /{cdr_id}`.
    GetCdr,
    /// CPO Charging Profiles Receiver: `/{session_id}`.
    ChargingProfile,
    /// eMSP Charging Profiles Sender: results (`POST`) at our
    /// response_url, the CPO's ActiveChargingProfile (`PUT /{session_id}`).
    ChargingProfileSender,
    /// Hub Client Info Receiver: `/{country_code}/{party_id}`.
    HubClientInfo,
}

impl Route {
    fn module(self) -> &'static str {
        match self {
            Route::List(m) | Route::Receive(m) => m,
            Route::Location => "locations",
            Route::Command | Route::CommandResult => "commands",
            Route::Authorize => "tokens",
            Route::PostCdr | Route::GetCdr => "cdrs",
            Route::ChargingProfile | Route::ChargingProfileSender => "chargingprofiles",
            Route::HubClientInfo => "hubclientinfo",
        }
    }
}

/// The path segments of a route by name, each percent-decoded once by axum.
type Segments = HashMap<String, String>;

/// `route` for `methods`; any other method answers 405 with an envelope.
fn on_route(methods: MethodFilter, route: Route) -> MethodRouter<Arc<Inner>> {
    on(
        methods,
        move |State(inner): State<Arc<Inner>>,
              segments: Result<Path<Segments>, PathRejection>,
              method: Method,
              RawQuery(query): RawQuery,
              headers: HeaderMap,
              body: Bytes| async move {
            let query = query.unwrap_or_default();
            serve(&inner, route, segments, &method, &query, &headers, &body).await
        },
    )
    .fallback(wrong_method)
}

/// A path no route of our role serves: 404 (after authentication, so an
/// unauthenticated caller learns nothing about our routes).
async fn no_route(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let reply = match authenticate(&inner, &headers, false).await {
        Ok(_) => Reply::err(
            Http::NOT_FOUND,
            StatusCode::CLIENT_ERROR,
            format!("no {method} {} here", uri.path()),
        ),
        Err(r) => r,
    };
    reply.finish(&headers)
}

/// A served path with a method its interface does not have: 405.
async fn wrong_method(
    State(inner): State<Arc<Inner>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let reply = match authenticate(&inner, &headers, false).await {
        Ok(_) => Reply::err(
            Http::METHOD_NOT_ALLOWED,
            StatusCode::CLIENT_ERROR,
            format!("{method} not allowed here"),
        ),
        Err(r) => r,
    };
    reply.finish(&headers)
}

/// A request for a module route: authenticate, check the version, do the
/// route's work, add the routing headers.
async fn serve(
    inner: &Inner,
    route: Route,
    segments: Result<Path<Segments>, PathRejection>,
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let party = match authenticate(inner, headers, false).await {
        Ok(p) => p,
        Err(r) => return r.finish(headers),
    };
    let seg = match segments {
        Ok(Path(s)) => s,
        Err(e) => {
            return Reply::err(
                Http::BAD_REQUEST,
                StatusCode::INVALID_PARAMETERS,
                format!("path: {e}"),
            )
            .finish(headers)
        }
    };
    let v = seg.get("v").map_or("", String::as_str);
    let Some(version) = version_of(v).filter(|v| inner.config.own.versions.contains(v)) else {
        return Reply::err(
            Http::NOT_FOUND,
            StatusCode::UNSUPPORTED_VERSION,
            format!("version {v} not supported"),
        )
        .finish(headers);
    };
    let module = route.module();
    let reply =
        if version == Version::V211 && matches!(module, "chargingprofiles" | "hubclientinfo") {
            // 2.1.1 has neither Charging Profiles nor Hub Client Info.
            Reply::err(
                Http::NOT_FOUND,
                StatusCode::CLIENT_ERROR,
                format!("no {module} in OCPI 2.1.1"),
            )
        } else {
            let call = Call {
                inner,
                party: &party,
                version,
                v,
                seg: &seg,
                method,
                query,
                body,
            };
            match call.run(route).await {
                Ok(r) => r,
                Err(e) => Reply::store_failed(&e),
            }
        };
    let mut reply = reply;
    if version != Version::V211 && module != "hubclientinfo" {
        reply
            .headers
            .extend(routing_reply(&inner.config.own, &party, headers));
    }
    reply.finish(headers)
}

/// One authenticated request on a module route.
struct Call<'a> {
    inner: &'a Inner,
    party: &'a Party,
    version: Version,
    /// The version segment as sent (for URLs we hand back).
    v: &'a str,
    seg: &'a Segments,
    method: &'a Method,
    query: &'a str,
    body: &'a Bytes,
}

impl Call<'_> {
    /// A named path segment ("" when the route has no such segment).
    fn seg(&self, name: &str) -> &str {
        self.seg.get(name).map_or("", String::as_str)
    }

    /// The segments among `names` that the route has, in that order.
    fn segs(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .filter_map(|n| self.seg.get(*n).cloned())
            .collect()
    }

    async fn run(&self, route: Route) -> Result<Reply, StoreError> {
        let (inner, party, version) = (self.inner, self.party, self.version);
        Ok(match route {
            Route::List(module) => list(inner, party, module, self.query, self.v).await,
            Route::Location => {
                let path = self.segs(&["location_id", "evse_uid", "connector_id"]);
                get_location(inner, &path, version).await?
            }
            Route::Command => {
                let body = match parse_body(self.body) {
                    Ok(b) => b,
                    Err(r) => return Ok(r),
                };
                let command = self.seg("command").to_ascii_uppercase();
                let ty = match command.as_str() {
                    "START_SESSION" => "StartSession",
                    "STOP_SESSION" => "StopSession",
                    "RESERVE_NOW" => "ReserveNow",
                    "CANCEL_RESERVATION" => "CancelReservation",
                    "UNLOCK_CONNECTOR" => "UnlockConnector",
                    _ => {
                        return Ok(Reply::refuse(
                            StatusCode::INVALID_PARAMETERS,
                            format!("unknown command {command}"),
                        ))
                    }
                };
                if let Err(e) = crate::validate::validate(version, ty, &body.to_string()) {
                    return Ok(Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string()));
                }
                if let Err(r) = check_response_url(inner, party, body["response_url"].as_str()) {
                    return Ok(r);
                }
                let (cc, pid) = party.identities().into_iter().next().unwrap_or_default();
                let ctx = crate::convert::Context {
                    country_code: cc,
                    party_id: pid,
                    ..crate::convert::Context::default()
                };
                let command = match Command::decode(version, &command, &body, &ctx) {
                    Ok(c) => c,
                    Err(e) => {
                        return Ok(Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string()))
                    }
                };
                let answer = inner.handler.command(party, command).await?;
                Reply::ok(crate::commands::encode_response(version, &answer))
            }
            Route::CommandResult => {
                let result = match parse_body(self.body) {
                    Ok(v) => v,
                    Err(r) => return Ok(r),
                };
                // under the sender: one party cannot answer for another
                let Some(prefix) = party.key_prefix() else {
                    return Ok(no_identity());
                };
                let key = format!("{prefix}/{}", self.seg("result"));
                inner
                    .store
                    .put_object("command_results", &key, result.clone())
                    .await?;
                inner
                    .handler
                    .pushed(party, "command_results", &key, &result)
                    .await;
                Reply::with(Http::OK, StatusCode::SUCCESS, None, None)
            }
            Route::Authorize => {
                let uid = self.seg("token_uid");
                let location = if self.body.is_empty() {
                    None
                } else {
                    match parse_body(self.body) {
                        Ok(v) => Some(v),
                        Err(r) => return Ok(r),
                    }
                };
                let ty = self
                    .query
                    .split('&')
                    .find_map(|p| p.strip_prefix("type="))
                    .unwrap_or("RFID")
                    .to_string();
                match inner
                    .handler
                    .authorize(party, uid, &ty, location.as_ref())
                    .await
                {
                    Some(info) => Reply::ok(info),
                    // mod_tokens "Real-time authorization": unknown token → 404,
                    // with 2004 in the envelope (errata decision 8).
                    None => Reply::err(
                        Http::NOT_FOUND,
                        StatusCode::UNKNOWN_TOKEN,
                        format!("unknown token {uid}"),
                    ),
                }
            }
            Route::Receive(module) => {
                let path =
                    self.segs(&["country_code", "party_id", "id", "evse_uid", "connector_id"]);
                receive(inner, party, version, module, &path, self.method, self.body).await
            }
            Route::PostCdr => receive_cdr(inner, party, version, self.v, self.body).await,
            Route::GetCdr => {
                // only the caller's own CDRs (see `receive_cdr`)
                let mut found = None;
                for (cc, pid) in party.identities() {
                    let key = format!("{cc}/{pid}/{}", self.seg("cdr_id"));
                    found = inner.store.get_object("cdrs", &key).await?;
                    if found.is_some() {
                        break;
                    }
                }
                match found {
                    Some(o) => Reply::ok(o),
                    None => Reply::err(Http::NOT_FOUND, StatusCode::CLIENT_ERROR, "unknown CDR"),
                }
            }
            Route::ChargingProfile => {
                let action = match *self.method {
                    Method::PUT => "SET",
                    Method::GET => "GET",
                    _ => "CLEAR",
                };
                let parsed = if action == "SET" {
                    let v = match parse_body(self.body) {
                        Ok(v) => v,
                        Err(r) => return Ok(r),
                    };
                    if let Err(e) =
                        crate::validate::validate(version, "SetChargingProfile", &v.to_string())
                    {
                        return Ok(Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string()));
                    }
                    if let Err(r) = check_response_url(inner, party, v["response_url"].as_str()) {
                        return Ok(r);
                    }
                    Some(v)
                } else {
                    let url = url::form_urlencoded::parse(self.query.as_bytes())
                        .find(|(k, _)| k == "response_url")
                        .map(|(_, v)| v.into_owned());
                    let Some(url) = url else {
                        return Ok(Reply::refuse(
                            StatusCode::INVALID_PARAMETERS,
                            "response_url is required",
                        ));
                    };
                    if let Err(r) = check_response_url(inner, party, Some(&url)) {
                        return Ok(r);
                    }
                    None
                };
                Reply::ok(
                    inner
                        .handler
                        .charging_profile(
                            party,
                            action,
                            self.seg("session_id"),
                            parsed.as_ref(),
                            self.query,
                        )
                        .await,
                )
            }
            Route::ChargingProfileSender => {
                let v = match parse_body(self.body) {
                    Ok(v) => v,
                    Err(r) => return Ok(r),
                };
                let Some(prefix) = party.key_prefix() else {
                    return Ok(no_identity());
                };
                let session_id = format!("{prefix}/{}", self.seg("session_id"));
                let (kind, key) = if *self.method == Method::PUT {
                    if let Err(e) =
                        crate::validate::validate(version, "ActiveChargingProfile", &v.to_string())
                    {
                        return Ok(Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string()));
                    }
                    ("active_charging_profiles", session_id)
                } else {
                    let key = match self.seg.get("result") {
                        Some(rest) => format!("{session_id}/{rest}"),
                        None => session_id,
                    };
                    ("charging_profile_results", key)
                };
                inner.store.put_object(kind, &key, v.clone()).await?;
                inner.handler.pushed(party, kind, &key, &v).await;
                Reply::with(Http::OK, StatusCode::SUCCESS, None, None)
            }
            Route::HubClientInfo => {
                // keyed with the sending party (the hub): one party can
                // neither read nor overwrite what another told us
                let Some(prefix) = party.key_prefix() else {
                    return Ok(no_identity());
                };
                let key = format!(
                    "{prefix}/{}/{}",
                    self.seg("country_code").to_ascii_uppercase(),
                    self.seg("party_id").to_ascii_uppercase()
                );
                if *self.method == Method::GET {
                    match inner.store.get_object("hubclientinfo", &key).await? {
                        Some(o) => Reply::ok(o),
                        None => {
                            Reply::err(Http::NOT_FOUND, StatusCode::CLIENT_ERROR, "unknown party")
                        }
                    }
                } else {
                    let v = match parse_body(self.body) {
                        Ok(v) => v,
                        Err(r) => return Ok(r),
                    };
                    if let Err(e) = crate::validate::validate(version, "ClientInfo", &v.to_string())
                    {
                        return Ok(Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string()));
                    }
                    let created = inner
                        .store
                        .put_object("hubclientinfo", &key, v.clone())
                        .await?;
                    inner.handler.pushed(party, "hubclientinfo", &key, &v).await;
                    Reply::with(
                        if created { Http::CREATED } else { Http::OK },
                        StatusCode::SUCCESS,
                        None,
                        None,
                    )
                }
            }
        })
    }
}

/// A registered party whose credentials name no country/party: nothing it
/// sends can be keyed.
/// The `response_url` of a command or charging profile request: where we
/// will POST the result with the party's token, so it must be on one of the
/// hosts the party registered ([`crate::client::on_registered_host`]) and
/// pass our URL policy; anything else (another party, our own or an
/// internal host) is refused with 2001 before the handler runs.
fn check_response_url(inner: &Inner, party: &Party, url: Option<&str>) -> Result<(), Reply> {
    let refuse = |why: String| Err(Reply::refuse(StatusCode::INVALID_PARAMETERS, why));
    let Some(url) = url else {
        return refuse("response_url is required".into());
    };
    if let Err(e) = inner.config.own.policy.check(url) {
        return refuse(format!("response_url: {}", e.reason));
    }
    match &party.registration {
        Some(reg) if crate::client::on_registered_host(reg, url) => Ok(()),
        _ => refuse(
            "response_url must be on a host of the party's registered versions or endpoints".into(),
        ),
    }
}

fn no_identity() -> Reply {
    Reply::err(
        Http::NOT_FOUND,
        StatusCode::CLIENT_ERROR,
        "these credentials name no country_code/party_id",
    )
}

/// The spec type name for a module's object at a path depth.
fn type_for(module: &str, depth: usize) -> &'static str {
    match (module, depth) {
        ("locations", 4) => "Evse",
        ("locations", 5) => "Connector",
        ("locations", _) => "Location",
        ("sessions", _) => "Session",
        ("cdrs", _) => "Cdr",
        ("tariffs", _) => "Tariff",
        ("tokens", _) => "Token",
        _ => "",
    }
}

/// Routing headers of a response (2.2.1 transport_and_format, "Message
/// Routing Headers", "Direct response"): to the requesting party, from the
/// receiving one; taken from the request's headers when it had them.
fn routing_reply(own: &Own, party: &Party, req: &HeaderMap) -> Vec<(&'static str, String)> {
    let h = |name: &str| {
        req.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ids = party.identities();
    let to = match (h("OCPI-from-country-code"), h("OCPI-from-party-id")) {
        (Some(c), Some(p)) => Some((c, p)),
        _ => ids.first().cloned(),
    };
    let from = match (h("OCPI-to-country-code"), h("OCPI-to-party-id")) {
        (Some(c), Some(p)) => Some((c, p)),
        _ => own.roles.first().map(|r| (r.0.clone(), r.1.clone())),
    };
    let mut out = Vec::new();
    if let Some((c, p)) = to {
        out.push(("OCPI-to-country-code", c));
        out.push(("OCPI-to-party-id", p));
    }
    if let Some((c, p)) = from {
        out.push(("OCPI-from-country-code", c));
        out.push(("OCPI-from-party-id", p));
    }
    out
}

/// The `CC/PID/` prefixes of our own objects.
fn own_prefixes(own: &Own) -> Vec<String> {
    own.roles
        .iter()
        .map(|(cc, pid, _, _)| format!("{}/{}/", cc.to_ascii_uppercase(), pid.to_ascii_uppercase()))
        .collect()
}

/// The `(country_code, party_id)` of the token a Session or CDR runs on
/// (`cdr_token`, 2.2+): the eMSP it belongs to.
fn token_owner(o: &Value) -> Option<(String, String)> {
    let t = o.get("cdr_token")?;
    Some((
        t.get("country_code")?.as_str()?.to_ascii_uppercase(),
        t.get("party_id")?.as_str()?.to_ascii_uppercase(),
    ))
}

async fn list(inner: &Inner, party: &Party, module: &str, query: &str, v: &str) -> Reply {
    let max = inner.config.max_limit;
    let page = match Page::from_query(query, max) {
        Ok(p) => p,
        Err(e) => {
            return Reply::refuse(
                StatusCode::INVALID_PARAMETERS,
                format!("invalid parameter {}", e.0),
            )
        }
    };
    let owners = own_prefixes(&inner.config.own);
    // A CPO's sessions and CDRs go to the eMSP whose token they run on
    // (`cdr_token`), never to another: selected before the page is cut.
    let per_emsp = inner.config.role == Role::Cpo && matches!(module, "sessions" | "cdrs");
    let listed = if per_emsp {
        let all = Page {
            offset: 0,
            limit: usize::MAX,
            ..page.clone()
        };
        inner
            .store
            .list_objects(module, &owners, &all)
            .await
            .map(|(items, _)| {
                let ids = party.identities();
                let mine: Vec<Value> = items
                    .into_iter()
                    .filter(|o| token_owner(o).is_some_and(|t| ids.contains(&t)))
                    .collect();
                let total = mine.len();
                let page_items = mine
                    .into_iter()
                    .skip(page.offset)
                    .take(page.limit)
                    .collect();
                (page_items, total)
            })
    } else {
        inner.store.list_objects(module, &owners, &page).await
    };
    let (items, total) = match listed {
        Ok(listed) => listed,
        Err(e) => return Reply::store_failed(&e),
    };
    let url = format!(
        "{}/{v}/{module}",
        inner.config.base_url.trim_end_matches('/')
    );
    let version = version_of(v).unwrap_or(Version::V221);
    let items = items
        .into_iter()
        .filter_map(|o| served_as(inner, module, 3, version, o))
        .collect();
    let mut r = Reply::ok(Value::Array(items));
    r.headers = page.headers(total, &url, max);
    r
}

/// One of our stored objects as the requested version shows it.
fn served_as(
    inner: &Inner,
    module: &str,
    depth: usize,
    version: Version,
    o: Value,
) -> Option<Value> {
    let Some(from) = inner.config.storage_version.filter(|s| *s != version) else {
        return Some(o);
    };
    let (cc, pid) = inner
        .config
        .own
        .roles
        .first()
        .map(|r| (r.0.clone(), r.1.clone()))
        .unwrap_or_default();
    let ctx = crate::convert::Context {
        country_code: cc.clone(),
        party_id: pid.clone(),
        token_country_code: cc,
        token_party_id: pid,
    };
    match crate::convert::convert(from, version, type_for(module, depth), &o, &ctx) {
        Ok(c) => Some(c.object),
        Err(e) => {
            tracing::warn!(module, "not served in OCPI {version}: {e}");
            None
        }
    }
}

async fn get_location(
    inner: &Inner,
    path: &[String],
    version: Version,
) -> Result<Reply, StoreError> {
    let Some((cc, pid, _, _)) = inner.config.own.roles.first() else {
        return Ok(Reply::err(
            Http::NOT_FOUND,
            StatusCode::UNKNOWN_LOCATION,
            "no such location",
        ));
    };
    let key = format!(
        "{}/{}/{}",
        cc.to_ascii_uppercase(),
        pid.to_ascii_uppercase(),
        path[0]
    );
    let not_found = || {
        Reply::err(
            Http::NOT_FOUND,
            StatusCode::UNKNOWN_LOCATION,
            "no such location",
        )
    };
    let Some(loc) = inner.store.get_object("locations", &key).await? else {
        return Ok(not_found());
    };
    let Some(loc) = served_as(inner, "locations", 3, version, loc) else {
        return Ok(not_found());
    };
    Ok(match descend(&loc, &path[1..]) {
        Some(o) => Reply::ok(o.clone()),
        None => not_found(),
    })
}

/// The EVSE or connector under a location, by uid / id.
fn descend<'a>(loc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = loc;
    for (i, id) in path.iter().enumerate() {
        let (list, field) = if i == 0 {
            ("evses", "uid")
        } else {
            ("connectors", "id")
        };
        cur = cur
            .get(list)?
            .as_array()?
            .iter()
            .find(|e| e.get(field).and_then(Value::as_str) == Some(id))?;
    }
    Some(cur)
}

fn descend_mut<'a>(loc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = loc;
    for (i, id) in path.iter().enumerate() {
        let (list, field) = if i == 0 {
            ("evses", "uid")
        } else {
            ("connectors", "id")
        };
        cur = cur
            .get_mut(list)?
            .as_array_mut()?
            .iter_mut()
            .find(|e| e.get(field).and_then(Value::as_str) == Some(id))?;
    }
    Some(cur)
}

fn merge(base: &mut Value, patch: &Value) {
    if let (Value::Object(b), Value::Object(p)) = (&mut *base, patch) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
}

/// The value of a store call, or the store failure's reply from the
/// enclosing function.
macro_rules! stored {
    ($call:expr) => {
        match $call {
            Ok(v) => v,
            Err(e) => return Reply::store_failed(&e),
        }
    };
}

async fn receive(
    inner: &Inner,
    party: &Party,
    version: Version,
    module: &str,
    path: &[String],
    method: &Method,
    body: &Bytes,
) -> Reply {
    let (cc, pid, id) = (
        path[0].to_ascii_uppercase(),
        path[1].to_ascii_uppercase(),
        &path[2],
    );
    // Objects a party pushes must be its own (transport_and_format, "Client
    // Owned Object Push": unknown country/party may get 404).
    if !party
        .identities()
        .iter()
        .any(|(c, p)| *c == cc && *p == pid)
    {
        return Reply::err(
            Http::NOT_FOUND,
            StatusCode::CLIENT_ERROR,
            format!("{cc}/{pid} is not a party of these credentials"),
        );
    }
    let key = format!("{cc}/{pid}/{id}");
    let nested = module == "locations" && path.len() > 3;
    if path.len() > 3 && module != "locations" {
        return Reply::err(
            Http::NOT_FOUND,
            StatusCode::CLIENT_ERROR,
            "no such object path",
        );
    }
    let not_found = |what: &str| {
        Reply::err(
            Http::NOT_FOUND,
            StatusCode::CLIENT_ERROR,
            format!("unknown {what}"),
        )
    };
    match *method {
        Method::GET => match stored!(inner.store.get_object(module, &key).await) {
            Some(o) => match descend(&o, &path[3..]) {
                Some(x) => Reply::ok(x.clone()),
                None => not_found("object"),
            },
            None => not_found("object"),
        },
        Method::DELETE if module == "tariffs" => {
            if stored!(inner.store.delete_object(module, &key).await) {
                Reply::with(Http::OK, StatusCode::SUCCESS, None, None)
            } else {
                not_found("tariff")
            }
        }
        Method::PUT => {
            let obj = match parse_body(body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let ty = type_for(module, path.len());
            if let Err(e) = crate::validate::validate(version, ty, &obj.to_string()) {
                return Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string());
            }
            // The id in the body must match the URL (status 2001).
            let body_id = match path.len() {
                3 => obj.get("id").or_else(|| obj.get("uid")),
                4 => obj.get("uid"),
                _ => obj.get("id"),
            };
            if body_id
                .and_then(Value::as_str)
                .is_some_and(|b| !b.eq_ignore_ascii_case(&path[path.len() - 1]))
            {
                return Reply::refuse(
                    StatusCode::INVALID_PARAMETERS,
                    "object id differs from the URL",
                );
            }
            if path.len() == 3
                && (obj
                    .get("country_code")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_uppercase)
                    != Some(cc.clone())
                    || obj
                        .get("party_id")
                        .and_then(Value::as_str)
                        .map(str::to_ascii_uppercase)
                        != Some(pid.clone()))
            {
                return Reply::refuse(
                    StatusCode::INVALID_PARAMETERS,
                    "country_code/party_id differ from the URL",
                );
            }
            let (stored, created) = if nested {
                let Some(mut loc) = stored!(inner.store.get_object(module, &key).await) else {
                    return Reply::refuse(StatusCode::UNKNOWN_LOCATION, "unknown location");
                };
                let parent_path = &path[3..path.len() - 1];
                let (list, field) = if path.len() == 4 {
                    ("evses", "uid")
                } else {
                    ("connectors", "id")
                };
                let Some(parent) = descend_mut(&mut loc, parent_path) else {
                    return not_found("EVSE");
                };
                let items = parent
                    .as_object_mut()
                    .map(|m| m.entry(list).or_insert_with(|| json!([])));
                let Some(Value::Array(items)) = items else {
                    return Reply::refuse(StatusCode::INVALID_PARAMETERS, "location is malformed");
                };
                let last = &path[path.len() - 1];
                let created = match items
                    .iter_mut()
                    .find(|e| e.get(field).and_then(Value::as_str) == Some(last))
                {
                    Some(slot) => {
                        *slot = obj.clone();
                        false
                    }
                    None => {
                        items.push(obj.clone());
                        true
                    }
                };
                if let Some(t) = obj.get("last_updated") {
                    loc["last_updated"] = t.clone();
                }
                stored!(inner.store.put_object(module, &key, loc.clone()).await);
                (loc, created)
            } else {
                let created = stored!(inner.store.put_object(module, &key, obj.clone()).await);
                (obj, created)
            };
            inner.handler.pushed(party, module, &key, &stored).await;
            Reply::with(
                if created { Http::CREATED } else { Http::OK },
                StatusCode::SUCCESS,
                None,
                None,
            )
        }
        Method::PATCH if module != "tariffs" => {
            let patch = match parse_body(body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if patch.get("last_updated").is_none() {
                return Reply::refuse(StatusCode::INVALID_PARAMETERS, "PATCH without last_updated");
            }
            let Some(mut obj) = stored!(inner.store.get_object(module, &key).await) else {
                return not_found("object");
            };
            let Some(target) = descend_mut(&mut obj, &path[3..]) else {
                return not_found("object");
            };
            merge(target, &patch);
            if nested {
                obj["last_updated"] = patch["last_updated"].clone();
            }
            if let Err(e) =
                crate::validate::validate(version, type_for(module, 3), &obj.to_string())
            {
                return Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string());
            }
            stored!(inner.store.put_object(module, &key, obj.clone()).await);
            inner.handler.pushed(party, module, &key, &obj).await;
            Reply::with(Http::OK, StatusCode::SUCCESS, None, None)
        }
        _ => Reply::err(
            Http::METHOD_NOT_ALLOWED,
            StatusCode::CLIENT_ERROR,
            format!("{method} not allowed on {module}"),
        ),
    }
}

async fn receive_cdr(
    inner: &Inner,
    party: &Party,
    version: Version,
    v: &str,
    body: &Bytes,
) -> Reply {
    let cdr = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = crate::validate::validate(version, "Cdr", &cdr.to_string()) {
        return Reply::refuse(StatusCode::INVALID_PARAMETERS, e.to_string());
    }
    let id = cdr
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // A CDR is kept under the party that sent it (`CC/PID/ID`): its own
    // country_code/party_id (2.2+), which must be one of the sender's, or
    // the sender's first identity (2.1.1 CDRs name no party). One CPO can
    // then neither read nor pre-empt another's CDR of the same id.
    let ids = party.identities();
    let owner = match (
        cdr.get("country_code").and_then(Value::as_str),
        cdr.get("party_id").and_then(Value::as_str),
    ) {
        (Some(cc), Some(pid)) => Some((cc.to_ascii_uppercase(), pid.to_ascii_uppercase())),
        _ => ids.first().cloned(),
    };
    let Some((cc, pid)) = owner.filter(|o| ids.contains(o)) else {
        return Reply::err(
            Http::NOT_FOUND,
            StatusCode::CLIENT_ERROR,
            "the CDR's country_code/party_id is not a party of these credentials",
        );
    };
    let key = format!("{cc}/{pid}/{id}");
    // CDRs are immutable: a second POST of the same id is refused.
    if stored!(inner.store.get_object("cdrs", &key).await).is_some() {
        return Reply::refuse(
            StatusCode::INVALID_PARAMETERS,
            format!("CDR {id} already received"),
        );
    }
    stored!(inner.store.put_object("cdrs", &key, cdr.clone()).await);
    inner.handler.pushed(party, "cdrs", &key, &cdr).await;
    let mut r = Reply::with(Http::CREATED, StatusCode::SUCCESS, None, None);
    r.headers.push((
        "Location",
        format!(
            "{}/{v}/cdrs/{}",
            inner.config.base_url.trim_end_matches('/'),
            crate::pagination::percent_encode(&id)
        ),
    ));
    r
}
