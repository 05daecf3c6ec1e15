//! The listener, the WebSocket handshake policy and the station registry.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evproto_ocpp_proto::{BootState, Endpoint, ProtocolVersion, Role};
use evproto_ocpp_rpc::{
    CallFailure, Closed, Connection, ConnectionConfig, ConnectionEvent, Peer, Routes, Transport,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{info, info_span, warn, Instrument};

use crate::error::{Error, ErrorKind};
use crate::security::{parse_basic, subject_cn, PasswordCheck, Security};

/// Server settings.
///
/// ```
/// use std::time::Duration;
/// let config = evproto_ocpp_server::ServerConfig::default()
///     .with_path_prefix("/ws/")
///     .with_max_message_size(256 * 1024);
/// assert_eq!(config.path_prefix, "/ws/");
/// ```
///
/// permessage-deflate (RFC 7692), which OCPP 2.1 asks a CSMS to support, is
/// on by default ([`ServerConfig::permessage_deflate`]). tokio-tungstenite,
/// our lean default WebSocket, does not implement it (no released version
/// does), so with deflate on the server accepts through hyper and runs
/// connections on yawc, a maintained, Autobahn-tested implementation with
/// RFC 7692; with it off, connections run on tokio-tungstenite.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Stations connect at `{path_prefix}{identity}`. Default `/ocpp/`.
    pub path_prefix: String,
    /// Subprotocols in order of preference. Default 2.1, 2.0.1, 1.6.
    pub preference: Vec<ProtocolVersion>,
    /// The RPC endpoint's settings (call timeout, queue, boot gate).
    pub endpoint: evproto_ocpp_proto::Config,
    /// Keepalive and idle timeout.
    pub connection: ConnectionConfig,
    /// Largest WebSocket message accepted. Default 1 MiB.
    pub max_message_size: usize,
    /// WebSocket read buffer per connection. Default 1 KiB: most OCPP frames
    /// are smaller, larger ones are read in several chunks, and an idle
    /// connection costs less (see BENCHMARKS.md).
    pub read_buffer_size: usize,
    /// Time allowed for TLS and WebSocket handshakes. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time given to connections to close at shutdown. Default 5 s.
    pub shutdown_grace: Duration,
    /// Offer RFC 7692 permessage-deflate (default on; OCPP 2.1 requires a
    /// CSMS to support it). On: connections are accepted by hyper and run on
    /// yawc, compressed when the station offers the extension. Off: they run
    /// on tokio-tungstenite, which has no compression and the smallest
    /// footprint per idle connection.
    pub permessage_deflate: bool,
    /// Keep permessage-deflate contexts between messages. Default off: the
    /// server answers with `server_no_context_takeover` and
    /// `client_no_context_takeover` (RFC 7692 §7.1.1 lets a server impose
    /// both) and borrows compressors from one pool shared by all
    /// connections, so an idle compressed connection costs a few KiB instead
    /// of ~300 KiB of zlib state, at a lower compression ratio. On: each
    /// connection keeps its own contexts (better ratio, far more memory).
    pub deflate_context_takeover: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            path_prefix: "/ocpp/".to_owned(),
            preference: vec![
                ProtocolVersion::V21,
                ProtocolVersion::V201,
                ProtocolVersion::V16,
            ],
            endpoint: evproto_ocpp_proto::Config::default(),
            connection: ConnectionConfig::default(),
            max_message_size: 1 << 20,
            read_buffer_size: 1024,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            permessage_deflate: true,
            deflate_context_takeover: false,
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::deflate_context_takeover`].
    pub fn with_deflate_context_takeover(mut self, on: bool) -> Self {
        self.deflate_context_takeover = on;
        self
    }

    /// Sets [`ServerConfig::path_prefix`].
    pub fn with_path_prefix(mut self, p: impl Into<String>) -> Self {
        self.path_prefix = p.into();
        self
    }
    /// Sets [`ServerConfig::preference`].
    pub fn with_preference(mut self, p: Vec<ProtocolVersion>) -> Self {
        self.preference = p;
        self
    }
    /// Sets [`ServerConfig::endpoint`].
    pub fn with_endpoint(mut self, c: evproto_ocpp_proto::Config) -> Self {
        self.endpoint = c;
        self
    }
    /// Sets [`ServerConfig::connection`].
    pub fn with_connection(mut self, c: ConnectionConfig) -> Self {
        self.connection = c;
        self
    }
    /// Sets [`ServerConfig::max_message_size`].
    pub fn with_max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    /// Sets [`ServerConfig::permessage_deflate`].
    pub fn with_permessage_deflate(mut self, on: bool) -> Self {
        self.permessage_deflate = on;
        self
    }
    /// Sets [`ServerConfig::read_buffer_size`].
    pub fn with_read_buffer_size(mut self, n: usize) -> Self {
        self.read_buffer_size = n;
        self
    }
}

/// What happens to stations, for any task that subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A station connected.
    Connected {
        /// Its identity.
        identity: String,
        /// The negotiated version.
        version: ProtocolVersion,
    },
    /// A station's boot state changed.
    Boot {
        /// Its identity.
        identity: String,
        /// The new state.
        state: BootState,
    },
    /// A station sent a 2.1 SEND message.
    Send {
        /// Its identity.
        identity: String,
        /// The action.
        action: &'static str,
        /// The payload JSON text.
        payload: String,
    },
    /// A station disconnected.
    Disconnected {
        /// Its identity.
        identity: String,
        /// Why.
        reason: Closed,
    },
    /// A handshake was refused.
    Refused {
        /// The HTTP status sent (also [`Error::status`]).
        status: u16,
        /// Why: a typed [`Error`] (match on [`Error::kind`]).
        reason: Error,
    },
}

/// Builds a [`Server`]; the security profile is required.
#[derive(Debug)]
pub struct ServerBuilder {
    security: Security,
    config: ServerConfig,
    routes: HashMap<ProtocolVersion, Routes>,
    admit: Admission,
    per_station: Option<PerStation>,
}

/// Per-station security profiles (see [`ServerBuilder::per_station_profiles`]).
#[derive(Clone)]
struct PerStation {
    profile_of: Arc<dyn Fn(&str) -> u8 + Send + Sync>,
    check: Arc<dyn PasswordCheck>,
}

impl std::fmt::Debug for PerStation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerStation")
    }
}

/// Which authenticated identities may connect (see [`ServerBuilder::admit`]).
#[derive(Clone, Default)]
struct Admission(Option<Arc<AdmitFn>>);

/// The check behind [`ServerBuilder::admit`].
type AdmitFn = dyn Fn(&str) -> bool + Send + Sync;

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Admission(check)"
        } else {
            "Admission(all)"
        })
    }
}

impl ServerBuilder {
    /// Serves OCPP 1.6 with `routes` (from `Router::csms_v16()`).
    ///
    /// # Panics
    ///
    /// If `routes` were built for another version.
    #[must_use]
    pub fn v16(self, routes: Routes) -> Self {
        self.routes(ProtocolVersion::V16, routes)
    }
    /// Serves OCPP 2.0.1 with `routes`.
    ///
    /// # Panics
    ///
    /// If `routes` were built for another version.
    #[must_use]
    pub fn v201(self, routes: Routes) -> Self {
        self.routes(ProtocolVersion::V201, routes)
    }
    /// Serves OCPP 2.1 with `routes`.
    ///
    /// # Panics
    ///
    /// If `routes` were built for another version.
    #[must_use]
    pub fn v21(self, routes: Routes) -> Self {
        self.routes(ProtocolVersion::V21, routes)
    }

    fn routes(mut self, v: ProtocolVersion, routes: Routes) -> Self {
        assert_eq!(
            routes.version(),
            v,
            "routes built for OCPP {} registered as OCPP {v}",
            routes.version()
        );
        self.routes.insert(v, routes);
        self
    }

    /// Admits at the handshake, after the station authenticated, only the
    /// identities `admit` says yes to; the others are refused with 401
    /// ([`ErrorKind::NotAdmitted`]). In profile 3 this is the registry
    /// check: a client certificate stays valid after its station was
    /// deleted, so without it any holder of a CA-signed certificate
    /// connects. Called during every handshake: answer from memory.
    #[must_use]
    pub fn admit(mut self, admit: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.admit = Admission(Some(Arc::new(admit)));
        self
    }

    /// Security profiles per station (OCPP 2.0.1 A00: a station is
    /// configured for one profile): at each handshake `profile_of(identity)`
    /// (0–3; answer from memory, unknown identities included) decides how it
    /// must connect, instead of the [`Security`] given to
    /// [`Server::builder`], which then only says whether [`Server::serve`]
    /// runs TLS:
    ///
    /// - 0: plain WebSocket, no authentication;
    /// - 1: plain WebSocket, HTTP Basic auth checked by `check`;
    /// - 2: TLS, HTTP Basic auth checked by `check`;
    /// - 3: TLS with a client certificate whose subject CN is the identity
    ///   (the TLS configuration must ask for client certificates; let it
    ///   allow connections without one when profile 2 stations share the
    ///   port: those of profile 3 without one are refused here).
    ///
    /// A station on the other transport than its profile's is refused with
    /// 401 ([`ErrorKind::ProfileMismatch`]). Serve a plain and a TLS
    /// listener side by side with [`Server::serve_with`].
    #[must_use]
    pub fn per_station_profiles(
        mut self,
        profile_of: impl Fn(&str) -> u8 + Send + Sync + 'static,
        check: impl PasswordCheck,
    ) -> Self {
        self.per_station = Some(PerStation {
            profile_of: Arc::new(profile_of),
            check: Arc::new(check),
        });
        self
    }

    /// Sets the configuration.
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The server.
    pub fn build(self) -> Server {
        let (events, _) = broadcast::channel(4096);
        Server {
            inner: Arc::new(Inner {
                security: self.security,
                config: self.config,
                routes: self.routes,
                admit: self.admit,
                per_station: self.per_station,
                stations: Mutex::new(HashMap::new()),
                accepted: Mutex::new(HashSet::new()),
                deflate_pool: yawc::DeflatePool::new(DEFLATE_POOL),
                events,
                next_conn: AtomicU64::new(1),
            }),
        }
    }
}

/// Idle compressors (and, separately, decompressors) kept per window size:
/// about the messages compressed at the same moment, not the connections.
const DEFLATE_POOL: usize = 32;

struct Entry {
    peer: Peer,
    conn: u64,
}

struct Inner {
    security: Security,
    config: ServerConfig,
    routes: HashMap<ProtocolVersion, Routes>,
    admit: Admission,
    per_station: Option<PerStation>,
    stations: Mutex<HashMap<String, Entry>>,
    /// Stations whose last boot was accepted. The boot state belongs to the
    /// station, not to one connection (OCPP 2.0.1 B01–B03: a station sends
    /// BootNotification after it (re)boots, not after a network drop), so a
    /// reconnecting accepted station is not refused with `SecurityError`.
    accepted: Mutex<HashSet<String>>,
    /// Compressors and decompressors lent to connections for one message
    /// (no context takeover).
    deflate_pool: yawc::DeflatePool,
    events: broadcast::Sender<ServerEvent>,
    next_conn: AtomicU64,
}

/// A CSMS WebSocket server. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("security", &self.inner.security)
            .field("versions", &self.inner.routes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A station identity: 1–48 characters of `A-Za-z0-9*-_=:+|@.`
/// (2.0.1 Part 4 §3.1.1 `identifierString`, the charge point identity), and
/// not dots alone (`.`, `..` name directories in every path an application
/// may build from an identity).
fn valid_identity(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 48
        && !id.bytes().all(|b| b == b'.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*-_=:+|@.".contains(&b))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The largest HTTP request head the plain-WebSocket path reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Reads the upgrade request's head (up to the blank line), and whatever
/// the station sent with it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, Error> {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            return Err(Error::with_detail(
                ErrorKind::NotWebSocket,
                "request head too large",
            ));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| Error::with_detail(ErrorKind::NotWebSocket, e.to_string()))?;
        if n == 0 {
            return Err(Error::with_detail(
                ErrorKind::NotWebSocket,
                "closed before the request ended",
            ));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// The path and headers of a request head.
fn parse_head(head: &[u8]) -> Option<(Uri, HeaderMap)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    if !req.parse(head).ok()?.is_complete() {
        return None;
    }
    let uri: Uri = req.path?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        headers.append(
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    Some((uri, headers))
}

/// A stream that first replays bytes already read from it.
struct Rewind<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Rewind<S> {
    fn new(head: Vec<u8>, inner: S) -> Self {
        Rewind { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = &mut *self;
        if me.at < me.head.len() {
            let n = (me.head.len() - me.at).min(buf.remaining());
            buf.put_slice(&me.head[me.at..me.at + n]);
            me.at += n;
            if me.at == me.head.len() {
                // replayed: an idle connection keeps no copy
                me.head = Vec::new();
                me.at = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn refuse(error: &Error) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(error.to_string()));
    let status = http_status(error);
    *r.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "WWW-Authenticate",
            HeaderValue::from_static("Basic realm=\"OCPP\""),
        );
    }
    r
}

/// The TLS library and configuration of a `wss://` listener
/// ([`Server::serve_on`]).
#[derive(Clone)]
#[non_exhaustive]
pub enum Tls {
    /// rustls: TLS 1.2 and 1.3 with forward-secret suites only.
    Rustls(Arc<rustls::ServerConfig>),
    /// OpenSSL, with OCPP's static-RSA suites beside the ECDHE ones
    /// ([`crate::tls_openssl::acceptor`]).
    #[cfg(feature = "tls-openssl")]
    OpenSsl(Arc<openssl::ssl::SslAcceptor>),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tls::Rustls(_) => "Tls::Rustls",
            #[cfg(feature = "tls-openssl")]
            Tls::OpenSsl(_) => "Tls::OpenSsl",
        })
    }
}

