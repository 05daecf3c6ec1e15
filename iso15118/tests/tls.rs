//! TLS in the shells (features `tls` and `tls-openssl`): our EVCC against
//! our SECC over loopback TCP with TLS 1.3 (ISO 15118-20, mutual
//! authentication, rustls with the ring provider given explicitly) and
//! TLS 1.2 (ISO 15118-2 Plug & Charge, OpenSSL with
//! `TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256`) on one TLS port; every
//! refusal (a foreign V2G root, a foreign or missing EV certificate, plain
//! TCP on the TLS port, silence) is a session end with its reason.
#![cfg(all(feature = "tls", feature = "tls-openssl"))]
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use evproto_iso15118::pki::demo::DemoPki;
use evproto_iso15118::pki::TrustStore;
use evproto_iso15118::session::{Contract, EvPnc, EvccConfig, Protocol, SeccConfig, SeccPnc};
use evproto_iso15118::shell::tls::{EvccTls, Identity, SeccTls, TlsInfo, TlsVersion};
use evproto_iso15118::shell::{
    self, run_evcc, Error, SeccServer, SeccService, SessionReport, ShellConfig, SimEv, SimEvse,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const SESSION: [u8; 8] = [0x52, 0xc8, 0xb2, 0x86, 0xbf, 0xfe, 0x36, 0x2d];
const EVCC_ID: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A PKI valid now (TLS checks certificates at the system time).
fn pki(seed: &[u8]) -> DemoPki {
    let now = unix_now();
    DemoPki::generate(seed, "DEEVPC000000001", now - 86_400, now + 30 * 86_400).unwrap()
}

fn pkcs8(i: &evproto_iso15118::pki::demo::Issued) -> Vec<u8> {
    i.key.to_pkcs8_der().unwrap()
}

fn secc_identity(p: &DemoPki) -> Identity {
    Identity::new(
        p.secc.cert.der().to_vec(),
        vec![
            p.cpo_sub_ca2.cert.der().to_vec(),
            p.cpo_sub_ca1.cert.der().to_vec(),
        ],
        pkcs8(&p.secc),
    )
}

fn oem_identity(p: &DemoPki) -> Identity {
    Identity::new(
        p.oem_provisioning.cert.der().to_vec(),
        p.oem_sub_cas(),
        pkcs8(&p.oem_provisioning),
    )
}

fn contract(p: &DemoPki) -> Contract {
    Contract::new(
        p.emaid.clone(),
        p.contract.cert.der().to_vec(),
        p.contract_sub_cas(),
        p.contract.key_bytes(),
    )
}

/// What the charger saw of one connection: the handshake (if it got that
/// far) and the session.
type Seen = (Option<TlsInfo>, SessionReport);

fn seen(report: SessionReport) -> Seen {
    (report.tls.clone(), report)
}

/// Over TLS 1.3 the -20 protocols and -2 (ISO 15118-20 Table 5), over
/// TLS 1.2 -2 only; Plug & Charge offered over both.
struct Charger {
    pki: DemoPki,
    seen: mpsc::UnboundedSender<Seen>,
}

impl SeccService for Charger {
    type Evse = SimEvse;
    fn accept(&self, _peer: SocketAddr) -> (SeccConfig, SimEvse) {
        unreachable!("every connection of this server is TLS")
    }
    fn accept_tls(&self, _peer: SocketAddr, tls: &TlsInfo) -> (SeccConfig, SimEvse) {
        let protocols = match tls.version {
            TlsVersion::Tls13 => vec![Protocol::Iso20Dc, Protocol::Iso20Ac, Protocol::Iso2],
            _ => vec![Protocol::Iso2],
        };
        let config = SeccConfig::new(SESSION.to_vec())
            .with_protocols(protocols)
            .with_pnc(Some(SeccPnc::new(
                TrustStore::new(vec![self.pki.mo_root.cert.clone()]),
                [7; 16],
            )));
        (config, SimEvse::default())
    }
    fn finished(&self, _peer: SocketAddr, report: SessionReport) {
        let _ = self.seen.send(seen(report));
    }
}

/// A TLS charger (1.3 and 1.2) on loopback with `p`'s SECC chain,
/// trusting `p`'s OEM root for the EVs' certificates.
async fn charger(p: &DemoPki, shell: ShellConfig) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let tls = SeccTls::new()
        .with_tls13(
            &secc_identity(p),
            &TrustStore::new(vec![p.oem_root.cert.clone()]),
        )
        .unwrap()
        .with_tls12(&secc_identity(p))
        .unwrap();
    let server = SeccServer::bind("127.0.0.1:0".parse().unwrap(), shell)
        .await
        .unwrap()
        .with_tls(tls);
    let addr = server.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(Arc::new(Charger {
        pki: p.clone(),
        seen: tx,
    })));
    (addr, rx)
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the SECC session did not end")
        .expect("server gone")
}

