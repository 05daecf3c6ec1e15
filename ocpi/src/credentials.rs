//! The credentials handshake (`credentials.asciidoc`, "Registration"), as
//! sans-IO state machines for both sides. They read no clock, open no
//! socket: each step returns the HTTP request to make, and the shell feeds
//! back the response.
//!
//! ```text
//!  Sender (registers, holds token A)          Receiver (issued token A)
//!  ─────────────────────────────────          ─────────────────────────
//!  Sender::start ──► GET versions (A) ───────►
//!  handle(200) ────► GET version details (A) ►
//!  handle(200) ────► POST credentials (A) ───► Receiver::start(token B, url)
//!                                              ◄── GET versions (B)   handle
//!                                              ◄── GET details (B)    handle
//!  handle(200 + C) ◄── {token C, url, roles} ─ Receiver::finish → 1000 / 3001 / 3002 / 3003
//!  Registered { token C, version, endpoints }
//! ```
//!
//! The Sender picks the highest version both sides offer and checks that
//! the peer offers every required module before it POSTs. The Receiver
//! answers 3001 when it cannot use the Sender's API (a call failed), 3002
//! when there is no mutual version, 3003 when a required module is missing
//! (`status_codes.asciidoc`). The same machines run an update (`PUT`, new
//! tokens, the version may change) by starting from an existing
//! registration. Every URL a peer hands us passes a [`UrlPolicy`] first.
//!
//! ```
//! use evproto_ocpi::credentials::{Own, Sender, Step, Response};
//! use evproto_ocpi::Version;
//!
//! let own = Own::new("https://cpo.example.com/ocpi/versions", "NL", "CPO", "Our CPO");
//! let (mut sender, req) = Sender::start(own, "https://emsp.example.com/ocpi/versions", "token-a", "token-b").unwrap();
//! assert_eq!(req.url, "https://emsp.example.com/ocpi/versions");
//! assert_eq!(req.token, "token-a");
//! let versions = r#"{"status_code": 1000, "timestamp": "2024-01-01T00:00:00Z",
//!   "data": [{"version": "2.2.1", "url": "https://emsp.example.com/ocpi/2.2.1"}]}"#;
//! match sender.handle(Response::new(200, versions)).unwrap() {
//!     Step::Send(req) => assert_eq!(req.url, "https://emsp.example.com/ocpi/2.2.1"),
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::status::StatusCode;
use crate::Version;

/// A URL a peer gave us is not one we may call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused URL {url:?}: {reason}")]
pub struct UrlRefused {
    /// The URL.
    pub url: String,
    /// Why.
    pub reason: &'static str,
}

/// Which addresses peer-supplied URLs may point at (server-side request
/// forgery guard). The default is what an Internet-facing platform needs:
/// `https` only, and only globally routable addresses: loopback, private
/// (RFC 1918, unique-local `fc00::/7`, site-local `fec0::/10`, CGNAT
/// `100.64.0.0/10`), link-local (`169.254.0.0/16` with the cloud metadata
/// endpoint `169.254.169.254`, `fe80::/10`, `fd00:ec2::254`,
/// `100.100.100.200`), unspecified, broadcast, multicast, documentation and
/// reserved addresses are refused, also inside IPv4-mapped,
/// IPv4-compatible, 6to4 and NAT64 IPv6 addresses ([`classify`]), and so
/// are the host names `localhost` and the metadata names. A lab or an
/// in-cluster deployment turns on what it needs explicitly
/// ([`UrlPolicy::lab`]: plain `http` and loopback/private addresses).
///
/// A host name can resolve anywhere: the HTTP client must also check every
/// resolved address with [`UrlPolicy::check_ip`] and connect to the
/// address it checked (the `client` feature does, so a second DNS answer
/// cannot swap it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UrlPolicy {
    /// Allow link-local and metadata addresses (never in production).
    pub allow_link_local: bool,
    /// Allow loopback and private (RFC 1918, unique-local, CGNAT)
    /// addresses.
    pub allow_private: bool,
    /// Allow plain `http://` (2.2.1 requires TLS in production).
    pub allow_http: bool,
}

