//! Plug & Charge cryptography: what ISO 15118-2 (§7.9.2.4, Annex J) and
//! ISO 15118-20 sign, verify and encrypt, over the bytes this crate
//! encodes; [RustCrypto](https://github.com/RustCrypto) does the primitives.
//!
//! - **XML signatures over EXI fragments** ([`sign`], [`verify`]): each
//!   signed element is encoded as an EXI fragment of its schema (the
//!   generated `Fragment` enums of [`crate::messages`]), its digest goes
//!   into a `Reference` of `SignedInfo`, and `SignedInfo` — itself encoded
//!   as an `xmldsig` fragment — is what the ECDSA signature covers.
//!   ISO 15118-2: secp256r1, SHA-256 ([`SigningKey::P256`]); ISO 15118-20:
//!   secp521r1, SHA-512 ([`SigningKey::P521`]). Signatures are RFC 6979
//!   deterministic: signing draws no random numbers.
//! - **Certificate chains** ([`verify_chain`]): leaf, at most two sub-CAs,
//!   a root from a [`TrustStore`] (V2G, MO or OEM roots); every
//!   certificate's validity at a time the caller passes in (the module
//!   reads no clock), every signature, CA basic constraints and path
//!   lengths, key usage. Revocation (OCSP) is the caller's decision.
//! - **Contract key delivery** ([`encrypt_contract_key`],
//!   [`decrypt_contract_key`]): ISO 15118-2 [V2G2-818]: one-pass ECDH on
//!   secp256r1 between an ephemeral key of the provisioning service and the
//!   OEM provisioning certificate's key, the concatenation KDF of NIST SP
//!   800-56A with SHA-256 (OtherInfo `01 55 56`, 128 bits), AES-128-CBC
//!   with the 16-byte IV prepended: 48 bytes. The ephemeral key and the IV
//!   are passed in.
//! - **-20 contract key delivery** ([`encrypt_contract_key_iso20`],
//!   [`decrypt_contract_key_iso20`]): ISO 15118-20 [V2G20-2535]: one-pass
//!   ECDH on secp521r1, the concatenation KDF with SHA-512 (OtherInfo
//!   `01 55 56`, 256 bits), AES-GCM-256 [V2G20-2497] over the 521-bit key
//!   padded to 66 bytes, with the AAD of [V2G20-2492] ([`installation_aad`]:
//!   the PCID, then the contract certificate's SKI in upper-case hex); the
//!   field is IV (12) ‖ ciphertext (66) ‖ tag (16), 94 bytes [V2G20-2499].
//!
//! Not here: Ed448 and X448 (ISO 15118-20's second curve: no released
//! RustCrypto crate yet), and the TPM 2.0 import of -20's
//! `TPM_EncryptedPrivateKey`.
//!
//! ```
//! use evproto_iso15118::messages::iso2;
//! use evproto_iso15118::grammar::Base64Binary;
//! use evproto_iso15118::pki::{self, SigningKey};
//!
//! let key = SigningKey::p256_from_bytes(&[7; 32])?;
//! let auth = iso2::AuthorizationReqType { id: Some("ID1".into()), gen_challenge: Some(Base64Binary(vec![1; 16])) };
//! let mut fragment = Vec::new();
//! iso2::Fragment::AuthorizationReq(Box::new(auth)).encode(&mut fragment)?;
//! let signature = pki::sign(&key, &[("ID1", &fragment)])?;
//! pki::verify(&signature, &[("ID1", &fragment)], &key.verifying_key())?;
//! fragment[3] ^= 1;
//! assert!(pki::verify(&signature, &[("ID1", &fragment)], &key.verifying_key()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use p256::ecdsa::signature::{Signer, Verifier};
use sha2::{Digest, Sha256, Sha512};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::Certificate;

use crate::grammar::Base64Binary;
use crate::messages::xmldsig;

pub mod demo;

/// `CanonicalizationMethod` and `Transform` algorithm: EXI canonicalization.
pub const CANONICAL_EXI: &str = "http://www.w3.org/TR/canonical-exi/";
/// `DigestMethod` SHA-256 (ISO 15118-2).
pub const DIGEST_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// `DigestMethod` SHA-512 (ISO 15118-20, secp521r1).
pub const DIGEST_SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";
/// `SignatureMethod` ECDSA with SHA-256 (ISO 15118-2).
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
/// `SignatureMethod` ECDSA with SHA-512 (ISO 15118-20, secp521r1).
pub const ECDSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512";

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// Why a signature does not verify (or cannot be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// `SignedInfo` has no `Reference` to an element the message signs.
    #[error("SignedInfo has no Reference to #{0}")]
    MissingReference(String),
    /// A referenced element's digest differs from its `DigestValue`.
    #[error("the digest of #{0} does not match its Reference")]
    DigestMismatch(String),
    /// An algorithm URI this module does not implement, or one that does
    /// not fit the key's curve.
    #[error("unsupported or mismatched algorithm {0}")]
    Algorithm(String),
    /// `SignatureValue` is not `r ‖ s` of the curve's size.
    #[error("SignatureValue of {0} bytes is not r||s of the curve")]
    MalformedValue(usize),
    /// The signature does not verify with the key.
    #[error("the signature does not verify")]
    Invalid,
    /// `SignedInfo` cannot be encoded as an EXI fragment.
    #[error("SignedInfo cannot be encoded: {0}")]
    Encoding(String),
}

