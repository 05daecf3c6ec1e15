//! OCPP's TLS suites on the OpenSSL listener (feature `tls-openssl`), over
//! real sockets: a client forcing each of the four suites of A00.FR.318
//! (TLS 1.2) gets it, with the ECDSA certificate for the ECDHE-ECDSA suites
//! and the RSA one for the static-RSA suites, then boots over OCPP; TLS 1.3
//! works; TLS 1.1, CBC and SHA-1 suites are refused; a profile 3 station
//! is admitted by its client certificate and refused without one.

use std::time::Duration;

use evproto_ocpp_proto::CallError;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_server::tls_openssl::{acceptor, PemIdentity};
use evproto_ocpp_server::{Security, Server, Tls};
use evproto_ocpp_types::v201::{self, action};
use futures_util::{SinkExt as _, StreamExt as _};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "a-long-enough-test-password";

/// A certificate for `cn` with `key`, signed by `issuer` (self-signed
/// without one), a CA when `ca`.
fn certificate(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    ca: bool,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial()).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    } else {
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    b.build()
}

fn rand_serial() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// The test PKI: one CA, the CSMS's ECDSA and RSA certificates, a
/// station's client certificate.
struct Pki {
    ca: X509,
    ecdsa: (X509, PKey<Private>),
    rsa: (X509, PKey<Private>),
    station: (X509, PKey<Private>),
}

fn pki() -> Pki {
    let ca_key = p256();
    let ca = certificate("evproto test CA", &ca_key, None, true);
    let leaf = |cn: &str, key: PKey<Private>| {
        let cert = certificate(cn, &key, Some((&ca, &ca_key)), false);
        (cert, key)
    };
    let ecdsa = leaf("localhost", p256());
    let rsa = leaf(
        "localhost",
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
    );
    let station = leaf("MTLS-1", p256());
    Pki {
        ca,
        ecdsa,
        rsa,
        station,
    }
}

async fn boot(
    _: Ctx<()>,
    _: v201::BootNotificationRequest,
) -> Result<v201::BootNotificationResponse, CallError> {
    Ok(v201::BootNotificationResponse {
        current_time: chrono::Utc::now(),
        interval: 300,
        status: v201::RegistrationStatusEnumType::Accepted,
        status_info: None,
        custom_data: None,
    })
}

/// An OpenSSL listener with both certificates and the CA for client
/// certificates; identities starting `MTLS` are profile 3, others 2.
async fn start(pki: &Pki) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let (ec_pem, ec_key) = (
        pki.ecdsa.0.to_pem().unwrap(),
        pki.ecdsa.1.private_key_to_pem_pkcs8().unwrap(),
    );
    let (rsa_pem, rsa_key) = (
        pki.rsa.0.to_pem().unwrap(),
        pki.rsa.1.private_key_to_pem_pkcs8().unwrap(),
    );
    let tls = acceptor(
        &[
            PemIdentity {
                chain: &ec_pem,
                key: &ec_key,
            },
            PemIdentity {
                chain: &rsa_pem,
                key: &rsa_key,
            },
        ],
        Some(&pki.ca.to_pem().unwrap()),
    )
    .unwrap();
    let server = Server::builder(Security::unsecured())
        .v201(
            Router::csms_v201()
                .on::<action::BootNotification>(boot)
                .into_routes(),
        )
        .per_station_profiles(
            |id: &str| if id.starts_with("MTLS") { 3 } else { 2 },
            |_: &str, pw: &[u8]| pw == PASSWORD.as_bytes(),
        )
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve_on(listener, Some(Tls::from(tls)), async {
                let _ = stopped.await;
            })
            .await
    });
    (port, stop)
}

/// How a test client speaks TLS.
struct Client<'a> {
    versions: (SslVersion, SslVersion),
    ciphers: Option<&'a str>,
    certificate: Option<&'a (X509, PKey<Private>)>,
}

impl Client<'_> {
    fn tls12(suite: &str) -> Client<'_> {
        Client {
            versions: (SslVersion::TLS1_2, SslVersion::TLS1_2),
            ciphers: Some(suite),
            certificate: None,
        }
    }
}

type Stream = tokio_openssl::SslStream<tokio::net::TcpStream>;

