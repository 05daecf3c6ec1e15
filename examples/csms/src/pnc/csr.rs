//! The rules a station's certificate signing request must meet before the
//! CSMS's CA signs it (OCPP 2.0.1 A02/A03, A02.FR.07-09; ISO 15118-2
//! Annex F for the V2G certificate): PKCS#10 in PEM, self-signed by the
//! key it carries, the common name the station's identity, the
//! organisation the one configured, and a key the certificate's use
//! allows ([`KeyRule`]): for the charging-station certificate (OCPP's
//! TLS client certificate) EC secp256r1 or secp384r1, or RSA of 2048 to
//! 8192 bits; for the V2G (SECC) certificate EC secp256r1 only, the one
//! curve ISO 15118-2 allows. Pure: text in, a checked request or the
//! reason out.

use p256::ecdsa::signature::Verifier;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::request::CertReq;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// The smallest and largest RSA modulus taken, bits (OCPP 2.0.1 part 2
/// §A00: RSA keys of at least 2048 bits; ring verifies up to 8192).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Which keys a certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// The charging-station (TLS client) certificate: EC secp256r1 or
    /// secp384r1, or RSA of 2048 to 8192 bits.
    ChargingStation,
    /// The V2G (SECC) certificate: EC secp256r1 (ISO 15118-2).
    V2g,
}

/// The key a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// EC secp256r1.
    P256,
    /// EC secp384r1.
    P384,
    /// RSA, of this many bits.
    Rsa(usize),
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::P256 => f.write_str("EC secp256r1"),
            KeyKind::P384 => f.write_str("EC secp384r1"),
            KeyKind::Rsa(bits) => write!(f, "RSA {bits} bits"),
        }
    }
}

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Not a PEM PKCS#10 request.
    #[error("not a PEM certificate signing request: {0}")]
    Malformed(String),
    /// A key this CSMS does not take at all (another curve, another
    /// algorithm, an RSA key too small or too large).
    #[error("the key is {0}: EC secp256r1 or secp384r1, or RSA of 2048 to 8192 bits, is needed")]
    KeyType(String),
    /// A key the certificate's use does not allow.
    #[error("a {usage} certificate takes an EC secp256r1 key, not {key}")]
    KeyForUse {
        /// The certificate's use.
        usage: &'static str,
        /// The key found.
        key: KeyKind,
    },
    /// The request is not signed by its own key with a signature
    /// algorithm of that key (ECDSA or RSA PKCS#1 v1.5, SHA-256/384/512).
    #[error("the request's signature does not verify with its key")]
    Signature,
    /// The common name is not the station's identity.
    #[error("CN {found:?} is not the station identity {expected:?}")]
    CommonName {
        /// What the CSR names.
        found: Option<String>,
        /// The identity it must name.
        expected: String,
    },
    /// The organisation is not the configured one.
    #[error("O {found:?} is not the organisation {expected:?}")]
    Organisation {
        /// What the CSR names.
        found: Option<String>,
        /// The configured organisation.
        expected: String,
    },
}

/// The bits of an RSA public key (`RSAPublicKey`, RFC 8017 A.1.1: the
/// modulus's length without its sign byte); `None` if it is no such key.
fn rsa_bits(key: &[u8]) -> Option<usize> {
    // SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let parts = Vec::<x509_cert::der::asn1::UintRef<'_>>::from_der(key).ok()?;
    let [modulus, _exponent] = parts.as_slice() else {
        return None;
    };
    let m = modulus.as_bytes();
    let first = *m.first()?;
    Some(m.len() * 8 - first.leading_zeros() as usize)
}

