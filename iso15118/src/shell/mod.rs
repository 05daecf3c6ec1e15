//! tokio shells around the sans-IO [`session`](crate::session) machines
//! (feature `tokio`): SDP over UDP, V2GTP over TCP, a charger (SECC) and a
//! car (EVCC) you can run.
//!
//! The shells decide nothing: every byte read goes to the machine, every
//! [`Effect`](crate::session::Effect) it gives is carried out, and every
//! deadline it reports ([`Secc::poll_timeout`](crate::session::Secc::poll_timeout))
//! becomes a [`tokio::time::sleep_until`] followed by `handle_timeout`.
//! What a shell adds is what sockets need: bounds on what a peer may send
//! ([`ShellConfig`]: payload length, read and write timeouts) and a typed
//! [`Error`] for each way a connection fails. Nothing here panics on what a
//! peer sends, and nothing waits without a deadline.
//!
//! - [`discovery`]: the SECC Discovery Protocol (ISO 15118-2 §7.10.1):
//!   [`SdpServer`] (UDP port 15118, joined to `ff02::1` on an [`Interface`])
//!   and [`discover`] (the EV's request, repeated every 250 ms up to 50
//!   times);
//! - [`serve_connection`] runs one SECC session on a connected stream;
//!   [`SeccServer`] accepts TCP connections (any `SocketAddr`,
//!   IPv4 or IPv6) and serves each on its own task;
//! - [`run_evcc`] runs one EVCC session on a connected stream, [`connect`]
//!   opens it with a deadline;
//! - [`Evse`] and [`Ev`]: what the shells ask the charger's and the car's
//!   hardware; [`SimEvse`] and [`SimEv`] simulate both simply (present
//!   values follow targets, a meter integrates power over time).
//!
//! - [`tls`] (features `tls` and `tls-openssl`): ISO 15118-20's TLS 1.3
//!   with mutual authentication (rustls) and ISO 15118-2's TLS 1.2 suite
//!   (OpenSSL) on one TLS port ([`SeccServer::with_tls`]); the SDP server
//!   announces it (security `0x00`) to an EV that asks for TLS
//!   ([`SdpServerConfig::with_tls_port`]), and the EV asks for it
//!   ([`SdpClientConfig::with_security`]).
//!
//! # Example
//!
//! A charger on port 50000 of every address, and a car charging 50 Wh from
//! it over DIN 70121:
//!
//! ```no_run
//! use std::sync::Arc;
//! use evproto_iso15118::session::{EvccConfig, SeccConfig};
//! use evproto_iso15118::shell::{self, SeccServer, SeccService, ShellConfig, SimEv, SimEvse};
//!
//! struct Charger;
//! impl SeccService for Charger {
//!     type Evse = SimEvse;
//!     fn accept(&self, _peer: std::net::SocketAddr) -> (SeccConfig, SimEvse) {
//!         (SeccConfig::new(vec![0x1d, 0xc9, 0x83, 0xcd, 0x60, 0, 0, 1]), SimEvse::default())
//!     }
//! }
//!
//! # async fn run() -> Result<(), shell::Error> {
//! let server = SeccServer::bind("[::]:50000".parse().unwrap(), ShellConfig::default()).await?;
//! tokio::spawn(server.serve(Arc::new(Charger)));
//!
//! let stream = shell::connect("[::1]:50000".parse().unwrap(), ShellConfig::default().connect_timeout).await?;
//! let config = EvccConfig::din_dc(vec![0x02, 0, 0, 0, 0, 1]);
//! let report = shell::run_evcc(stream, config, SimEv::new(50.0), &ShellConfig::default()).await;
//! assert!(report.is_ok(), "{:?}", report.end);
//! println!("{} Wh in {} messages", report.energy_wh, report.messages());
//! # Ok(())
//! # }
//! ```
//!
//! # Cancel safety
//!
//! Dropping the future of [`serve_connection`] or [`run_evcc`] drops the
//! session: the machine, its pending decisions and the stream (the peer
//! sees the connection close). [`SeccServer::serve`] and
//! [`SdpServer::run`] run until dropped; dropping them stops accepting
//! (sessions already spawned run on to their end).

