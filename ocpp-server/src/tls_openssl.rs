//! OCPP's TLS on OpenSSL (feature `tls-openssl`): the cipher suites OCPP
//! requires of a CSMS, which rustls cannot offer.
//!
//! OCPP 2.0.1 A00.FR.318 (and the 1.6 security white paper, OCTT
//! TC_086_CSMS) require a CSMS to speak TLS 1.2 or above with at least
//! `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`,
//! `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`,
//! `TLS_RSA_WITH_AES_128_GCM_SHA256` and `TLS_RSA_WITH_AES_256_GCM_SHA384`,
//! so that a station with either an ECDSA or an RSA trust chain can connect.
//! The last two are static-RSA key exchange, which rustls deliberately does
//! not implement (no forward secrecy). A CSMS that must pass conformance
//! therefore serves its `wss://` port through this module instead of a
//! `rustls::ServerConfig`: [`acceptor`] builds an OpenSSL acceptor holding an
//! ECDSA *and* an RSA certificate at once (OpenSSL picks the one the
//! negotiated suite needs), and [`Tls::OpenSsl`](crate::Tls::OpenSsl)
//! hands it to [`Server::serve_on`](crate::Server::serve_on).
//!
//! The trade-off: static RSA has no forward secrecy and OpenSSL is C, so
//! the rustls listener stays the default and this one is an explicit choice
//! for networks whose stations (or whose certification) need these suites.
//!
//! What the acceptor offers, in the server's order of preference:
//!
//! | TLS | suites |
//! | --- | --- |
//! | 1.3 | OpenSSL's defaults (AES-GCM, ChaCha20-Poly1305) |
//! | 1.2 | [`TLS12_CIPHERS`]: the four of A00.FR.318, then ECDHE-RSA with AES-GCM for RSA chains |
//!
//! Nothing below TLS 1.2, no CBC, no SHA-1 MAC. Keys must be at least 2048
//! bits (RSA) or 224 bits (elliptic curves), as A00.FR.318's neighbours
//! require; a shorter one is refused when the acceptor is built.

use openssl::pkey::{Id, PKey};
use openssl::ssl::{SslAcceptor, SslMethod, SslOptions, SslVerifyMode, SslVersion};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

/// The TLS 1.2 suites offered (OpenSSL names), strongest first within each
/// key type: ECDHE-ECDSA AES-GCM and static-RSA AES-GCM (A00.FR.318), and
/// ECDHE-RSA AES-GCM so RSA stations that can get forward secrecy do.
pub const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-GCM-SHA256";

/// A certificate chain (leaf first) and its private key, both PEM.
#[derive(Debug, Clone, Copy)]
pub struct PemIdentity<'a> {
    /// The leaf certificate, then any intermediates.
    pub chain: &'a [u8],
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: &'a [u8],
}

/// Why an OpenSSL acceptor could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct TlsSetupError {
    what: String,
    why: String,
}

impl TlsSetupError {
    fn new(what: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Self {
            what: what.into(),
            why: why.to_string(),
        }
    }
}

