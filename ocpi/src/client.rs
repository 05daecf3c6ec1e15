//! OCPI over HTTP, calling side (feature `client`): reqwest with rustls.
//!
//! - [`Client::register`] drives the [`credentials::Sender`] machine;
//! - [`Peer`] makes typed calls on a registered peer's endpoints: pages of
//!   a Sender interface as a stream that follows `Link` headers, objects
//!   pushed to a Receiver interface with PUT/PATCH/POST;
//! - every request carries `Authorization: Token ..` (Base64 for 2.2+
//!   unless the peer wants it plain), `X-Request-ID` and
//!   `X-Correlation-ID` (2.2+);
//! - only GETs are retried (transport_and_format: "Offline behaviour"), on
//!   connection errors and 5xx, three times with a growing pause;
//!
//! Server-side request forgery (issue 16): peers hand us URLs (versions,
//! endpoints, `Link` headers, a command's `response_url`), so
//! - every URL passes the [`UrlPolicy`] (strict by default: `https` only,
//!   globally routable addresses only; [`UrlPolicy::lab`] for test peers on
//!   loopback), and every address a host name resolves to is checked the
//!   same way by the client's own resolver, whose checked addresses are
//!   the ones connected to (a second DNS answer cannot swap them);
//! - redirects are followed only to the same scheme, host and port (and
//!   at most 5); any other is [`ClientError::Redirect`];
//! - response bodies are read with a running count and refused past a cap
//!   (16 MiB by default, [`Client::with_max_body`]) with
//!   [`ClientError::BodyTooLarge`];
//! - a registered peer is called only on the hosts it registered (its
//!   versions URL and endpoints, [`on_registered_host`]): a `Link` to
//!   another host and a `response_url` elsewhere are refused.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use evproto_ocpi::client::Client;
//! use evproto_ocpi::credentials::Own;
//! use futures_util::TryStreamExt;
//!
//! let client = Client::new(Default::default())?;
//! let own = Own::with_role("https://emsp.example.com/ocpi/versions", "NL", "EMS", "EMSP", "Our eMSP");
//! let peer = client
//!     .register(own, "https://cpo.example.com/ocpi/versions", "token-a", "token-b")
//!     .await?;
//! let locations: Vec<evproto_ocpi::v221::Location> =
//!     peer.list("locations", &[]).try_collect().await?;
//! println!("{} locations", locations.len());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::auth::{encode_token, TokenEncoding};
use crate::credentials::{self, HandshakeError, Own, Registered, Step};
pub use crate::credentials::{classify, AddrClass, UrlPolicy};
use crate::status::StatusCode;
use crate::Version;

/// A call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Transport failure (connect, TLS, timeout).
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The URL broke the policy.
    #[error(transparent)]
    Url(#[from] credentials::UrlRefused),
    /// The response was not an OCPI envelope of the expected shape.
    #[error("unexpected response (HTTP {status}): {reason}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
    },
    /// The peer answered with an OCPI error status.
    #[error("OCPI status {code}: {message}")]
    Status {
        /// The status code.
        code: u16,
        /// The status message.
        message: String,
    },
    /// The peer has no endpoint for this module and role.
    #[error("peer has no {module} {role} endpoint")]
    NoEndpoint {
        /// Module id.
        module: String,
        /// Interface role.
        role: String,
    },
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer redirected to another scheme, host or port (or too often).
    #[error("redirect refused (HTTP {status}) to {location:?}")]
    Redirect {
        /// HTTP status of the redirect.
        status: u16,
        /// Its `Location` header.
        location: Option<String>,
    },
    /// The response body was larger than the client's cap.
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The cap, bytes.
        limit: usize,
    },
}

/// The default cap on a response body: 16 MiB.
pub const MAX_BODY: usize = 16 << 20;

/// How many redirects (to the same origin) are followed.
const MAX_REDIRECTS: usize = 5;

/// Whether `url` is on one of the hosts a peer registered: the host of its
/// versions URL or of one of its endpoints (compared without case and
/// trailing dot; ports and schemes are not compared, the [`UrlPolicy`]
/// checks those). Where a registered peer may send us, and where its
/// `response_url` may point.
pub fn on_registered_host(reg: &Registered, url: &str) -> bool {
    fn host(u: &str) -> Option<String> {
        let u = url::Url::parse(u).ok()?;
        Some(u.host_str()?.trim_end_matches('.').to_ascii_lowercase())
    }
    let Some(wanted) = host(url) else {
        return false;
    };
    std::iter::once(reg.versions_url.as_str())
        .chain(reg.endpoints.iter().map(|e| e.url.as_str()))
        .filter_map(host)
        .any(|h| h == wanted)
}

