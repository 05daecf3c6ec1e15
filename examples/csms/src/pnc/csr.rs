//! The rules a station's certificate signing request must meet before the
//! CSMS's CA signs it (OCPP 2.0.1 A02/A03, A02.FR.07-09; ISO 15118-2
//! Annex F for the V2G certificate): PKCS#10 in PEM, self-signed by the
//! key it carries, an EC secp256r1 key (the only curve this CA signs and
//! ISO 15118-2 allows), the common name the station's identity, the
//! organisation the one configured. Pure: text in, a checked request or
//! the reason out.

use p256::ecdsa::signature::Verifier;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{DecodePem, Encode};
use x509_cert::request::CertReq;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Not a PEM PKCS#10 request.
    #[error("not a PEM certificate signing request: {0}")]
    Malformed(String),
    /// Not an EC key on secp256r1 (RSA, another curve).
    #[error("the key is not EC secp256r1")]
    KeyType,
    /// The request is not signed with ecdsa-with-SHA256 by its own key.
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

/// A request that met the rules: the key to certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    /// The subject public key (secp256r1).
    pub public_key: SubjectPublicKeyInfoOwned,
    /// The common name (the station identity).
    pub common_name: String,
    /// The organisation.
    pub organisation: String,
}

/// Checks `pem` for station `identity` and organisation `organisation`.
pub fn check(pem: &str, identity: &str, organisation: &str) -> Result<CheckedCsr, CsrError> {
    let req = CertReq::from_pem(pem.trim()).map_err(|e| CsrError::Malformed(e.to_string()))?;
    let spki = &req.info.public_key;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_P256) {
        return Err(CsrError::KeyType);
    }
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| CsrError::KeyType)?;
    if req.algorithm.oid != OID_ECDSA_SHA256 {
        return Err(CsrError::Signature);
    }
    let info = req.info.to_der().map_err(|_| CsrError::Signature)?;
    let sig = req
        .signature
        .as_bytes()
        .and_then(|b| p256::ecdsa::Signature::from_der(b).ok())
        .ok_or(CsrError::Signature)?;
    key.verify(&info, &sig).map_err(|_| CsrError::Signature)?;
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
        let ok = check(&pem, "CS-1", "evproto").unwrap();
        assert_eq!(ok.common_name, "CS-1");
        assert_eq!(
            check(&pem, "CS-2", "evproto"),
            Err(CsrError::CommonName {
                found: Some("CS-1".into()),
                expected: "CS-2".into()
            })
        );
        assert_eq!(
            check(&pem, "CS-1", "other"),
            Err(CsrError::Organisation {
                found: Some("evproto".into()),
                expected: "other".into()
            })
        );
        let no_o = request("CN=CS-1", &key(3)).unwrap();
        assert!(matches!(
            check(&no_o, "CS-1", "evproto"),
            Err(CsrError::Organisation { found: None, .. })
        ));
        assert!(matches!(
            check("garbage", "CS-1", "evproto"),
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
        assert_eq!(check(&pem, "CS-1", "evproto"), Err(CsrError::Signature));
    }
}