/// The OpenSSL acceptor of a CSMS's `wss://` port with `identities` (one
/// per key type: typically an ECDSA and an RSA one) and, with
/// `client_ca` (PEM, one or more certificates), client certificates
/// signed by it asked for but not required at the handshake: profile 2
/// stations (password) and profile 3 stations (certificate) share the port,
/// and the WebSocket handshake refuses a profile 3 station without one.
///
/// # Errors
///
/// An unreadable certificate or key, a key that does not match its
/// certificate, a key too short for OCPP, two identities of the same key
/// type, or no identity at all.
pub fn acceptor(
    identities: &[PemIdentity<'_>],
    client_ca: Option<&[u8]>,
) -> Result<SslAcceptor, TlsSetupError> {
    let ossl =
        |what: &'static str| move |e: openssl::error::ErrorStack| TlsSetupError::new(what, e);
    if identities.is_empty() {
        return Err(TlsSetupError::new("server certificate", "none given"));
    }
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(ossl("OpenSSL"))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(ossl("TLS 1.2"))?;
    b.set_cipher_list(TLS12_CIPHERS)
        .map_err(ossl("the TLS 1.2 cipher suites"))?;
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
    let mut seen: Vec<Id> = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let what = |part: &str| format!("server certificate {}: {part}", i + 1);
        let mut chain = X509::stack_from_pem(identity.chain)
            .map_err(|e| TlsSetupError::new(what("chain"), e))?
            .into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| TlsSetupError::new(what("chain"), "no certificate"))?;
        let key = PKey::private_key_from_pem(identity.key)
            .map_err(|e| TlsSetupError::new(what("key"), e))?;
        let min_bits = match key.id() {
            Id::RSA => 2048,
            Id::EC => 224,
            other => {
                return Err(TlsSetupError::new(
                    what("key"),
                    format!("{other:?} keys are not used by OCPP (RSA or EC)"),
                ))
            }
        };
        if key.bits() < min_bits {
            return Err(TlsSetupError::new(
                what("key"),
                format!("{} bits, OCPP needs at least {min_bits}", key.bits()),
            ));
        }
        if seen.contains(&key.id()) {
            return Err(TlsSetupError::new(
                what("key"),
                "a second certificate of the same key type (one ECDSA and one RSA at most)",
            ));
        }
        let matches = leaf.public_key().is_ok_and(|public| public.public_eq(&key));
        if !matches {
            return Err(TlsSetupError::new(
                what("key"),
                "the key does not match the certificate",
            ));
        }
        seen.push(key.id());
        // each key type has its own slot (OpenSSL serves the one the
        // negotiated suite needs); the intermediates go to the context's
        // chain store, from which OpenSSL builds each leaf's own chain
        b.set_certificate(&leaf)
            .map_err(|e| TlsSetupError::new(what("certificate"), e))?;
        b.set_private_key(&key)
            .map_err(|e| TlsSetupError::new(what("key"), e))?;
        b.check_private_key()
            .map_err(|e| TlsSetupError::new(what("key"), e))?;
        for sub in chain {
            b.cert_store_mut()
                .add_cert(sub)
                .map_err(|e| TlsSetupError::new(what("intermediate"), e))?;
        }
    }
    match client_ca {
        Some(pem) => {
            let mut store = X509StoreBuilder::new().map_err(ossl("client CA"))?;
            let roots = X509::stack_from_pem(pem).map_err(ossl("client CA"))?;
            if roots.is_empty() {
                return Err(TlsSetupError::new("client CA", "no certificate"));
            }
            for root in roots {
                store.add_cert(root).map_err(ossl("client CA"))?;
            }
            b.set_verify_cert_store(store.build())
                .map_err(ossl("client CA"))?;
            // asked for, checked when given, not required (profile 2 shares the port)
            b.set_verify(SslVerifyMode::PEER);
        }
        None => b.set_verify(SslVerifyMode::NONE),
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::Private;
    use openssl::rsa::Rsa;
    use openssl::x509::X509NameBuilder;

    fn self_signed(key: &PKey<Private>) -> Vec<u8> {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "csms.test").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build().to_pem().unwrap()
    }

    fn ec(nid: Nid) -> PKey<Private> {
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap())
            .unwrap()
    }

    fn rsa(bits: u32) -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
    }

    /// The acceptor's error, if building it failed.
    fn refusal(built: Result<SslAcceptor, TlsSetupError>) -> Option<String> {
        built.err().map(|e| e.to_string())
    }

    fn build(keys: &[&PKey<Private>]) -> Result<SslAcceptor, TlsSetupError> {
        let pems: Vec<(Vec<u8>, Vec<u8>)> = keys
            .iter()
            .map(|k| (self_signed(k), k.private_key_to_pem_pkcs8().unwrap()))
            .collect();
        let ids: Vec<PemIdentity<'_>> = pems
            .iter()
            .map(|(c, k)| PemIdentity { chain: c, key: k })
            .collect();
        acceptor(&ids, None)
    }

    #[test]
    fn an_ecdsa_and_an_rsa_certificate_at_once() {
        let built = build(&[&ec(Nid::X9_62_PRIME256V1), &rsa(2048)]);
        assert_eq!(refusal(built), None);
    }

    #[test]
    fn keys_too_short_for_ocpp_are_refused() {
        let e = refusal(build(&[&rsa(1024)])).expect("refused");
        assert!(e.contains("1024 bits"), "{e}");
        let e = refusal(build(&[&ec(Nid::SECP192K1)])).expect("refused");
        assert!(e.contains("192 bits"), "{e}");
    }

    #[test]
    fn two_certificates_of_one_key_type_are_refused() {
        let e = refusal(build(&[&rsa(2048), &rsa(2048)])).expect("refused");
        assert!(e.contains("same key type"), "{e}");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (a, b) = (ec(Nid::X9_62_PRIME256V1), ec(Nid::X9_62_PRIME256V1));
        let cert = self_signed(&a);
        let key = b.private_key_to_pem_pkcs8().unwrap();
        let e = refusal(acceptor(
            &[PemIdentity {
                chain: &cert,
                key: &key,
            }],
            None,
        ));
        let e = e.expect("refused");
        assert!(e.contains("does not match"), "{e}");
        assert!(acceptor(&[], None).is_err());
    }
}
