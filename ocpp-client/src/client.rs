//! The supervisor: connect, boot, heartbeat, reconnect, replay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use evproto_ocpp_proto::{BootState, Endpoint, ProtocolVersion, Role};
use evproto_ocpp_rpc::{CallFailure, Closed, Connection, ConnectionConfig, Peer, Routes};
use evproto_ocpp_types::Action;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{info, info_span, warn, Instrument};

use crate::store::OfflineStore;

/// Reconnect timing, as OCPP 2.0.1's `RetryBackOffWaitMinimum`,
/// `RetryBackOffRandomRange` and `RetryBackOffRepeatTimes` define it: the
/// first retry waits the minimum plus a random part of the range, each
/// further retry doubles the wait, up to `repeat_times` doublings.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Backoff {
    /// Shortest wait. Default 1 s.
    pub wait_minimum: Duration,
    /// Random extra, up to this. Default 2 s.
    pub random_range: Duration,
    /// Doublings before the wait stops growing. Default 5.
    pub repeat_times: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            wait_minimum: Duration::from_secs(1),
            random_range: Duration::from_secs(2),
            repeat_times: 5,
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0-based), with `random` in [0, 1).
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let factor = 1u32 << attempt.min(self.repeat_times).min(16);
        (self.wait_minimum + self.random_range.mul_f64(random.clamp(0.0, 1.0))) * factor
    }
}

/// Client settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The CSMS URL the identity is appended to (`ws://host:9000/ocpp/`).
    pub url: String,
    /// The station identity.
    pub identity: String,
    /// The OCPP version to speak.
    pub version: ProtocolVersion,
    /// Basic-auth password (security profiles 1 and 2).
    pub password: Option<Vec<u8>>,
    /// TLS settings for `wss://` (profiles 2 and 3; for 3 with a client certificate).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// RPC endpoint settings.
    pub endpoint: evproto_ocpp_proto::Config,
    /// Keepalive settings.
    pub connection: ConnectionConfig,
    /// Reconnect timing.
    pub backoff: Backoff,
    /// Send BootNotification on every reconnect, not only the first connection. Default off.
    pub boot_on_reconnect: bool,
    /// Delivery attempts per queued message before it is dropped (2.0.1
    /// `MessageAttemptsTransactionEvent`, 1.6 `TransactionMessageAttempts`):
    /// a timeout and a CALLERROR each count as one. Default 3.
    pub message_attempts: u32,
    /// Wait after a failed attempt, times the attempt number (2.0.1
    /// `MessageAttemptIntervalTransactionEvent`). Default 5 s.
    pub message_retry_interval: Duration,
    /// Heartbeat interval used until the CSMS gives one. Default 300 s.
    pub default_heartbeat: Duration,
    /// Offer RFC 7692 permessage-deflate (default on). On: the upgrade is
    /// done with hyper and the connection runs on yawc, compressed if the
    /// CSMS accepts. Off: it runs on tokio-tungstenite, uncompressed.
    pub permessage_deflate: bool,
    /// Told of every failed connection attempt, with why (counting them by
    /// [`ConnectFailure::reason`], say). Default none.
    pub on_connect_failure: Option<FailureHook>,
}

impl ClientConfig {
    /// Settings for `identity` at `url`, speaking `version`.
    pub fn new(
        url: impl Into<String>,
        identity: impl Into<String>,
        version: ProtocolVersion,
    ) -> Self {
        Self {
            url: url.into(),
            identity: identity.into(),
            version,
            password: None,
            tls: None,
            endpoint: evproto_ocpp_proto::Config::default(),
            connection: ConnectionConfig::default(),
            backoff: Backoff::default(),
            boot_on_reconnect: false,
            message_attempts: 3,
            message_retry_interval: Duration::from_secs(5),
            default_heartbeat: Duration::from_secs(300),
            permessage_deflate: true,
            on_connect_failure: None,
        }
    }
    /// Sets the Basic-auth password.
    pub fn with_password(mut self, p: impl Into<Vec<u8>>) -> Self {
        self.password = Some(p.into());
        self
    }
    /// Sets the TLS configuration.
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }
    /// Sets [`ClientConfig::permessage_deflate`].
    pub fn with_permessage_deflate(mut self, on: bool) -> Self {
        self.permessage_deflate = on;
        self
    }
    /// Sets [`ClientConfig::backoff`].
    pub fn with_backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }
    /// Sets [`ClientConfig::endpoint`].
    pub fn with_endpoint(mut self, c: evproto_ocpp_proto::Config) -> Self {
        self.endpoint = c;
        self
    }
    /// Sets [`ClientConfig::on_connect_failure`].
    pub fn with_connect_failure_hook(
        mut self,
        f: impl Fn(&ConnectFailure) + Send + Sync + 'static,
    ) -> Self {
        self.on_connect_failure = Some(FailureHook::new(f));
        self
    }
    /// Sets [`ClientConfig::message_retry_interval`].
    pub fn with_message_retry_interval(mut self, d: Duration) -> Self {
        self.message_retry_interval = d;
        self
    }
}

