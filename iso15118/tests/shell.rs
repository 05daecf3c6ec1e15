//! The tokio shells over real sockets: our EVCC against our SECC over
//! loopback TCP (IPv4 and IPv6) for every protocol, peers that send
//! garbage or fall silent, and SDP.
//!
//! SDP: the loopback interface has no `MULTICAST` flag on Linux (a send to
//! `ff02::1%lo` fails with "network unreachable"), so SDP is tested over
//! unicast on `::1`, and over real multicast on the first interface that is
//! up, multicast-capable and has a link-local address (the test says so on
//! stderr and skips that part when there is none).
#![cfg(feature = "tokio")]
#![allow(missing_docs)]

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use evproto_iso15118::sdp;
use evproto_iso15118::session::{
    EndReason, EnergyMode, EvccConfig, MsgKind, Protocol, SeccConfig, TimerConfig, TimerKind,
};
use evproto_iso15118::shell::{
    self, discover, run_evcc, serve_connection, Error, Interface, SdpClientConfig, SdpServer,
    SdpServerConfig, SeccServer, SeccService, SessionReport, ShellConfig, SimEv, SimEvse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

const SESSION: [u8; 8] = [0x52, 0xc8, 0xb2, 0x86, 0xbf, 0xfe, 0x36, 0x2d];
const EVCC_ID: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

struct Charger {
    timers: TimerConfig,
    reports: mpsc::UnboundedSender<SessionReport>,
}

impl SeccService for Charger {
    type Evse = SimEvse;
    fn accept(&self, _peer: SocketAddr) -> (SeccConfig, SimEvse) {
        (
            SeccConfig::new(SESSION.to_vec()).with_timers(self.timers),
            SimEvse::default(),
        )
    }
    fn finished(&self, _peer: SocketAddr, report: SessionReport) {
        let _ = self.reports.send(report);
    }
}

/// A charger on `bind`: its address and the reports of its sessions.
async fn charger(
    bind: &str,
    shell: ShellConfig,
    timers: TimerConfig,
) -> (SocketAddr, mpsc::UnboundedReceiver<SessionReport>) {
    let server = SeccServer::bind(bind.parse().unwrap(), shell)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(Arc::new(Charger {
        timers,
        reports: tx,
    })));
    (addr, rx)
}

async fn next_report(rx: &mut mpsc::UnboundedReceiver<SessionReport>) -> SessionReport {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the SECC session did not end")
        .expect("server gone")
}

async fn charge(addr: SocketAddr, config: EvccConfig, wh: f64) -> SessionReport {
    let stream = shell::connect(addr, Duration::from_secs(5)).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        run_evcc(stream, config, SimEv::new(wh), &ShellConfig::default()),
    )
    .await
    .expect("the EVCC session hung")
}

