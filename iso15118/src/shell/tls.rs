//! TLS for the shells: ISO 15118-20's TLS 1.3 with mutual authentication
//! (feature `tls`: rustls with its ring provider, given explicitly, never
//! the process default) and ISO 15118-2's TLS 1.2 with
//! `TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256` (feature `tls-openssl`:
//! rustls has no CBC suites, so OpenSSL).
//!
//! What each side does:
//!
//! | | TLS 1.3 ([`SeccTls::with_tls13`], [`EvccTls::with_tls13`]) | TLS 1.2 ([`SeccTls::with_tls12`], [`EvccTls::with_tls12`]) |
//! |---|---|---|
//! | suites | `TLS_AES_256_GCM_SHA384`, `TLS_CHACHA20_POLY1305_SHA256` [V2G20-1856] | `TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256`, curve secp256r1 |
//! | SECC certificate | its chain (leaf, CPO sub-CAs), checked by the EVCC against the V2G roots with [`crate::pki::verify_chain`] | the same, checked by OpenSSL against the V2G roots |
//! | EVCC certificate | required: its OEM chain, checked by the SECC against the OEM roots with [`crate::pki::verify_chain`] | none (-2 authenticates the SECC only) |
//!
//! The -2 suite `TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256` (static ECDH) is
//! not offered: OpenSSL dropped static ECDH suites in 1.1.0. No name is
//! checked: an SECC's certificate names no host or address, the peer is
//! the one SDP found. Certificates are checked at the system time.
//!
//! One TLS port serves both versions ([`SeccTls::accept`]): the SECC reads
//! the EV's ClientHello first; one that offers TLS 1.3 gets TLS 1.3 (ISO
//! 15118-20 Table 5 lets -2 run over it too, with mutual authentication),
//! one that does not gets TLS 1.2. A handshake that fails ends the
//! connection with [`Error::Tls`] and its reason, which the SECC server
//! reports like any other session end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Error;
use crate::pki::TrustStore;

/// A byte stream a session runs on: plain TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (ISO 15118-2).
    Tls12,
    /// TLS 1.3 (ISO 15118-20).
    Tls13,
}

/// What a handshake agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The version.
    pub version: TlsVersion,
    /// The cipher suite, by its IANA name
    /// (`TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256`, `TLS13_AES_256_GCM_SHA384`).
    pub cipher_suite: String,
    /// The peer's certificates as it sent them, leaf first (DER; empty
    /// when it sent none).
    pub peer_chain: Vec<Vec<u8>>,
}

