//! The charger's shell: one [`Secc`] per TCP connection.

use std::future::pending;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::connection::Framed;
use super::{now, Error, Pending, SessionReport, ShellConfig};
use crate::session::{
    Authorization, CertificateInstallation, CertificateUpdate, ContractStatus, Effect, EvseRequest,
    EvseStatus, Iso20CertificateInstallation, ScheduleTuple, Secc, SeccConfig,
};
use crate::v2gtp::PayloadType;

/// What the SECC's shell asks the charger's hardware and backend.
///
/// The shell calls [`Evse::status`] before every input it gives the
/// machine (a message, a timeout), so the machine answers from current
/// values; [`Evse::request`] for every [`EvseRequest`] the machine makes.
/// Decisions that take time ([`EvseRequest::Authorize`],
/// [`EvseRequest::Schedules`]) are answered with a future
/// ([`EvseAnswer`]); the SECC answers `EVSEProcessing=Ongoing` until it
/// resolves.
pub trait Evse: Send {
    /// The EVSE's measurements and limits at `now`.
    fn status(&mut self, now: Instant) -> EvseStatus;
    /// The machine asks; decisions come back as an [`EvseAnswer`].
    fn request(&mut self, now: Instant, request: &EvseRequest) -> EvseAnswer;
    /// Whether the EVSE wants the EV to renegotiate now (new schedules, a
    /// new limit): the shell then calls [`Secc::request_renegotiation`]
    /// (asked with every [`Evse::status`]; none by default).
    fn wants_renegotiation(&mut self, _now: Instant) -> bool {
        false
    }
}

impl<T: Evse + ?Sized> Evse for &mut T {
    fn status(&mut self, now: Instant) -> EvseStatus {
        (**self).status(now)
    }
    fn request(&mut self, now: Instant, request: &EvseRequest) -> EvseAnswer {
        (**self).request(now, request)
    }
    fn wants_renegotiation(&mut self, now: Instant) -> bool {
        (**self).wants_renegotiation(now)
    }
}

/// The EVSE's current values into the machine, and its wish to renegotiate.
fn refresh<E: Evse>(secc: &mut Secc, evse: &mut E, t: Instant) {
    secc.set_evse(evse.status(t));
    if evse.wants_renegotiation(t) {
        secc.request_renegotiation();
    }
}

/// The answer to an [`EvseRequest`].
#[non_exhaustive]
pub enum EvseAnswer {
    /// Nothing to answer (targets, contactors, the cable check: their
    /// results show in the next [`Evse::status`]).
    Done,
    /// The authorization decision, when it is taken.
    Authorization(Pending<Authorization>),
    /// The SA schedules, when they are known (empty: one tuple of the
    /// EVSE's maximum power).
    Schedules(Pending<Vec<ScheduleTuple>>),
    /// Plug & Charge: the backend's verdict on a contract.
    ContractStatus(Pending<ContractStatus>),
    /// Plug & Charge: the CertificateInstallationRes (`None`: no contract).
    CertificateInstallation(Pending<Option<CertificateInstallation>>),
    /// Plug & Charge: the CertificateUpdateRes (`None`: no new contract).
    CertificateUpdate(Pending<Option<CertificateUpdate>>),
    /// Plug & Charge, ISO 15118-20: the CertificateInstallationRes
    /// (`None`: no contract).
    Iso20CertificateInstallation(Pending<Option<Iso20CertificateInstallation>>),
}

impl std::fmt::Debug for EvseAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvseAnswer::Done => "Done",
            EvseAnswer::Authorization(_) => "Authorization(..)",
            EvseAnswer::Schedules(_) => "Schedules(..)",
            EvseAnswer::ContractStatus(_) => "ContractStatus(..)",
            EvseAnswer::CertificateInstallation(_) => "CertificateInstallation(..)",
            EvseAnswer::CertificateUpdate(_) => "CertificateUpdate(..)",
            EvseAnswer::Iso20CertificateInstallation(_) => "Iso20CertificateInstallation(..)",
        })
    }
}

impl EvseAnswer {
    /// An authorization decided now.
    pub fn authorization(a: Authorization) -> Self {
        EvseAnswer::Authorization(Box::pin(std::future::ready(a)))
    }
    /// Schedules known now.
    pub fn schedules(s: Vec<ScheduleTuple>) -> Self {
        EvseAnswer::Schedules(Box::pin(std::future::ready(s)))
    }
}

async fn maybe<T>(p: &mut Option<Pending<T>>) -> T {
    match p {
        Some(f) => f.await,
        None => pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => pending().await,
    }
}

/// How long the SECC waits, after its last message, for the EV to close.
const LINGER: Duration = Duration::from_secs(1);