mod connection;
pub mod discovery;
mod evcc;
mod interface;
mod secc;
mod sim;
#[cfg(any(feature = "tls", feature = "tls-openssl"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "tls-openssl"))))]
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use crate::session::{EndReason, EnergyMode, Protocol};
use crate::v2gtp::{self, PayloadType};

pub use connection::connect;
pub use discovery::{discover, SdpClientConfig, SdpServer, SdpServerConfig};
pub use evcc::{run_evcc, Ev, Progress};
pub use interface::Interface;
pub use secc::{serve_connection, Evse, EvseAnswer, SeccServer, SeccService, DYNAMIC_PORTS};
pub use sim::{SimEv, SimEvse};

/// A decision that takes time (an authorization by a backend): a boxed
/// future the shell polls while the session goes on.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The bounds of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShellConfig {
    /// Longest V2GTP payload accepted (default 64 KiB: a -2 message with a
    /// certificate chain is a few KiB). A longer header is refused before
    /// anything is allocated for it.
    pub max_payload: usize,
    /// A message whose first bytes arrived must be complete within this
    /// (default 5 s).
    pub frame_timeout: Duration,
    /// Longest silence of the peer, whatever the machine's timers say
    /// (default 90 s, longer than the 60 s of `V2G_SECC_Sequence_Timeout`:
    /// the machine's timers normally come first).
    pub idle_timeout: Duration,
    /// Longest time one message may take to write (default 5 s).
    pub write_timeout: Duration,
    /// Longest time a TCP connect may take ([`connect`], default 5 s).
    pub connect_timeout: Duration,
    /// Longest time a TLS handshake may take (default 10 s).
    pub handshake_timeout: Duration,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            max_payload: 64 * 1024,
            frame_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ShellConfig {
    /// Sets [`ShellConfig::max_payload`].
    pub fn with_max_payload(mut self, n: usize) -> Self {
        self.max_payload = n;
        self
    }
    /// Sets [`ShellConfig::frame_timeout`].
    pub fn with_frame_timeout(mut self, d: Duration) -> Self {
        self.frame_timeout = d;
        self
    }
    /// Sets [`ShellConfig::idle_timeout`].
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
    /// Sets [`ShellConfig::write_timeout`].
    pub fn with_write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }
    /// Sets [`ShellConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`ShellConfig::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
}