/// Why a connection attempt failed: what [`ClientConfig::on_connect_failure`]
/// is told on every failed attempt, and [`Client::last_failure`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The URL cannot be used (no host, characters a header cannot carry).
    BadUrl(String),
    /// No TCP connection: refused (nothing listens), unreachable, or the
    /// name did not resolve.
    Unreachable(String),
    /// The TLS handshake failed (certificate not trusted, no common suite).
    Tls(String),
    /// The CSMS answered the WebSocket upgrade with this HTTP status
    /// instead of 101: 401 is a wrong password or an identity it does not
    /// know, 404 a wrong path.
    Http(u16),
    /// The upgrade was answered but broke the WebSocket or OCPP rules: no
    /// agreed OCPP subprotocol, a bad accept key, a connection cut during it.
    Handshake(String),
}

impl ConnectFailure {
    /// A short, stable reason to count failures by: `unreachable`, `tls`,
    /// `http 401`, `handshake`, `bad url`.
    pub fn reason(&self) -> String {
        match self {
            ConnectFailure::BadUrl(_) => "bad url".into(),
            ConnectFailure::Unreachable(_) => "unreachable".into(),
            ConnectFailure::Tls(_) => "tls".into(),
            ConnectFailure::Http(s) => format!("http {s}"),
            ConnectFailure::Handshake(_) => "handshake".into(),
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::BadUrl(e) => write!(f, "bad URL: {e}"),
            ConnectFailure::Unreachable(e) => write!(f, "unreachable: {e}"),
            ConnectFailure::Tls(e) => write!(f, "TLS: {e}"),
            ConnectFailure::Http(401) => {
                f.write_str("HTTP 401: wrong password, or an identity the CSMS does not know")
            }
            ConnectFailure::Http(404) => f.write_str(
                "HTTP 404: wrong path (the URL ends with /ocpp/ or the CSMS's own path)",
            ),
            ConnectFailure::Http(s) => write!(f, "HTTP {s} instead of 101 Switching Protocols"),
            ConnectFailure::Handshake(e) => write!(f, "WebSocket/OCPP handshake: {e}"),
        }
    }
}

/// A function told of every failed connection attempt (see
/// [`ClientConfig::on_connect_failure`]).
#[derive(Clone)]
pub struct FailureHook(Arc<dyn Fn(&ConnectFailure) + Send + Sync>);

impl FailureHook {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&ConnectFailure) + Send + Sync + 'static) -> Self {
        FailureHook(Arc::new(f))
    }
}

impl std::fmt::Debug for FailureHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureHook")
    }
}

/// Where the client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// Not connected (waiting to retry).
    Disconnected,
    /// Connected; the boot is in `BootState`.
    Connected(BootState),
    /// Stopped by [`Client::shutdown`].
    Stopped,
}

/// Client errors. The Display text is not API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not ready within the time given.
    #[error("timed out waiting for the connection")]
    Timeout,
    /// The offline store failed.
    #[error("offline store: {0}")]
    Store(#[from] std::io::Error),
    /// The client was shut down.
    #[error("client stopped")]
    Stopped,
}

struct Shared {
    config: ClientConfig,
    routes: Routes,
    boot_payload: String,
    store: Arc<dyn OfflineStore>,
    peer: Mutex<Option<Peer>>,
    state: watch::Sender<ClientState>,
    queued: Notify,
    stop: Notify,
    last_failure: Mutex<Option<ConnectFailure>>,
}