/// What kind of address an IP address is, for [`UrlPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrClass {
    /// Globally routable.
    Global,
    /// Loopback (`127.0.0.0/8`, `::1`).
    Loopback,
    /// Private networks: RFC 1918, CGNAT `100.64.0.0/10`, unique-local
    /// `fc00::/7`, site-local `fec0::/10`.
    Private,
    /// Link-local (`169.254.0.0/16`, `fe80::/10`) and cloud metadata
    /// addresses (`100.100.100.200`, `fd00:ec2::254`).
    LinkLocal,
    /// Never a peer: unspecified, `0.0.0.0/8`, broadcast, multicast,
    /// documentation, benchmarking, IETF protocol assignments, reserved
    /// (`240.0.0.0/4`), discard-only (`100::/64`).
    Reserved,
}

/// The IPv4 address an IPv6 address carries, if it is one of the forms
/// that reach an IPv4 host: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d` (deprecated), 6to4 `2002:AABB:CCDD::/48`, NAT64
/// `64:ff9b::/96` and `64:ff9b:1::/48`.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        std::net::Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(v4(hi, lo)),
        // ::a.b.c.d, but not :: and ::1
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Some(v4(s[6], s[7])),
        _ => None,
    }
}

/// Classifies an address (IPv6 forms that carry an IPv4 address are
/// classified by that address).
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 0 || v4.is_broadcast() || v4.is_multicast() || o[0] >= 240 {
                AddrClass::Reserved
            } else if v4.is_loopback() {
                AddrClass::Loopback
            } else if v4.is_link_local() || o == [100, 100, 100, 200] {
                AddrClass::LinkLocal
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                AddrClass::Private
            } else if v4.is_documentation()
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
            {
                AddrClass::Reserved
            } else {
                AddrClass::Global
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return classify(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])
            {
                AddrClass::Reserved
            } else if v6.is_loopback() {
                AddrClass::Loopback
            } else if (s[0] & 0xffc0) == 0xfe80 || (s[0] == 0xfd00 && s[1] == 0x0ec2) {
                AddrClass::LinkLocal
            } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
                AddrClass::Private
            } else {
                AddrClass::Global
            }
        }
    }
}

impl UrlPolicy {
    /// The strict policy (also [`UrlPolicy::default`]): `https` only,
    /// globally routable addresses only.
    pub const STRICT: UrlPolicy = UrlPolicy {
        allow_link_local: false,
        allow_private: false,
        allow_http: false,
    };

    /// A lab's policy: plain `http` and loopback and private addresses
    /// allowed (test peers on `127.0.0.1`); link-local and metadata
    /// addresses still refused.
    pub fn lab() -> UrlPolicy {
        UrlPolicy {
            allow_link_local: false,
            allow_private: true,
            allow_http: true,
        }
    }

    /// Checks a URL's scheme and host.
    pub fn check(&self, raw: &str) -> Result<url::Url, UrlRefused> {
        let refuse = |reason| UrlRefused {
            url: raw.to_string(),
            reason,
        };
        let url = url::Url::parse(raw).map_err(|_| refuse("not an absolute URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(refuse("plain http is not allowed")),
            _ => return Err(refuse("scheme must be http or https")),
        }
        match url.host() {
            None => return Err(refuse("no host")),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map_err(refuse)?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map_err(refuse)?,
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if !self.allow_link_local
                    && matches!(
                        d.as_str(),
                        "metadata.google.internal" | "metadata" | "instance-data"
                    )
                {
                    return Err(refuse("cloud metadata host"));
                }
                if !self.allow_private && (d == "localhost" || d.ends_with(".localhost")) {
                    return Err(refuse("loopback host"));
                }
            }
        }
        Ok(url)
    }

    /// Checks one address (also the resolved addresses of a host name).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        match classify(ip) {
            AddrClass::Global => Ok(()),
            AddrClass::Loopback | AddrClass::Private if self.allow_private => Ok(()),
            AddrClass::Loopback | AddrClass::Private => Err("private or loopback address"),
            AddrClass::LinkLocal if self.allow_link_local => Ok(()),
            AddrClass::LinkLocal => Err("link-local or metadata address"),
            AddrClass::Reserved => {
                Err("unspecified, broadcast, multicast, documentation or reserved address")
            }
        }
    }
}

/// What this party tells a peer about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Own {
    /// Our versions endpoint.
    pub versions_url: String,
    /// Our roles: `(country_code, party_id, role, business name)`.
    pub roles: Vec<(String, String, String, String)>,
    /// The versions we speak, in order of preference (highest first).
    pub versions: Vec<Version>,
    /// Modules the peer must offer (besides `credentials`).
    pub required_modules: Vec<String>,
    /// Which peer URLs may be called.
    pub policy: UrlPolicy,
}