/// A failure of a shell: the socket, the peer's framing, a deadline, the
/// discovery. A session that the machine ended (even on a `FAILED` code)
/// is not an error: see [`SessionReport::end`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done (`"read"`, `"bind [::]:15118"`...).
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The peer's V2GTP header is wrong (version bytes, a payload over
    /// [`ShellConfig::max_payload`]): the stream is out of sync and closed.
    #[error("V2GTP framing: {0}")]
    Framing(#[from] v2gtp::Error),
    /// A V2GTP message of a payload type the session does not take (DIN and
    /// -2 use `0x8001` only).
    #[error("unexpected V2GTP payload type {0:?}")]
    UnexpectedPayloadType(PayloadType),
    /// The peer sent nothing for [`ShellConfig::idle_timeout`], or did not
    /// complete a message within [`ShellConfig::frame_timeout`].
    #[error("read timeout: {0}")]
    ReadTimeout(&'static str),
    /// A message could not be written within [`ShellConfig::write_timeout`].
    #[error("write timeout after {0:?}")]
    WriteTimeout(Duration),
    /// The TCP connect did not complete within its deadline.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// The peer closed the connection before the session ended.
    #[error("the peer closed the connection before the session ended")]
    Closed,
    /// No SECC answered the SDP requests.
    #[error("no SDP response after {0} requests")]
    NoSdpResponse(u32),
    /// The SECC offers only what this shell cannot do (TLS, UDP).
    #[error("the SECC offers {0}, which this shell does not support")]
    SdpUnsupported(&'static str),
    /// The EV asked for TLS and the SECC answered without it.
    #[error("the SECC answered the request for TLS without TLS")]
    SdpDowngraded,
    /// The TLS handshake failed: a certificate refused (by either side),
    /// no common version or cipher suite, not TLS, or no end in time
    /// ([`ShellConfig::handshake_timeout`]).
    #[error("TLS handshake: {0}")]
    Tls(String),
    /// A TLS configuration that cannot be used (a key that does not fit
    /// its certificate, a version not configured).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// A network interface that cannot be used (unknown name, no
    /// link-local address, not supported on this OS).
    #[error("network interface {name:?}: {reason}")]
    Interface {
        /// The name asked for.
        name: String,
        /// Why.
        reason: String,
    },
    /// An address the operation cannot use (SDP is IPv6 only).
    #[error("address {addr}: {reason}")]
    Address {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }

    /// Whether the peer is to blame (bad framing, a payload type it may not
    /// send, silence, closing early), not this side or the network.
    pub fn is_peer_error(&self) -> bool {
        matches!(
            self,
            Error::Framing(_)
                | Error::UnexpectedPayloadType(_)
                | Error::ReadTimeout(_)
                | Error::Closed
        )
    }

    /// Whether a TLS handshake failed.
    pub fn is_tls(&self) -> bool {
        matches!(self, Error::Tls(_) | Error::TlsSetup(_))
    }

    /// Whether a deadline of the shell ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::ReadTimeout(_) | Error::WriteTimeout(_) | Error::ConnectTimeout(_)
        )
    }
}

impl SessionReport {
    /// The report of a connection that failed before any session began
    /// (a TLS handshake).
    pub(crate) fn failed(end: Error) -> Self {
        Self {
            protocol: None,
            energy_mode: None,
            session_id: None,
            energy_wh: 0.0,
            discharged_wh: 0.0,
            bpt: false,
            charge_loops: 0,
            messages_sent: 0,
            messages_received: 0,
            end: Err(end),
            contract: None,
            emaid: None,
            vas: Vec::new(),
            service_renegotiations: 0,
            #[cfg(any(feature = "tls", feature = "tls-openssl"))]
            tls: None,
        }
    }
}

/// How an EVCC received a contract ([`SessionReport::contract`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractChange {
    /// CertificateInstallation: the car had none.
    Installed,
    /// CertificateUpdate: it replaced the car's contract.
    Renewed,
}

