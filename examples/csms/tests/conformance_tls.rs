//! A00.FR.318 on the reference CSMS (feature `tls-openssl`): with
//! `--tls-backend openssl`, the `wss://` port offers TLS 1.2 with the four
//! suites OCPP names, the ECDSA certificate (`--tls-cert`) for the
//! ECDHE-ECDSA ones and the RSA certificate (`--tls-rsa-cert`) for the
//! static-RSA ones, and each registered station boots over the suite it
//! forces: a profile 2 station by its password, a profile 3 station by
//! its client certificate. Run with
//! `cargo test -p csms --features tls-openssl --test conformance_tls`.

mod common;

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use openssl::pkey::Id;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "conformance-tls-api-key";
const PW: &str = "the-station-password-1";

/// The CA, the CSMS's ECDSA and RSA certificates and a profile 3
/// station's, written as PEM files under `dir`.
fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "A00.FR.318 test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let rsa = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    let rsa = String::from_utf8(rsa.private_key_to_pem_pkcs8().unwrap()).unwrap();
    for (name, cn, key) in [
        ("ecdsa", "localhost", KeyPair::generate().unwrap()),
        ("rsa", "localhost", KeyPair::from_pem(&rsa).unwrap()),
        ("station", "TLS-P3", KeyPair::generate().unwrap()),
    ] {
        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem() + &ca.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// TLS 1.2 to `port` forcing `suite`, the CSMS checked against the test CA,
/// with the station's client certificate when `client_cert`.
async fn connect(
    port: u16,
    dir: &Path,
    suite: &str,
    client_cert: bool,
) -> tokio_openssl::SslStream<tokio::net::TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_cipher_list(suite).unwrap();
    b.set_ca_file(dir.join("ca.pem")).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    if client_cert {
        b.set_certificate_chain_file(dir.join("station.pem"))
            .unwrap();
        b.set_private_key_file(dir.join("station.key"), SslFiletype::PEM)
            .unwrap();
    }
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        std::pin::Pin::new(&mut tls).connect(),
    )
    .await
    .expect("the handshake ends")
    .unwrap_or_else(|e| panic!("{suite}: {e}"));
    tls
}

/// The station `id` (with `password` if given) boots over `tls`: the
/// BootNotification's status, or the HTTP status of a refused upgrade.
async fn boot(
    tls: tokio_openssl::SslStream<tokio::net::TcpStream>,
    id: &str,
    password: Option<&str>,
) -> Result<String, u16> {
    use base64::Engine as _;
    let mut req = format!("wss://localhost/ocpp/{id}")
        .into_client_request()
        .unwrap();
    let headers = req.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp2.0.1"),
    );
    if let Some(pw) = password {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{pw}"));
        headers.insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
        );
    }
    let (mut ws, _) = match tokio_tungstenite::client_async(req, tls).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => return Err(r.status().as_u16()),
        Err(e) => panic!("{id}: {e}"),
    };
    let boot = json!([2, "boot-1", "BootNotification", {"reason": "PowerUp",
        "chargingStation": {"model": "A00", "vendorName": "evproto"}}]);
    ws.send(Message::text(boot.to_string())).await.unwrap();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("an answer")
    {
        if let Message::Text(t) = frame.unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v[1] == "boot-1" {
                return Ok(v[2]["status"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    panic!("{id}: closed before the answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a00_fr_318_four_suites_with_an_ecdsa_and_an_rsa_certificate() {
    let dir = common::temp_dir("conformance-tls");
    let pki_dir = dir.join("pki");
    pki(&pki_dir);
    let config = csms::config::Config {
        security_profile: 1,
        unknown_stations: csms::config::UnknownStations::Reject,
        ocpp_tls_port: Some(0),
        tls_cert: Some(pki_dir.join("ecdsa.pem")),
        tls_key: Some(pki_dir.join("ecdsa.key")),
        tls_client_ca: Some(pki_dir.join("ca.pem")),
        tls_backend: csms::config::TlsBackend::Openssl,
        tls_rsa: Some((pki_dir.join("rsa.pem"), pki_dir.join("rsa.key"))),
        ..common::lab_config(&dir.join("data"), KEY)
    };
    let running = common::InProcess::start(config).await;
    let (admin, wss) = (
        running.started.admin_port,
        running.started.ocpp_tls_port.expect("a wss:// port"),
    );
    for (id, body) in [
        ("TLS-P2", json!({"security_profile": 2, "password": PW})),
        ("TLS-P3", json!({"security_profile": 3})),
    ] {
        let path = format!("/api/stations/{id}");
        let (status, v) = common::api(KEY, admin, "PUT", &path, Some(body)).await;
        assert_eq!(status, 201, "{id}: {v}");
    }
    for (suite, key) in [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", Id::EC),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", Id::EC),
        ("AES128-GCM-SHA256", Id::RSA),
        ("AES256-GCM-SHA384", Id::RSA),
    ] {
        let tls = connect(wss, &pki_dir, suite, false).await;
        assert_eq!(tls.ssl().current_cipher().unwrap().name(), suite);
        let served = tls.ssl().peer_certificate().unwrap();
        assert_eq!(served.public_key().unwrap().id(), key, "{suite}");
        let status = boot(tls, "TLS-P2", Some(PW)).await;
        assert_eq!(status.as_deref(), Ok("Accepted"), "profile 2, {suite}");
        let tls = connect(wss, &pki_dir, suite, false).await;
        let wrong = boot(tls, "TLS-P2", Some("a-wrong-password-0001")).await;
        assert_eq!(wrong, Err(401), "a wrong password, {suite}");
        let tls = connect(wss, &pki_dir, suite, true).await;
        let status = boot(tls, "TLS-P3", None).await;
        assert_eq!(status.as_deref(), Ok("Accepted"), "profile 3, {suite}");
        let tls = connect(wss, &pki_dir, suite, false).await;
        let refused = boot(tls, "TLS-P3", None).await;
        assert_eq!(
            refused,
            Err(401),
            "profile 3 without a certificate, {suite}"
        );
    }
    running.stop().await;
}