/// A key that cannot be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a private or public key of a supported curve.
    #[error("not a usable {0} key")]
    Malformed(&'static str),
    /// The encrypted contract key is not 48 bytes (-2: 16 IV + 32 key) or
    /// 94 (-20: 12 IV + 66 key + 16 tag).
    #[error("the encrypted private key has {0} bytes, not what the standard prescribes")]
    EncryptedLength(usize),
    /// -20: AES-GCM's tag does not verify (another key, AAD or bytes)
    /// [V2G20-2504], or the decrypted key's 7 leading bits are not zero
    /// [V2G20-2678].
    #[error("the contract key does not decrypt: {0}")]
    Decryption(&'static str),
    /// The decrypted key does not belong to the delivered contract
    /// certificate [V2G2-823].
    #[error("the decrypted key does not match the contract certificate")]
    KeyMismatch,
}

/// A private signing key: secp256r1 (ISO 15118-2) or secp521r1 (-20).
#[derive(Clone)]
#[non_exhaustive]
pub enum SigningKey {
    /// secp256r1, ECDSA with SHA-256.
    P256(p256::ecdsa::SigningKey),
    /// secp521r1, ECDSA with SHA-512.
    P521(p521::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKey::P256(_) => f.write_str("SigningKey::P256(..)"),
            SigningKey::P521(_) => f.write_str("SigningKey::P521(..)"),
        }
    }
}

impl SigningKey {
    /// A secp256r1 key from its 32-byte scalar.
    pub fn p256_from_bytes(scalar: &[u8]) -> Result<Self, KeyError> {
        p256::ecdsa::SigningKey::from_slice(scalar)
            .map(SigningKey::P256)
            .map_err(|_| KeyError::Malformed("secp256r1"))
    }

    /// A secp521r1 key from its 66-byte scalar.
    pub fn p521_from_bytes(scalar: &[u8]) -> Result<Self, KeyError> {
        p521::ecdsa::SigningKey::from_slice(scalar)
            .map(SigningKey::P521)
            .map_err(|_| KeyError::Malformed("secp521r1"))
    }

    /// A key from PKCS#8 or SEC1 DER (secp256r1 or secp521r1).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(k) = p256::SecretKey::from_der(der) {
            return Ok(SigningKey::P256(k.into()));
        }
        p521::SecretKey::from_der(der)
            .map(|k| SigningKey::P521(k.into()))
            .map_err(|_| KeyError::Malformed("PKCS#8 or SEC1"))
    }

    /// The key as PKCS#8 DER (what `openssl pkey` and Python
    /// `cryptography` read; [`SigningKey::from_der`] reads it back).
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        use p256::pkcs8::EncodePrivateKey;
        let doc = match self {
            SigningKey::P256(k) => p256::SecretKey::from(k.as_nonzero_scalar()).to_pkcs8_der(),
            SigningKey::P521(k) => p521::SecretKey::from(k.as_nonzero_scalar()).to_pkcs8_der(),
        };
        doc.map(|d| d.as_bytes().to_vec())
            .map_err(|_| KeyError::Malformed("PKCS#8"))
    }

    /// The scalar's bytes (32 for secp256r1, 66 for secp521r1).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SigningKey::P256(k) => k.to_bytes().to_vec(),
            SigningKey::P521(k) => k.to_bytes().to_vec(),
        }
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::P256(k) => VerifyingKey::P256(*k.verifying_key()),
            SigningKey::P521(k) => VerifyingKey::P521(*k.verifying_key()),
        }
    }

    /// The ECDSA signature of `message` as `r ‖ s` (64 or 132 bytes).
    pub fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_bytes().to_vec()
            }
            SigningKey::P521(k) => {
                let s: p521::ecdsa::Signature = k.sign(message);
                s.to_bytes().to_vec()
            }
        }
    }

    fn algorithms(&self) -> (&'static str, &'static str) {
        match self {
            SigningKey::P256(_) => (ECDSA_SHA256, DIGEST_SHA256),
            SigningKey::P521(_) => (ECDSA_SHA512, DIGEST_SHA512),
        }
    }
}

/// A public key: secp256r1 or secp521r1.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyingKey {
    /// secp256r1.
    P256(p256::ecdsa::VerifyingKey),
    /// secp521r1.
    P521(p521::ecdsa::VerifyingKey),
}

impl VerifyingKey {
    /// The key of a certificate's SubjectPublicKeyInfo (id-ecPublicKey on
    /// prime256v1 or secp521r1).
    pub fn of(cert: &Cert) -> Result<Self, KeyError> {
        let spki = cert.inner.tbs_certificate().subject_public_key_info();
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(KeyError::Malformed("id-ecPublicKey"));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let point = spki.subject_public_key.raw_bytes();
        match curve {
            Some(c) if c == OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(VerifyingKey::P256)
                .map_err(|_| KeyError::Malformed("secp256r1")),
            Some(c) if c == OID_P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(VerifyingKey::P521)
                .map_err(|_| KeyError::Malformed("secp521r1")),
            _ => Err(KeyError::Malformed("named curve")),
        }
    }

    /// The uncompressed SEC1 point.
    pub fn to_sec1_bytes(&self) -> Vec<u8> {
        match self {
            VerifyingKey::P256(k) => k.to_sec1_point(false).as_bytes().to_vec(),
            VerifyingKey::P521(k) => k.to_sec1_point(false).as_bytes().to_vec(),
        }
    }

    /// Verifies an `r ‖ s` signature of `message` (SHA-256 on secp256r1,
    /// SHA-512 on secp521r1).
    pub fn verify_raw(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let malformed = || SignatureError::MalformedValue(signature.len());
        match self {
            VerifyingKey::P256(k) => {
                let s = p256::ecdsa::Signature::from_slice(signature).map_err(|_| malformed())?;
                k.verify(message, &s).map_err(|_| SignatureError::Invalid)
            }
            VerifyingKey::P521(k) => {
                let s = p521::ecdsa::Signature::from_slice(signature).map_err(|_| malformed())?;
                k.verify(message, &s).map_err(|_| SignatureError::Invalid)
            }
        }
    }