/// The EV's TLS: trusting `roots`' V2G root, presenting `identity` over 1.3.
fn ev_tls(roots: &DemoPki, identity: Option<&Identity>) -> EvccTls {
    EvccTls::new(TrustStore::new(vec![roots.v2g_root.cert.clone()]))
        .with_tls13(identity)
        .unwrap()
        .with_tls12()
        .unwrap()
}

async fn handshake(
    addr: SocketAddr,
    tls: &EvccTls,
    version: TlsVersion,
) -> Result<(Box<dyn shell::tls::Io>, TlsInfo), Error> {
    let tcp = shell::connect(addr, Duration::from_secs(5)).await.unwrap();
    tls.connect(tcp, version, Duration::from_secs(10)).await
}

async fn charge(stream: Box<dyn shell::tls::Io>, config: EvccConfig, wh: f64) -> SessionReport {
    tokio::time::timeout(
        Duration::from_secs(60),
        run_evcc(stream, config, SimEv::new(wh), &ShellConfig::default()),
    )
    .await
    .expect("the EVCC session hung")
}

fn assert_charged(ev: &SessionReport, secc: &SessionReport, protocol: Protocol) {
    assert!(ev.is_ok(), "EV: {:?}", ev.end);
    assert!(secc.is_ok(), "SECC: {:?}", secc.end);
    assert_eq!(ev.protocol, Some(protocol));
    assert_eq!(secc.protocol, Some(protocol));
    assert_eq!(ev.session_id.as_deref(), Some(&SESSION[..]));
    assert!(ev.energy_wh >= 5.0, "EV got {} Wh", ev.energy_wh);
    assert_eq!(ev.messages_sent, secc.messages_received);
    assert_eq!(ev.messages_received, secc.messages_sent);
}

/// ISO 15118-20 DC and AC (and -2, Table 5) over TLS 1.3: the EV checks
/// the SECC's CPO chain against the V2G root, the SECC the EV's OEM chain
/// against the OEM root; AES-256-GCM, the -20 suite of first choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iso20_over_tls13_with_mutual_authentication() {
    let p = pki(b"tls13");
    let (addr, mut seen) = charger(&p, ShellConfig::default()).await;
    let tls = ev_tls(&p, Some(&oem_identity(&p)));
    for (config, protocol) in [
        (EvccConfig::iso20_dc(EVCC_ID.to_vec()), Protocol::Iso20Dc),
        (EvccConfig::iso20_ac(EVCC_ID.to_vec()), Protocol::Iso20Ac),
        (EvccConfig::iso2_dc(EVCC_ID.to_vec()), Protocol::Iso2),
    ] {
        let (stream, info) = handshake(addr, &tls, TlsVersion::Tls13).await.unwrap();
        assert_eq!(info.version, TlsVersion::Tls13);
        assert_eq!(info.cipher_suite, "TLS13_AES_256_GCM_SHA384");
        assert_eq!(info.peer_chain[0], p.secc.cert.der(), "the SECC leaf");
        assert_eq!(info.peer_chain.len(), 3, "leaf and two CPO sub-CAs");
        let ev = charge(stream, config, 5.0).await;
        let (secc_tls, secc) = next_seen(&mut seen).await;
        assert_charged(&ev, &secc, protocol);
        let secc_tls = secc_tls.expect("the SECC's handshake");
        assert_eq!(secc_tls.version, TlsVersion::Tls13);
        assert_eq!(secc_tls.peer_chain[0], p.oem_provisioning.cert.der());
    }
}