/// A certificate chain and its private key: what a side presents.
#[derive(Clone)]
#[non_exhaustive]
pub struct Identity {
    /// The leaf, then its sub-CAs from the leaf's issuer up (DER).
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A leaf, its sub-CAs (leaf's issuer first) and the leaf's key (PKCS#8 DER).
    pub fn new(leaf: Vec<u8>, sub_cas: Vec<Vec<u8>>, key_pkcs8: Vec<u8>) -> Self {
        let mut chain = vec![leaf];
        chain.extend(sub_cas);
        Self { chain, key_pkcs8 }
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> Error {
    Error::TlsSetup(format!("{what}: {e}"))
}

// ---- the ClientHello: which version the EV offers ----

/// What a ClientHello offers, read from its first record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Offer {
    pub(crate) tls13: bool,
    /// The `server_name` extension's host name, as sent (RFC 6066 §3).
    pub(crate) server_name: Option<Vec<u8>>,
}

impl Offer {
    /// Whether the ClientHello names something other than a DNS host
    /// name (an IP address, with or without a zone): RFC 6066 allows only
    /// host names, and rustls refuses a ClientHello with any other name.
    #[cfg(feature = "tls")]
    fn names_no_host(&self) -> bool {
        self.server_name.as_deref().is_some_and(|name| {
            std::str::from_utf8(name)
                .ok()
                .and_then(|n| rustls::pki_types::DnsName::try_from(n).ok())
                .is_none()
        })
    }
}

/// Reads the `supported_versions` (RFC 8446 §4.2.1) and `server_name`
/// (RFC 6066 §3) extensions of a ClientHello record; `None` when `record`
/// is no ClientHello. A ClientHello without `supported_versions` offers
/// TLS 1.2 at most.
pub(crate) fn parse_client_hello(record: &[u8]) -> Option<Offer> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    fn len(b: &mut &[u8], n: usize) -> Option<usize> {
        Some(
            take(b, n)?
                .iter()
                .fold(0, |a, x| (a << 8) | usize::from(*x)),
        )
    }
    let mut b = record;
    if take(&mut b, 1)? != [0x16] {
        return None;
    }
    take(&mut b, 2)?;
    let n = len(&mut b, 2)?;
    let mut hs = take(&mut b, n).unwrap_or(b);
    if take(&mut hs, 1)? != [0x01] {
        return None;
    }
    take(&mut hs, 3)?; // the handshake's length (it may go on in a next record)
    take(&mut hs, 2 + 32)?; // legacy_version, random
    let n = len(&mut hs, 1)?;
    take(&mut hs, n)?; // session id
    let n = len(&mut hs, 2)?;
    take(&mut hs, n)?; // cipher suites
    let n = len(&mut hs, 1)?;
    take(&mut hs, n)?; // compression methods
    let mut offer = Offer::default();
    if let Some(n) = len(&mut hs, 2) {
        let mut ext = take(&mut hs, n).unwrap_or(hs);
        while let (Some(kind), Some(n)) = (len(&mut ext, 2), len(&mut ext, 2)) {
            let Some(mut data) = take(&mut ext, n) else {
                break;
            };
            match kind {
                0x002b => {
                    let n = len(&mut data, 1).unwrap_or(0);
                    let versions = take(&mut data, n).unwrap_or_default();
                    offer.tls13 = versions.chunks_exact(2).any(|v| v == [0x03, 0x04]);
                }
                0x0000 => {
                    // server_name_list: entries of name_type (0 = host_name), name
                    let n = len(&mut data, 2).unwrap_or(0);
                    let mut list = take(&mut data, n).unwrap_or_default();
                    while let (Some(kind), Some(n)) = (len(&mut list, 1), len(&mut list, 2)) {
                        let Some(name) = take(&mut list, n) else {
                            break;
                        };
                        if kind == 0 {
                            offer.server_name = Some(name.to_vec());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Some(offer)
}

/// A stream that gives back bytes already read from it before reading on
/// (the ClientHello the SECC read to choose a TLS version).
#[derive(Debug)]
struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let from = self.pos;
            buf.put_slice(&self.prefix[from..from + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Largest first record taken (a TLS record holds at most 2^14 bytes of
/// plaintext; a ClientHello is far smaller).
const MAX_RECORD: usize = 5 + (1 << 14);

/// Reads the first TLS record of `tcp`.
async fn read_first_record(tcp: &mut TcpStream) -> Result<Vec<u8>, Error> {
    let mut rec = vec![0u8; 5];
    tcp.read_exact(&mut rec)
        .await
        .map_err(|e| Error::Tls(format!("reading the ClientHello: {e}")))?;
    if rec[0] != 0x16 {
        return Err(Error::Tls(format!(
            "the peer did not start a TLS handshake (first byte {:#04x})",
            rec[0]
        )));
    }
    let n = usize::from(u16::from_be_bytes([rec[3], rec[4]]));
    if 5 + n > MAX_RECORD {
        return Err(Error::Tls(format!("a first TLS record of {n} bytes")));
    }
    rec.resize(5 + n, 0);
    tcp.read_exact(&mut rec[5..])
        .await
        .map_err(|e| Error::Tls(format!("reading the ClientHello: {e}")))?;
    Ok(rec)
}

// ---- rustls: TLS 1.3 ----

#[cfg(feature = "tls")]
mod tls13 {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
    };
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

    use super::{setup, Identity};
    use crate::pki::{self, CertError, LeafUsage, TrustStore};
    use crate::shell::Error;

    /// ring's provider with the -20 suites only [V2G20-1856]: AES-256-GCM
    /// first, then ChaCha20-Poly1305.
    pub(super) fn provider() -> Arc<CryptoProvider> {
        let ring = rustls::crypto::ring::default_provider();
        Arc::new(CryptoProvider {
            cipher_suites: vec![
                rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
                rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            ..ring
        })
    }

    fn cert_error(e: CertError) -> rustls::Error {
        rustls::Error::InvalidCertificate(match e {
            CertError::Expired { .. } => CertificateError::Expired,
            CertError::NotYetValid { .. } => CertificateError::NotValidYet,
            CertError::UnknownRoot { .. } => CertificateError::UnknownIssuer,
            CertError::BadSignature { .. } => CertificateError::BadSignature,
            CertError::Malformed(_) => CertificateError::BadEncoding,
            other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
        })
    }

    /// The ISO 15118 chain rules ([`pki::verify_chain`]) on what the peer sent.
    fn verify(
        roots: &TrustStore,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let subs: Vec<Vec<u8>> = intermediates.iter().map(|c| c.to_vec()).collect();
        pki::verify_chain(
            end_entity,
            &subs,
            roots,
            now.as_secs(),
            LeafUsage::Signature,
        )
        .map(|_| ())
        .map_err(cert_error)
    }

    /// The handshake signature checks of both verifiers: the provider's
    /// algorithms (rustls' own functions), on a struct with a `provider`.
    macro_rules! handshake_signatures {
        () => {
            fn verify_tls12_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls12_signature(
                    message,
                    cert,
                    dss,
                    &self.provider.signature_verification_algorithms,
                )
            }
            fn verify_tls13_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls13_signature(
                    message,
                    cert,
                    dss,
                    &self.provider.signature_verification_algorithms,
                )
            }
            fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
                self.provider
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        };
    }

    /// The EVCC's check of the SECC: its chain against the V2G roots, no name.
    #[derive(Debug)]
    pub(super) struct SeccVerifier {
        pub(super) roots: TrustStore,
        pub(super) provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for SeccVerifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            verify(&self.roots, end_entity, intermediates, now)?;
            Ok(ServerCertVerified::assertion())
        }
        handshake_signatures!();
    }

    /// The SECC's check of the EVCC (-20 mutual authentication): its
    /// chain against the OEM roots; a client without one is refused.
    #[derive(Debug)]
    pub(super) struct EvccVerifier {
        pub(super) roots: TrustStore,
        pub(super) hints: Vec<DistinguishedName>,
        pub(super) provider: Arc<CryptoProvider>,
    }

    impl ClientCertVerifier for EvccVerifier {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &self.hints
        }
        fn verify_client_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            verify(&self.roots, end_entity, intermediates, now)?;
            Ok(ClientCertVerified::assertion())
        }
        handshake_signatures!();
    }

    pub(super) fn chain_and_key(
        id: &Identity,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            id.chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_pkcs8.clone())),
        )
    }

    pub(super) fn server(
        identity: &Identity,
        evcc_roots: &TrustStore,
    ) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = provider();
        let verifier = EvccVerifier {
            hints: evcc_roots
                .roots()
                .iter()
                .map(|r| DistinguishedName::from(r.subject_der()))
                .collect(),
            roots: evcc_roots.clone(),
            provider: Arc::clone(&provider),
        };
        let (chain, key) = chain_and_key(identity);
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| setup("TLS 1.3", e))?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(chain, key)
            .map_err(|e| setup("the SECC certificate", e))?;
        Ok(Arc::new(config))
    }

    pub(super) fn client(
        secc_roots: &TrustStore,
        identity: Option<&Identity>,
    ) -> Result<Arc<rustls::ClientConfig>, Error> {
        let provider = provider();
        let verifier = SeccVerifier {
            roots: secc_roots.clone(),
            provider: Arc::clone(&provider),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| setup("TLS 1.3", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match identity {
            Some(id) => {
                let (chain, key) = chain_and_key(id);
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| setup("the EVCC certificate", e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

// ---- OpenSSL: TLS 1.2, and TLS 1.3 for the ClientHellos rustls refuses ----

#[cfg(feature = "tls-openssl")]
mod ossl {
    use openssl::pkey::PKey;
    use openssl::ssl::{
        SslAcceptor, SslAcceptorBuilder, SslConnector, SslMethod, SslVerifyMode, SslVersion,
    };
    use openssl::x509::store::{X509Store, X509StoreBuilder};
    use openssl::x509::X509;

    use super::{setup, Identity};
    use crate::pki::TrustStore;
    use crate::shell::Error;

    /// ISO 15118-2's suite with an ephemeral key (its static-ECDH sibling
    /// is gone from OpenSSL).
    pub(super) const CIPHERS: &str = "ECDHE-ECDSA-AES128-SHA256";

    /// ISO 15118-20's TLS 1.3 suites [V2G20-1856], in rustls' order.
    const CIPHERSUITES_13: &str = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

    fn e(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> Error {
        move |err| setup(what, err)
    }

    fn store(roots: &TrustStore, what: &'static str) -> Result<X509Store, Error> {
        let mut store = X509StoreBuilder::new().map_err(e(what))?;
        for root in roots.roots() {
            store
                .add_cert(X509::from_der(root.der()).map_err(e(what))?)
                .map_err(e(what))?;
        }
        Ok(store.build())
    }

    pub(super) fn acceptor(identity: &Identity) -> Result<SslAcceptor, Error> {
        let mut b =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(e("OpenSSL"))?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(e("TLS 1.2"))?;
        b.set_max_proto_version(Some(SslVersion::TLS1_2))
            .map_err(e("TLS 1.2"))?;
        b.set_cipher_list(CIPHERS)
            .map_err(e("the -2 cipher suite"))?;
        b.set_groups_list("P-256").map_err(e("secp256r1"))?;
        present(&mut b, identity)?;
        b.set_verify(SslVerifyMode::NONE);
        Ok(b.build())
    }

    /// TLS 1.3 as the rustls server speaks it (the -20 suites, the EV's
    /// certificate required and chained to `evcc_roots`, those roots'
    /// names sent as hints), for the ClientHellos rustls refuses.
    pub(super) fn acceptor13(
        identity: &Identity,
        evcc_roots: &TrustStore,
    ) -> Result<SslAcceptor, Error> {
        let mut b =
            SslAcceptor::mozilla_modern_v5(SslMethod::tls_server()).map_err(e("OpenSSL"))?;
        b.set_min_proto_version(Some(SslVersion::TLS1_3))
            .map_err(e("TLS 1.3"))?;
        b.set_max_proto_version(Some(SslVersion::TLS1_3))
            .map_err(e("TLS 1.3"))?;
        b.set_ciphersuites(CIPHERSUITES_13)
            .map_err(e("the -20 cipher suites"))?;
        present(&mut b, identity)?;
        for root in evcc_roots.roots() {
            let root = X509::from_der(root.der()).map_err(e("an OEM root"))?;
            b.add_client_ca(&root).map_err(e("an OEM root"))?;
        }
        b.set_cert_store(store(evcc_roots, "the OEM roots")?);
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        Ok(b.build())
    }

    /// The SECC's chain and key on an acceptor.
    fn present(b: &mut SslAcceptorBuilder, identity: &Identity) -> Result<(), Error> {
        let mut certs = identity.chain.iter();
        let leaf = certs
            .next()
            .ok_or_else(|| setup("the SECC certificate", "no certificate"))?;
        let leaf = X509::from_der(leaf).map_err(e("the SECC certificate"))?;
        b.set_certificate(&leaf)
            .map_err(e("the SECC certificate"))?;
        for sub in certs {
            b.add_extra_chain_cert(X509::from_der(sub).map_err(e("a sub-CA certificate"))?)
                .map_err(e("a sub-CA certificate"))?;
        }
        let key = PKey::private_key_from_pkcs8(&identity.key_pkcs8).map_err(e("the SECC key"))?;
        b.set_private_key(&key).map_err(e("the SECC key"))?;
        b.check_private_key()
            .map_err(e("the SECC key does not match its certificate"))
    }

    pub(super) fn connector(secc_roots: &TrustStore) -> Result<SslConnector, Error> {
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(e("OpenSSL"))?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(e("TLS 1.2"))?;
        b.set_max_proto_version(Some(SslVersion::TLS1_2))
            .map_err(e("TLS 1.2"))?;
        b.set_cipher_list(CIPHERS)
            .map_err(e("the -2 cipher suite"))?;
        b.set_groups_list("P-256").map_err(e("secp256r1"))?;
        b.set_cert_store(store(secc_roots, "the V2G roots")?);
        b.set_verify(SslVerifyMode::PEER);
        Ok(b.build())
    }
}

// ---- the SECC's side ----

/// The SECC's TLS: what it presents, what it asks of the EV, which
/// versions it speaks. Built once, shared by every connection.
pub struct SeccTls {
    #[cfg(feature = "tls")]
    tls13: Option<Arc<rustls::ServerConfig>>,
    /// TLS 1.3 for a ClientHello whose server name is no host name.
    #[cfg(all(feature = "tls", feature = "tls-openssl"))]
    tls13_openssl: Option<(openssl::ssl::SslAcceptor, TrustStore)>,
    #[cfg(feature = "tls-openssl")]
    tls12: Option<openssl::ssl::SslAcceptor>,
}

impl std::fmt::Debug for SeccTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SeccTls");
        #[cfg(feature = "tls")]
        d.field("tls13", &self.tls13.is_some());
        #[cfg(feature = "tls-openssl")]
        d.field("tls12", &self.tls12.is_some());
        d.finish()
    }
}

impl Default for SeccTls {
    fn default() -> Self {
        Self::new()
    }
}

impl SeccTls {
    /// No version yet: add at least one.
    pub fn new() -> Self {
        Self {
            #[cfg(feature = "tls")]
            tls13: None,
            #[cfg(all(feature = "tls", feature = "tls-openssl"))]
            tls13_openssl: None,
            #[cfg(feature = "tls-openssl")]
            tls12: None,
        }
    }

    /// Speaks TLS 1.3 (feature `tls`): presents `identity` (SECC leaf and
    /// CPO sub-CAs) and requires the EV's certificate, chained to one of
    /// `evcc_roots` (the OEM roots).
    ///
    /// rustls carries it, and refuses a ClientHello whose `server_name` is
    /// no DNS host name (RFC 6066 allows no other), as some EVs send: an
    /// IP address, or a link-local one with its zone (`fe80::1%eth0`).
    /// With feature `tls-openssl` too, such a ClientHello gets the same
    /// TLS 1.3 from OpenSSL (the -20 suites, the EV's certificate required
    /// and checked by OpenSSL against `evcc_roots`, then by
    /// [`crate::pki::verify_chain`] as rustls does); the name is ignored
    /// either way.
    ///
    /// # Errors
    ///
    /// [`Error::TlsSetup`] when the key does not fit the certificate or
    /// is of no supported kind.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls13(
        mut self,
        identity: &Identity,
        evcc_roots: &TrustStore,
    ) -> Result<Self, Error> {
        self.tls13 = Some(tls13::server(identity, evcc_roots)?);
        #[cfg(feature = "tls-openssl")]
        {
            self.tls13_openssl =
                Some((ossl::acceptor13(identity, evcc_roots)?, evcc_roots.clone()));
        }
        Ok(self)
    }

    /// Speaks TLS 1.2 with ISO 15118-2's suite (feature `tls-openssl`):
    /// presents `identity`, asks the EV for nothing.
    ///
    /// # Errors
    ///
    /// [`Error::TlsSetup`] when OpenSSL refuses the certificate or key.
    #[cfg(feature = "tls-openssl")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls-openssl")))]
    pub fn with_tls12(mut self, identity: &Identity) -> Result<Self, Error> {
        self.tls12 = Some(ossl::acceptor(identity)?);
        Ok(self)
    }

    /// Runs the handshake on an accepted connection within `timeout`: TLS
    /// 1.3 when the EV offers it and it is configured, TLS 1.2 otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] with the reason when the handshake fails (a
    /// certificate refused by either side, no common version or suite,
    /// not TLS at all) or does not end in time.
    pub async fn accept(
        &self,
        mut tcp: TcpStream,
        timeout: Duration,
    ) -> Result<(Box<dyn Io>, TlsInfo), Error> {
        let handshake = async {
            let record = read_first_record(&mut tcp).await?;
            let offer = parse_client_hello(&record)
                .ok_or_else(|| Error::Tls("the first TLS record is no ClientHello".into()))?;
            let stream = Rewind {
                prefix: record,
                pos: 0,
                inner: tcp,
            };
            self.handshake(stream, offer).await
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .unwrap_or_else(|_| Err(Error::Tls(format!("no handshake within {timeout:?}"))))
    }

    #[allow(unused_variables)]
    async fn handshake(
        &self,
        stream: Rewind<TcpStream>,
        offer: Offer,
    ) -> Result<(Box<dyn Io>, TlsInfo), Error> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls13 {
            #[cfg(feature = "tls-openssl")]
            let use13 = offer.tls13 || self.tls12.is_none();
            #[cfg(not(feature = "tls-openssl"))]
            let use13 = true;
            #[cfg(feature = "tls-openssl")]
            if use13 && offer.names_no_host() {
                if let Some((acceptor, evcc_roots)) = &self.tls13_openssl {
                    let (tls, info) = openssl_accept(acceptor, stream).await?;
                    check_evcc_chain(evcc_roots, &info)?;
                    return Ok((tls, info));
                }
            }
            if use13 {
                let tls = tokio_rustls::TlsAcceptor::from(Arc::clone(config))
                    .accept(stream)
                    .await
                    .map_err(|e| Error::Tls(e.to_string()))?;
                let info = rustls_info(tls.get_ref().1);
                return Ok((Box::new(tls), info));
            }
        }
        #[cfg(feature = "tls-openssl")]
        if let Some(acceptor) = &self.tls12 {
            return openssl_accept(acceptor, stream).await;
        }
        Err(Error::TlsSetup("no TLS version configured".into()))
    }
}

/// An OpenSSL handshake on an accepted connection.
#[cfg(feature = "tls-openssl")]
async fn openssl_accept(
    acceptor: &openssl::ssl::SslAcceptor,
    stream: Rewind<TcpStream>,
) -> Result<(Box<dyn Io>, TlsInfo), Error> {
    let ssl = openssl::ssl::Ssl::new(acceptor.context()).map_err(|e| setup("OpenSSL", e))?;
    let mut tls = tokio_openssl::SslStream::new(ssl, stream).map_err(|e| setup("OpenSSL", e))?;
    if let Err(e) = Pin::new(&mut tls).accept().await {
        return Err(Error::Tls(openssl_reason(&e, tls.ssl())));
    }
    let info = openssl_info(tls.ssl());
    Ok((Box::new(tls), info))
}

/// The ISO 15118 chain rules ([`crate::pki::verify_chain`]) on the EV's
/// chain that OpenSSL took, as the rustls server's verifier applies them.
#[cfg(all(feature = "tls", feature = "tls-openssl"))]
fn check_evcc_chain(evcc_roots: &TrustStore, info: &TlsInfo) -> Result<(), Error> {
    let (leaf, subs) = info
        .peer_chain
        .split_first()
        .ok_or_else(|| Error::Tls("the EV sent no certificate".into()))?;
    let now = rustls::pki_types::UnixTime::now().as_secs();
    crate::pki::verify_chain(
        leaf,
        subs,
        evcc_roots,
        now,
        crate::pki::LeafUsage::Signature,
    )
    .map(|_| ())
    .map_err(|e| Error::Tls(format!("invalid peer certificate: {e}")))
}

// ---- the EVCC's side ----

/// The EVCC's TLS: the roots it checks the SECC against and, for TLS 1.3,
/// the certificate it presents.
pub struct EvccTls {
    #[cfg(feature = "tls")]
    tls13: Option<Arc<rustls::ClientConfig>>,
    #[cfg(feature = "tls-openssl")]
    tls12: Option<openssl::ssl::SslConnector>,
    secc_roots: TrustStore,
}

impl std::fmt::Debug for EvccTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("EvccTls");
        #[cfg(feature = "tls")]
        d.field("tls13", &self.tls13.is_some());
        #[cfg(feature = "tls-openssl")]
        d.field("tls12", &self.tls12.is_some());
        d.finish_non_exhaustive()
    }
}

impl EvccTls {
    /// Checks the SECC against `secc_roots` (the V2G roots); no version
    /// yet: add at least one.
    pub fn new(secc_roots: TrustStore) -> Self {
        Self {
            #[cfg(feature = "tls")]
            tls13: None,
            #[cfg(feature = "tls-openssl")]
            tls12: None,
            secc_roots,
        }
    }

    /// Speaks TLS 1.3 (feature `tls`), presenting `identity` (the OEM
    /// chain; -20 requires one, `None` only to test an SECC's refusal).
    ///
    /// # Errors
    ///
    /// [`Error::TlsSetup`] when the key does not fit the certificate or is
    /// of no supported kind.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls13(mut self, identity: Option<&Identity>) -> Result<Self, Error> {
        self.tls13 = Some(tls13::client(&self.secc_roots, identity)?);
        Ok(self)
    }

    /// Speaks TLS 1.2 with ISO 15118-2's suite (feature `tls-openssl`).
    ///
    /// # Errors
    ///
    /// [`Error::TlsSetup`] when OpenSSL refuses a root.
    #[cfg(feature = "tls-openssl")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls-openssl")))]
    pub fn with_tls12(mut self) -> Result<Self, Error> {
        self.tls12 = Some(ossl::connector(&self.secc_roots)?);
        Ok(self)
    }

    /// Runs the handshake of `version` on a connection to the SECC (from
    /// [`super::connect`]) within `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TlsSetup`] when `version` was not configured; [`Error::Tls`]
    /// with the reason when the handshake fails or does not end in time.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        version: TlsVersion,
        timeout: Duration,
    ) -> Result<(Box<dyn Io>, TlsInfo), Error> {
        tokio::time::timeout(timeout, self.handshake(tcp, version))
            .await
            .unwrap_or_else(|_| Err(Error::Tls(format!("no handshake within {timeout:?}"))))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        version: TlsVersion,
    ) -> Result<(Box<dyn Io>, TlsInfo), Error> {
        match version {
            #[cfg(feature = "tls")]
            TlsVersion::Tls13 => {
                let Some(config) = &self.tls13 else {
                    return Err(Error::TlsSetup("TLS 1.3 is not configured".into()));
                };
                let ip = tcp
                    .peer_addr()
                    .map_err(|e| Error::io("peer address", e))?
                    .ip();
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp)
                    .await
                    .map_err(|e| Error::Tls(e.to_string()))?;
                let info = rustls_info(tls.get_ref().1);
                Ok((Box::new(tls), info))
            }
            #[cfg(feature = "tls-openssl")]
            TlsVersion::Tls12 => {
                let Some(connector) = &self.tls12 else {
                    return Err(Error::TlsSetup("TLS 1.2 is not configured".into()));
                };
                let mut config = connector.configure().map_err(|e| setup("OpenSSL", e))?;
                config.set_verify_hostname(false);
                config.set_use_server_name_indication(false);
                let ssl = config.into_ssl("").map_err(|e| setup("OpenSSL", e))?;
                let mut tls =
                    tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| setup("OpenSSL", e))?;
                if let Err(e) = Pin::new(&mut tls).connect().await {
                    return Err(Error::Tls(openssl_reason(&e, tls.ssl())));
                }
                let info = openssl_info(tls.ssl());
                Ok((Box::new(tls), info))
            }
            #[allow(unreachable_patterns)]
            other => Err(Error::TlsSetup(format!(
                "{other:?} is not built in (features tls, tls-openssl)"
            ))),
        }
    }
}