    /// Verifies a DER-encoded signature, as X.509 carries them, with the
    /// hash the certificate's algorithm names.
    fn verify_der(
        &self,
        message: &[u8],
        algorithm: ObjectIdentifier,
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        match self {
            VerifyingKey::P256(k) if algorithm == OID_ECDSA_SHA256 => {
                let s = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|_| SignatureError::MalformedValue(signature.len()))?;
                k.verify(message, &s).map_err(|_| SignatureError::Invalid)
            }
            VerifyingKey::P521(k) if algorithm == OID_ECDSA_SHA512 => {
                let s = p521::ecdsa::Signature::from_der(signature)
                    .map_err(|_| SignatureError::MalformedValue(signature.len()))?;
                k.verify(message, &s).map_err(|_| SignatureError::Invalid)
            }
            _ => Err(SignatureError::Algorithm(algorithm.to_string())),
        }
    }

    fn signature_method(&self) -> &'static str {
        match self {
            VerifyingKey::P256(_) => ECDSA_SHA256,
            VerifyingKey::P521(_) => ECDSA_SHA512,
        }
    }
}

/// The digest of `bytes` by a `DigestMethod` algorithm URI.
pub fn digest(algorithm: &str, bytes: &[u8]) -> Result<Vec<u8>, SignatureError> {
    match algorithm {
        DIGEST_SHA256 => Ok(Sha256::digest(bytes).to_vec()),
        DIGEST_SHA512 => Ok(Sha512::digest(bytes).to_vec()),
        other => Err(SignatureError::Algorithm(other.into())),
    }
}

/// SHA-256 of `bytes`, the ISO 15118-2 digest.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `SignedInfo` encoded as an `xmldsig` EXI fragment: the bytes the
/// signature covers.
pub fn signed_info_bytes(info: &xmldsig::SignedInfoType) -> Result<Vec<u8>, SignatureError> {
    let mut out = Vec::new();
    xmldsig::Fragment::SignedInfo(Box::new(info.clone()))
        .encode(&mut out)
        .map_err(|e| SignatureError::Encoding(e.to_string()))?;
    Ok(out)
}

/// Signs the elements `(Id, EXI fragment)`: a `Signature` whose
/// `SignedInfo` has one `Reference` (`URI="#Id"`, EXI canonicalization,
/// the key's digest) per element, for the message header.
pub fn sign(
    key: &SigningKey,
    elements: &[(&str, &[u8])],
) -> Result<xmldsig::SignatureType, SignatureError> {
    let (method, digest_method) = key.algorithms();
    let reference = elements
        .iter()
        .map(|(id, bytes)| {
            Ok(xmldsig::ReferenceType {
                id: None,
                r#type: None,
                uri: Some(format!("#{id}")),
                transforms: Some(xmldsig::TransformsType {
                    transform: vec![xmldsig::TransformType {
                        algorithm: CANONICAL_EXI.into(),
                        x_path: vec![],
                    }],
                }),
                digest_method: xmldsig::DigestMethodType {
                    algorithm: digest_method.into(),
                },
                digest_value: Base64Binary(digest(digest_method, bytes)?),
            })
        })
        .collect::<Result<Vec<_>, SignatureError>>()?;
    let signed_info = xmldsig::SignedInfoType {
        id: None,
        canonicalization_method: xmldsig::CanonicalizationMethodType {
            algorithm: CANONICAL_EXI.into(),
        },
        signature_method: xmldsig::SignatureMethodType {
            algorithm: method.into(),
            hmac_output_length: None,
        },
        reference,
    };
    let value = key.sign_raw(&signed_info_bytes(&signed_info)?);
    Ok(xmldsig::SignatureType {
        id: None,
        signed_info,
        signature_value: xmldsig::SignatureValueType {
            id: None,
            value: Base64Binary(value),
        },
        key_info: None,
        object: vec![],
    })
}

/// Verifies a header `Signature` over the elements `(Id, EXI fragment)`
/// the message signs: each must have a `Reference` whose digest matches,
/// and the signature over `SignedInfo` must verify with `key` by the
/// `SignatureMethod` of the key's curve.
pub fn verify(
    signature: &xmldsig::SignatureType,
    elements: &[(&str, &[u8])],
    key: &VerifyingKey,
) -> Result<(), SignatureError> {
    let info = &signature.signed_info;
    if info.signature_method.algorithm != key.signature_method() {
        return Err(SignatureError::Algorithm(
            info.signature_method.algorithm.clone(),
        ));
    }
    for (id, bytes) in elements {
        let uri = format!("#{id}");
        let r = info
            .reference
            .iter()
            .find(|r| r.uri.as_deref() == Some(uri.as_str()))
            .ok_or_else(|| SignatureError::MissingReference((*id).into()))?;
        if digest(&r.digest_method.algorithm, bytes)? != r.digest_value.0 {
            return Err(SignatureError::DigestMismatch((*id).into()));
        }
    }
    key.verify_raw(
        &signed_info_bytes(info)?,
        &signature.signature_value.value.0,
    )
}

// ---- certificates ----

