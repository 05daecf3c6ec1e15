//! Contract certificates: whether one may charge (OCPP 2.0.1 C07, the
//! verdict a pure function of the chain check and the OCSP status), and
//! where a car gets one (M01/M02 `Get15118EVCertificate`): the
//! [`ContractCertificateProvider`] a mobility operator's or a commercial
//! PKI's service plugs in as, and the lab's own ([`BuiltinProvider`]),
//! which issues a contract under the built-in MO chain with its key
//! encrypted for the car (ISO 15118-2 [V2G2-818]).

use evproto_iso15118::grammar::HexBinary;
use evproto_iso15118::messages::iso2 as m;
use evproto_iso15118::pki::demo::{self, Role};
use evproto_iso15118::pki::{self, CertError, LeafUsage, TrustStore};
use evproto_iso15118::session::{Contract, ContractProvisioning};

use super::ca::BuiltinPki;
use super::ocsp::{CertId, OcspStatus};

/// The certificate part of the answer to a contract's `Authorize`
/// (`AuthorizeCertificateStatusEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Valid, trusted, not revoked.
    Accepted,
    /// A signature does not verify (for providers that tell it apart;
    /// [`verify`] answers a chain that does not verify `CertChainError`).
    SignatureError,
    /// The contract (or a CA above it) is expired or not yet valid.
    CertificateExpired,
    /// OCSP says revoked.
    CertificateRevoked,
    /// No contract certificate was presented.
    NoCertificateAvailable,
    /// The chain does not end at a trusted MO root, or is no contract chain.
    CertChainError,
}

impl Verdict {
    /// The OCPP spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "Accepted",
            Verdict::SignatureError => "SignatureError",
            Verdict::CertificateExpired => "CertificateExpired",
            Verdict::CertificateRevoked => "CertificateRevoked",
            Verdict::NoCertificateAvailable => "NoCertificateAvailable",
            Verdict::CertChainError => "CertChainError",
        }
    }
}

/// A contract chain that verified: its eMAID and the id OCSP is asked
/// about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedContract {
    /// The contract certificate's CN.
    pub emaid: String,
    /// The leaf's OCSP id.
    pub cert_id: CertId,
}

/// An eMAID compared without its dashes and case (`DE-8EO-C12345678-X`
/// and `de8eoc12345678x` are one).
pub fn same_emaid(a: &str, b: &str) -> bool {
    let n = |s: &str| {
        s.chars()
            .filter(|c| *c != '-')
            .flat_map(char::to_uppercase)
            .collect::<String>()
    };
    n(a) == n(b)
}

/// Checks the contract chain `pem` (leaf first, then its sub-CAs) for the
/// token `emaid` against the MO `roots` at Unix time `at`.
pub fn verify(
    pem: &str,
    emaid: &str,
    roots: &TrustStore,
    at: u64,
) -> Result<VerifiedContract, Verdict> {
    if pem.trim().is_empty() {
        return Err(Verdict::NoCertificateAvailable);
    }
    let chain = pki::Cert::from_pem_chain(pem.as_bytes()).map_err(|_| Verdict::CertChainError)?;
    let Some((leaf, subs)) = chain.split_first() else {
        return Err(Verdict::NoCertificateAvailable);
    };
    let subs: Vec<Vec<u8>> = subs.iter().map(|c| c.der().to_vec()).collect();
    // each root on its own: roots of one name but different keys (test
    // PKIs made from different seeds) must not hide one another
    let verdict_of = |e: CertError| match e {
        CertError::Expired { .. } | CertError::NotYetValid { .. } => Verdict::CertificateExpired,
        // a signature that does not verify anywhere in the chain (a CA of
        // the same name but another key) breaks the chain
        _ => Verdict::CertChainError,
    };
    let mut refused = Verdict::CertChainError;
    let mut found = None;
    for root in roots.roots() {
        let one = TrustStore::new(vec![root.clone()]);
        match pki::verify_chain(leaf.der(), &subs, &one, at, LeafUsage::Signature) {
            Ok(v) => {
                found = Some(v);
                break;
            }
            Err(e) => {
                if verdict_of(e) == Verdict::CertificateExpired {
                    refused = Verdict::CertificateExpired;
                }
            }
        }
    }
    let verified = found.ok_or(refused)?;
    let name = verified.leaf.common_name().unwrap_or_default();
    if !same_emaid(&name, emaid) {
        return Err(Verdict::CertChainError);
    }
    let issuer = verified.sub_cas.first().unwrap_or(&verified.root);
    let cert_id =
        CertId::of(verified.leaf.der(), issuer.der()).map_err(|_| Verdict::CertChainError)?;
    Ok(VerifiedContract {
        emaid: name,
        cert_id,
    })
}

