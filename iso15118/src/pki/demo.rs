//! A complete test PKI for Plug & Charge, made deterministically from a
//! seed (no random numbers, no clock: the validity is passed in), with the
//! profiles of ISO 15118-2 Annex F: V2G root → CPO sub-CA 1 → CPO sub-CA 2
//! → SECC leaf; V2G root → CPS sub-CA 1 → CPS sub-CA 2 → SA provisioning
//! leaf; MO root → MO sub-CA 1 → MO sub-CA 2 → contract leaf (CN = eMAID);
//! OEM root → OEM sub-CA 1 → OEM sub-CA 2 → OEM provisioning leaf. All
//! secp256r1 with ecdsa-with-SHA256, roots without path length, sub-CA 1
//! path length 1, sub-CA 2 path length 0, leaves with digitalSignature
//! (the OEM provisioning leaf also keyAgreement).
//!
//! ISO 15118-20 contracts are secp521r1 with ecdsa-with-SHA512: the same
//! MO hierarchy on that curve is a [`DemoContract`] on [`Curve::P521`].
//!
//! For tests and lab setups only: keys derived from a seed are no secret.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256, Sha512};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::OctetString;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::Encode;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use x509_cert::TbsCertificate;

use super::{Cert, SigningKey};

/// Why a demo certificate could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot issue {subject}: {reason}")]
pub struct IssueError {
    /// The certificate asked for.
    pub subject: String,
    /// What went wrong.
    pub reason: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A self-signed root (CA, keyCertSign, no path length).
    Root,
    /// A sub-CA allowed this many CAs under it.
    SubCa(u8),
    /// An end entity signing with its key (SECC, contract, SA provisioning).
    Signer,
    /// The OEM provisioning certificate (digitalSignature, keyAgreement).
    Provisioning,
}

/// The curve of a demo hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Curve {
    /// secp256r1 with ecdsa-with-SHA256 (ISO 15118-2).
    P256,
    /// secp521r1 with ecdsa-with-SHA512 (ISO 15118-20).
    P521,
}

/// A certificate and its private key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: Cert,
    /// Its key (secp256r1 or secp521r1).
    pub key: SigningKey,
}

impl Issued {
    /// The key's scalar (32 bytes on secp256r1, 66 on secp521r1).
    pub fn key_bytes(&self) -> Vec<u8> {
        self.key.to_bytes()
    }
}

struct DemoProfile {
    subject: Name,
    issuer: Option<Name>,
    role: Role,
}

fn ext<T: Encode + AssociatedOid>(v: &T, critical: bool) -> x509_cert::builder::Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(v.to_der()?)?,
    })
}

impl Profile for DemoProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.issuer.clone().unwrap_or_else(|| subject.clone())
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let (ca, path_len, usage) = match self.role {
            Role::Root => (true, None, KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            Role::SubCa(n) => (true, Some(n), KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            Role::Signer => (
                false,
                None,
                KeyUsages::DigitalSignature | KeyUsages::NonRepudiation,
            ),
            Role::Provisioning => (
                false,
                None,
                KeyUsages::DigitalSignature | KeyUsages::KeyAgreement,
            ),
        };
        Ok(vec![
            ext(
                &BasicConstraints {
                    ca,
                    path_len_constraint: path_len,
                },
                true,
            )?,
            ext(&KeyUsage(usage), true)?,
        ])
    }
}

fn unix_time(secs: u64) -> Result<Time, String> {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(secs)).map_err(|e| e.to_string())
}

/// A secp256r1 key derived from `seed` and `label` (SHA-256, re-hashed in
/// the negligible case the digest is no valid scalar).
pub fn derive_key(seed: &[u8], label: &str) -> SigningKey {
    let mut h: [u8; 32] = Sha256::new()
        .chain_update(seed)
        .chain_update(label.as_bytes())
        .finalize()
        .into();
    loop {
        if let Ok(k) = SigningKey::p256_from_bytes(&h) {
            return k;
        }
        h = Sha256::digest(h).into();
    }
}