#[cfg(feature = "tls")]
fn rustls_info(conn: &rustls::CommonState) -> TlsInfo {
    TlsInfo {
        version: match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
            _ => TlsVersion::Tls13,
        },
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        peer_chain: conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect(),
    }
}

#[cfg(feature = "tls-openssl")]
fn openssl_info(ssl: &openssl::ssl::SslRef) -> TlsInfo {
    // named as rustls_info names them
    let iana = |name: &str| match name {
        "ECDHE-ECDSA-AES128-SHA256" => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256".to_string(),
        "TLS_AES_256_GCM_SHA384" => "TLS13_AES_256_GCM_SHA384".to_string(),
        "TLS_CHACHA20_POLY1305_SHA256" => "TLS13_CHACHA20_POLY1305_SHA256".to_string(),
        other => other.to_string(),
    };
    TlsInfo {
        version: if ssl.version_str() == "TLSv1.3" {
            TlsVersion::Tls13
        } else {
            TlsVersion::Tls12
        },
        cipher_suite: ssl
            .current_cipher()
            .map(|c| iana(c.name()))
            .unwrap_or_default(),
        peer_chain: peer_chain(ssl),
    }
}

/// The peer's certificates, leaf first. A server's `peer_cert_chain` lacks
/// the client's leaf (OpenSSL's `SSL_get_peer_cert_chain`); a client's
/// starts with the server's.
#[cfg(feature = "tls-openssl")]
fn peer_chain(ssl: &openssl::ssl::SslRef) -> Vec<Vec<u8>> {
    let mut chain: Vec<Vec<u8>> = Vec::new();
    if ssl.is_server() {
        if let Some(leaf) = ssl.peer_certificate() {
            chain.extend(leaf.to_der().ok());
        }
    }
    if let Some(rest) = ssl.peer_cert_chain() {
        chain.extend(rest.iter().filter_map(|c| c.to_der().ok()));
    }
    chain
}