/// The TLS handshake with the listener on `port`, the server checked
/// against the test CA: the stream, or OpenSSL's reason.
async fn handshake(port: u16, pki: &Pki, client: &Client<'_>) -> Result<Stream, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_min_proto_version(Some(client.versions.0)).unwrap();
    b.set_max_proto_version(Some(client.versions.1)).unwrap();
    if let Some(c) = client.ciphers {
        // @SECLEVEL=0 so the client offers what old stations would: the
        // server alone decides what is refused
        b.set_cipher_list(&format!("{c}:@SECLEVEL=0")).unwrap();
    }
    b.cert_store_mut().add_cert(pki.ca.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    if let Some((cert, key)) = client.certificate {
        b.set_certificate(cert).unwrap();
        b.set_private_key(key).unwrap();
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
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    match tokio::time::timeout(
        Duration::from_secs(20),
        std::pin::Pin::new(&mut stream).connect(),
    )
    .await
    .expect("the TLS handshake ends")
    {
        Ok(()) => Ok(stream),
        Err(e) => Err(e.to_string()),
    }
}

/// The WebSocket handshake as `identity` (with the password) over
/// `stream`, then a BootNotification: its answer's status, or the HTTP
/// status of a refused handshake (0: the connection failed).
async fn boot_over(stream: Stream, identity: &str) -> Result<String, u16> {
    use base64::Engine as _;
    let mut req = format!("wss://localhost/ocpp/{identity}")
        .into_client_request()
        .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{identity}:{PASSWORD}"));
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp2.0.1"),
    );
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Basic {auth}")).unwrap(),
    );
    let mut ws = match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            return Err(resp.status().as_u16())
        }
        Err(_) => return Err(0),
    };
    let call = r#"[2,"b1","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}]"#;
    ws.send(Message::text(call)).await.unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("an answer")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(t) = frame {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v[0], 3, "{v}");
            assert_eq!(v[1], "b1", "{v}");
            return Ok(v[2]["status"].as_str().unwrap_or_default().to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_suite_of_a00_fr_318_with_its_certificate_then_a_boot() {
    let pki = pki();
    let (port, _stop) = start(&pki).await;
    let suites = [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", Id::EC),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", Id::EC),
        ("AES128-GCM-SHA256", Id::RSA),
        ("AES256-GCM-SHA384", Id::RSA),
    ];
    for (i, (suite, key)) in suites.into_iter().enumerate() {
        let stream = handshake(port, &pki, &Client::tls12(suite))
            .await
            .unwrap_or_else(|e| panic!("{suite}: {e}"));
        let ssl = stream.ssl();
        assert_eq!(ssl.version_str(), "TLSv1.2");
        assert_eq!(ssl.current_cipher().unwrap().name(), suite);
        let served = ssl.peer_certificate().unwrap();
        assert_eq!(served.public_key().unwrap().id(), key, "{suite}");
        let status = boot_over(stream, &format!("CP-{i}")).await;
        assert_eq!(status.as_deref(), Ok("Accepted"), "{suite}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_3_is_spoken_too() {
    let pki = pki();
    let (port, _stop) = start(&pki).await;
    let client = Client {
        versions: (SslVersion::TLS1_3, SslVersion::TLS1_3),
        ciphers: None,
        certificate: None,
    };
    let stream = handshake(port, &pki, &client).await.unwrap();
    assert_eq!(stream.ssl().version_str(), "TLSv1.3");
    assert_eq!(boot_over(stream, "CP-13").await.as_deref(), Ok("Accepted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_cbc_and_sha1_suites_are_refused() {
    let pki = pki();
    let (port, _stop) = start(&pki).await;
    let tls11 = Client {
        versions: (SslVersion::TLS1_1, SslVersion::TLS1_1),
        ciphers: Some("DEFAULT"),
        certificate: None,
    };
    assert!(handshake(port, &pki, &tls11).await.is_err(), "TLS 1.1");
    for suite in [
        "AES128-SHA",
        "AES128-SHA256",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-RSA-AES128-SHA",
    ] {
        let refused = handshake(port, &pki, &Client::tls12(suite)).await;
        assert!(refused.is_err(), "{suite} was accepted");
    }
    // the server is still serving after the refusals
    let ok = handshake(port, &pki, &Client::tls12("AES128-GCM-SHA256")).await;
    assert!(ok.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_3_station_is_admitted_by_its_client_certificate_only() {
    let pki = pki();
    let (port, _stop) = start(&pki).await;
    for suite in ["ECDHE-ECDSA-AES128-GCM-SHA256", "AES256-GCM-SHA384"] {
        let with_cert = Client {
            certificate: Some(&pki.station),
            ..Client::tls12(suite)
        };
        let stream = handshake(port, &pki, &with_cert).await.unwrap();
        assert_eq!(
            boot_over(stream, "MTLS-1").await.as_deref(),
            Ok("Accepted"),
            "{suite}"
        );
        // another identity than the certificate's CN
        let stream = handshake(port, &pki, &with_cert).await.unwrap();
        assert_eq!(boot_over(stream, "MTLS-2").await, Err(401), "{suite}");
        // no certificate at all
        let stream = handshake(port, &pki, &Client::tls12(suite)).await.unwrap();
        assert_eq!(boot_over(stream, "MTLS-1").await, Err(401), "{suite}");
    }
    // a certificate from another CA fails the TLS handshake itself
    let stranger_key = p256();
    let stranger = (
        certificate("MTLS-1", &stranger_key, None, false),
        stranger_key,
    );
    let forged = Client {
        certificate: Some(&stranger),
        ..Client::tls12("ECDHE-ECDSA-AES128-GCM-SHA256")
    };
    let refused = match handshake(port, &pki, &forged).await {
        Err(_) => true,
        // TLS 1.2: the client may finish before the server's alert arrives
        Ok(stream) => boot_over(stream, "MTLS-1").await.is_err(),
    };
    assert!(refused, "a certificate of another CA was taken");
}