/// A secp521r1 key derived from `seed` and `label` (SHA-512, 64 bytes
/// under the 66-byte order; re-hashed in the negligible case of zero).
pub fn derive_key_p521(seed: &[u8], label: &str) -> SigningKey {
    let mut h: [u8; 64] = Sha512::new()
        .chain_update(seed)
        .chain_update(label.as_bytes())
        .finalize()
        .into();
    loop {
        let mut scalar = [0u8; 66];
        scalar[2..].copy_from_slice(&h);
        if let Ok(k) = SigningKey::p521_from_bytes(&scalar) {
            return k;
        }
        h = Sha512::digest(h).into();
    }
}

/// A key of `curve` derived from `seed` and `label`.
pub fn derive_key_on(curve: Curve, seed: &[u8], label: &str) -> SigningKey {
    match curve {
        Curve::P256 => derive_key(seed, label),
        Curve::P521 => derive_key_p521(seed, label),
    }
}

/// Issues a certificate for `key` named `subject` (an RFC 4514 name such
/// as `CN=CPO Sub-CA 1,O=evproto`) by `issuer` (self-signed when `None`),
/// valid from `not_before` to `not_after` (Unix s). Either key may be
/// secp256r1 (signed with ecdsa-with-SHA256) or secp521r1
/// (ecdsa-with-SHA512); the signer's curve decides the algorithm.
pub fn issue(
    subject: &str,
    key: &SigningKey,
    issuer: Option<&Issued>,
    role: Role,
    serial: u32,
    not_before: u64,
    not_after: u64,
) -> Result<Issued, IssueError> {
    let err = |reason: String| IssueError {
        subject: subject.into(),
        reason,
    };
    let profile = DemoProfile {
        subject: Name::from_str(subject).map_err(|e| err(e.to_string()))?,
        issuer: issuer.map(|i| i.cert.inner.tbs_certificate().subject().clone()),
        role,
    };
    let validity = Validity::new(
        unix_time(not_before).map_err(err)?,
        unix_time(not_after).map_err(err)?,
    );
    let spki = match key {
        SigningKey::P256(k) => SubjectPublicKeyInfo::from_key(k.verifying_key()),
        SigningKey::P521(k) => SubjectPublicKeyInfo::from_key(k.verifying_key()),
    }
    .map_err(|e| err(e.to_string()))?;
    let builder = CertificateBuilder::new(profile, SerialNumber::from(serial), validity, spki)
        .map_err(|e| err(e.to_string()))?;
    let cert = match issuer.map_or(key, |i| &i.key) {
        SigningKey::P256(signer) => builder.build::<_, p256::ecdsa::DerSignature>(signer),
        SigningKey::P521(signer) => builder.build::<_, p521::ecdsa::DerSignature>(signer),
    }
    .map_err(|e| err(e.to_string()))?;
    let der = cert.to_der().map_err(|e| err(e.to_string()))?;
    Ok(Issued {
        cert: Cert::from_der(&der).map_err(|e| err(e.to_string()))?,
        key: key.clone(),
    })
}

/// The whole test PKI.
#[derive(Debug, Clone)]
pub struct DemoPki {
    /// V2G root CA.
    pub v2g_root: Issued,
    /// CPO sub-CA 1 (under the V2G root).
    pub cpo_sub_ca1: Issued,
    /// CPO sub-CA 2.
    pub cpo_sub_ca2: Issued,
    /// The SECC's leaf (TLS server certificate).
    pub secc: Issued,
    /// CPS (certificate provisioning service) sub-CA 1 (under the V2G root).
    pub cps_sub_ca1: Issued,
    /// CPS sub-CA 2.
    pub cps_sub_ca2: Issued,
    /// The SA provisioning leaf that signs CertificateInstallationRes.
    pub cps: Issued,
    /// MO root CA.
    pub mo_root: Issued,
    /// MO sub-CA 1.
    pub mo_sub_ca1: Issued,
    /// MO sub-CA 2.
    pub mo_sub_ca2: Issued,
    /// The contract leaf (CN = [`DemoPki::emaid`]).
    pub contract: Issued,
    /// OEM root CA.
    pub oem_root: Issued,
    /// OEM sub-CA 1.
    pub oem_sub_ca1: Issued,
    /// OEM sub-CA 2.
    pub oem_sub_ca2: Issued,
    /// The OEM provisioning certificate.
    pub oem_provisioning: Issued,
    /// The contract's eMAID.
    pub emaid: String,
}

