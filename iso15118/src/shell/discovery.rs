//! The SECC Discovery Protocol over UDP (ISO 15118-2:2014 §7.10.1, DIN
//! SPEC 70121 §8.7.3): the EV multicasts a request to `ff02::1` port
//! 15118 on its link to the charger; the SECC answers, unicast, with the
//! address and port of its TCP server.
//!
//! Timing: the EVCC repeats an unanswered request after 250 ms, at most 50
//! requests in all (the values Josev uses for `SDP_Timeout` and the
//! request counter of -2 [V2G2-160]/[V2G2-161]; configurable in
//! [`SdpClientConfig`]).

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::interface::is_unicast_link_local;
use super::{Error, Interface};
use crate::sdp::{self, Request, Response, Security, Transport};

/// The link-local all-nodes group the EV sends its request to.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Time between two requests of the EV (`SDP_Timeout`, 250 ms).
pub const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// How many requests the EV sends before giving up (50).
pub const MAX_REQUESTS: u32 = 50;

/// What the SDP server binds to and announces.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SdpServerConfig {
    /// The UDP socket (default `[::]:15118`).
    pub bind: SocketAddr,
    /// The interface whose `ff02::1` group the server joins (`None`: no
    /// multicast, unicast requests only, as tests use).
    pub interface: Option<Interface>,
    /// The SECC's TCP server, as announced.
    pub secc_address: Ipv6Addr,
    /// Its port (plain TCP).
    pub secc_port: u16,
    /// The port of its TLS server on the same address, if it has one: a
    /// request for TLS is answered with it and security `0x00`.
    pub tls_port: Option<u16>,
}

impl SdpServerConfig {
    /// A server on `[::]:15118` joined to `ff02::1` on `interface`,
    /// announcing `secc` (an IPv6 address: SDP carries no other).
    ///
    /// # Errors
    ///
    /// [`Error::Address`] if `secc` is IPv4.
    pub fn new(interface: Option<Interface>, secc: SocketAddr) -> Result<Self, Error> {
        let SocketAddr::V6(v6) = secc else {
            return Err(Error::Address {
                addr: secc,
                reason: "SDP announces IPv6 addresses only",
            });
        };
        Ok(Self {
            bind: SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, sdp::PORT, 0, 0)),
            interface,
            secc_address: *v6.ip(),
            secc_port: v6.port(),
            tls_port: None,
        })
    }

    /// Sets [`SdpServerConfig::tls_port`].
    pub fn with_tls_port(mut self, port: Option<u16>) -> Self {
        self.tls_port = port;
        self
    }

    /// Sets [`SdpServerConfig::bind`].
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }
}

/// The SECC's SDP server: answers every valid request with the SECC's
/// address and TCP: a request for TLS (`0x00`) with the TLS port and
/// `0x00` when the SECC has one ([`SdpServerConfig::tls_port`]), else
/// downgraded, as SECCs may, to the plain port and `0x10`; a request
/// without TLS with the plain port and `0x10`. Invalid datagrams are
/// dropped without answer.
#[derive(Debug)]
pub struct SdpServer {
    socket: UdpSocket,
    response: Response,
    tls_port: Option<u16>,
}