/// Runs one SECC session on a connected stream (a TCP connection the
/// charger accepted): the SupportedAppProtocol handshake, then the chosen
/// protocol's machine, until it ends or the connection fails. Writes the
/// machine's answers, honours its deadlines, asks `evse`.
///
/// Returns the session's report; its [`SessionReport::end`] is `Err` when
/// the connection failed first (framing, a payload type other than EXI,
/// a read or write deadline, the peer closing).
pub async fn serve_connection<S, E>(
    stream: S,
    config: SeccConfig,
    mut evse: E,
    shell: &ShellConfig,
) -> SessionReport
where
    S: AsyncRead + AsyncWrite + Unpin,
    E: Evse,
{
    let mut io = Framed::new(stream, shell);
    let start = now();
    let mut config = config;
    if config.unix_time == 0 {
        config.unix_time = super::unix_time();
    }
    let mut secc = Secc::new(config, start);
    secc.set_evse(evse.status(start));
    let mut auth: Option<Pending<Authorization>> = None;
    let mut schedules: Option<Pending<Vec<ScheduleTuple>>> = None;
    let mut contract: Option<Pending<ContractStatus>> = None;
    let mut install: Option<Pending<Option<CertificateInstallation>>> = None;
    let mut update: Option<Pending<Option<CertificateUpdate>>> = None;
    let mut install20: Option<Pending<Option<Iso20CertificateInstallation>>> = None;
    let end = 'session: loop {
        while let Some(effect) = secc.poll_effect() {
            match effect {
                Effect::Transmit(bytes) => {
                    if let Err(e) = io.write(PayloadType::EXI, &bytes).await {
                        break 'session Err(e);
                    }
                }
                Effect::TransmitAs(payload_type, bytes) => {
                    if let Err(e) = io.write(payload_type, &bytes).await {
                        break 'session Err(e);
                    }
                }
                Effect::SessionEnded { reason } => break 'session Ok(reason),
                Effect::Evse(request) => match evse.request(now(), &request) {
                    EvseAnswer::Done => {}
                    EvseAnswer::Authorization(f) => auth = Some(f),
                    EvseAnswer::Schedules(f) => schedules = Some(f),
                    EvseAnswer::ContractStatus(f) => contract = Some(f),
                    EvseAnswer::CertificateInstallation(f) => install = Some(f),
                    EvseAnswer::CertificateUpdate(f) => update = Some(f),
                    EvseAnswer::Iso20CertificateInstallation(f) => install20 = Some(f),
                },
                _ => {}
            }
        }
        tokio::select! {
            read = io.read() => match read {
                Ok((payload_type, exi)) => {
                    let t = now();
                    refresh(&mut secc, &mut evse, t);
                    secc.handle_packet(t, payload_type, &exi);
                }
                Err(e) => break 'session Err(e),
            },
            () = sleep_until(secc.poll_timeout()) => {
                let t = now();
                refresh(&mut secc, &mut evse, t);
                secc.handle_timeout(t);
            }
            decision = maybe(&mut auth) => {
                auth = None;
                let t = now();
                refresh(&mut secc, &mut evse, t);
                secc.handle_authorization(t, decision);
            }
            s = maybe(&mut schedules) => {
                schedules = None;
                let t = now();
                refresh(&mut secc, &mut evse, t);
                secc.handle_schedules(t, s);
            }
            c = maybe(&mut contract) => {
                contract = None;
                let t = now();
                refresh(&mut secc, &mut evse, t);
                secc.handle_contract_status(t, c);
            }
            i = maybe(&mut install) => {
                install = None;
                let t = now();
                refresh(&mut secc, &mut evse, t);
                secc.handle_certificate_installation(t, i);
            }
            u = maybe(&mut update) => {
                update = None;
                let t = now();
                refresh(&mut secc, &mut evse, t);
                secc.handle_certificate_update(t, u);
            }
            i = maybe(&mut install20) => {
                install20 = None;
                let t = now();
                refresh(&mut secc, &mut evse, t);
                secc.handle_iso20_certificate_installation(t, i);
            }
        }
    };
    let report = SessionReport {
        protocol: secc.protocol(),
        energy_mode: secc.iso2().and_then(|m| m.energy_mode()),
        session_id: secc.session_id().map(<[u8]>::to_vec),
        energy_wh: secc.energy_wh(),
        discharged_wh: secc.discharged_wh(),
        bpt: secc.is_bpt(),
        charge_loops: 0,
        messages_sent: io.sent,
        messages_received: io.received,
        end,
        contract: None,
        emaid: secc.contract_emaid().map(str::to_owned),
        vas: secc.selected_vas().to_vec(),
        service_renegotiations: secc.iso20().map_or(0, |m| m.service_renegotiations()),
        #[cfg(any(feature = "tls", feature = "tls-openssl"))]
        tls: None,
    };
    if report.end.is_ok() {
        io.close(LINGER).await;
    }
    report
}