fn assert_charged(ev: &SessionReport, secc: &SessionReport, protocol: Protocol, wh: f64) {
    assert!(ev.is_ok(), "EV: {:?}", ev.end);
    assert!(secc.is_ok(), "SECC: {:?}", secc.end);
    assert_eq!(ev.protocol, Some(protocol));
    assert_eq!(secc.protocol, Some(protocol));
    assert_eq!(ev.session_id.as_deref(), Some(&SESSION[..]));
    assert!(ev.energy_wh >= wh, "EV got {} Wh of {wh}", ev.energy_wh);
    assert!(ev.charge_loops > 1);
    // every request answered: the EV's sent = the SECC's received, and back
    assert_eq!(ev.messages_sent, secc.messages_received);
    assert_eq!(ev.messages_received, secc.messages_sent);
    assert_eq!(ev.messages_sent, ev.messages_received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn din_dc_over_ipv4() {
    let (addr, mut reports) = charger(
        "127.0.0.1:0",
        ShellConfig::default(),
        TimerConfig::default(),
    )
    .await;
    let ev = charge(addr, EvccConfig::din_dc(EVCC_ID.to_vec()), 20.0).await;
    let secc = next_report(&mut reports).await;
    assert_charged(&ev, &secc, Protocol::Din, 20.0);
    assert!(secc.energy_wh > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iso2_dc_over_ipv6() {
    let (addr, mut reports) =
        charger("[::1]:0", ShellConfig::default(), TimerConfig::default()).await;
    assert!(addr.is_ipv6());
    let ev = charge(addr, EvccConfig::iso2_dc(EVCC_ID.to_vec()), 20.0).await;
    let secc = next_report(&mut reports).await;
    assert_charged(&ev, &secc, Protocol::Iso2, 20.0);
    assert!(secc.energy_wh > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iso2_ac_counts_the_meter() {
    let (addr, mut reports) = charger(
        "127.0.0.1:0",
        ShellConfig::default(),
        TimerConfig::default(),
    )
    .await;
    let ev = charge(addr, EvccConfig::iso2_ac(EVCC_ID.to_vec()), 5.0).await;
    let secc = next_report(&mut reports).await;
    assert_charged(&ev, &secc, Protocol::Iso2, 5.0);
    assert_eq!(secc.energy_mode, Some(EnergyMode::AcThreePhaseCore));
    assert_eq!(ev.energy_mode, Some(EnergyMode::AcThreePhaseCore));
}

/// Port 0 is a port of RFC 6335's dynamic range, the one SDP announces and
/// EVs check (Josev drops an SDP response naming a port below 49152, and
/// Linux's ephemeral ports start at 32768); a port given is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_zero_binds_a_dynamic_port() {
    let mut servers = Vec::new();
    for bind in ["127.0.0.1:0", "[::1]:0", "127.0.0.1:0"] {
        let server = SeccServer::bind(bind.parse().unwrap(), ShellConfig::default())
            .await
            .unwrap();
        let port = server.local_addr().unwrap().port();
        assert!(shell::DYNAMIC_PORTS.contains(&port), "{bind} -> {port}");
        servers.push(server);
    }
    // two servers on one IP got different ports
    assert_ne!(
        servers[0].local_addr().unwrap(),
        servers[2].local_addr().unwrap()
    );
    let taken = servers[0].local_addr().unwrap();
    assert!(SeccServer::bind(taken, ShellConfig::default())
        .await
        .is_err());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fixed = listener.local_addr().unwrap();
    drop(listener);
    let server = SeccServer::bind(fixed, ShellConfig::default())
        .await
        .unwrap();
    assert_eq!(server.local_addr().unwrap(), fixed);
}

/// Connects, sends `bytes`, and reads until the server closes (it must,
/// within 5 s).
async fn send_and_expect_close(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a garbage connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_headers_get_a_clean_error_and_the_server_goes_on() {
    let shell = ShellConfig::default().with_max_payload(4096);
    let (addr, mut reports) = charger("127.0.0.1:0", shell, TimerConfig::default()).await;

    send_and_expect_close(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = next_report(&mut reports).await;
    assert!(
        matches!(r.end, Err(Error::Framing(_))),
        "HTTP request: {:?}",
        r.end
    );
    assert!(r.end.as_ref().unwrap_err().is_peer_error());

    // a header announcing 4 GiB: refused from the header alone
    send_and_expect_close(addr, &[0x01, 0xfe, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff]).await;
    let r = next_report(&mut reports).await;
    assert!(
        matches!(
            r.end,
            Err(Error::Framing(evproto_iso15118::v2gtp::Error::TooLong {
                max: 4096,
                ..
            }))
        ),
        "oversized: {:?}",
        r.end
    );

    // a well-framed SDP request on the TCP port: not a session's payload type
    let sdp = sdp::Request {
        security: sdp::Security::None,
        transport: sdp::Transport::Tcp,
    }
    .encode();
    send_and_expect_close(addr, &sdp).await;
    let r = next_report(&mut reports).await;
    assert!(
        matches!(r.end, Err(Error::UnexpectedPayloadType(t)) if t.0 == 0x9000),
        "{:?}",
        r.end
    );

    // well framed, but not EXI: the machine ends the session (Malformed)
    let mut frame = Vec::new();
    evproto_iso15118::v2gtp::encode(
        evproto_iso15118::v2gtp::PayloadType::EXI,
        &[0xff; 16],
        &mut frame,
    )
    .unwrap();
    send_and_expect_close(addr, &frame).await;
    let r = next_report(&mut reports).await;
    assert!(matches!(r.end, Ok(EndReason::Malformed(_))), "{:?}", r.end);

    // and the server still serves a car
    let ev = charge(addr, EvccConfig::din_dc(EVCC_ID.to_vec()), 5.0).await;
    let secc = next_report(&mut reports).await;
    assert_charged(&ev, &secc, Protocol::Din, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_hits_the_machines_timeout() {
    let mut timers = TimerConfig::default();
    timers.communication_setup = Duration::from_millis(300);
    let (addr, mut reports) = charger("127.0.0.1:0", ShellConfig::default(), timers).await;
    let started = tokio::time::Instant::now();
    let _silent = TcpStream::connect(addr).await.unwrap();
    let r = next_report(&mut reports).await;
    assert!(
        matches!(
            r.end,
            Ok(EndReason::Timeout(TimerKind::SeccCommunicationSetup))
        ),
        "{:?}",
        r.end
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stopping_inside_a_message_hits_the_frame_timeout() {
    let shell = ShellConfig::default().with_frame_timeout(Duration::from_millis(200));
    let (addr, mut reports) = charger("127.0.0.1:0", shell, TimerConfig::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // a header announcing 100 bytes, then 3 of them, then nothing
    s.write_all(&[0x01, 0xfe, 0x80, 0x01, 0, 0, 0, 100, 1, 2, 3])
        .await
        .unwrap();
    let r = next_report(&mut reports).await;
    assert!(matches!(r.end, Err(Error::ReadTimeout(_))), "{:?}", r.end);
    assert!(r.end.as_ref().unwrap_err().is_timeout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_mid_session_is_reported() {
    let (addr, mut reports) = charger(
        "127.0.0.1:0",
        ShellConfig::default(),
        TimerConfig::default(),
    )
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x01, 0xfe, 0x80]).await.unwrap();
    drop(s);
    let r = next_report(&mut reports).await;
    assert!(matches!(r.end, Err(Error::Closed)), "{:?}", r.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evcc_whose_secc_never_answers_times_out() {
    // an SECC that accepts and reads but never answers
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let started = tokio::time::Instant::now();
    let ev = charge(addr, EvccConfig::din_dc(EVCC_ID.to_vec()), 5.0).await;
    assert!(
        matches!(
            ev.end,
            Ok(EndReason::Timeout(TimerKind::EvccMsg(
                MsgKind::SupportedAppProtocol
            )))
        ),
        "{:?}",
        ev.end
    );
    assert_eq!((ev.messages_sent, ev.messages_received), (1, 0));
    // V2G_EVCC_Msg_Timeout of the handshake: 2 s
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_connection_works_on_any_stream() {
    // the two shells over an in-memory duplex pipe: no sockets at all
    let (a, b) = tokio::io::duplex(64 * 1024);
    let shell = ShellConfig::default();
    let secc = tokio::spawn(async move {
        serve_connection(
            a,
            SeccConfig::new(SESSION.to_vec()),
            SimEvse::default(),
            &shell,
        )
        .await
    });
    let mut car = SimEv::new(5.0);
    let ev = run_evcc(b, EvccConfig::iso2_dc(EVCC_ID.to_vec()), &mut car, &shell).await;
    let secc = secc.await.unwrap();
    assert_charged(&ev, &secc, Protocol::Iso2, 5.0);
    assert!(car
        .notices
        .contains(&evproto_iso15118::session::EvNotice::ChargingStarted));
}

/// ISO 15118-2 Plug & Charge through the shells: the SECC's shell answers
/// `InstallCertificate` and `AuthorizeContract` from `SimEvse`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pnc_installs_a_contract_and_a_revoked_one_fails() {
    use evproto_iso15118::pki::demo::DemoPki;
    use evproto_iso15118::pki::TrustStore;
    use evproto_iso15118::session::{
        Contract, ContractProvisioning, ContractStatus, EvPnc, Provisioning, SeccPnc,
    };
    const NOW: u64 = 1_780_000_000;
    let p = DemoPki::generate(b"shell", "DEEVPC000000001", 1_690_000_000, 1_900_000_000).unwrap();
    let contract = Contract::new(
        p.emaid.clone(),
        p.contract.cert.der().to_vec(),
        p.contract_sub_cas(),
        p.contract.key_bytes(),
    );
    for (status, has_contract) in [
        (ContractStatus::Accepted, false),
        (ContractStatus::Revoked, true),
    ] {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let shell = ShellConfig::default();
        let mut evse = SimEvse::default();
        evse.contract_status = status;
        evse.provisioning = Some(ContractProvisioning {
            cps_key: p.cps.key.clone(),
            cps_certificate: p.cps.cert.der().to_vec(),
            cps_sub_cas: p.cps_sub_cas(),
            contract: contract.clone(),
        });
        let config = SeccConfig::new(SESSION.to_vec())
            .with_unix_time(NOW)
            .with_pnc(Some(SeccPnc::new(
                TrustStore::new(vec![p.mo_root.cert.clone()]),
                [9; 16],
            )));
        let secc = tokio::spawn(async move { serve_connection(a, config, evse, &shell).await });
        let ev_config = EvccConfig::iso2_dc(EVCC_ID.to_vec())
            .with_unix_time(NOW)
            .with_pnc(Some(EvPnc::new(
                has_contract.then(|| contract.clone()),
                Some(Provisioning::new(
                    p.oem_provisioning.cert.der().to_vec(),
                    p.oem_provisioning.key_bytes(),
                )),
                TrustStore::new(vec![p.v2g_root.cert.clone()]),
            )));
        let ev = run_evcc(b, ev_config, SimEv::new(5.0), &ShellConfig::default()).await;
        let secc = secc.await.unwrap();
        match status {
            ContractStatus::Revoked => {
                assert_eq!(
                    ev.response_code().as_deref(),
                    Some("FAILED_CertificateRevoked"),
                    "{ev:?}"
                );
                assert!(!secc.is_ok());
            }
            _ => assert_charged(&ev, &secc, Protocol::Iso2, 5.0),
        }
    }
}

// ---- SDP ----

fn v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(a) => a,
        SocketAddr::V4(_) => panic!("not IPv6"),
    }
}

#[tokio::test]
async fn sdp_over_unicast_loopback() {
    let secc: SocketAddr = "[::1]:54321".parse().unwrap();
    let config = SdpServerConfig::new(None, secc)
        .unwrap()
        .with_bind("[::1]:0".parse().unwrap());
    let server = SdpServer::bind(&config).await.unwrap();
    let sdp_addr = server.local_addr().unwrap();
    // a garbage datagram first: dropped without answer, the server goes on
    let junk = UdpSocket::bind("[::1]:0").await.unwrap();
    junk.send_to(b"\x01\xfe\x90\x00\x00\x00\x00\x02\x77\x00", sdp_addr)
        .await
        .unwrap();
    let (_, first) = server.answer_one().await.unwrap();
    assert!(matches!(first, Err(sdp::Error::UnknownSecurity(0x77))));
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), junk.recv_from(&mut buf))
            .await
            .is_err(),
        "garbage was answered"
    );
    tokio::spawn(server.run());
    let found = discover(&SdpClientConfig::unicast(sdp_addr)).await.unwrap();
    assert_eq!(found, secc);
}

/// An SECC with a TLS port answers a request for TLS with it and
/// security `0x00`, a request without TLS with the plain port and `0x10`;
/// an SECC without one downgrades, which an EV asking for TLS refuses.
#[tokio::test]
async fn sdp_answers_a_request_for_tls_with_the_tls_port() {
    let secc: SocketAddr = "[::1]:54321".parse().unwrap();
    let config = SdpServerConfig::new(None, secc)
        .unwrap()
        .with_bind("[::1]:0".parse().unwrap())
        .with_tls_port(Some(54322));
    let server = SdpServer::bind(&config).await.unwrap();
    let sdp_addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    let mut buf = [0u8; 64];
    for (security, port) in [(sdp::Security::Tls, 54322), (sdp::Security::None, 54321)] {
        let req = sdp::Request {
            security,
            transport: sdp::Transport::Tcp,
        };
        client.send_to(&req.encode(), sdp_addr).await.unwrap();
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let res = sdp::Response::decode(&buf[..n]).unwrap();
        assert_eq!((res.security, res.port), (security, port));
    }
    let tls = SdpClientConfig::unicast(sdp_addr).with_security(sdp::Security::Tls);
    assert_eq!(discover(&tls).await.unwrap().port(), 54322);
    // no TLS port: downgraded, and refused by an EV that asked for TLS
    let plain = SdpServerConfig::new(None, secc)
        .unwrap()
        .with_bind("[::1]:0".parse().unwrap());
    let server = SdpServer::bind(&plain).await.unwrap();
    let sdp_addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    let r = discover(&SdpClientConfig::unicast(sdp_addr).with_security(sdp::Security::Tls)).await;
    assert!(matches!(r, Err(Error::SdpDowngraded)), "{r:?}");
}

#[tokio::test]
async fn sdp_client_gives_up_after_its_retries() {
    // a UDP socket that never answers
    let mute = UdpSocket::bind("[::1]:0").await.unwrap();
    let target = mute.local_addr().unwrap();
    let started = tokio::time::Instant::now();
    let r = discover(&SdpClientConfig::unicast(target).with_retries(Duration::from_millis(50), 4))
        .await;
    assert!(matches!(r, Err(Error::NoSdpResponse(4))), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    // all four requests arrived, each a valid SDP request
    let mut buf = [0u8; 64];
    for _ in 0..4 {
        let (n, _) = mute.recv_from(&mut buf).await.unwrap();
        assert!(sdp::Request::decode(&buf[..n]).is_ok());
    }
    // IPv4 is refused before anything is sent
    let r = discover(&SdpClientConfig::unicast(
        "127.0.0.1:15118".parse().unwrap(),
    ))
    .await;
    assert!(matches!(r, Err(Error::Address { .. })), "{r:?}");
}

#[tokio::test]
async fn sdp_client_refuses_a_tls_only_secc() {
    let fake = UdpSocket::bind("[::1]:0").await.unwrap();
    let target = fake.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let (_, from) = fake.recv_from(&mut buf).await.unwrap();
        let res = sdp::Response {
            address: Ipv6Addr::LOCALHOST,
            port: 1,
            security: sdp::Security::Tls,
            transport: sdp::Transport::Tcp,
        };
        // junk first (ignored), then the TLS-only answer
        fake.send_to(b"junk", from).await.unwrap();
        fake.send_to(&res.encode(), from).await.unwrap();
    });
    let r = discover(&SdpClientConfig::unicast(target)).await;
    assert!(matches!(r, Err(Error::SdpUnsupported(_))), "{r:?}");
}

/// The first interface that is up, multicast-capable and has a link-local
/// address.
fn multicast_interface() -> Option<(Interface, Ipv6Addr)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
        // IFF_UP 0x1, IFF_MULTICAST 0x1000
        if flags & 0x1 == 0 || flags & 0x1000 == 0 {
            return None;
        }
        let iface = Interface::by_name(&name).ok()?;
        let addr = iface.link_local_address().ok()?;
        Some((iface, addr))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_over_link_local_multicast_then_a_session() {
    assert!(matches!(
        Interface::by_name("no-such-if0"),
        Err(Error::Interface { .. })
    ));
    let Some((iface, link_local)) = multicast_interface() else {
        eprintln!(
            "no up, multicast-capable interface with a link-local address: multicast part skipped"
        );
        return;
    };
    // the SECC's TCP server on the interface's link-local address
    let scoped = SocketAddr::V6(SocketAddrV6::new(link_local, 0, 0, iface.index()));
    let server = SeccServer::bind(scoped, ShellConfig::default())
        .await
        .unwrap();
    let secc_addr = server.local_addr().unwrap();
    let (tx, mut reports) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(Arc::new(Charger {
        timers: TimerConfig::default(),
        reports: tx,
    })));
    // SDP on a free port (15118 may be taken), joined to ff02::1 on the interface
    let config = SdpServerConfig::new(Some(iface.clone()), secc_addr)
        .unwrap()
        .with_bind("[::]:0".parse().unwrap());
    let sdp_server = SdpServer::bind(&config).await.unwrap();
    let port = sdp_server.local_addr().unwrap().port();
    tokio::spawn(sdp_server.run());
    let mut client = SdpClientConfig::multicast(iface.clone());
    client.target = SocketAddr::V6(SocketAddrV6::new(
        shell::discovery::ALL_NODES,
        port,
        0,
        iface.index(),
    ));
    let found = discover(&client).await.unwrap();
    assert_eq!(v6(found).ip(), &link_local);
    assert_eq!(v6(found).scope_id(), iface.index());
    assert_eq!(found.port(), secc_addr.port());
    let ev = charge(found, EvccConfig::din_dc(EVCC_ID.to_vec()), 5.0).await;
    let secc = next_report(&mut reports).await;
    assert_charged(&ev, &secc, Protocol::Din, 5.0);
}