/// ISO 15118-2 Plug & Charge over TLS 1.2 with the -2 suite: a contract
/// authorized with its signature, the SECC authenticated only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iso2_pnc_over_tls12() {
    let p = pki(b"tls12");
    let (addr, mut seen) = charger(&p, ShellConfig::default()).await;
    let tls = ev_tls(&p, None);
    let (stream, info) = handshake(addr, &tls, TlsVersion::Tls12).await.unwrap();
    assert_eq!(info.version, TlsVersion::Tls12);
    assert_eq!(info.cipher_suite, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256");
    assert_eq!(info.peer_chain[0], p.secc.cert.der());
    let config = EvccConfig::iso2_dc(EVCC_ID.to_vec()).with_pnc(Some(EvPnc::new(
        Some(contract(&p)),
        None,
        TrustStore::new(vec![p.v2g_root.cert.clone()]),
    )));
    let ev = charge(stream, config, 5.0).await;
    let (secc_tls, secc) = next_seen(&mut seen).await;
    assert_charged(&ev, &secc, Protocol::Iso2);
    let secc_tls = secc_tls.unwrap();
    assert_eq!(secc_tls.version, TlsVersion::Tls12);
    assert!(secc_tls.peer_chain.is_empty(), "-2: no EV certificate");
}

/// An EV whose V2G root is not the one the SECC's chain ends at refuses
/// the handshake, over either version, with the reason; the SECC reports
/// the connection as a TLS failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_v2g_root_is_refused() {
    let p = pki(b"secc");
    let other = pki(b"another V2G root");
    let (addr, mut seen) = charger(&p, ShellConfig::default()).await;
    let tls = ev_tls(&other, Some(&oem_identity(&p)));
    // the other PKI's names are the same, its keys are not: the chain's
    // first signature fails against the EV's root
    for (version, why) in [
        (TlsVersion::Tls13, "invalid peer certificate: BadSignature"),
        (
            TlsVersion::Tls12,
            "invalid peer certificate: certificate signature failure",
        ),
    ] {
        let err = match handshake(addr, &tls, version).await {
            Err(e) => e,
            Ok((_, info)) => panic!("{version:?}: accepted {info:?}"),
        };
        assert!(
            matches!(&err, Error::Tls(r) if r.contains(why)),
            "{version:?}: {err}"
        );
        assert_eq!(shell::end_kind(&Err(err)), "tls");
        let (secc_tls, secc) = next_seen(&mut seen).await;
        assert!(secc_tls.is_none());
        assert!(
            matches!(&secc.end, Err(Error::Tls(_))),
            "{version:?}: {:?}",
            secc.end
        );
        assert_eq!(secc.protocol, None);
    }
}

/// -20 mutual authentication: an EV with an OEM chain the SECC does not
/// trust, or with none, gets no session; the SECC says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ev_without_a_trusted_oem_certificate_is_refused() {
    let p = pki(b"secc");
    let foreign = pki(b"foreign OEM");
    let (addr, mut seen) = charger(&p, ShellConfig::default()).await;
    for (identity, why) in [
        (
            Some(oem_identity(&foreign)),
            "invalid peer certificate: BadSignature",
        ),
        (None, "no certificates"),
    ] {
        let tls = ev_tls(&p, identity.as_ref());
        // TLS 1.3: the client's side of the handshake may end before the
        // server has checked its certificate; the session does not start
        if let Ok((stream, _)) = handshake(addr, &tls, TlsVersion::Tls13).await {
            let ev = charge(stream, EvccConfig::iso20_dc(EVCC_ID.to_vec()), 5.0).await;
            assert!(!ev.is_ok(), "{:?}", ev.end);
            assert_eq!(ev.session_id, None);
        }
        let (_, secc) = next_seen(&mut seen).await;
        assert!(
            matches!(&secc.end, Err(Error::Tls(r)) if r.contains(why)),
            "{:?}",
            secc.end
        );
    }
}

/// A TLS 1.3 handshake from an OpenSSL client whose ClientHello names
/// `name` (as Josev's EVCC names the SECC's link-local address), presenting
/// `identity`; it does not check the SECC (the other tests do).
async fn named_handshake(
    addr: SocketAddr,
    identity: Option<&Identity>,
    name: &str,
) -> Result<Box<dyn shell::tls::Io>, openssl::ssl::Error> {
    use openssl::pkey::PKey;
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
    use openssl::x509::X509;
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    if let Some(id) = identity {
        b.set_certificate(&X509::from_der(&id.chain[0]).unwrap())
            .unwrap();
        for sub in &id.chain[1..] {
            b.add_extra_chain_cert(X509::from_der(sub).unwrap())
                .unwrap();
        }
        b.set_private_key(&PKey::private_key_from_pkcs8(&id.key_pkcs8).unwrap())
            .unwrap();
    }
    let mut ssl = b.build().configure().unwrap();
    ssl.set_verify_hostname(false);
    let ssl = ssl.into_ssl(name).unwrap();
    let tcp = shell::connect(addr, Duration::from_secs(5)).await.unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut tls).connect().await?;
    Ok(Box::new(tls))
}

