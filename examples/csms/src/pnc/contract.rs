//! Contract certificates: whether one may charge (OCPP 2.0.1 C07, the
//! verdict a pure function of the chain check and the OCSP status), and
//! where a car gets one (M01/M02 `Get15118EVCertificate`): the
//! [`ContractCertificateProvider`] a mobility operator's or a commercial
//! PKI's service plugs in as, and the lab's own ([`BuiltinProvider`]),
//! which issues a contract under the built-in MO chain with its key
//! encrypted for the car (ISO 15118-2 [V2G2-818]): for its OEM
//! provisioning certificate at installation, for the contract it replaces
//! at an update (the same eMAID, a new key).

use evproto_iso15118::grammar::HexBinary;
use evproto_iso15118::messages::iso2 as m;
use evproto_iso15118::messages::iso20 as cm;
use evproto_iso15118::pki::demo::{self, Role};
use evproto_iso15118::pki::{self, CertError, LeafUsage, TrustStore};
use evproto_iso15118::session::{pnc, Contract, ContractProvisioning};

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

/// ISO 15118-20's `iso15118SchemaVersion` (the namespace of its
/// CommonMessages, where CertificateInstallation is).
pub const ISO20_SCHEMA: &str = "urn:iso:std:iso:15118:-20:CommonMessages";

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

/// The fresh values an ISO 15118-20 installation needs (drawn by the
/// caller), all secp521r1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshIso20 {
    /// The contract's private key (a secp521r1 scalar, 66 bytes).
    pub contract_key: [u8; 66],
    /// The ephemeral ECDH key (a secp521r1 scalar).
    pub ephemeral_key: [u8; 66],
    /// The AES-GCM IV.
    pub iv: [u8; 12],
    /// The contract certificate's serial.
    pub serial: u32,
}