impl From<Arc<rustls::ServerConfig>> for Tls {
    fn from(config: Arc<rustls::ServerConfig>) -> Self {
        Tls::Rustls(config)
    }
}

#[cfg(feature = "tls-openssl")]
impl From<openssl::ssl::SslAcceptor> for Tls {
    fn from(acceptor: openssl::ssl::SslAcceptor) -> Self {
        Tls::OpenSsl(Arc::new(acceptor))
    }
}

/// How a connection reached the server: plain, or TLS with the client
/// certificate's subject CN (if one was presented).
#[derive(Debug, Clone)]
enum Link {
    Plain,
    Tls(Option<String>),
}

/// HTTP Basic auth of `identity` by `check`. A username that is not the
/// identity is refused after the same check, so no refusal is faster than
/// another.
async fn basic_auth(
    check: &Arc<dyn PasswordCheck>,
    identity: &str,
    headers: &HeaderMap,
) -> Result<(), Error> {
    let header = headers.get("Authorization").and_then(|v| v.to_str().ok());
    let (user, pass) = header.and_then(parse_basic).unwrap_or_default();
    let right = PasswordCheck::verify(check.clone(), identity.to_owned(), pass).await;
    if right && user == identity {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::AuthenticationFailed))
    }
}

/// The HTTP status a refusal is answered with.
fn http_status(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
}