impl SdpServer {
    /// Binds the socket and joins the multicast group.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the bind or the join fails.
    pub async fn bind(config: &SdpServerConfig) -> Result<Self, Error> {
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|e| Error::io(format!("bind UDP {}", config.bind), e))?;
        if let Some(iface) = &config.interface {
            socket
                .join_multicast_v6(&ALL_NODES, iface.index())
                .map_err(|e| Error::io(format!("join ff02::1 on {}", iface.name()), e))?;
        }
        Ok(Self {
            socket,
            response: Response {
                address: config.secc_address,
                port: config.secc_port,
                security: Security::None,
                transport: Transport::Tcp,
            },
            tls_port: config.tls_port,
        })
    }

    /// The answer to `request`.
    fn response_to(&self, request: &Request) -> Response {
        match (request.security, self.tls_port) {
            (Security::Tls, Some(port)) => Response {
                port,
                security: Security::Tls,
                ..self.response
            },
            _ => self.response,
        }
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from the OS.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.socket
            .local_addr()
            .map_err(|e| Error::io("local address", e))
    }

    /// Reads one datagram and answers it if it is a valid request: the
    /// sender, or the reason it got no answer (the SDP decode error).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for a socket error.
    pub async fn answer_one(&self) -> Result<(SocketAddr, Result<Request, sdp::Error>), Error> {
        let mut buf = [0u8; 64];
        let (n, from) = self
            .socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| Error::io("SDP receive", e))?;
        let request = Request::decode(&buf[..n]);
        if let Ok(request) = &request {
            self.socket
                .send_to(&self.response_to(request).encode(), from)
                .await
                .map_err(|e| Error::io(format!("SDP answer to {from}"), e))?;
        }
        Ok((from, request))
    }

    /// Answers requests until dropped. A socket error (an ICMP error
    /// reported on the socket, a peer gone) is skipped after a short pause.
    pub async fn run(self) {
        loop {
            if self.answer_one().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where and how the EV looks for its SECC.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SdpClientConfig {
    /// Where the request goes (default `ff02::1` port 15118 on the interface).
    pub target: SocketAddr,
    /// The interface: the scope of `ff02::1` and of the SECC's link-local
    /// address in the answer (`None` for a unicast target).
    pub interface: Option<Interface>,
    /// The security asked for (default no TLS).
    pub security: Security,
    /// Time between two requests.
    pub retry_interval: Duration,
    /// Requests sent before giving up.
    pub max_requests: u32,
}

impl SdpClientConfig {
    /// Multicast to `ff02::1` port 15118 on `interface`.
    pub fn multicast(interface: Interface) -> Self {
        Self {
            target: SocketAddr::V6(SocketAddrV6::new(
                ALL_NODES,
                sdp::PORT,
                0,
                interface.index(),
            )),
            interface: Some(interface),
            security: Security::None,
            retry_interval: RETRY_INTERVAL,
            max_requests: MAX_REQUESTS,
        }
    }

    /// Unicast to a known SDP server (tests, or an EV that knows its SECC).
    pub fn unicast(target: SocketAddr) -> Self {
        Self {
            target,
            interface: None,
            security: Security::None,
            retry_interval: RETRY_INTERVAL,
            max_requests: MAX_REQUESTS,
        }
    }

    /// Sets [`SdpClientConfig::security`]: [`Security::Tls`] to ask for TLS.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Sets [`SdpClientConfig::retry_interval`] and [`SdpClientConfig::max_requests`].
    pub fn with_retries(mut self, interval: Duration, max_requests: u32) -> Self {
        self.retry_interval = interval;
        self.max_requests = max_requests.max(1);
        self
    }
}

/// Finds the SECC: sends the request, repeats it every
/// [`SdpClientConfig::retry_interval`] until a valid response comes, and
/// returns the SECC's TCP address (with the interface as scope when the
/// address is link-local). Datagrams that are not a valid response are
/// ignored.
///
/// # Errors
///
/// [`Error::NoSdpResponse`] after the last request went unanswered;
/// [`Error::SdpUnsupported`] if the SECC offers only UDP, or only TLS to
/// an EV that did not ask for it; [`Error::SdpDowngraded`] if the EV asked
/// for TLS and the SECC offers plain TCP (the EV then decides: a -2 EV
/// using EIM may go on without TLS, Plug & Charge may not [V2G2-634]);
/// [`Error::Address`] for an IPv4 target; [`Error::Io`] for socket errors
/// (an interface without multicast answers "network unreachable").
pub async fn discover(config: &SdpClientConfig) -> Result<SocketAddr, Error> {
    if !config.target.is_ipv6() {
        return Err(Error::Address {
            addr: config.target,
            reason: "SDP runs over IPv6",
        });
    }
    let socket = UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        .await
        .map_err(|e| Error::io("bind UDP [::]:0", e))?;
    let request = Request {
        security: config.security,
        transport: Transport::Tcp,
    }
    .encode();
    let scope = config.interface.as_ref().map_or(0, Interface::index);
    let mut buf = [0u8; 64];
    for _ in 0..config.max_requests.max(1) {
        socket
            .send_to(&request, config.target)
            .await
            .map_err(|e| Error::io(format!("SDP request to {}", config.target), e))?;
        let deadline = tokio::time::Instant::now() + config.retry_interval;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(Error::io("SDP receive", e)),
                Ok(Ok((n, _))) => n,
            };
            let Ok(response) = Response::decode(&buf[..n]) else {
                continue;
            };
            if response.transport != Transport::Tcp {
                return Err(Error::SdpUnsupported("UDP transport"));
            }
            match (config.security, response.security) {
                (Security::None, Security::Tls) => return Err(Error::SdpUnsupported("TLS only")),
                (Security::Tls, Security::None) => return Err(Error::SdpDowngraded),
                _ => {}
            }
            let scope_id = if is_unicast_link_local(&response.address) {
                scope
            } else {
                0
            };
            return Ok(SocketAddr::V6(SocketAddrV6::new(
                response.address,
                response.port,
                0,
                scope_id,
            )));
        }
    }
    Err(Error::NoSdpResponse(config.max_requests.max(1)))
}