/// Why a certificate chain is not accepted. The session machines map
/// these to the response codes of the standard
/// (`FAILED_CertificateExpired`, `FAILED_CertChainError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Not a DER X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    Malformed(String),
    /// Past its notAfter at the time checked.
    #[error("{subject} expired")]
    Expired {
        /// The certificate's subject.
        subject: String,
    },
    /// Before its notBefore at the time checked.
    #[error("{subject} is not valid yet")]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
    },
    /// The chain does not end at a root of the trust store.
    #[error("no trusted root issued {issuer}")]
    UnknownRoot {
        /// The issuer the chain ended with.
        issuer: String,
    },
    /// A signature in the chain does not verify.
    #[error("the signature on {subject} does not verify")]
    BadSignature {
        /// The certificate whose signature failed.
        subject: String,
    },
    /// An issuer that is no CA, may not sign certificates, or whose path
    /// length constraint the chain exceeds.
    #[error("{subject} may not issue this chain")]
    NotAnIssuer {
        /// The offending issuer.
        subject: String,
    },
    /// The leaf lacks the key usage its role needs.
    #[error("{subject} lacks the key usage {usage}")]
    KeyUsage {
        /// The leaf's subject.
        subject: String,
        /// The missing usage.
        usage: &'static str,
    },
    /// More sub-CAs than the standard allows (two), or sub-CAs that are no
    /// part of the path.
    #[error("the chain has {0} sub-CA certificates outside a path of at most two")]
    ChainLength(usize),
    /// A key or signature algorithm the module does not implement.
    #[error("unsupported key or algorithm in {subject}")]
    Unsupported {
        /// The certificate.
        subject: String,
    },
}

/// A parsed DER certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    der: Vec<u8>,
    inner: Certificate,
}

impl Cert {
    /// Parses DER.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let inner = Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            inner,
        })
    }

    /// Parses every certificate of a PEM text, in order.
    pub fn from_pem_chain(pem: &[u8]) -> Result<Vec<Self>, CertError> {
        let certs =
            Certificate::load_pem_chain(pem).map_err(|e| CertError::Malformed(e.to_string()))?;
        certs
            .into_iter()
            .map(|inner| {
                let der = inner
                    .to_der()
                    .map_err(|e| CertError::Malformed(e.to_string()))?;
                Ok(Self { der, inner })
            })
            .collect()
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject as an RFC 4514 string.
    pub fn subject(&self) -> String {
        self.inner.tbs_certificate().subject().to_string()
    }

    /// The issuer as an RFC 4514 string.
    pub fn issuer(&self) -> String {
        self.inner.tbs_certificate().issuer().to_string()
    }

    /// The subject's common name (the eMAID of a contract certificate).
    pub fn common_name(&self) -> Option<String> {
        self.inner
            .tbs_certificate()
            .subject()
            .iter_rdn()
            .flat_map(|rdn| rdn.iter())
            .find(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN)
            .and_then(|atv| {
                x509_cert::der::asn1::Utf8StringRef::try_from(&atv.value)
                    .map(|s| s.to_string())
                    .or_else(|_| {
                        x509_cert::der::asn1::PrintableStringRef::try_from(&atv.value)
                            .map(|s| s.to_string())
                    })
                    .ok()
            })
    }

    /// The serial number as an integer, when it fits an `i64` (the -2
    /// `X509SerialNumber` is an `xs:integer` the codec holds in 64 bits).
    pub fn serial(&self) -> Option<i64> {
        let bytes = self.inner.tbs_certificate().serial_number().as_bytes();
        if bytes.len() > 8 {
            return None;
        }
        let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        };
        for b in bytes {
            v = (v << 8) | i64::from(*b);
        }
        Some(v)
    }

    /// notBefore and notAfter in Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        let v = self.inner.tbs_certificate().validity();
        (
            v.not_before.to_unix_duration().as_secs(),
            v.not_after.to_unix_duration().as_secs(),
        )
    }

    /// The SubjectKeyIdentifier extension's value, if the certificate has one.
    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        use x509_cert::ext::pkix::SubjectKeyIdentifier;
        self.inner
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.extn_id == x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
            .and_then(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).ok())
            .map(|k| k.0.as_bytes().to_vec())
    }

    /// The certificate's public key.
    pub fn public_key(&self) -> Result<VerifyingKey, CertError> {
        VerifyingKey::of(self).map_err(|_| CertError::Unsupported {
            subject: self.subject(),
        })
    }

    pub(crate) fn subject_der(&self) -> Vec<u8> {
        self.inner
            .tbs_certificate()
            .subject()
            .to_der()
            .unwrap_or_default()
    }

    fn issuer_der(&self) -> Vec<u8> {
        self.inner
            .tbs_certificate()
            .issuer()
            .to_der()
            .unwrap_or_default()
    }

    fn basic_constraints(&self) -> Option<BasicConstraints> {
        self.inner
            .tbs_certificate()
            .get_extension::<BasicConstraints>()
            .ok()
            .flatten()
            .map(|(_, b)| b)
    }

    fn key_usage(&self) -> Option<KeyUsage> {
        self.inner
            .tbs_certificate()
            .get_extension::<KeyUsage>()
            .ok()
            .flatten()
            .map(|(_, k)| k)
    }

    fn check_time(&self, at: u64) -> Result<(), CertError> {
        let (from, to) = self.validity();
        if at < from {
            Err(CertError::NotYetValid {
                subject: self.subject(),
            })
        } else if at > to {
            Err(CertError::Expired {
                subject: self.subject(),
            })
        } else {
            Ok(())
        }
    }

    /// Whether `issuer`'s key signed this certificate.
    fn signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        let bad = || CertError::BadSignature {
            subject: self.subject(),
        };
        let key = issuer.public_key()?;
        let tbs = self.inner.tbs_certificate().to_der().map_err(|_| bad())?;
        let sig = self.inner.signature().as_bytes().ok_or_else(bad)?;
        match key.verify_der(&tbs, self.inner.signature_algorithm().oid, sig) {
            Ok(()) => Ok(()),
            Err(SignatureError::Algorithm(_)) => Err(CertError::Unsupported {
                subject: self.subject(),
            }),
            Err(_) => Err(bad()),
        }
    }

    /// May sign certificates with `below` CA certificates under it (the
    /// leaf not counted).
    fn check_issuer(&self, below: usize) -> Result<(), CertError> {
        let not = || CertError::NotAnIssuer {
            subject: self.subject(),
        };
        let bc = self.basic_constraints().ok_or_else(not)?;
        if !bc.ca
            || bc
                .path_len_constraint
                .is_some_and(|n| usize::from(n) < below)
        {
            return Err(not());
        }
        match self.key_usage() {
            Some(ku) if !ku.0.contains(KeyUsages::KeyCertSign) => Err(not()),
            _ => Ok(()),
        }
    }
}