/// OpenSSL's error, with the certificate verification result when that
/// is what failed.
#[cfg(feature = "tls-openssl")]
fn openssl_reason(e: &openssl::ssl::Error, ssl: &openssl::ssl::SslRef) -> String {
    let verify = ssl.verify_result();
    if verify != openssl::x509::X509VerifyResult::OK {
        format!("invalid peer certificate: {} ({e})", verify.error_string())
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with these supported_versions (none: no extension).
    fn hello(versions: Option<&[[u8; 2]]>) -> Vec<u8> {
        named_hello(versions, None)
    }

    /// A ClientHello record with these supported_versions and server name.
    fn named_hello(versions: Option<&[[u8; 2]]>, name: Option<&str>) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x02]); // one suite
        body.extend([1, 0]); // null compression
        let mut ext = Vec::new();
        ext.extend([0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]); // groups: secp256r1
        if let Some(name) = name {
            let n = name.len() as u16;
            ext.extend([0x00, 0x00]);
            ext.extend((n + 5).to_be_bytes());
            ext.extend((n + 3).to_be_bytes());
            ext.push(0); // host_name
            ext.extend(n.to_be_bytes());
            ext.extend(name.as_bytes());
        }
        if let Some(v) = versions {
            ext.extend([
                0x00,
                0x2b,
                0x00,
                (1 + 2 * v.len()) as u8,
                (2 * v.len()) as u8,
            ]);
            for x in v {
                ext.extend(x);
            }
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn client_hello_versions() {
        let offer = |tls13| {
            Some(Offer {
                tls13,
                server_name: None,
            })
        };
        assert_eq!(parse_client_hello(&hello(None)), offer(false));
        assert_eq!(parse_client_hello(&hello(Some(&[[3, 4]]))), offer(true));
        assert_eq!(
            parse_client_hello(&hello(Some(&[[3, 4], [3, 3]]))),
            offer(true)
        );
        assert_eq!(parse_client_hello(&hello(Some(&[[3, 3]]))), offer(false));
        // not a handshake, not a ClientHello, cut short: no offer, no panic
        assert_eq!(parse_client_hello(b"\x17\x03\x03\x00\x01\x00"), None);
        let mut server_hello = hello(None);
        server_hello[5] = 0x02;
        assert_eq!(parse_client_hello(&server_hello), None);
        let full = hello(Some(&[[3, 4]]));
        for n in 0..full.len() {
            let _ = parse_client_hello(&full[..n]);
        }
        assert_eq!(parse_client_hello(&full[..20]), None);
    }

    #[test]
    fn client_hello_server_name() {
        let named = |name| parse_client_hello(&named_hello(Some(&[[3, 4]]), name)).unwrap();
        assert_eq!(named(None).server_name, None);
        let josev = named(Some("fe80::e0:2ff:fe00:1%veth1"));
        assert!(josev.tls13);
        assert_eq!(
            josev.server_name.as_deref(),
            Some(&b"fe80::e0:2ff:fe00:1%veth1"[..])
        );
        // cut anywhere inside the name: no panic
        let full = named_hello(Some(&[[3, 4]]), Some("secc.example"));
        for n in 0..full.len() {
            let _ = parse_client_hello(&full[..n]);
        }
        #[cfg(feature = "tls")]
        {
            assert!(!named(None).names_no_host());
            assert!(!named(Some("secc.example")).names_no_host());
            assert!(josev.names_no_host());
            assert!(named(Some("192.168.1.1")).names_no_host());
            assert!(named(Some("fe80::1")).names_no_host());
        }
    }

    #[tokio::test]
    async fn rewind_gives_the_prefix_back_first() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = Rewind {
            prefix: b"hello ".to_vec(),
            pos: 0,
            inner: b,
        };
        tokio::io::AsyncWriteExt::write_all(&mut a, b"world")
            .await
            .unwrap();
        drop(a);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