impl Own {
    /// One role (`CPO`, `EMSP`, ...), all versions, no required modules.
    pub fn new(versions_url: &str, country_code: &str, party_id: &str, name: &str) -> Own {
        Own::with_role(versions_url, country_code, party_id, "CPO", name)
    }

    /// One role of the given kind, all versions, no required modules.
    pub fn with_role(
        versions_url: &str,
        country_code: &str,
        party_id: &str,
        role: &str,
        name: &str,
    ) -> Own {
        Own {
            versions_url: versions_url.to_string(),
            roles: vec![(
                country_code.to_string(),
                party_id.to_string(),
                role.to_string(),
                name.to_string(),
            )],
            versions: vec![Version::V230, Version::V221, Version::V211],
            required_modules: Vec::new(),
            policy: UrlPolicy::default(),
        }
    }

    /// Our credentials object for `version`, carrying `token`.
    pub fn credentials(&self, version: Version, token: &str) -> Value {
        let role = |(cc, pid, role, name): &(String, String, String, String)| json!({"role": role, "business_details": {"name": name}, "party_id": pid, "country_code": cc});
        match version {
            Version::V211 => {
                let (cc, pid, _, name) = self.roles.first().cloned().unwrap_or_default();
                json!({"token": token, "url": self.versions_url, "business_details": {"name": name},
                       "party_id": pid, "country_code": cc})
            }
            _ => json!({"token": token, "url": self.versions_url,
                        "roles": self.roles.iter().map(role).collect::<Vec<_>>()}),
        }
    }
}

/// An HTTP request the shell must make.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Absolute URL (already checked against the policy).
    pub url: String,
    /// The credentials token for the `Authorization` header.
    pub token: String,
    /// Whether to Base64 the token (2.2+; switched off after a 401 when the
    /// peer turns out to want it plain).
    pub base64: bool,
    /// JSON body, for POST/PUT.
    pub body: Option<Value>,
}

/// The HTTP response to the last request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl Response {
    /// A response with a status and body.
    pub fn new(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            body: body.into(),
        }
    }
}

/// A peer endpoint from its version details.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// Module id (`locations`, ...).
    pub module: String,
    /// `SENDER` or `RECEIVER` (absent in 2.1.1).
    #[serde(default)]
    pub role: Option<String>,
    /// URL.
    pub url: String,
}

/// What a completed handshake leaves behind; it serializes to JSON (and
/// back) for an application's store.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Registered {
    /// The version both sides use.
    pub version: Version,
    /// The peer's endpoints for that version.
    pub endpoints: Vec<Endpoint>,
    /// The token to send to the peer from now on.
    pub token: String,
    /// Whether the peer wants that token Base64-encoded.
    pub base64: bool,
    /// The peer's versions URL.
    pub versions_url: String,
    /// The peer's credentials object as it sent it.
    pub peer_credentials: Value,
}

impl Registered {
    /// The `(country_code, party_id)` pairs the peer's credentials claim
    /// (2.2.1 and later: every role; 2.1.1: its one party), upper-cased,
    /// each once, in order.
    pub fn identities(&self) -> Vec<(String, String)> {
        identities_in(&self.peer_credentials)
    }

    /// The peer's URL for `module` in `role` (2.1.1 endpoints have no role
    /// and match any).
    pub fn endpoint(&self, module: &str, role: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|e| e.module == module && e.role.as_deref().is_none_or(|r| r == role))
            .map(|e| e.url.as_str())
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// An HTTP call failed or answered something unusable (3001 territory).
    #[error("cannot use the peer's API: {0}")]
    Unusable(String),
    /// No version both sides speak (3002).
    #[error("no mutual OCPI version: peer offers {0:?}")]
    NoMutualVersion(Vec<String>),
    /// The peer lacks a required module (3003).
    #[error("peer lacks required modules: {0:?}")]
    MissingModules(Vec<String>),
    /// The peer refused our credentials with an OCPI status.
    #[error("peer refused: status {code} {message}")]
    Refused {
        /// OCPI status code.
        code: u16,
        /// Status message.
        message: String,
    },
    /// A peer URL broke the policy.
    #[error(transparent)]
    Url(#[from] UrlRefused),
    /// `handle` called after the machine finished.
    #[error("handshake already finished")]
    Finished,
}

impl HandshakeError {
    /// The OCPI status a Receiver answers the POST/PUT with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            HandshakeError::NoMutualVersion(_) => StatusCode::UNSUPPORTED_VERSION,
            HandshakeError::MissingModules(_) => StatusCode::NO_MATCHING_ENDPOINTS,
            _ => StatusCode::UNABLE_TO_USE_CLIENT_API,
        }
    }
}