/// The roots a chain may end at (the V2G, MO or OEM roots of a role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    roots: Vec<Cert>,
}

impl TrustStore {
    /// A store of these roots.
    pub fn new(roots: Vec<Cert>) -> Self {
        Self { roots }
    }

    /// A store of DER roots.
    pub fn from_der(roots: &[Vec<u8>]) -> Result<Self, CertError> {
        Ok(Self::new(
            roots
                .iter()
                .map(|d| Cert::from_der(d))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// The roots.
    pub fn roots(&self) -> &[Cert] {
        &self.roots
    }

    /// The `(issuer name, serial)` of each root, as
    /// `ListOfRootCertificateIDs` carries them.
    pub fn root_ids(&self) -> Vec<xmldsig::X509IssuerSerialType> {
        self.roots
            .iter()
            .map(|r| xmldsig::X509IssuerSerialType {
                x509_issuer_name: r.issuer(),
                x509_serial_number: r.serial().unwrap_or(0),
            })
            .collect()
    }
}

/// What the leaf of a chain is for: the key usage it must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeafUsage {
    /// Signatures (contract, SECC, SA provisioning leaves): digitalSignature.
    Signature,
    /// Key agreement (the OEM provisioning certificate's ECDH): keyAgreement.
    KeyAgreement,
}

/// A chain that verified: the leaf, its sub-CAs in path order, the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The leaf certificate.
    pub leaf: Cert,
    /// The sub-CAs from the leaf's issuer up.
    pub sub_cas: Vec<Cert>,
    /// The trusted root the path ends at.
    pub root: Cert,
}

/// Verifies `leaf` with the `sub_cas` (any order, at most two) against the
/// `roots` at Unix time `at` (s): the path leaf → sub-CA(s) → root by
/// names and signatures, every certificate valid at `at`, every issuer a
/// CA allowed to sign (key usage keyCertSign, path length), the leaf no
/// CA and with the usage of `usage`.
pub fn verify_chain(
    leaf: &[u8],
    sub_cas: &[Vec<u8>],
    roots: &TrustStore,
    at: u64,
    usage: LeafUsage,
) -> Result<VerifiedChain, CertError> {
    let leaf = Cert::from_der(leaf)?;
    let mut pool = sub_cas
        .iter()
        .map(|d| Cert::from_der(d))
        .collect::<Result<Vec<_>, _>>()?;
    if pool.len() > 2 {
        return Err(CertError::ChainLength(pool.len()));
    }
    if leaf.basic_constraints().is_some_and(|b| b.ca) {
        return Err(CertError::KeyUsage {
            subject: leaf.subject(),
            usage: "end entity",
        });
    }
    let (flag, name) = match usage {
        LeafUsage::Signature => (KeyUsages::DigitalSignature, "digitalSignature"),
        LeafUsage::KeyAgreement => (KeyUsages::KeyAgreement, "keyAgreement"),
    };
    if !leaf.key_usage().is_some_and(|k| k.0.contains(flag)) {
        return Err(CertError::KeyUsage {
            subject: leaf.subject(),
            usage: name,
        });
    }
    leaf.check_time(at)?;
    let mut path: Vec<Cert> = Vec::new();
    loop {
        let current = path.last().unwrap_or(&leaf);
        let issuer = current.issuer_der();
        // roots of the issuer's name: the one that signed it (a root renewed
        // with a new key keeps its name; the other does not hide it)
        let mut named = roots.roots.iter().filter(|r| r.subject_der() == issuer);
        if let Some(first) = named.next() {
            let root = match current.signed_by(first) {
                Ok(()) => first,
                Err(e) => named.find(|r| current.signed_by(r).is_ok()).ok_or(e)?,
            };
            root.check_time(at)?;
            root.check_issuer(path.len())?;
            if !pool.is_empty() {
                return Err(CertError::ChainLength(pool.len()));
            }
            return Ok(VerifiedChain {
                leaf,
                sub_cas: path,
                root: root.clone(),
            });
        }
        let Some(i) = pool.iter().position(|c| c.subject_der() == issuer) else {
            return Err(CertError::UnknownRoot {
                issuer: current.issuer(),
            });
        };
        let next = pool.remove(i);
        current.signed_by(&next)?;
        next.check_time(at)?;
        next.check_issuer(path.len())?;
        path.push(next);
    }
}

// ---- contract key delivery (ISO 15118-2) ----

/// The contract key as CertificateInstallationRes / CertificateUpdateRes
/// deliver it (ISO 15118-2; -20's CertificateInstallationRes alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedContractKey {
    /// `DHpublickey`: the ephemeral ECDH public key, uncompressed SEC1 (65
    /// bytes; -20 `DHPublicKey`: 133).
    pub dh_public_key: Vec<u8>,
    /// `ContractSignatureEncryptedPrivateKey`: IV ‖ AES-128-CBC(key) (48
    /// bytes); -20 `SECP521_EncryptedPrivateKey`: IV ‖ AES-GCM-256(key) ‖
    /// tag (94 bytes).
    pub encrypted_private_key: Vec<u8>,
}