/// The lab's contract service over the built-in PKI: a contract for any
/// car, its eMAID `{country}{party}C` and nine characters of the
/// provisioning certificate's hash, valid `validity` seconds (at most to
/// the MO CA's end). The -2 request carries the OEM provisioning
/// certificate without its sub-CAs, so the OEM chain is not checked here
/// (the SECC checked the request's signature with it; a commercial service
/// checks it against its OEM roots). ISO 15118-20 cars get theirs under
/// the -20 MO chain, delivered by the -20 CPS (secp521r1; -20 has no
/// CertificateUpdate: a car installs anew).
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
        let msg = decode_v2g(exi)?;
        let req = msg
            .body
            .certificate_installation_req
            .ok_or_else(|| bad("not a CertificateInstallationReq".into()))?;
        let oem = req.oem_provisioning_cert.0;
        pki::Cert::from_der(&oem).map_err(|e| bad(e.to_string()))?;
        let emaid = self.emaid_for(&oem);
        let provisioning = self.provisioning(emaid, at, fresh)?;
        let failed = |e: String| ProviderError::Failed(e);
        let installed = provisioning
            .install(&oem, &fresh.ephemeral_key, fresh.iv)
            .map_err(|e| failed(e.to_string()))?;
        answer(
            msg.header.session_id.0,
            installed.signature,
            m::BodyType {
                certificate_installation_res: Some(installed.response),
                ..Default::default()
            },
        )
    }

    /// The CertificateUpdateRes for the request `exi` at `at` (pure: the
    /// fresh values come in): a new contract for the same eMAID, with a new
    /// key encrypted for the old contract's. Only a contract this MO issued
    /// is renewed: its chain must end at the built-in MO root and be valid
    /// at `at`, the request must be signed by its key and name its eMAID.
    ///
    /// # Errors
    ///
    /// Not a -2 update request, a contract of another MO or expired, a
    /// signature that does not verify.
    pub fn update(&self, exi: &[u8], at: u64, fresh: &Fresh) -> Result<Vec<u8>, ProviderError> {
        let bad = |e: String| ProviderError::BadRequest(e);
        let msg = decode_v2g(exi)?;
        let signature = msg.header.signature.clone();
        let req = msg
            .body
            .certificate_update_req
            .ok_or_else(|| bad("not a CertificateUpdateReq".into()))?;
        let chain = &req.contract_signature_cert_chain;
        let leaf = chain.certificate.0.clone();
        let subs: Vec<Vec<u8>> = chain
            .sub_certificates
            .as_ref()
            .map(m::SubCertificatesType::ders)
            .unwrap_or_default();
        let roots = TrustStore::new(vec![self.pki.v2g.mo_root.cert.clone()]);
        let verified = pki::verify_chain(&leaf, &subs, &roots, at, LeafUsage::Signature)
            .map_err(|e| bad(format!("the contract to renew: {e}")))?;
        let emaid = verified
            .leaf
            .common_name()
            .filter(|cn| same_emaid(cn, &req.e_maid))
            .ok_or_else(|| bad(format!("eMAID {} is not the certificate's", req.e_maid)))?;
        let key = verified.leaf.public_key().map_err(|e| bad(e.to_string()))?;
        let mut fragment = Vec::new();
        m::Fragment::CertificateUpdateReq(Box::new(req.clone()))
            .encode(&mut fragment)
            .map_err(|e| bad(e.to_string()))?;
        let signature = signature.ok_or_else(|| bad("unsigned".into()))?;
        pki::verify(&signature, &[(req.id.as_str(), fragment.as_slice())], &key)
            .map_err(|e| bad(format!("signature: {e}")))?;
        let provisioning = self.provisioning(emaid, at, fresh)?;
        let updated = provisioning
            .update(&leaf, &fresh.ephemeral_key, fresh.iv)
            .map_err(|e| ProviderError::Failed(e.to_string()))?;
        answer(
            msg.header.session_id.0,
            updated.signature,
            m::BodyType {
                certificate_update_res: Some(updated.response),
                ..Default::default()
            },
        )
    }

    /// The ISO 15118-20 CertificateInstallationRes for the request `exi` at
    /// `at` (pure: the fresh values come in): a secp521r1 contract under
    /// the -20 MO chain for the car's PCID, its key encrypted for the
    /// provisioning certificate's [V2G20-2497], `SignedInstallationData`
    /// signed by the -20 CPS. The request's signature by the provisioning
    /// key is checked here too (a provider is not bound to trust the
    /// station), and a car that names the V2G roots it trusts must trust
    /// the -20 V2G root (it could not check the CPS otherwise).
    ///
    /// # Errors
    ///
    /// Not a -20 installation request, a signature that does not verify, a
    /// car that trusts none of our roots, a certificate that cannot be used.
    pub fn install_iso20(
        &self,
        exi: &[u8],
        at: u64,
        fresh: &FreshIso20,
    ) -> Result<Vec<u8>, ProviderError> {
        let bad = |e: String| ProviderError::BadRequest(e);
        let req = match cm::Message::decode(exi) {
            Ok(cm::Message::CertificateInstallationReq(r)) => r,
            Ok(_) => return Err(bad("not a CertificateInstallationReq".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        let oem = pnc::verify_iso20_installation_request(&req)
            .map_err(|e| bad(format!("the request's signature: {e}")))?;
        let root = &self.pki.iso20.v2g_root.cert;
        let trusted = &req.list_of_root_certificate_i_ds.root_certificate_id;
        if !trusted.is_empty()
            && !trusted.iter().any(|id| {
                id.x509_issuer_name == root.issuer() && Some(id.x509_serial_number) == root.serial()
            })
        {
            return Err(ProviderError::NotServed(
                "the car trusts none of our ISO 15118-20 V2G roots".into(),
            ));
        }
        let emaid = self.emaid_for(oem.der());
        let mo = &self.pki.iso20_mo;
        let failed = |e: String| ProviderError::Failed(e);
        let key = pki::SigningKey::p521_from_bytes(&fresh.contract_key)
            .map_err(|e| failed(e.to_string()))?;
        let contract = self.issue_contract(&emaid, &key, &mo.mo_sub_ca2, at, fresh.serial)?;
        let p = &self.pki.iso20;
        let provisioning = ContractProvisioning {
            cps_key: p.cps.key.clone(),
            cps_certificate: p.cps.cert.der().to_vec(),
            cps_sub_cas: p.cps_sub_cas(),
            contract: Contract::new(
                emaid,
                contract.cert.der().to_vec(),
                mo.sub_cas(),
                fresh.contract_key.to_vec(),
            ),
        };
        let installed = provisioning
            .install_iso20(oem.der(), &fresh.ephemeral_key, fresh.iv)
            .map_err(|e| failed(e.to_string()))?;
        let res = installed.into_response(&req.header.session_id.0, at);
        let mut out = Vec::new();
        cm::Message::CertificateInstallationRes(Box::new(res))
            .encode(&mut out)
            .map_err(|e| failed(e.to_string()))?;
        Ok(out)
    }

    /// The contract certificate for `emaid` with `key`, signed by `mo`,
    /// valid from `at` for [`BuiltinProvider::validity`] (at most to the
    /// MO CA's end).
    fn issue_contract(
        &self,
        emaid: &str,
        key: &pki::SigningKey,
        mo: &demo::Issued,
        at: u64,
        serial: u32,
    ) -> Result<demo::Issued, ProviderError> {
        let (_, ca_end) = mo.cert.validity();
        demo::issue(
            &format!("CN={emaid},O=evproto,DC=MO"),
            key,
            Some(mo),
            Role::Signer,
            serial,
            at.saturating_sub(60),
            (at + self.validity).min(ca_end),
        )
        .map_err(|e| ProviderError::Failed(e.to_string()))
    }

    /// A new contract for `emaid` under the MO chain, valid from `at` for
    /// [`BuiltinProvider::validity`] (at most to the MO CA's end), with the
    /// provisioning service that delivers it.
    fn provisioning(
        &self,
        emaid: String,
        at: u64,
        fresh: &Fresh,
    ) -> Result<ContractProvisioning, ProviderError> {
        let key = pki::SigningKey::p256_from_bytes(&fresh.contract_key)
            .map_err(|e| ProviderError::Failed(e.to_string()))?;
        let contract =
            self.issue_contract(&emaid, &key, &self.pki.v2g.mo_sub_ca2, at, fresh.serial)?;
        let v2g = &self.pki.v2g;
        Ok(ContractProvisioning {
            cps_key: v2g.cps.key.clone(),
            cps_certificate: v2g.cps.cert.der().to_vec(),
            cps_sub_cas: v2g.cps_sub_cas(),
            contract: Contract::new(
                emaid,
                contract.cert.der().to_vec(),
                v2g.contract_sub_cas(),
                fresh.contract_key.to_vec(),
            ),
        })
    }
}

/// A -2 V2G message.
fn decode_v2g(exi: &[u8]) -> Result<m::V2gMessage, ProviderError> {
    let bad = |e: String| ProviderError::BadRequest(e);
    match m::Message::decode(exi) {
        Ok(m::Message::V2gMessage(v)) => Ok(*v),
        Ok(_) => Err(bad("not a V2G message".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The answer to the car of `session_id`: `body` signed by the SA
/// provisioning key, EXI.
fn answer(
    session_id: Vec<u8>,
    signature: evproto_iso15118::messages::xmldsig::SignatureType,
    body: m::BodyType,
) -> Result<Vec<u8>, ProviderError> {
    let msg = m::Message::V2gMessage(Box::new(m::V2gMessage {
        header: m::MessageHeaderType {
            session_id: HexBinary(session_id),
            notification: None,
            signature: Some(signature),
        },
        body,
    }));
    let mut out = Vec::new();
    msg.encode(&mut out)
        .map_err(|e| ProviderError::Failed(e.to_string()))?;
    Ok(out)
}

#[async_trait::async_trait]
impl ContractCertificateProvider for BuiltinProvider {
    async fn answer(
        &self,
        request: &EvCertificateRequest,
        at: u64,
    ) -> Result<Vec<u8>, ProviderError> {
        if request.schema_version == ISO20_SCHEMA {
            if request.action == CertificateAction::Update {
                return Err(ProviderError::NotServed(
                    "ISO 15118-20 has no CertificateUpdate".into(),
                ));
            }
            let fresh = FreshIso20 {
                contract_key: super::random_scalar_p521(),
                ephemeral_key: super::random_scalar_p521(),
                iv: super::random_array(),
                serial: u32::from_be_bytes(super::random_array()) | 0x1000_0000,
            };
            return self.install_iso20(&request.exi, at, &fresh);
        }
        if request.schema_version != ISO2_SCHEMA {
            return Err(ProviderError::NotServed(format!(
                "schema {} (ISO 15118-2 and -20 only)",
                request.schema_version
            )));
        }
        let fresh = Fresh {
            contract_key: super::random_scalar(),
            ephemeral_key: super::random_scalar(),
            iv: super::random_array(),
            serial: u32::from_be_bytes(super::random_array()) | 0x1000_0000,
        };
        match request.action {
            CertificateAction::Install => self.install(&request.exi, at, &fresh),
            CertificateAction::Update => self.update(&request.exi, at, &fresh),
        }
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

    /// A CertificateUpdateReq for `p`'s demo contract, signed by `key`.
    fn update_request(p: &demo::DemoPki, emaid: &str, key: &pki::SigningKey) -> Vec<u8> {
        use evproto_iso15118::grammar::Base64Binary;
        let req = m::CertificateUpdateReqType {
            id: "ID1".into(),
            contract_signature_cert_chain: m::CertificateChainType {
                id: None,
                certificate: Base64Binary(p.contract.cert.der().to_vec()),
                sub_certificates: Some(m::SubCertificatesType {
                    certificate: p.contract_sub_cas().into_iter().map(Base64Binary).collect(),
                }),
            },
            e_maid: emaid.into(),
            list_of_root_certificate_i_ds: m::ListOfRootCertificateIDsType {
                root_certificate_id: TrustStore::new(vec![p.v2g_root.cert.clone()]).root_ids(),
            },
        };
        let mut fragment = Vec::new();
        m::Fragment::CertificateUpdateReq(Box::new(req.clone()))
            .encode(&mut fragment)
            .unwrap();
        let signature = pki::sign(key, &[("ID1", fragment.as_slice())]).unwrap();
        let msg = m::Message::V2gMessage(Box::new(m::V2gMessage {
            header: m::MessageHeaderType {
                session_id: HexBinary(vec![1, 2, 3, 4, 5, 6, 7, 8]),
                notification: None,
                signature: Some(signature),
            },
            body: m::BodyType {
                certificate_update_req: Some(req),
                ..Default::default()
            },
        }));
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn an_update_renews_this_mos_contract_for_the_same_emaid_and_refuses_others() {
        let provider = BuiltinProvider {
            pki: builtin(),
            emaid_prefix: "NLEVP".into(),
            validity: 86_400 * 365,
        };
        let fresh = Fresh {
            contract_key: [0x11; 32],
            ephemeral_key: [0x22; 32],
            iv: [0x33; 16],
            serial: 0x1234_5678,
        };
        let v2g = &provider.pki.v2g;
        let emaid = v2g.emaid.clone();
        let exi = update_request(v2g, &emaid, &v2g.contract.key);
        let answer = provider.update(&exi, AT, &fresh).unwrap();
        let m::Message::V2gMessage(msg) = m::Message::decode(&answer).unwrap() else {
            panic!()
        };
        let res = msg.body.certificate_update_res.unwrap();
        assert_eq!(res.response_code, m::ResponseCodeType::OK);
        assert_eq!(res.e_maid.value, emaid);
        // the new key decrypts with the old contract's and is the new certificate's
        let scalar = pki::decrypt_contract_key(
            &res.contract_signature_encrypted_private_key.value.0,
            &res.d_hpublickey.value.0,
            &v2g.contract.key_bytes(),
        )
        .unwrap();
        assert_eq!(scalar, fresh.contract_key);
        let new = pki::Cert::from_der(&res.contract_signature_cert_chain.certificate.0).unwrap();
        pki::check_key_pair(&scalar, &new).unwrap();
        assert_eq!(new.common_name().as_deref(), Some(emaid.as_str()));
        let (from, _) = new.validity();
        assert_eq!(from, AT - 60);
        // refused: another MO's contract, a signature by another key, another eMAID, expired
        let foreign =
            demo::DemoPki::generate(b"foreign", "XXEVPC000000000", 1, 2_000_000_000).unwrap();
        for (exi, at, why) in [
            (
                update_request(&foreign, "XXEVPC000000000", &foreign.contract.key),
                AT,
                "the contract to renew",
            ),
            (
                update_request(v2g, &emaid, &foreign.contract.key),
                AT,
                "signature",
            ),
            (
                update_request(v2g, "XXEVPC000000009", &v2g.contract.key),
                AT,
                "is not the certificate's",
            ),
            (
                update_request(v2g, &emaid, &v2g.contract.key),
                2_100_000_000,
                "the contract to renew",
            ),
        ] {
            match provider.update(&exi, at, &fresh) {
                Err(ProviderError::BadRequest(e)) => assert!(e.contains(why), "{e}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        // an installation request is no update
        assert!(matches!(
            provider.update(&[0x80, 0x98, 0x02], AT, &fresh),
            Err(ProviderError::BadRequest(_))
        ));
    }

    /// A -20 CertificateInstallationReq of the car `prov` trusting
    /// `roots`; `chain_of`: another car's chain under `prov`'s signature.
    fn iso20_request(
        prov: &evproto_iso15118::session::Provisioning,
        roots: Vec<evproto_iso15118::messages::xmldsig::X509IssuerSerialType>,
        chain_of: Option<&evproto_iso15118::session::Provisioning>,
    ) -> Vec<u8> {
        let (mut chain, signature) = prov.sign_iso20_chain().unwrap();
        if let Some(other) = chain_of {
            chain = other.sign_iso20_chain().unwrap().0;
        }
        let msg =
            cm::Message::CertificateInstallationReq(Box::new(cm::CertificateInstallationReqType {
                header: cm::MessageHeaderType {
                    session_id: HexBinary(vec![9, 8, 7, 6, 5, 4, 3, 2]),
                    time_stamp: AT,
                    signature: Some(signature),
                },
                oem_provisioning_certificate_chain: chain,
                list_of_root_certificate_i_ds: cm::ListOfRootCertificateIDsType {
                    root_certificate_id: roots,
                },
                maximum_contract_certificate_chains: 1,
                prioritized_emai_ds: None,
            }));
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        out
    }

    /// A secp521r1 scalar of bytes `b` (below the group order).
    fn scalar_p521(b: u8) -> [u8; 66] {
        let mut k = [b; 66];
        k[0] = 1;
        k
    }

    #[test]
    fn an_iso20_car_gets_a_secp521r1_contract_whose_key_only_it_can_read() {
        use evproto_iso15118::session::Provisioning;
        let provider = BuiltinProvider {
            pki: builtin(),
            emaid_prefix: "NLEVP".into(),
            validity: 86_400 * 365,
        };
        let fresh = FreshIso20 {
            contract_key: scalar_p521(0x11),
            ephemeral_key: scalar_p521(0x22),
            iv: [0x33; 12],
            serial: 0x1234_5678,
        };
        let maker = |seed: &[u8]| {
            let p = demo::DemoProvisioning::generate(seed, 1_700_000_000, 2_000_000_000).unwrap();
            let cred = Provisioning::new(
                p.oem_provisioning.cert.der().to_vec(),
                p.oem_provisioning.key_bytes(),
            );
            (p, cred)
        };
        let (car, prov) = maker(b"a car maker");
        let v2g_root = provider.pki.iso20.v2g_root.cert.clone();
        let ours = TrustStore::new(vec![v2g_root.clone()]).root_ids();
        let exi = iso20_request(&prov, ours.clone(), None);
        let answer = provider.install_iso20(&exi, AT, &fresh).unwrap();
        let cm::Message::CertificateInstallationRes(res) = cm::Message::decode(&answer).unwrap()
        else {
            panic!("not a CertificateInstallationRes")
        };
        assert_eq!(res.response_code, cm::ResponseCodeType::OK);
        assert_eq!(res.evse_processing, cm::ProcessingType::Finished);
        assert_eq!(res.header.session_id.0, vec![9, 8, 7, 6, 5, 4, 3, 2]);
        assert!(res.header.signature.is_some(), "signed by the CPS");
        // the CPS chain ends at the -20 V2G root
        let cps = &res.cps_certificate_chain;
        let cps_subs: Vec<Vec<u8>> = cps
            .sub_certificates
            .as_ref()
            .map(cm::SubCertificatesType::ders)
            .unwrap_or_default();
        let v2g = TrustStore::new(vec![v2g_root]);
        pki::verify_chain(
            &cps.certificate.0,
            &cps_subs,
            &v2g,
            AT,
            LeafUsage::Signature,
        )
        .unwrap();
        // the contract: secp521r1, under the -20 MO root, the car's eMAID
        let data = &res.signed_installation_data;
        assert_eq!(data.ecdh_curve, cm::EcdhCurveType::SECP521);
        let chain = &data.contract_certificate_chain;
        let subs = chain.sub_certificates.ders();
        let mo = TrustStore::new(vec![provider.pki.iso20_mo.mo_root.cert.clone()]);
        let verified =
            pki::verify_chain(&chain.certificate.0, &subs, &mo, AT, LeafUsage::Signature).unwrap();
        let emaid = provider.emaid_for(car.oem_provisioning.cert.der());
        assert_eq!(verified.leaf.common_name(), Some(emaid.clone()));
        // the key: for this car's PCID and provisioning key only
        let aad = pki::installation_aad(&car.pcid, &verified.leaf).unwrap();
        let encrypted = &data.secp521_encrypted_private_key.as_ref().unwrap().0;
        let key = pki::decrypt_contract_key_iso20(
            encrypted,
            &data.dh_public_key.0,
            &car.oem_provisioning.key_bytes(),
            &aad,
        )
        .unwrap();
        assert_eq!(key, fresh.contract_key.to_vec());
        pki::check_key_pair(&key, &verified.leaf).unwrap();
        let (other, other_prov) = maker(b"another car maker");
        assert!(pki::decrypt_contract_key_iso20(
            encrypted,
            &data.dh_public_key.0,
            &other.oem_provisioning.key_bytes(),
            &aad,
        )
        .is_err());
        // and through the trait, with fresh values: Accepted, another key
        let request = |exi: Vec<u8>, action| EvCertificateRequest {
            schema_version: ISO20_SCHEMA.into(),
            action,
            exi,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let again = rt
            .block_on(provider.answer(&request(exi.clone(), CertificateAction::Install), AT))
            .unwrap();
        assert_ne!(again, answer);
        // refused: another car's chain under this car's signature, a car
        // trusting only other roots, another message, bytes that are no
        // EXI, an update (none in -20)
        let foreign_roots =
            TrustStore::new(vec![provider.pki.v2g.v2g_root.cert.clone()]).root_ids();
        for (exi, why) in [
            (
                iso20_request(&prov, ours.clone(), Some(&other_prov)),
                "the request's signature",
            ),
            (
                iso20_request(&prov, foreign_roots, None),
                "trusts none of our",
            ),
            (answer.clone(), "not a CertificateInstallationReq"),
            (vec![0x80, 0x98, 0x02], "EXI"),
        ] {
            match provider.install_iso20(&exi, AT, &fresh) {
                Err(ProviderError::BadRequest(e) | ProviderError::NotServed(e)) => {
                    assert!(e.contains(why), "{why}: {e}")
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        assert!(matches!(
            rt.block_on(provider.answer(&request(exi, CertificateAction::Update), AT)),
            Err(ProviderError::NotServed(_))
        ));
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