/// A running charging-station connection. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("identity", &self.shared.config.identity)
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

/// Jitter without an RNG dependency: xorshift seeded from the clock.
fn random_unit(seed: &mut u64) -> f64 {
    let mut x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Client {
    /// Starts the client; it connects in the background and keeps
    /// reconnecting until [`Client::shutdown`]. `boot_payload` is the
    /// BootNotification request (JSON) for the configured version.
    pub fn start(
        config: ClientConfig,
        routes: Routes,
        boot_payload: &str,
        store: impl OfflineStore,
    ) -> Self {
        Self::start_with_store(config, routes, boot_payload, Arc::new(store))
    }

    /// As [`Client::start`], with a shared store.
    pub fn start_with_store(
        config: ClientConfig,
        routes: Routes,
        boot_payload: &str,
        store: Arc<dyn OfflineStore>,
    ) -> Self {
        let (state, _) = watch::channel(ClientState::Disconnected);
        let shared = Arc::new(Shared {
            config,
            routes,
            boot_payload: boot_payload.to_owned(),
            store,
            peer: Mutex::new(None),
            state,
            queued: Notify::new(),
            stop: Notify::new(),
            last_failure: Mutex::new(None),
        });
        let span = info_span!("station", identity = %shared.config.identity);
        tokio::spawn(supervise(shared.clone()).instrument(span.clone()));
        tokio::spawn(replay(shared.clone()).instrument(span));
        Client { shared }
    }

    /// Why the last connection attempt failed; `None` once a connection
    /// was made (or before the first attempt).
    pub fn last_failure(&self) -> Option<ConnectFailure> {
        self.shared
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        *self.shared.state.borrow()
    }

    /// State changes. Copy the state out of a borrow (`*rx.borrow()`) rather
    /// than holding the borrow across an `.await`: a held borrow blocks the
    /// client's own state updates.
    pub fn watch_state(&self) -> watch::Receiver<ClientState> {
        self.shared.state.subscribe()
    }

    /// Waits until connected with the boot accepted.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], or [`Error::Stopped`].
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.shared.state.subscribe();
        let result = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| {
                matches!(
                    s,
                    ClientState::Connected(BootState::Accepted) | ClientState::Stopped
                )
            })
            .await
            .map(|s| *s)
        })
        .await;
        match result {
            Ok(Ok(ClientState::Stopped)) | Ok(Err(_)) => Err(Error::Stopped),
            Ok(Ok(_)) => Ok(()),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// The current connection's peer handle, if connected.
    pub fn peer(&self) -> Option<Peer> {
        self.shared
            .peer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Calls the CSMS now. Before the boot is accepted the call waits in the
    /// endpoint's queue; when disconnected it fails at once.
    ///
    /// # Errors
    ///
    /// [`CallFailure`], e.g. `NotConnected`.
    pub async fn call<A: Action + evproto_ocpp_types::FromChargingStation>(
        &self,
        req: &A::Request,
    ) -> Result<A::Response, CallFailure> {
        let peer = self.peer().ok_or(CallFailure::NotConnected)?;
        peer.call::<A>(req).await
    }

    /// Stores a transaction-related message durably; it is delivered in
    /// order with the others, now or after the next reconnect, retried up to
    /// [`ClientConfig::message_attempts`] times on timeouts.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store failed (the message is then not queued).
    pub async fn call_durable<A: Action + evproto_ocpp_types::FromChargingStation>(
        &self,
        req: &A::Request,
    ) -> Result<u64, Error> {
        let seq = self
            .shared
            .store
            .push(A::NAME, &evproto_ocpp_types::to_json(req))?;
        self.shared.queued.notify_one();
        Ok(seq)
    }

    /// Messages waiting in the offline queue.
    pub fn queued(&self) -> usize {
        self.shared.store.len()
    }

    /// Closes the connection and stops reconnecting.
    pub async fn shutdown(&self) {
        let _ = self.shared.state.send(ClientState::Stopped);
        self.shared.stop.notify_waiters();
        if let Some(p) = self.peer() {
            p.close("station shutting down").await;
        }
    }
}

fn stopped(shared: &Shared) -> bool {
    *shared.state.borrow() == ClientState::Stopped
}

fn set_state(shared: &Shared, s: ClientState) {
    shared.state.send_if_modified(|cur| {
        if *cur == ClientState::Stopped || *cur == s {
            false
        } else {
            *cur = s;
            true
        }
    });
}

async fn supervise(shared: Arc<Shared>) {
    let mut seed = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64))
        | 1;
    let mut attempt = 0u32;
    let mut ever_accepted = false;
    let mut heartbeat = shared.config.default_heartbeat;
    while !stopped(&shared) {
        match connect_and_run(&shared, &mut ever_accepted, &mut heartbeat).await {
            Ok(closed) => {
                info!(?closed, "disconnected");
                attempt = 0;
            }
            Err(e) => {
                warn!("connect failed: {e}");
                if let Some(hook) = &shared.config.on_connect_failure {
                    (hook.0)(&e);
                }
                *shared
                    .last_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
        *shared.peer.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if stopped(&shared) {
            break;
        }
        set_state(&shared, ClientState::Disconnected);
        let wait = shared.config.backoff.delay(attempt, random_unit(&mut seed));
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.stop.notified() => break,
        }
    }
}