/// The verdict from the chain check and the OCSP status of its leaf
/// (`None`: the responder could not be asked: refused, fail closed; a
/// certificate the responder does not know is not trusted either).
pub fn judge(chain: &Result<VerifiedContract, Verdict>, ocsp: Option<OcspStatus>) -> Verdict {
    match (chain, ocsp) {
        (Err(v), _) => *v,
        (Ok(_), Some(OcspStatus::Good)) => Verdict::Accepted,
        (Ok(_), Some(OcspStatus::Revoked { .. })) => Verdict::CertificateRevoked,
        (Ok(_), Some(OcspStatus::Unknown) | None) => Verdict::CertChainError,
    }
}

/// `Get15118EVCertificate`'s action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateAction {
    /// CertificateInstallationReq.
    Install,
    /// CertificateUpdateReq.
    Update,
}

/// What a station forwards of a car's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvCertificateRequest {
    /// `iso15118SchemaVersion` (`urn:iso:15118:2:2013:MsgDef` for -2).
    pub schema_version: String,
    /// Install or update.
    pub action: CertificateAction,
    /// The car's request, EXI.
    pub exi: Vec<u8>,
}

/// Why a provider made no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The request is not one this provider serves.
    #[error("not served: {0}")]
    NotServed(String),
    /// The request does not decode or names an unusable certificate.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The provider failed.
    #[error("provider: {0}")]
    Failed(String),
}

/// A contract certificate service: the EXI answer (a whole V2G message
/// for the car) to a car's installation or update request.
#[async_trait::async_trait]
pub trait ContractCertificateProvider: Send + Sync + std::fmt::Debug {
    /// The EXI answer for `request` at Unix time `at`.
    async fn answer(
        &self,
        request: &EvCertificateRequest,
        at: u64,
    ) -> Result<Vec<u8>, ProviderError>;
}

/// ISO 15118-2's `iso15118SchemaVersion`.
pub const ISO2_SCHEMA: &str = "urn:iso:15118:2:2013:MsgDef";

/// The fresh values an installation needs (drawn by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// The contract's private key (secp256r1 scalar).
    pub contract_key: [u8; 32],
    /// The ephemeral ECDH key.
    pub ephemeral_key: [u8; 32],
    /// The AES IV.
    pub iv: [u8; 16],
    /// The contract certificate's serial.
    pub serial: u32,
}

/// The lab's contract service over the built-in PKI: a contract for any
/// car, its eMAID `{country}{party}C` and nine characters of the
/// provisioning certificate's hash, valid `validity` seconds (at most to
/// the MO CA's end). The -2 request carries the OEM provisioning
/// certificate without its sub-CAs, so the OEM chain is not checked here
/// (the SECC checked the request's signature with it; a commercial service
/// checks it against its OEM roots).
#[derive(Debug, Clone)]
pub struct BuiltinProvider {
    /// The PKI.
    pub pki: BuiltinPki,
    /// The eMAID prefix: country and party (`NLEVP`).
    pub emaid_prefix: String,
    /// A contract's lifetime, s.
    pub validity: u64,
}

impl BuiltinProvider {
    /// The eMAID a car of this provisioning certificate gets.
    pub fn emaid_for(&self, oem_provisioning_cert: &[u8]) -> String {
        let h = pki::sha256(oem_provisioning_cert);
        let tail: String = h
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
            .chars()
            .take(9)
            .collect();
        format!("{}C{tail}", self.emaid_prefix)
    }