/// NIST SP 800-56A concatenation KDF with SHA-256, one round: the 128-bit
/// AES key of [V2G2-818] (OtherInfo = AlgorithmID `01`, PartyUInfo `U`,
/// PartyVInfo `V`).
fn concat_kdf_aes128(shared: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(shared);
    h.update([0x01, 0x55, 0x56]);
    let out = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&out[..16]);
    key
}

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Encrypts the contract private key (32 bytes) for the holder of the OEM
/// provisioning key `oem_public` ([V2G2-818]): ECDH with `ephemeral` (the
/// caller's fresh random key), KDF, AES-128-CBC under `iv` (fresh random),
/// no padding (the key is two blocks).
pub fn encrypt_contract_key(
    contract_key: &[u8],
    oem_public: &VerifyingKey,
    ephemeral: &[u8],
    iv: [u8; 16],
) -> Result<EncryptedContractKey, KeyError> {
    let VerifyingKey::P256(oem) = oem_public else {
        return Err(KeyError::Malformed("secp256r1 OEM"));
    };
    if contract_key.len() != 32 {
        return Err(KeyError::Malformed("secp256r1 contract"));
    }
    let eph =
        p256::SecretKey::from_slice(ephemeral).map_err(|_| KeyError::Malformed("ephemeral"))?;
    let oem = p256::PublicKey::from_affine(*oem.as_affine())
        .map_err(|_| KeyError::Malformed("secp256r1 OEM"))?;
    let shared = eph.diffie_hellman(&oem);
    let key = concat_kdf_aes128(shared.raw_secret_bytes());
    let mut blocks = [[0u8; 16]; 2];
    blocks[0].copy_from_slice(&contract_key[..16]);
    blocks[1].copy_from_slice(&contract_key[16..]);
    let mut enc = Aes128CbcEnc::new(&key.into(), &iv.into());
    let mut out = iv.to_vec();
    for b in blocks {
        let mut block = b.into();
        enc.encrypt_block(&mut block);
        out.extend_from_slice(&block);
    }
    Ok(EncryptedContractKey {
        dh_public_key: eph.public_key().to_sec1_bytes().to_vec(),
        encrypted_private_key: out,
    })
}

/// Decrypts a contract private key delivered with `dh_public_key` using
/// the OEM provisioning key `oem_key` (32-byte scalar); the result is the
/// contract key's 32-byte scalar. Check it against the contract
/// certificate with [`check_key_pair`].
pub fn decrypt_contract_key(
    encrypted: &[u8],
    dh_public_key: &[u8],
    oem_key: &[u8],
) -> Result<Vec<u8>, KeyError> {
    if encrypted.len() != 48 {
        return Err(KeyError::EncryptedLength(encrypted.len()));
    }
    let oem = p256::SecretKey::from_slice(oem_key).map_err(|_| KeyError::Malformed("OEM"))?;
    let dh = p256::PublicKey::from_sec1_bytes(dh_public_key)
        .map_err(|_| KeyError::Malformed("DHpublickey"))?;
    let key = concat_kdf_aes128(oem.diffie_hellman(&dh).raw_secret_bytes());
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&encrypted[..16]);
    let mut dec = Aes128CbcDec::new(&key.into(), &iv.into());
    let mut out = Vec::with_capacity(32);
    for chunk in encrypted[16..].chunks_exact(16) {
        let mut block = [0u8; 16];
        block.copy_from_slice(chunk);
        let mut block = block.into();
        dec.decrypt_block(&mut block);
        out.extend_from_slice(&block);
    }
    Ok(out)
}

// ---- contract key delivery (ISO 15118-20) ----

/// NIST SP 800-56A concatenation KDF with SHA-512, one round: the 256-bit
/// AES key of [V2G20-2535] (OtherInfo = AlgorithmID `01`, PartyUInfo `U`,
/// PartyVInfo `V`).
fn concat_kdf_aes256(shared: &[u8]) -> [u8; 32] {
    let mut h = Sha512::new();
    h.update(1u32.to_be_bytes());
    h.update(shared);
    h.update([0x01, 0x55, 0x56]);
    let out = h.finalize();
    let mut key = [0u8; 32];
    key.copy_from_slice(&out[..32]);
    key
}

/// The AAD of -20's contract key encryption [V2G20-2492]: the PCID of the
/// OEM provisioning certificate as the CertificateInstallationReq carried
/// it (its CN), then the SubjectKeyIdentifier of the delivered contract
/// certificate in upper-case hexadecimal.
///
/// # Errors
///
/// The contract certificate has no SubjectKeyIdentifier.
pub fn installation_aad(pcid: &str, contract: &Cert) -> Result<Vec<u8>, KeyError> {
    let ski = contract.subject_key_id().ok_or(KeyError::Malformed(
        "contract certificate without SubjectKeyIdentifier",
    ))?;
    let mut aad = pcid.as_bytes().to_vec();
    for b in ski {
        aad.extend_from_slice(format!("{b:02X}").as_bytes());
    }
    Ok(aad)
}

/// The 94-byte field of a -20 secp521r1 contract key.
const ISO20_ENCRYPTED_LEN: usize = 12 + 66 + 16;