/// The next step of a handshake.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Make this request and feed the response to `handle`.
    Send(Request),
    /// Done.
    Done(Box<Registered>),
}

/// Reads an OCPI envelope's `data`, insisting on status 1000.
fn envelope_data(resp: &Response) -> Result<Value, HandshakeError> {
    let v: Value = serde_json::from_str(&resp.body).map_err(|e| {
        HandshakeError::Unusable(format!("HTTP {}: body is not JSON: {e}", resp.status))
    })?;
    let code = v.get("status_code").and_then(Value::as_u64).unwrap_or(0) as u16;
    if !(200..300).contains(&resp.status) || code != 1000 {
        let message = v
            .get("status_message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if code >= 2000 {
            return Err(HandshakeError::Refused { code, message });
        }
        return Err(HandshakeError::Unusable(format!(
            "HTTP {}, OCPI status {code} {message}",
            resp.status
        )));
    }
    Ok(v.get("data").cloned().unwrap_or(Value::Null))
}

/// Picks the highest version both sides speak from a versions list.
fn pick_version(own: &Own, data: &Value) -> Result<(Version, String), HandshakeError> {
    let list = data
        .as_array()
        .ok_or_else(|| HandshakeError::Unusable("versions: data is not a list".into()))?;
    let offered: Vec<(String, String)> = list
        .iter()
        .filter_map(|v| {
            Some((
                v.get("version")?.as_str()?.to_string(),
                v.get("url")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut ours = own.versions.clone();
    ours.sort_by(|a, b| b.cmp(a));
    for mine in ours {
        if let Some((_, url)) = offered
            .iter()
            .find(|(v, _)| Version::parse(v) == Some(mine) && v.contains('.'))
        {
            own.policy.check(url)?;
            return Ok((mine, url.clone()));
        }
    }
    Err(HandshakeError::NoMutualVersion(
        offered.into_iter().map(|(v, _)| v).collect(),
    ))
}

/// Reads version details into endpoints and checks the required modules.
/// What the answer to `GET versions` leads to, in either role.
enum VersionsAnswer {
    /// 401: ask again with the token unencoded.
    RetryPlain,
    /// The highest version both sides share, and its details URL.
    Picked(Version, String),
}

/// The versions step both roles share. 2.3.0 `transport_and_format`: many
/// implementations take the token unencoded, so a 401 is retried once
/// without Base64; 2.1.1 never encodes it.
fn read_versions(
    own: &Own,
    base64: &mut bool,
    retried_plain: bool,
    resp: &Response,
) -> Result<VersionsAnswer, HandshakeError> {
    if resp.status == 401 && !retried_plain {
        *base64 = false;
        return Ok(VersionsAnswer::RetryPlain);
    }
    let data = envelope_data(resp)?;
    let (version, url) = pick_version(own, &data)?;
    if version == Version::V211 {
        *base64 = false;
    }
    Ok(VersionsAnswer::Picked(version, url))
}

fn read_endpoints(own: &Own, data: &Value) -> Result<Vec<Endpoint>, HandshakeError> {
    let list = data
        .get("endpoints")
        .and_then(Value::as_array)
        .ok_or_else(|| HandshakeError::Unusable("version details without endpoints".into()))?;
    let mut out = Vec::new();
    for e in list {
        let (Some(module), Some(url)) = (
            e.get("identifier").and_then(Value::as_str),
            e.get("url").and_then(Value::as_str),
        ) else {
            continue;
        };
        own.policy.check(url)?;
        out.push(Endpoint {
            module: module.to_string(),
            role: e.get("role").and_then(Value::as_str).map(str::to_string),
            url: url.to_string(),
        });
    }
    let mut missing: Vec<String> = std::iter::once("credentials".to_string())
        .chain(own.required_modules.iter().cloned())
        .filter(|m| !out.iter().any(|e| &e.module == m))
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        return Err(HandshakeError::MissingModules(missing));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum SenderState {
    Versions {
        retried_plain: bool,
    },
    Details {
        version: Version,
    },
    Credentials {
        version: Version,
        endpoints: Vec<Endpoint>,
    },
    Done,
}

/// The registering side: holds token A (or, for an update, the current
/// token C), discovers the peer's versions, POSTs (or PUTs) its
/// credentials with a fresh token B, and ends with the peer's token.
#[derive(Debug, Clone)]
pub struct Sender {
    own: Own,
    peer_versions_url: String,
    token: String,
    new_token: String,
    base64: bool,
    method: &'static str,
    state: SenderState,
}

impl Sender {
    /// Starts a registration (POST) with `token_a` and our new `token_b`.
    pub fn start(
        own: Own,
        peer_versions_url: &str,
        token_a: &str,
        token_b: &str,
    ) -> Result<(Sender, Request), HandshakeError> {
        Sender::begin(own, peer_versions_url, token_a, token_b, "POST")
    }

    /// Starts an update (PUT) of an existing registration: `current` is the
    /// token the peer gave us, `new_token` the one we give it now.
    pub fn update(
        own: Own,
        peer_versions_url: &str,
        current: &str,
        new_token: &str,
    ) -> Result<(Sender, Request), HandshakeError> {
        Sender::begin(own, peer_versions_url, current, new_token, "PUT")
    }

    fn begin(
        own: Own,
        peer_versions_url: &str,
        token: &str,
        new_token: &str,
        method: &'static str,
    ) -> Result<(Sender, Request), HandshakeError> {
        own.policy.check(peer_versions_url)?;
        let s = Sender {
            own,
            peer_versions_url: peer_versions_url.to_string(),
            token: token.to_string(),
            new_token: new_token.to_string(),
            base64: true,
            method,
            state: SenderState::Versions {
                retried_plain: false,
            },
        };
        let req = s.get(peer_versions_url);
        Ok((s, req))
    }

    fn get(&self, url: &str) -> Request {
        Request {
            method: "GET",
            url: url.to_string(),
            token: self.token.clone(),
            base64: self.base64,
            body: None,
        }
    }

    /// Feeds the response to the last request.
    pub fn handle(&mut self, resp: Response) -> Result<Step, HandshakeError> {
        let state = std::mem::replace(&mut self.state, SenderState::Done);
        let r = self.advance(state, resp);
        if r.is_err() {
            self.state = SenderState::Done;
        }
        r
    }

    fn advance(&mut self, state: SenderState, resp: Response) -> Result<Step, HandshakeError> {
        match state {
            SenderState::Versions { retried_plain } => {
                match read_versions(&self.own, &mut self.base64, retried_plain, &resp)? {
                    VersionsAnswer::RetryPlain => {
                        self.state = SenderState::Versions {
                            retried_plain: true,
                        };
                        Ok(Step::Send(self.get(&self.peer_versions_url.clone())))
                    }
                    VersionsAnswer::Picked(version, url) => {
                        self.state = SenderState::Details { version };
                        Ok(Step::Send(self.get(&url)))
                    }
                }
            }
            SenderState::Details { version } => {
                let data = envelope_data(&resp)?;
                let endpoints = read_endpoints(&self.own, &data)?;
                let url = endpoints
                    .iter()
                    .find(|e| e.module == "credentials")
                    .map(|e| e.url.clone())
                    .ok_or_else(|| HandshakeError::MissingModules(vec!["credentials".into()]))?;
                let body = self.own.credentials(version, &self.new_token);
                self.state = SenderState::Credentials { version, endpoints };
                Ok(Step::Send(Request {
                    method: self.method,
                    url,
                    token: self.token.clone(),
                    base64: self.base64,
                    body: Some(body),
                }))
            }
            SenderState::Credentials { version, endpoints } => {
                let data = envelope_data(&resp)?;
                let token = data
                    .get("token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| HandshakeError::Unusable("credentials without a token".into()))?
                    .to_string();
                let versions_url = data
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or(&self.peer_versions_url)
                    .to_string();
                self.own.policy.check(&versions_url)?;
                Ok(Step::Done(Box::new(Registered {
                    version,
                    endpoints,
                    token,
                    base64: self.base64,
                    versions_url,
                    peer_credentials: data,
                })))
            }
            SenderState::Done => Err(HandshakeError::Finished),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ReceiverState {
    Versions { retried_plain: bool },
    Details { version: Version },
    Done,
}

/// The side that was asked to register (it issued token A): on the Sender's
/// POST (or PUT) it calls the Sender back with token B, then answers with
/// its own credentials and token C, or with 3001/3002/3003.
#[derive(Debug, Clone)]
pub struct Receiver {
    own: Own,
    token_b: String,
    peer_versions_url: String,
    peer_credentials: Value,
    base64: bool,
    state: ReceiverState,
}

impl Receiver {
    /// Starts from the credentials object the Sender POSTed (or PUT).
    pub fn start(own: Own, posted: &Value) -> Result<(Receiver, Request), HandshakeError> {
        let token = posted
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| HandshakeError::Unusable("credentials without a token".into()))?;
        let url = posted
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| HandshakeError::Unusable("credentials without a url".into()))?;
        own.policy.check(url)?;
        let r = Receiver {
            own,
            token_b: token.to_string(),
            peer_versions_url: url.to_string(),
            peer_credentials: posted.clone(),
            base64: true,
            state: ReceiverState::Versions {
                retried_plain: false,
            },
        };
        let req = r.get(url);
        Ok((r, req))
    }

    fn get(&self, url: &str) -> Request {
        Request {
            method: "GET",
            url: url.to_string(),
            token: self.token_b.clone(),
            base64: self.base64,
            body: None,
        }
    }

    /// Feeds the response to the last request. `Done` carries what the
    /// Receiver must store (`token` is token B, for calling the Sender);
    /// answer the POST with [`Own::credentials`] holding a new token C.
    pub fn handle(&mut self, resp: Response) -> Result<Step, HandshakeError> {
        let state = std::mem::replace(&mut self.state, ReceiverState::Done);
        match state {
            ReceiverState::Versions { retried_plain } => {
                match read_versions(&self.own, &mut self.base64, retried_plain, &resp)? {
                    VersionsAnswer::RetryPlain => {
                        self.state = ReceiverState::Versions {
                            retried_plain: true,
                        };
                        Ok(Step::Send(self.get(&self.peer_versions_url.clone())))
                    }
                    VersionsAnswer::Picked(version, url) => {
                        self.state = ReceiverState::Details { version };
                        Ok(Step::Send(self.get(&url)))
                    }
                }
            }
            ReceiverState::Details { version } => {
                let data = envelope_data(&resp)?;
                let endpoints = read_endpoints(&self.own, &data)?;
                Ok(Step::Done(Box::new(Registered {
                    version,
                    endpoints,
                    token: self.token_b.clone(),
                    base64: self.base64,
                    versions_url: self.peer_versions_url.clone(),
                    peer_credentials: self.peer_credentials.clone(),
                })))
            }
            ReceiverState::Done => Err(HandshakeError::Finished),
        }
    }
}

/// The `(country_code, party_id)` pairs a credentials object claims
/// (upper-cased, each once, in order).
pub(crate) fn identities_in(c: &Value) -> Vec<(String, String)> {
    let pair = |v: &Value| {
        Some((
            v.get("country_code")?.as_str()?.to_ascii_uppercase(),
            v.get("party_id")?.as_str()?.to_ascii_uppercase(),
        ))
    };
    let roles = c.get("roles").and_then(Value::as_array);
    let mut out: Vec<(String, String)> = Vec::new();
    for id in roles.into_iter().flatten().chain([c]).filter_map(pair) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(data: Value) -> Response {
        Response::new(
            200,
            json!({"status_code": 1000, "timestamp": "2024-01-01T00:00:00Z", "data": data})
                .to_string(),
        )
    }

    fn versions(list: &[(&str, &str)]) -> Response {
        ok(Value::Array(
            list.iter()
                .map(|(v, u)| json!({"version": v, "url": u}))
                .collect(),
        ))
    }

    fn details(version: &str, modules: &[&str]) -> Response {
        ok(
            json!({"version": version, "endpoints": modules.iter().map(|m| json!({
            "identifier": m, "role": "RECEIVER", "url": format!("https://peer.example/ocpi/{version}/{m}")
        })).collect::<Vec<_>>()}),
        )
    }

    fn own() -> Own {
        let mut o = Own::with_role("https://us.example/versions", "NL", "CPO", "CPO", "Us");
        o.required_modules = vec!["tokens".into()];
        o
    }

    /// credentials.asciidoc "Registration": versions → details → POST → C.
    #[test]
    fn sender_registers_with_highest_mutual_version() {
        let (mut s, req) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        assert_eq!(
            (req.method, req.token.as_str(), req.base64),
            ("GET", "A", true)
        );
        let Step::Send(req) = s
            .handle(versions(&[
                ("2.1.1", "https://peer.example/ocpi/2.1.1"),
                ("2.2.1", "https://peer.example/ocpi/2.2.1"),
                ("3.0", "https://peer.example/ocpi/3.0"),
            ]))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(req.url, "https://peer.example/ocpi/2.2.1");
        let Step::Send(req) = s
            .handle(details("2.2.1", &["credentials", "tokens", "locations"]))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((req.method, req.token.as_str()), ("POST", "A"));
        assert_eq!(req.url, "https://peer.example/ocpi/2.2.1/credentials");
        let body = req.body.unwrap();
        assert_eq!(body["token"], "B");
        assert_eq!(body["roles"][0]["role"], "CPO");
        let Step::Done(reg) = s
            .handle(ok(
                json!({"token": "C", "url": "https://peer.example/versions", "roles": []}),
            ))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(reg.token, "C");
        assert_eq!(reg.version, Version::V221);
        assert_eq!(
            reg.endpoint("tokens", "RECEIVER"),
            Some("https://peer.example/ocpi/2.2.1/tokens")
        );
        assert_eq!(s.handle(ok(Value::Null)), Err(HandshakeError::Finished));
    }

    /// 2.3.0 transport_and_format, Authorization header NOTE: retry unencoded.
    #[test]
    fn sender_falls_back_to_a_plain_token_after_401() {
        let (mut s, _) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        let Step::Send(req) = s.handle(Response::new(401, "")).unwrap() else {
            panic!()
        };
        assert!(!req.base64);
        assert_eq!(req.url, "https://peer.example/versions");
        // A second 401 is final.
        assert!(matches!(
            s.handle(Response::new(401, "{}")),
            Err(HandshakeError::Unusable(_))
        ));
    }

    /// 2.1.1 tokens are never Base64.
    #[test]
    fn v211_peer_gets_a_plain_token_and_flat_credentials() {
        let (mut s, _) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        let Step::Send(req) = s
            .handle(versions(&[("2.1.1", "https://peer.example/ocpi/2.1.1")]))
            .unwrap()
        else {
            panic!()
        };
        assert!(!req.base64);
        let d = ok(json!({"version": "2.1.1", "endpoints": [
            {"identifier": "credentials", "url": "https://peer.example/c"},
            {"identifier": "tokens", "url": "https://peer.example/t"}]}));
        let Step::Send(req) = s.handle(d).unwrap() else {
            panic!()
        };
        let body = req.body.unwrap();
        assert_eq!(body["party_id"], "CPO");
        assert!(body.get("roles").is_none());
    }

    /// status_codes.asciidoc 3002 / 3003 and the Sender's checks before POST.
    #[test]
    fn failures_map_to_their_status_codes() {
        let (mut s, _) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        let e = s
            .handle(versions(&[("2.0", "https://peer.example/2.0")]))
            .unwrap_err();
        assert_eq!(e.status_code(), StatusCode::UNSUPPORTED_VERSION);
        let (mut s, _) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        s.handle(versions(&[("2.2.1", "https://peer.example/2.2.1")]))
            .unwrap();
        let e = s
            .handle(details("2.2.1", &["credentials", "locations"]))
            .unwrap_err();
        assert_eq!(e, HandshakeError::MissingModules(vec!["tokens".into()]));
        assert_eq!(e.status_code(), StatusCode::NO_MATCHING_ENDPOINTS);
        // The peer refuses our POST with 3001.
        let (mut s, _) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        s.handle(versions(&[("2.2.1", "https://peer.example/2.2.1")]))
            .unwrap();
        s.handle(details("2.2.1", &["credentials", "tokens"]))
            .unwrap();
        let e = s
            .handle(Response::new(200, r#"{"status_code": 3001, "status_message": "cannot reach you", "timestamp": "2024-01-01T00:00:00Z"}"#))
            .unwrap_err();
        assert_eq!(
            e,
            HandshakeError::Refused {
                code: 3001,
                message: "cannot reach you".into()
            }
        );
        // Garbage is 3001 for a Receiver.
        let (mut s, _) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        let e = s.handle(Response::new(200, "<html>")).unwrap_err();
        assert_eq!(e.status_code(), StatusCode::UNABLE_TO_USE_CLIENT_API);
    }

    #[test]
    fn receiver_calls_back_with_token_b() {
        let posted = json!({"token": "B", "url": "https://peer.example/versions", "roles": []});
        let (mut r, req) = Receiver::start(own(), &posted).unwrap();
        assert_eq!(
            (req.url.as_str(), req.token.as_str()),
            ("https://peer.example/versions", "B")
        );
        r.handle(versions(&[("2.2.1", "https://peer.example/ocpi/2.2.1")]))
            .unwrap();
        let Step::Done(reg) = r
            .handle(details("2.2.1", &["credentials", "tokens"]))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(reg.token, "B");
        assert_eq!(reg.version, Version::V221);
        // Missing token: the POST gets 2001-style refusal from the shell.
        assert!(Receiver::start(own(), &json!({"url": "https://x.example/"})).is_err());
    }

    #[test]
    fn update_uses_put_and_the_current_token() {
        let (mut s, req) =
            Sender::update(own(), "https://peer.example/versions", "C", "B2").unwrap();
        assert_eq!(req.token, "C");
        s.handle(versions(&[("2.2.1", "https://peer.example/2.2.1")]))
            .unwrap();
        let Step::Send(req) = s
            .handle(details("2.2.1", &["credentials", "tokens"]))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((req.method, req.token.as_str()), ("PUT", "C"));
        assert_eq!(req.body.unwrap()["token"], "B2");
    }

    /// SSRF: peer URLs to link-local/metadata addresses are refused even
    /// by the lab policy; the default also refuses plain http, loopback and
    /// private addresses.
    #[test]
    fn url_policy() {
        let p = UrlPolicy::lab();
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/x",
            "http://[::ffff:169.254.169.254]/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://100.100.100.200/",
            "http://0.0.0.0/",
            "ftp://peer.example/",
            "file:///etc/passwd",
            "not a url",
            "http://[fd00:ec2::254]/",
        ] {
            assert!(p.check(bad).is_err(), "{bad}");
        }
        for good in [
            "https://peer.example/ocpi",
            "http://127.0.0.1:8080/ocpi",
            "http://10.0.0.5/x",
        ] {
            assert!(p.check(good).is_ok(), "{good}");
        }
        let strict = UrlPolicy::default();
        assert_eq!(strict, UrlPolicy::STRICT);
        for bad in [
            "http://peer.example/",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            // numeric forms the URL parser reads as 127.0.0.1
            "https://2130706433/",
            "https://0x7f.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[fd12:3456::1]/",
            "https://100.64.0.1/",
            "https://169.254.169.254/",
        ] {
            assert!(strict.check(bad).is_err(), "{bad}");
        }
        assert!(strict.check("https://peer.example/ocpi").is_ok());
        assert!(strict.check("https://8.8.8.8/ocpi").is_ok());
        // A peer's details pointing at metadata fail the handshake.
        let (mut s, _) = Sender::start(own(), "https://peer.example/versions", "A", "B").unwrap();
        let e = s
            .handle(versions(&[("2.2.1", "http://169.254.169.254/2.2.1")]))
            .unwrap_err();
        assert!(matches!(e, HandshakeError::Url(_)));
    }

    /// Every range the policy knows, in both families and in the IPv6
    /// forms that carry an IPv4 address.
    #[test]
    fn address_classes() {
        use AddrClass::*;
        let cases: &[(&str, AddrClass)] = &[
            ("8.8.8.8", Global),
            ("1.1.1.1", Global),
            ("100.63.255.255", Global),
            ("100.128.0.0", Global),
            ("172.32.0.1", Global),
            ("2a00:1450::1", Global),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.127.255.255", Private),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("100.100.100.200", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fd00:ec2::254", LinkLocal),
            ("0.0.0.0", Reserved),
            ("0.1.2.3", Reserved),
            ("255.255.255.255", Reserved),
            ("224.0.0.1", Reserved),
            ("239.255.255.250", Reserved),
            ("240.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("198.51.100.1", Reserved),
            ("203.0.113.1", Reserved),
            ("198.18.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("::", Reserved),
            ("ff02::1", Reserved),
            ("2001:db8::1", Reserved),
            ("100::1", Reserved),
            // IPv4 inside IPv6: mapped, compatible, 6to4, NAT64
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:100.64.1.1", Private),
            ("::ffff:0.0.0.0", Reserved),
            ("::ffff:8.8.8.8", Global),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("::2", Reserved),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("2002:0808:0808::1", Global),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::169.254.169.254", LinkLocal),
            ("64:ff9b::8.8.8.8", Global),
            ("64:ff9b:1::c0a8:101", Private),
        ];
        for (ip, class) in cases {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(classify(addr), *class, "{ip}");
            let strict = UrlPolicy::STRICT.check_ip(addr).is_ok();
            assert_eq!(strict, *class == Global, "strict policy on {ip}");
            let lab = UrlPolicy::lab().check_ip(addr).is_ok();
            assert_eq!(
                lab,
                matches!(class, Global | Loopback | Private),
                "lab policy on {ip}"
            );
        }
    }
}