    /// The CertificateInstallationRes for the request `exi` at `at` (pure:
    /// the fresh values come in).
    ///
    /// # Errors
    ///
    /// Not a -2 installation request, or a certificate that cannot be used.
    pub fn install(&self, exi: &[u8], at: u64, fresh: &Fresh) -> Result<Vec<u8>, ProviderError> {
        let bad = |e: String| ProviderError::BadRequest(e);
        let msg = match m::Message::decode(exi) {
            Ok(m::Message::V2gMessage(v)) => *v,
            Ok(_) => return Err(bad("not a V2G message".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        let req = msg
            .body
            .certificate_installation_req
            .ok_or_else(|| bad("not a CertificateInstallationReq".into()))?;
        let oem = req.oem_provisioning_cert.0;
        pki::Cert::from_der(&oem).map_err(|e| bad(e.to_string()))?;
        let emaid = self.emaid_for(&oem);
        let mo = &self.pki.v2g.mo_sub_ca2;
        let (_, ca_end) = mo.cert.validity();
        let failed = |e: String| ProviderError::Failed(e);
        let key = pki::SigningKey::p256_from_bytes(&fresh.contract_key)
            .map_err(|e| failed(e.to_string()))?;
        let contract = demo::issue(
            &format!("CN={emaid},O=evproto,DC=MO"),
            &key,
            Some(mo),
            Role::Signer,
            fresh.serial,
            at.saturating_sub(60),
            (at + self.validity).min(ca_end),
        )
        .map_err(|e| failed(e.to_string()))?;
        let v2g = &self.pki.v2g;
        let provisioning = ContractProvisioning {
            cps_key: v2g.cps.key.clone(),
            cps_certificate: v2g.cps.cert.der().to_vec(),
            cps_sub_cas: v2g.cps_sub_cas(),
            contract: Contract::new(
                emaid,
                contract.cert.der().to_vec(),
                v2g.contract_sub_cas(),
                fresh.contract_key.to_vec(),
            ),
        };
        let installed = provisioning
            .install(&oem, &fresh.ephemeral_key, fresh.iv)
            .map_err(|e| failed(e.to_string()))?;
        let answer = m::Message::V2gMessage(Box::new(m::V2gMessage {
            header: m::MessageHeaderType {
                session_id: HexBinary(msg.header.session_id.0),
                notification: None,
                signature: Some(installed.signature),
            },
            body: m::BodyType {
                certificate_installation_res: Some(installed.response),
                ..Default::default()
            },
        }));
        let mut out = Vec::new();
        answer.encode(&mut out).map_err(|e| failed(e.to_string()))?;
        Ok(out)
    }
}

#[async_trait::async_trait]
impl ContractCertificateProvider for BuiltinProvider {
    async fn answer(
        &self,
        request: &EvCertificateRequest,
        at: u64,
    ) -> Result<Vec<u8>, ProviderError> {
        if request.schema_version != ISO2_SCHEMA {
            return Err(ProviderError::NotServed(format!(
                "schema {} (ISO 15118-2 only)",
                request.schema_version
            )));
        }
        if request.action != CertificateAction::Install {
            return Err(ProviderError::NotServed("CertificateUpdate".into()));
        }
        let fresh = Fresh {
            contract_key: super::random_scalar(),
            ephemeral_key: super::random_scalar(),
            iv: super::random_array(),
            serial: u32::from_be_bytes(super::random_array()) | 0x1000_0000,
        };
        self.install(&request.exi, at, &fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pnc::ocsp::TestResponder;

    const AT: u64 = 1_800_000_000;

    fn builtin() -> BuiltinPki {
        BuiltinPki::from_seed(b"contract tests", 1_700_000_000, 2_000_000_000).unwrap()
    }

    fn chain_pem(p: &demo::DemoPki) -> String {
        let mut s = crate::pnc::ca::pem(p.contract.cert.der());
        for d in p.contract_sub_cas() {
            s.push_str(&crate::pnc::ca::pem(&d));
        }
        s
    }

    #[test]
    fn verdicts_of_chains_and_ocsp() {
        let p = builtin();
        let roots = TrustStore::new(vec![p.v2g.mo_root.cert.clone()]);
        let pem = chain_pem(&p.v2g);
        let ok = verify(&pem, "XX-EVP-C000000000", &roots, AT);
        assert_eq!(ok.as_ref().unwrap().emaid, "XXEVPC000000000");
        assert_eq!(judge(&ok, Some(OcspStatus::Good)), Verdict::Accepted);
        assert_eq!(
            judge(&ok, Some(OcspStatus::Revoked { at: 1 })),
            Verdict::CertificateRevoked
        );
        assert_eq!(judge(&ok, None), Verdict::CertChainError);
        assert_eq!(
            verify(&pem, "XXEVPC000000000", &roots, 2_100_000_000),
            Err(Verdict::CertificateExpired)
        );
        assert_eq!(
            verify(&pem, "OTHER", &roots, AT),
            Err(Verdict::CertChainError)
        );
        let foreign =
            demo::DemoPki::generate(b"foreign", "XXEVPC000000000", 1, 2_000_000_000).unwrap();
        assert_eq!(
            verify(&chain_pem(&foreign), "XXEVPC000000000", &roots, AT),
            Err(Verdict::CertChainError)
        );
        // a root of the same name but another key does not hide the right one
        let both = TrustStore::new(vec![
            foreign.mo_root.cert.clone(),
            p.v2g.mo_root.cert.clone(),
        ]);
        assert!(verify(&pem, "XXEVPC000000000", &both, AT).is_ok());
        assert_eq!(
            verify("", "XXEVPC000000000", &roots, AT),
            Err(Verdict::NoCertificateAvailable)
        );
        let id = ok.unwrap().cert_id;
        let r = TestResponder {
            signer: p.ocsp_responder.clone(),
            validity: 60,
        };
        assert_eq!(r.respond(&id, None, AT).unwrap().status, OcspStatus::Good);
    }
}