async fn connect_and_run(
    shared: &Arc<Shared>,
    ever_accepted: &mut bool,
    heartbeat: &mut Duration,
) -> Result<Closed, ConnectFailure> {
    let cfg = &shared.config;
    let url = format!("{}{}", cfg.url, cfg.identity);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectFailure::BadUrl(e.to_string()))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(cfg.version.subprotocol()),
    );
    if let Some(pass) = &cfg.password {
        use base64::Engine as _;
        let mut raw = format!("{}:", cfg.identity).into_bytes();
        raw.extend_from_slice(pass);
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&value).map_err(|e| ConnectFailure::BadUrl(e.to_string()))?,
        );
    }
    let uri = request.uri().clone();
    let host = uri
        .host()
        .ok_or_else(|| ConnectFailure::BadUrl("no host".into()))?
        .trim_matches(['[', ']'])
        .to_owned();
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ConnectFailure::Unreachable(format!("{host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    if secure {
        let tls = cfg
            .tls
            .clone()
            .ok_or_else(|| ConnectFailure::Tls("wss:// needs ClientConfig::tls".into()))?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| ConnectFailure::BadUrl(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectFailure::Tls(e.to_string()))?;
        run_ws(shared, request, stream, ws_config, ever_accepted, heartbeat).await
    } else {
        run_ws(shared, request, tcp, ws_config, ever_accepted, heartbeat).await
    }
}

async fn run_ws<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: &Arc<Shared>,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    stream: S,
    ws_config: WebSocketConfig,
    ever_accepted: &mut bool,
    heartbeat: &mut Duration,
) -> Result<Closed, ConnectFailure> {
    if shared.config.permessage_deflate {
        let (ws, agreed) = deflate_handshake(shared, request, stream).await?;
        session(shared, ws, agreed.as_deref(), ever_accepted, heartbeat)
            .await
            .map_err(ConnectFailure::Handshake)
    } else {
        use tokio_tungstenite::tungstenite::Error as WsError;
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config))
                .await
                .map_err(|e| match e {
                    WsError::Http(r) => ConnectFailure::Http(r.status().as_u16()),
                    e => ConnectFailure::Handshake(e.to_string()),
                })?;
        let agreed = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        session(shared, ws, agreed.as_deref(), ever_accepted, heartbeat)
            .await
            .map_err(ConnectFailure::Handshake)
    }
}

/// The WebSocket upgrade done with hyper, offering permessage-deflate, then
/// the connection handed to yawc with whatever extension the CSMS accepted.
async fn deflate_handshake<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: &Shared,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    stream: S,
) -> Result<
    (
        yawc::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
        Option<String>,
    ),
    ConnectFailure,