/// Encrypts a secp521r1 contract private key (its 66-byte scalar) for the
/// holder of the OEM provisioning key `oem_public` (ISO 15118-20
/// [V2G20-2497]): ECDH with `ephemeral` (the caller's fresh random
/// secp521r1 scalar), the SHA-512 concatenation KDF, AES-GCM-256 under
/// `iv` (fresh random) with `aad` ([`installation_aad`]). The result's
/// `dh_public_key` is the uncompressed point (133 bytes), its
/// `encrypted_private_key` IV ‖ ciphertext ‖ tag (94 bytes).
pub fn encrypt_contract_key_iso20(
    contract_key: &[u8],
    oem_public: &VerifyingKey,
    ephemeral: &[u8],
    iv: [u8; 12],
    aad: &[u8],
) -> Result<EncryptedContractKey, KeyError> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let VerifyingKey::P521(oem) = oem_public else {
        return Err(KeyError::Malformed("secp521r1 OEM"));
    };
    if contract_key.len() != 66 {
        return Err(KeyError::Malformed("secp521r1 contract"));
    }
    let eph =
        p521::SecretKey::from_slice(ephemeral).map_err(|_| KeyError::Malformed("ephemeral"))?;
    let oem = p521::PublicKey::from_affine(*oem.as_affine())
        .map_err(|_| KeyError::Malformed("secp521r1 OEM"))?;
    let shared = eph.diffie_hellman(&oem);
    let key = concat_kdf_aes256(shared.raw_secret_bytes());
    let cipher = aes_gcm::Aes256Gcm::new(&key.into());
    let sealed = cipher
        .encrypt(
            &iv.into(),
            Payload {
                msg: contract_key,
                aad,
            },
        )
        .map_err(|_| KeyError::Malformed("AES-GCM"))?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&sealed);
    Ok(EncryptedContractKey {
        dh_public_key: eph.public_key().to_sec1_bytes().to_vec(),
        encrypted_private_key: out,
    })
}

/// Decrypts a -20 `SECP521_EncryptedPrivateKey` delivered with
/// `dh_public_key` using the OEM provisioning key `oem_key` (66-byte
/// secp521r1 scalar) and `aad` ([`installation_aad`]); the result is the
/// contract key's 66-byte scalar [V2G20-2505]. Check it against the
/// contract certificate with [`check_key_pair`] [V2G20-2507].
pub fn decrypt_contract_key_iso20(
    encrypted: &[u8],
    dh_public_key: &[u8],
    oem_key: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, KeyError> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    if encrypted.len() != ISO20_ENCRYPTED_LEN {
        return Err(KeyError::EncryptedLength(encrypted.len()));
    }
    let oem = p521::SecretKey::from_slice(oem_key).map_err(|_| KeyError::Malformed("OEM"))?;
    let dh = p521::PublicKey::from_sec1_bytes(dh_public_key)
        .map_err(|_| KeyError::Malformed("DHPublicKey"))?;
    let key = concat_kdf_aes256(oem.diffie_hellman(&dh).raw_secret_bytes());
    let cipher = aes_gcm::Aes256Gcm::new(&key.into());
    let mut iv = [0u8; 12];
    iv.copy_from_slice(&encrypted[..12]);
    let plain = cipher
        .decrypt(
            &iv.into(),
            Payload {
                msg: &encrypted[12..],
                aad,
            },
        )
        .map_err(|_| KeyError::Decryption("the AES-GCM tag does not verify"))?;
    // 521 bits in 528: the 7 leading bits are zero [V2G20-2678]
    if plain.first().is_some_and(|b| b & 0xFE != 0) {
        return Err(KeyError::Decryption("the 7 leading bits are not zero"));
    }
    Ok(plain)
}