/// MO root → MO sub-CA 1 → MO sub-CA 2 → contract (CN = `emaid`), each
/// made by `make(subject, issuer, role)`; `tag` follows the CAs' names.
fn mo_chain(
    make: &mut impl FnMut(&str, Option<&Issued>, Role) -> Result<Issued, IssueError>,
    tag: &str,
    emaid: &str,
) -> Result<[Issued; 4], IssueError> {
    let root = make(
        &format!("CN=MO Root CA{tag},O=evproto,DC=MO"),
        None,
        Role::Root,
    )?;
    let sub1 = make(
        &format!("CN=MO Sub-CA 1{tag},O=evproto,DC=MO"),
        Some(&root),
        Role::SubCa(1),
    )?;
    let sub2 = make(
        &format!("CN=MO Sub-CA 2{tag},O=evproto,DC=MO"),
        Some(&sub1),
        Role::SubCa(0),
    )?;
    let contract = make(
        &format!("CN={emaid},O=evproto,DC=MO"),
        Some(&sub2),
        Role::Signer,
    )?;
    Ok([root, sub1, sub2, contract])
}

/// An MO hierarchy and its contract: MO root → MO sub-CA 1 → MO sub-CA 2 →
/// contract leaf (CN = the eMAID), on one [`Curve`].
#[derive(Debug, Clone)]
pub struct DemoContract {
    /// The curve of every key.
    pub curve: Curve,
    /// MO root CA.
    pub mo_root: Issued,
    /// MO sub-CA 1.
    pub mo_sub_ca1: Issued,
    /// MO sub-CA 2.
    pub mo_sub_ca2: Issued,
    /// The contract leaf (CN = [`DemoContract::emaid`]).
    pub contract: Issued,
    /// The contract's eMAID.
    pub emaid: String,
}

impl DemoContract {
    /// Makes the hierarchy from `seed` on `curve` (keys labelled apart from
    /// [`DemoPki::generate`]'s, serial numbers from 101), valid from
    /// `not_before` to `not_after` (Unix s).
    pub fn generate(
        seed: &[u8],
        emaid: &str,
        curve: Curve,
        not_before: u64,
        not_after: u64,
    ) -> Result<Self, IssueError> {
        let mut serial = 100u32;
        let mut make = |name: &str, issuer: Option<&Issued>, role: Role| {
            serial += 1;
            let key = derive_key_on(curve, seed, &format!("{curve:?}:{name}"));
            issue(name, &key, issuer, role, serial, not_before, not_after)
        };
        let tag = match curve {
            Curve::P256 => "",
            Curve::P521 => " (-20)",
        };
        let [mo_root, mo_sub_ca1, mo_sub_ca2, contract] = mo_chain(&mut make, tag, emaid)?;
        Ok(Self {
            curve,
            mo_root,
            mo_sub_ca1,
            mo_sub_ca2,
            contract,
            emaid: emaid.into(),
        })
    }

    /// The contract chain's sub-CAs, leaf's issuer first, DER.
    pub fn sub_cas(&self) -> Vec<Vec<u8>> {
        vec![
            self.mo_sub_ca2.cert.der().to_vec(),
            self.mo_sub_ca1.cert.der().to_vec(),
        ]
    }
}

impl DemoPki {
    /// Every certificate with its file stem, in the order written.
    pub fn all(&self) -> Vec<(&'static str, &Issued)> {
        vec![
            ("v2g_root", &self.v2g_root),
            ("cpo_sub_ca1", &self.cpo_sub_ca1),
            ("cpo_sub_ca2", &self.cpo_sub_ca2),
            ("secc_leaf", &self.secc),
            ("cps_sub_ca1", &self.cps_sub_ca1),
            ("cps_sub_ca2", &self.cps_sub_ca2),
            ("cps_leaf", &self.cps),
            ("mo_root", &self.mo_root),
            ("mo_sub_ca1", &self.mo_sub_ca1),
            ("mo_sub_ca2", &self.mo_sub_ca2),
            ("contract_leaf", &self.contract),
            ("oem_root", &self.oem_root),
            ("oem_sub_ca1", &self.oem_sub_ca1),
            ("oem_sub_ca2", &self.oem_sub_ca2),
            ("oem_leaf", &self.oem_provisioning),
        ]
    }