/// The kind of the key in `spki`.
fn key_kind(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyKind, CsrError> {
    let key = spki.subject_public_key.raw_bytes();
    if spki.algorithm.oid == OID_RSA {
        let bits =
            rsa_bits(key).ok_or_else(|| CsrError::KeyType("an unreadable RSA key".into()))?;
        return if RSA_BITS.contains(&bits) {
            Ok(KeyKind::Rsa(bits))
        } else {
            Err(CsrError::KeyType(KeyKind::Rsa(bits).to_string()))
        };
    }
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(CsrError::KeyType(format!(
            "of algorithm {}",
            spki.algorithm.oid
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    match curve {
        Some(c) if c == OID_P256 => Ok(KeyKind::P256),
        Some(c) if c == OID_P384 => Ok(KeyKind::P384),
        Some(c) => Err(CsrError::KeyType(format!("EC on curve {c}"))),
        None => Err(CsrError::KeyType("EC without a named curve".into())),
    }
}

/// Whether `signature` over `message` (of algorithm `alg`) verifies with
/// the request's own key of kind `kind`.
fn verifies(
    kind: KeyKind,
    key: &[u8],
    alg: ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> bool {
    use ring::signature as sig;
    let ring_alg: &dyn sig::VerificationAlgorithm = match (kind, alg) {
        (KeyKind::P256, a) if a == OID_ECDSA_SHA256 => {
            // RustCrypto for the curve this CA itself uses
            let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(key) else {
                return false;
            };
            let Ok(s) = p256::ecdsa::Signature::from_der(signature) else {
                return false;
            };
            return key.verify(message, &s).is_ok();
        }
        (KeyKind::P256, a) if a == OID_ECDSA_SHA384 => &sig::ECDSA_P256_SHA384_ASN1,
        (KeyKind::P384, a) if a == OID_ECDSA_SHA256 => &sig::ECDSA_P384_SHA256_ASN1,
        (KeyKind::P384, a) if a == OID_ECDSA_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        (KeyKind::Rsa(_), a) if a == OID_RSA_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        (KeyKind::Rsa(_), a) if a == OID_RSA_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        (KeyKind::Rsa(_), a) if a == OID_RSA_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        _ => return false,
    };
    sig::UnparsedPublicKey::new(ring_alg, key)
        .verify(message, signature)
        .is_ok()
}

/// A request that met the rules: the key to certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    /// The subject public key.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// Its kind.
    pub key: KeyKind,
    /// The common name (the station identity).
    pub common_name: String,
    /// The organisation.
    pub organisation: String,
}

/// Checks `pem` for station `identity` and organisation `organisation`,
/// its key by `rule`.
pub fn check(
    pem: &str,
    identity: &str,
    organisation: &str,
    rule: KeyRule,
) -> Result<CheckedCsr, CsrError> {
    let req = CertReq::from_pem(pem.trim()).map_err(|e| CsrError::Malformed(e.to_string()))?;
    let spki = &req.info.public_key;
    let kind = key_kind(spki)?;
    if rule == KeyRule::V2g && kind != KeyKind::P256 {
        return Err(CsrError::KeyForUse {
            usage: "V2G",
            key: kind,
        });
    }
    let info = req.info.to_der().map_err(|_| CsrError::Signature)?;
    let signature = req.signature.as_bytes().ok_or(CsrError::Signature)?;
    let key = spki.subject_public_key.raw_bytes();
    if !verifies(kind, key, req.algorithm.oid, &info, signature) {
        return Err(CsrError::Signature);
    }
    let text = |v: x509_cert::der::Result<Option<x509_cert::ext::pkix::name::DirectoryString>>| {
        v.ok().flatten().map(|s| s.value().into_owned())
    };
    let cn = text(req.info.subject.common_name());
    if cn.as_deref() != Some(identity) {
        return Err(CsrError::CommonName {
            found: cn,
            expected: identity.into(),
        });
    }
    let o = text(req.info.subject.organization());
    if o.as_deref() != Some(organisation) {
        return Err(CsrError::Organisation {
            found: o,
            expected: organisation.into(),
        });
    }
    Ok(CheckedCsr {
        public_key: spki.clone(),
        key: kind,
        common_name: identity.into(),
        organisation: organisation.into(),
    })
}

/// A CSR for `subject` (an RFC 4514 name such as `CN=CS-1,O=evproto`)
/// signed by `key`, in PEM: what a station (the simulator, a test) sends.
///
/// # Errors
///
/// The name does not parse or the request cannot be encoded.
pub fn request(subject: &str, key: &p256::ecdsa::SigningKey) -> Result<String, String> {
    use std::str::FromStr;
    use x509_cert::builder::Builder;
    use x509_cert::der::EncodePem;
    let name = x509_cert::name::Name::from_str(subject).map_err(|e| e.to_string())?;
    let builder = x509_cert::request::RequestBuilder::new(name).map_err(|e| e.to_string())?;
    let req = builder
        .build::<_, p256::ecdsa::DerSignature>(key)
        .map_err(|e| e.to_string())?;
    req.to_pem(x509_cert::der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[b; 32]).unwrap()
    }

    #[test]
    fn a_good_request_is_checked_and_each_rule_refuses() {
        let pem = request("CN=CS-1,O=evproto", &key(3)).unwrap();
        let ok = check(&pem, "CS-1", "evproto", KeyRule::ChargingStation).unwrap();
        assert_eq!(ok.common_name, "CS-1");
        assert_eq!(
            check(&pem, "CS-2", "evproto", KeyRule::ChargingStation),
            Err(CsrError::CommonName {
                found: Some("CS-1".into()),
                expected: "CS-2".into()
            })
        );
        assert_eq!(
            check(&pem, "CS-1", "other", KeyRule::ChargingStation),
            Err(CsrError::Organisation {
                found: Some("evproto".into()),
                expected: "other".into()
            })
        );
        let no_o = request("CN=CS-1", &key(3)).unwrap();
        assert!(matches!(
            check(&no_o, "CS-1", "evproto", KeyRule::ChargingStation),
            Err(CsrError::Organisation { found: None, .. })
        ));
        assert!(matches!(
            check("garbage", "CS-1", "evproto", KeyRule::ChargingStation),
            Err(CsrError::Malformed(_))
        ));
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let pem = request("CN=CS-1,O=evproto", &key(3)).unwrap();
        let mut req = CertReq::from_pem(pem.trim()).unwrap();
        // the key of another: the signature no longer verifies with it
        let other = request("CN=CS-1,O=evproto", &key(4)).unwrap();
        req.info.public_key = CertReq::from_pem(other.trim()).unwrap().info.public_key;
        use x509_cert::der::EncodePem;
        let pem = req.to_pem(x509_cert::der::pem::LineEnding::LF).unwrap();
        assert_eq!(
            check(&pem, "CS-1", "evproto", KeyRule::ChargingStation),
            Err(CsrError::Signature)
        );
    }

    /// Requests OpenSSL made (`openssl req -new`, testdata/): P-384 (with
    /// SHA-256 and SHA-384) and RSA 2048 are taken for the charging-station
    /// certificate and refused for the V2G one; RSA 1024 and secp256k1
    /// are refused for both, with the key named.
    #[test]
    fn openssl_requests_with_p384_and_rsa_keys_by_use() {
        let cs = KeyRule::ChargingStation;
        for (pem, kind) in [
            (include_str!("testdata/p384.csr.pem"), KeyKind::P384),
            (include_str!("testdata/p384-sha384.csr.pem"), KeyKind::P384),
            (include_str!("testdata/rsa2048.csr.pem"), KeyKind::Rsa(2048)),
        ] {
            let ok = check(pem, "CS-1", "evproto", cs).unwrap();
            assert_eq!(ok.key, kind);
            assert_eq!(
                check(pem, "CS-1", "evproto", KeyRule::V2g),
                Err(CsrError::KeyForUse {
                    usage: "V2G",
                    key: kind
                })
            );
        }
        let small = include_str!("testdata/rsa1024.csr.pem");
        assert_eq!(
            check(small, "CS-1", "evproto", cs),
            Err(CsrError::KeyType("RSA 1024 bits".into()))
        );
        let k256 = check(
            include_str!("testdata/secp256k1.csr.pem"),
            "CS-1",
            "evproto",
            cs,
        );
        assert_eq!(
            k256,
            Err(CsrError::KeyType("EC on curve 1.3.132.0.10".into()))
        );
        assert!(k256.unwrap_err().to_string().contains("secp384r1"));
    }

    /// A P-384 request whose signature was made by another key is refused.
    #[test]
    fn a_p384_request_signed_by_another_key_is_refused() {
        let pem = include_str!("testdata/p384.csr.pem");
        let mut req = CertReq::from_pem(pem.trim()).unwrap();
        let other = CertReq::from_pem(include_str!("testdata/rsa2048.csr.pem").trim()).unwrap();
        req.signature = other.signature;
        use x509_cert::der::EncodePem;
        let pem = req.to_pem(x509_cert::der::pem::LineEnding::LF).unwrap();
        assert_eq!(
            check(&pem, "CS-1", "evproto", KeyRule::ChargingStation),
            Err(CsrError::Signature)
        );
    }
}
