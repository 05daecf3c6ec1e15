//! The CSMS's certificate authorities when Plug & Charge is on: a test PKI
//! for labs, made from a seed the store keeps (so every node and every
//! restart has the same one): the station CA that signs charging-station
//! certificates, the V2G root with the CPO sub-CAs that sign SECC (V2G)
//! certificates, the MO chain that issues contracts, the CPS chain that
//! signs contract installations, the OEM chain of the cars' provisioning
//! certificates ([`evproto_iso15118::pki::demo::DemoPki`]) and the OCSP responder's
//! certificate; and ISO 15118-20's, on secp521r1: its V2G root with the
//! CPS chain that signs -20 contract installations, its MO chain that
//! issues -20 contracts and its OEM chain
//! ([`evproto_iso15118::pki::demo::DemoProvisioning`],
//! [`evproto_iso15118::pki::demo::DemoContract`]). Pure: the seed, the
//! times and the serials come in.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use evproto_iso15118::pki::demo::{
    self, Curve, DemoContract, DemoPki, DemoProvisioning, IssueError, Issued, Role,
};
use evproto_iso15118::pki::SigningKey;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use x509_cert::TbsCertificate;

/// What a station certificate is for (OCPP `CertificateSigningUseEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateUse {
    /// The station's TLS client certificate towards the CSMS.
    ChargingStation,
    /// The SECC's TLS server certificate towards the car (ISO 15118).
    V2g,
}

impl CertificateUse {
    /// As the store and the API spell it (the OCPP value).
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateUse::ChargingStation => "ChargingStationCertificate",
            CertificateUse::V2g => "V2GCertificate",
        }
    }

    /// From [`CertificateUse::as_str`].
    pub fn parse(s: &str) -> Option<CertificateUse> {
        [CertificateUse::ChargingStation, CertificateUse::V2g]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

/// The CSMS's CAs (see the module docs).
#[derive(Debug, Clone)]
pub struct BuiltinPki {
    /// V2G, CPO, CPS, MO and OEM chains.
    pub v2g: DemoPki,
    /// ISO 15118-20's V2G root with its CPS chain, and its OEM chain
    /// (secp521r1).
    pub iso20: DemoProvisioning,
    /// ISO 15118-20's MO chain (secp521r1): its sub-CA 2 issues -20
    /// contracts (its own demo contract is not handed out).
    pub iso20_mo: DemoContract,
    /// The root that signs charging-station certificates.
    pub station_ca: Issued,
    /// The OCSP responder's certificate (under the V2G root).
    pub ocsp_responder: Issued,
    /// A configured CA that signs charging-station certificates instead of
    /// `station_ca` (`--pnc-station-ca`).
    pub station_signer: Option<ConfiguredCa>,
    /// A configured CPO sub-CA that signs V2G certificates instead of the
    /// built-in CPO sub-CA 2 (`--pnc-cpo-ca`).
    pub v2g_signer: Option<ConfiguredCa>,
}

/// A CA of the operator's own PKI: its certificate and key, and the chain
/// that goes with the certificates it signs (itself first, then the CAs
/// above it, no root).
#[derive(Clone)]
pub struct ConfiguredCa {
    /// The CA (certificate and key).
    pub ca: Issued,
    /// The chain sent with a signed certificate: `ca` first, then its issuers
    /// up to (not including) the root.
    pub chain: Vec<evproto_iso15118::pki::Cert>,
}

impl std::fmt::Debug for ConfiguredCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("ConfiguredCa")
            .field("subject", &self.ca.cert.subject())
            .field("chain", &self.chain.len())
            .finish()
    }
}

impl PartialEq for ConfiguredCa {
    fn eq(&self, other: &Self) -> bool {
        // the key is the certificate's (checked when read)
        self.chain == other.chain
    }
}

impl Eq for ConfiguredCa {}

