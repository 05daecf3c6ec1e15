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
//! What a -20 contract installation needs besides (an OEM hierarchy and
//! provisioning certificate whose CN is an 18-character PCID, a V2G root
//! and CPS chain) is a [`DemoProvisioning`]. Every secp521r1 certificate
//! carries a SubjectKeyIdentifier (the first 8 bytes of the SHA-256 of
//! its public key: -20's AAD takes it as 16 hexadecimal characters,
//! [V2G20-2492]).
//!
//! For tests and lab setups only: keys derived from a seed are no secret.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256, Sha512};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::OctetString;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::Encode;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
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
    /// Add a SubjectKeyIdentifier (the -20 hierarchies).
    ski: bool,
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
        spk: SubjectPublicKeyInfoRef<'_>,
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
        let mut exts = vec![
            ext(
                &BasicConstraints {
                    ca,
                    path_len_constraint: path_len,
                },
                true,
            )?,
            ext(&KeyUsage(usage), true)?,
        ];
        if self.ski {
            let digest = Sha256::digest(spk.subject_public_key.raw_bytes());
            exts.push(ext(
                &SubjectKeyIdentifier(OctetString::new(&digest[..8])?),
                false,
            )?);
        }
        Ok(exts)
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
        ski: matches!(key, SigningKey::P521(_)),
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