impl Server {
    /// Starts building a server with the given security profile.
    pub fn builder(security: Security) -> ServerBuilder {
        ServerBuilder {
            security,
            config: ServerConfig::default(),
            routes: HashMap::new(),
            admit: Admission::default(),
            per_station: None,
        }
    }

    /// A handle to a connected station.
    ///
    /// # Errors
    ///
    /// [`CallFailure::NotConnected`] if it is not connected.
    pub fn station(&self, identity: &str) -> Result<Peer, CallFailure> {
        let stations = self
            .inner
            .stations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        stations
            .get(identity)
            .map(|e| e.peer.clone())
            .filter(Peer::is_connected)
            .ok_or(CallFailure::NotConnected)
    }

    /// Records that `identity`'s boot was accepted earlier, e.g. from a
    /// store after a restart of the CSMS: when it reconnects without a new
    /// BootNotification (it did not reboot) its calls are answered, not
    /// refused with `SecurityError`. The server also remembers every boot it
    /// accepts itself, for the life of the process.
    pub fn remember_accepted(&self, identity: impl Into<String>) {
        self.inner
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(identity.into());
    }

    /// Forgets that `identity`'s boot was accepted (e.g. the station was
    /// deleted): its calls get `SecurityError` until it boots again.
    pub fn forget_accepted(&self, identity: &str) {
        self.inner
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(identity);
    }