impl ConfiguredCa {
    /// From a PEM chain (the CA first, then its issuers; no root needed) and
    /// the CA's key (PEM, PKCS#8 or SEC1, secp256r1).
    ///
    /// # Errors
    ///
    /// Unreadable PEM, no certificate, a key that is not the first
    /// certificate's, a first certificate that is not a CA allowed to sign
    /// certificates.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<ConfiguredCa, String> {
        let chain =
            evproto_iso15118::pki::Cert::from_pem_chain(chain_pem).map_err(|e| e.to_string())?;
        let first = chain.first().ok_or("no certificate in the chain")?.clone();
        let text = std::str::from_utf8(key_pem).map_err(|_| "the key is not PEM text")?;
        let (_, der) = x509_cert::der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| format!("the key is not PEM: {e}"))?;
        let key = SigningKey::from_der(&der).map_err(|e| format!("the key: {e}"))?;
        if !matches!(key, SigningKey::P256(_)) {
            return Err("the key is not secp256r1".into());
        }
        if evproto_iso15118::pki::VerifyingKey::of(&first).map_err(|e| e.to_string())?
            != key.verifying_key()
        {
            return Err(format!("the key is not {}'s", first.subject()));
        }
        let parsed = x509_cert::Certificate::from_der(first.der()).map_err(|e| e.to_string())?;
        let is_ca = parsed
            .tbs_certificate()
            .get_extension::<BasicConstraints>()
            .ok()
            .flatten()
            .is_some_and(|(_, b)| b.ca);
        if !is_ca {
            return Err(format!("{} is not a CA", first.subject()));
        }
        Ok(ConfiguredCa {
            ca: Issued { cert: first, key },
            chain,
        })
    }
}

impl BuiltinPki {
    /// The PKI of `seed`, every CA valid from `not_before` to `not_after`
    /// (Unix s).
    ///
    /// # Errors
    ///
    /// A certificate could not be made.
    pub fn from_seed(seed: &[u8], not_before: u64, not_after: u64) -> Result<Self, IssueError> {
        let v2g = DemoPki::generate(seed, "XXEVPC000000000", not_before, not_after)?;
        let station_ca = demo::issue(
            "CN=CSMS Station CA,O=evproto",
            &demo::derive_key(seed, "station ca"),
            None,
            Role::Root,
            100,
            not_before,
            not_after,
        )?;
        let ocsp_responder = demo::issue(
            "CN=OCSP Responder,O=evproto,DC=V2G",
            &demo::derive_key(seed, "ocsp responder"),
            Some(&v2g.v2g_root),
            Role::Signer,
            101,
            not_before,
            not_after,
        )?;
        let iso20 = DemoProvisioning::generate(seed, not_before, not_after)?;
        let iso20_mo =
            DemoContract::generate(seed, "XXEVPC000000020", Curve::P521, not_before, not_after)?;
        Ok(Self {
            v2g,
            iso20,
            iso20_mo,
            station_ca,
            ocsp_responder,
            station_signer: None,
            v2g_signer: None,
        })
    }

    /// The issuer of a use's certificates and the sub-CAs that go with it
    /// into the returned chain (leaf's issuer first, no root): a configured
    /// CA's, else the built-in one's.
    fn issuer_of(&self, usage: CertificateUse) -> (&Issued, Vec<&evproto_iso15118::pki::Cert>) {
        let configured = match usage {
            CertificateUse::ChargingStation => &self.station_signer,
            CertificateUse::V2g => &self.v2g_signer,
        };
        if let Some(c) = configured {
            return (&c.ca, c.chain.iter().collect());
        }
        match usage {
            CertificateUse::ChargingStation => (&self.station_ca, vec![]),
            CertificateUse::V2g => (
                &self.v2g.cpo_sub_ca2,
                vec![&self.v2g.cpo_sub_ca2.cert, &self.v2g.cpo_sub_ca1.cert],
            ),
        }
    }

    /// The CA that signs charging-station certificates (the configured one,
    /// else the built-in station CA).
    pub fn station_issuer(&self) -> &Issued {
        self.issuer_of(CertificateUse::ChargingStation).0
    }

    /// Signs a checked request's key as `usage` for `subject` (an RFC 4514
    /// name), valid from `not_before` to `not_after` (Unix s), with
    /// `serial` (positive, at most 20 bytes): the PEM chain for
    /// `CertificateSigned` (leaf first, then the sub-CAs).
    ///
    /// # Errors
    ///
    /// The name, the times or the serial are not usable, or signing failed.
    pub fn sign(
        &self,
        usage: CertificateUse,
        subject: &str,
        public_key: &SubjectPublicKeyInfoOwned,
        serial: &[u8],
        not_before: u64,
        not_after: u64,
    ) -> Result<Signed, IssueError> {
        let err = |reason: String| IssueError {
            subject: subject.into(),
            reason,
        };
        let (issuer, chain) = self.issuer_of(usage);
        let SigningKey::P256(signer) = &issuer.key else {
            return Err(err("the CA key is not secp256r1".into()));
        };
        let issuer_cert =
            x509_cert::Certificate::from_der(issuer.cert.der()).map_err(|e| err(e.to_string()))?;
        let profile = LeafProfile {
            subject: Name::from_str(subject).map_err(|e| err(e.to_string()))?,
            issuer: issuer_cert.tbs_certificate().subject().clone(),
            usage,
        };
        let validity = Validity::new(
            unix_time(not_before).map_err(err)?,
            unix_time(not_after).map_err(err)?,
        );
        let serial = SerialNumber::new(serial).map_err(|e| err(e.to_string()))?;
        let cert = CertificateBuilder::new(profile, serial, validity, public_key.clone())
            .map_err(|e| err(e.to_string()))?
            .build::<_, p256::ecdsa::DerSignature>(signer)
            .map_err(|e| err(e.to_string()))?;
        let der = cert.to_der().map_err(|e| err(e.to_string()))?;
        let mut pem_chain = pem(&der);
        for c in chain {
            pem_chain.push_str(&pem(c.der()));
        }
        Ok(Signed { der, pem_chain })
    }
}