/// An EV whose ClientHello names the SECC's link-local address with its
/// zone (no host name: rustls refuses it, Josev's EVCC sends it) gets the
/// same TLS 1.3 from OpenSSL: the -20 suite, its OEM chain required and
/// checked, and charges over -20; a foreign OEM chain or none is refused
/// with the reason, as on the rustls path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ev_naming_a_link_local_address_gets_tls13_all_the_same() {
    let p = pki(b"named");
    let foreign = pki(b"foreign named");
    let (addr, mut seen) = charger(&p, ShellConfig::default()).await;
    let name = "fe80::e0:2ff:fe00:1%veth1";
    let stream = named_handshake(addr, Some(&oem_identity(&p)), name)
        .await
        .unwrap();
    let ev = charge(stream, EvccConfig::iso20_dc(EVCC_ID.to_vec()), 5.0).await;
    let (secc_tls, secc) = next_seen(&mut seen).await;
    assert_charged(&ev, &secc, Protocol::Iso20Dc);
    let secc_tls = secc_tls.expect("the SECC's handshake");
    assert_eq!(secc_tls.version, TlsVersion::Tls13);
    assert_eq!(secc_tls.cipher_suite, "TLS13_AES_256_GCM_SHA384");
    assert_eq!(secc_tls.peer_chain[0], p.oem_provisioning.cert.der());
    assert_eq!(secc_tls.peer_chain.len(), 1 + p.oem_sub_cas().len());
    for identity in [Some(oem_identity(&foreign)), None] {
        if let Ok(stream) = named_handshake(addr, identity.as_ref(), name).await {
            let ev = charge(stream, EvccConfig::iso20_dc(EVCC_ID.to_vec()), 5.0).await;
            assert!(!ev.is_ok(), "{:?}", ev.end);
        }
        let (_, secc) = next_seen(&mut seen).await;
        assert!(
            matches!(&secc.end, Err(Error::Tls(r)) if r.contains("certificate")),
            "{:?}",
            secc.end
        );
    }
}

/// Plain V2GTP on the TLS port, and a peer that says nothing: each a TLS
/// failure with its reason, and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_and_silence_on_the_tls_port_end_cleanly() {
    let p = pki(b"plain");
    let shell = ShellConfig::default().with_handshake_timeout(Duration::from_millis(300));
    let (addr, mut seen) = charger(&p, shell).await;
    let mut tcp = shell::connect(addr, Duration::from_secs(5)).await.unwrap();
    tcp.write_all(&[0x01, 0xfe, 0x80, 0x01, 0, 0, 0, 1, 0x80])
        .await
        .unwrap();
    let (_, secc) = next_seen(&mut seen).await;
    assert!(
        matches!(&secc.end, Err(Error::Tls(r)) if r.contains("did not start a TLS handshake")),
        "{:?}",
        secc.end
    );
    let _silent = shell::connect(addr, Duration::from_secs(5)).await.unwrap();
    let (_, secc) = next_seen(&mut seen).await;
    assert!(
        matches!(&secc.end, Err(Error::Tls(r)) if r.contains("no handshake within")),
        "{:?}",
        secc.end
    );
    // and a real EV still charges
    let (stream, _) = handshake(addr, &ev_tls(&p, None), TlsVersion::Tls12)
        .await
        .unwrap();
    let ev = charge(stream, EvccConfig::iso2_ac(EVCC_ID.to_vec()), 5.0).await;
    let (_, secc) = next_seen(&mut seen).await;
    assert_charged(&ev, &secc, Protocol::Iso2);
}

/// A key that is not the certificate's is refused when the TLS
/// configuration is built, not at the first connection.
#[test]
fn a_key_that_does_not_fit_its_certificate_is_refused_at_setup() {
    let p = pki(b"setup");
    let wrong = Identity::new(p.secc.cert.der().to_vec(), vec![], pkcs8(&p.cps));
    let roots = TrustStore::new(vec![p.oem_root.cert.clone()]);
    assert!(matches!(
        SeccTls::new().with_tls12(&wrong),
        Err(Error::TlsSetup(_))
    ));
    assert!(matches!(
        SeccTls::new().with_tls13(&wrong, &roots),
        Err(Error::TlsSetup(_))
    ));
}