/// How one session went, from either side.
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionReport {
    /// The protocol the handshake chose, if it got that far.
    pub protocol: Option<Protocol>,
    /// The energy transfer mode, when known (-2: after
    /// ChargeParameterDiscovery on the SECC, the configured one on the
    /// EVCC; DIN is always DC and reports `None` on the SECC).
    pub energy_mode: Option<EnergyMode>,
    /// The session id, once SessionSetup was done.
    pub session_id: Option<Vec<u8>>,
    /// Energy transferred (Wh) as the machine counted it (DC: present
    /// voltage × current over time; -2 AC: the meter's increase).
    pub energy_wh: f64,
    /// Energy given back by the car (Wh; ISO 15118-20 BPT), counted the
    /// same way.
    pub discharged_wh: f64,
    /// The session ran an ISO 15118-20 bidirectional service (DC_BPT, AC_BPT).
    pub bpt: bool,
    /// Charge-loop messages (CurrentDemand / ChargingStatus) answered.
    pub charge_loops: u32,
    /// V2GTP messages written.
    pub messages_sent: u32,
    /// V2GTP messages read.
    pub messages_received: u32,
    /// How it ended: `Ok` with the machine's reason, or the shell's error
    /// (the connection failed before the machine ended the session).
    pub end: Result<EndReason, Error>,
    /// EVCC, ISO 15118-2 Plug & Charge: the contract the car received in
    /// this session, and whether it renewed one (CertificateUpdate) rather
    /// than installing a first one (CertificateInstallation).
    pub contract: Option<(crate::session::Contract, ContractChange)>,
    /// Plug & Charge: the eMAID of the contract that authorized the
    /// session (-2 and -20; SECC: the one it verified, EVCC: the one it
    /// signed with); `None` for EIM.
    pub emaid: Option<String>,
    /// ISO 15118-20: the value-added services the car selected,
    /// `(ServiceID, ParameterSetID)`.
    pub vas: Vec<(u16, u16)>,
    /// ISO 15118-20: service renegotiations the session went through
    /// (SessionStop(ServiceRenegotiation), then ServiceDiscovery again).
    pub service_renegotiations: u32,
    /// The TLS handshake the session ran over, when [`SeccServer`] did
    /// it ([`SeccServer::with_tls`]).
    #[cfg(any(feature = "tls", feature = "tls-openssl"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "tls-openssl"))))]
    pub tls: Option<tls::TlsInfo>,
}

impl SessionReport {
    /// Whether the session ran to its normal end (SessionStop answered OK,
    /// or a pause).
    pub fn is_ok(&self) -> bool {
        matches!(
            self.end,
            Ok(EndReason::Finished) | Ok(EndReason::Paused { .. })
        )
    }

    /// Messages both ways.
    pub fn messages(&self) -> u32 {
        self.messages_sent + self.messages_received
    }

    /// The response code the session failed with, if a `FAILED*` code
    /// ended it (`"FAILED_SequenceError"`, `"Failed_NoNegotiation"`...).
    pub fn response_code(&self) -> Option<String> {
        match &self.end {
            Ok(EndReason::Failed { response_code }) => Some(response_code.clone()),
            Ok(EndReason::NoNegotiation) => Some("Failed_NoNegotiation".into()),
            Ok(EndReason::SequenceError) => Some("FAILED_SequenceError".into()),
            Ok(EndReason::UnknownSession) => Some("FAILED_UnknownSession".into()),
            Ok(EndReason::EmergencyStop)
            | Ok(EndReason::IsolationFault)
            | Ok(EndReason::AuthorizationRejected) => Some("FAILED".into()),
            _ => None,
        }
    }
}

/// The name of a session's end for reports: `finished`, `timeout`,
/// `io`... (stable, lower case).
pub fn end_kind(end: &Result<EndReason, Error>) -> &'static str {
    match end {
        Ok(EndReason::Finished) => "finished",
        Ok(EndReason::Paused { .. }) => "paused",
        Ok(EndReason::NoNegotiation) => "no_negotiation",
        Ok(EndReason::SequenceError) => "sequence_error",
        Ok(EndReason::UnknownSession) => "unknown_session",
        Ok(EndReason::Timeout(_)) => "timeout",
        Ok(EndReason::EmergencyStop) => "emergency_stop",
        Ok(EndReason::IsolationFault) => "isolation_fault",
        Ok(EndReason::AuthorizationRejected) => "authorization_rejected",
        Ok(EndReason::Failed { .. }) => "failed",
        Ok(EndReason::Malformed(_)) => "malformed",
        Err(e) if e.is_timeout() => "shell_timeout",
        Err(Error::Closed) => "closed",
        Err(Error::Framing(_)) | Err(Error::UnexpectedPayloadType(_)) => "framing",
        Err(e) if e.is_tls() => "tls",
        Err(_) => "io",
    }
}

/// The current instant on tokio's clock, as the machines take it.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Unix time in seconds now, for the ISO 15118-20 header TimeStamps the
/// machines count on from ([`crate::session::SeccConfig::unix_time`]).
pub(crate) fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