/// A certificate the CA signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The leaf, DER.
    pub der: Vec<u8>,
    /// The leaf and its sub-CAs, PEM.
    pub pem_chain: String,
}

/// A DER certificate as PEM (empty when `der` is no certificate).
pub fn pem(der: &[u8]) -> String {
    use x509_cert::der::EncodePem;
    x509_cert::Certificate::from_der(der)
        .and_then(|c| c.to_pem(x509_cert::der::pem::LineEnding::LF))
        .unwrap_or_default()
}

fn unix_time(secs: u64) -> Result<Time, String> {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(secs)).map_err(|e| e.to_string())
}

/// The leaf profile: no CA, digitalSignature and keyAgreement (ISO 15118-2
/// Annex F's SECC leaf; the same for the station's TLS key), TLS client
/// (station) or server (SECC) use.
struct LeafProfile {
    subject: Name,
    issuer: Name,
    usage: CertificateUse,
}

const OID_SERVER_AUTH: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const OID_CLIENT_AUTH: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

impl Profile for LeafProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
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
        let eku = match self.usage {
            CertificateUse::ChargingStation => OID_CLIENT_AUTH,
            CertificateUse::V2g => OID_SERVER_AUTH,
        };
        let basic = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };
        let usage = KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyAgreement);
        Ok(vec![
            (true, &basic).to_extension(&self.subject, &[])?,
            (true, &usage).to_extension(&self.subject, &[])?,
            (false, &ExtendedKeyUsage(vec![eku])).to_extension(&self.subject, &[])?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evproto_iso15118::pki::{verify_chain, LeafUsage, TrustStore};

    #[test]
    fn a_v2g_certificate_chains_to_the_v2g_root_and_a_station_one_to_the_station_ca() {
        let pki = BuiltinPki::from_seed(b"seed", 1_700_000_000, 2_000_000_000).unwrap();
        let key = p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap();
        let v2g = pki
            .sign(
                CertificateUse::V2g,
                "CN=CS-1,O=evproto",
                &spki,
                &[1, 2, 3],
                1_800_000_000,
                1_900_000_000,
            )
            .unwrap();
        assert_eq!(v2g.pem_chain.matches("BEGIN CERTIFICATE").count(), 3);
        let roots = TrustStore::new(vec![pki.v2g.v2g_root.cert.clone()]);
        let subs = pki.v2g.cps_sub_cas(); // another chain's sub-CAs do not make a path
        assert!(
            verify_chain(&v2g.der, &subs, &roots, 1_850_000_000, LeafUsage::Signature).is_err()
        );
        let subs = vec![
            pki.v2g.cpo_sub_ca2.cert.der().to_vec(),
            pki.v2g.cpo_sub_ca1.cert.der().to_vec(),
        ];
        let chain =
            verify_chain(&v2g.der, &subs, &roots, 1_850_000_000, LeafUsage::Signature).unwrap();
        assert_eq!(chain.leaf.common_name().as_deref(), Some("CS-1"));
        // expired after its notAfter
        assert!(
            verify_chain(&v2g.der, &subs, &roots, 1_950_000_000, LeafUsage::Signature).is_err()
        );
        let station = pki
            .sign(
                CertificateUse::ChargingStation,
                "CN=CS-1,O=evproto",
                &spki,
                &[4],
                1_800_000_000,
                1_900_000_000,
            )
            .unwrap();
        let roots = TrustStore::new(vec![pki.station_ca.cert.clone()]);
        verify_chain(
            &station.der,
            &[],
            &roots,
            1_850_000_000,
            LeafUsage::Signature,
        )
        .unwrap();
        // the same seed makes the same CAs
        let again = BuiltinPki::from_seed(b"seed", 1_700_000_000, 2_000_000_000).unwrap();
        assert_eq!(again.station_ca.cert, pki.station_ca.cert);
    }
}