    /// Closes `identity`'s connection, if it is connected (WebSocket close
    /// 1000 with `reason`), e.g. when its password changed or it was
    /// deleted: the station must connect, and authenticate, again. Whether
    /// it was connected.
    pub async fn disconnect(&self, identity: &str, reason: &str) -> bool {
        let peer = self
            .inner
            .stations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(identity)
            .map(|e| e.peer.clone());
        match peer {
            Some(p) => {
                info!(identity, reason, "closing the connection");
                p.close(reason).await;
                true
            }
            None => false,
        }
    }

    /// Identities of connected stations.
    pub fn connected(&self) -> Vec<String> {
        let stations = self
            .inner
            .stations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        stations.keys().cloned().collect()
    }

    /// Station events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.inner.events.subscribe()
    }

    fn emit(&self, ev: ServerEvent) {
        let _ = self.inner.events.send(ev);
    }

    /// Accepts stations on `listener` until `shutdown` completes, then closes
    /// every connection and waits (up to `shutdown_grace`) for them to end.
    ///
    /// # Errors
    ///
    /// Never for a single connection's failure (those are logged and
    /// reported as events); only if the listener itself fails for good.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let tls = self.inner.security.tls().cloned();
        self.serve_with(listener, tls, shutdown).await
    }

    /// As [`Server::serve`], with TLS `tls` on this listener (`None`: plain
    /// WebSocket) whatever the [`Security`]: with
    /// [`ServerBuilder::per_station_profiles`], one server serves a `ws://`
    /// and a `wss://` listener at once, each station on its profile's.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`].
    pub async fn serve_with(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_on(listener, tls.map(Tls::Rustls), shutdown)
            .await
    }

    /// As [`Server::serve_with`], with the TLS library chosen by `tls`:
    /// rustls, or (feature `tls-openssl`) OpenSSL for the static-RSA
    /// suites OCPP requires of a CSMS (see [`crate::tls_openssl`]).
    ///
    /// # Errors
    ///
    /// As [`Server::serve`].
    pub async fn serve_on(
        &self,
        listener: TcpListener,
        tls: Option<Tls>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let _ = tcp.set_nodelay(true);
                        let server = self.clone();
                        let tls = tls.clone();
                        tasks.spawn(async move { server.handle_tcp(tcp, tls).await }.instrument(info_span!("conn", %addr)));
                    }
                    Err(e) => {
                        // e.g. out of file descriptors: back off, keep serving the others
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        let peers: Vec<Peer> = {
            let stations = self
                .inner
                .stations
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            stations.values().map(|e| e.peer.clone()).collect()
        };
        for p in peers {
            p.close("server shutting down").await;
        }
        let _ = tokio::time::timeout(self.inner.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        Ok(())
    }

    async fn handle_tcp(self, tcp: TcpStream, tls: Option<Tls>) {
        let timeout = self.inner.config.handshake_timeout;
        match tls {
            None => Box::pin(self.handle_link(tcp, Link::Plain)).await,
            #[cfg(feature = "tls-openssl")]
            Some(Tls::OpenSsl(acceptor)) => {
                let accepted = async {
                    let ssl = openssl::ssl::Ssl::new(acceptor.context())?;
                    let mut stream = tokio_openssl::SslStream::new(ssl, tcp)?;
                    std::pin::Pin::new(&mut stream)
                        .accept()
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(stream)
                };
                let stream = match tokio::time::timeout(timeout, Box::pin(accepted)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return warn!("TLS handshake failed: {e}"),
                    Err(_) => return warn!("TLS handshake timed out"),
                };
                let cn = stream
                    .ssl()
                    .peer_certificate()
                    .and_then(|c| c.to_der().ok())
                    .and_then(|der| subject_cn(&der));
                Box::pin(self.handle_link(stream, Link::Tls(cn))).await;
            }
            Some(Tls::Rustls(tls)) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let stream =
                    match tokio::time::timeout(timeout, Box::pin(acceptor.accept(tcp))).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return warn!("TLS handshake failed: {e}"),
                        Err(_) => return warn!("TLS handshake timed out"),
                    };
                let cn = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|c| subject_cn(c.as_ref()));
                Box::pin(self.handle_link(stream, Link::Tls(cn))).await;
            }
        }
    }

    /// A connection past TLS (if any): through hyper with permessage-deflate
    /// on, straight to tungstenite without.
    async fn handle_link<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self,
        stream: S,
        transport: Link,
    ) {
        if self.inner.config.permessage_deflate {
            Box::pin(self.handle_http(stream, transport)).await;
        } else {
            Box::pin(self.handle_stream(stream, transport)).await;
        }
    }

    /// The handshake policy: path → identity, subprotocol, authentication,
    /// admission. The password check runs off the runtime's workers
    /// ([`PasswordCheck::verify`]).
    async fn check_request(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        transport: &Link,
    ) -> Result<(String, ProtocolVersion), Error> {
        let client_cn = match transport {
            Link::Tls(cn) => cn.as_deref(),
            Link::Plain => None,
        };
        let cfg = &self.inner.config;
        let path = uri.path();
        let raw = path
            .strip_prefix(cfg.path_prefix.as_str())
            .ok_or_else(|| Error::with_detail(ErrorKind::NoEndpoint, path))?;
        let identity = percent_decode(raw)
            .filter(|id| valid_identity(id))
            .ok_or(Error::new(ErrorKind::InvalidIdentity))?;
        let offered: Vec<&str> = headers
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let version = cfg
            .preference
            .iter()
            .copied()
            .find(|v| self.inner.routes.contains_key(v) && offered.contains(&v.subprotocol()))
            .ok_or_else(|| Error::with_detail(ErrorKind::NoSubprotocol, format!("{offered:?}")))?;
        if let Some(per_station) = &self.inner.per_station {
            let profile = (per_station.profile_of)(&identity);
            let wants_tls = profile >= 2;
            if wants_tls != matches!(transport, Link::Tls(_)) {
                return Err(Error::with_detail(
                    ErrorKind::ProfileMismatch,
                    format!(
                        "{identity} is under security profile {profile}, which connects over {}",
                        if wants_tls {
                            "TLS (wss://)"
                        } else {
                            "plain WebSocket (ws://)"
                        }
                    ),
                ));
            }
            match profile {
                0 => {}
                1 | 2 => basic_auth(&per_station.check, &identity, headers).await?,
                _ => {
                    if client_cn != Some(identity.as_str()) {
                        return Err(Error::with_detail(
                            ErrorKind::CertificateMismatch,
                            format!("{identity} is under security profile 3"),
                        ));
                    }
                }
            }
        } else {
            match &self.inner.security {
                Security::Unsecured => {}
                Security::BasicAuth(check) | Security::TlsBasicAuth(_, check) => {
                    basic_auth(check, &identity, headers).await?;
                }
                Security::MutualTls(_) => {
                    if client_cn != Some(identity.as_str()) {
                        return Err(Error::new(ErrorKind::CertificateMismatch));
                    }
                }
            }
        }
        if let Some(admit) = &self.inner.admit.0 {
            if !admit(&identity) {
                return Err(Error::new(ErrorKind::NotAdmitted));
            }
        }
        Ok((identity, version))
    }

    async fn handle_stream<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self,
        stream: S,
        transport: Link,
    ) {
        let cfg = &self.inner.config;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(cfg.read_buffer_size)
            .write_buffer_size(0)
            .max_message_size(Some(cfg.max_message_size))
            .max_frame_size(Some(cfg.max_message_size));
        // the request head is read and checked first, so the password check
        // can be awaited (tungstenite's callback cannot), then replayed to
        // tungstenite, which answers with the decision
        let (stream, outcome) = match tokio::time::timeout(cfg.handshake_timeout, async {
            let mut stream = stream;
            let head = match read_head(&mut stream).await {
                Ok(head) => head,
                Err(e) => return Err(e),
            };
            let outcome = match parse_head(&head) {
                Some((uri, headers)) => self.check_request(&uri, &headers, &transport).await,
                None => Err(Error::with_detail(
                    ErrorKind::NotWebSocket,
                    "malformed HTTP request",
                )),
            };
            Ok((Rewind::new(head, stream), outcome))
        })
        .await
        {
            Ok(Ok(checked)) => checked,
            Ok(Err(e)) => return info!("handshake failed: {e}"),
            Err(_) => return info!("handshake timed out"),
        };
        // The error type is tungstenite's (an HTTP response), not ours to shrink.
        #[allow(clippy::result_large_err)]
        let callback = |_: &Request, mut resp: Response| match &outcome {
            Ok((_, v)) => {
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static(v.subprotocol()),
                );
                Ok(resp)
            }
            Err(e) => Err(refuse(e)),
        };
        // Boxed, here and below, so the task keeps only the live stage's
        // state: an idle connection does not carry the handshake's buffers.
        let handshake = Box::pin(tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(ws_config),
        ));
        let ws = match tokio::time::timeout(cfg.handshake_timeout, handshake).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                if let Err(reason) = &outcome {
                    info!(status = reason.status(), "handshake refused: {reason}");
                    self.emit(ServerEvent::Refused {
                        status: reason.status(),
                        reason: reason.clone(),
                    });
                } else {
                    info!("handshake failed: {e}");
                }
                return;
            }
            Err(_) => return info!("handshake timed out"),
        };
        let Ok((identity, version)) = outcome else {
            return;
        };
        let span = info_span!("station", identity = %identity, version = %version);
        Box::pin(self.run_connection(ws, identity, version))
            .instrument(span)
            .await;
    }

    /// Accepts through hyper and runs the connection on yawc (permessage-deflate).
    async fn handle_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self,
        stream: S,
        transport: Link,
    ) {
        use http_body_util::Empty;
        use hyper::body::Bytes;
        let server = self.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let server = server.clone();
                let transport = transport.clone();
                async move {
                    let refuse = |reason: Error| {
                        let status = http_status(&reason);
                        info!(%status, "handshake refused: {reason}");
                        server.emit(ServerEvent::Refused {
                            status: status.as_u16(),
                            reason,
                        });
                        let mut r = hyper::Response::new(Empty::<Bytes>::new());
                        *r.status_mut() = status;
                        if status == StatusCode::UNAUTHORIZED {
                            r.headers_mut().insert(
                                "WWW-Authenticate",
                                HeaderValue::from_static("Basic realm=\"OCPP\""),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    };
                    let (identity, version) = match server
                        .check_request(req.uri(), req.headers(), &transport)
                        .await
                    {
                        Ok(ok) => ok,
                        Err(reason) => return refuse(reason),
                    };
                    let cfg = &server.inner.config;
                    let mut options = yawc::Options::default()
                        .with_balanced_compression()
                        .with_max_payload_read(cfg.max_message_size)
                        .with_max_read_buffer(cfg.max_message_size)
                        .with_read_buffer_capacity(cfg.read_buffer_size)
                        .with_write_buffer_capacity(cfg.read_buffer_size)
                        .with_utf8();
                    if !cfg.deflate_context_takeover {
                        options = options
                            .server_no_context_takeover()
                            .client_no_context_takeover()
                            .with_deflate_pool(server.inner.deflate_pool.clone());
                    }
                    match yawc::WebSocket::upgrade_with_options(&mut req, options) {
                        Ok((mut resp, upgrade)) => {
                            resp.headers_mut().insert(
                                "Sec-WebSocket-Protocol",
                                HeaderValue::from_static(version.subprotocol()),
                            );
                            let span =
                                info_span!("station", identity = %identity, version = %version);
                            let server = server.clone();
                            tokio::spawn(
                                async move {
                                    match upgrade.await {
                                        Ok(ws) => {
                                            Box::pin(server.run_connection(ws, identity, version))
                                                .await
                                        }
                                        Err(e) => info!("upgrade failed: {e}"),
                                    }
                                }
                                .instrument(span),
                            );
                            Ok(resp)
                        }
                        Err(e) => {
                            refuse(Error::with_detail(ErrorKind::NotWebSocket, e.to_string()))
                        }
                    }
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        match tokio::time::timeout(self.inner.config.handshake_timeout, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => info!("HTTP handshake failed: {e}"),
            Err(_) => info!("handshake timed out"),
        }
    }

    async fn run_connection<T: Transport>(self, ws: T, identity: String, version: ProtocolVersion) {
        let Some(routes) = self.inner.routes.get(&version).cloned() else {
            return;
        };
        let mut endpoint = Endpoint::new(Role::Csms, version, self.inner.config.endpoint.clone());
        if self
            .inner
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&identity)
        {
            endpoint.set_boot_state(std::time::Instant::now(), BootState::Accepted);
        }
        let sink = {
            let server = self.clone();
            let identity: Arc<str> = Arc::from(identity.as_str());
            move |ev| {
                if let ConnectionEvent::Boot(state) = &ev {
                    let mut accepted = server
                        .inner
                        .accepted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if *state == BootState::Accepted {
                        accepted.insert(identity.to_string());
                    } else {
                        accepted.remove(&*identity);
                    }
                }
                server.emit(match ev {
                    ConnectionEvent::Boot(state) => ServerEvent::Boot {
                        identity: identity.to_string(),
                        state,
                    },
                    ConnectionEvent::Send { action, payload } => ServerEvent::Send {
                        identity: identity.to_string(),
                        action,
                        payload,
                    },
                    _ => return,
                });
            }
        };
        let conn = Connection::new(
            ws,
            endpoint,
            routes,
            Arc::from(identity.as_str()),
            self.inner.config.connection.clone(),
        )
        .with_events(sink);
        let conn_id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let replaced = {
            let mut stations = self
                .inner
                .stations
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            stations.insert(
                identity.clone(),
                Entry {
                    peer: conn.peer(),
                    conn: conn_id,
                },
            )
        };
        if let Some(old) = replaced {
            // A new connection for a connected identity replaces the old one.
            info!("replacing the previous connection");
            old.peer.close("replaced by a new connection").await;
        }
        info!("connected");
        self.emit(ServerEvent::Connected {
            identity: identity.clone(),
            version,
        });
        let reason = conn.run().await;
        {
            let mut stations = self
                .inner
                .stations
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if stations.get(&identity).is_some_and(|e| e.conn == conn_id) {
                stations.remove(&identity);
            }
        }
        info!(?reason, "disconnected");
        self.emit(ServerEvent::Disconnected { identity, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert!(valid_identity("CP001"));
        assert!(valid_identity("cs-01.site_A:1"));
        assert!(!valid_identity(""));
        assert!(!valid_identity("a/b"));
        assert!(!valid_identity(&"x".repeat(49)));
        assert!(!valid_identity("."));
        assert!(!valid_identity(".."));
        assert!(!valid_identity("..."));
        assert!(valid_identity("a..b"));
        assert_eq!(percent_decode("CP%20001").as_deref(), Some("CP 001"));
        assert_eq!(percent_decode("CP%2"), None);
    }
}