> {
    use tokio_tungstenite::tungstenite::handshake::client::generate_key;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| ConnectFailure::Handshake(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    let key = generate_key();
    let uri = request.uri();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let host = match uri.port_u16() {
        Some(p) => format!("{}:{p}", uri.host().unwrap_or_default()),
        None => uri.host().unwrap_or_default().to_owned(),
    };
    let mut builder = hyper::Request::get(path)
        .header("Host", host)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", key.as_str())
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        );
    // Our own headers (subprotocol, authorization); the handshake ones are set above.
    const HANDSHAKE: [&str; 6] = [
        "host",
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    ];
    for (name, value) in request.headers() {
        if !HANDSHAKE.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let req = builder
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| ConnectFailure::BadUrl(e.to_string()))?;
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| ConnectFailure::Handshake(e.to_string()))?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(ConnectFailure::Http(resp.status().as_u16()));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if header("Sec-WebSocket-Accept").as_deref() != Some(derive_accept_key(key.as_bytes()).as_str())
    {
        return Err(ConnectFailure::Handshake("bad Sec-WebSocket-Accept".into()));
    }
    let agreed = header("Sec-WebSocket-Protocol");
    let extensions = header("Sec-WebSocket-Extensions");
    let upgraded = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| ConnectFailure::Handshake(e.to_string()))?;
    let options = yawc::Options::default()
        .with_balanced_compression()
        .with_max_payload_read(shared.config.endpoint.max_message_size)
        .with_max_read_buffer(shared.config.endpoint.max_message_size)
        .with_read_buffer_capacity(4096)
        .with_write_buffer_capacity(1024)
        // used only when the CSMS imposes no context takeover (ocpp-server
        // does by default): zlib state is then borrowed per message, which
        // matters for processes running many stations (simulators)
        .with_deflate_pool(deflate_pool())
        .with_utf8();
    let ws = yawc::WebSocket::from_stream_with_extensions(
        hyper_util::rt::TokioIo::new(upgraded),
        yawc::Role::Client,
        extensions.as_deref(),
        options,
    )
    .map_err(|e| ConnectFailure::Handshake(e.to_string()))?;
    Ok((ws, agreed))
}

/// One pool of zlib states for every client in the process.
fn deflate_pool() -> yawc::DeflatePool {
    static POOL: std::sync::OnceLock<yawc::DeflatePool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| yawc::DeflatePool::new(32)).clone()
}

async fn session<T: evproto_ocpp_rpc::Transport>(
    shared: &Arc<Shared>,
    ws: T,
    agreed: Option<&str>,
    ever_accepted: &mut bool,
    heartbeat: &mut Duration,
) -> Result<Closed, String> {
    let cfg = &shared.config;
    if agreed != Some(cfg.version.subprotocol()) {
        return Err(format!(
            "CSMS did not agree to {} (answered {agreed:?})",
            cfg.version.subprotocol()
        ));
    }
    let mut endpoint = Endpoint::new(Role::ChargingStation, cfg.version, cfg.endpoint.clone());
    let skip_boot = *ever_accepted && !cfg.boot_on_reconnect;
    if skip_boot {
        // 2.0.1 B01: no new BootNotification after a mere reconnect.
        endpoint.set_boot_state(std::time::Instant::now(), BootState::Accepted);
    }
    let conn = Connection::new(
        ws,
        endpoint,
        shared.routes.clone(),
        Arc::from(cfg.identity.as_str()),
        cfg.connection.clone(),
    );
    let peer = conn.peer();
    *shared.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer.clone());
    info!("connected");
    *shared
        .last_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = None;
    let mut run = tokio::spawn(conn.run());
    let session = async {
        if skip_boot {
            set_state(shared, ClientState::Connected(BootState::Accepted));
        } else {
            set_state(shared, ClientState::Connected(BootState::NotBooted));
            boot_loop(shared, &peer, heartbeat).await?;
            *ever_accepted = true;
        }
        shared.queued.notify_one();
        loop {
            tokio::time::sleep(*heartbeat).await;
            match peer.call_raw("Heartbeat", "{}".to_owned()).await {
                Ok(_) | Err(CallFailure::CallError(_)) | Err(CallFailure::Timeout) => {}
                Err(e) => return Err(e),
            }
        }
    };
    tokio::select! {
        closed = &mut run => closed.map_err(|e| e.to_string()),
        r = session => {
            // the session only ends when the connection is gone
            let _: Result<(), CallFailure> = r;
            run.await.map_err(|e| e.to_string())
        }
    }
}