/// A chain's two sub-CAs, the leaf's issuer first, DER.
fn sub_cas(issuer: &Issued, above: &Issued) -> Vec<Vec<u8>> {
    vec![issuer.cert.der().to_vec(), above.cert.der().to_vec()]
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

/// `parent` → sub-CA 1 (path length 1) → sub-CA 2 (0) → leaf of `role`,
/// named `names`, each made by `make(subject, issuer, role)`.
fn below(
    make: &mut impl FnMut(&str, Option<&Issued>, Role) -> Result<Issued, IssueError>,
    parent: &Issued,
    names: [&str; 3],
    role: Role,
) -> Result<[Issued; 3], IssueError> {
    let sub1 = make(names[0], Some(parent), Role::SubCa(1))?;
    let sub2 = make(names[1], Some(&sub1), Role::SubCa(0))?;
    let leaf = make(names[2], Some(&sub2), role)?;
    Ok([sub1, sub2, leaf])
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
    let [sub1, sub2, contract] = below(
        make,
        &root,
        [
            &format!("CN=MO Sub-CA 1{tag},O=evproto,DC=MO"),
            &format!("CN=MO Sub-CA 2{tag},O=evproto,DC=MO"),
            &format!("CN={emaid},O=evproto,DC=MO"),
        ],
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
        sub_cas(&self.mo_sub_ca2, &self.mo_sub_ca1)
    }
}

/// What an ISO 15118-20 contract installation needs besides the contract
/// ([`DemoContract`] on [`Curve::P521`]), all secp521r1: a V2G root → CPS
/// sub-CA 1 → CPS sub-CA 2 → CPS leaf (it signs CertificateInstallationRes'
/// SignedInstallationData), and OEM root → OEM sub-CA 1 → OEM sub-CA 2 →
/// OEM provisioning leaf (digitalSignature and keyAgreement; CN = the
/// PCID, 18 characters as -20's AAD has it).
#[derive(Debug, Clone)]
pub struct DemoProvisioning {
    /// V2G root CA (-20).
    pub v2g_root: Issued,
    /// CPS sub-CA 1.
    pub cps_sub_ca1: Issued,
    /// CPS sub-CA 2.
    pub cps_sub_ca2: Issued,
    /// The CPS leaf.
    pub cps: Issued,
    /// OEM root CA (-20).
    pub oem_root: Issued,
    /// OEM sub-CA 1.
    pub oem_sub_ca1: Issued,
    /// OEM sub-CA 2.
    pub oem_sub_ca2: Issued,
    /// The OEM provisioning certificate (CN = [`DemoProvisioning::pcid`]).
    pub oem_provisioning: Issued,
    /// The provisioning certificate's ID.
    pub pcid: String,
}

impl DemoProvisioning {
    /// The PCID of the demo car: 18 upper-case letters and digits.
    pub const PCID: &'static str = "EVPROTO00000000020";

    /// Makes the hierarchies from `seed` on secp521r1 (keys labelled apart
    /// from [`DemoPki`]'s and [`DemoContract`]'s, serial numbers from
    /// 201), valid from `not_before` to `not_after` (Unix s).
    pub fn generate(seed: &[u8], not_before: u64, not_after: u64) -> Result<Self, IssueError> {
        let mut serial = 200u32;
        let mut make = |name: &str, issuer: Option<&Issued>, role: Role| {
            serial += 1;
            let key = derive_key_p521(seed, &format!("provisioning:{name}"));
            issue(name, &key, issuer, role, serial, not_before, not_after)
        };
        let v2g_root = make("CN=V2G Root CA (-20),O=evproto,DC=V2G", None, Role::Root)?;
        let [cps_sub_ca1, cps_sub_ca2, cps] = below(
            &mut make,
            &v2g_root,
            [
                "CN=CPS Sub-CA 1 (-20),O=evproto,DC=V2G",
                "CN=CPS Sub-CA 2 (-20),O=evproto,DC=V2G",
                "CN=CPS Leaf (-20),O=evproto,DC=CPS",
            ],
            Role::Signer,
        )?;
        let oem_root = make("CN=OEM Root CA (-20),O=evproto,DC=OEM", None, Role::Root)?;
        let [oem_sub_ca1, oem_sub_ca2, oem_provisioning] = below(
            &mut make,
            &oem_root,
            [
                "CN=OEM Sub-CA 1 (-20),O=evproto,DC=OEM",
                "CN=OEM Sub-CA 2 (-20),O=evproto,DC=OEM",
                &format!("CN={},O=evproto,DC=OEM", Self::PCID),
            ],
            Role::Provisioning,
        )?;
        Ok(Self {
            v2g_root,
            cps_sub_ca1,
            cps_sub_ca2,
            cps,
            oem_root,
            oem_sub_ca1,
            oem_sub_ca2,
            oem_provisioning,
            pcid: Self::PCID.into(),
        })
    }

    /// The CPS chain's sub-CAs, leaf's issuer first, DER.
    pub fn cps_sub_cas(&self) -> Vec<Vec<u8>> {
        sub_cas(&self.cps_sub_ca2, &self.cps_sub_ca1)
    }

    /// The OEM chain's sub-CAs, leaf's issuer first, DER.
    pub fn oem_sub_cas(&self) -> Vec<Vec<u8>> {
        sub_cas(&self.oem_sub_ca2, &self.oem_sub_ca1)
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
        sub_cas(&self.mo_sub_ca2, &self.mo_sub_ca1)
    }

    /// The SA provisioning chain's sub-CAs, leaf's issuer first, DER.
    pub fn cps_sub_cas(&self) -> Vec<Vec<u8>> {
        sub_cas(&self.cps_sub_ca2, &self.cps_sub_ca1)
    }

    /// The OEM chain's sub-CAs, leaf's issuer first, DER.
    pub fn oem_sub_cas(&self) -> Vec<Vec<u8>> {
        sub_cas(&self.oem_sub_ca2, &self.oem_sub_ca1)
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
        let [cpo_sub_ca1, cpo_sub_ca2, secc] = below(
            &mut make,
            &v2g_root,
            [
                "CN=CPO Sub-CA 1,O=evproto,DC=V2G",
                "CN=CPO Sub-CA 2,O=evproto,DC=V2G",
                "CN=SECC,O=evproto,DC=CPO",
            ],
            Role::Signer,
        )?;
        let [cps_sub_ca1, cps_sub_ca2, cps] = below(
            &mut make,
            &v2g_root,
            [
                "CN=CPS Sub-CA 1,O=evproto,DC=V2G",
                "CN=CPS Sub-CA 2,O=evproto,DC=V2G",
                "CN=CPS Leaf,O=evproto,DC=CPS",
            ],
            Role::Signer,
        )?;
        let [mo_root, mo_sub_ca1, mo_sub_ca2, contract] = mo_chain(&mut make, "", emaid)?;
        let oem_root = make("CN=OEM Root CA,O=evproto,DC=OEM", None, Role::Root)?;
        let [oem_sub_ca1, oem_sub_ca2, oem_provisioning] = below(
            &mut make,
            &oem_root,
            [
                "CN=OEM Sub-CA 1,O=evproto,DC=OEM",
                "CN=OEM Sub-CA 2,O=evproto,DC=OEM",
                "CN=EVPROTO0000001,O=evproto,DC=OEM",
            ],
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