/// What an [`SeccServer`] does with each connection.
pub trait SeccService: Send + Sync + 'static {
    /// The EVSE a session talks to.
    type Evse: Evse + 'static;
    /// A connection from `peer` was accepted: the session's configuration
    /// (a fresh session id each time) and its EVSE.
    fn accept(&self, peer: SocketAddr) -> (SeccConfig, Self::Evse);
    /// A connection from `peer` completed its TLS handshake
    /// ([`SeccServer::with_tls`]): the session's configuration and EVSE.
    /// By default the same as [`SeccService::accept`]; a service that
    /// offers Plug & Charge [V2G2-634] or ISO 15118-20 only over TLS
    /// decides here, knowing the version (-20 needs TLS 1.3).
    #[cfg(any(feature = "tls", feature = "tls-openssl"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "tls-openssl"))))]
    fn accept_tls(&self, peer: SocketAddr, tls: &super::tls::TlsInfo) -> (SeccConfig, Self::Evse) {
        let _ = tls;
        self.accept(peer)
    }
    /// A session ended (called on the session's task).
    fn finished(&self, peer: SocketAddr, report: SessionReport) {
        let _ = (peer, report);
    }
}

/// The ports an SECC listens on when the port is left to it: the dynamic
/// ports of IETF RFC 6335, the range ISO 15118-2 and DIN SPEC 70121 give
/// for the SECC port of the SDP response.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Binds `addr`'s IP on a free port of [`DYNAMIC_PORTS`], starting at a
/// port drawn from std's randomly keyed hasher and trying the next one
/// while the port is in use.
async fn bind_dynamic(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use std::hash::{BuildHasher, Hasher};
    let (first, last) = (*DYNAMIC_PORTS.start(), *DYNAMIC_PORTS.end());
    let count = u32::from(last - first) + 1;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let start = (h.finish() % u64::from(count)) as u32;
    let mut last_err = None;
    for i in 0..count {
        let port = first + ((start + i) % count) as u16;
        let mut a = addr;
        a.set_port(port);
        match TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()))
}

/// A TCP server of SECC sessions: each accepted connection runs
/// [`serve_connection`] on its own task.
#[derive(Debug)]
pub struct SeccServer {
    listener: TcpListener,
    shell: ShellConfig,
    #[cfg(any(feature = "tls", feature = "tls-openssl"))]
    tls: Option<Arc<super::tls::SeccTls>>,
}

impl SeccServer {
    /// Listens on `addr` (IPv4 or IPv6). Port 0 picks a free port in
    /// [`DYNAMIC_PORTS`] (not the OS's ephemeral range, which on Linux
    /// starts at 32768): the port is announced by SDP, and EVs check it
    /// (Josev drops an SDP response whose port is below 49152).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the bind fails (or every dynamic port is taken).
    pub async fn bind(addr: SocketAddr, shell: ShellConfig) -> Result<Self, Error> {
        let listener = if addr.port() == 0 {
            bind_dynamic(addr).await
        } else {
            TcpListener::bind(addr).await
        }
        .map_err(|e| Error::io(format!("bind TCP {addr}"), e))?;
        Ok(Self::from_listener(listener, shell))
    }

    /// A server on a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener, shell: ShellConfig) -> Self {
        Self {
            listener,
            shell,
            #[cfg(any(feature = "tls", feature = "tls-openssl"))]
            tls: None,
        }
    }

    /// Every connection runs the TLS handshake first (within
    /// [`ShellConfig::handshake_timeout`]), then its session with the
    /// configuration of [`SeccService::accept_tls`]. A handshake that fails
    /// is reported to [`SeccService::finished`] as a session that ended
    /// with [`Error::Tls`] and its reason.
    #[cfg(any(feature = "tls", feature = "tls-openssl"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "tls-openssl"))))]
    pub fn with_tls(mut self, tls: super::tls::SeccTls) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from the OS.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("local address", e))
    }

    /// Accepts connections until dropped, each session on its own task.
    /// Accept errors (too many open files, a connection reset before it
    /// was accepted) are skipped after a short pause: one bad peer never
    /// stops the server.
    pub async fn serve<S: SeccService>(self, service: Arc<S>) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let service = Arc::clone(&service);
            let shell = self.shell;
            #[cfg(any(feature = "tls", feature = "tls-openssl"))]
            if let Some(tls) = &self.tls {
                let tls = Arc::clone(tls);
                tokio::spawn(async move {
                    let report = match tls.accept(stream, shell.handshake_timeout).await {
                        Ok((stream, info)) => {
                            let (config, evse) = service.accept_tls(peer, &info);
                            let mut report = serve_connection(stream, config, evse, &shell).await;
                            report.tls = Some(info);
                            report
                        }
                        Err(e) => SessionReport::failed(e),
                    };
                    service.finished(peer, report);
                });
                continue;
            }
            tokio::spawn(async move {
                let (config, evse) = service.accept(peer);
                let report = serve_connection(stream, config, evse, &shell).await;
                service.finished(peer, report);
            });
        }
    }
}