/// Follows a redirect only to the origin (scheme, host, port) of the
/// request, to a URL the policy allows, at most [`MAX_REDIRECTS`] times;
/// any other stops, and the caller sees the 3xx as [`ClientError::Redirect`].
fn redirect_policy(policy: UrlPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() > MAX_REDIRECTS
            || !same_origin
            || policy.check(attempt.url().as_str()).is_err()
        {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// Reads a body with a running count, refusing it past `limit` bytes (a
/// `Content-Length` above it is refused before reading).
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ClientError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(ClientError::BodyTooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ClientError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Resolves host names and keeps only the addresses the policy allows:
/// reqwest connects to what this returns, so the address checked is the
/// address connected to.
#[derive(Debug)]
struct PolicyResolver(UrlPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.check_ip(a.ip()).is_ok())
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host}: no address allowed by the URL policy").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An OCPI HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    policy: UrlPolicy,
    retries: u32,
    max_body: usize,
}

impl Client {
    /// A client with the platform's trust roots, 30 s timeouts and the
    /// given policy for peer URLs (`UrlPolicy::default()` is the strict
    /// one).
    pub fn new(policy: UrlPolicy) -> Result<Client, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .dns_resolver(Arc::new(PolicyResolver(policy)))
            .redirect(redirect_policy(policy))
            .no_proxy()
            .build()?;
        Ok(Client {
            http,
            policy,
            retries: 3,
            max_body: MAX_BODY,
        })
    }

    /// Sets the largest response body read (default [`MAX_BODY`]).
    pub fn with_max_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// Sets how often a failed GET is retried (default 3).
    pub fn with_get_retries(mut self, retries: u32) -> Client {
        self.retries = retries;
        self
    }

    /// Executes one handshake request.
    pub async fn execute(
        &self,
        req: &credentials::Request,
    ) -> Result<credentials::Response, ClientError> {
        let encoding = if req.base64 {
            TokenEncoding::Base64
        } else {
            TokenEncoding::Plain
        };
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let resp = self
            .send(
                method,
                &req.url,
                &req.token,
                encoding,
                req.body.as_ref(),
                &[],
            )
            .await?;
        Ok(credentials::Response::new(resp.status, resp.body))
    }

    /// Runs the registration handshake as Sender.
    pub async fn register(
        &self,
        own: Own,
        peer_versions_url: &str,
        token_a: &str,
        token_b: &str,
    ) -> Result<Peer, ClientError> {
        let from = own.roles.first().map(|r| (r.0.clone(), r.1.clone()));
        let (machine, first) =
            credentials::Sender::start(own, peer_versions_url, token_a, token_b)?;
        let mut peer = self.drive(machine, first).await?;
        peer.from = from;
        Ok(peer)
    }

    /// Runs an update (PUT credentials) of an existing registration.
    pub async fn update(
        &self,
        own: Own,
        peer_versions_url: &str,
        current: &str,
        new_token: &str,
    ) -> Result<Peer, ClientError> {
        let from = own.roles.first().map(|r| (r.0.clone(), r.1.clone()));
        let (machine, first) =
            credentials::Sender::update(own, peer_versions_url, current, new_token)?;
        let mut peer = self.drive(machine, first).await?;
        peer.from = from;
        Ok(peer)
    }

    async fn drive(
        &self,
        mut machine: credentials::Sender,
        first: credentials::Request,
    ) -> Result<Peer, ClientError> {
        let mut req = first;
        loop {
            let resp = match self.execute(&req).await {
                Ok(r) => r,
                Err(e) => return Err(HandshakeError::Unusable(e.to_string()).into()),
            };
            match machine.handle(resp)? {
                Step::Send(next) => req = next,
                Step::Done(reg) => return Ok(self.peer(*reg)),
            }
        }
    }

    /// Drives a [`credentials::Receiver`] machine to its end (the server's
    /// side of a POST/PUT credentials).
    pub async fn drive_receiver(
        &self,
        mut machine: credentials::Receiver,
        first: credentials::Request,
    ) -> Result<Registered, HandshakeError> {
        let mut req = first;
        loop {
            let resp = self
                .execute(&req)
                .await
                .map_err(|e| HandshakeError::Unusable(e.to_string()))?;
            match machine.handle(resp)? {
                Step::Send(next) => req = next,
                Step::Done(reg) => return Ok(*reg),
            }
        }
    }

    /// A handle on a registered peer.
    pub fn peer(&self, registration: Registered) -> Peer {
        Peer {
            client: self.clone(),
            reg: Arc::new(registration),
            from: None,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        encoding: TokenEncoding,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<RawResponse, ClientError> {
        self.policy.check(url)?;
        let safe = method == reqwest::Method::GET;
        let mut attempt = 0;
        loop {
            let id = uuid::Uuid::new_v4().to_string();
            let mut rb = self
                .http
                .request(method.clone(), url)
                .header("Authorization", encode_token(token, encoding))
                .header("X-Request-ID", &id)
                .header("X-Correlation-ID", &id);
            for (k, v) in headers {
                rb = rb.header(*k, v);
            }
            if let Some(b) = body {
                rb = rb
                    .header("Content-Type", "application/json")
                    .body(b.to_string());
            }
            let result = rb.send().await;
            let retry = match &result {
                Ok(r) => r.status().is_server_error(),
                Err(e) => e.is_connect() || e.is_timeout(),
            };
            if safe && retry && attempt < self.retries {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                continue;
            }
            let resp = result?;
            let status = resp.status().as_u16();
            if resp.status().is_redirection() {
                // one the redirect policy did not follow
                return Err(ClientError::Redirect {
                    status,
                    location: resp
                        .headers()
                        .get("Location")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                });
            }
            let link = resp
                .headers()
                .get("Link")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let total = resp
                .headers()
                .get("X-Total-Count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let location = resp
                .headers()
                .get("Location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_capped(resp, self.max_body).await?;
            let body = String::from_utf8_lossy(&body).into_owned();
            return Ok(RawResponse {
                status,
                body,
                link,
                total,
                location,
            });
        }
    }
}

#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: String,
    link: Option<String>,
    total: Option<usize>,
    location: Option<String>,
}

impl RawResponse {
    /// The envelope's data, insisting on status 1000.
    fn data(&self) -> Result<Value, ClientError> {
        let v: Value = serde_json::from_str(&self.body).map_err(|e| ClientError::Unexpected {
            status: self.status,
            reason: format!("body is not JSON: {e}"),
        })?;
        let code = v
            .get("status_code")
            .and_then(Value::as_u64)
            .ok_or_else(|| ClientError::Unexpected {
                status: self.status,
                reason: "no status_code".into(),
            })? as u16;
        if !StatusCode(code).is_success() {
            return Err(ClientError::Status {
                code,
                message: v
                    .get("status_message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        if !(200..300).contains(&self.status) {
            return Err(ClientError::Unexpected {
                status: self.status,
                reason: "HTTP error with a success status code".into(),
            });
        }
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// A registered peer: typed calls on its endpoints.
#[derive(Debug, Clone)]
pub struct Peer {
    client: Client,
    reg: Arc<Registered>,
    from: Option<(String, String)>,
}

/// What a push (PUT/PATCH/POST) returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// HTTP status (201 for a created object, 200 otherwise).
    pub http_status: u16,
    /// The envelope's data, if any.
    pub data: Value,
    /// The `Location` header (CDR POST).
    pub location: Option<String>,
}

impl Peer {
    /// Sets the party we call as (`OCPI-from-*` routing headers).
    pub fn from_party(mut self, country_code: &str, party_id: &str) -> Peer {
        self.from = Some((country_code.to_string(), party_id.to_string()));
        self
    }

    /// The routing headers of a module call (2.2.1 transport_and_format
    /// "Message Routing Headers", party to party): to the peer's first
    /// role, from ours. None for 2.1.1, which has no routing.
    fn routing(&self) -> Vec<(&'static str, String)> {
        if self.reg.version == Version::V211 {
            return Vec::new();
        }
        let mut h = Vec::new();
        let c = &self.reg.peer_credentials;
        let role = c.get("roles").and_then(|r| r.get(0));
        if let (Some(cc), Some(pid)) = (
            role.and_then(|r| r.get("country_code"))
                .and_then(Value::as_str),
            role.and_then(|r| r.get("party_id")).and_then(Value::as_str),
        ) {
            h.push(("OCPI-to-country-code", cc.to_string()));
            h.push(("OCPI-to-party-id", pid.to_string()));
        }
        if let Some((cc, pid)) = &self.from {
            h.push(("OCPI-from-country-code", cc.clone()));
            h.push(("OCPI-from-party-id", pid.clone()));
        }
        h
    }

    /// The registration this peer runs on.
    pub fn registration(&self) -> &Registered {
        &self.reg
    }

    /// The negotiated version.
    pub fn version(&self) -> Version {
        self.reg.version
    }

    fn encoding(&self) -> TokenEncoding {
        if self.reg.base64 {
            TokenEncoding::Base64
        } else {
            TokenEncoding::Plain
        }
    }

    /// The peer's endpoint URL for `module` in `role`.
    pub fn endpoint(&self, module: &str, role: &str) -> Result<String, ClientError> {
        self.reg
            .endpoint(module, role)
            .map(str::to_string)
            .ok_or_else(|| ClientError::NoEndpoint {
                module: module.to_string(),
                role: role.to_string(),
            })
    }

    /// Refuses a URL that is not on one of the peer's registered hosts.
    fn own_host(&self, url: &str) -> Result<(), ClientError> {
        if on_registered_host(&self.reg, url) {
            Ok(())
        } else {
            Err(ClientError::Url(credentials::UrlRefused {
                url: url.to_string(),
                reason: "not on a host the peer registered",
            }))
        }
    }

    /// GET on any URL of this peer (one of its registered hosts,
    /// [`on_registered_host`]), returning the envelope's data.
    pub async fn get_url(&self, url: &str) -> Result<Value, ClientError> {
        self.own_host(url)?;
        self.client
            .send(
                reqwest::Method::GET,
                url,
                &self.reg.token,
                self.encoding(),
                None,
                &self.routing(),
            )
            .await?
            .data()
    }

    /// One object from a Sender interface: `GET {url}/{path..}`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        module: &str,
        path: &[&str],
    ) -> Result<T, ClientError> {
        let url = join(&self.endpoint(module, "SENDER")?, path);
        let data = self.get_url(&url).await?;
        one_object(data)
    }

    /// Every object of a Sender interface's list, page by page (following
    /// `Link: <..>; rel="next"`), filtered by `query` (`date_from`, ...).
    pub fn list<'a, T: DeserializeOwned + 'a>(
        &'a self,
        module: &'a str,
        query: &'a [(&'a str, &'a str)],
    ) -> impl Stream<Item = Result<T, ClientError>> + 'a {
        enum St {
            Start,
            Next {
                link: String,
                seen: usize,
                first: String,
            },
            End,
        }
        let pages = stream::try_unfold(St::Start, move |st| async move {
            let (url, seen, first) = match st {
                St::End => return Ok::<_, ClientError>(None),
                St::Next { link, seen, first } => {
                    // a Link elsewhere would carry our token there
                    self.own_host(&link)?;
                    (link, seen, first)
                }
                St::Start => {
                    let base = self.endpoint(module, "SENDER")?;
                    let mut u = url::Url::parse(&base).map_err(|_| ClientError::Unexpected {
                        status: 0,
                        reason: format!("bad endpoint URL {base}"),
                    })?;
                    if !query.is_empty() {
                        u.query_pairs_mut().extend_pairs(query.iter().copied());
                    }
                    let u = u.to_string();
                    (u.clone(), 0, u)
                }
            };
            let get = |url: String| async move {
                self.client
                    .send(
                        reqwest::Method::GET,
                        &url,
                        &self.reg.token,
                        self.encoding(),
                        None,
                        &self.routing(),
                    )
                    .await
            };
            let mut resp = get(url.clone()).await?;
            let mut url = url;
            if resp.status == 404 && seen > 0 {
                // The peer's Link led nowhere (extrawest-ocpi writes enum
                // reprs into its path): continue with offset on the first
                // page's URL, which keeps the original filters.
                url = with_offset(&first, seen);
                resp = get(url.clone()).await?;
            }
            let data = resp.data()?;
            let items: Vec<T> = match data {
                Value::Array(items) => items.into_iter().map(decode).collect::<Result<_, _>>()?,
                Value::Null => Vec::new(),
                other => vec![decode(other)?],
            };
            let seen = seen + items.len();
            let next = match resp
                .link
                .as_deref()
                .and_then(next_link)
                .map(|n| same_origin_scheme(&url, n))
            {
                // An empty page with a next link would loop forever.
                Some(n) if !items.is_empty() && n != url => St::Next {
                    link: n,
                    seen,
                    first,
                },
                _ => St::End,
            };
            Ok(Some((items, next)))
        });
        use futures_util::TryStreamExt;
        pages
            .map_ok(|items| stream::iter(items.into_iter().map(Ok::<T, ClientError>)))
            .try_flatten()
    }

    /// The `X-Total-Count` of a Sender list (first page only, `limit=1`).
    pub async fn count(&self, module: &str) -> Result<Option<usize>, ClientError> {
        let url = join(&self.endpoint(module, "SENDER")?, &[]) + "?limit=1";
        let resp = self
            .client
            .send(
                reqwest::Method::GET,
                &url,
                &self.reg.token,
                self.encoding(),
                None,
                &self.routing(),
            )
            .await?;
        resp.data()?;
        Ok(resp.total)
    }

    async fn push(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &Value,
    ) -> Result<Pushed, ClientError> {
        let resp = self
            .client
            .send(
                method,
                url,
                &self.reg.token,
                self.encoding(),
                Some(body),
                &self.routing(),
            )
            .await?;
        let data = resp.data()?;
        Ok(Pushed {
            http_status: resp.status,
            data,
            location: resp.location,
        })
    }

    /// Serializes `body` and sends it to the module's Receiver interface.
    async fn push_to<T: Serialize>(
        &self,
        method: reqwest::Method,
        module: &str,
        path: &[&str],
        body: &T,
    ) -> Result<Pushed, ClientError> {
        let url = join(&self.endpoint(module, "RECEIVER")?, path);
        let body = serde_json::to_value(body).map_err(|e| ClientError::Unexpected {
            status: 0,
            reason: e.to_string(),
        })?;
        self.push(method, &url, &body).await
    }

    /// PUT a whole object to a Receiver interface at
    /// `{url}/{country_code}/{party_id}/{id..}`. Not retried.
    pub async fn put<T: Serialize>(
        &self,
        module: &str,
        path: &[&str],
        object: &T,
    ) -> Result<Pushed, ClientError> {
        self.push_to(reqwest::Method::PUT, module, path, object)
            .await
    }

    /// PATCH changed fields (must include `last_updated`). Not retried.
    pub async fn patch(
        &self,
        module: &str,
        path: &[&str],
        fields: &Value,
    ) -> Result<Pushed, ClientError> {
        let url = join(&self.endpoint(module, "RECEIVER")?, path);
        self.push(reqwest::Method::PATCH, &url, fields).await
    }

    /// POST to a Receiver interface (`cdrs`, `commands/{COMMAND}`). Not
    /// retried.
    pub async fn post<T: Serialize>(
        &self,
        module: &str,
        path: &[&str],
        body: &T,
    ) -> Result<Pushed, ClientError> {
        self.push_to(reqwest::Method::POST, module, path, body)
            .await
    }

    /// POST to any URL of the peer (a command's `response_url`): one of its
    /// registered hosts only ([`on_registered_host`]).
    pub async fn post_url(&self, url: &str, body: &Value) -> Result<Pushed, ClientError> {
        self.own_host(url)?;
        self.push(reqwest::Method::POST, url, body).await
    }

    /// Real-time authorization (`POST {tokens}/{uid}/authorize?type=`) on
    /// the eMSP's Tokens Sender interface.
    pub async fn authorize(
        &self,
        uid: &str,
        token_type: &str,
        location: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url =
            join(&self.endpoint("tokens", "SENDER")?, &[uid, "authorize"]) + "?type=" + token_type;
        let body = location.cloned().unwrap_or(Value::Null);
        let resp = self
            .client
            .send(
                reqwest::Method::POST,
                &url,
                &self.reg.token,
                self.encoding(),
                location.map(|_| &body),
                &self.routing(),
            )
            .await?;
        resp.data()
    }
}

/// `first` (a list URL) with `offset` set to `seen`.
fn with_offset(first: &str, seen: usize) -> String {
    let Ok(mut u) = url::Url::parse(first) else {
        return first.to_string();
    };
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "offset")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("offset", &seen.to_string());
    u.to_string()
}

/// Some servers (extrawest-ocpi) write `https://` into `Link` whatever
/// scheme they are served on. When the next link names the same host and
/// port as the page just fetched, keep that page's scheme.
fn same_origin_scheme(current: &str, next: String) -> String {
    let (Ok(cur), Ok(mut n)) = (url::Url::parse(current), url::Url::parse(&next)) else {
        return next;
    };
    if cur.host() == n.host()
        && cur.port().is_some()
        && cur.port() == n.port()
        && cur.scheme() != n.scheme()
        && n.set_scheme(cur.scheme()).is_ok()
    {
        return n.to_string();
    }
    next
}

fn join(base: &str, path: &[&str]) -> String {
    let mut url = base.trim_end_matches('/').to_string();
    for p in path {
        url.push('/');
        url.push_str(&crate::pagination::percent_encode(p));
    }
    url
}

/// One object from a GET by id. Some servers (extrawest-ocpi) wrap it in a
/// one-element list: when the data does not decode as it is, its single
/// element is tried.
fn one_object<T: DeserializeOwned>(data: Value) -> Result<T, ClientError> {
    match (decode(data.clone()), data) {
        (Ok(v), _) => Ok(v),
        (Err(_), Value::Array(mut items)) if items.len() == 1 => decode(items.remove(0)),
        (Err(e), _) => Err(e),
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    let text = v.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| ClientError::Unexpected {
        status: 200,
        reason: format!("{}: {}", e.path(), e.inner()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2.2.1 transport_and_format "Message Routing Headers", direct request.
    #[test]
    fn routing_headers() {
        let reg = Registered {
            version: Version::V221,
            endpoints: Vec::new(),
            token: "c".into(),
            base64: true,
            versions_url: "https://peer.example/versions".into(),
            peer_credentials: serde_json::json!({"token": "c", "url": "https://peer.example/versions",
                "roles": [{"role": "CPO", "country_code": "NL", "party_id": "CPO"}]}),
        };
        let peer = Client::new(UrlPolicy::default())
            .unwrap()
            .peer(reg.clone())
            .from_party("DE", "EMS");
        let h = peer.routing();
        assert_eq!(
            h,
            vec![
                ("OCPI-to-country-code", "NL".to_string()),
                ("OCPI-to-party-id", "CPO".to_string()),
                ("OCPI-from-country-code", "DE".to_string()),
                ("OCPI-from-party-id", "EMS".to_string())
            ]
        );
        let old = Registered {
            version: Version::V211,
            ..reg
        };
        assert!(Client::new(UrlPolicy::default())
            .unwrap()
            .peer(old)
            .routing()
            .is_empty());
    }

    /// A host name is checked by what it resolves to, not by its
    /// spelling: the client's resolver keeps only allowed addresses, and
    /// reqwest connects to what it keeps.
    #[tokio::test]
    async fn resolved_addresses_pass_the_policy() {
        use reqwest::dns::Resolve;
        // `localhost` resolves (from /etc/hosts) to loopback only
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let strict = PolicyResolver(UrlPolicy::STRICT).resolve(name).await;
        assert!(strict.is_err(), "loopback resolution kept");
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let lab: Vec<SocketAddr> = PolicyResolver(UrlPolicy::lab())
            .resolve(name)
            .await
            .unwrap()
            .collect();
        assert!(!lab.is_empty() && lab.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn one_object_in_a_list() {
        let v: Value = one_object(serde_json::json!([{"a": 1}])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"a": 1}]),
            "a Value takes the list as it is"
        );
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct A {
            a: u8,
        }
        assert_eq!(
            one_object::<A>(serde_json::json!([{"a": 1}])).unwrap(),
            A { a: 1 }
        );
        assert_eq!(
            one_object::<A>(serde_json::json!({"a": 2})).unwrap(),
            A { a: 2 }
        );
        assert!(one_object::<A>(serde_json::json!([{"a": 1}, {"a": 2}])).is_err());
    }

    #[test]
    fn link_header() {
        assert_eq!(
            next_link("<https://x.example/ocpi/locations?offset=50&limit=50>; rel=\"next\"")
                .as_deref(),
            Some("https://x.example/ocpi/locations?offset=50&limit=50")
        );
        assert_eq!(next_link("<https://x.example/a>; rel=\"prev\""), None);
        assert_eq!(next_link(""), None);
        // extrawest-ocpi writes https:// for a server on http://.
        assert_eq!(
            same_origin_scheme(
                "http://127.0.0.1:8080/l/?offset=0",
                "https://127.0.0.1:8080/l/?offset=50".into()
            ),
            "http://127.0.0.1:8080/l/?offset=50"
        );
        assert_eq!(
            same_origin_scheme("http://127.0.0.1:8080/l", "https://other.example/l".into()),
            "https://other.example/l"
        );
        assert_eq!(
            join("https://x.example/t/", &["NL", "TNM", "a b"]),
            "https://x.example/t/NL/TNM/a%20b"
        );
    }
}