/// BootNotification until Accepted; Pending/Rejected wait the returned interval.
async fn boot_loop(
    shared: &Shared,
    peer: &Peer,
    heartbeat: &mut Duration,
) -> Result<(), CallFailure> {
    loop {
        let answer = peer
            .call_raw("BootNotification", shared.boot_payload.clone())
            .await;
        let (status, interval) = match &answer {
            Ok(text) => {
                let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
                let status = v
                    .get("status")
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_owned();
                let interval = v.get("interval").and_then(|i| i.as_u64()).unwrap_or(0);
                (status, interval)
            }
            Err(e @ (CallFailure::NotConnected | CallFailure::ConnectionLost)) => {
                return Err(e.clone())
            }
            Err(e) => {
                warn!("BootNotification failed: {e}");
                (String::new(), 0)
            }
        };
        match status.as_str() {
            "Accepted" => {
                if interval > 0 {
                    *heartbeat = Duration::from_secs(interval);
                }
                set_state(shared, ClientState::Connected(BootState::Accepted));
                info!("boot accepted, heartbeat every {heartbeat:?}");
                return Ok(());
            }
            "Pending" => set_state(shared, ClientState::Connected(BootState::Pending)),
            "Rejected" => set_state(shared, ClientState::Connected(BootState::Rejected)),
            _ => {}
        }
        // 1.6 §4.2 / 2.0.1 B02, B03: retry after the interval (10 s when none given).
        let wait = if interval > 0 {
            Duration::from_secs(interval)
        } else {
            Duration::from_secs(10)
        };
        tokio::time::sleep(wait).await;
    }
}

/// Delivers the offline queue in order whenever the boot is accepted.
async fn replay(shared: Arc<Shared>) {
    let mut state = shared.state.subscribe();
    loop {
        if stopped(&shared) {
            return;
        }
        let ready = *state.borrow() == ClientState::Connected(BootState::Accepted);
        let front = if ready {
            shared.store.front()
        } else {
            Ok(None)
        };
        let msg = match front {
            Ok(Some(m)) => m,
            Ok(None) => {
                tokio::select! {
                    () = shared.queued.notified() => {}
                    r = state.changed() => if r.is_err() { return },
                }
                continue;
            }
            Err(e) => {
                warn!("offline store: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(peer) = shared
            .peer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            let _ = state.changed().await;
            continue;
        };
        let mut attempts = 0;
        loop {
            match peer.call_raw(&msg.action, msg.payload.clone()).await {
                Ok(_) => break,
                // Gone with the connection (maybe after the CSMS took it):
                // kept, and sent again on the next one.
                Err(CallFailure::NotConnected | CallFailure::ConnectionLost) => break,
                // A CALLERROR is the CSMS failing to process the message
                // (its store down, say), not a verdict on it: retried like a
                // lost answer, then skipped after the configured attempts
                // (OCPP 1.6 §4.10 "Error responses to transaction-related
                // messages", 2.0.1 E04/E08 `MessageAttemptsTransactionEvent`).
                Err(e) => {
                    attempts += 1;
                    if attempts >= shared.config.message_attempts {
                        warn!(seq = msg.seq, action = %msg.action, "queued message dropped after {attempts} attempts: {e}");
                        break;
                    }
                    tokio::time::sleep(shared.config.message_retry_interval * attempts).await;
                }
            }
        }
        if peer.is_connected() {
            if let Err(e) = shared.store.remove(msg.seq) {
                warn!("offline store: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_repeat_times() {
        let b = Backoff {
            wait_minimum: Duration::from_secs(3),
            random_range: Duration::from_secs(2),
            repeat_times: 2,
        };
        assert_eq!(b.delay(0, 0.0), Duration::from_secs(3));
        assert_eq!(b.delay(0, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(6));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(12));
        assert_eq!(b.delay(9, 0.0), Duration::from_secs(12));
    }

    #[test]
    fn jitter_is_in_range() {
        let mut seed = 12345;
        for _ in 0..1000 {
            let r = random_unit(&mut seed);
            assert!((0.0..1.0).contains(&r));
        }
    }
}