    /// The contract chain's sub-CAs, leaf's issuer first, DER.
    pub fn contract_sub_cas(&self) -> Vec<Vec<u8>> {
        vec![
            self.mo_sub_ca2.cert.der().to_vec(),
            self.mo_sub_ca1.cert.der().to_vec(),
        ]
    }

    /// The SA provisioning chain's sub-CAs, leaf's issuer first, DER.
    pub fn cps_sub_cas(&self) -> Vec<Vec<u8>> {
        vec![
            self.cps_sub_ca2.cert.der().to_vec(),
            self.cps_sub_ca1.cert.der().to_vec(),
        ]
    }

    /// The OEM chain's sub-CAs, leaf's issuer first, DER.
    pub fn oem_sub_cas(&self) -> Vec<Vec<u8>> {
        vec![
            self.oem_sub_ca2.cert.der().to_vec(),
            self.oem_sub_ca1.cert.der().to_vec(),
        ]
    }

    /// Makes the PKI from `seed`, every certificate valid from
    /// `not_before` to `not_after` (Unix s). The contract's eMAID is
    /// `DEEVPC000000001`-style: `emaid`.
    pub fn generate(
        seed: &[u8],
        emaid: &str,
        not_before: u64,
        not_after: u64,
    ) -> Result<Self, IssueError> {
        let mut serial = 0u32;
        let mut make = |name: &str, issuer: Option<&Issued>, role: Role| {
            serial += 1;
            let key = derive_key(seed, name);
            issue(name, &key, issuer, role, serial, not_before, not_after)
        };
        let v2g_root = make("CN=V2G Root CA,O=evproto,DC=V2G", None, Role::Root)?;
        let cpo_sub_ca1 = make(
            "CN=CPO Sub-CA 1,O=evproto,DC=V2G",
            Some(&v2g_root),
            Role::SubCa(1),
        )?;
        let cpo_sub_ca2 = make(
            "CN=CPO Sub-CA 2,O=evproto,DC=V2G",
            Some(&cpo_sub_ca1),
            Role::SubCa(0),
        )?;
        let secc = make("CN=SECC,O=evproto,DC=CPO", Some(&cpo_sub_ca2), Role::Signer)?;
        let cps_sub_ca1 = make(
            "CN=CPS Sub-CA 1,O=evproto,DC=V2G",
            Some(&v2g_root),
            Role::SubCa(1),
        )?;
        let cps_sub_ca2 = make(
            "CN=CPS Sub-CA 2,O=evproto,DC=V2G",
            Some(&cps_sub_ca1),
            Role::SubCa(0),
        )?;
        let cps = make(
            "CN=CPS Leaf,O=evproto,DC=CPS",
            Some(&cps_sub_ca2),
            Role::Signer,
        )?;
        let [mo_root, mo_sub_ca1, mo_sub_ca2, contract] = mo_chain(&mut make, "", emaid)?;
        let oem_root = make("CN=OEM Root CA,O=evproto,DC=OEM", None, Role::Root)?;
        let oem_sub_ca1 = make(
            "CN=OEM Sub-CA 1,O=evproto,DC=OEM",
            Some(&oem_root),
            Role::SubCa(1),
        )?;
        let oem_sub_ca2 = make(
            "CN=OEM Sub-CA 2,O=evproto,DC=OEM",
            Some(&oem_sub_ca1),
            Role::SubCa(0),
        )?;
        let oem_provisioning = make(
            "CN=EVPROTO0000001,O=evproto,DC=OEM",
            Some(&oem_sub_ca2),
            Role::Provisioning,
        )?;
        Ok(Self {
            v2g_root,
            cpo_sub_ca1,
            cpo_sub_ca2,
            secc,
            cps_sub_ca1,
            cps_sub_ca2,
            cps,
            mo_root,
            mo_sub_ca1,
            mo_sub_ca2,
            contract,
            oem_root,
            oem_sub_ca1,
            oem_sub_ca2,
            oem_provisioning,
            emaid: emaid.into(),
        })
    }
}