/// Whether `private_key` (a scalar) belongs to `cert` [V2G2-823].
pub fn check_key_pair(private_key: &[u8], cert: &Cert) -> Result<SigningKey, KeyError> {
    let public = cert
        .public_key()
        .map_err(|_| KeyError::Malformed("certificate"))?;
    let key = match public {
        VerifyingKey::P256(_) => SigningKey::p256_from_bytes(private_key)?,
        VerifyingKey::P521(_) => SigningKey::p521_from_bytes(private_key)?,
    };
    if key.verifying_key() == public {
        Ok(key)
    } else {
        Err(KeyError::KeyMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_kdf_is_one_sha256_round_truncated() {
        // H(00000001 || Z || 01 55 56), first 16 bytes
        let z = [0x11u8; 32];
        let mut input = vec![0, 0, 0, 1];
        input.extend_from_slice(&z);
        input.extend_from_slice(&[1, 0x55, 0x56]);
        assert_eq!(concat_kdf_aes128(&z)[..], Sha256::digest(&input)[..16]);
    }

    #[test]
    fn pkcs8_round_trip_on_both_curves() {
        let a = SigningKey::p256_from_bytes(&[7; 32]).unwrap();
        let back = SigningKey::from_der(&a.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(back.verifying_key(), a.verifying_key());
        let mut s = [0u8; 66];
        s[65] = 9;
        let b = SigningKey::p521_from_bytes(&s).unwrap();
        let back = SigningKey::from_der(&b.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(back.verifying_key(), b.verifying_key());
        assert_eq!(
            SigningKey::from_der(&[0x30, 0]).unwrap_err(),
            KeyError::Malformed("PKCS#8 or SEC1")
        );
    }

    #[test]
    fn contract_key_round_trip_and_wrong_key() {
        let oem = SigningKey::p256_from_bytes(&[3; 32]).unwrap();
        let contract = [9u8; 32];
        let enc = encrypt_contract_key(&contract, &oem.verifying_key(), &[5; 32], [1; 16]).unwrap();
        assert_eq!(enc.encrypted_private_key.len(), 48);
        assert_eq!(enc.dh_public_key.len(), 65);
        assert_eq!(enc.encrypted_private_key[..16], [1; 16]);
        let back =
            decrypt_contract_key(&enc.encrypted_private_key, &enc.dh_public_key, &[3; 32]).unwrap();
        assert_eq!(back, contract);
        let wrong =
            decrypt_contract_key(&enc.encrypted_private_key, &enc.dh_public_key, &[4; 32]).unwrap();
        assert_ne!(wrong, contract);
        assert_eq!(
            decrypt_contract_key(&[0; 47], &enc.dh_public_key, &[3; 32]),
            Err(KeyError::EncryptedLength(47))
        );
        assert!(decrypt_contract_key(&enc.encrypted_private_key, &[4; 65], &[3; 32]).is_err());
    }

    #[test]
    fn iso20_kdf_is_one_sha512_round_truncated_to_256_bits() {
        // H(00000001 || Z || 01 55 56), first 32 bytes [V2G20-2535]
        let z = [0x22u8; 66];
        let mut input = vec![0, 0, 0, 1];
        input.extend_from_slice(&z);
        input.extend_from_slice(&[1, 0x55, 0x56]);
        assert_eq!(concat_kdf_aes256(&z)[..], Sha512::digest(&input)[..32]);
    }

    fn p521(last: u8) -> [u8; 66] {
        let mut s = [0u8; 66];
        s[1] = 0x5A;
        s[65] = last;
        s
    }

    #[test]
    fn iso20_contract_key_round_trip_wrong_key_aad_and_bytes() {
        let oem = SigningKey::p521_from_bytes(&p521(3)).unwrap();
        let mut contract = p521(9);
        contract[0] = 0x01; // a full 521-bit scalar
        let aad = b"EVPROTO00000000020A1B2C3D4E5F60718";
        let enc =
            encrypt_contract_key_iso20(&contract, &oem.verifying_key(), &p521(5), [7; 12], aad)
                .unwrap();
        assert_eq!(enc.encrypted_private_key.len(), 94);
        assert_eq!(enc.dh_public_key.len(), 133);
        assert_eq!(enc.dh_public_key[0], 0x04);
        assert_eq!(enc.encrypted_private_key[..12], [7; 12]);
        let back = decrypt_contract_key_iso20(
            &enc.encrypted_private_key,
            &enc.dh_public_key,
            &p521(3),
            aad,
        )
        .unwrap();
        assert_eq!(back, contract);
        // another OEM key, another AAD, a flipped bit: the tag says no
        let tag = KeyError::Decryption("the AES-GCM tag does not verify");
        assert_eq!(
            decrypt_contract_key_iso20(
                &enc.encrypted_private_key,
                &enc.dh_public_key,
                &p521(4),
                aad
            ),
            Err(tag.clone())
        );
        assert_eq!(
            decrypt_contract_key_iso20(
                &enc.encrypted_private_key,
                &enc.dh_public_key,
                &p521(3),
                b"EVPROTO00000000021A1B2C3D4E5F60718"
            ),
            Err(tag.clone())
        );
        let mut flipped = enc.encrypted_private_key.clone();
        flipped[40] ^= 1;
        assert_eq!(
            decrypt_contract_key_iso20(&flipped, &enc.dh_public_key, &p521(3), aad),
            Err(tag)
        );
        assert_eq!(
            decrypt_contract_key_iso20(&[0; 93], &enc.dh_public_key, &p521(3), aad),
            Err(KeyError::EncryptedLength(93))
        );
        assert!(
            decrypt_contract_key_iso20(&enc.encrypted_private_key, &[4; 133], &p521(3), aad)
                .is_err()
        );
        // a secp256r1 OEM key or contract is no -20 delivery
        let p256 = SigningKey::p256_from_bytes(&[3; 32]).unwrap();
        assert!(encrypt_contract_key_iso20(
            &contract,
            &p256.verifying_key(),
            &p521(5),
            [7; 12],
            aad
        )
        .is_err());
        assert!(
            encrypt_contract_key_iso20(&[9; 32], &oem.verifying_key(), &p521(5), [7; 12], aad)
                .is_err()
        );
    }

    #[test]
    fn iso20_padding_bits_must_be_zero() {
        // 66 bytes whose first byte has more than the 521st bit: the
        // decryption verifies but the key is refused [V2G20-2678]
        let oem = SigningKey::p521_from_bytes(&p521(3)).unwrap();
        let mut bad = p521(9);
        bad[0] = 0x02;
        // encrypt by hand (the encryptor takes any 66 bytes)
        let enc =
            encrypt_contract_key_iso20(&bad, &oem.verifying_key(), &p521(5), [1; 12], b"").unwrap();
        assert_eq!(
            decrypt_contract_key_iso20(
                &enc.encrypted_private_key,
                &enc.dh_public_key,
                &p521(3),
                b""
            ),
            Err(KeyError::Decryption("the 7 leading bits are not zero"))
        );
    }

    #[test]
    fn p521_signatures_use_sha512_and_reject_a_p256_method() {
        let mut scalar = [0u8; 66];
        scalar[65] = 42;
        let key = SigningKey::p521_from_bytes(&scalar).unwrap();
        let sig = sign(&key, &[("a", b"fragment")]).unwrap();
        assert_eq!(sig.signed_info.signature_method.algorithm, ECDSA_SHA512);
        assert_eq!(sig.signed_info.reference[0].digest_value.0.len(), 64);
        assert_eq!(sig.signature_value.value.0.len(), 132);
        verify(&sig, &[("a", b"fragment")], &key.verifying_key()).unwrap();
        let p256 = SigningKey::p256_from_bytes(&[7; 32]).unwrap();
        assert_eq!(
            verify(&sig, &[("a", b"fragment")], &p256.verifying_key()),
            Err(SignatureError::Algorithm(ECDSA_SHA512.into()))
        );
        assert_eq!(
            verify(&sig, &[("b", b"fragment")], &key.verifying_key()),
            Err(SignatureError::MissingReference("b".into()))
        );
    }
}
